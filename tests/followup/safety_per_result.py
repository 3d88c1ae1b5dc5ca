"""The safety rules as they were first written, one query per result: the reference that the set-based
queries of `followup.safety` are held to (tests/followup/test_safety_checks_at_scale.py)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

from followup import constants as c
from followup.computations import censored_text, plain
from followup.models import ComputedOutcome, Result
from followup.safety import CREATININE_RISE, PLATELETS_BELOW, WHITE_CELLS_BELOW, _creatinine_detail, _whole_years
from patients.constants import INACTIVE_STATUSES
from patients.models import TransplantEvent
from patients.services import local_date


def lab_findings() -> set[tuple]:
    """(kind, dedupe key, detail, patient, visit) of every lab finding, visit by visit and result by result."""
    findings = set()
    for outcome in ComputedOutcome.objects.select_related("visit"):
        visit = outcome.visit
        creat = outcome.changes.get("CREAT")
        if (
            creat
            and Decimal(creat["baseline"]) > 0
            and Decimal(creat["value"]) >= CREATININE_RISE * Decimal(creat["baseline"])
        ):
            key = f"creatinine_rise:visit:{visit.pk}"
            findings.add(("creatinine_rise", key, _creatinine_detail(creat, visit.code), visit.patient_id, visit.pk))
        if outcome.flare in ("mild_moderate", "severe"):
            detail = f"{outcome.flare.replace('_', '/')} flare at {visit.code}: SLEDAI-2K {plain(outcome.sledai)}"
            findings.add(("sledai_flare", f"sledai_flare:visit:{visit.pk}", detail, visit.patient_id, visit.pk))
    results = Result.objects.filter(visit__outcome__in=c.ENTERED_OUTCOMES, code__in=["PLT", "WBC", "PROT24H"])
    for result in results.select_related("visit"):
        visit = result.visit
        if result.code == "PLT" and result.value < PLATELETS_BELOW:
            detail = f"Platelets {result.shown_value} x 10^9/L at {visit.code}"
            findings.add(("thrombocytopenia", f"thrombocytopenia:visit:{visit.pk}", detail, visit.patient_id, visit.pk))
        elif result.code == "WBC" and result.value < WHITE_CELLS_BELOW:
            detail = f"White cells {result.shown_value} x 10^9/L at {visit.code}"
            findings.add(("leukopenia", f"leukopenia:visit:{visit.pk}", detail, visit.patient_id, visit.pk))
        elif result.code == "PROT24H":
            previous = (
                Result.objects.filter(
                    code="PROT24H",
                    visit__patient_id=visit.patient_id,
                    visit__outcome__in=c.ENTERED_OUTCOMES,
                    visit__actual_date__lt=visit.actual_date,
                )
                .order_by("-visit__actual_date")
                .values_list("value", "comparator")
                .first()
            )
            if previous and previous[0] > 0 and result.value >= 2 * previous[0]:
                detail = (
                    f"Proteinuria {result.shown_value} g/24h at {visit.code}, previously {censored_text(*previous)}"
                )
                key = f"proteinuria_doubling:visit:{visit.pk}"
                findings.add(("proteinuria_doubling", key, detail, visit.patient_id, visit.pk))
    return findings


def malignancy_findings(now: dt.datetime) -> set[tuple]:
    findings = set()
    firsts = (
        TransplantEvent.objects.filter(infusion_number=1)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .select_related("patient__site")
    )
    for first in firsts:
        site = first.patient.site
        today = now.astimezone(zoneinfo.ZoneInfo(site.time_zone)).date()
        years = _whole_years(local_date(first.infused_at, site), today)
        if years >= 1:
            key = f"malignancy_check:patient:{first.patient_id}:year:{years}"
            detail = f"Year {years} after MSCT: ask about malignancy (tumorigenicity watch)"
            findings.add(("malignancy_check", key, detail, first.patient_id, None))
    return findings
