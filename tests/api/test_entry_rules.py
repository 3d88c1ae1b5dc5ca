"""Entry rules of issue 25's "Also" list, over the partner API: a visit cannot be marked missed before its
window opens, a date beyond the registry's horizon (a lot expiring 9999-12-31) is refused, and a result cannot
be both removed and recorded in one submission. Each answer is a 400 problem naming the field and the rule,
and nothing is stored."""

from __future__ import annotations

import pytest

from followup.constants import VisitOutcome
from registry.models import CellProduct
from tests.api.conftest import (
    SHARED_STUDY,
    SUBJECT_A,
    assert_problem,
    call,
    changed_tables,
    field_errors,
    lot_payload,
    medication_payload,
    row_snapshot,
    visit_record_by_key_payload,
)

pytestmark = pytest.mark.django_db


def test_a_visit_whose_window_has_not_opened_cannot_be_marked_missed(world, client_for):
    visit = world.a.visit("M24")  # window 2027-02-01 to 2027-04-02; today is 2026-09-01
    before = row_snapshot()
    response = call(client_for(world.keys["a_rw"]), "post", f"/api/v1/visits/{visit.pk}/missed/", {"reason": "moved"})
    body = assert_problem(response, 400)
    message = field_errors(body)["outcome"][0]["message"]
    assert "2027-02-01" in message and "missed" in message
    assert changed_tables(before, row_snapshot()) == {}
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN


def test_a_visit_whose_window_is_open_can_be_marked_missed(world, client_for):
    visit = world.a.visit("M18")  # window 2026-08-02 to 2026-10-01: open today
    response = call(client_for(world.keys["a_rw"]), "post", f"/api/v1/visits/{visit.pk}/missed/", {"reason": "ill"})
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == VisitOutcome.MISSED


def test_a_lot_expiring_in_9999_is_refused(world, client_for):
    from tests.factories import make_donor

    donor = make_donor(world.study, world.a.site, code="DN-HORIZON")
    payload = lot_payload(SHARED_STUDY, donor.code, lot_number="LOT-HORIZON", expires_on="9999-12-31")
    response = call(client_for(world.keys["a_lots"]), "post", "/api/v1/lots/", payload)
    body = assert_problem(response, 400)
    message = field_errors(body)["expires_on"][0]["message"]
    assert "9999-12-31" in message
    assert not CellProduct.objects.filter(lot_number="LOT-HORIZON").exists()


def test_a_medication_stopping_in_9999_is_refused(world, client_for):
    payload = medication_payload(SHARED_STUDY, SUBJECT_A, stop_date="9999-12-31")
    before = row_snapshot()
    body = assert_problem(call(client_for(world.keys["a_rw"]), "post", "/api/v1/medications/", payload), 400)
    assert "9999-12-31" in field_errors(body)["stop_date"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}


def test_removing_and_recording_the_same_result_is_refused(world, client_for):
    payload = visit_record_by_key_payload(
        SHARED_STUDY, SUBJECT_A, visit_code="M1", remove=["CREAT"], reason="creatinine re-measured"
    )
    from core.api.etags import etag_of
    from followup.models import Visit

    m1 = Visit.objects.get(patient=world.a.patient, code="M1")  # recorded: a correction names its version
    before = row_snapshot()
    response = call(
        client_for(world.keys["a_rw"]), "post", "/api/v1/visits/record/", payload, **{"If-Match": etag_of(m1)}
    )
    body = assert_problem(response, 400)
    message = field_errors(body)["remove"][0]["message"]
    assert "CREAT" in message
    assert changed_tables(before, row_snapshot()) == {}


