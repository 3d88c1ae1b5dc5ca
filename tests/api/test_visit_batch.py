"""POST /api/v1/visits/record-batch/: many visits of one study in one request, all or nothing, each under the
rules of recording one visit, in a number of queries that does not grow with the batch."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.api.etags import etag_of
from core.audit import Door
from followup import constants as c
from followup.models import ComputedOutcome, Result, Visit
from followup.services import outcomes_recompute_patients, visit_record
from registry.api_keys import api_key_issue
from registry.models import ApiKeyScope
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
)
from tests.factories import make_lot, make_patient, make_study, make_transplant

pytestmark = pytest.mark.django_db

URL = "/api/v1/visits/record-batch/"
# Queries of a batch of 1, 50 and 100 visits on PostgreSQL, without and with outcomes to write (the same for
# any size: the key, the idempotency claim, the site's participation in the study, the visits and results read
# and locked, the writes and their history, the outcomes); data quality adds eight: the locks and signatures of
# all the batch's visits (one query), clearing their source verification (one), and the edit checks over the
# batch's patients (six).
PINNED_BATCH_QUERIES = {"BL": [32, 34, 34], "M1": [33, 37, 37]}
M1 = dt.date(2025, 4, 2)


def cohort(site, size: int, *, code: str = "BATCH"):
    """A study at `site` with `size` transplanted patients (day 0 on 2025-03-03), B-001, B-002, ..."""
    study = make_study(site, code=code)
    patients = []
    for number in range(1, size + 1):
        if number % 10 == 1:
            lot = make_lot(study, site)  # a lot holds cells for 16 of these infusions
        patient = make_patient(study, site, subject_code=f"B-{number:03d}")
        make_transplant(patient, lot)
        patients.append(patient)
    return study, patients


def item(subject: str, visit_code: str, actual_date: dt.date, **extra) -> dict:
    return {
        "subject_code": subject,
        "visit_code": visit_code,
        "actual_date": actual_date.isoformat(),
        "results": {"CREAT": {"value": 0.9, "unit": "mg/dL"}, "PLT": {"value": 210}},
        "sledai_items": ["rash", "arthritis"],
        **extra,
    }


@pytest.fixture
def batch(site_a):
    study, patients = cohort(site_a, 3)
    _, raw = api_key_issue(site=site_a, name="batch", scope=ApiKeyScope.READ_WRITE)
    return {"study": study, "patients": patients, "client": client_for(raw)}


def post(client, body, key: str = "batch-1"):
    return call(client, "POST", URL, body, **{"Idempotency-Key": key})


def test_batch_records_every_visit_with_results_history_and_outcomes(batch):
    body = {
        "study": "BATCH",
        "visits": [
            item("B-001", "BL", dt.date(2025, 3, 3)),
            item("B-002", "BL", dt.date(2025, 3, 3)),
            item("B-001", "M1", M1, sledai_items=[], results={"CREAT": {"value": 80}}),
        ],
    }
    response = post(batch["client"], body)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["recorded"] == 3
    assert [(v["subject_code"], v["visit_code"]) for v in answer["visits"]] == [
        ("B-001", "BL"),
        ("B-002", "BL"),
        ("B-001", "M1"),
    ]
    first, second = batch["patients"][:2]
    m1 = Visit.objects.get(patient=first, code="M1")
    assert (m1.outcome, m1.actual_date, m1.sledai_items) == (c.VisitOutcome.COMPLETED, M1, [])
    assert answer["visits"][2]["id"] == m1.pk
    stored = {r.code: r for r in Result.objects.filter(visit=m1)}
    assert set(stored) == {"CREAT", "EGFR", "SLEDAI2K"}  # eGFR from creatinine, the total from the items
    assert stored["CREAT"].value == Decimal("80.0000")
    bl = Visit.objects.get(patient=first, code="BL")
    assert Result.objects.get(visit=bl, code="CREAT").value == Decimal("79.5600")  # 0.9 mg/dL
    assert Result.objects.get(visit=bl, code="SLEDAI2K").value == Decimal("6")  # arthritis 4 + rash 2

    # Every row has its history row, attributed to the key through the API door.
    history = Result.history.filter(visit_id__in=[bl.pk, m1.pk])
    assert history.count() == Result.objects.filter(visit_id__in=[bl.pk, m1.pk]).count()
    assert {(h.history_type, h.history_door) for h in history} == {("+", Door.API)}
    assert all(h.history_actor.startswith("api-key:") for h in history)
    visit_history = Visit.history.filter(id=m1.pk).order_by("history_date")
    assert visit_history.last().outcome == c.VisitOutcome.COMPLETED
    assert visit_history.last().history_type == "~"

    # The outcomes are those the registry computes: recomputing changes nothing.
    outcome = ComputedOutcome.objects.get(visit=m1)
    assert outcome.sledai == Decimal("0") and outcome.sledai_change == Decimal("-6")
    assert outcomes_recompute_patients([first.pk, second.pk]) == 0
    assert not ComputedOutcome.objects.filter(visit__patient=second).exists()  # BL only: no post-transplant visit


def test_batch_answers_as_recording_each_visit_alone_would(batch, site_a):
    # The same visits recorded one by one, in a second study, give the same rows.
    twin_study, twins = cohort(site_a, 1, code="TWIN")
    entries = [item("B-001", "BL", dt.date(2025, 3, 3)), item("B-001", "M1", M1, sledai_items=["rash"])]
    assert post(batch["client"], {"study": "BATCH", "visits": entries}).status_code == 200
    for entry in entries:
        visit_record(
            visit=Visit.objects.get(patient=twins[0], code=entry["visit_code"]),
            actual_date=dt.date.fromisoformat(entry["actual_date"]),
            results={code: (r["value"], r.get("unit")) for code, r in entry["results"].items()},
            sledai_items=entry["sledai_items"],
        )

    def rows(patient):
        results = Result.objects.filter(visit__patient=patient).order_by("visit__code", "code")
        outcomes = ComputedOutcome.objects.filter(visit__patient=patient).order_by("visit__code")
        return (
            [(r.visit.code, r.code, r.value, r.entered_value, r.entered_unit, r.derived) for r in results],
            [(o.visit.code, o.sledai, o.sledai_change, o.sri4, o.remission, o.flare, o.changes) for o in outcomes],
        )

    assert rows(batch["patients"][0]) == rows(twins[0])


def test_one_bad_visit_stores_nothing_and_every_error_is_named_by_its_index(batch):
    body = {
        "study": "BATCH",
        "visits": [
            item("B-001", "BL", dt.date(2025, 3, 3)),
            item("B-002", "BL", dt.date(2025, 3, 3), results={"CREAT": {"value": 0.9, "unit": "furlongs"}}),
            item("B-404", "BL", dt.date(2025, 3, 3)),
            item("B-003", "M99", dt.date(2025, 3, 3)),
            item("B-003", "M1", dt.date(2025, 9, 1)),  # outside the window, no deviation reason
        ],
    }
    before = row_snapshot()
    body_out = assert_problem(post(batch["client"], body), 400)
    errors = field_errors(body_out)
    assert set(errors) == {
        "visits.1.CREAT",
        "visits.2.subject_code",
        "visits.3.visit_code",
        "visits.4.actual_date",
    }, errors
    assert "furlongs" in errors["visits.1.CREAT"][0]["message"]
    assert "B-404" in errors["visits.2.subject_code"][0]["message"]
    assert "M99" in errors["visits.3.visit_code"][0]["message"]
    assert "outside the window" in errors["visits.4.actual_date"][0]["message"]
    assert changed_tables(before, row_snapshot()) == {}


def test_request_shape_errors_are_named_by_index(batch):
    body = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3)), {"visit_code": "BL"}]}
    errors = field_errors(assert_problem(post(batch["client"], body), 400))
    assert {"visits.1.subject_code", "visits.1.actual_date"} <= set(errors), errors
    assert "visits" in field_errors(assert_problem(post(batch["client"], {"study": "BATCH", "visits": []}, "k2"), 400))


def test_the_same_visit_twice_in_one_batch_is_refused(batch):
    body = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3))] * 2}
    errors = field_errors(assert_problem(post(batch["client"], body), 400))
    assert list(errors) == ["visits.1.visit_code"]
    assert "visits.0" in errors["visits.1.visit_code"][0]["message"]
    assert not Visit.objects.filter(outcome=c.VisitOutcome.COMPLETED).exists()


def test_more_visits_than_the_limit_are_refused(batch):
    body = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3))] * (c.MAX_BATCH_VISITS + 1)}
    errors = field_errors(assert_problem(post(batch["client"], body), 400))
    assert list(errors) == ["visits"]
    assert str(c.MAX_BATCH_VISITS) in errors["visits"][0]["message"]


def test_correcting_a_recorded_visit_in_a_batch_needs_a_reason_and_keeps_it(batch):
    first = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3))]}
    assert post(batch["client"], first).status_code == 200
    again = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3), results={"PLT": {"value": 190}})]}
    errors = field_errors(assert_problem(post(batch["client"], again, "batch-2"), 400))
    assert list(errors) == ["visits.0.reason", "visits.0.version"]

    again["visits"][0]["reason"] = "Platelets re-read from the lab report"
    again["visits"][0]["version"] = etag_of(Visit.objects.get(patient=batch["patients"][0], code="BL"))
    assert post(batch["client"], again, "batch-3").status_code == 200
    bl = Visit.objects.get(patient=batch["patients"][0], code="BL")
    plt = Result.objects.get(visit=bl, code="PLT")
    assert plt.value == Decimal("190.0000")
    change = plt.history.order_by("history_date").last()
    assert (change.history_type, change.history_change_reason) == ("~", "Platelets re-read from the lab report")
    assert Result.objects.filter(visit=bl).count() == 4  # CREAT and its eGFR, PLT, SLEDAI2K: nothing doubled


def test_a_replayed_batch_answers_the_first_answer_and_writes_nothing(batch):
    body = {"study": "BATCH", "visits": [item("B-001", "BL", dt.date(2025, 3, 3))]}
    first = post(batch["client"], body)
    assert first.status_code == 200, first.content
    before = row_snapshot()
    replay = post(batch["client"], body)
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true", replay.content
    assert replay.json() == first.json()
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.postgres
@pytest.mark.slow
def test_the_number_of_queries_does_not_grow_with_the_batch(site_a):
    # On PostgreSQL, from COPY_FROM rows up every table is written by COPY: the same statements for 50
    # visits as for 100. (SQLite splits bulk inserts by its limit of 999 parameters, so it is not pinned.)
    study, patients = cohort(site_a, 151)
    _, raw = api_key_issue(site=site_a, name="batch", scope=ApiKeyScope.READ_WRITE)
    client = client_for(raw)
    call(client, "GET", "/api/v1/sites/")  # the first use of a key also stamps its last use

    def queries(subjects: list[str], visit_code: str, day: dt.date, key: str) -> int:
        body = {"study": study.code, "visits": [item(s, visit_code, day) for s in subjects]}
        with CaptureQueriesContext(connection) as captured:
            response = post(client, body, key)
        assert response.status_code == 200, response.content
        return len(captured.captured_queries)

    subjects = [p.subject_code for p in patients]
    bl = dt.date(2025, 3, 3)
    # One visit (INSERT statements), then 50 and 100 (COPY, which is not captured as a query; the history rows
    # then come by INSERT ... SELECT, which is): baselines first (no outcome), then month 1 (an outcome per visit).
    counts = {
        "BL": [queries(subjects[:1], "BL", bl, "a"), queries(subjects[1:51], "BL", bl, "b")],
        "M1": [queries(subjects[:1], "M1", M1, "c"), queries(subjects[1:51], "M1", M1, "d")],
    }
    counts["BL"].append(queries(subjects[51:], "BL", bl, "e"))
    counts["M1"].append(queries(subjects[51:], "M1", M1, "f"))
    assert counts == PINNED_BATCH_QUERIES
    assert ComputedOutcome.objects.filter(visit__patient__study=study).count() == 151


def test_a_batch_is_attributed_to_the_keys_site_only(world):
    # A's key naming A's own patient in B's-only study: the study is not at A's site.
    body = visit_batch_payload("B-ONLY", "BO-001", visit_code="M1")
    errors = field_errors(assert_problem(post(client_for(world.keys["a_rw"]), body), 400))
    assert list(errors) == ["visits.0.subject_code"]
    # And the shared study's own patient is recorded.
    response = post(client_for(world.keys["a_rw"]), visit_batch_payload(SHARED_STUDY, SUBJECT_A), "k-2")
    assert response.status_code == 200, response.content


# Queries of recording one visit through POST /visits/record/ as a server runs it, outside any transaction
# (key, the idempotency claim committed on its own, a savepoint around the work, the visit looked up and
# locked with its study's outcome definitions, writes and their history, outcomes, the answer kept for the key;
# the answer's results are the ones just written, not read back), without and with an outcome to write. On SQLite
# the history rows are written from the rows read back (PostgreSQL copies them by INSERT ... SELECT), and the
# outcomes are compared with the stored ones in Python (PostgreSQL: in the upsert).
# Data quality adds nine: the lock check, clearing the visit's source verification, its status in the answer,
# and the edit checks over the patient (six).
PINNED_RECORD_QUERIES = {"postgresql": {"BL": 26, "M1": 27}, "sqlite": {"BL": 28, "M1": 30}}


@pytest.mark.django_db(transaction=True)
def test_recording_one_visit_takes_a_pinned_number_of_queries(batch):
    client = batch["client"]
    call(client, "GET", "/api/v1/sites/")  # the first use of a key also stamps its last use
    counts = {}
    for code, day in (("BL", dt.date(2025, 3, 3)), ("M1", M1)):
        body = {"study": "BATCH", **item("B-001", code, day), "visit_code": code}
        with CaptureQueriesContext(connection) as captured:
            response = call(client, "POST", "/api/v1/visits/record/", body, **{"Idempotency-Key": code})
        assert response.status_code == 200, response.content
        counts[code] = len(captured.captured_queries)
    assert counts == PINNED_RECORD_QUERIES[connection.vendor]
