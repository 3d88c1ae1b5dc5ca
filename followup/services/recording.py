"""Recording visits and their results, from every door: one visit (admin, API), a visit by its natural key
(API), a batch of visits (API, all or nothing), an unscheduled visit, a missed visit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from core.api.etags import require_version, version_refusal
from core.api.problems import PreconditionError, RecordLocked
from core.audit import history_of_rows
from core.bulk import insert_values, update_rows, without_jit
from core.signals import changed, changed_together, changing, refusals_together
from core.spreadsheets import formula_errors
from followup import constants as c
from followup.catalogue import ANALYTES
from followup.computations import censored_text, egfr_ckd_epi_2021, plain, sledai_total, to_canonical
from followup.constants import BELOW_COMPARATORS, NotDoneReason, RecordStatus, VisitOutcome
from followup.models import Result, Visit
from followup.services.outcomes import outcomes_recompute_patients
from followup.states import site_today
from patients.constants import PatientStatus
from patients.models import Patient
from registry.models import Site
from registry.services import ensure_can_write, participation_annotations, participation_check, participation_refuse

# Recording visits --------------------------------------------------------------------------------------

ResultsInput = Mapping[str, object]


def _parse_results(results: ResultsInput | None) -> dict[str, tuple[object, str | None, str | None]]:
    """Accept {code: value}, {code: (value, unit[, comparator])} or {code: {"value": v, "unit": u,
    "comparator": "<"}}; the comparator (of a censored result) is optional."""
    parsed: dict[str, tuple[object, str | None, str | None]] = {}
    for code, entry in (results or {}).items():
        if isinstance(entry, Mapping):
            parsed[code] = (entry.get("value"), entry.get("unit"), entry.get("comparator"))
        elif isinstance(entry, tuple | list):
            parsed[code] = (entry[0], entry[1] if len(entry) > 1 else None, entry[2] if len(entry) > 2 else None)
        else:
            parsed[code] = (entry, None, None)
    return parsed


INACTIVE_SINCE = {
    PatientStatus.DECEASED: "died",
    PatientStatus.WITHDRAWN: "withdrew",
    PatientStatus.LOST: "was lost to follow-up",
}


def _visit_date_errors(visit: Visit, actual_date: dt.date | None, deviation_reason: str) -> list[str]:
    """Every rule the visit's date breaks (docs/clinical-rules.md, "Follow-up schedule").

    The time rules hold whatever the deviation reason: nothing in the future, before consent or after the
    patient died, withdrew or was lost to follow-up; a baseline visit on or before day 0 and every later
    scheduled visit after it. A deviation reason covers a date outside the visit's window only.
    """
    patient = visit.patient
    if actual_date is None:
        return ["Give the date the visit took place."]
    errors = []
    if actual_date > site_today(patient.site):
        errors.append("The visit date cannot be in the future.")
    if patient.consent_date and actual_date < patient.consent_date:
        errors.append(
            f"{actual_date.isoformat()} is before patient {patient.subject_code} consented "
            f"({patient.consent_date.isoformat()}); nothing can be recorded before consent."
        )
    if patient.status in INACTIVE_SINCE and patient.status_date and actual_date > patient.status_date:
        errors.append(
            f"Patient {patient.subject_code} {INACTIVE_SINCE[patient.status]} on {patient.status_date.isoformat()}; "
            "a visit after that cannot be recorded."
        )
    definition = visit.definition if visit.definition_id else None
    if definition is not None:
        day_zero = visit.target_date - dt.timedelta(days=definition.offset_days)
        if definition.offset_days == 0 and actual_date > day_zero:
            errors.append(
                f"A baseline visit is on or before day 0 ({day_zero.isoformat()}), the first infusion; "
                f"{actual_date.isoformat()} is after it, whatever the deviation reason."
            )
        elif definition.offset_days > 0 and actual_date <= day_zero:
            errors.append(
                f"Visit {visit.code} follows the first infusion: it must be after day 0 ({day_zero.isoformat()}), "
                "whatever the deviation reason."
            )
    outside = not (visit.window_start <= actual_date <= visit.window_end)
    if outside and not deviation_reason.strip() and not errors:
        errors.append(
            f"{actual_date.isoformat()} is outside the window of visit {visit.code} "
            f"({visit.window_start.isoformat()} to {visit.window_end.isoformat()}); "
            "give a deviation reason to record it anyway."
        )
    return errors


def _age_at(patient: Patient, on_date: dt.date) -> int:
    # Only the birth year is kept (pseudonymity), so the age is the difference of years.
    return on_date.year - patient.birth_year


@dataclass
class VisitEntry:
    """What is submitted for one visit: its date, results and SLEDAI-2K items, and why (for a correction);
    whether it completes the visit or leaves it in progress; and why required items have no value
    (`not_done`, by result code; None keeps what is stored, a mapping replaces it)."""

    actual_date: dt.date | None
    results: ResultsInput | None = None
    sledai_items: Iterable[str] | None = None
    deviation_reason: str = ""
    remove: Iterable[str] = ()
    reason: str = ""
    status: str = RecordStatus.COMPLETE
    not_done: Mapping[str, str] | None = None
    # The version being corrected, for a visit recorded already (or missed): its ETag, an If-Match list of
    # them, or its updated_at. The partner's natural-key doors (by key, batch) need it, as If-Match is needed
    # for the visit by id.
    version: str | dt.datetime | None = None


@dataclass
class _Recording:
    """A checked entry, ready to store: the visit (its fields set), its stored results and the new values."""

    visit: Visit
    existing: dict[str, Result]
    converted: dict[str, tuple[Decimal, Decimal | None, str, bool, str]]
    remove: set[str]
    reason: str
    since: dt.date | None  # outcomes from this date on may change (None: all of the patient's, a baseline)
    correction: bool  # of a visit already recorded, missed or not required (which may have had an outcome)
    missing: list[str]  # required items with neither a value nor a reason (a visit left in progress)

    def results_stored(self) -> dict[str, tuple[Decimal, Decimal | None, str, bool, str]]:
        """Once stored: the visit's results by code, as (value, entered value, entered unit, derived,
        comparator)."""
        kept = {
            code: (row.value, row.entered_value, row.entered_unit, row.derived, row.comparator)
            for code, row in self.existing.items()
            if code not in self.remove
        }
        return {**kept, **self.converted}


VISIT_RECORD_FIELDS = [
    "actual_date",
    "deviation_reason",
    "outcome",
    "outcome_reason",
    "sledai_items",
    "not_done",
    "updated_at",
]
RESULT_VALUE_FIELDS = ["value", "entered_value", "entered_unit", "derived", "comparator", "updated_at"]
NEW_RESULT_FIELDS = ("created_at", "updated_at", "visit_id", "code", *RESULT_VALUE_FIELDS[:5])


def _check_recording(
    visit: Visit, existing: dict[str, Result], entry: VisitEntry, *, announced: bool = False
) -> _Recording:
    """Every rule of recording one visit, without touching the database: the visit's fields are set, the
    results converted; a ValidationError names each field at fault. The write is announced first
    (`record_changing`; a batch announces all its visits at once, `announced`), so that a refusal of it is
    one of these errors.

    Long because the rules follow the order a coordinator meets them on the form, each a few lines."""
    patient = visit.patient
    if not announced:
        changing(visit, patient_id=patient.pk, study_id=patient.study_id)
    reason = entry.reason or ""
    # Adding to a visit in progress is still entering it; changing a closed visit is a correction.
    correcting = visit.outcome not in (VisitOutcome.OPEN, VisitOutcome.IN_PROGRESS)
    errors: dict[str, list[str]] = {}
    if entry.status not in RecordStatus.values:
        errors["status"] = [f"Status is {' or '.join(RecordStatus.values)}, not {entry.status!r}."]
    if correcting and not reason.strip():
        errors["reason"] = [
            f"Visit {visit.code} is already {visit.get_outcome_display().lower()}; give a reason for the correction."
        ]
    actual_date, deviation_reason = entry.actual_date, entry.deviation_reason or ""
    date_errors = _visit_date_errors(visit, actual_date, deviation_reason)
    if date_errors:
        errors["actual_date"] = date_errors
    converted: dict[str, tuple[Decimal, Decimal | None, str, bool, str]] = {}
    for code, (value, unit, comparator) in _parse_results(entry.results).items():
        try:
            canonical = to_canonical(code, value, unit, comparator or "")
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                errors.setdefault(key, []).extend(messages)
            continue
        converted[code] = (canonical, Decimal(str(value)), unit or ANALYTES[code].unit, False, comparator or "")

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
            converted["SLEDAI2K"] = (total, total, "points", True, "")
        errors.update(_censored_item_errors(items, converted, existing, remove=set(entry.remove or ())))

    remove = set(entry.remove or ())
    both = sorted(remove & (set(converted) | set(_parse_results(entry.results))))
    if both:
        errors.setdefault("remove", []).append(
            gettext(
                "%(codes)s: a result cannot be removed and recorded in one submission; send either the new value or the removal."
            )
            % {"codes": ", ".join(both)}
        )
    unknown_removals = [code for code in entry.remove or () if code not in existing]
    if unknown_removals:
        errors.setdefault("remove", []).append(f"No result {', '.join(unknown_removals)} to remove at this visit.")
    if remove and not reason.strip():
        errors.setdefault("reason", []).append("Give a reason for removing a result.")

    # eGFR from creatinine (this submission's, or the one already stored and not being removed); a censored
    # creatinine gives none, and takes away the one computed from an exact creatinine before.
    creatinine, creatinine_comparator = None, ""
    if "CREAT" in converted:
        creatinine, creatinine_comparator = converted["CREAT"][0], converted["CREAT"][4]
    elif "CREAT" not in remove and "CREAT" in existing:
        creatinine, creatinine_comparator = existing["CREAT"].value, existing["CREAT"].comparator
    if creatinine_comparator:
        creatinine = None
        if "EGFR" not in converted and "EGFR" in existing and existing["EGFR"].derived:
            remove.add("EGFR")
    if creatinine is not None and "CREAT" not in errors and not date_errors:
        egfr = egfr_ckd_epi_2021(creatinine_umol_l=creatinine, age=_age_at(patient, actual_date), sex=patient.sex)
        submitted = converted.get("EGFR")
        if submitted and not submitted[3] and abs(submitted[0] - egfr) > 1:
            errors.setdefault("EGFR", []).append(
                f"EGFR: the submitted {plain(submitted[1])} disagrees with {egfr} computed from creatinine "
                "by CKD-EPI 2021; leave eGFR out and the registry computes it."
            )
        converted["EGFR"] = (egfr, None, "computed", True, "")
    if "CREAT" in remove and "CREAT" not in converted:
        remove.add("EGFR")  # the eGFR computed from the creatinine goes with it
    not_done, missing = _completeness(visit, existing, entry, converted, remove, correcting, errors)
    if errors:
        raise ValidationError(errors)

    if items is not None:
        visit.sledai_items = items
    elif "SLEDAI2K" in converted:
        visit.sledai_items = None  # total only
    elif "SLEDAI2K" in remove:
        visit.sledai_items = None  # no items without their total
    # An outcome depends on the baseline and on the visits up to its own (`outcomes.compute_outcomes`): a
    # visit moved or changed on a date can change the outcomes from that date on, a baseline visit all.
    since = None if visit.code == "BL" else min(d for d in (visit.actual_date, actual_date) if d is not None)
    visit.actual_date, visit.deviation_reason, visit.not_done = actual_date, deviation_reason, not_done
    complete = entry.status == RecordStatus.COMPLETE
    visit.outcome, visit.outcome_reason = (VisitOutcome.COMPLETED if complete else VisitOutcome.IN_PROGRESS), ""
    return _Recording(
        visit=visit,
        existing=dict(existing),
        converted=converted,
        remove=remove,
        reason=reason,
        since=since,
        correction=correcting,
        missing=missing,
    )


def _completeness(visit, existing, entry, converted, remove, correcting, errors) -> tuple[dict[str, str], list[str]]:
    """The visit's not-done reasons once stored, and its required items still without a value or a reason.

    Completing needs every required item of the visit's definition recorded or said not done; a visit in
    progress may lack them. A completed visit being corrected is held only to the items the correction
    removes (one already missing when it was completed is not asked again)."""
    present = (existing.keys() - remove) | converted.keys()
    not_done = dict(visit.not_done or {}) if entry.not_done is None else {}
    for code, why in (entry.not_done or {}).items():
        if code not in ANALYTES:
            errors.setdefault("not_done", []).append(f"not_done: no result {code} in the catalogue.")
        elif why not in NotDoneReason.values:
            errors.setdefault("not_done", []).append(
                f"not_done: the reason {code} has no value is {' or '.join(NotDoneReason.values)}, not {why!r}."
            )
        elif code in converted:
            errors.setdefault(code, []).append(
                f"{code}: a value and a reason it was not done were both given; give one."
            )
        else:
            not_done[code] = why
    not_done = {code: why for code, why in sorted(not_done.items()) if code not in present}
    required = visit.definition.required_items if visit.definition_id else []
    missing = [code for code in required if code not in present and code not in not_done]
    if entry.status == RecordStatus.COMPLETE and missing:
        was_complete = correcting and visit.outcome == VisitOutcome.COMPLETED
        held = [code for code in missing if code in existing] if was_complete else missing
        for code in held:
            label = gettext(ANALYTES[code].label) if code in ANALYTES else code
            errors.setdefault(code, []).append(
                gettext(
                    "%(code)s (%(label)s) is required to complete visit %(visit)s: record it, or give the reason "
                    "it was not done (not done, not available); or save the visit as in progress."
                )
                % {"code": code, "label": label, "visit": visit.code}
            )
    return not_done, missing


def _censored_item_errors(
    items: list[str], converted: dict[str, tuple], existing: dict[str, Result], *, remove: set[str]
) -> dict[str, list[str]]:
    """SLEDAI-2K items that the visit's own censored results contradict (docs/clinical-rules.md, "Censored
    results"): "increased DNA binding" with anti-dsDNA below the laboratory's limit ("<10")."""
    if "increased_dna_binding" not in items:
        return {}
    if "ADSDNA" in converted:
        value, comparator = converted["ADSDNA"][0], converted["ADSDNA"][4]
    elif "ADSDNA" in existing and "ADSDNA" not in remove:
        value, comparator = existing["ADSDNA"].value, existing["ADSDNA"].comparator
    else:
        return {}
    if comparator not in BELOW_COMPARATORS:
        return {}
    return {
        "sledai_items": [
            f"Increased DNA binding is ticked, but anti-dsDNA at this visit is {censored_text(value, comparator)} "
            "IU/mL, below the laboratory's limit: untick the item or correct ADSDNA."
        ]
    }


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
        for code, values in recording.converted.items():
            row = existing.get(code)
            if row is None:
                new.append((now, now, recording.visit.pk, code, *values))
                reasons.append(recording.reason)
                continue
            if (row.value, row.entered_value, row.entered_unit, row.derived, row.comparator) == values:
                continue
            row.value, row.entered_value, row.entered_unit, row.derived, row.comparator = values
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
    status: str = RecordStatus.COMPLETE,
    not_done: Mapping[str, str] | None = None,
    version: str | dt.datetime | None = None,
    actor=None,
) -> Visit:
    """Record (or correct) a visit's date and results together: all are stored, or none.

    Results are converted to canonical units; a value in an unknown unit or out of range is refused. SLEDAI-2K
    items, when given, make the total; a submitted total that disagrees is refused; a total alone is kept
    as "total only". eGFR is computed from creatinine. A visit already recorded, missed or not required can
    be corrected only with a reason. `status` "complete" completes the visit, which needs each required item
    recorded or said not done (`not_done`); "in_progress" keeps it open for more. Outcomes of the patient are
    recomputed.

    `version`: for a door that names versions (the API's If-Match on the visit), the version being corrected,
    "" when none was sent. A correction is then refused unless it names the current version (428 none, 412 a
    stale one), compared on the locked row. None: a door without versions (the admin's form, commands).
    """
    visit = _locking_visits().get(pk=visit.pk)
    ensure_can_write(actor, visit.patient.site_id, field="visit")
    if version is not None and _is_correction(visit):
        require_version(visit, version, field="If-Match", header=True)
    entry = VisitEntry(actual_date, results, sledai_items, deviation_reason, remove, reason, status, not_done)
    return _record_locked(visit, entry)


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
    if _is_correction(visit):
        require_version(visit, entry.version, field="If-Match")
    return _record_locked(visit, entry)