def test_removing_and_recording_the_same_result_in_a_batch_is_refused(world, client_for):
    payload = {
        "study": SHARED_STUDY,
        "visits": [
            {
                "subject_code": SUBJECT_A,
                "visit_code": "M1",
                "actual_date": "2025-04-02",
                "results": {"CREAT": {"value": 0.8, "unit": "mg/dL"}},
                "remove": ["CREAT"],
                "reason": "corrected",
            }
        ],
    }
    before = row_snapshot()
    response = call(client_for(world.keys["a_rw"]), "post", "/api/v1/visits/record-batch/", payload)
    body = assert_problem(response, 400)
    assert "CREAT" in field_errors(body)["visits.0.remove"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}


# Text a spreadsheet would run (row 10) -------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_an_adverse_event_term_starting_like_a_formula_is_a_400(world, client_for, prefix):
    from tests.api.conftest import adverse_event_payload

    before = row_snapshot()
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A, term=f"{prefix}cmd|' /C calc'!A0")
    body = assert_problem(call(client_for(world.keys["a_rw"]), "post", "/api/v1/adverse-events/", payload), 400)
    assert "cannot start with =, +, -, @" in field_errors(body)["term"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize(("prefix", "shown"), [("\t", "a tab"), ("\r", "a carriage return")])
def test_a_leading_tab_or_carriage_return_is_refused_not_trimmed_away(world, client_for, prefix, shown):
    """The API trims the white space around text, but not a tab or carriage return at its start: the rule sees
    the text as sent (every door and field: tests/api/test_formula_text_doors.py)."""
    from tests.api.conftest import adverse_event_payload

    before = row_snapshot()
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A, term=f"{prefix}Fever")
    body = assert_problem(call(client_for(world.keys["a_rw"]), "post", "/api/v1/adverse-events/", payload), 400)
    assert f"starts with {shown}" in field_errors(body)["term"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}


def test_changing_an_adverse_event_term_to_a_formula_is_a_400(world, client_for):
    ae = world.a.adverse_event
    response = call(
        client_for(world.keys["a_rw"]),
        "patch",
        f"/api/v1/adverse-events/{ae.pk}/",
        {"term": FORMULA, "reason": "typo"},
        if_match=call(client_for(world.keys["a_rw"]), "GET", f"/api/v1/adverse-events/{ae.pk}/")["ETag"],
    )
    body = assert_problem(response, 400)
    assert "term" in field_errors(body)
    ae.refresh_from_db()
    assert ae.term == "Herpes zoster"


def test_a_drug_name_starting_like_a_formula_is_a_400(world, client_for):
    payload = medication_payload(SHARED_STUDY, SUBJECT_A, drug="other", drug_other="@SUM(1+1)*cmd")
    body = assert_problem(call(client_for(world.keys["a_rw"]), "post", "/api/v1/medications/", payload), 400)
    assert "drug_other" in field_errors(body)


def test_free_text_may_start_with_a_dash(world, client_for):
    from tests.api.conftest import adverse_event_payload

    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A, description="- fever after the infusion\n- resolved")
    response = call(client_for(world.keys["a_rw"]), "post", "/api/v1/adverse-events/", payload)
    assert response.status_code == 201, response.content
    assert response.json()["description"].startswith("- fever")


def test_the_admin_shows_a_formula_term_beside_the_field(client, world, superuser):
    from followup import constants as fc
    from followup.models import AdverseEvent

    client.force_login(superuser)
    before = AdverseEvent.objects.count()
    response = client.post(
        "/admin/followup/adverseevent/add/",
        {
            "patient": world.a.patient.pk,
            "term": FORMULA,
            "category": fc.AECategory.OTHER,
            "onset_date": "2026-08-20",
            "grade": "2",
            "relatedness": fc.Relatedness.UNLIKELY,
            "expected": "on",
            "action_taken": fc.AEAction.NONE,
            "outcome": fc.AEOutcome.UNKNOWN,
            "aware_date": "2026-08-20",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    assert AdverseEvent.objects.count() == before
    form = response.context["adminform"].form
    assert "cannot start with =, +, -, @" in " ".join(form.errors["term"])
