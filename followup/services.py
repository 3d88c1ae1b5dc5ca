"""Writes of the followup app: the visit schedule, recording visits and results, computed outcomes, and
adverse events with their expedited-reporting clock."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import bulk_create_audited, history_of_rows
from core.bulk import insert_values, update_rows, upsert_values, without_jit
from followup import constants as c
from followup import outcomes
from followup.catalogue import ANALYTES
from followup.computations import egfr_ckd_epi_2021, plain, sledai_total, to_canonical
from followup.constants import VisitOutcome
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from followup.states import site_today
from patients.constants import DoseUnit, Drug, Frequency, PatientStatus
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.services import local_date, patient_record_death
from registry.models import OutcomeSettings, Site, Study, VisitDefinition
from registry.services import ensure_can_write

# Schedule ----------------------------------------------------------------------------------------------


def _visit_from(definition: VisitDefinition, patient: Patient, day_zero: dt.date) -> Visit:
    target = day_zero + dt.timedelta(days=definition.offset_days)
    return Visit(
        patient=patient,
        definition=definition,
        code=definition.code,
        label=definition.label,
        target_date=target,
        window_start=target - dt.timedelta(days=definition.window_before_days),
        window_end=target + dt.timedelta(days=definition.window_after_days),
    )


@transaction.atomic
def visits_schedule(*, patient: Patient, day_zero: dt.date) -> list[Visit]:
    """Instantiate the study's template for a patient from day 0. Existing visits are left as they are."""
    existing = set(patient.visits.values_list("code", flat=True))
    visits = [
        _visit_from(definition, patient, day_zero)
        for definition in VisitDefinition.objects.filter(study_id=patient.study_id).order_by("offset_days")
        if definition.code not in existing
    ]
    for visit in visits:
        visit.full_clean(exclude=["patient", "definition"], validate_unique=False, validate_constraints=False)
    bulk_create_audited(Visit, visits, reason=f"scheduled from day 0 {day_zero.isoformat()}")
    if visits and not patient.is_active:
        visits_take_out(patient=patient, on_date=patient.status_date, reason=patient.status_reason or patient.status)
    return visits


@transaction.atomic
def visits_move_day_zero(*, patient: Patient, day_zero: dt.date) -> int:
    """Day 0 moved: move every open scheduled visit to the new day 0 (recorded visits stay as recorded)."""
    moved = 0
    open_visits = patient.visits.filter(outcome=VisitOutcome.OPEN, definition__isnull=False)
    for visit in open_visits.select_related("definition"):
        fresh = _visit_from(visit.definition, patient, day_zero)
        visit.target_date, visit.window_start, visit.window_end = (
            fresh.target_date,
            fresh.window_start,
            fresh.window_end,
        )
        visit._change_reason = f"day 0 moved to {day_zero.isoformat()}"
        visit.save(update_fields=["target_date", "window_start", "window_end", "updated_at"])
        moved += 1
    outcomes_recompute(patient=patient)
    return moved


@transaction.atomic
def visits_take_out(*, patient: Patient, on_date: dt.date, reason: str) -> int:
    """Mark every open visit whose window has not closed by `on_date` as not required.

    Visits whose window closed before the patient left stay as they are: they were due while the patient
    was in follow-up, and only a coordinator can say whether they were missed.
    """
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for taking visits out of the schedule."})
    note = f"{patient.get_status_display()} on {on_date.isoformat()}: {reason}"
    visits = list(patient.visits.filter(outcome=VisitOutcome.OPEN, window_end__gte=on_date))
    for visit in visits:
        visit.outcome, visit.outcome_reason = VisitOutcome.NOT_REQUIRED, note
        visit._change_reason = note
        visit.save(update_fields=["outcome", "outcome_reason", "updated_at"])
    return len(visits)


# Recording visits --------------------------------------------------------------------------------------

ResultsInput = Mapping[str, object]


def _parse_results(results: ResultsInput | None) -> dict[str, tuple[object, str | None]]:
    """Accept {code: value}, {code: (value, unit)} or {code: {"value": v, "unit": u}}."""
    parsed: dict[str, tuple[object, str | None]] = {}
    for code, entry in (results or {}).items():
        if isinstance(entry, Mapping):
            parsed[code] = (entry.get("value"), entry.get("unit"))
        elif isinstance(entry, tuple | list):
            parsed[code] = (entry[0], entry[1] if len(entry) > 1 else None)
        else:
            parsed[code] = (entry, None)
    return parsed


