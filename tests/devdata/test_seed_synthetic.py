"""`manage.py seed_synthetic`: a synthetic cohort written in bulk, in the shape the services write."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count, Q

from devdata import synthetic
from followup.constants import VisitState
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from followup.states import visit_state
from patients.constants import INACTIVE_STATUSES
from patients.models import Patient, TransplantEvent
from registry.models import Study, VisitDefinition

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TODAY = dt.date(2026, 9, 1)
PATIENTS = 30


def seed(study_code: str = synthetic.STUDY_CODE, seed: int = 7) -> str:
    out = StringIO()
    call_command(
        "seed_synthetic",
        patients=PATIENTS,
        seed=seed,
        today=TODAY,
        study=study_code,
        quiet=True,
        stdout=out,
    )
    return out.getvalue()


def snapshot(study_code: str) -> tuple:
    visits = list(
        Visit.objects.filter(patient__study__code=study_code)
        .order_by("patient__subject_code", "target_date")
        .values_list(
            "patient__subject_code", "code", "target_date", "window_start", "window_end", "outcome", "actual_date"
        )
    )
    results = list(
        Result.objects.filter(visit__patient__study__code=study_code)
        .order_by("visit__patient__subject_code", "visit__code", "code")
        .values_list("visit__patient__subject_code", "visit__code", "code", "value", "entered_value", "entered_unit")
    )
    patients = list(
        Patient.objects.filter(study__code=study_code)
        .order_by("subject_code")
        .values_list("subject_code", "site__code", "sex", "birth_year", "status", "status_date")
    )
    outcomes = list(
        ComputedOutcome.objects.filter(visit__patient__study__code=study_code)
        .order_by("visit__patient__subject_code", "visit__code")
        .values_list("visit__patient__subject_code", "visit__code", *ComputedOutcome.COMPUTED_FIELDS)
    )
    events = list(
        AdverseEvent.objects.filter(patient__study__code=study_code)
        .order_by("patient__subject_code", "onset_date", "term")
        .values_list("patient__subject_code", "term", "category", "onset_date", "resolution_date", "serious_death")
    )
    infusions = list(
        TransplantEvent.objects.filter(patient__study__code=study_code)
        .order_by("patient__subject_code", "infusion_number")
        .values_list("patient__subject_code", "infusion_number", "infused_at", "weight_kg")
    )
    return patients, visits, results, outcomes, events, infusions


def test_counts_schedule_and_every_state(frozen_now):
    output = seed()
    assert "30 patients" in output
    study = Study.objects.get(code=synthetic.STUDY_CODE)
    definitions = {d.code: d for d in VisitDefinition.objects.filter(study=study)}
    patients = Patient.objects.filter(study=study)
    assert patients.count() == PATIENTS
    assert Visit.objects.filter(patient__study=study).count() == PATIENTS * len(definitions)
    assert TransplantEvent.objects.filter(patient__study=study, infusion_number=1).count() == PATIENTS

    # Windows around day 0 (the local date of the first infusion), as visits_schedule makes them.
    for patient in patients.select_related("site"):
        first = patient.transplants.get(infusion_number=1)
        day0 = first.infused_at.astimezone(patient.site.zone).date()
        for visit in patient.visits.all():
            definition = definitions[visit.code]
            assert visit.target_date == day0 + dt.timedelta(days=definition.offset_days)
            assert visit.window_start == visit.target_date - dt.timedelta(days=definition.window_before_days)
            assert visit.window_end == visit.target_date + dt.timedelta(days=definition.window_after_days)
        # A patient who left has no open visit whose window ends after they left.
        if patient.status in INACTIVE_STATUSES:
            assert not patient.visits.filter(outcome="open", window_end__gte=patient.status_date).exists()

    # The derived state, in SQL and in Python, sees every state.
    now = dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC)
    states = dict(
        Visit.objects.filter(patient__study=study).with_state(now).values_list("state").annotate(n=Count("id"))
    )
    # Every state but "in progress": the synthetic cohort's recorded visits are complete.
    assert set(states) == set(VisitState.values) - {VisitState.IN_PROGRESS}, states
    for visit in Visit.objects.filter(patient__study=study).with_state(now).select_related("patient__site"):
        today = visit.patient.site.today(now)
        assert visit.state == visit_state(
            outcome=visit.outcome, window_start=visit.window_start, window_end=visit.window_end, today=today
        )

    # Results: canonical value beside the value and unit as entered; SLEDAI-2K is the sum of the items.
    completed = Visit.objects.filter(patient__study=study, outcome="completed")
    assert not completed.annotate(n=Count("results")).filter(n=0).exists()
    assert (
        Result.objects.filter(visit__patient__study=study).exclude(entered_unit="").count()
        == Result.objects.filter(visit__patient__study=study).count()
    )
    assert Result.objects.filter(visit__patient__study=study, code="CREAT", entered_unit="mg/dL").exists()
    from followup.computations import sledai_total, to_canonical

    for result in Result.objects.filter(visit__patient__study=study, derived=False)[:300]:
        assert to_canonical(result.code, result.entered_value, result.entered_unit) == result.value
    for visit in completed.exclude(sledai_items=None).prefetch_related("results")[:50]:
        total = next(r.value for r in visit.results.all() if r.code == "SLEDAI2K")
        assert total == sledai_total(visit.sledai_items)
    # Outcomes of the post-transplant completed visits; a few adverse events; no open visit without a window.
    assert ComputedOutcome.objects.filter(visit__patient__study=study).count() == completed.exclude(code="BL").count()
    assert AdverseEvent.objects.filter(patient__study=study).exists()
    assert not Visit.objects.filter(patient__study=study).filter(
        Q(outcome="completed", actual_date__isnull=True) | Q(outcome__in=["missed", "not_required"], outcome_reason="")
    )
    # Subject codes only.
    assert all(code.startswith("SYN") for code in patients.values_list("subject_code", flat=True))


def test_deterministic_for_a_seed(frozen_now):
    seed("SYN-A", seed=11)
    seed("SYN-B", seed=11)
    seed("SYN-C", seed=12)
    assert snapshot("SYN-A") == snapshot("SYN-B")
    assert snapshot("SYN-A") != snapshot("SYN-C")


@pytest.fixture
def worker_runs(monkeypatch) -> list[int]:
    """Chunks of 7 patients (30 patients: five chunks, made by the workers in any order); the list grows by one
    each time the worker processes run."""
    monkeypatch.setattr(synthetic, "CHUNK", 7)
    runs: list[int] = []
    generate_parallel = synthetic._generate_parallel

    def spied(*args):
        runs.append(1)
        return generate_parallel(*args)

    monkeypatch.setattr(synthetic, "_generate_parallel", spied)
    return runs


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_worker_processes_write_what_one_transaction_writes(frozen_now, worker_runs):
    """On PostgreSQL outside a transaction, chunks of patients are generated and copied by worker processes,
    each on its own connection with its own block of ids, while indexes are dropped; inside a transaction they
    go in chunk by chunk on the caller's connection. Both write the same rows, and the constraints and indexes
    dropped are back."""
    indexes_before = _index_names()
    assert not connection.in_atomic_block
    # The table is empty, but the rows of earlier tests rolled back in this database leave free space that
    # the copy would fill first: the physical order checked below is of a table written from empty.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM FULL followup_result")
    summary_a = seed("SYN-A", seed=11)
    assert worker_runs == [1]
    with transaction.atomic():
        summary_b = seed("SYN-B", seed=11)
    assert worker_runs == [1]
    assert _counts(summary_a) == _counts(summary_b)
    assert snapshot("SYN-A") == snapshot("SYN-B")
    assert len(snapshot("SYN-A")[2]) > 200 and all(snapshot("SYN-A"))  # every kind of row is there to compare
    assert _index_names() == indexes_before
    # Each chunk is copied in id order by one COPY, the chunks one after another. The physical order follows the
    # ids except where a chunk's COPY fills space a previous chunk's left in its last page: a step back in the
    # ids only at a chunk's start, so fewer steps back than chunks.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.id FROM followup_result r JOIN followup_visit v ON v.id = r.visit_id "
            "JOIN patients_patient p ON p.id = v.patient_id JOIN registry_study s ON s.id = p.study_id "
            "WHERE s.code = 'SYN-A' ORDER BY r.ctid"
        )
        stored = [pk for (pk,) in cursor.fetchall()]
    steps_back = sum(1 for earlier, later in zip(stored, stored[1:], strict=False) if later < earlier)
    assert len(stored) > 200 and steps_back < len(synthetic._chunks(PATIENTS))
    # The ids of each study's rows: blocks per chunk of patients, never shared between the two studies.
    ids = {
        code: set(Result.objects.filter(visit__patient__study__code=f"SYN-{code}").values_list("pk", flat=True))
        for code in "AB"
    }
    assert not ids["A"] & ids["B"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunk_that_fails_stops_the_workers_and_the_indexes_come_back(frozen_now, monkeypatch, worker_runs):
    generate = synthetic.CohortGenerator.patient

    def patient(self, number):
        if number == 10:  # in the second of five chunks
            raise RuntimeError("patient 10 could not be made")
        return generate(self, number)

    monkeypatch.setattr(synthetic.CohortGenerator, "patient", patient)
    indexes_before = _index_names()
    with pytest.raises(RuntimeError, match="patient 10 could not be made"):
        seed("SYN-A")
    assert worker_runs == [1]
    assert _index_names() == indexes_before
    # At most the first chunk went in: none after the failed one was copied.
    assert Patient.objects.filter(study__code="SYN-A").count() in (0, 7)


def _counts(summary: str) -> str:
    """The counts of a seeding's summary line, without its study code and time."""
    return summary.split(" s. ", 1)[1]


