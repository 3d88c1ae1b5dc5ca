"""The notification ledger: sweeps that decide what must be said, and the sender that says it once.

A sweep works only from database state: for every open visit, adverse-event report and open safety signal
it computes the stage that applies *today* (in the site's time zone) and inserts one ledger row per
recipient, ignoring rows that already exist. A missed sweep therefore catches up with one row per item,
and an extra sweep inserts nothing. The sender claims due rows with a conditional UPDATE (stamping a claim
token), re-checks each against the current data, sends one digest per recipient (or one e-mail per item),
and marks the rows sent. Before each message its items are re-checked and proven, with one conditional
UPDATE, to be still this sender's (the claim of the whole batch is renewed and the message's Message-ID,
derived from the keys, is stamped); right after the server's 250 they are marked sent. A permanent SMTP
error (5xx) fails the items at once; a temporary one (4xx, no connection, a timeout) retries them with
backoff for a day. A claim older than the claim timeout (a worker that died) is taken again; if the dead
worker's message was already out, the copy carries the same Message-ID and is logged as a possible
duplicate.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from followup import constants as c
from followup.models import AdverseEvent, SafetySignal, Visit
from notifications import delivery
from notifications import queries as overdue_query
from notifications.constants import NotificationKind, NotificationState, ReminderStage
from notifications.models import Notification
from notifications.recipients import (
    BATCH,
    Recipient,
    SweepReport,
    _insert,
    _recipient_still_applies,
    _site_today,
    members,
    members_of_sites,
    send_after,
)
from patients.constants import INACTIVE_STATUSES
from patients.models import Patient
from registry.constants import Role
from registry.models import ReminderPolicy, Site, Study, StudySite

logger = logging.getLogger(__name__)


def claim_timeout() -> dt.timedelta:
    return dt.timedelta(seconds=getattr(settings, "NOTIFICATION_CLAIM_TIMEOUT", 600))


backoff = delivery.backoff


# Stages ------------------------------------------------------------------------------------------------


def visit_stage(*, window_start: dt.date, window_end: dt.date, today: dt.date, policy: ReminderPolicy) -> str | None:
    """The reminder stage of an open visit today, or None when nothing is to be said yet.

    upcoming (window opens within `upcoming_days`), due (window open), closing (closes within
    `closing_days`), overdue-N (N-th weekly reminder after the window closed), escalated (after the last).
    """
    if today < window_start - dt.timedelta(days=policy.upcoming_days):
        return None
    if today < window_start:
        return ReminderStage.UPCOMING
    if today <= window_end:
        if today >= window_end - dt.timedelta(days=policy.closing_days) and today > window_start:
            return ReminderStage.CLOSING
        return ReminderStage.DUE
    n = (today - window_end).days - 1
    number = n // policy.overdue_repeat_days + 1
    if number > policy.overdue_max_reminders:
        return "escalated"
    return f"{ReminderStage.OVERDUE}-{number}"


def ae_report_stages(ae: AdverseEvent, *, today: dt.date, due_soon_days: int) -> list[str]:
    stages = []
    for report, due, submitted in (
        ("initial", ae.initial_report_due, ae.initial_report_submitted_on),
        ("complete", ae.complete_report_due, ae.complete_report_submitted_on),
    ):
        if due is None or submitted is not None:
            continue
        if today > due:
            stages.append(f"{report}-late-{today.isoformat()}")
        elif today >= due - dt.timedelta(days=due_soon_days):
            stages.append(f"{report}-due-soon")
    return stages


# Recipients --------------------------------------------------------------------------------------------


def safety_recipients(site: Site, study, today: dt.date) -> list[Recipient]:
    recipients = {r.email: r for r in members(site.pk, Role.INVESTIGATOR, today)}
    for email in (site.safety_email, study.safety_contact_email):
        if email and email not in recipients:
            recipients[email] = Recipient(email=email, user_id=None, digest=False)
    return list(recipients.values())


# Sweeps ------------------------------------------------------------------------------------------------


def _removed_pairs() -> set[tuple[int, int]]:
    """(site, study) of every site removed from a study (`StudySite.removed_on`)."""
    return set(StudySite.objects.filter(removed_on__isnull=False).values_list("site_id", "study_id"))


def _policies() -> dict[int, ReminderPolicy]:
    return {p.study_id: p for p in ReminderPolicy.objects.all()}


def _values(rows: list[tuple], types: tuple[str, ...]) -> tuple[str, list]:
    """A VALUES list with typed columns (an empty, typed relation when there are no rows)."""
    if not rows:
        return "SELECT " + ", ".join(f"NULL::{t}" for t in types) + " WHERE false", []
    one = "(" + ", ".join(f"%s::{t}" for t in types) + ")"
    return "VALUES " + ", ".join([one] * len(rows)), [value for row in rows for value in row]


def _reminders_sweep_set_based(now: dt.datetime, report: SweepReport) -> None:
    """The sweep as one INSERT ... SELECT ... ON CONFLICT DO NOTHING (PostgreSQL).

    The stage is `visit_stage` written in SQL (a test holds the two together); each site's today, each
    study's policy and each site's recipients (`members`, with their preferences) come from Python as
    small VALUES lists. The rows never travel to Python, so the time and memory of a sweep depend on the
    number of reminders due, not on the number of visits.

    Long because most of it is one SQL statement, kept whole so that it reads as the query it is.
    """
    policies, default_policy = _policies(), ReminderPolicy()
    study_ids = list(Study.objects.values_list("pk", flat=True))
    context, recipients = [], []
    sites = list(Site.objects.all())
    today_by_site = {site.pk: _site_today(site, now) for site in sites}
    for role, kind in (
        (Role.COORDINATOR, NotificationKind.VISIT_REMINDER),
        (Role.INVESTIGATOR, NotificationKind.VISIT_ESCALATION),
    ):
        for site_id, people in members_of_sites(today_by_site, role).items():
            recipients.extend((site_id, str(kind), r.email, r.user_id, r.language, r.digest) for r in people)
    removed = _removed_pairs()
    for site in sites:
        today = today_by_site[site.pk]
        for study_id in study_ids:
            if (site.pk, study_id) in removed:  # the site records nothing more for the study: no reminder
                continue
            policy = policies.get(study_id, default_policy)
            context.append(
                (
                    site.pk,
                    study_id,
                    today,
                    policy.upcoming_days,
                    policy.closing_days,
                    policy.overdue_repeat_days,
                    policy.overdue_max_reminders,
                    send_after(site, today, policy.send_hour),
                )
            )
    if not context:
        return
    context_sql, context_params = _values(
        context, ("bigint", "bigint", "date", "int", "int", "int", "int", "timestamptz")
    )
    recipients_sql, recipients_params = _values(recipients, ("bigint", "text", "text", "bigint", "text", "boolean"))
    visits, patients, ledger = (connection.ops.quote_name(m._meta.db_table) for m in (Visit, Patient, Notification))
    sql = f"""
        WITH ctx (site_id, study_id, today, upcoming, closing, repeat_days, max_reminders, send_after) AS (
            {context_sql}
        ),
        rec (site_id, kind, email, user_id, language, digest) AS ({recipients_sql}),
        candidates AS MATERIALIZED (
            -- Open visits whose window opens by the latest site's horizon: the partial index of open visits.
            SELECT id, patient_id, window_start, window_end FROM {visits}
            WHERE outcome = %s AND window_start <= %s
        ),
        due AS (
            SELECT v.id AS visit_id, c.site_id, c.send_after,
                   CASE WHEN c.today < v.window_start THEN 'upcoming'
                        WHEN c.today <= v.window_end THEN
                             CASE WHEN c.today >= v.window_end - c.closing AND c.today > v.window_start
                                  THEN 'closing' ELSE 'due' END
                        WHEN (c.today - v.window_end - 1) / c.repeat_days + 1 > c.max_reminders THEN 'escalated'
                        ELSE 'overdue-' || ((c.today - v.window_end - 1) / c.repeat_days + 1)
                   END AS stage
            FROM candidates v
            JOIN {patients} p ON p.id = v.patient_id
            JOIN ctx c ON c.site_id = p.site_id AND c.study_id = p.study_id
            WHERE NOT (p.status = ANY(%s)) AND v.window_start <= c.today + c.upcoming
        ),
        ins AS (
            INSERT INTO {ledger} (kind, object_id, stage, recipient_email, recipient_user_id, site_id,
                language, digest, state, send_after, attempts, message_id, last_error, created_at)
            SELECT r.kind, d.visit_id, d.stage, r.email, r.user_id, d.site_id, r.language, r.digest, %s,
                   d.send_after, 0, '', '', %s
            FROM due d JOIN rec r ON r.site_id = d.site_id
             AND r.kind = CASE WHEN d.stage = 'escalated' THEN %s ELSE %s END
            -- Most of a day's due items are in the ledger already (an escalated visit stays due day after
            -- day): an anti-join leaves them out, cheaper than trying each and having the unique key refuse it.
            WHERE NOT EXISTS (
                SELECT 1 FROM {ledger} n
                WHERE n.kind = r.kind AND n.object_id = d.visit_id AND n.stage = d.stage
                  AND n.recipient_email = r.email
            )
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM ins)
    """
    params = [
        *context_params,
        *recipients_params,
        c.VisitOutcome.OPEN,
        max(row[2] + dt.timedelta(days=row[3]) for row in context),
        sorted(INACTIVE_STATUSES),
        NotificationState.PENDING,
        timezone.now(),
        NotificationKind.VISIT_ESCALATION,
        NotificationKind.VISIT_REMINDER,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        considered, inserted = cursor.fetchone()
    report.considered += considered
    report.inserted += inserted


@transaction.atomic
def reminders_sweep(*, now: dt.datetime | None = None, dry_run: bool = False) -> SweepReport:
    """Insert the visit reminders that apply today, one per (visit, stage, coordinator), and the overdue
    queries (`notifications.queries`).

    On PostgreSQL a real sweep is one set-based statement (`_reminders_sweep_set_based`); a dry run, and
    other databases, compute the stages in Python, visit by visit, with the same rules.
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql" and not dry_run:
        report = SweepReport()
        _reminders_sweep_set_based(now, report)
        overdue_query.overdue_queries_sweep(now, report, dry_run)
        return report
    policies = _policies()
    default_policy = ReminderPolicy()
    report = SweepReport()
    removed = _removed_pairs()
    for site in Site.objects.all():
        today = _site_today(site, now)
        max_upcoming = max([p.upcoming_days for p in policies.values()] + [default_policy.upcoming_days])
        visits = (
            Visit.objects.filter(
                outcome=c.VisitOutcome.OPEN,
                patient__site=site,
                window_start__lte=today + dt.timedelta(days=max_upcoming),
            )
            .exclude(patient__status__in=INACTIVE_STATUSES)
            .exclude(patient__study_id__in=[study for site_id, study in removed if site_id == site.pk])
            .values_list("pk", "window_start", "window_end", "patient__study_id")
        )
        coordinators = members(site.pk, Role.COORDINATOR, today)
        investigators = None
        rows: list[Notification] = []
        for visit_id, start, end, study_id in visits.iterator(chunk_size=2000):
            policy = policies.get(study_id, default_policy)
            stage = visit_stage(window_start=start, window_end=end, today=today, policy=policy)
            if stage is None:
                continue
            report.considered += 1
            if stage == "escalated":
                if investigators is None:
                    investigators = members(site.pk, Role.INVESTIGATOR, today)
                kind, recipients = NotificationKind.VISIT_ESCALATION, investigators
            else:
                kind, recipients = NotificationKind.VISIT_REMINDER, coordinators
            after = send_after(site, today, policy.send_hour)
            rows.extend(
                Notification(
                    kind=kind,
                    object_id=visit_id,
                    stage=stage,
                    recipient_email=r.email,
                    recipient_user_id=r.user_id,
                    site=site,
                    language=r.language,
                    digest=r.digest,
                    send_after=after,
                )
                for r in recipients
            )
            if len(rows) >= BATCH:
                _insert(rows, report, dry_run)
                rows = []
        _insert(rows, report, dry_run)
    overdue_query.overdue_queries_sweep(now, report, dry_run)
    if dry_run:
        transaction.set_rollback(True)
    return report