def _check_visit_date(visit: Visit, actual_date: dt.date | None, deviation_reason: str) -> None:
    patient = visit.patient
    if actual_date is None:
        raise ValidationError({"actual_date": "Give the date the visit took place."})
    if actual_date > site_today(patient.site):
        raise ValidationError({"actual_date": "The visit date cannot be in the future."})
    if (
        patient.status in {PatientStatus.DECEASED, PatientStatus.WITHDRAWN}
        and patient.status_date
        and actual_date > patient.status_date
    ):
        raise ValidationError(
            {
                "actual_date": f"Patient {patient.subject_code} is {patient.get_status_display().lower()} since "
                f"{patient.status_date.isoformat()}; a visit after that cannot be recorded."
            }
        )
    outside = not (visit.window_start <= actual_date <= visit.window_end)
    if outside and not deviation_reason.strip():
        raise ValidationError(
            {
                "actual_date": f"{actual_date.isoformat()} is outside the window of visit {visit.code} "
                f"({visit.window_start.isoformat()} to {visit.window_end.isoformat()}); "
                "give a deviation reason to record it anyway."
            },
            code="window",
        )


def _age_at(patient: Patient, on_date: dt.date) -> int:
    # Only the birth year is kept (pseudonymity), so the age is the difference of years.
    return on_date.year - patient.birth_year


@dataclass
class VisitEntry:
    """What is submitted for one visit: its date, results and SLEDAI-2K items, and why (for a correction)."""

    actual_date: dt.date | None
    results: ResultsInput | None = None
    sledai_items: Iterable[str] | None = None
    deviation_reason: str = ""
    remove: Iterable[str] = ()
    reason: str = ""


@dataclass
class _Recording:
    """A checked entry, ready to store: the visit (its fields set), its stored results and the new values."""

    visit: Visit
    existing: dict[str, Result]
    converted: dict[str, tuple[Decimal, Decimal | None, str, bool]]
    remove: set[str]
    reason: str
    since: dt.date | None  # outcomes from this date on may change (None: all of the patient's, a baseline)
    correction: bool  # of a visit already recorded, missed or not required (which may have had an outcome)

    def results_stored(self) -> dict[str, tuple[Decimal, Decimal | None, str, bool]]:
        """Once stored: the visit's results by code, as (value, entered value, entered unit, derived)."""
        kept = {
            code: (row.value, row.entered_value, row.entered_unit, row.derived)
            for code, row in self.existing.items()
            if code not in self.remove
        }
        return {**kept, **self.converted}


VISIT_RECORD_FIELDS = ["actual_date", "deviation_reason", "outcome", "outcome_reason", "sledai_items", "updated_at"]
RESULT_VALUE_FIELDS = ["value", "entered_value", "entered_unit", "derived", "updated_at"]
NEW_RESULT_FIELDS = ("created_at", "updated_at", "visit_id", "code", *RESULT_VALUE_FIELDS[:4])


def _check_recording(visit: Visit, existing: dict[str, Result], entry: VisitEntry) -> _Recording:
    """Every rule of recording one visit, without touching the database: the visit's fields are set, the
    results converted; a ValidationError names each field at fault."""
    patient = visit.patient
    reason = entry.reason or ""
    correcting = visit.outcome != VisitOutcome.OPEN
    if correcting and not reason.strip():
        raise ValidationError(
            {
                "reason": f"Visit {visit.code} is already {visit.get_outcome_display().lower()}; "
                "give a reason for the correction."
            }
        )
    actual_date, deviation_reason = entry.actual_date, entry.deviation_reason or ""
    _check_visit_date(visit, actual_date, deviation_reason)

    errors: dict[str, list[str]] = {}
    converted: dict[str, tuple[Decimal, Decimal | None, str, bool]] = {}
    for code, (value, unit) in _parse_results(entry.results).items():
        try:
            canonical = to_canonical(code, value, unit)
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                errors.setdefault(key, []).extend(messages)
            continue
        converted[code] = (canonical, Decimal(str(value)), unit or ANALYTES[code].unit, False)

    items = None if entry.sledai_items is None else sorted(set(entry.sledai_items))
    if items is not None:
        try:
            total = Decimal(sledai_total(items))
        except ValidationError as exc:
            errors.setdefault("sledai_items", []).extend(exc.message_dict["sledai_items"])
        else:
            if "SLEDAI2K" in converted and converted["SLEDAI2K"][0] != total:
                errors.setdefault("SLEDAI2K", []).append(
                    f"SLEDAI2K: the submitted total {plain(converted['SLEDAI2K'][1])} disagrees with the "
                    f"items recorded, which sum to {total}."
                )
            converted["SLEDAI2K"] = (total, total, "points", True)

    remove = set(entry.remove or ())
    unknown_removals = [code for code in entry.remove or () if code not in existing]
    if unknown_removals:
        errors.setdefault("remove", []).append(f"No result {', '.join(unknown_removals)} to remove at this visit.")
    if remove and not reason.strip():
        errors.setdefault("reason", []).append("Give a reason for removing a result.")

    # eGFR from creatinine (this submission's, or the one already stored and not being removed).
    creatinine = converted.get("CREAT", (None,))[0]
    if creatinine is None and "CREAT" not in remove and "CREAT" in existing:
        creatinine = existing["CREAT"].value
    if creatinine is not None and "CREAT" not in errors:
        egfr = egfr_ckd_epi_2021(creatinine_umol_l=creatinine, age=_age_at(patient, actual_date), sex=patient.sex)
        submitted = converted.get("EGFR")
        if submitted and not submitted[3] and abs(submitted[0] - egfr) > 1:
            errors.setdefault("EGFR", []).append(
                f"EGFR: the submitted {plain(submitted[1])} disagrees with {egfr} computed from creatinine "
                "by CKD-EPI 2021; leave eGFR out and the registry computes it."
            )
        converted["EGFR"] = (egfr, None, "computed", True)
    if errors:
        raise ValidationError(errors)

    if "CREAT" in remove and "CREAT" not in converted:
        remove.add("EGFR")  # the eGFR computed from the creatinine goes with it
    if items is not None:
        visit.sledai_items = items
    elif "SLEDAI2K" in converted:
        visit.sledai_items = None  # total only
    elif "SLEDAI2K" in remove:
        visit.sledai_items = None  # no items without their total
    # An outcome depends on the baseline and on the visits up to its own (`outcomes.compute_outcomes`): a
    # visit moved or changed on a date can change the outcomes from that date on, a baseline visit all.
    since = None if visit.code == "BL" else min(d for d in (visit.actual_date, actual_date) if d is not None)
    visit.actual_date, visit.deviation_reason = actual_date, deviation_reason
    visit.outcome, visit.outcome_reason = VisitOutcome.COMPLETED, ""
    return _Recording(
        visit=visit,
        existing=dict(existing),
        converted=converted,
        remove=remove,
        reason=reason,
        since=since,
        correction=correcting,
    )


