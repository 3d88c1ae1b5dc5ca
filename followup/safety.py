"""Safety checks: findings for an investigator to review, each raised once, never an AE by itself.

Lab signals come from completed visits (creatinine >= 1.5 x baseline, platelets < 100 or white cells
< 3 x 10^9/L, proteinuria doubled since the previous measurement, a SLEDAI-2K flare by the outcome rules);
the yearly malignancy question comes due at each anniversary of day 0 while the patient is in follow-up.
A signal is accepted (which records an adverse event through the usual service), dismissed with a reason,
or, for the malignancy question, answered.

A censored result ("<10", ">2000") is read at its limit, and the detail shows it with its sign
(docs/clinical-rules.md, "Censored results").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DecimalField, F, Func, Q, ValueRange, Window, WindowFrameExclusion
from django.db.models.fields.json import KT
from django.db.models.functions import LastValue
from django.utils import timezone
from django.utils.translation import gettext
from simple_history.utils import bulk_create_with_history

from core import locks
from core.audit import current_audit_context
from followup import constants as c
from followup.computations import censored_text, plain
from followup.models import ComputedOutcome, Result, SafetyCheckRun, SafetySignal
from followup.services import ae_record
from patients.constants import INACTIVE_STATUSES
from patients.models import Patient, TransplantEvent
from registry.models import Study
from registry.services import ensure_can_write

logger = logging.getLogger(__name__)

CREATININE_RISE = Decimal("1.5")
PLATELETS_BELOW = Decimal("100")
WHITE_CELLS_BELOW = Decimal("3")
IMPORT_REASON = "Found by the study's first safety run: the data predate the checks, so it was not announced."


@dataclass(frozen=True, slots=True)
class Finding:
    patient_id: int
    visit_id: int | None
    kind: str
    dedupe_key: str
    detail: str
    severity: int = c.SignalSeverity.MODERATE
    study_id: int | None = None


def _creatinine_detail(change: dict, visit_code: str) -> str:
    value = change.get("comparator", "") + change["value"]
    return f"Creatinine {value} umol/L at {visit_code}, baseline {change.get('baseline_comparator', '')}{change['baseline']}"


class Numeric(Func):
    """A JSON text read as an exact number (PostgreSQL numeric without a scale, so nothing is rounded)."""

    template = "CAST(%(expressions)s AS NUMERIC)"
    output_field = DecimalField()


VISIT_COLUMNS = ("visit_id", "visit__patient_id", "visit__patient__study_id", "visit__code")


def _scoped(queryset, visit_ids):
    return queryset if visit_ids is None else queryset.filter(visit_id__in=visit_ids)


def creatinine_findings(visit_ids=None) -> list[Finding]:
    """Creatinine >= 1.5 x baseline, from the outcomes' changes (canonical units): one query."""
    rows = _scoped(
        ComputedOutcome.objects.annotate(
            creat_value=Numeric(KT("changes__CREAT__value")), creat_baseline=Numeric(KT("changes__CREAT__baseline"))
        ).filter(creat_baseline__gt=0, creat_value__gte=F("creat_baseline") * CREATININE_RISE),
        visit_ids,
    ).values_list(*VISIT_COLUMNS, "changes__CREAT")
    return [
        Finding(
            patient_id,
            visit_id,
            c.SignalKind.CREATININE_RISE,
            f"creatinine_rise:visit:{visit_id}",
            _creatinine_detail(change, code),
            c.SignalSeverity.HIGH,
            study_id,
        )
        for visit_id, patient_id, study_id, code, change in rows
    ]


def flare_findings(visit_ids=None) -> list[Finding]:
    """A mild/moderate or severe SLEDAI-2K flare by the outcome rules: one query."""
    rows = _scoped(ComputedOutcome.objects.filter(flare__in=["mild_moderate", "severe"]), visit_ids).values_list(
        *VISIT_COLUMNS, "flare", "sledai"
    )
    return [
        Finding(
            patient_id,
            visit_id,
            c.SignalKind.SLEDAI_FLARE,
            f"sledai_flare:visit:{visit_id}",
            f"{flare.replace('_', '/')} flare at {code}: SLEDAI-2K {plain(sledai)}",
            c.SignalSeverity.SEVERE if flare == "severe" else c.SignalSeverity.MODERATE,
            study_id,
        )
        for visit_id, patient_id, study_id, code, flare, sledai in rows
    ]


CYTOPENIAS = {
    "PLT": (PLATELETS_BELOW, c.SignalKind.THROMBOCYTOPENIA, "Platelets"),
    "WBC": (WHITE_CELLS_BELOW, c.SignalKind.LEUKOPENIA, "White cells"),
}


