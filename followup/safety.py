"""Safety checks: findings for an investigator to review, each raised once, never an AE by itself.

Lab signals come from completed visits (creatinine >= 1.5 x baseline, platelets < 100 or white cells
< 3 x 10^9/L, proteinuria doubled since the previous measurement, a SLEDAI-2K flare by the outcome rules);
the yearly malignancy question comes due at each anniversary of day 0 while the patient is in follow-up.
A signal is accepted (which records an adverse event through the usual service), dismissed with a reason,
or, for the malignancy question, answered.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from followup import constants as c
from followup.computations import plain
from followup.models import ComputedOutcome, Result, SafetySignal
from followup.services import ae_record
from patients.constants import INACTIVE_STATUSES
from patients.models import Patient, TransplantEvent
from patients.services import local_date
from registry.services import ensure_can_write

CREATININE_RISE = Decimal("1.5")
PLATELETS_BELOW = Decimal("100")
WHITE_CELLS_BELOW = Decimal("3")


@dataclass(frozen=True)
class Finding:
    patient_id: int
    visit_id: int | None
    kind: str
    dedupe_key: str
    detail: str


def lab_findings(visit_ids=None) -> list[Finding]:
    """Findings from the results of visits entered (completed or in progress) and computed outcomes (optionally for some visits only)."""
    findings: list[Finding] = []
    outcomes = ComputedOutcome.objects.select_related("visit")
    results = Result.objects.filter(visit__outcome__in=c.ENTERED_OUTCOMES, code__in=["PLT", "WBC", "PROT24H"])
    if visit_ids is not None:
        outcomes = outcomes.filter(visit_id__in=visit_ids)
        results = results.filter(visit_id__in=visit_ids)
    for outcome in outcomes.iterator(chunk_size=2000):
        visit = outcome.visit
        creat = outcome.changes.get("CREAT")
        if (
            creat
            and Decimal(creat["baseline"]) > 0
            and Decimal(creat["value"]) >= CREATININE_RISE * Decimal(creat["baseline"])
        ):
            findings.append(
                Finding(
                    visit.patient_id,
                    visit.pk,
                    c.SignalKind.CREATININE_RISE,
                    f"creatinine_rise:visit:{visit.pk}",
                    f"Creatinine {creat['value']} umol/L at {visit.code}, baseline {creat['baseline']}",
                )
            )
        if outcome.flare in ("mild_moderate", "severe"):
            findings.append(
                Finding(
                    visit.patient_id,
                    visit.pk,
                    c.SignalKind.SLEDAI_FLARE,
                    f"sledai_flare:visit:{visit.pk}",
                    f"{outcome.flare.replace('_', '/')} flare at {visit.code}: SLEDAI-2K {plain(outcome.sledai)}",
                )
            )
    for result in results.select_related("visit").iterator(chunk_size=2000):
        visit = result.visit
        if result.code == "PLT" and result.value < PLATELETS_BELOW:
            findings.append(
                Finding(
                    visit.patient_id,
                    visit.pk,
                    c.SignalKind.THROMBOCYTOPENIA,
                    f"thrombocytopenia:visit:{visit.pk}",
                    f"Platelets {plain(result.value)} x 10^9/L at {visit.code}",
                )
            )
        elif result.code == "WBC" and result.value < WHITE_CELLS_BELOW:
            findings.append(
                Finding(
                    visit.patient_id,
                    visit.pk,
                    c.SignalKind.LEUKOPENIA,
                    f"leukopenia:visit:{visit.pk}",
                    f"White cells {plain(result.value)} x 10^9/L at {visit.code}",
                )
            )
        elif result.code == "PROT24H":
            previous = (
                Result.objects.filter(
                    code="PROT24H",
                    visit__patient_id=visit.patient_id,
                    visit__outcome__in=c.ENTERED_OUTCOMES,
                    visit__actual_date__lt=visit.actual_date,
                )
                .order_by("-visit__actual_date")
                .values_list("value", flat=True)
                .first()
            )
            if previous and previous > 0 and result.value >= 2 * previous:
                findings.append(
                    Finding(
                        visit.patient_id,
                        visit.pk,
                        c.SignalKind.PROTEINURIA_DOUBLING,
                        f"proteinuria_doubling:visit:{visit.pk}",
                        f"Proteinuria {plain(result.value)} g/24h at {visit.code}, previously {plain(previous)}",
                    )
                )
    return findings


def _whole_years(start: dt.date, today: dt.date) -> int:
    """Completed calendar years from `start` to `today` (an anniversary on 29 February falls on 1 March)."""
    years = today.year - start.year
    try:
        anniversary = start.replace(year=today.year)
    except ValueError:
        anniversary = dt.date(today.year, 3, 1)
    return years - 1 if today < anniversary else years


def malignancy_findings(now: dt.datetime) -> list[Finding]:
    """The yearly malignancy question, once per anniversary of day 0, for patients still in follow-up."""
    findings = []
    firsts = (
        TransplantEvent.objects.filter(infusion_number=1)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .select_related("patient__site")
    )
    for first in firsts.iterator(chunk_size=2000):
        site = first.patient.site
        today = now.astimezone(zoneinfo.ZoneInfo(site.time_zone)).date()
        day_zero = local_date(first.infused_at, site)
        years = _whole_years(day_zero, today)
        if years >= 1:
            findings.append(
                Finding(
                    first.patient_id,
                    None,
                    c.SignalKind.MALIGNANCY_CHECK,
                    f"malignancy_check:patient:{first.patient_id}:year:{years}",
                    f"Year {years} after MSCT: ask about malignancy (tumorigenicity watch)",
                )
            )
    return findings


@dataclass
class SafetyReport:
    findings: int = 0
    raised: int = 0


@transaction.atomic
def safety_sweep(*, now: dt.datetime | None = None, dry_run: bool = False) -> SafetyReport:
    """Raise every signal not raised before (the dedupe key is unique: a second sweep raises nothing)."""
    now = now or timezone.now()
    findings = lab_findings() + malignancy_findings(now)
    report = SafetyReport(findings=len(findings))
    existing = set(
        SafetySignal.objects.filter(dedupe_key__in=[f.dedupe_key for f in findings]).values_list(
            "dedupe_key", flat=True
        )
    )
    new = [f for f in findings if f.dedupe_key not in existing]
    if dry_run:
        report.raised = len(new)
        return report
    for finding in new:
        # One row each so that the audit trail records it; the unique key still holds against a race.
        signal, created = SafetySignal.objects.get_or_create(
            dedupe_key=finding.dedupe_key,
            defaults={
                "patient_id": finding.patient_id,
                "visit_id": finding.visit_id,
                "kind": finding.kind,
                "detail": finding.detail[:300],
            },
        )
        report.raised += int(created)
    return report


# Review ------------------------------------------------------------------------------------------------


def _open_signal(signal: SafetySignal, actor) -> SafetySignal:
    signal = SafetySignal.objects.select_for_update().select_related("patient").get(pk=signal.pk)
    ensure_can_write(actor, signal.patient.site_id, field="patient")
    if signal.status != c.SignalStatus.OPEN:
        raise ValidationError({"status": f"This signal was already reviewed ({signal.get_status_display()})."})
    return signal


def _close(signal: SafetySignal, status: str, reason: str, actor) -> SafetySignal:
    signal.status, signal.review_reason = status, reason
    signal.reviewed_by = actor if getattr(actor, "pk", None) else None
    signal.reviewed_at = timezone.now()
    signal._change_reason = reason or status
    signal.full_clean()
    signal.save()
    return signal


@transaction.atomic
def signal_dismiss(*, signal: SafetySignal, reason: str, actor=None) -> SafetySignal:
    signal = _open_signal(signal, actor)
    if not reason.strip():
        raise ValidationError({"review_reason": "Give the reason for dismissing the signal."})
    status = c.SignalStatus.ANSWERED if signal.kind == c.SignalKind.MALIGNANCY_CHECK else c.SignalStatus.DISMISSED
    return _close(signal, status, reason, actor)


@transaction.atomic
def signal_accept(*, signal: SafetySignal, actor=None, **ae_fields) -> SafetySignal:
    """Accept a signal as an adverse event: the AE is recorded through `ae_record`, with its own rules."""
    signal = _open_signal(signal, actor)
    ae = ae_record(patient=Patient.objects.get(pk=signal.patient_id), actor=actor, **ae_fields)
    signal.adverse_event = ae
    return _close(signal, c.SignalStatus.ACCEPTED, ae_fields.get("description", ""), actor)