def _outcomes_since(recordings: list[_Recording]) -> dict[int, dt.date | None]:
    """Per patient, the date from which the recordings can have changed outcomes (None: every outcome)."""
    since: dict[int, dt.date | None] = {}
    for recording in recordings:
        patient_id, date = recording.visit.patient_id, recording.since
        if patient_id not in since:
            since[patient_id] = date
        elif since[patient_id] is not None:
            since[patient_id] = None if date is None else min(since[patient_id], date)
    return since


def _store_recordings(recordings: list[_Recording]) -> None:
    """Write checked recordings in a fixed number of statements, whatever their number: the visits, their new,
    changed and removed results, and a history row for each (with the reason for a correction)."""
    now = timezone.now()
    visits = [recording.visit for recording in recordings]
    for visit in visits:
        visit.updated_at = now
    update_rows(Visit, visits, VISIT_RECORD_FIELDS)
    history_of_rows(Visit, [v.pk for v in visits], reasons=[r.reason for r in recordings], update=True, date=now)

    new, reasons = [], []  # new results as rows of NEW_RESULT_FIELDS (no instance is built)
    changed, changed_reasons = [], []
    for recording in recordings:
        existing = recording.existing
        for code in sorted(recording.remove & existing.keys()):
            row = existing.pop(code)
            row._change_reason = recording.reason
            row.delete()
        for code, (canonical, entered, unit, derived) in recording.converted.items():
            row = existing.get(code)
            if row is None:
                new.append((now, now, recording.visit.pk, code, canonical, entered, unit, derived))
                reasons.append(recording.reason)
                continue
            if (row.value, row.entered_value, row.entered_unit, row.derived) == (canonical, entered, unit, derived):
                continue
            row.value, row.entered_value, row.entered_unit, row.derived = canonical, entered, unit, derived
            row.updated_at = now
            changed.append(row)
            changed_reasons.append(recording.reason)
    history_of_rows(Result, insert_values(Result, NEW_RESULT_FIELDS, new, keys=True), reasons=reasons, date=now)
    update_rows(Result, changed, RESULT_VALUE_FIELDS)
    history_of_rows(Result, [r.pk for r in changed], reasons=changed_reasons, update=True, date=now)


@transaction.atomic
def visit_record(
    *,
    visit: Visit,
    actual_date: dt.date,
    results: ResultsInput | None = None,
    sledai_items: Iterable[str] | None = None,
    deviation_reason: str = "",
    remove: Iterable[str] = (),
    reason: str = "",
    actor=None,
) -> Visit:
    """Record (or correct) a visit's date and results together: all are stored, or none.

    Results are converted to canonical units; a value in an unknown unit or out of range is refused. SLEDAI-2K
    items, when given, make the total; a submitted total that disagrees is refused; a total alone is kept
    as "total only". eGFR is computed from creatinine. A visit already recorded, missed or not required can
    be corrected only with a reason. Outcomes of the patient are recomputed.
    """
    visit = _locking_visits().get(pk=visit.pk)
    ensure_can_write(actor, visit.patient.site_id, field="visit")
    return _record_locked(visit, VisitEntry(actual_date, results, sledai_items, deviation_reason, remove, reason))


