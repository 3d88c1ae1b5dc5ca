"""Computed outcomes (SLEDAI-2K, remission, flare, renal response) stored per visit: loaded from the
database, computed by `followup.outcomes` (no database access there) and written back as one upsert."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.bulk import update_rows, upsert_values
from followup import outcomes
from followup.constants import VisitOutcome
from followup.models import ComputedOutcome, Result, Visit
from patients.constants import DoseUnit, Drug, Frequency
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.services import local_date
from registry.models import OutcomeSettings, Study

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
    scope = RecomputeScope.of(patient_ids, since=since, prune=prune, recorded=recorded)
    if not scope.patient_ids:
        return 0
    return _recompute(scope, known)


@dataclass(frozen=True)
class RecomputeScope:
    """What one recomputation covers (see `outcomes_recompute_patients`): the patients; per patient the date
    from which its outcomes can have changed (`since`; a patient left out or None: every outcome); the visits
    whose own values or date changed (`recorded`; None: every visit from `since` on is computed whole, else
    the others only for their flare and relapse); whether the outcomes of visits no longer completed go
    (`prune`)."""

    patient_ids: tuple[int, ...]  # sorted, each once
    since: Mapping[int, dt.date | None] = field(default_factory=dict)
    recorded: frozenset[int] | None = None
    prune: bool = True

    @classmethod
    def of(
        cls,
        patient_ids: Iterable[int],
        *,
        since: Mapping[int, dt.date | None] | None = None,
        prune: bool = True,
        recorded: Collection[int] | None = None,
    ) -> RecomputeScope:
        return cls(
            patient_ids=tuple(sorted(set(patient_ids))),
            since=dict(since or {}),
            recorded=None if recorded is None else frozenset(recorded),
            prune=prune,
        )

    def changed_from(self, patient_id: int, day0: dt.date) -> dt.date | None:
        """The date from which this patient's outcomes are computed; None: all of them (no date, or a date on
        or before day 0, a baseline value, given)."""
        from_date = self.since.get(patient_id)
        return None if from_date is None or from_date <= day0 else from_date


@dataclass
class _OutcomeInputs:
    """What the outcomes of a scope's patients are computed from, read in a fixed number of queries."""

    patients: dict[int, Patient]  # with their site
    infusions: dict[int, list]  # per patient: (infused_at, infusion_number, weight_kg), in order
    start_of: dict[int, dt.date]  # day 0 of each transplanted patient (the others have no outcome)
    changed_from: dict[int, dt.date | None]  # per transplanted patient: `RecomputeScope.changed_from`
    visits: dict[int, list]  # per patient: (visit id, patient id, code, actual date) of its completed visits
    chain: set[int]  # visits from `since` on of which only the flare and relapse can change
    values: dict[int, dict[str, Decimal]]  # per visit: its results (of a chain or earlier visit, some only)
    prednisone: dict[int, list]  # per patient: its prednisone medications
    definitions: dict[int, outcomes.OutcomeDefinitions]  # per study
    censored: dict[int, dict[str, str]] = field(default_factory=dict)  # per visit: comparators of censored values


@dataclass
class _ComputedRows:
    """The outcomes computed for a scope, to be stored."""

    rows: list[tuple] = field(default_factory=list)  # whole outcomes, in the fields of `_OUTCOME_ROW`
    keep: set[int] = field(default_factory=set)  # the visits that have an outcome
    chained: list[tuple[int, int, str, bool | None]] = field(default_factory=list)  # (patient, visit, flare, relapse)
    now: dt.datetime = field(default_factory=timezone.now)


def _recompute(scope: RecomputeScope, known: Iterable[Patient]) -> int:
    """Load, compute and store the outcomes of a scope; returns the number of outcomes written."""
    inputs = _load_outcome_inputs(scope, known)
    return _store_outcomes(scope, inputs, _compute_outcomes(scope, inputs))


# Load ----------------------------------------------------------------------------------------------------


def _load_outcome_inputs(scope: RecomputeScope, known: Iterable[Patient]) -> _OutcomeInputs:
    ids = scope.patient_ids
    patients = _load_patients(ids, known)
    infusions: dict[int, list] = defaultdict(list)
    for row in (
        TransplantEvent.objects.filter(patient_id__any=ids)
        .order_by("patient_id", "infused_at")
        .values_list("patient_id", "infused_at", "infusion_number", "weight_kg")
    ):
        infusions[row[0]].append(row[1:])
    start_of: dict[int, dt.date] = {}
    changed_from: dict[int, dt.date | None] = {}
    for patient_id in ids:
        patient = patients.get(patient_id)
        first = next((t for t in infusions[patient_id] if t[1] == 1), None)
        if patient is None or first is None:
            continue
        start_of[patient_id] = start = local_date(first[0], patient.site)
        changed_from[patient_id] = scope.changed_from(patient_id, start)
    visits, whole, earlier, chain = _load_visits(scope, start_of, changed_from)
    values: dict[int, dict[str, Decimal]] = defaultdict(dict)
    censored: dict[int, dict[str, str]] = defaultdict(dict)
    for visit_id, code, value, comparator in (
        Result.objects.filter(Q(visit_id__any=whole) | Q(visit_id__any=earlier, code__any=outcomes.EARLIER_VISIT_CODES))
        .order_by()
        .values_list("visit_id", "code", "value", "comparator")
    ):
        values[visit_id][code] = value
        if comparator:
            censored[visit_id][code] = comparator
    prednisone: dict[int, list] = defaultdict(list)
    for med in ConcomitantMedication.objects.filter(patient_id__any=ids, drug=Drug.PREDNISONE).order_by():
        prednisone[med.patient_id].append(med)
    definitions = _outcome_definitions_of(
        {p.study_id for p in patients.values()},
        known=[p.study for p in patients.values() if Patient.study.is_cached(p)],
    )
    return _OutcomeInputs(
        patients, infusions, start_of, changed_from, visits, chain, values, prednisone, definitions, censored
    )