@transaction.atomic
def safety_reports_sweep(*, now: dt.datetime | None = None, dry_run: bool = False) -> SweepReport:
    """Insert warnings for expedited reports coming due, and a reminder every day they are late."""
    now = now or timezone.now()
    policies = _policies()
    report = SweepReport()
    open_reports = Q(initial_report_due__isnull=False, initial_report_submitted_on__isnull=True) | Q(
        complete_report_due__isnull=False, complete_report_submitted_on__isnull=True
    )
    rows = []
    for ae in AdverseEvent.objects.filter(open_reports).select_related("patient__site", "patient__study"):
        site, study = ae.patient.site, ae.patient.study
        policy = policies.get(study.pk) or ReminderPolicy()
        today = _site_today(site, now)
        for stage in ae_report_stages(ae, today=today, due_soon_days=policy.ae_due_soon_days):
            report.considered += 1
            rows.extend(
                Notification(
                    kind=NotificationKind.AE_REPORT,
                    object_id=ae.pk,
                    stage=stage,
                    recipient_email=r.email,
                    recipient_user_id=r.user_id,
                    site=site,
                    language=r.language,
                    digest=False,
                    send_after=now,
                )
                for r in safety_recipients(site, study, today)
            )
    _insert(rows, report, dry_run)
    if dry_run:
        transaction.set_rollback(True)
    return report