@transaction.atomic
def visit_record_by_key(*, site: Site, study_code: str, subject_code: str, visit_code: str, entry: VisitEntry) -> Visit:
    """`visit_record` for the visit named by study, subject code and visit code at one site (a partner's
    natural key); a patient or visit not at that site is refused as unknown. `site`: the caller's, as loaded
    (it is not read again)."""
    try:  # `get`, not `first`: no ordering (a visit's default order joins its patient's study to sort)
        visit = _locking_visits(with_site=False).get(
            patient__site_id=site.pk,
            patient__study__code=study_code,
            patient__subject_code=subject_code,
            code=visit_code,
        )
    except Visit.DoesNotExist:
        known = Patient.objects.filter(site_id=site.pk, study__code=study_code, subject_code=subject_code).exists()
        raise ValidationError(_unknown_visit(study_code, subject_code, visit_code, patient_known=known)) from None
    visit.patient.site = site
    return _record_locked(visit, entry)


def _locking_visits(*, with_site: bool = True):
    # Only the visit's row is locked: two writers at one site do not queue on the site's (or study's) row. The
    # study's outcome definitions come along, for the outcomes (`_outcome_definitions_of`).
    related = ["patient__study__outcome_settings", *(["patient__site"] if with_site else [])]
    return Visit.objects.select_for_update(of=("self",)).select_related(*related)


def _record_locked(visit: Visit, entry: VisitEntry) -> Visit:
    existing = {r.code: r for r in Result.objects.filter(visit=visit).order_by()}
    recordings = [_check_recording(visit, existing, entry)]
    _store_recordings(recordings)
    outcomes_recompute_patients(
        [visit.patient_id],
        since=_outcomes_since(recordings),
        known=[visit.patient],
        prune=recordings[0].correction,
        recorded=[visit.pk],
    )
    visit.results_stored = recordings[0].results_stored()
    return visit


def _unknown_visit(study_code: str, subject: str, code: str, *, patient_known: bool) -> dict[str, str]:
    if not patient_known:
        return {"subject_code": f"No patient {subject} of study {study_code} at your site."}
    return {"visit_code": f"Patient {subject} has no visit {code}."}


@transaction.atomic
def visits_record_batch(*, site: Site, study_code: str, entries: list[tuple[str, str, VisitEntry]]) -> list[Visit]:
    """Record many visits of one study at one site, each named by (subject code, visit code): all are stored,
    or none. The rules are `visit_record`'s, visit by visit; the reads and writes are a fixed number of
    statements for the whole batch. Errors are named `visits.<index>.<field>` (the index in `entries`)."""
    if len(entries) > c.MAX_BATCH_VISITS:
        raise ValidationError(
            {"visits": f"At most {c.MAX_BATCH_VISITS} visits in one batch; send the rest in another."}
        )
    without_jit()
    errors: dict[str, list[str]] = {}
    first_at: dict[tuple[str, str], int] = {}
    for index, (subject, code, _) in enumerate(entries):
        if (subject, code) in first_at:
            errors.setdefault(f"visits.{index}.visit_code", []).append(
                f"Visit {code} of {subject} is already at visits.{first_at[subject, code]} of this batch; send it once."
            )
        first_at.setdefault((subject, code), index)
    subjects = sorted({subject for subject, _, _ in entries})
    wanted = set(first_at)
    candidates = Visit.objects.filter(
        patient__site_id=site.pk,
        patient__study__code=study_code,
        patient__subject_code__any=subjects,
        code__any=sorted({code for _, code, _ in entries}),
    ).values_list("pk", "patient__subject_code", "code")
    # The batch's patients are read once, not joined to every visit; their one site is the caller's.
    patients = {
        p.pk: p
        for p in Patient.objects.filter(site_id=site.pk, study__code=study_code, subject_code__any=subjects).order_by()
    }
    for patient in patients.values():
        patient.site = site
    known = {patient.subject_code for patient in patients.values()}
    visits = {}
    for visit in (
        Visit.objects.select_for_update(of=("self",))
        .filter(pk__any=[pk for pk, subject, code in candidates if (subject, code) in wanted])
        .order_by("pk")
    ):
        patient = patients.get(visit.patient_id)  # None: moved since it was read (the visit is then unknown)
        if patient is not None:
            visit.patient = patient
            visits[patient.subject_code, visit.code] = visit
    existing: dict[int, dict[str, Result]] = {v.pk: {} for v in visits.values()}
    for row in Result.objects.filter(visit_id__any=list(existing)).order_by():
        existing[row.visit_id][row.code] = row
    recordings = []
    for index, (subject, code, entry) in enumerate(entries):
        visit = visits.get((subject, code))
        if visit is None:
            for field, text in _unknown_visit(study_code, subject, code, patient_known=subject in known).items():
                errors.setdefault(f"visits.{index}.{field}", []).append(text)
            continue
        if first_at[subject, code] != index:
            continue
        try:
            recordings.append(_check_recording(visit, existing[visit.pk], entry))
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors.setdefault(f"visits.{index}.{field}", []).extend(messages)
    if errors:
        raise ValidationError(errors)
    if recordings:
        _store_recordings(recordings)
        outcomes_recompute_patients(
            {r.visit.patient_id for r in recordings},
            since=_outcomes_since(recordings),
            known=[r.visit.patient for r in recordings],
            prune=any(r.correction for r in recordings),
            recorded=[r.visit.pk for r in recordings],
        )
    return [r.visit for r in recordings]


