"""The data quality dashboard: per site and study, the visits complete, in progress and overdue, the share of
completed visits verified against source, and the completed visits still awaiting the investigator's
signature; open queries where the queries model is installed."""

from __future__ import annotations

from django.apps import apps
from django.db.models import Count, Exists, OuterRef, Q

from followup.constants import VisitState
from followup.models import Visit
from quality.models import RecordKind
from quality.services.review import active_signatures, active_verifications
from registry.models import Site, Study


def _open_queries(site_id: int, study_id: int) -> int | None:
    """Open queries of the site's patients in the study; None when the queries model is not installed. The
    queries model names its patient (`patient`) and its state (`state`, open while not closed)."""
    try:
        query_model = apps.get_model("quality", "Query")
    except LookupError:
        return None
    return (
        query_model.objects.filter(patient__site_id=site_id, patient__study_id=study_id).exclude(state="closed").count()
    )


def dashboard(*, user, now=None) -> list[dict]:
    """One row per (site, study) of the user's sites, in one query over the visits."""
    visits = Visit.objects.for_user(user).with_state(now)
    verified = active_verifications().filter(kind=RecordKind.VISIT, visit_id=OuterRef("pk"))
    signed = active_signatures().filter(
        Q(kind=RecordKind.VISIT, visit_id=OuterRef("pk"))
        | Q(kind=RecordKind.PATIENT, patient_id=OuterRef("patient_id"))
    )
    completed = Q(state=VisitState.COMPLETED)
    rows = (
        visits.annotate(verified=Exists(verified), signed=Exists(signed))
        .values("patient__site_id", "patient__study_id")
        .annotate(
            complete=Count("pk", filter=completed),
            in_progress=Count("pk", filter=Q(state=VisitState.IN_PROGRESS)),
            overdue=Count("pk", filter=Q(state=VisitState.OVERDUE)),
            verified=Count("pk", filter=completed & Q(verified=True)),
            unsigned=Count("pk", filter=completed & Q(signed=False)),
        )
        .order_by("patient__site_id", "patient__study_id")
    )
    rows = list(rows)
    sites = Site.objects.in_bulk({r["patient__site_id"] for r in rows})
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
                "open_queries": _open_queries(site.pk, study.pk),
            }
        )
    return result
