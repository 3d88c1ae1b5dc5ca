"""The partner API's queries: a key lists and reads its site's queries with their threads, filters them, and
answers an open one; it cannot raise, close or re-open, and sees nothing of another site."""

from __future__ import annotations

import datetime as dt

import pytest

from core.audit import Door
from quality.constants import QueryState
from quality.models import Query
from quality.services.queries import query_close
from tests.api.conftest import assert_problem, call, client_for, field_errors
from tests.factories import make_superuser

pytestmark = pytest.mark.django_db


def test_list_shows_the_sites_queries_with_their_threads(world):
    body = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/queries/").json()
    [row] = body["results"]
    assert row["id"] == world.a.query.pk
    assert (row["record_type"], row["record_id"], row["field"]) == ("patient", world.a.patient.pk, "birth_year")
    assert (row["state"], row["subject_code"], row["study"]) == ("open", "A-001", "MSCT-SLE")
    assert row["question"] == "Year of birth per the ID card?"
    assert [m["kind"] for m in row["messages"]] == ["raised"]
    assert row["messages"][0]["value"] == "1990"


def test_a_key_of_another_site_sees_none(world):
    client = client_for(world.keys["b_rw"])
    listed = [row["id"] for row in call(client, "GET", "/api/v1/queries/").json()["results"]]
    assert listed == [world.b.query.pk]
    assert world.a.query.pk not in listed
    assert_problem(call(client, "GET", f"/api/v1/queries/{world.a.query.pk}/"), 404)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "open"}, 1),
        ({"state": "closed"}, 0),
        ({"record_type": "patient"}, 1),
        ({"record_type": "visit"}, 0),
        ({"min_age_days": 0}, 1),
        ({"min_age_days": 3}, 0),
    ],
)
def test_filters(world, params, expected):
    if "record_id" in params:
        params["record_id"] = world.a.patient.pk
    response = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/queries/", params)
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == expected


def test_an_unknown_state_is_refused_naming_the_parameter(world):
    response = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/queries/", {"state": "pending"})
    assert "state" in field_errors(assert_problem(response, 400))


@pytest.mark.parametrize("age", ["3.402823466e+38", "36501", "2.5", "-1", "1e400"])
def test_an_impossible_age_is_refused_naming_the_parameter(world, age):
    response = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/queries/", {"min_age_days": age})
    assert "min_age_days" in field_errors(assert_problem(response, 400))


def test_answer_moves_the_query_to_answered_and_records_the_door(world):
    url = f"/api/v1/queries/{world.a.query.pk}/answer/"
    response = call(client_for(world.keys["a_rw"]), "POST", url, {"text": "1990 per the ID card."})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "answered"
    answer = body["messages"][-1]
    assert (answer["kind"], answer["door"], answer["text"]) == ("answer", Door.API, "1990 per the ID card.")
    assert answer["actor"]  # the key, as the audit trail names it


def test_answering_twice_is_a_problem_naming_the_state(world):
    url = f"/api/v1/queries/{world.a.query.pk}/answer/"
    client = client_for(world.keys["a_rw"])
    assert call(client, "POST", url, {"text": "First"}).status_code == 200
    body = assert_problem(call(client, "POST", url, {"text": "Second"}), 400)
    assert "state" in field_errors(body)


def test_an_empty_answer_is_refused(world):
    response = call(client_for(world.keys["a_rw"]), "POST", f"/api/v1/queries/{world.a.query.pk}/answer/", {})
    assert "text" in field_errors(assert_problem(response, 400))


def test_a_closed_query_cannot_be_answered(world):
    query_close(query=world.a.query, actor=make_superuser("dm-api"))
    url = f"/api/v1/queries/{world.a.query.pk}/answer/"
    assert_problem(call(client_for(world.keys["a_rw"]), "POST", url, {"text": "Late"}), 400)
    assert Query.objects.get(pk=world.a.query.pk).state == QueryState.CLOSED


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_partners_cannot_change_or_close_a_query(world, method):
    response = call(client_for(world.keys["a_rw"]), method, f"/api/v1/queries/{world.a.query.pk}/", {"state": "closed"})
    assert response.status_code == 405
    assert Query.objects.get(pk=world.a.query.pk).state == QueryState.OPEN


def test_partners_cannot_raise_a_query(world):
    response = call(client_for(world.keys["a_rw"]), "POST", "/api/v1/queries/", {"text": "?"})
    assert response.status_code == 405


def test_a_read_only_key_cannot_answer(world):
    url = f"/api/v1/queries/{world.a.query.pk}/answer/"
    assert_problem(call(client_for(world.keys["a_ro"]), "POST", url, {"text": "x"}), 403)


def test_age_is_counted_in_whole_days(world, api_clock):
    api_clock.shift(dt.timedelta(days=8))
    [row] = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/queries/", {"min_age_days": 7}).json()["results"]
    assert row["age_days"] == 8


@pytest.mark.parametrize("lock", ["patient", "study"])
def test_a_query_on_a_locked_record_is_answered_but_the_record_is_not_corrected(world, superuser, lock):
    """Answering is communication about the data, not a change to them: allowed on a locked (or signed)
    record. Correcting the data stays refused (423) until a data manager unlocks."""
    from quality.models import Lock
    from quality.services import review

    if lock == "patient":
        review.lock_patient(patient=world.a.patient, reason="Source documents under review", actor=superuser)
    else:
        review.lock_study(study=world.study, reason="Database lock", actor=superuser)
    client = client_for(world.keys["a_rw"])
    url = f"/api/v1/queries/{world.a.query.pk}/answer/"
    response = call(
        client, "POST", url, {"text": "1990 per the ID card; the record is locked, please unlock to correct."}
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "answered"
    world.a.query.refresh_from_db()
    assert world.a.query.state == QueryState.ANSWERED

    patient_url = f"/api/v1/patients/{world.a.patient.pk}/"
    etag = call(client, "GET", patient_url)["ETag"]
    correction = {"birth_year": 1991, "reason": "Year of birth corrected from the ID card"}
    refused = assert_problem(call(client, "PATCH", patient_url, correction, **{"If-Match": etag}), 423)
    assert refused["type"].endswith("/locked")
    world.a.patient.refresh_from_db()
    assert world.a.patient.birth_year == 1990
    assert Lock.objects.filter(released_at__isnull=True).exists()