def _index_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        indexes = {name for (name,) in cursor.fetchall()}
        cursor.execute("SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace")
        return indexes | {name for (name,) in cursor.fetchall()}


def test_refuses_an_existing_study(frozen_now):
    seed("SYN-A")
    with pytest.raises(CommandError, match="exists already"):
        seed("SYN-A")


@pytest.mark.postgres
def test_set_based_sweep_inserts_what_the_python_stages_plan(frozen_now):
    """On PostgreSQL the sweep is one INSERT ... SELECT; it must insert exactly the rows that the visit-by-visit
    rules (`visit_stage`, `members`, used by a dry run) plan, at every stage."""
    from notifications.ledger import reminders_sweep
    from notifications.models import Notification

    call_command("seed_synthetic", patients=80, seed=3, today=TODAY, quiet=True, stdout=StringIO())
    stages = set()
    for days in (0, 2, 9, 45):
        now = dt.datetime.combine(TODAY + dt.timedelta(days=days), dt.time(12), tzinfo=dt.UTC)
        Notification.objects.all().delete()
        planned = {
            (r.kind, r.object_id, r.stage, r.recipient_email) for r in reminders_sweep(now=now, dry_run=True).rows
        }
        report = reminders_sweep(now=now)
        stored = set(Notification.objects.values_list("kind", "object_id", "stage", "recipient_email"))
        assert stored == planned
        assert report.inserted == len(planned)
        stages |= {stage.split("-")[0] for _, _, stage, _ in stored}
    assert stages >= {"upcoming", "due", "closing", "overdue", "escalated"}, stages