@transaction.atomic
def signals_notify_sweep(*, now: dt.datetime | None = None, dry_run: bool = False) -> SweepReport:
    """Tell the site's investigators, once, of every safety signal still open (the most severe first).

    Routine checks (the yearly malignancy question) are worklist tasks, not announced; findings recorded as
    reviewed at import (a study's first run) are not open, so not announced either."""
    now = now or timezone.now()
    report = SweepReport()
    rows = []
    signals = (
        SafetySignal.objects.filter(status=c.SignalStatus.OPEN)
        .exclude(severity=c.SignalSeverity.ROUTINE)
        .select_related("patient__site")
        .order_by("-severity", "pk")
    )
    for signal in signals:
        site = signal.patient.site
        report.considered += 1
        rows.extend(
            Notification(
                kind=NotificationKind.SAFETY_SIGNAL,
                object_id=signal.pk,
                stage="raised",
                recipient_email=r.email,
                recipient_user_id=r.user_id,
                site=site,
                language=r.language,
                digest=r.digest,
                send_after=now,
            )
            for r in members(site.pk, Role.INVESTIGATOR, _site_today(site, now))
        )
    _insert(rows, report, dry_run)
    if dry_run:
        transaction.set_rollback(True)
    return report


# Re-check at send time ---------------------------------------------------------------------------------


