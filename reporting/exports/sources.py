"""The site-scoped querysets the exports read, defined once for every format: the study's patients, visits,
results, computed outcomes and adverse events restricted to the job's sites, the first-infusion and
infusion-count subqueries they are annotated with, and `_stream`, which reads in chunks so that memory stays
flat however large the study grows."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.models import Patient, TransplantEvent
from quality import constants as qc
from quality.models import Query, RecordKind
from quality.services.review import active_signatures, active_verifications
from reporting.exports.common import SERIOUS_FIELDS, Context

CHUNK_SIZE = 2000


def _first_infusion(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref), infusion_number=1).values("infused_at")[:1]
    )


def _last_infusion(patient_ref: str, field: str = "infused_at") -> Subquery:
    """A field of the patient's last infusion (the highest infusion number)."""
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref)).order_by("-infusion_number").values(field)[:1]
    )


def _count_infusions(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref))
        .order_by()
        .values("patient_id")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )


def _first_infusion_id(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref), infusion_number=1).values("pk")[:1]
    )


LIVE_QUERY_STATES = (qc.QueryState.OPEN, qc.QueryState.ANSWERED)


def _live_queries(model) -> QuerySet:
    """Open or answered queries on records of `model`, matched through the content type's names inside the
    statement (no content type lookup of its own)."""
    return Query.objects.filter(
        state__in=LIVE_QUERY_STATES,
        content_type__app_label=model._meta.app_label,
        content_type__model=model._meta.model_name,
    ).order_by()


def _count(queries, group: str) -> Coalesce:
    return Coalesce(
        Subquery(queries.order_by().values(group).annotate(n=Count("pk")).values("n")[:1]),
        Value(0),
        output_field=IntegerField(),
    )


def _quality(kind: str, ref: str = "pk") -> dict:
    """Annotations of a visit's, adverse event's or patient's data quality, as subqueries of the same statement:
    `dq_open_queries` (open or answered queries on the record; for a visit, also on its results),
    `dq_verified` (an uncleared source data verification) and `dq_signed` (an unvoided signature of the record
    itself). `ref` names the record's primary key in the annotated queryset."""
    field = {RecordKind.VISIT: "visit_id", RecordKind.ADVERSE_EVENT: "adverse_event_id"}.get(kind, "patient_id")
    own = Q(kind=kind, **{field: OuterRef(ref)})
    if kind == RecordKind.VISIT:
        results = Result.objects.filter(visit_id=OuterRef(OuterRef(ref))).values("pk")
        queries = Query.objects.filter(state__in=LIVE_QUERY_STATES, content_type__app_label="followup").filter(
            Q(content_type__model="visit", object_id=OuterRef(ref))
            | Q(content_type__model="result", object_id__in=results)
        )
    else:
        model = AdverseEvent if kind == RecordKind.ADVERSE_EVENT else Patient
        queries = _live_queries(model).filter(object_id=OuterRef(ref))
    return {
        "dq_open_queries": _count(queries, "patient_id"),
        "dq_verified": Exists(active_verifications().filter(own)),
        "dq_signed": Exists(active_signatures().filter(own)),
    }


def _result_queries(ref: str = "pk") -> Coalesce:
    """Open or answered queries on one result."""
    return _count(_live_queries(Result).filter(object_id=OuterRef(ref)), "patient_id")


def _yes(value) -> str:
    return "Y" if value else "N"


def _patients(ctx: Context):
    return Patient.objects.for_sites(ctx.site_ids).filter(study_id=ctx.study.pk)


def _visits(ctx: Context):
    return Visit.objects.for_sites(ctx.site_ids).filter(patient__study_id=ctx.study.pk)


def _results(ctx: Context):
    return Result.objects.for_sites(ctx.site_ids).filter(visit__patient__study_id=ctx.study.pk)


def _stream(queryset) -> Iterator[tuple]:
    return queryset.iterator(chunk_size=CHUNK_SIZE)


def _outcome_rows(ctx: Context):
    return (
        ComputedOutcome.objects.for_sites(ctx.site_ids)
        .filter(visit__patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code")
    )


AE_FIELDS = (
    "patient__site_id",
    "patient__subject_code",
    "term",
    "category",
    "onset_date",
    "resolution_date",
    "grade",
    *SERIOUS_FIELDS,
    "relatedness",
    "expected",
    "action_taken",
    "outcome",
    "aware_date",
    "initial_report_due",
    "initial_report_submitted_on",
    "complete_report_due",
    "complete_report_submitted_on",
    "transplant__infusion_number",
    "meddra_version",
    "meddra_llt_code",
    "meddra_llt",
    "meddra_pt_code",
    "meddra_pt",
    "meddra_hlt_code",
    "meddra_hlt",
    "meddra_hlgt_code",
    "meddra_hlgt",
    "meddra_soc_code",
    "meddra_soc",
)


def _ae_rows(ctx: Context, *, quality: bool = False) -> Iterator[dict]:
    """The study's adverse events as dicts (with `_quality`'s annotations when `quality`)."""
    qs = (
        AdverseEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(
            day0_at=_first_infusion("patient_id"),
            last_at=_last_infusion("patient_id"),
            first_infusion_id=_first_infusion_id("patient_id"),
            **(_quality(RecordKind.ADVERSE_EVENT) if quality else {}),
        )
        .order_by("patient__subject_code", "onset_date", "pk")
        .values(
            *AE_FIELDS,
            *("pk", "patient_id", "transplant_id", "day0_at", "last_at", "first_infusion_id"),
            *(("dq_open_queries", "dq_verified", "dq_signed") if quality else ()),
        )
    )
    return _stream(qs)