@transaction.atomic
def visit_record_unscheduled(
    *,
    patient: Patient,
    actual_date: dt.date,
    results: ResultsInput | None = None,
    sledai_items: Iterable[str] | None = None,
    label: str = "Unscheduled visit",
    actor=None,
) -> Visit:
    """Add an unscheduled visit (codes U01, U02, ...) and record it."""
    patient = Patient.objects.select_for_update().get(pk=patient.pk)
    ensure_can_write(actor, patient.site_id, field="patient")
    number = patient.visits.filter(definition__isnull=True).count() + 1
    visit = Visit.objects.create(
        patient=patient,
        code=f"U{number:02d}",
        label=label,
        target_date=actual_date,
        window_start=actual_date,
        window_end=actual_date,
    )
    return visit_record(visit=visit, actual_date=actual_date, results=results, sledai_items=sledai_items, actor=actor)


@transaction.atomic
def visit_mark_missed(*, visit: Visit, reason: str, actor=None) -> Visit:
    """Confirm that an open visit did not take place."""
    visit = Visit.objects.select_for_update().select_related("patient").get(pk=visit.pk)
    ensure_can_write(actor, visit.patient.site_id, field="visit")
    if not reason.strip():
        raise ValidationError({"outcome_reason": "Give the reason the visit was missed."})
    if visit.outcome != VisitOutcome.OPEN:
        raise ValidationError(
            {"outcome": f"Visit {visit.code} is {visit.get_outcome_display().lower()}, not open; correct it instead."}
        )
    visit.outcome, visit.outcome_reason = VisitOutcome.MISSED, reason
    visit._change_reason = reason
    visit.save(update_fields=["outcome", "outcome_reason", "updated_at"])
    return visit


# Outcomes ----------------------------------------------------------------------------------------------


def outcome_definitions_for(study_id: int) -> outcomes.OutcomeDefinitions:
    return _outcome_definitions_of([study_id])[study_id]


_DOSES_PER_DAY = {Frequency.DAILY: 1, Frequency.BID: 2, Frequency.TID: 3}


def _prednisone_from_medications(medications, on_date: dt.date) -> Decimal | None:
    """Daily prednisone (mg/day) from the medication list, or None when it cannot be told."""
    if not medications:
        return None
    total = Decimal(0)
    for med in medications:
        if med.start_date > on_date or (med.stop_date and med.stop_date < on_date):
            continue
        if med.unit != DoseUnit.MG or med.frequency not in _DOSES_PER_DAY:
            return None
        total += med.dose * _DOSES_PER_DAY[med.frequency]
    return total


def outcomes_recompute(*, patient: Patient) -> list[ComputedOutcome]:
    """Recompute and store the outcomes of every post-transplant visit of a patient."""
    outcomes_recompute_patients([patient.pk])
    return list(ComputedOutcome.objects.filter(visit__patient=patient).order_by("visit__actual_date", "visit_id"))


# The fields of an outcome row as `outcomes_recompute_patients` builds it.
_OUTCOME_ROW = ["visit_id", *ComputedOutcome.COMPUTED_FIELDS, "computed_at"]


