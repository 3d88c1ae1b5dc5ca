"""Completing a visit is explicit (docs/clinical-rules.md, "Completing a visit"): a recording either leaves the
visit in progress or completes it, and completing needs each item its definition requires recorded or said
not done with a reason. The same service serves the admin, the API and the batch.

Default timeline: consent 2025-01-15, day 0 2025-03-03 (tests/factories.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from followup.constants import VisitOutcome, VisitState
from followup.models import ComputedOutcome, Result, Visit
from followup.selectors import worklist
from followup.services import VisitEntry, visit_record, visits_record_batch
from registry.constants import DEFAULT_REQUIRED_AT, DEFAULT_REQUIRED_ITEMS
from tests.factories import DAY_ZERO, make_clinical, make_site, make_study, make_user

pytestmark = pytest.mark.django_db

M3 = DAY_ZERO + dt.timedelta(days=91)
BL_DAY = DAY_ZERO - dt.timedelta(days=3)
ALL_BUT_C4 = {"PROT24H": "0.4", "CREAT": "70", "C3": "0.9", "ADSDNA": "12"}


@pytest.fixture
def clinical():
    site = make_site()
    return make_clinical(site=site, study=make_study(site, required_items=True))


def visit(clinical, code: str) -> Visit:
    return Visit.objects.get(patient=clinical.patient, code=code)


def test_the_default_template_requires_the_key_items_at_baseline_and_months_3_6_12(clinical):
    required = dict(clinical.study.visit_definitions.values_list("code", "required_items"))
    assert DEFAULT_REQUIRED_AT == ("BL", "M3", "M6", "M12")
    for code, items in required.items():
        assert items == (list(DEFAULT_REQUIRED_ITEMS) if code in DEFAULT_REQUIRED_AT else []), code


def test_in_progress_keeps_the_visit_open_for_more_and_computes_no_outcome(clinical):
    recorded = visit_record(
        visit=visit(clinical, "BL"), actual_date=BL_DAY, results={"CREAT": "70"}, status="in_progress"
    )
    assert recorded.outcome == VisitOutcome.IN_PROGRESS
    assert recorded.missing_items == ["SLEDAI2K", "PROT24H", "C3", "C4", "ADSDNA"]
    stored = Visit.objects.with_state().get(pk=recorded.pk)
    assert stored.state == VisitState.IN_PROGRESS and stored.actual_date == BL_DAY
    # More is added without a reason for change: the visit is still being entered.
    again = visit_record(visit=stored, actual_date=BL_DAY, results={"C3": "0.9"}, status="in_progress")
    assert again.outcome == VisitOutcome.IN_PROGRESS
    assert set(Result.objects.filter(visit=stored).values_list("code", flat=True)) == {"CREAT", "EGFR", "C3"}
    m3 = visit_record(visit=visit(clinical, "M3"), actual_date=M3, results={"CREAT": "80"}, status="in_progress")
    assert not ComputedOutcome.objects.filter(visit=m3).exists()


def test_completing_with_a_required_item_missing_is_refused_naming_each_and_storing_nothing(clinical):
    bl = visit(clinical, "BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=bl, actual_date=BL_DAY, results=ALL_BUT_C4)
    errors = excinfo.value.message_dict
    assert set(errors) == {"SLEDAI2K", "C4"}
    assert "C4 (Complement C4) is required to complete visit BL" in errors["C4"][0]
    assert "not done" in errors["C4"][0] and "in progress" in errors["C4"][0]
    bl.refresh_from_db()
    assert bl.outcome == VisitOutcome.OPEN and not Result.objects.filter(visit=bl).exists()


def test_completing_with_a_reason_for_each_missing_item_completes_and_keeps_the_reasons(clinical):
    bl = visit_record(
        visit=visit(clinical, "BL"),
        actual_date=BL_DAY,
        results=ALL_BUT_C4,
        sledai_items=["rash"],
        not_done={"C4": "not_available"},
    )
    assert bl.outcome == VisitOutcome.COMPLETED and bl.missing_items == []
    bl.refresh_from_db()
    assert bl.not_done == {"C4": "not_available"}


def test_a_value_recorded_later_replaces_the_not_done_reason(clinical):
    bl = visit_record(
        visit=visit(clinical, "BL"),
        actual_date=BL_DAY,
        results=ALL_BUT_C4,
        sledai_items=[],
        not_done={"C4": "not_done"},
        status="in_progress",
    )
    bl = visit_record(visit=bl, actual_date=BL_DAY, results={"C4": "0.2"})
    bl.refresh_from_db()
    assert bl.outcome == VisitOutcome.COMPLETED and bl.not_done == {}


@pytest.mark.parametrize(
    ("not_done", "field", "words"),
    [
        ({"C4": "forgot"}, "not_done", "not_done or not_available, not 'forgot'"),
        ({"XYZ": "not_done"}, "not_done", "no result XYZ in the catalogue"),
        ({"C3": "not_done"}, "C3", "a value and a reason it was not done were both given"),
    ],
)
def test_a_wrong_not_done_entry_is_refused_with_the_rule(clinical, not_done, field, words):
    with pytest.raises(ValidationError) as excinfo:
        visit_record(
            visit=visit(clinical, "BL"), actual_date=BL_DAY, results=ALL_BUT_C4, not_done=not_done, status="in_progress"
        )
    assert words in " ".join(excinfo.value.message_dict[field])


def test_an_unknown_status_is_refused(clinical):
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit(clinical, "M1"), actual_date=DAY_ZERO + dt.timedelta(days=30), status="done")
    assert "in_progress or complete" in excinfo.value.message_dict["status"][0]


def test_a_visit_without_required_items_completes_as_before(clinical):
    m1 = visit_record(visit=visit(clinical, "M1"), actual_date=DAY_ZERO + dt.timedelta(days=30), results={"PLT": 200})
    assert m1.outcome == VisitOutcome.COMPLETED


def test_correcting_a_completed_visit_asks_only_for_the_items_the_correction_removes(clinical):
    bl = visit_record(
        visit=visit(clinical, "BL"),
        actual_date=BL_DAY,
        results=ALL_BUT_C4,
        sledai_items=[],
        not_done={"C4": "not_done"},
    )
    # A completed visit whose requirements grew since (C4's reason dropped) is still corrected without it.
    Visit.objects.filter(pk=bl.pk).update(not_done={})
    corrected = visit_record(visit=bl, actual_date=BL_DAY, results={"C3": "0.8"}, reason="C3 re-run")
    assert corrected.outcome == VisitOutcome.COMPLETED and corrected.missing_items == ["C4"]
    # Removing a required value needs its reason.
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=bl, actual_date=BL_DAY, remove=["C3"], reason="sample haemolysed")
    assert set(excinfo.value.message_dict) == {"C3"}
    visit_record(visit=bl, actual_date=BL_DAY, remove=["C3"], not_done={"C3": "not_available"}, reason="haemolysed")


def test_a_completed_visit_set_back_in_progress_is_a_correction_and_loses_its_outcome(clinical):
    visit_record(visit=visit(clinical, "BL"), actual_date=BL_DAY, results={**ALL_BUT_C4, "C4": "0.2"}, sledai_items=[])
    m3 = visit_record(visit=visit(clinical, "M3"), actual_date=M3, results={**ALL_BUT_C4, "C4": "0.2"}, sledai_items=[])
    assert ComputedOutcome.objects.filter(visit=m3).exists()
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=m3, actual_date=M3, status="in_progress")
    assert "give a reason for the correction" in excinfo.value.message_dict["reason"][0]
    visit_record(visit=m3, actual_date=M3, status="in_progress", reason="C3 result queried by the lab")
    assert Visit.objects.get(pk=m3.pk).outcome == VisitOutcome.IN_PROGRESS
    assert not ComputedOutcome.objects.filter(visit=m3).exists()


def test_a_batch_item_can_stay_in_progress_and_an_incomplete_one_is_named_by_index(clinical):
    subject = clinical.patient.subject_code
    entries = [
        (subject, "BL", VisitEntry(BL_DAY, results=ALL_BUT_C4, status="in_progress")),
        (subject, "M3", VisitEntry(M3, results=ALL_BUT_C4)),
    ]
    with pytest.raises(ValidationError) as excinfo:
        visits_record_batch(site=clinical.site, study_code=clinical.study.code, entries=entries)
    assert set(excinfo.value.message_dict) == {"visits.1.SLEDAI2K", "visits.1.C4"}
    entries[1] = (subject, "M3", VisitEntry(M3, results=ALL_BUT_C4, sledai_items=[], not_done={"C4": "not_done"}))
    bl, m3 = visits_record_batch(site=clinical.site, study_code=clinical.study.code, entries=entries)
    assert (bl.outcome, bl.missing_items) == (VisitOutcome.IN_PROGRESS, ["SLEDAI2K", "C4"])
    assert (m3.outcome, m3.missing_items) == (VisitOutcome.COMPLETED, [])


def test_the_worklist_keeps_a_visit_in_progress_until_completed(clinical):
    coordinator = make_user("completion_coordinator", clinical.site)
    bl = visit_record(visit=visit(clinical, "BL"), actual_date=BL_DAY, results={"CREAT": "70"}, status="in_progress")
    day = worklist(user=coordinator)
    assert [v.pk for v in day["in_progress"]] == [bl.pk]
    assert day["per_site"][0]["in_progress"] == 1
    visit_record(visit=bl, actual_date=BL_DAY, results=ALL_BUT_C4, sledai_items=[], not_done={"C4": "not_done"})
    assert worklist(user=coordinator)["in_progress"] == []