def still_applies(row: Notification, now: dt.datetime) -> str:
    """'' when the item should still be sent; otherwise why not (the row is cancelled with that reason)."""
    today = _site_today(row.site, now)
    if row.kind in (NotificationKind.VISIT_REMINDER, NotificationKind.VISIT_ESCALATION):
        visit = Visit.objects.select_related("patient").filter(pk=row.object_id).first()
        if visit is None or visit.outcome != c.VisitOutcome.OPEN:
            return "the visit is no longer open"
        if visit.patient.status in INACTIVE_STATUSES:
            return f"the patient is {visit.patient.get_status_display().lower()}"
        if StudySite.objects.filter(
            site_id=visit.patient.site_id, study_id=visit.patient.study_id, removed_on__isnull=False
        ).exists():
            return "the site was removed from the study"
        policy = ReminderPolicy.objects.filter(study_id=visit.patient.study_id).first() or ReminderPolicy()
        current = visit_stage(window_start=visit.window_start, window_end=visit.window_end, today=today, policy=policy)
        if current != row.stage:
            return f"superseded: the visit is now at stage {current}"
        role = Role.INVESTIGATOR if row.kind == NotificationKind.VISIT_ESCALATION else Role.COORDINATOR
        if not _recipient_still_applies(row, role, today):
            return "the recipient no longer receives these reminders"
        return ""
    if row.kind == NotificationKind.AE_REPORT:
        ae = AdverseEvent.objects.filter(pk=row.object_id).first()
        if ae is None:
            return "the adverse event no longer exists"
        report, _, rest = row.stage.partition("-")
        due = ae.initial_report_due if report == "initial" else ae.complete_report_due
        if due is None:
            return f"no {report} expedited report is required any more"
        if ae.initial_report_submitted_on if report == "initial" else ae.complete_report_submitted_on:
            return f"the {report} report was submitted"
        if rest.startswith("late-") and rest != f"late-{today.isoformat()}":
            return "superseded by today's reminder"
        if rest == "due-soon" and today > due:
            return "superseded: the report is now late"
        if not _recipient_still_applies(row, Role.INVESTIGATOR, today):
            return "the recipient no longer receives safety reports"
        return ""
    if row.kind == NotificationKind.SAFETY_SIGNAL:
        signal = SafetySignal.objects.filter(pk=row.object_id).first()
        if signal is None or signal.status != c.SignalStatus.OPEN:
            return "the signal was reviewed"
        if not _recipient_still_applies(row, Role.INVESTIGATOR, today):
            return "the recipient no longer reviews signals"
        return ""
    if row.kind == NotificationKind.QUERY_OVERDUE:
        return overdue_query.still_applies(row, now)
    return "unknown kind"