@transaction.atomic(savepoint=False)  # part of its caller's transaction, or one of its own
def outcomes_recompute_patients(
    patient_ids: Iterable[int],
    *,
    since: dict[int, dt.date | None] | None = None,
    known: Iterable[Patient] = (),
    prune: bool = True,
    recorded: Collection[int] | None = None,
) -> int:
    """Recompute the outcomes of every post-transplant visit of these patients, in a fixed number of queries
    whatever their number. Only outcomes that differ from the stored ones are written (so an unchanged
    outcome keeps its `computed_at` and ETag); outcomes of visits no longer completed are deleted. Returns the
    number of outcomes written.

    `since` (from a recording) names, per patient, the date from which outcomes can have changed: only those
    are compared and written, the earlier ones depending only on the baseline and on earlier visits. A date
    on or before day 0 (a baseline value), None or a patient left out means every outcome. `known`: patients
    already loaded with their site, not read again. `prune=False` leaves the outcomes of visits no longer
    completed alone: a first recording of visits, which only completes them, cannot leave one behind (a
    correction can: a visit moved to before day 0 has no outcome any more).

    `recorded` (with `since`): the visits whose own values or date changed. Of another visit from `since` on
    only the flare and relapse can change (`outcomes.CHAIN_FIELDS`: they follow the visits before it; the
    rest of an outcome comes from the visit's own values and the baseline), so only those are computed, from
    its `EARLIER_VISIT_CODES`, and written. A patient with such a visit whose stored outcome is missing or
    was computed under other definitions is recomputed whole from `since`."""
    ids = sorted(set(patient_ids))
    if not ids:
        return 0
    wanted = set(ids)
    recorded = None if recorded is None else set(recorded)
    patients = {p.pk: p for p in known if p.pk in wanted and Patient.site.is_cached(p)}
    if len(patients) < len(ids):
        patients |= {p.pk: p for p in Patient.objects.filter(pk__any=ids).select_related("site").order_by()}
    infusions: dict[int, list] = defaultdict(list)
    for row in (
        TransplantEvent.objects.filter(patient_id__any=ids)
        .order_by("patient_id", "infused_at")
        .values_list("patient_id", "infused_at", "infusion_number", "weight_kg")
    ):
        infusions[row[0]].append(row[1:])
    # Day 0 of each transplanted patient, and the date from which its outcomes are computed (None: all).
    start_of: dict[int, dt.date] = {}
    changed_from: dict[int, dt.date | None] = {}
    for patient_id in ids:
        patient = patients.get(patient_id)
        first = next((t for t in infusions[patient_id] if t[1] == 1), None)
        if patient is None or first is None:
            continue
        start_of[patient_id] = start = local_date(first[0], patient.site)
        from_date = (since or {}).get(patient_id)
        changed_from[patient_id] = None if from_date is None or from_date <= start else from_date
    visits: dict[int, list] = defaultdict(list)
    # Visits whose values are all read; the others (earlier visits, chain visits): only EARLIER_VISIT_CODES.
    whole, earlier = [], []
    chain: set[int] = set()  # visits from `since` on of which only the flare and relapse can change
    for row in (
        Visit.objects.filter(patient_id__any=list(start_of), outcome=VisitOutcome.COMPLETED)
        .order_by()
        .values_list("pk", "patient_id", "code", "actual_date")
    ):
        visit_id, patient_id, code, actual_date = row
        visits[patient_id].append(row)
        from_date = changed_from[patient_id]
        if from_date is None or actual_date <= start_of[patient_id] or code == "BL":
            whole.append(visit_id)
        elif actual_date < from_date:
            earlier.append(visit_id)
        elif recorded is None or visit_id in recorded:
            whole.append(visit_id)
        else:
            earlier.append(visit_id)
            chain.add(visit_id)
    values: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for visit_id, code, value in (
        Result.objects.filter(Q(visit_id__any=whole) | Q(visit_id__any=earlier, code__any=outcomes.EARLIER_VISIT_CODES))
        .order_by()
        .values_list("visit_id", "code", "value")
    ):
        values[visit_id][code] = value
    prednisone: dict[int, list] = defaultdict(list)
    for med in ConcomitantMedication.objects.filter(patient_id__any=ids, drug=Drug.PREDNISONE).order_by():
        prednisone[med.patient_id].append(med)
    definitions = _outcome_definitions_of(
        {p.study_id for p in patients.values()},
        known=[p.study for p in patients.values() if Patient.study.is_cached(p)],
    )
    computed, keep, now = [], set(), timezone.now()
    chained: list[tuple[int, int, str, bool | None]] = []  # (patient, visit, flare, relapse)
    for patient_id, start in start_of.items():
        patient = patients[patient_id]
        site = patient.site
        infused_on = [(local_date(t[0], site), t[2]) for t in infusions[patient_id]]
        points = []
        for visit_id, _, code, actual_date in visits[patient_id]:
            visit_values = values[visit_id]
            weight = visit_values.get("WEIGHT")
            if weight is None:
                earlier = [w for on, w in infused_on if on <= actual_date]
                weight = earlier[-1] if earlier else None
            dose = visit_values.get("PRED")
            if dose is None:
                dose = _prednisone_from_medications(prednisone[patient_id], actual_date)
            points.append(
                outcomes.VisitPoint(
                    visit_id=visit_id,
                    date=actual_date,
                    day=(actual_date - start).days,
                    is_baseline_visit=code == "BL",
                    values=visit_values,
                    prednisone_mg=dose,
                    weight_kg=weight,
                )
            )
        in_force = definitions[patient.study_id]
        in_force_dict = in_force.as_dict()
        keep.update(point.visit_id for point in points if point.day > 0)  # each has an outcome
        # The outcomes before `changed_from` stay as stored: they depend only on the baseline and earlier visits.
        for out in outcomes.compute_outcomes(points, in_force, since=changed_from[patient_id], chain=chain):
            if out.visit_id in chain:
                chained.append((patient_id, out.visit_id, out.flare or "", out.relapse))
                continue
            computed.append(
                (
                    out.visit_id,
                    outcomes.ALGORITHM_VERSION,
                    in_force_dict,
                    out.sledai,
                    out.sledai_change,
                    out.sri4,
                    out.sri4_note,
                    out.remission or "",
                    out.renal_response or "",
                    out.flare or "",
                    out.relapse,
                    out.changes,
                    out.notes,
                    now,
                )
            )
    if prune:  # outcomes of visits no longer completed (or of a patient no longer transplanted) go
        stored = ComputedOutcome.objects.filter(visit__patient_id__any=ids).values_list("pk", "visit_id")
        stale = [pk for pk, visit_id in stored if visit_id not in keep]
        if stale:
            ComputedOutcome.objects.filter(pk__any=stale).delete()
    computed.sort(key=lambda row: row[0])  # rows locked in one order by every writer
    written = upsert_values(
        ComputedOutcome,
        _OUTCOME_ROW,
        computed,
        unique="visit",
        field_names=[*ComputedOutcome.COMPUTED_FIELDS, "computed_at"],
        compare=list(ComputedOutcome.COMPUTED_FIELDS),
    )
    if not chained:
        return written
    in_force_of = {patient_id: definitions[patients[patient_id].study_id].as_dict() for patient_id, *_ in chained}
    redo, written_chain = _store_chain_outcomes(chained, in_force_of, now)
    if redo:
        written += outcomes_recompute_patients(
            redo, since={p: changed_from[p] for p in redo}, known=patients.values(), prune=prune
        )
    return written + written_chain


