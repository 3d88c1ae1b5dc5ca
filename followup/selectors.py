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