# Composing ---------------------------------------------------------------------------------------------


def _admin_url(path_name: str, object_id: int) -> str:
    base = getattr(settings, "REGISTRY_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    return base + reverse(path_name, args=[object_id])


def describe(row: Notification) -> dict:
    """What an item says: subject codes and dates only, never a name or a record number."""
    if row.kind in (NotificationKind.VISIT_REMINDER, NotificationKind.VISIT_ESCALATION):
        visit = Visit.objects.select_related("patient").get(pk=row.object_id)
        return {
            "kind": row.kind,
            "stage": row.stage.split("-")[0],
            "stage_full": row.stage,
            "subject_code": visit.patient.subject_code,
            "visit_code": visit.code,
            "label": visit.label_shown,
            "window_start": visit.window_start,
            "window_end": visit.window_end,
            "url": _admin_url("admin:followup_visit_change", visit.pk),
        }
    if row.kind == NotificationKind.AE_REPORT:
        ae = AdverseEvent.objects.select_related("patient").get(pk=row.object_id)
        report = row.stage.split("-")[0]
        return {
            "kind": row.kind,
            "stage": "late" if "-late-" in row.stage else "due_soon",
            "report": report,
            "subject_code": ae.patient.subject_code,
            "term": ae.term,
            "grade": ae.grade,
            "due": ae.initial_report_due if report == "initial" else ae.complete_report_due,
            "url": _admin_url("admin:followup_adverseevent_change", ae.pk),
        }
    if row.kind == NotificationKind.QUERY_OVERDUE:
        return overdue_query.describe(row, _admin_url)
    signal = SafetySignal.objects.select_related("patient").get(pk=row.object_id)
    return {
        "kind": row.kind,
        "stage": "raised",
        "subject_code": signal.patient.subject_code,
        "signal": signal.get_kind_display(),
        "detail": signal.detail,
        "url": _admin_url("admin:followup_safetysignal_change", signal.pk),
    }


def compose(rows: list[Notification]) -> EmailMultiAlternatives:
    """One e-mail (HTML and plain text, in the recipient's language) for one item or a digest of items."""
    language = rows[0].language if rows[0].language in dict(settings.LANGUAGES) else "en"
    with translation.override(language):  # labels (e.g. a signal's kind) in the recipient's language
        items = [describe(row) for row in rows]
    context = {"items": items, "digest": len(rows) > 1 or rows[0].digest, "count": len(items)}
    template = f"notifications/email/notification.{language}"
    subject = render_to_string(f"{template}.subject.txt", context).strip()
    text = render_to_string(f"{template}.txt", context)
    html = render_to_string(f"{template}.html", context)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        to=[rows[0].recipient_email],
        # A Message-ID derived from the keys: a copy sent again after a crash carries the same one.
        headers={
            "X-Registry-Keys": ", ".join(r.key for r in rows),
            "Message-ID": delivery.message_id(r.key for r in rows),
        },
    )
    message.attach_alternative(html, "text/html")
    return message


# Sending -----------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    emails: int = 0
    sent: int = 0
    cancelled: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # rows another worker took over (their claim had expired)
    possible_duplicates: int = 0  # rows sent again after a worker stopped between a 250 and its commit
    unreachable: bool = False  # the mail server could not be reached: the run stopped early
    planned: list[str] = field(default_factory=list)


def _claimable(now: dt.datetime) -> Q:
    return Q(state=NotificationState.PENDING, send_after__lte=now) | Q(
        state=NotificationState.SENDING, claimed_at__lt=now - claim_timeout()
    )


def due_recipients(now: dt.datetime) -> list[str]:
    return list(
        Notification.objects.filter(_claimable(now))
        .values_list("recipient_email", flat=True)
        .distinct()
        .order_by("recipient_email")
    )