def _store_chain_outcomes(
    chained: list[tuple[int, int, str, bool | None]], in_force_of: dict[int, dict], now
) -> tuple[set[int], int]:
    """Write the flare and relapse of these visits' stored outcomes where they changed. Returns the patients
    of which such a visit has no stored outcome, or one computed by another algorithm or under other
    definitions (to be recomputed whole), and the number of outcomes written."""
    stored = {
        visit_id: row
        for visit_id, *row in ComputedOutcome.objects.filter(visit_id__any=[v for _, v, _, _ in chained])
        .order_by()
        .values_list("visit_id", "pk", "flare", "relapse", "algorithm_version", "definitions")
    }
    redo, changed = set(), []
    for patient_id, visit_id, flare, relapse in chained:
        row = stored.get(visit_id)
        if row is None or row[3] != outcomes.ALGORITHM_VERSION or row[4] != in_force_of[patient_id]:
            redo.add(patient_id)
        elif (row[1], row[2]) != (flare, relapse):
            changed.append(ComputedOutcome(pk=row[0], flare=flare, relapse=relapse, computed_at=now))
    changed.sort(key=lambda outcome: outcome.pk)  # rows locked in one order by every writer
    update_rows(ComputedOutcome, changed, ["flare", "relapse", "computed_at"])
    return redo, len(changed)


def _outcome_definitions_of(
    study_ids: Iterable[int], known: Iterable[Study] = ()
) -> dict[int, outcomes.OutcomeDefinitions]:
    """Each study's outcome definitions (the defaults where it has no settings). `known`: studies read with
    their settings (`select_related`), not read again."""
    names = [f.name for f in outcomes.dataclasses.fields(outcomes.OutcomeDefinitions)]
    wanted = set(study_ids)
    rows: dict[int, OutcomeSettings | None] = {}
    for study in known:
        if study.pk in wanted and Study.outcome_settings.is_cached(study):
            rows[study.pk] = getattr(study, "outcome_settings", None)  # None: read, and there is none
    if len(rows) < len(wanted):
        rows |= {row.study_id: row for row in OutcomeSettings.objects.filter(study_id__in=list(wanted - set(rows)))}
    return {
        study_id: outcomes.OutcomeDefinitions(**{name: getattr(row, name) for name in names})
        if (row := rows.get(study_id)) is not None
        else outcomes.OutcomeDefinitions()
        for study_id in wanted
    }


# Adverse events ----------------------------------------------------------------------------------------