def _locking_visits(*, with_site: bool = True):
    # Only the visit's row is locked: two writers at one site do not queue on the site's (or study's) row. The
    # study's outcome definitions come along, for the outcomes (`_outcome_definitions_of`).
    related = ["patient__study__outcome_settings", "definition", *(["patient__site"] if with_site else [])]
    # The site's participation in the study is read in the same query (`_record_locked` checks it).
    participation = participation_annotations(study_ref="patient__study_id", site_ref="patient__site_id")
    return Visit.objects.select_for_update(of=("self",)).select_related(*related).annotate(**participation)


def _record_locked(visit: Visit, entry: VisitEntry) -> Visit:
    patient = visit.patient
    participation_refuse(
        in_study=visit.in_study,
        removed_on=visit.removed_from_study_on,
        site_code=patient.site.code,
        study_code=patient.study.code,
        field="visit",
    )
    existing = {r.code: r for r in Result.objects.filter(visit=visit).order_by()}
    recordings = [_check_recording(visit, existing, entry)]
    _store_recordings(recordings)
    changed(visit, patient_id=patient.pk, study_id=patient.study_id)
    outcomes_recompute_patients(
        [visit.patient_id],
        since=_outcomes_since(recordings),
        known=[visit.patient],
        prune=recordings[0].correction,
        recorded=[visit.pk],
    )
    visit.results_stored = recordings[0].results_stored()
    visit.missing_items = recordings[0].missing
    return visit


