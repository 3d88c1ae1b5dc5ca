"""Edit checks: each opens one query on the record that breaks it, when the record is saved (and over a study
by the command), and closes it with a note when the data are corrected.

Reference patient (tests.factories defaults): Nanjing, day 0 2025-03-03; BL, M1, M3 recorded in progress
or completed with the clock at SETUP (2025-10-01).
"""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import call_command

from followup.services import ae_record, visit_record
from patients.services import patient_change_status, patient_record_death, transplant_record
from quality.constants import MessageKind, QueryState, Resolution
from quality.models import Query
from quality.services.edit_checks import edit_check_settings_save, run_edit_checks
from registry.models import VisitDefinition
from tests.factories import make_clinical, make_superuser

pytestmark = pytest.mark.django_db

D = dt.date
SETUP = dt.datetime(2025, 10, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
DAYS = {"BL": D(2025, 3, 2), "M1": D(2025, 4, 2), "M3": D(2025, 6, 2)}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(SETUP, tick=True):
        yield


@pytest.fixture
def clinical():
    return make_clinical()


def record(clinical, code, results, *, items=None, status="in_progress", reason=""):
    return visit_record(
        visit=clinical.visit(code),
        actual_date=DAYS[code],
        results=results,
        sledai_items=items,
        status=status,
        reason=reason,
    )


def queries(rule, **filters):
    return list(Query.objects.filter(rule=rule, **filters))


def test_creatinine_rise_opens_one_query_and_closes_it_when_corrected(clinical):
    record(clinical, "BL", {"CREAT": ("80", None)})
    record(clinical, "M1", {"CREAT": ("130", None)})  # +62.5%
    [query] = queries("creatinine_rise")
    assert (query.state, query.field, query.patient_id) == (QueryState.OPEN, "CREAT", clinical.patient.pk)
    assert query.target.visit.code == "M1" and query.target.code == "CREAT"
    assert "62.5%" in query.text and "80" in query.text
    [message] = query.messages.all()
    assert (message.kind, message.value, message.actor) == (MessageKind.CHECK, "130 umol/L", "edit check")

    record(clinical, "M1", {"CREAT": ("131", None)}, reason="re-entered")  # still too high: still one query
    assert len(queries("creatinine_rise")) == 1

    record(clinical, "M1", {"CREAT": ("100", None)}, reason="Transcription error")
    query.refresh_from_db()
    assert (query.state, query.resolution) == (QueryState.CLOSED, Resolution.CORRECTED)
    last = query.messages.last()
    assert "corrected" in last.text and last.value == "100 umol/L"

    record(clinical, "M1", {"CREAT": ("150", None)}, reason="Lab re-run")  # wrong again: the same query again
    query.refresh_from_db()
    assert query.state == QueryState.OPEN and len(queries("creatinine_rise")) == 1


def test_creatinine_rise_threshold_is_tuned_per_study(clinical):
    edit_check_settings_save(study=clinical.study, rules={"creatinine_rise": {"pct": 70}}, query_age_limit_days=7)
    record(clinical, "BL", {"CREAT": ("80", None)})
    record(clinical, "M1", {"CREAT": ("130", None)})
    assert queries("creatinine_rise") == []


def test_a_rule_switched_off_opens_nothing(clinical):
    edit_check_settings_save(
        study=clinical.study, rules={"creatinine_rise": {"enabled": False}}, query_age_limit_days=7
    )
    record(clinical, "BL", {"CREAT": ("80", None)})
    record(clinical, "M1", {"CREAT": ("200", None)})
    assert queries("creatinine_rise") == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"nope": {}}, "Unknown edit check nope"),
        ({"creatinine_rise": {"factor": 2}}, "creatinine_rise has no parameter factor"),
        ({"creatinine_rise": {"pct": "many"}}, "creatinine_rise.pct: many is not a number"),
        ({"creatinine_rise": {"enabled": "yes"}}, "creatinine_rise.enabled: true or false"),
    ],
)
def test_bad_settings_are_refused_naming_the_rule(clinical, rules, message):
    with pytest.raises(ValidationError) as caught:
        edit_check_settings_save(study=clinical.study, rules=rules, query_age_limit_days=7)
    assert message in caught.value.message_dict["rules"][0]


def test_egfr_drop_from_baseline(clinical):
    record(clinical, "BL", {"CREAT": ("60", None)})
    record(clinical, "M1", {"CREAT": ("120", None)})  # eGFR roughly halves
    [query] = queries("egfr_drop")
    assert query.target.code == "EGFR" and query.target.visit.code == "M1"
    record(clinical, "M1", {"CREAT": ("65", None)}, reason="Corrected")
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