def _load_patients(ids: tuple[int, ...], known: Iterable[Patient]) -> dict[int, Patient]:
    """The patients with their site: those `known` with it, the others read."""
    wanted = set(ids)
    patients = {p.pk: p for p in known if p.pk in wanted and Patient.site.is_cached(p)}
    if len(patients) < len(ids):
        patients |= {p.pk: p for p in Patient.objects.filter(pk__any=ids).select_related("site").order_by()}
    return patients


def _load_visits(
    scope: RecomputeScope, start_of: dict[int, dt.date], changed_from: dict[int, dt.date | None]
) -> tuple[dict[int, list], list[int], list[int], set[int]]:
    """The completed visits of the transplanted patients, per patient; the visits whose values are all read;
    the others (earlier visits, chain visits), of which only `EARLIER_VISIT_CODES` are; and the chain visits."""
    visits: dict[int, list] = defaultdict(list)
    whole, earlier = [], []
    chain: set[int] = set()
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
        elif scope.recorded is None or visit_id in scope.recorded:
            whole.append(visit_id)
        else:
            earlier.append(visit_id)
            chain.add(visit_id)
    return visits, whole, earlier, chain


# Compute -------------------------------------------------------------------------------------------------


def _compute_outcomes(scope: RecomputeScope, inputs: _OutcomeInputs) -> _ComputedRows:
    """The outcomes of each transplanted patient's visits from its `changed_from` on (the earlier ones stay as
    stored: they depend only on the baseline and earlier visits): whole rows, and the flare and relapse of the
    chain visits."""
    computed = _ComputedRows()
    for patient_id in inputs.start_of:
        points = _visit_points(patient_id, inputs)
        in_force = inputs.definitions[inputs.patients[patient_id].study_id]
        in_force_dict = in_force.as_dict()
        computed.keep.update(point.visit_id for point in points if point.day > 0)  # each has an outcome
        since = inputs.changed_from[patient_id]
        for out in outcomes.compute_outcomes(points, in_force, since=since, chain=inputs.chain):
            if out.visit_id in inputs.chain:
                computed.chained.append((patient_id, out.visit_id, out.flare or "", out.relapse))
            else:
                computed.rows.append(_outcome_row(out, in_force_dict, computed.now))
    return computed


def _visit_points(patient_id: int, inputs: _OutcomeInputs) -> list[outcomes.VisitPoint]:
    """A patient's completed visits as the outcomes engine reads them; the weight, when not measured at the
    visit, is the one of the last infusion by then, and the prednisone dose, when not recorded, comes from
    the medication list."""
    start = inputs.start_of[patient_id]
    site = inputs.patients[patient_id].site
    infused_on = [(local_date(t[0], site), t[2]) for t in inputs.infusions[patient_id]]
    points = []
    for visit_id, _, code, actual_date in inputs.visits[patient_id]:
        visit_values = inputs.values[visit_id]
        weight = visit_values.get("WEIGHT")
        if weight is None:
            earlier = [w for on, w in infused_on if on <= actual_date]
            weight = earlier[-1] if earlier else None
        dose = visit_values.get("PRED")
        if dose is None:
            dose = _prednisone_from_medications(inputs.prednisone[patient_id], actual_date)
        points.append(
            outcomes.VisitPoint(
                visit_id=visit_id,
                date=actual_date,
                day=(actual_date - start).days,
                is_baseline_visit=code == "BL",
                values=visit_values,
                prednisone_mg=dose,
                weight_kg=weight,
                censored=inputs.censored.get(visit_id, {}),
            )
        )
    return points


def _outcome_row(out: outcomes.VisitOutcomeData, in_force: dict[str, str], now: dt.datetime) -> tuple:
    """An outcome in the fields of `_OUTCOME_ROW`."""
    return (
        out.visit_id,
        outcomes.ALGORITHM_VERSION,
        in_force,
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


# Store ---------------------------------------------------------------------------------------------------


def _store_outcomes(scope: RecomputeScope, inputs: _OutcomeInputs, computed: _ComputedRows) -> int:
    """Delete the outcomes of visits no longer completed (with `prune`), write the whole outcomes that changed,
    then the flare and relapse of the chain visits; a patient whose chain visit cannot be updated alone is
    recomputed whole from its `changed_from`. Returns the number of outcomes written."""
    if scope.prune:  # outcomes of visits no longer completed (or of a patient no longer transplanted) go
        stored = ComputedOutcome.objects.filter(visit__patient_id__any=scope.patient_ids).values_list("pk", "visit_id")
        stale = [pk for pk, visit_id in stored if visit_id not in computed.keep]
        if stale:
            ComputedOutcome.objects.filter(pk__any=stale).delete()
    computed.rows.sort(key=lambda row: row[0])  # rows locked in one order by every writer
    written = upsert_values(
        ComputedOutcome,
        _OUTCOME_ROW,
        computed.rows,
        unique="visit",
        field_names=[*ComputedOutcome.COMPUTED_FIELDS, "computed_at"],
        compare=list(ComputedOutcome.COMPUTED_FIELDS),
    )
    if not computed.chained:
        return written
    in_force_of = {
        patient_id: inputs.definitions[inputs.patients[patient_id].study_id].as_dict()
        for patient_id, *_ in computed.chained
    }
    redo, written_chain = _store_chain_outcomes(computed.chained, in_force_of, computed.now)
    if redo:
        redo_scope = RecomputeScope.of(redo, since={p: inputs.changed_from[p] for p in redo}, prune=scope.prune)
        written += _recompute(redo_scope, inputs.patients.values())
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
