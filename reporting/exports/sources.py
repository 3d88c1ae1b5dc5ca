"""The site-scoped querysets the exports read, defined once for every format: the study's patients, visits,
results, computed outcomes and adverse events restricted to the job's sites, the first-infusion and
infusion-count subqueries they are annotated with, and `_stream`, which reads in chunks so that memory stays
flat however large the study grows."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, OuterRef, Subquery

from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.models import Patient, TransplantEvent
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


def _ae_rows(ctx: Context) -> Iterator[dict]:
    qs = (
        AdverseEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(
            day0_at=_first_infusion("patient_id"),
            last_at=_last_infusion("patient_id"),
            first_infusion_id=_first_infusion_id("patient_id"),
        )
        .order_by("patient__subject_code", "onset_date", "pk")
        .values(*AE_FIELDS, "pk", "patient_id", "transplant_id", "day0_at", "last_at", "first_infusion_id")
    )
    return _stream(qs)