@pytest.mark.parametrize(
    ("item", "abnormal", "normal"),
    [
        ("low_complement", {"C3": ("0.5", None), "C4": ("0.2", None)}, {"C3": ("1.1", None), "C4": ("0.2", None)}),
        ("increased_dna_binding", {"ADSDNA": ("200", None)}, {"ADSDNA": ("5", None)}),
        ("proteinuria", {"PROT24H": ("0.5", None)}, {"PROT24H": ("0.2", None)}),
        ("thrombocytopenia", {"PLT": ("80", None)}, {"PLT": ("150", None)}),
        ("leukopenia", {"WBC": ("2.5", None)}, {"WBC": ("5", None)}),
    ],
)
def test_sledai_item_against_the_laboratory(clinical, item, abnormal, normal):
    rule = f"sledai_{item}"
    record(clinical, "M1", normal, items=[item])  # ticked while normal
    [query] = queries(rule)
    assert (query.field, query.target.code) == (item, "M1")
    assert "ticked" in query.text
    record(clinical, "M1", normal, items=[], reason="Item removed")  # consistent now
    query.refresh_from_db()
    assert (query.state, query.resolution) == (QueryState.CLOSED, Resolution.CORRECTED)
    record(clinical, "M1", abnormal, items=[], reason="Lab entered")  # not ticked while abnormal
    query.refresh_from_db()
    assert (query.state, query.messages.last().value) == (QueryState.OPEN, "not ticked")
    record(clinical, "M1", abnormal, items=[item], reason="Item ticked")
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert len(queries(rule)) == 1


def test_low_complement_with_one_of_c3_and_c4_low_is_consistent_when_ticked(clinical):
    record(clinical, "M1", {"C3": ("1.0", None), "C4": ("0.05", None)}, items=["low_complement"])
    assert queries("sledai_low_complement") == []


def test_visit_without_the_labs_is_not_judged(clinical):
    record(clinical, "M1", {"CREAT": ("80", None)}, items=["low_complement", "leukopenia"])
    assert Query.objects.filter(rule__startswith="sledai_").count() == 0


def _grade5(clinical, **extra):
    return ae_record(
        patient=clinical.patient,
        transplant=None,
        term="Sepsis",
        category="infection",
        onset_date=D(2025, 6, 1),
        resolution_date=D(2025, 6, 5),
        grade=5,
        serious_death=True,
        relatedness="unlikely",
        expected=False,
        aware_date=D(2025, 6, 5),
        outcome="fatal",
        **extra,
    )


def test_recording_a_grade_5_event_records_the_death_and_opens_no_query(clinical):
    _grade5(clinical)
    clinical.patient.refresh_from_db()
    assert clinical.patient.status == "deceased"
    assert Query.objects.count() == 0


def test_grade_5_event_without_deceased_status_found_by_the_study_run(clinical):
    from patients.models import Patient

    ae = _grade5(clinical)
    Patient.objects.filter(pk=clinical.patient.pk).update(status="enrolled", status_date=None)  # as an import might
    run_edit_checks(study_ids=[clinical.study.pk])
    [query] = queries("fatal_ae_not_deceased")
    assert (query.target, query.field) == (ae, "grade")
    assert query.messages.get().value == "5"
    Patient.objects.filter(pk=clinical.patient.pk).update(status="deceased", status_date=D(2025, 6, 5))
    run_edit_checks(study_ids=[clinical.study.pk])
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_deceased_without_a_grade_5_event(clinical):
    patient_record_death(patient=clinical.patient, on_date=D(2025, 6, 5), cause="Unknown")
    [query] = queries("deceased_without_fatal_ae")
    assert (query.target, query.field) == (clinical.patient, "status")
    _grade5(clinical)
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_completed_visit_with_required_items_missing_found_by_the_study_run(clinical):
    record(clinical, "M1", {"CREAT": ("80", None)}, status="complete")
    VisitDefinition.objects.filter(study=clinical.study, code="M1").update(required_items=["CREAT", "C4"])
    out = io.StringIO()
    call_command("run_edit_checks", "--study", clinical.study.code, stdout=out)
    assert "queries opened: 1" in out.getvalue()
    [query] = queries("required_items_missing")
    assert query.target == clinical.visit("M1") and "C4" in query.text
    call_command("run_edit_checks", "--study", clinical.study.code, stdout=io.StringIO())
    assert len(queries("required_items_missing")) == 1  # a second run opens nothing more
    record(clinical, "M1", {"CREAT": ("80", None), "C4": ("0.2", None)}, status="complete", reason="C4 added")
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED


def test_the_command_refuses_an_unknown_study():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--study: no study NOPE"):
        call_command("run_edit_checks", "--study", "NOPE")


def test_study_run_closes_a_query_of_data_corrected_without_the_receiver(clinical):
    record(clinical, "BL", {"CREAT": ("80", None)})
    record(clinical, "M1", {"CREAT": ("130", None)})
    [query] = queries("creatinine_rise")
    from followup.models import Result

    Result.objects.filter(pk=query.object_id).update(value=90)  # as a bulk load would
    report = run_edit_checks(study_ids=[clinical.study.pk])
    query.refresh_from_db()
    assert (report.closed, query.state) == (1, QueryState.CLOSED)


def test_a_query_closed_by_a_person_stays_closed(clinical, django_user_model):
    from quality.services.queries import query_close

    record(clinical, "BL", {"CREAT": ("80", None)})
    record(clinical, "M1", {"CREAT": ("130", None)})
    [query] = queries("creatinine_rise")
    query_close(query=query, actor=make_superuser("dm"), text="Confirmed with the source: acute kidney injury")
    run_edit_checks(study_ids=[clinical.study.pk])
    query.refresh_from_db()
    assert (query.state, query.resolution) == (QueryState.CLOSED, Resolution.CLOSED)


