"""Study status and site participation over the partner API (issue 25, row 8): a key of a site removed from
the study records nothing more for it (patients, infusions, visits one by one or in a batch, missed visits,
medications, adverse events), each a 400 problem naming the rule, and still reads what its site recorded; a
terminated study takes no new patient and no new infusion, and its patients' follow-up goes on."""

from __future__ import annotations

import pytest

from registry import constants as rc
from registry import services
from tests.api.conftest import (
    LOT_A,
    SHARED_STUDY,
    SUBJECT_A,
    SUBJECT_B,
    adverse_event_payload,
    assert_problem,
    call,
    changed_tables,
    field_errors,
    medication_payload,
    patient_payload,
    row_snapshot,
    transplant_payload,
    visit_batch_payload,
    visit_record_by_key_payload,
)

pytestmark = pytest.mark.django_db

REMOVED = "was removed from study MSCT-SLE"


@pytest.fixture
def a_removed(world):
    services.study_remove_site(study=world.study, site=world.a.site, reason="site A left the study")
    return world


def writes(world):
    """(method, url, body, field named) of every write a site's key makes for the shared study."""
    return {
        "patient": ("post", "/api/v1/patients/", patient_payload(), "site"),
        "transplant": (
            "post",
            "/api/v1/transplants/",
            transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_A, infused_at="2026-08-20T10:00:00+08:00"),
            "patient",
        ),
        "medication": ("post", "/api/v1/medications/", medication_payload(SHARED_STUDY, SUBJECT_A), "patient"),
        "adverse event": (
            "post",
            "/api/v1/adverse-events/",
            adverse_event_payload(SHARED_STUDY, SUBJECT_A),
            "patient",
        ),
        "visit by key": (
            "post",
            "/api/v1/visits/record/",
            visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, actual_date="2025-09-01"),
            "visit",
        ),
        "visit batch": ("post", "/api/v1/visits/record-batch/", visit_batch_payload(SHARED_STUDY, SUBJECT_A), "study"),
        "visit": (
            "post",
            f"/api/v1/visits/{world.a.visit('M6').pk}/record/",
            {"actual_date": "2025-09-01", "results": {"PLT": {"value": 230}}},
            "visit",
        ),
        "missed": ("post", f"/api/v1/visits/{world.a.visit('M6').pk}/missed/", {"reason": "away"}, "visit"),
        "status": (
            "post",
            f"/api/v1/patients/{world.a.patient.pk}/status/",
            {"status": "withdrawn", "on_date": "2026-08-30", "reason": "moved"},
            "patient",
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "patient",
        "transplant",
        "medication",
        "adverse event",
        "visit by key",
        "visit batch",
        "visit",
        "missed",
        "status",
    ],
)
def test_a_removed_sites_key_records_nothing_for_the_study(a_removed, client_for, name):
    method, url, body, field = writes(a_removed)[name]
    client = client_for(a_removed.keys["a_rw"])
    headers = {}
    if name == "status":
        headers["if_match"] = call(client, "GET", url.replace("status/", ""))["ETag"]
    before = row_snapshot()
    response = call(client, method, url, body, **headers)
    body = assert_problem(response, 400)
    assert REMOVED in field_errors(body)[field][0]["message"], body
    assert changed_tables(before, row_snapshot()) == {}


def test_a_removed_site_still_reads_what_it_recorded(a_removed, client_for):
    client = client_for(a_removed.keys["a_rw"])
    patients = call(client, "GET", "/api/v1/patients/").json()["results"]
    assert [p["subject_code"] for p in patients] == [SUBJECT_A]
    assert call(client, "GET", f"/api/v1/studies/{SHARED_STUDY}/").status_code == 200
    visits = call(client, "GET", f"/api/v1/visits/?subject_code={SUBJECT_A}").json()["results"]
    assert len(visits) == 12


def test_the_other_site_of_the_study_goes_on(a_removed, client_for):
    payload = medication_payload(SHARED_STUDY, SUBJECT_B)
    response = call(client_for(a_removed.keys["b_rw"]), "post", "/api/v1/medications/", payload)
    assert response.status_code == 201, response.content


@pytest.fixture
def terminated(world):
    services.study_change_status(study=world.study, status=rc.StudyStatus.TERMINATED, reason="futility")
    return world


def test_a_terminated_study_takes_no_new_patient(terminated, client_for):
    before = row_snapshot()
    response = call(client_for(terminated.keys["a_rw"]), "post", "/api/v1/patients/", patient_payload())
    body = assert_problem(response, 400)
    message = field_errors(body)["study"][0]["message"]
    assert "terminated" in message and "takes no new patients" in message
    assert changed_tables(before, row_snapshot()) == {}


def test_a_terminated_study_gives_no_new_infusion(terminated, client_for):
    payload = transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_A, infused_at="2026-08-20T10:00:00+08:00")
    body = assert_problem(call(client_for(terminated.keys["a_rw"]), "post", "/api/v1/transplants/", payload), 400)
    assert "no new infusions" in field_errors(body)["study"][0]["message"]


def test_a_terminated_study_goes_on_with_follow_up_and_safety(terminated, client_for):
    client = client_for(terminated.keys["a_rw"])
    payload = visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, actual_date="2025-09-01")
    assert call(client, "post", "/api/v1/visits/record/", payload).status_code == 200
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A)
    assert call(client, "post", "/api/v1/adverse-events/", payload).status_code == 201
    payload = medication_payload(SHARED_STUDY, SUBJECT_A)
    assert call(client, "post", "/api/v1/medications/", payload).status_code == 201


def test_the_study_shows_its_status_to_partners(terminated, client_for):
    body = call(client_for(terminated.keys["a_rw"]), "GET", f"/api/v1/studies/{SHARED_STUDY}/").json()
    assert body["status"] == "terminated"
