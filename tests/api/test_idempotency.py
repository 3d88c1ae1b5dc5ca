"""Idempotency-Key on POST: a retry replays the first answer and writes nothing; the same key with another
body is refused; keys belong to one API key; concurrent duplicates write once and never fail with a 500."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from followup.models import AdverseEvent, Result, Visit
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from registry.models import IdempotencyRecord
from tests.api.conftest import (
    LOT_A,
    SHARED_STUDY,
    SUBJECT_A,
    adverse_event_payload,
    assert_problem,
    call,
    changed_tables,
    client_for,
    field_errors,
    medication_payload,
    patient_payload,
    row_snapshot,
    transplant_payload,
    visit_batch_payload,
    visit_record_by_key_payload,
)
from tests.api.routes import ROUTES, Route
from tests.concurrency import released_together

pytestmark = pytest.mark.django_db

# Every POST takes an Idempotency-Key except the status change, which If-Match already guards.
IDEMPOTENT_POSTS = [route for route in ROUTES if route.method == "POST" and route.name != "patient-status"]


def key_for(world, route: Route) -> str:
    return world.keys["a_lots"] if route.lots else world.keys["a_rw"]


@pytest.mark.parametrize("route", IDEMPOTENT_POSTS, ids=[r.id for r in IDEMPOTENT_POSTS])
def test_retry_with_the_same_key_and_body_replays_the_first_answer_and_writes_once(world, route):
    client = client_for(key_for(world, route))
    url, payload, headers = route.url(world, "a"), route.payload(world, "a"), route.headers(world, "a")
    headers["Idempotency-Key"] = f"retry-{route.name}"
    before = row_snapshot()
    first = call(client, "POST", url, payload, **headers)
    assert first.status_code == route.success, (first.status_code, first.content[:2000])
    assert "Idempotent-Replayed" not in first
    after_first = row_snapshot()
    assert changed_tables(before, after_first) != {}, "the first request must write"

    second = call(client, "POST", url, payload, **headers)
    assert second.status_code == first.status_code, (second.status_code, second.content[:2000])
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    for name in ("Location", "ETag"):
        if name in first:
            assert second[name] == first[name]
    assert changed_tables(after_first, row_snapshot()) == {}, "a replay must not write"


def test_retried_status_change_is_refused_by_its_stale_if_match(world):
    route = next(r for r in ROUTES if r.name == "patient-status")
    client = client_for(world.keys["a_rw"])
    url, payload, headers = route.url(world, "a"), route.payload(world, "a"), route.headers(world, "a")
    assert call(client, "POST", url, payload, **headers).status_code == 200
    before = row_snapshot()
    assert_problem(call(client, "POST", url, payload, **headers), 412)
    assert changed_tables(before, row_snapshot()) == {}


def test_replayed_refusal_is_the_same_problem(world):
    """A retry of a refused request answers the same problem, as a problem (application/problem+json)."""
    client = client_for(world.keys["a_rw"])
    headers = {"Idempotency-Key": "incomplete-enrolment"}
    first = call(client, "POST", "/api/v1/patients/", {"study": SHARED_STUDY}, **headers)
    assert_problem(first, 400)
    second = call(client, "POST", "/api/v1/patients/", {"study": SHARED_STUDY}, **headers)
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert_problem(second, 400)


# Refused by the recording's rules, after the visit was looked up and locked: one by its visit, one by a value.
REFUSED_RECORDINGS = {
    "record": (
        "/api/v1/visits/record/",
        lambda: visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, visit_code="M99"),
        "visit_code",
    ),
    "record-batch": (
        "/api/v1/visits/record-batch/",
        lambda: visit_batch_payload(SHARED_STUDY, SUBJECT_A, results={"PLT": {"value": 230, "unit": "furlongs"}}),
        "visits.0.PLT",
    ),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(REFUSED_RECORDINGS))
def test_a_refused_recording_outside_any_transaction_writes_nothing_and_its_refusal_is_replayed(world, name):
    """As a server runs it (no test transaction around): the recording's refusal rolls back the work of the
    request, its answer is kept for the key all the same, and a retry replays it."""
    url, payload, field = REFUSED_RECORDINGS[name]
    client = client_for(world.keys["a_rw"])
    before = row_snapshot()
    first = call(client, "POST", url, payload(), **{"Idempotency-Key": f"refused-{name}"})
    assert_problem(first, 400)
    assert field in field_errors(first.json()), first.json()
    assert changed_tables(before, row_snapshot()) == {}
    record = IdempotencyRecord.objects.get(key=f"refused-{name}")
    assert (record.completed, record.response_status) == (True, 400)
    second = call(client, "POST", url, payload(), **{"Idempotency-Key": f"refused-{name}"})
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


@pytest.mark.parametrize("odd", ["\x00", "\u0000\u007f\u00c6 <b>", "\U0001f600"])
def test_a_refusal_that_echoes_any_character_is_kept_and_replayed(world, odd):
    """An error may quote the input back; the first answer is kept whatever characters it holds."""
    client = client_for(world.keys["a_rw"])
    payload = {**patient_payload(subject_code="A-ODD"), "sex": f"F{odd}"}
    body = json.dumps(payload)  # escaped as \uXXXX, as a client's JSON library sends it
    headers = {"HTTP_IDEMPOTENCY_KEY": f"odd-{ord(odd[0])}", "content_type": "application/json"}
    first = client.post("/api/v1/patients/", body, **headers)
    assert_problem(first, 400)
    second = client.post("/api/v1/patients/", body, **headers)
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()


def test_same_key_with_another_body_is_refused_with_422_and_writes_nothing(world):
    client = client_for(world.keys["a_rw"])
    headers = {"Idempotency-Key": "enrol-1"}
    assert (
        call(client, "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW"), **headers).status_code == 201
    )
    before = row_snapshot()
    response = call(client, "POST", "/api/v1/patients/", patient_payload(subject_code="A-OTHER"), **headers)
    body = assert_problem(response, 422)
    assert body["type"].endswith("idempotency-mismatch")
    assert changed_tables(before, row_snapshot()) == {}
    assert not Patient.objects.filter(subject_code="A-OTHER").exists()


def test_same_key_on_another_endpoint_is_another_request(world):
    """The key is scoped to the API key, and the request hash covers method and path: 422, not a replay."""
    client = client_for(world.keys["a_rw"])
    headers = {"Idempotency-Key": "shared-key"}
    assert (
        call(client, "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW"), **headers).status_code == 201
    )
    before = row_snapshot()
    response = call(
        client, "POST", "/api/v1/adverse-events/", adverse_event_payload(SHARED_STUDY, SUBJECT_A), **headers
    )
    assert_problem(response, 422)
    assert changed_tables(before, row_snapshot()) == {}


def test_a_key_reused_by_another_api_key_is_independent(world):
    headers = {"Idempotency-Key": "same-key-everywhere"}
    first = call(
        client_for(world.keys["a_rw"]), "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW"), **headers
    )
    assert first.status_code == 201

    # Another key of the same site, another body: a request of its own, not a 422.
    other = call(
        client_for(world.keys["a_lots"]), "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW2"), **headers
    )
    assert other.status_code == 201, other.content
    assert "Idempotent-Replayed" not in other

    # The same body under another key is not a replay of the first key's answer: it runs, and the
    # duplicate subject code is refused.
    before = row_snapshot()
    same_body = call(
        client_for(world.keys["a_lots"]),
        "POST",
        "/api/v1/patients/",
        patient_payload(subject_code="A-NEW"),
        **{"Idempotency-Key": "a-new-under-the-lot-key"},
    )
    body = assert_problem(same_body, 400)
    assert "subject_code" in field_errors(body)
    assert changed_tables(before, row_snapshot()) == {}

    # Site B's key with the same Idempotency-Key writes B's own patient.
    response = call(
        client_for(world.keys["b_rw"]), "POST", "/api/v1/patients/", patient_payload(subject_code="B-NEW"), **headers
    )
    assert response.status_code == 201, response.content
    assert response.json()["site"] == world.b.site.code
    assert Patient.objects.filter(subject_code__in=["A-NEW", "A-NEW2", "B-NEW"]).count() == 3
    assert IdempotencyRecord.objects.filter(key="same-key-everywhere").count() == 3


def test_post_without_a_key_twice_refuses_the_duplicate_subject_code(world):
    client = client_for(world.keys["a_rw"])
    assert call(client, "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW")).status_code == 201
    before = row_snapshot()
    response = call(client, "POST", "/api/v1/patients/", patient_payload(subject_code="A-NEW"))
    body = assert_problem(response, 400)
    errors = field_errors(body)
    assert "subject_code" in errors
    assert "A-NEW" in errors["subject_code"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}
    assert Patient.objects.filter(subject_code="A-NEW").count() == 1


def test_post_without_a_key_twice_creates_two_adverse_events(world):
    """Without an Idempotency-Key a retry is a new request (an adverse event has no natural key)."""
    client = client_for(world.keys["a_rw"])
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A)
    before = AdverseEvent.objects.count()
    first = call(client, "POST", "/api/v1/adverse-events/", payload)
    second = call(client, "POST", "/api/v1/adverse-events/", payload)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]
    assert AdverseEvent.objects.count() == before + 2


def _post_failing_on_the_server(world, key: str):
    """POST an adverse event under `key` that fails on the server: it must answer 500 and leave neither an
    event nor a record for the key. Returns the client, the payload and the number of events before."""
    client = client_for(world.keys["a_rw"])
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A, term=f"Failed under {key}")
    before = AdverseEvent.objects.count()
    failed = call(client, "POST", "/api/v1/adverse-events/", payload, **{"Idempotency-Key": key})
    left = (AdverseEvent.objects.count() - before, IdempotencyRecord.objects.filter(key=key).count())
    assert (failed.status_code, *left) == (500, 0, 0), "(status, events written, idempotency records left)"
    return client, payload, before


def test_a_failure_while_keeping_the_answer_undoes_the_work_and_a_retry_writes_once(world, monkeypatch):
    """The work and the answer kept for replays commit together: if keeping the answer fails, the adverse
    event is not left behind for the retry to write a second time."""
    import core.api.idempotency as idempotency

    keep = idempotency._keep_answer
    failures = []

    def keep_failing_once(records, record, response):
        if not failures:
            failures.append(record.pk)
            raise RuntimeError("the answer could not be kept")
        keep(records, record, response)

    monkeypatch.setattr(idempotency, "_keep_answer", keep_failing_once)
    client, payload, before = _post_failing_on_the_server(world, "keep-fails")
    retry = call(client, "POST", "/api/v1/adverse-events/", payload, **{"Idempotency-Key": "keep-fails"})
    replay = call(client, "POST", "/api/v1/adverse-events/", payload, **{"Idempotency-Key": "keep-fails"})
    assert (retry.status_code, replay.status_code, replay.json() == retry.json()) == (201, 201, True)
    assert AdverseEvent.objects.count() - before == 1


def test_a_success_whose_work_was_rolled_back_is_answered_as_an_error_and_not_kept(world, monkeypatch):
    """A handler that swallowed a database error answers success for work its transaction will not keep:
    the answer is a 500, nothing is kept for the key, and a retry does the work."""
    from django.db import transaction

    import followup.services

    record = followup.services.ae_record

    def record_then_lose_the_transaction(**fields):
        event = record(**fields)
        transaction.set_rollback(True)  # as an error caught and swallowed would leave it
        return event

    monkeypatch.setattr(followup.services, "ae_record", record_then_lose_the_transaction)
    client, payload, before = _post_failing_on_the_server(world, "lost-work")
    monkeypatch.setattr(followup.services, "ae_record", record)
    retry = call(client, "POST", "/api/v1/adverse-events/", payload, **{"Idempotency-Key": "lost-work"})
    assert (retry.status_code, AdverseEvent.objects.count() - before) == (201, 1)


def test_overlong_idempotency_key_is_refused(world):
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/patients/",
        patient_payload(subject_code="A-NEW"),
        **{"Idempotency-Key": "k" * 201},
    )
    body = assert_problem(response, 400)
    assert "Idempotency-Key" in field_errors(body)
    assert not Patient.objects.filter(subject_code="A-NEW").exists()


# Concurrent duplicates (PostgreSQL: real row locks and unique indexes across connections) ---------------

THREADS = 8


def _post_all_at_once(raw_key: str, url: str, payload: dict, idempotency_key: str) -> list:
    """POST the same request from THREADS threads at once, each with its own client and connection."""
    clients = [client_for(raw_key) for _ in range(THREADS)]
    responses = released_together(
        THREADS,
        lambda index: call(clients[index], "POST", url, payload, **{"Idempotency-Key": idempotency_key}),
        reraise=True,
    )
    assert all(r is not None for r in responses)
    return responses


def _check_statuses(responses, success: int) -> list:
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {success, 409}, statuses
    assert success in statuses, statuses
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409)
            assert response["Retry-After"]
    winners = [r for r in responses if r.status_code == success]
    assert all(r.json() == winners[0].json() for r in winners), "every success must be the same answer"
    return winners


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_patient_posts_write_one_patient(world):
    responses = _post_all_at_once(
        world.keys["a_rw"], "/api/v1/patients/", patient_payload(subject_code="A-RACE"), "race-patient"
    )
    _check_statuses(responses, 201)
    assert Patient.objects.filter(subject_code="A-RACE").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_adverse_event_posts_write_one_event(world):
    """An adverse event has no natural key: only the Idempotency-Key stands between a retry and a duplicate."""
    before = AdverseEvent.objects.count()
    payload = adverse_event_payload(SHARED_STUDY, SUBJECT_A, term="Race condition rash")
    responses = _post_all_at_once(world.keys["a_rw"], "/api/v1/adverse-events/", payload, "race-ae")
    _check_statuses(responses, 201)
    assert AdverseEvent.objects.count() == before + 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_visit_records_by_natural_key_write_one_set_of_results(world):
    visit = Visit.objects.get(patient=world.a.patient, code="M6")
    payload = visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, visit_code="M6")
    history_before = Result.history.filter(visit_id=visit.pk).count()
    responses = _post_all_at_once(world.keys["a_rw"], "/api/v1/visits/record/", payload, "race-visit")
    _check_statuses(responses, 200)
    visit.refresh_from_db()
    assert visit.outcome == "completed"
    codes = sorted(Result.objects.filter(visit=visit).values_list("code", flat=True))
    assert codes == ["CREAT", "EGFR", "PLT", "SLEDAI2K"]
    # Written once: one history row per result, and one change of the visit.
    assert Result.history.filter(visit_id=visit.pk).count() - history_before == len(codes)
    assert Visit.history.filter(id=visit.pk, history_type="~").count() == 1


RETRIED_WRITES = {
    "infusion": ("/api/v1/transplants/", lambda: transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_A), TransplantEvent),
    "medication": ("/api/v1/medications/", lambda: medication_payload(SHARED_STUDY, SUBJECT_A), ConcomitantMedication),
    "adverse event": ("/api/v1/adverse-events/", lambda: adverse_event_payload(SHARED_STUDY, SUBJECT_A), AdverseEvent),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", list(RETRIED_WRITES))
def test_retries_of_one_post_write_once_and_all_answer_the_first_answer(world, api_clock, kind):
    """Retry at once, then again after the first attempt's record went stale: one row, three equal answers."""
    url, payload, model = RETRIED_WRITES[kind]
    client = client_for(world.keys["a_rw"])
    headers = {"Idempotency-Key": f"retry-{kind}"}
    before = model.objects.count()
    responses = [call(client, "POST", url, payload(), **headers)]
    responses.append(call(client, "POST", url, payload(), **headers))
    api_clock.shift(dt.timedelta(minutes=5))
    responses.append(call(client, "POST", url, payload(), **headers))
    observed = ([r.status_code for r in responses], model.objects.count() - before)
    assert observed == ([201, 201, 201], 1), "(statuses, rows written)"
    assert responses[1].json() == responses[2].json() == responses[0].json()