def claim(recipient_email: str, now: dt.datetime) -> tuple[uuid.UUID, list[Notification]]:
    """Atomically take the recipient's due rows; a row another sender holds is not taken.

    A row taken from a worker that stopped while its message was out (state `sending` with a Message-ID
    stamped) may have reached the server already: it comes back with `in_flight_before` set.
    """
    token = uuid.uuid4()
    found = list(
        Notification.objects.filter(_claimable(now), recipient_email=recipient_email)
        .order_by("pk")
        .values_list("pk", "state", "message_id")[:BATCH]
    )
    in_flight = {pk for pk, state, mid in found if state == NotificationState.SENDING and mid}
    stamp = timezone.now()
    Notification.objects.filter(pk__in=[pk for pk, _, _ in found]).filter(_claimable(now)).update(
        state=NotificationState.SENDING,
        claim_token=token,
        claimed_at=stamp,
        attempts=F("attempts") + 1,
        first_attempt_at=Coalesce("first_attempt_at", Value(stamp)),
    )
    rows = list(
        Notification.objects.filter(claim_token=token, state=NotificationState.SENDING)
        .select_related("site")
        .order_by("kind", "created_at")
    )
    for row in rows:
        row.in_flight_before = row.pk in in_flight
    return token, rows


_TOKEN = Notification._meta.get_field("claim_token")


def _mark(rows: list[Notification], token: uuid.UUID, **fields) -> int:
    return Notification.objects.filter(pk__in=[r.pk for r in rows], claim_token=token).update(**fields)


def _prove(rows: list[Notification], token: uuid.UUID, message_id: str) -> set[int]:
    """One conditional UPDATE right before a message goes out: renews the claim of every row this worker
    still holds (a long batch keeps its claim), stamps the message's Message-ID on the rows it says, and
    returns the ids of those rows that are still this worker's. A row whose claim expired and was taken by
    another worker is not among them."""
    table = connection.ops.quote_name(Notification._meta.db_table)
    ids = [r.pk for r in rows]
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET claimed_at = %s, "
            f"message_id = CASE WHEN id IN ({marks}) THEN %s ELSE message_id END "
            "WHERE claim_token = %s AND state = %s RETURNING id",
            [timezone.now(), *ids, message_id, _TOKEN.get_db_prep_value(token, connection), NotificationState.SENDING],
        )
        held = {row[0] for row in cursor.fetchall()}
    return held & set(ids)


def _mark_sent(rows: list[Notification], message_id: str) -> int:
    """The server answered 250: the rows are sent, whoever holds their claim now (so that a worker that
    took them over sees them gone instead of sending them again)."""
    return Notification.objects.filter(
        pk__in=[r.pk for r in rows], state=NotificationState.SENDING, message_id=message_id
    ).update(state=NotificationState.SENT, sent_at=timezone.now(), claim_token=None, last_error="")


def _mark_failed(rows: list[Notification], token: uuid.UUID, exc: BaseException, report: SendReport) -> None:
    """A permanent error fails the rows at once; a temporary one retries them with backoff until a day
    after their first attempt, then fails them."""
    now = timezone.now()
    error = delivery.describe_error(exc)
    for row in rows:
        first = row.first_attempt_at or now
        deadline = first + delivery.RETRY_FOR
        if delivery.is_permanent(exc) or now >= deadline:
            _mark([row], token, state=NotificationState.FAILED, failed_at=now, last_error=error, claim_token=None)
            report.failed += 1
        else:
            retry_at = min(now + delivery.backoff(row.attempts), deadline)
            fields = {"state": NotificationState.PENDING, "send_after": retry_at, "claim_token": None}
            _mark([row], token, last_error=error, message_id="", **fields)
            report.retried += 1


def _check(rows: list[Notification], token: uuid.UUID, report: SendReport) -> list[Notification]:
    """Re-check each item right before its message; cancel (with the reason) those that no longer apply."""
    live = []
    now = timezone.now()
    for row in rows:
        reason = still_applies(row, now)
        if reason:
            fields = {"state": NotificationState.CANCELLED, "claim_token": None, "message_id": ""}
            report.cancelled += _mark([row], token, last_error=reason, **fields)
        else:
            live.append(row)
    return live