def cytopenia_findings(visit_ids=None) -> list[Finding]:
    """Platelets < 100 and white cells < 3 x 10^9/L at visits entered: one query for both."""
    low = Q()
    for code, (below, _, _) in CYTOPENIAS.items():
        low |= Q(code=code, value__lt=below)
    results = Result.objects.filter(low, visit__outcome__in=c.ENTERED_OUTCOMES).order_by()
    rows = _scoped(results, visit_ids).values_list(*VISIT_COLUMNS, "code", "value", "comparator")
    findings = []
    for visit_id, patient_id, study_id, visit_code, code, value, comparator in rows:
        _, kind, label = CYTOPENIAS[code]
        findings.append(
            Finding(
                patient_id,
                visit_id,
                kind,
                f"{kind}:visit:{visit_id}",
                f"{label} {censored_text(value, comparator)} x 10^9/L at {visit_code}",
                c.SignalSeverity.MODERATE,
                study_id,
            )
        )
    return findings


def _entered_results(code: str):
    return Result.objects.filter(code=code, visit__outcome__in=c.ENTERED_OUTCOMES).order_by()


def proteinuria_findings(visit_ids=None) -> list[Finding]:
    """24-h proteinuria at least twice the patient's previous measurement (the latest at an earlier date of a
    visit entered): one query, the previous value from a window over each patient's results by date."""
    earlier = {
        "partition_by": F("visit__patient_id"),
        "order_by": F("visit__actual_date").asc(),
        # Every row up to this date, less this date's own (the peers): the latest earlier date is last.
        "frame": ValueRange(start=None, end=0, exclusion=WindowFrameExclusion.GROUP),
    }
    results = _entered_results("PROT24H")
    if visit_ids is not None:
        # The whole history of the patients concerned, so that each result still sees its previous one.
        results = results.filter(
            visit__patient_id__in=Result.objects.filter(visit_id__in=visit_ids).values("visit__patient_id")
        )
    rows = (
        results.annotate(
            previous=Window(LastValue("value"), **earlier),
            previous_comparator=Window(LastValue("comparator"), **earlier),
        )
        .filter(previous__gt=0, value__gte=F("previous") * 2)
        .values_list(*VISIT_COLUMNS, "value", "comparator", "previous", "previous_comparator")
    )
    wanted = None if visit_ids is None else set(visit_ids)
    return [
        Finding(
            patient_id,
            visit_id,
            c.SignalKind.PROTEINURIA_DOUBLING,
            f"proteinuria_doubling:visit:{visit_id}",
            f"Proteinuria {censored_text(value, comparator)} g/24h at {code}, "
            f"previously {censored_text(previous, previous_comparator)}",
            c.SignalSeverity.MODERATE,
            study_id,
        )
        for visit_id, patient_id, study_id, code, value, comparator, previous, previous_comparator in rows
        if wanted is None or visit_id in wanted
    ]


def lab_findings(visit_ids=None) -> list[Finding]:
    """Findings from the results of visits entered (completed or in progress) and computed outcomes (optionally
    for some visits only): one set-based query per rule, whatever the size of the registry."""
    return (
        creatinine_findings(visit_ids)
        + flare_findings(visit_ids)
        + cytopenia_findings(visit_ids)
        + proteinuria_findings(visit_ids)
    )


def _whole_years(start: dt.date, today: dt.date) -> int:
    """Completed calendar years from `start` to `today` (an anniversary on 29 February falls on 1 March)."""
    years = today.year - start.year
    try:
        anniversary = start.replace(year=today.year)
    except ValueError:
        anniversary = dt.date(today.year, 3, 1)
    return years - 1 if today < anniversary else years


def malignancy_findings(now: dt.datetime) -> list[Finding]:
    """The yearly malignancy question, once per anniversary of day 0, for patients still in follow-up: one
    query (first infusions at least a year old), the anniversaries counted in each site's calendar."""
    firsts = (
        TransplantEvent.objects.filter(infusion_number=1, infused_at__lte=now - dt.timedelta(days=364))
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .values_list("patient_id", "patient__study_id", "infused_at", "patient__site__time_zone")
    )
    zones: dict[str, zoneinfo.ZoneInfo] = {}
    findings = []
    for patient_id, study_id, infused_at, zone_name in firsts:
        zone = zones.get(zone_name) or zones.setdefault(zone_name, zoneinfo.ZoneInfo(zone_name))
        years = _whole_years(infused_at.astimezone(zone).date(), now.astimezone(zone).date())
        if years >= 1:
            findings.append(
                Finding(
                    patient_id,
                    None,
                    c.SignalKind.MALIGNANCY_CHECK,
                    f"malignancy_check:patient:{patient_id}:year:{years}",
                    f"Year {years} after MSCT: ask about malignancy (tumorigenicity watch)",
                    c.SignalSeverity.ROUTINE,
                    study_id,
                )
            )
    return findings