def ae_due_dates(ae: AdverseEvent) -> tuple[dt.date | None, dt.date | None]:
    """Expedited-report due dates of a SUSAR, counted in calendar days from awareness (day 0)."""
    if not ae.is_susar:
        return None, None
    if ae.fatal_or_life_threatening:
        initial = ae.aware_date + dt.timedelta(days=c.FATAL_INITIAL_REPORT_DAYS)
        return initial, initial + dt.timedelta(days=c.FATAL_COMPLETE_REPORT_EXTRA_DAYS)
    return ae.aware_date + dt.timedelta(days=c.OTHER_REPORT_DAYS), None


def _check_ae(ae: AdverseEvent) -> None:
    errors: dict[str, str] = {}
    patient = ae.patient
    today = site_today(patient.site)
    for name in (
        "onset_date",
        "aware_date",
        "resolution_date",
        "initial_report_submitted_on",
        "complete_report_submitted_on",
    ):
        value = getattr(ae, name)
        if value and value > today:
            errors[name] = "This date cannot be in the future."
    if ae.transplant_id:
        if ae.transplant.patient_id != patient.pk:
            errors["transplant"] = "This infusion belongs to another patient."
        elif ae.onset_date and ae.onset_date < local_date(ae.transplant.infused_at, patient.site):
            errors["onset_date"] = "An infusion-related event cannot start before the infusion."
    elif ae.category == c.AECategory.INFUSION_REACTION:
        errors["transplant"] = "Link the infusion for an infusion reaction."
    if ae.grade == c.CTCAEGrade.DEATH:
        if not ae.serious_death:
            errors["serious_death"] = "A grade 5 event results in death: tick the seriousness criterion 'death'."
        if ae.outcome != c.AEOutcome.FATAL:
            errors["outcome"] = "A grade 5 event has the outcome 'fatal'."
        if not ae.resolution_date:
            errors["resolution_date"] = "Give the date of death as the resolution date of a grade 5 event."
    elif ae.serious_death or ae.outcome == c.AEOutcome.FATAL:
        errors["grade"] = "An event that resulted in death is CTCAE grade 5."
    for name in ("initial_report_submitted_on", "complete_report_submitted_on"):
        value = getattr(ae, name)
        if value and ae.aware_date and value < ae.aware_date:
            errors[name] = "A report cannot be submitted before the site became aware of the event."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def ae_save(*, ae: AdverseEvent, actor=None, reason: str = "") -> AdverseEvent:
    """Record or update an adverse event; computes the reporting clock; grade 5 records the death."""
    ensure_can_write(actor, ae.patient.site_id, field="patient")
    if ae.pk and not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing an adverse event."})
    ae.full_clean(exclude=["initial_report_due", "complete_report_due"])
    _check_ae(ae)
    ae.initial_report_due, ae.complete_report_due = ae_due_dates(ae)
    if reason:
        ae._change_reason = reason
    ae.save()
    patient = Patient.objects.get(pk=ae.patient_id)
    if ae.grade == c.CTCAEGrade.DEATH and patient.status != PatientStatus.DECEASED:
        patient_record_death(patient=patient, on_date=ae.resolution_date, cause=ae.term, actor=actor)
    return ae


def ae_record(*, patient: Patient, actor=None, **fields) -> AdverseEvent:
    return ae_save(ae=AdverseEvent(patient=patient, **fields), actor=actor)


@transaction.atomic
def ae_record_submission(*, ae: AdverseEvent, report: str, on_date: dt.date, actor=None) -> AdverseEvent:
    """Record that the initial or complete expedited report was submitted."""
    ae = AdverseEvent.objects.select_for_update().select_related("patient__site").get(pk=ae.pk)
    field = {"initial": "initial_report_submitted_on", "complete": "complete_report_submitted_on"}.get(report)
    if field is None:
        raise ValidationError({"report": "Say which report was submitted: 'initial' or 'complete'."})
    if report == "complete" and ae.complete_report_due is None:
        raise ValidationError({"report": "This event has no separate complete report due."})
    setattr(ae, field, on_date)
    return ae_save(ae=ae, actor=actor, reason=f"{report} report submitted on {on_date.isoformat()}")


def ae_report_clock(ae: AdverseEvent, today: dt.date | None = None) -> list[dict]:
    """The state of each expedited report: due date, submitted or not, days left (negative when late)."""
    today = today or site_today(ae.patient.site)
    clock = []
    for name, due, submitted in (
        ("initial", ae.initial_report_due, ae.initial_report_submitted_on),
        ("complete", ae.complete_report_due, ae.complete_report_submitted_on),
    ):
        if due is None:
            continue
        if submitted:
            state = "submitted on time" if submitted <= due else "submitted late"
        else:
            state = "overdue" if today > due else "due"
        clock.append(
            {"report": name, "due": due, "submitted_on": submitted, "state": state, "days_left": (due - today).days}
        )
    return clock
