"""Reads of the followup app that are more than one filter."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from followup.models import AdverseEvent
from patients.models import Patient, TransplantEvent
from registry.models import CellProduct


def lot_lookback(*, lot: CellProduct, user=None, site_ids=None) -> QuerySet[Patient]:
    """Every patient who received `lot` (within the caller's sites), with those infusions and all their AEs.

    Three queries whatever the number of patients: patients, their infusions of the lot, their AEs.
    """
    patients = Patient.objects.all()
    if user is not None:
        patients = patients.for_user(user)
    if site_ids is not None:
        patients = patients.for_sites(site_ids)
    return (
        patients.filter(pk__in=TransplantEvent.objects.filter(lot=lot).values("patient_id"))
        .select_related("site", "study")
        .prefetch_related(
            Prefetch(
                "transplants",
                queryset=TransplantEvent.objects.filter(lot=lot).order_by("infusion_number"),
                to_attr="lot_infusions",
            ),
            Prefetch("adverse_events", queryset=AdverseEvent.objects.order_by("onset_date"), to_attr="all_aes"),
        )
        .order_by("subject_code")
    )


def adverse_events_to_code(events, *, user):
    """The events of `events` (scoped to the user's sites) not yet coded to MedDRA at the sites where `user` may
    code them (a data manager's; every site for a superuser), once the centre has loaded a release (none before:
    nothing could be coded). One filter, so that the worklist's section and the adverse events list's "to code"
    filter select the same events; the rule is `ae_can_code`'s (followup/services/adverse_events.py)."""
    from django.db.models import Exists

    from followup.models import MedDRARelease
    from registry.constants import Role
    from registry.models import Membership

    events = events.filter(Exists(MedDRARelease.objects.all()), meddra_term__isnull=True)
    if user.is_active and user.is_superuser:
        return events
    managed = Membership.objects.filter(user_id=user.pk, user__is_active=True, role=Role.DATA_MANAGER)
    return events.filter(patient__site_id__in=managed.values("site_id"))


def uncoded_adverse_events(*, user, rows: int) -> tuple[list[AdverseEvent], int]:
    """The `rows` oldest adverse events the user is to code to MedDRA (`adverse_events_to_code`), and how many
    there are. One query: the total is counted beside the rows."""
    from django.db.models import Count, Window

    first = list(
        adverse_events_to_code(AdverseEvent.objects.for_user(user), user=user)
        .annotate(total=Window(Count("pk")))
        .select_related("patient__site")
        .order_by("onset_date", "pk")[:rows]
    )
    return first, (first[0].total if first else 0)


WORKLIST_ROWS = 50  # the first rows each section of the worklist shows; its heading says how many there are


def worklist_visits(visits, *, sites, now, horizon_days: int):
    """The visits of `visits` (scoped to `sites`, annotated `with_state`) that the worklist lists: in progress
    (until completed, whatever the patient's status since), and of patients followed: due, overdue, or whose
    window opens within `horizon_days` of their site's today. One filter, so that the worklist's counts and
    rows and the visits list's "worklist" filter select the same visits."""
    import datetime as dt
    from functools import reduce
    from operator import or_

    from django.db.models import Q

    from followup.constants import VisitOutcome, VisitState
    from patients.constants import INACTIVE_STATUSES

    # A scheduled visit is listed from `horizon_days` before its window opens at its own site: one term per site.
    horizons = {s.pk: s.today(now) + dt.timedelta(days=horizon_days) for s in sites}
    soon = reduce(or_, (Q(patient__site_id=pk, window_start__lte=day) for pk, day in horizons.items()), Q(pk__in=[]))
    # The latest of those days bounds every listed open visit (due and overdue ones opened by today): the open
    # visits' partial index (`visit_open_window`) then skips the later ones, most of the open visits.
    latest = max(horizons.values(), default=now.date())
    return visits.filter(
        Q(outcome=VisitOutcome.IN_PROGRESS)
        | Q(outcome=VisitOutcome.OPEN, window_start__lte=latest)
        & (Q(state__in=[VisitState.DUE, VisitState.OVERDUE]) | Q(state=VisitState.SCHEDULED) & soon)
        & ~Q(patient__status__in=INACTIVE_STATUSES)
    )


def worklist(*, user, now=None, horizon_days: int | None = None, rows: int | None = None) -> dict:
    """A coordinator's day: their sites' visits in progress (entered, not complete), due, overdue or coming
    within `horizon_days`, expedited reports due or late, safety signals to review and adverse events not
    yet coded to MedDRA (a data manager's), with counts per site.

    Each section lists its first `rows` (WORKLIST_ROWS), the most urgent first; its total and the counts per
    site are counted in SQL. A fixed number of queries, and a fixed number of rows, whatever the data size.

    Long because every section's rows, total and counts per site are read here side by side, so that the
    page's fixed number of queries can be read in one place."""
    from collections import Counter

    from django.db.models import Case, Count, F, IntegerField, Value, When, Window
    from django.db.models.functions import RowNumber
    from django.utils import timezone

    from followup.constants import WORKLIST_HORIZON_DAYS, SignalSeverity, SignalStatus, VisitState
    from followup.models import SafetySignal, Visit
    from registry.models import Site

    rows = WORKLIST_ROWS if rows is None else rows
    horizon_days = WORKLIST_HORIZON_DAYS if horizon_days is None else horizon_days
    now = now or timezone.now()
    sites = {s.pk: s for s in Site.objects.for_user(user)}
    # The user's sites as a list of ids rather than the membership subquery: PostgreSQL then knows how many
    # patients they hold (with the subquery it guessed a few thousand of 100,000 and read the visits patient by
    # patient, 0.65 s against 0.33 s).
    site_ids = list(sites)
    code_of = {pk: s.code for pk, s in sites.items()}
    counts = Counter()

    # Visits: the counts per site and state in one query, the first rows of each state in another.
    visits = worklist_visits(
        Visit.objects.for_sites(site_ids).with_state(now, sites=list(sites.values())),
        sites=sites.values(),
        now=now,
        horizon_days=horizon_days,
    )
    for row in visits.order_by().values("patient__site_id", "state").annotate(n=Count("pk")):
        counts[(code_of.get(row["patient__site_id"]), row["state"])] += row["n"]
    by_urgency = [F("window_end").asc(), F("patient__subject_code").asc(), F("pk").asc()]
    first_visits = (
        visits.annotate(rank=Window(RowNumber(), partition_by=[F("state")], order_by=by_urgency))
        .filter(rank__lte=rows)
        .select_related("patient__site")
        .order_by("window_end", "patient__subject_code", "pk")
    )
    shown = [_with_days(visit) for visit in first_visits]

    # Expedited reports due or late: a report not yet submitted whose due date is set (ae_report_clock's rule).
    reports, report_totals = _pending_reports(site_ids=site_ids, now=now, rows=rows)
    for site_id, n in report_totals.items():
        counts[(code_of.get(site_id), "reports")] += n

    # Open findings: the signals to review and the routine checks (worklist tasks), the most severe first.
    findings = SafetySignal.objects.for_sites(site_ids).filter(status=SignalStatus.OPEN)
    routine = Case(When(severity=SignalSeverity.ROUTINE, then=Value(1)), default=Value(0), output_field=IntegerField())
    finding_totals = Counter()
    for row in findings.order_by().values("patient__site_id", routine_=routine).annotate(n=Count("pk")):
        finding_totals[row["routine_"]] += row["n"]
        if not row["routine_"]:
            counts[(code_of.get(row["patient__site_id"]), "signals")] += row["n"]
    by_severity = [F("severity").desc(), F("created_at").asc(), F("pk").asc()]
    first_findings = list(
        findings.annotate(routine_=routine, rank=Window(RowNumber(), partition_by=[routine], order_by=by_severity))
        .filter(rank__lte=rows)
        .select_related("patient__site", "visit")
        .order_by("-severity", "created_at", "pk")
    )
    uncoded, uncoded_total = uncoded_adverse_events(user=user, rows=rows)

    per_site = [
        {
            "site": site.code,
            "in_progress": counts[(site.code, VisitState.IN_PROGRESS)],
            "overdue": counts[(site.code, VisitState.OVERDUE)],
            "due": counts[(site.code, VisitState.DUE)],
            "upcoming": counts[(site.code, VisitState.SCHEDULED)],
            "reports": counts[(site.code, "reports")],
            "signals": counts[(site.code, "signals")],
            **{"today": site.today(now), "time_zone": site.time_zone},
        }
        for site in sorted(sites.values(), key=lambda s: s.code)
    ]
    totals = {
        "in_progress": sum(s["in_progress"] for s in per_site),
        "overdue": sum(s["overdue"] for s in per_site),
        "due": sum(s["due"] for s in per_site),
        "upcoming": sum(s["upcoming"] for s in per_site),
        "reports": sum(report_totals.values()),
        "signals": finding_totals[0],
        "tasks": finding_totals[1],
        "uncoded": uncoded_total,
    }
    return {
        "in_progress": [v for v in shown if v.state == VisitState.IN_PROGRESS],
        "overdue": [v for v in shown if v.state == VisitState.OVERDUE],
        "due": [v for v in shown if v.state == VisitState.DUE],
        "upcoming": [v for v in shown if v.state == VisitState.SCHEDULED],
        "reports": reports,
        "signals": [s for s in first_findings if s.severity != SignalSeverity.ROUTINE],
        "tasks": [s for s in first_findings if s.severity == SignalSeverity.ROUTINE],
        "uncoded": uncoded,
        "per_site": per_site,
        "totals": totals,
        "rows": rows,
        "horizon_days": horizon_days,
    }


def _pending_report_conditions() -> dict:
    """An initial and a complete expedited report not yet submitted whose due date is set (ae_report_clock's
    rule), as conditions on adverse events."""
    from django.db.models import Q

    return {
        "initial": Q(initial_report_due__isnull=False, initial_report_submitted_on__isnull=True),
        "complete": Q(
            initial_report_due__isnull=False,
            complete_report_due__isnull=False,
            complete_report_submitted_on__isnull=True,
        ),
    }


def next_report_due():
    """The due date of an adverse event's next expedited report: the initial report's until it is submitted (it is
    due first), then the complete report's."""
    from django.db.models import Case, F, When

    return Case(
        When(initial_report_submitted_on__isnull=True, then=F("initial_report_due")), default=F("complete_report_due")
    )


def adverse_events_report_pending(queryset):
    """The adverse events of `queryset` with an expedited report not yet submitted: the whole list behind the
    worklist's first reports."""
    pending = _pending_report_conditions()
    return queryset.filter(pending["initial"] | pending["complete"])


def _pending_reports(*, site_ids: list[int], now, rows: int) -> tuple[list[dict], dict[int, int]]:
    """The first `rows` expedited reports not yet submitted of the sites `site_ids` (the user's), by due date (as
    `ae_report_clock` words them), and the number of them per site. Three queries: the counts, the first
    initial reports and the first complete reports."""
    from django.db.models import Count

    from followup.models import AdverseEvent
    from followup.services import ae_report_clock

    events = AdverseEvent.objects.for_sites(site_ids)
    pending = _pending_report_conditions()
    totals = {}
    for row in (
        events.filter(pending["initial"] | pending["complete"])
        .order_by()
        .values("patient__site_id")
        .annotate(initial=Count("pk", filter=pending["initial"]), complete=Count("pk", filter=pending["complete"]))
    ):
        totals[row["patient__site_id"]] = row["initial"] + row["complete"]
    reports = []
    for name in ("initial", "complete"):
        first = events.filter(pending[name]).select_related("patient__site").order_by(f"{name}_report_due", "pk")
        for ae in first[:rows]:
            for item in ae_report_clock(ae, ae.patient.site.today(now)):
                if item["report"] == name:
                    reports.append({"ae": ae, **item, "days_late": -item["days_left"]})
    # By due date; on the same day, as the adverse events are ordered (patient, onset), the initial report first.
    reports.sort(
        key=lambda r: (
            r["due"],
            r["ae"].patient.subject_code,
            r["ae"].onset_date,
            r["ae"].pk,
            r["report"] == "complete",
        )
    )
    return reports[:rows], totals


def _with_days(visit):
    """The worklist visit with `days`, counted at its site's today: since it was seen (in progress), late
    since its window closed (overdue), left until its window closes (due), until its window opens (coming)."""
    from followup.constants import VisitState

    today = visit.site_today
    if visit.state == VisitState.IN_PROGRESS:
        visit.days = (today - visit.actual_date).days if visit.actual_date else 0
    elif visit.state == VisitState.OVERDUE:
        visit.days = (today - visit.window_end).days
    elif visit.state == VisitState.DUE:
        visit.days = (visit.window_end - today).days
    else:
        visit.days = (visit.window_start - today).days
    return visit


def next_overdue_visit(*, user, exclude_pk=None, now=None):
    """The overdue visit of the user's sites whose window closed first (patients followed), other than
    `exclude_pk`; None when nothing else is overdue. One query."""
    from followup.constants import VisitState
    from followup.models import Visit
    from patients.constants import INACTIVE_STATUSES

    visits = (
        Visit.objects.for_user(user)
        .with_state(now)
        .filter(state=VisitState.OVERDUE)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .exclude(pk=exclude_pk)
        .order_by("window_end", "patient__subject_code", "target_date")
    )
    return visits.only("pk").first()
