"""Completing a visit through the partner API: `"status": "in_progress" | "complete"` on a record (absent:
complete, as before), `not_done` reasons for required items without a value, and `missing_items` in the
answer. M3 of the shared study is made to require the default items here (tests.api.conftest: M3's window is
2025-05-19 to 2025-06-16)."""

from __future__ import annotations

import pytest

from followup.constants import VisitOutcome
from followup.models import Visit
from registry.constants import DEFAULT_REQUIRED_ITEMS
from registry.models import VisitDefinition
from tests.api.conftest import SHARED_STUDY, SUBJECT_A, assert_problem, call, field_errors

pytestmark = pytest.mark.django_db

ALL_BUT_C4 = {
    "PROT24H": {"value": 0.4},
    "CREAT": {"value": 70},
    "C3": {"value": 0.9},
    "ADSDNA": {"value": 12},
}


@pytest.fixture
def m3_requires(world):
    VisitDefinition.objects.filter(study__code=SHARED_STUDY, code="M3").update(
        required_items=list(DEFAULT_REQUIRED_ITEMS)
    )
    return world


def record(world, client_for, path="/api/v1/visits/record/", **extra):
    payload = {
        "study": SHARED_STUDY,
        "subject_code": SUBJECT_A,
        "visit_code": "M3",
        "actual_date": "2025-06-02",
        "results": ALL_BUT_C4,
        **extra,
    }
    return call(client_for(world.keys["a_rw"]), "post", path, payload)


def m3(world) -> Visit:
    return Visit.objects.get(patient=world.a.patient, code="M3")


def test_in_progress_is_stored_and_answers_what_completing_still_needs(m3_requires, client_for):
    response = record(m3_requires, client_for, status="in_progress")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["outcome"], body["state"]) == ("in_progress", "in_progress")
    assert body["missing_items"] == ["SLEDAI2K", "C4"]
    assert m3(m3_requires).outcome == VisitOutcome.IN_PROGRESS
    listed = call(client_for(m3_requires.keys["a_rw"]), "get", f"/api/v1/visits/{m3(m3_requires).pk}/").json()
    assert listed["missing_items"] == ["SLEDAI2K", "C4"]


def test_absent_status_completes_and_a_missing_required_item_is_a_400_naming_it(m3_requires, client_for):
    body = assert_problem(record(m3_requires, client_for), 400)
    errors = field_errors(body)
    assert set(errors) == {"SLEDAI2K", "C4"}
    assert "C4 (Complement C4) is required to complete visit M3" in errors["C4"][0]["message"]
    assert m3(m3_requires).outcome == VisitOutcome.OPEN


def test_not_done_reasons_complete_the_visit(m3_requires, client_for):
    response = record(
        m3_requires, client_for, sledai_items=["rash"], not_done={"C4": "not_available"}, status="complete"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["outcome"], body["not_done"], body["missing_items"]) == ("completed", {"C4": "not_available"}, [])


def test_a_wrong_status_or_reason_is_a_400_naming_the_field(m3_requires, client_for):
    errors = field_errors(assert_problem(record(m3_requires, client_for, status="done"), 400))
    assert "status" in errors
    errors = field_errors(assert_problem(record(m3_requires, client_for, not_done={"C4": "forgot"}), 400))
    assert any(name.startswith("not_done") for name in errors), errors


def test_the_batch_takes_a_status_per_visit_and_answers_missing_items(m3_requires, client_for):
    payload = {
        "study": SHARED_STUDY,
        "visits": [
            {
                "subject_code": SUBJECT_A,
                "visit_code": "M3",
                "actual_date": "2025-06-02",
                "results": ALL_BUT_C4,
                "status": "in_progress",
            }
        ],
    }
    response = call(client_for(m3_requires.keys["a_rw"]), "post", "/api/v1/visits/record-batch/", payload)
    assert response.status_code == 200, response.json()
    (item,) = response.json()["visits"]
    assert (item["outcome"], item["missing_items"]) == ("in_progress", ["SLEDAI2K", "C4"])


def test_adding_to_a_visit_in_progress_needs_no_if_match(m3_requires, client_for):
    record(m3_requires, client_for, status="in_progress")
    visit = m3(m3_requires)
    response = call(
        client_for(m3_requires.keys["a_rw"]),
        "post",
        f"/api/v1/visits/{visit.pk}/record/",
        {"actual_date": "2025-06-02", "results": {"C4": {"value": 0.2}}, "sledai_items": [], "status": "complete"},
    )
    assert response.status_code == 200, response.json()
    assert response.json()["outcome"] == "completed"