def _send_group(group: list[Notification], token: uuid.UUID, backend, report: SendReport) -> BaseException | None:
    """Send one message; return the error when the mail server could not be reached at all."""
    live = delivery.db_step(_check, group, token, report)
    while live:  # until every row the message says is proven to be this worker's
        message = delivery.db_step(compose, live)
        mid = message.extra_headers["Message-ID"]
        held = delivery.db_step(_prove, live, token, mid)
        if len(held) == len(live):
            break
        report.skipped += len(live) - len(held)
        live = [row for row in live if row.pk in held]
    if not live:
        return None
    again = [row.key for row in live if getattr(row, "in_flight_before", False)]
    if again:
        report.possible_duplicates += len(again)
        logger.warning(
            "possible duplicate: sending again %s, whose worker stopped after the message went out and before "
            "it was marked sent (same Message-ID %s)",
            ", ".join(again),
            mid,
        )
    try:
        backend.open()
        if backend.send_messages([message]) != 1:
            raise RuntimeError("the e-mail backend did not send the message")
    except Exception as exc:  # an SMTP, connection or template failure: keep the error, retry or fail
        logger.warning("sending to %s failed: %s", live[0].recipient_email, delivery.describe_error(exc))
        delivery.close_quietly(backend)
        delivery.db_step(_mark_failed, live, token, exc, report)
        return exc if delivery.server_unavailable(exc) else None
    report.emails += 1
    marked = delivery.db_step(_mark_sent, live, mid)
    report.sent += marked
    if marked != len(live):
        logger.warning("%d of %d row(s) of %s were marked sent by another worker", len(live) - marked, len(live), mid)
    return None


def notifications_send_to(recipient_email: str, *, now: dt.datetime | None = None, connection=None) -> SendReport:
    """Claim one recipient's due items and send them, message by message.

    Before each message its items are re-checked and proven to be still this worker's (renewing the claim
    of the whole batch); right after the server's 250 they are marked sent in their own short transaction.
    """
    now = now or timezone.now()
    report = SendReport()
    token, rows = delivery.db_step(claim, recipient_email, now)
    digest_rows = [r for r in rows if r.digest]
    groups = ([digest_rows] if digest_rows else []) + [[r] for r in rows if not r.digest]
    backend = connection or get_connection()
    try:
        for number, group in enumerate(groups):
            unreachable = _send_group(group, token, backend, report)
            if unreachable is not None:
                # No server to talk to (refused, reset, silent until EMAIL_TIMEOUT): the rest of the batch is
                # retried later with the same error instead of waiting for the same timeout message by message.
                rest = [row for later in groups[number + 1 :] for row in later]
                if rest:
                    delivery.db_step(_mark_failed, rest, token, unreachable, report)
                report.unreachable = True
                break
    finally:
        if connection is None:
            delivery.close_quietly(backend)
    return report


def notifications_send_due(*, now: dt.datetime | None = None, dry_run: bool = False) -> SendReport:
    """Send every due item, recipient by recipient (one digest each, unless they asked otherwise)."""
    now = now or timezone.now()
    total = SendReport()
    if dry_run:
        for row in Notification.objects.filter(_claimable(now)).select_related("site"):
            reason = still_applies(row, now)
            total.planned.append(f"{row.key}: {'send' if not reason else 'cancel (' + reason + ')'}")
        return total
    backend = get_connection()
    try:
        for email in delivery.db_step(due_recipients, now):
            part = notifications_send_to(email, now=now, connection=backend)
            for name in ("emails", "sent", "cancelled", "retried", "failed", "skipped", "possible_duplicates"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            if part.unreachable:  # the other recipients' items wait for the next run
                total.unreachable = True
                break
    finally:
        delivery.close_quietly(backend)
    return total


RESENDABLE = (NotificationState.FAILED, NotificationState.CANCELLED)


@transaction.atomic
def notification_resend(*, notification: Notification, actor=None) -> Notification:
    """Put a failed or cancelled item back in the queue (or a retrying one at the head of it), if it still
    applies; a sent one is never re-sent. It gets a fresh day of retries."""
    from django.core.exceptions import ValidationError

    row = Notification.objects.select_for_update().select_related("site").get(pk=notification.pk)
    retrying = row.state == NotificationState.PENDING and bool(row.last_error)
    if row.state not in RESENDABLE and not retrying:
        raise ValidationError(
            {
                "state": gettext("Only failed, cancelled or retrying items can be resent; this one is %(state)s.")
                % {"state": row.get_state_display()}
            }
        )
    reason = still_applies(row, timezone.now())
    if reason:
        raise ValidationError({"state": gettext("Not resent: %(reason)s.") % {"reason": reason}})
    row.state, row.send_after, row.attempts, row.last_error = NotificationState.PENDING, timezone.now(), 0, ""
    row.first_attempt_at = row.failed_at = None
    row.save(update_fields=["state", "send_after", "attempts", "last_error", "first_attempt_at", "failed_at"])
    return row