def _is_correction(visit: Visit) -> bool:
    """Whether recording `visit` corrects it (recorded, missed or not required): then the natural-key doors need
    the version being corrected, as the visit by id needs If-Match. A visit in progress is still being filled."""
    return visit.outcome not in (VisitOutcome.OPEN, VisitOutcome.IN_PROGRESS)


def _unknown_visit(study_code: str, subject: str, code: str, *, patient_known: bool) -> dict[str, str]:
    if not patient_known:
        return {"subject_code": f"No patient {subject} of study {study_code} at your site."}
    return {"visit_code": f"Patient {subject} has no visit {code}."}


def _refuse_batch(errors: dict[str, list[str]], preconditions: dict[str, tuple[int, str]]) -> None:
    """Raise the batch's errors: when only versions are at fault, 412 (or 428 when none was sent); otherwise
    a ValidationError naming every field at fault, versions included."""
    if preconditions and not errors:
        status = 412 if any(status == 412 for status, _ in preconditions.values()) else 428
        raise PreconditionError({field: [message] for field, (_, message) in preconditions.items()}, status=status)
    for field, (_, message) in preconditions.items():
        errors.setdefault(field, []).append(message)
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def visits_record_batch(*, site: Site, study_code: str, entries: list[tuple[str, str, VisitEntry]]) -> list[Visit]:
    """Record many visits of one study at one site, each named by (subject code, visit code): all are stored,
    or none. The rules are `visit_record`'s, visit by visit; the reads and writes are a fixed number of
    statements for the whole batch. Errors are named `visits.<index>.<field>` (the index in `entries`); an item
    whose record is locked makes the whole batch a RecordLocked (423) naming it.

    Long because the batch is one sequence (read every visit, check every item, refuse or write all) whose
    steps share the maps built on the way."""
    if len(entries) > c.MAX_BATCH_VISITS:
        raise ValidationError(
            {"visits": f"At most {c.MAX_BATCH_VISITS} visits in one batch; send the rest in another."}
        )
    participation_check(site_id=site.pk, study_code=study_code, field="study")
    without_jit()
    errors: dict[str, list[str]] = {}
    preconditions: dict[str, tuple[int, str]] = {}
    locked = False
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
        .select_related("definition")
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
    study_id = next(iter(visits.values())).patient.study_id if visits else None
    refused = refusals_together(Visit, list(visits.values()), study_id=study_id) if visits else {}
    for index, (subject, code, entry) in enumerate(entries):
        visit = visits.get((subject, code))
        if visit is None:
            for field, text in _unknown_visit(study_code, subject, code, patient_known=subject in known).items():
                errors.setdefault(f"visits.{index}.{field}", []).append(text)
            continue
        if first_at[subject, code] != index:
            continue
        refusal = version_refusal(visit, entry.version) if _is_correction(visit) else None
        if refusal is not None:
            preconditions[f"visits.{index}.version"] = refusal
        try:
            if visit.pk in refused:
                raise refused[visit.pk]
            recordings.append(_check_recording(visit, existing[visit.pk], entry, announced=True))
        except ValidationError as exc:
            locked = locked or isinstance(exc, RecordLocked)
            for field, messages in exc.message_dict.items():
                errors.setdefault(f"visits.{index}.{field}", []).extend(messages)
    if locked:  # a locked item: 423 naming it (and the other items' errors)
        raise RecordLocked(errors)
    _refuse_batch(errors, preconditions)
    if recordings:
        _store_recordings(recordings)
        outcomes_recompute_patients(
            {r.visit.patient_id for r in recordings},
            since=_outcomes_since(recordings),
            known=[r.visit.patient for r in recordings],
            prune=any(r.correction for r in recordings),
            recorded=[r.visit.pk for r in recordings],
        )
    for recording in recordings:
        recording.visit.missing_items = recording.missing
    if recordings:
        changed_together(Visit, [r.visit for r in recordings], study_id=recordings[0].visit.patient.study_id)
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
    participation_check(site_id=patient.site_id, study_id=patient.study_id, field="patient")
    refused = formula_errors(label=label)
    if refused:
        raise ValidationError(refused)
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
    visit = Visit.objects.select_for_update(of=("self",)).select_related("patient__site").get(pk=visit.pk)
    ensure_can_write(actor, visit.patient.site_id, field="visit")
    participation_check(site_id=visit.patient.site_id, study_id=visit.patient.study_id, field="visit")
    changing(visit, patient_id=visit.patient_id, study_id=visit.patient.study_id)
    if not reason.strip():
        raise ValidationError({"outcome_reason": gettext("Give the reason the visit was missed.")})
    if visit.outcome != VisitOutcome.OPEN:
        raise ValidationError(
            {"outcome": f"Visit {visit.code} is {visit.get_outcome_display().lower()}, not open; correct it instead."}
        )
    if site_today(visit.patient.site) < visit.window_start:
        raise ValidationError(
            {
                "outcome": gettext(
                    "Visit %(code)s's window opens on %(date)s; a visit cannot be marked missed before its window opens."
                )
                % {"code": visit.code, "date": visit.window_start.isoformat()}
            },
            code="missed_before_window",
        )
    visit.outcome, visit.outcome_reason = VisitOutcome.MISSED, reason
    visit._change_reason = reason
    visit.save(update_fields=["outcome", "outcome_reason", "updated_at"])
    changed(visit, patient_id=visit.patient_id, study_id=visit.patient.study_id)
    return visit