def test_weight_change_between_infusions(clinical):
    from tests.factories import local_datetime

    transplant_record(
        patient=clinical.patient,
        lot=clinical.lot,
        infused_at=local_datetime(D(2025, 4, 3), clinical.site),
        dose_cells_per_kg=1_000_000,
        weight_kg="70",
    )
    [query] = queries("weight_change")
    assert query.field == "weight_kg" and "16.7%" in query.text


def test_status_change_of_a_patient_without_events_opens_nothing(clinical):
    patient_change_status(patient=clinical.patient, status="completed", on_date=D(2025, 9, 1), reason="Done")
    assert Query.objects.count() == 0


# One study run at a time (two beats may start it at the same moment) --------------------------------------


@pytest.fixture
def edit_check_lock_held_elsewhere():
    """The study run's lock held by another run: another PostgreSQL session, or the cache entry."""
    from django.core.cache import cache
    from django.db import connection, connections

    from core.locks import lock_key
    from quality.services.edit_checks import LOCK_NAME

    if connection.vendor == "postgresql":
        other = connections.create_connection("default")
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key(LOCK_NAME)])
        yield
        other.close()
    else:
        cache.add(LOCK_NAME, "another run", timeout=60)
        yield
        cache.delete(LOCK_NAME)


def _missing_items(clinical):
    record(clinical, "M1", {"CREAT": ("80", None)}, status="complete")
    VisitDefinition.objects.filter(study=clinical.study, code="M1").update(required_items=["CREAT", "C4"])


def test_a_study_run_while_another_holds_the_lock_skips_and_says_so(clinical, edit_check_lock_held_elsewhere):
    _missing_items(clinical)
    out = io.StringIO()
    call_command("run_edit_checks", stdout=out)
    assert out.getvalue() == "skipped: another run of the edit checks is in progress\n"
    assert queries("required_items_missing") == []


def test_the_nightly_task_skips_while_another_run_holds_the_lock(clinical, edit_check_lock_held_elsewhere, caplog):
    import logging

    from quality.tasks import run_study_edit_checks

    _missing_items(clinical)
    with caplog.at_level(logging.WARNING):
        assert run_study_edit_checks() == 0
    assert "run_study_edit_checks skipped: another run of the edit checks is in progress" in caplog.text
    assert queries("required_items_missing") == []


def test_the_nightly_task_runs_and_releases_the_lock(clinical):
    from core.locks import single_run
    from quality.services.edit_checks import LOCK_NAME
    from quality.tasks import run_study_edit_checks

    _missing_items(clinical)
    assert run_study_edit_checks() == 1
    assert len(queries("required_items_missing")) == 1
    with single_run(LOCK_NAME) as held:
        assert held


# The cost of the checks on one recording ----------------------------------------------------------------


def _check_statements(clinical, code, results, **kwargs) -> list[str]:
    """The statements the edit checks add to one visit recording (those of `run_edit_checks`)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from quality import handlers

    captured: list[str] = []
    original = handlers.run_edit_checks

    def counted(**kw):
        with CaptureQueriesContext(connection) as ctx:
            result = original(**kw)
        captured.extend(q["sql"] for q in ctx.captured_queries)
        return result

    handlers.run_edit_checks = counted
    try:
        record(clinical, code, results, **kwargs)
    finally:
        handlers.run_edit_checks = original
    return captured


def test_one_visit_recording_costs_a_fixed_number_of_statements_for_the_checks(clinical):
    """Six reads (the settings, the creatinine, eGFR and SLEDAI-2K candidates, the required items, the live
    queries of the patient) whatever the patient's history; opening a query adds the insert, the read of its
    key, its history row and its thread message, closing one the update, its history row, the read of the
    query and its record and the thread message. A history row is one INSERT ... SELECT on PostgreSQL, a read
    and an insert elsewhere (`core.audit.history_of_rows`)."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from followup.models import Result

    ContentType.objects.get_for_model(Result)  # cached for the process: not a cost of each recording
    history = 1 if connection.vendor == "postgresql" else 2
    assert len(_check_statements(clinical, "BL", {"CREAT": ("80", None)})) == 6
    assert len(_check_statements(clinical, "M1", {"CREAT": ("85", None)})) == 6
    # A longer history reads no more.
    assert len(_check_statements(clinical, "M3", {"CREAT": ("90", None)})) == 6
    # A finding opens a query.
    opening = _check_statements(clinical, "M3", {"CREAT": ("150", None)}, reason="re-entered")
    assert len(queries("creatinine_rise")) == 1
    assert len(opening) == 6 + 3 + history
    # The correction closes it.
    closing = _check_statements(clinical, "M3", {"CREAT": ("90", None)}, reason="Transcription error")
    assert queries("creatinine_rise")[0].state == QueryState.CLOSED
    assert len(closing) == 6 + 4 + history
