"""Censored results through every door of the partner API that takes or gives a result value: a visit's
record, the record by natural key, the batch, and the reads (visits, results); the schema describes the
comparator. A client that sends no comparator is answered as before, with "comparator": ""."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from followup.models import Result
from tests.api.conftest import (
    SHARED_STUDY,
    SUBJECT_A,
    assert_problem,
    call,
    changed_tables,
    client_for,
    field_errors,
    row_snapshot,
    visit_batch_payload,
    visit_record_by_key_payload,
    visit_record_payload,
)

pytestmark = pytest.mark.django_db

CENSORED = {"ADSDNA": {"value": 10, "comparator": "<", "unit": "IU/mL"}, "CREAT": {"value": 20, "comparator": "<"}}


def by_code(results: list[dict]) -> dict[str, dict]:
    return {r["code"]: r for r in results}


def test_a_visit_recorded_with_a_comparator_stores_it_and_reads_it_back(world):
    client = client_for(world.keys["a_rw"])
    visit = world.a.visit("M3")
    response = call(client, "POST", f"/api/v1/visits/{visit.pk}/record/", visit_record_payload(results=CENSORED))
    assert response.status_code == 200, response.content
    answered = by_code(response.json()["results"])
    assert (answered["ADSDNA"]["comparator"], Decimal(str(answered["ADSDNA"]["value"]))) == ("<", Decimal("10"))
    assert answered["CREAT"]["comparator"] == "<"
    assert "EGFR" not in answered, "no eGFR from a censored creatinine"
    stored = Result.objects.get(visit=visit, code="ADSDNA")
    assert (stored.comparator, stored.value, stored.entered_value, stored.entered_unit) == (
        "<",
        Decimal("10"),
        Decimal("10"),
        "IU/mL",
    )
    # The visit and the results endpoints read it back the same way.
    assert response.json() == call(client, "GET", f"/api/v1/visits/{visit.pk}/").json()
    listed = call(client, "GET", "/api/v1/visits/", None).json()["results"]
    assert by_code(next(v for v in listed if v["id"] == visit.pk)["results"])["ADSDNA"]["comparator"] == "<"
    results = call(client, "GET", "/api/v1/results/?code=ADSDNA", None).json()["results"]
    assert [(r["visit_code"], r["comparator"]) for r in results if r["visit_code"] == "M3"] == [("M3", "<")]


def test_a_visit_recorded_by_key_and_in_a_batch_keeps_the_comparator(world):
    client = client_for(world.keys["a_rw"])
    one = visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, visit_code="M6", results=CENSORED)
    assert call(client, "POST", "/api/v1/visits/record/", one, **{"Idempotency-Key": "k1"}).status_code == 200
    assert Result.objects.get(visit=world.a.visit("M6"), code="ADSDNA").comparator == "<"
    batch = visit_batch_payload(
        SHARED_STUDY, SUBJECT_A, visit_code="M9", results={"PLT": {"value": 1000, "comparator": ">", "unit": "10^9/L"}}
    )
    batch["visits"][0]["actual_date"] = "2025-12-02"
    response = call(client, "POST", "/api/v1/visits/record-batch/", batch, **{"Idempotency-Key": "k2"})
    assert response.status_code == 200, response.content
    plt = Result.objects.get(visit=world.a.visit("M9"), code="PLT")
    assert (plt.comparator, plt.value) == (">", Decimal("1000"))


def test_a_client_that_sends_no_comparator_is_answered_as_before(world):
    client = client_for(world.keys["a_rw"])
    visit = world.a.visit("M3")
    response = call(client, "POST", f"/api/v1/visits/{visit.pk}/record/", visit_record_payload())
    assert response.status_code == 200, response.content
    assert {r["comparator"] for r in response.json()["results"]} == {""}
    assert "EGFR" in by_code(response.json()["results"])


@pytest.mark.parametrize("exact", ["", None])
def test_a_comparator_sent_back_as_read_means_an_exact_value(world, exact):
    client = client_for(world.keys["a_rw"])
    visit = world.a.visit("M3")
    payload = visit_record_payload(results={"CREAT": {"value": 70, "comparator": exact}})
    response = call(client, "POST", f"/api/v1/visits/{visit.pk}/record/", payload)
    assert response.status_code == 200, response.content
    assert Result.objects.get(visit=visit, code="CREAT").comparator == ""
    assert "EGFR" in by_code(response.json()["results"])


@pytest.mark.parametrize(
    ("entry", "field", "fragments"),
    [
        ({"value": 10, "comparator": "<<"}, "results.ADSDNA.comparator", ["<<"]),
        ({"value": 10, "comparator": "≤"}, "results.ADSDNA.comparator", ["≤"]),
        ({"value": 0, "comparator": "<"}, "ADSDNA", ["ADSDNA", "below 0"]),
    ],
)
def test_a_comparator_that_cannot_hold_is_refused_naming_the_field(world, entry, field, fragments):
    visit = world.a.visit("M3")
    before = row_snapshot()
    payload = visit_record_payload(results={"ADSDNA": entry})
    body = assert_problem(
        call(client_for(world.keys["a_rw"]), "POST", f"/api/v1/visits/{visit.pk}/record/", payload), 400
    )
    errors = field_errors(body)
    assert field in errors, body
    for fragment in fragments:
        assert fragment in errors[field][0]["message"], errors[field]
    assert changed_tables(before, row_snapshot()) == {}


def test_a_comparator_on_a_score_is_refused(world):
    visit = world.a.visit("M3")
    payload = visit_record_payload(results={"PGA": {"value": 1, "comparator": "<"}}, sledai_items=None)
    body = assert_problem(
        call(client_for(world.keys["a_rw"]), "POST", f"/api/v1/visits/{visit.pk}/record/", payload), 400
    )
    assert "laboratory results only" in field_errors(body)["PGA"][0]["message"]


def test_the_schema_describes_the_comparator_of_a_result(db):
    schema = json.loads(APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    components = schema["components"]["schemas"]
    entry = components["ResultInputRequest"]["properties"]["comparator"]
    assert "censored" in json.dumps(entry) or "Quantity.comparator" in json.dumps(entry)
    text = json.dumps(components)
    for symbol in ('"<"', '"<="', '">="', '">"'):
        assert symbol in text
    assert "comparator" in components["Result"]["properties"]
    assert "comparator" in components["VisitResult"]["properties"]