# One run at a time ---------------------------------------------------------------------------------------

LOCK_NAME = "msct-registry:safety-checks"
LOCK_KEY = locks.lock_key(LOCK_NAME)  # the key of pg_try_advisory_lock on PostgreSQL


def single_run() -> contextlib.AbstractContextManager[bool]:
    """Hold the safety checks' lock for the block (core/locks.py): yields True when this run holds it, False
    when another run does (the caller then skips)."""
    return locks.single_run(LOCK_NAME)


# The sweep -----------------------------------------------------------------------------------------------


@dataclass
class SafetyReport:
    findings: int = 0
    raised: int = 0  # new signals and routine tasks left open
    imported: int = 0  # new findings of a study's first run, recorded as reviewed at import
    first_run_studies: tuple[str, ...] = ()


@transaction.atomic
def safety_sweep(*, now: dt.datetime | None = None, dry_run: bool = False) -> SafetyReport:
    """Record every finding not recorded before (the dedupe key is unique: a second sweep raises nothing).

    A study's first run records what it finds as reviewed at import (status `imported`): that history
    predates the checks and is not announced; from the next run on, new findings stay open for review.
    Callers hold `single_run()` so that two runs never compete for the same findings.
    """
    now = now or timezone.now()
    findings = lab_findings() + malignancy_findings(now)
    report = SafetyReport(findings=len(findings))
    existing = set(SafetySignal.objects.values_list("dedupe_key", flat=True))
    new = [f for f in findings if f.dedupe_key not in existing]
    studies = dict(Study.objects.values_list("pk", "code"))
    checked = set(SafetyCheckRun.objects.values_list("study_id", flat=True).distinct())
    first = {pk for pk in studies if pk not in checked}
    report.first_run_studies = tuple(sorted(studies[pk] for pk in first))
    report.imported = sum(f.study_id in first for f in new)
    report.raised = len(new) - report.imported
    if dry_run:
        return report
    ctx = current_audit_context()
    signals = [
        SafetySignal(
            patient_id=f.patient_id,
            visit_id=f.visit_id,
            kind=f.kind,
            severity=f.severity,
            dedupe_key=f.dedupe_key,
            detail=f.detail[:300],
            **(
                {"status": c.SignalStatus.IMPORTED, "review_reason": IMPORT_REASON, "reviewed_at": now}
                if f.study_id in first
                else {}
            ),
        )
        for f in new
    ]
    # Every row has its history row (door and actor from the audit context), written in bulk.
    bulk_create_with_history(
        signals,
        SafetySignal,
        batch_size=2000,
        default_change_reason="raised by the safety checks",
        custom_historical_attrs={"history_door": ctx.door, "history_actor": ctx.actor},
    )
    per_study: dict[int, list[int]] = {pk: [0, 0, 0] for pk in studies}
    for f in findings:
        if f.study_id in per_study:
            per_study[f.study_id][0] += 1
    for f in new:
        if f.study_id in per_study:
            per_study[f.study_id][2 if f.study_id in first else 1] += 1
    SafetyCheckRun.objects.bulk_create(
        SafetyCheckRun(study_id=pk, started_at=now, findings=n, raised=raised, imported=imported)
        for pk, (n, raised, imported) in per_study.items()
    )
    if report.imported:
        logger.info(
            "safety checks: first run for %s: %d finding(s) recorded as reviewed at import",
            ", ".join(report.first_run_studies),
            report.imported,
        )
    return report


# Review ------------------------------------------------------------------------------------------------


def _open_signal(signal: SafetySignal, actor) -> SafetySignal:
    signal = SafetySignal.objects.select_for_update().select_related("patient").get(pk=signal.pk)
    ensure_can_write(actor, signal.patient.site_id, field="patient")
    if signal.status != c.SignalStatus.OPEN:
        raise ValidationError(
            {
                "status": gettext("This signal was already reviewed (%(status)s).")
                % {"status": signal.get_status_display()}
            }
        )
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
        raise ValidationError({"review_reason": gettext("Give the reason for dismissing the signal.")})
    status = c.SignalStatus.ANSWERED if signal.kind == c.SignalKind.MALIGNANCY_CHECK else c.SignalStatus.DISMISSED
    return _close(signal, status, reason, actor)


@transaction.atomic
def signal_accept(*, signal: SafetySignal, actor=None, **ae_fields) -> SafetySignal:
    """Accept a signal as an adverse event: the AE is recorded through `ae_record`, with its own rules."""
    signal = _open_signal(signal, actor)
    ae = ae_record(patient=Patient.objects.get(pk=signal.patient_id), actor=actor, **ae_fields)
    signal.adverse_event = ae
    return _close(signal, c.SignalStatus.ACCEPTED, ae_fields.get("description", ""), actor)
