"""Reads of the data quality app: a record's queries for its admin page, the worklist's open queries, and the
dashboard (per site and study: visits complete, in progress and overdue, the share of completed visits
verified against source, the completed visits awaiting the investigator's signature, open queries)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, F, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.constants import VisitOutcome
from followup.models import Result, Visit
from quality import constants as c
from quality.checks.rules import question
from quality.models import EditCheckSettings, Query, RecordKind
from quality.services.queries import can_act
from quality.services.review import active_signatures, active_verifications
from registry.models import Site, Study

LIVE = (c.QueryState.OPEN, c.QueryState.ANSWERED)
AGE_BUCKETS = ("week", "month", "older")


def _form_field(target_model, field: str) -> str:
    """The admin form field that shows a queried field or item."""
    if target_model is Result or field in ANALYTES:
        return f"{field}_value"
    if field in SLEDAI_ITEMS:
        return "sledai_items"
    return field


def record_queries(obj, record_type: str, *, user, record_url, memberships=None) -> dict:
    """A record's queries (live first), the links that raise one, and {form field: open queries} to mark.
    `memberships`: the user's (site id, role) pairs when the caller has read them (no query for them then)."""
    types = ContentType.objects.get_for_models(Visit, Result, type(obj))
    where = Q(content_type=types[type(obj)], object_id=obj.pk)
    results = []
    if isinstance(obj, Visit):
        results = list(Result.objects.filter(visit=obj).order_by("code").values_list("pk", "code"))
        where |= Q(content_type=types[Result], object_id__in=[pk for pk, _ in results])
    queries = list(Query.objects.filter(where).order_by("state", "-created_at").select_related("content_type"))
    now = timezone.now()
    marks: dict[str, int] = {}
    rows = []
    for query in queries:
        model = query.content_type.model_class()
        live = query.state in LIVE
        if live:
            name = _form_field(model, query.field)
            marks[name] = marks.get(name, 0) + 1
        rows.append(
            {
                "query": query,
                "question": question(query.rule, query.detail) if query.rule else query.text,
                "age": (now - query.created_at).days,
                "live": live,
                "url": reverse("admin:quality_query_change", args=[query.pk]),
            }
        )
    links = []
    patient_site = obj.site_id if record_type == "patient" else None
    if patient_site is None:
        patient_site = (obj.visit.patient if isinstance(obj, Result) else obj.patient).site_id
    if can_act(user, patient_site, c.RAISE_ROLES, memberships=memberships):
        back = urlencode({"next": record_url(type(obj), obj.pk)})
        links.append(("", reverse("admin:quality_query_raise", args=[record_type, obj.pk]) + f"?{back}"))
        for pk, code in results:
            url = reverse("admin:quality_query_raise", args=["result", pk])
            links.append((code, f"{url}?{urlencode({'field': code})}&{back}"))
    return {"rows": rows, "marks": marks, "raise_links": links, "open": sum(1 for r in rows if r["live"])}


def worklist_queries(*, user, limit: int = 50) -> list[dict]:
    """The open and answered queries of the user's sites, oldest first, with their age and the study's limit."""
    limit_of_study = EditCheckSettings.objects.filter(study_id=OuterRef("study_id")).values("query_age_limit_days")
    queries = list(
        Query.objects.for_user(user)
        .filter(state__in=LIVE)
        .select_related("patient__site", "content_type")
        .annotate(age_limit=Coalesce(Subquery(limit_of_study[:1]), Value(c.DEFAULT_AGE_LIMIT_DAYS)))
        .order_by("created_at")[:limit]
    )
    now = timezone.now()
    return [
        {
            "query": q,
            "question": question(q.rule, q.detail) if q.rule else q.text,
            "age": (now - q.created_at).days,
            "overdue": (now - q.created_at).days > q.age_limit,
        }
        for q in queries
    ]


def dashboard(*, user, now=None) -> list[dict]:
    """One row per (site, study) of the user's sites, in one query over the visits (four in all: the user's
    sites, the visits, the open queries, the studies).

    The visits are counted by their outcome, an open visit as overdue once its window ended before its site's
    today (followup/states.py: the state OVERDUE). Verified and signed are read as memberships of the active
    verifications' and signatures' sets (uncorrelated, so each is read once and probed per visit), not as a
    correlated subquery per visit."""
    sites = {site.pk: site for site in Site.objects.for_user(user)}
    visits = Visit.objects.for_user(user).with_state(now, sites=list(sites.values()))
    verified = active_verifications().filter(kind=RecordKind.VISIT, visit_id__isnull=False).values("visit_id")
    signed_visits = active_signatures().filter(kind=RecordKind.VISIT, visit_id__isnull=False).values("visit_id")
    signed_patients = active_signatures().filter(kind=RecordKind.PATIENT, patient_id__isnull=False).values("patient_id")
    completed = Q(outcome=VisitOutcome.COMPLETED)
    rows = (
        visits.values("patient__site_id", "patient__study_id")
        .annotate(
            complete=Count("pk", filter=completed),
            in_progress=Count("pk", filter=Q(outcome=VisitOutcome.IN_PROGRESS)),
            overdue=Count("pk", filter=Q(outcome=VisitOutcome.OPEN, window_end__lt=F("site_today"))),
            verified=Count("pk", filter=completed & Q(pk__in=verified)),
            unsigned=Count("pk", filter=completed & ~Q(pk__in=signed_visits) & ~Q(patient_id__in=signed_patients)),
        )
        .order_by("patient__site_id", "patient__study_id")
    )
    rows = list(rows)
    live = Query.objects.filter(state__in=LIVE, patient__site_id__in={r["patient__site_id"] for r in rows})
    now = now or timezone.now()
    week_ago, month_ago = now - timedelta(days=7), now - timedelta(days=30)
    counts = (
        live.values("patient__site_id", "study_id")
        .annotate(
            n=Count("pk"),
            week=Count("pk", filter=Q(created_at__gt=week_ago)),
            month=Count("pk", filter=Q(created_at__lte=week_ago, created_at__gt=month_ago)),
            older=Count("pk", filter=Q(created_at__lte=month_ago)),
        )
        .order_by()
    )
    open_queries = {(row["patient__site_id"], row["study_id"]): row for row in counts}
    studies = Study.objects.in_bulk({r["patient__study_id"] for r in rows})
    result = []
    for row in rows:
        site, study = sites[row["patient__site_id"]], studies[row["patient__study_id"]]
        result.append(
            {
                "site": site,
                "study": study,
                "complete": row["complete"],
                "in_progress": row["in_progress"],
                "overdue": row["overdue"],
                "verified": row["verified"],
                "verified_percent": round(100 * row["verified"] / row["complete"], 1) if row["complete"] else None,
                "signatures_pending": row["unsigned"],
                "open_queries": open_queries.get((site.pk, study.pk), {}).get("n", 0),
                # Open queries by age: under 7 days, 7 to 30 days, over 30 days.
                "queries_by_age": [open_queries.get((site.pk, study.pk), {}).get(k, 0) for k in AGE_BUCKETS],
            }
        )
    return result
