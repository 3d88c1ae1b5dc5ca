"""Overdue queries in the reminder digest: a query still open (not answered, not closed) longer than its
study's limit (`EditCheckSettings.query_age_limit_days`, default 7) is one ledger item per coordinator of the
query's site, stage "overdue", inserted by the reminders sweep; the sender drops it once the query is answered
or closed, or the recipient is no longer a coordinator there."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone

from notifications import recipients
from notifications.constants import NotificationKind
from notifications.models import Notification
from quality.checks.rules import question
from quality.constants import DEFAULT_AGE_LIMIT_DAYS, QueryState
from quality.models import EditCheckSettings, Query
from registry.constants import Role
from registry.models import ReminderPolicy, Site

STAGE = "overdue"


def overdue_since(now: dt.datetime) -> Q:
    """Open queries raised more than their study's limit in whole days before `now` (as the worklist counts
    their age): one condition per study with its own limit, the default for the rest."""
    limits = dict(EditCheckSettings.objects.values_list("study_id", "query_age_limit_days"))
    condition = Q(created_at__lte=now - dt.timedelta(days=DEFAULT_AGE_LIMIT_DAYS + 1)) & ~Q(study_id__in=list(limits))
    for study_id, days in limits.items():
        condition |= Q(study_id=study_id, created_at__lte=now - dt.timedelta(days=days + 1))
    return Q(state=QueryState.OPEN) & condition


def overdue_queries_sweep(now: dt.datetime, report, dry_run: bool) -> None:
    """Insert one row per overdue query and coordinator of its patient's site: one read of the overdue
    queries, one of the coordinators, and batched INSERT ... ON CONFLICT DO NOTHING (a second sweep adds
    nothing)."""
    overdue = list(
        Query.objects.filter(overdue_since(now))
        .order_by("patient__site_id", "created_at", "pk")
        .values_list("pk", "patient__site_id", "study_id")
    )
    if not overdue:
        return
    sites = Site.objects.in_bulk({site for _, site, _ in overdue})
    today = {pk: recipients._site_today(site, now) for pk, site in sites.items()}
    coordinators = recipients.members_of_sites(today, Role.COORDINATOR)
    hours = dict(ReminderPolicy.objects.values_list("study_id", "send_hour"))
    default_hour = ReminderPolicy().send_hour
    rows = []
    for pk, site_id, study_id in overdue:
        report.considered += 1
        after = recipients.send_after(sites[site_id], today[site_id], hours.get(study_id, default_hour))
        rows.extend(
            Notification(
                kind=NotificationKind.QUERY_OVERDUE,
                object_id=pk,
                stage=STAGE,
                recipient_email=r.email,
                recipient_user_id=r.user_id,
                site_id=site_id,
                language=r.language,
                digest=r.digest,
                send_after=after,
            )
            for r in coordinators.get(site_id, [])
        )
    recipients._insert(rows, report, dry_run)


def still_applies(row: Notification, now: dt.datetime) -> str:
    """'' while the query is still open at the row's site and the recipient a coordinator there."""
    query = Query.objects.filter(pk=row.object_id).select_related("patient").first()
    if query is None:
        return "the query no longer exists"
    if query.state != QueryState.OPEN:
        return "the query was answered or closed"
    if query.patient.site_id != row.site_id:
        return "the patient moved to another site"
    if not recipients._recipient_still_applies(row, Role.COORDINATOR, recipients._site_today(row.site, now)):
        return "the recipient no longer receives these reminders"
    return ""


def describe(row: Notification, admin_url) -> dict:
    """What the item says: the subject code, the record and field, the question, since when it is open."""
    query = Query.objects.select_related("patient", "content_type").get(pk=row.object_id)
    now = timezone.now()
    return {
        "kind": row.kind,
        "stage": STAGE,
        "subject_code": query.patient.subject_code,
        "record": str(query.content_type.model_class()._meta.verbose_name),
        "field": query.field,
        "question": (question(query.rule, query.detail) if query.rule else "") or query.text,
        "opened": query.created_at.date(),
        "age": (now - query.created_at).days,
        "url": admin_url("admin:quality_query_change", query.pk),
    }
