"""Updates need If-Match (428 without, 412 when stale) and leave an audit row attributed to the key;
every error is an RFC 9457 problem with field errors that say what was wrong; clients are throttled per key."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.settings import api_settings

from core.api.etags import etag_of
from followup.services import visit_record
from registry.api.base import ApiKeyThrottle
from tests.api.conftest import (
    LOT_A,
    SHARED_STUDY,
    SUBJECT_A,
    assert_problem,
    call,
    changed_tables,
    client_for,
    field_errors,
    row_snapshot,
    transplant_payload,
    visit_record_by_key_payload,
    visit_record_payload,
)
from tests.api.routes import ROUTES, Route

pytestmark = pytest.mark.django_db

# Every object's GET sends its ETag (a cohort report is computed, not an object with versions; a download is
# a file).
DETAIL_GETS = [
    r
    for r in ROUTES
    if r.method == "GET" and r.target is not None and r.name not in ("report-detail", "export-download")
]
CONDITIONAL = [r for r in ROUTES if r.if_match]
REASONS = {
    "lot-detail": "Stock recounted",
    "patient-detail": "Year of birth corrected from the ID card",
    "patient-status": "Follow-up completed",
    "medication-detail": "Tapered",
    "adverse-event-detail": "Follow-up call",
}


def key_for(world, route: Route) -> str:
    return world.keys["a_lots"] if route.lots else world.keys["a_rw"]


# ETags and If-Match ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", DETAIL_GETS, ids=[r.id for r in DETAIL_GETS])
def test_detail_get_sends_the_objects_etag(world, route):
    response = call(client_for(world.keys["a_rw"]), "GET", route.url(world, "a"))
    assert response.status_code == 200
    target = route.target(world, "a")
    target.refresh_from_db()
    assert response["ETag"] == etag_of(target)


def test_etag_changes_when_the_object_changes(world):
    client = client_for(world.keys["a_rw"])
    url = f"/api/v1/patients/{world.a.patient.pk}/"
    first = call(client, "GET", url)["ETag"]
    response = call(client, "PATCH", url, {"refractory_notes": "MMF failed", "reason": "Notes"}, **{"If-Match": first})
    assert response.status_code == 200
    assert response["ETag"] != first
    assert call(client, "GET", url)["ETag"] == response["ETag"]


def test_outcome_etag_changes_when_the_outcome_is_recomputed(world):
    """An ETag names one version of the representation; a recomputed outcome is another version."""
    outcome = world.a.outcome
    url = f"/api/v1/outcomes/{outcome.pk}/"
    client = client_for(world.keys["a_rw"])
    first = call(client, "GET", url)
    visit_record(
        visit=outcome.visit,
        actual_date=outcome.visit.actual_date,
        results={"C3": ("0.4", None)},
        sledai_items=["rash", "arthritis", "alopecia"],
        reason="Items re-read from the source",
    )
    second = call(client, "GET", url)
    assert second.json()["sledai"] != first.json()["sledai"], "the outcome itself changed"
    assert second["ETag"] != first["ETag"]


@pytest.mark.parametrize("route", CONDITIONAL, ids=[r.id for r in CONDITIONAL])
def test_update_without_if_match_is_refused_with_428(world, route):
    before = row_snapshot()
    response = call(client_for(key_for(world, route)), route.method, route.url(world, "a"), route.payload(world, "a"))
    body = assert_problem(response, 428)
    assert body["type"].endswith("precondition-required")
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize("route", CONDITIONAL, ids=[r.id for r in CONDITIONAL])
def test_update_with_a_stale_etag_is_refused_with_412_and_the_current_etag(world, route):
    client = client_for(key_for(world, route))
    url, payload = route.url(world, "a"), route.payload(world, "a")
    stale = route.headers(world, "a")["If-Match"]
    assert call(client, route.method, url, payload, **{"If-Match": stale}).status_code == 200
    target = route.target(world, "a")
    target.refresh_from_db()
    before = row_snapshot()
    response = call(client, route.method, url, payload, **{"If-Match": stale})
    assert_problem(response, 412)
    assert response["ETag"] == etag_of(target) != stale
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize("route", CONDITIONAL, ids=[r.id for r in CONDITIONAL])
def test_update_with_the_current_etag_is_saved_and_attributed_to_the_key(world, route):
    key = world.key_objects["a_lots" if route.lots else "a_rw"]
    response = call(
        client_for(key_for(world, route)),
        route.method,
        route.url(world, "a"),
        route.payload(world, "a"),
        **route.headers(world, "a"),
    )
    assert response.status_code == 200, response.content
    target = route.target(world, "a")
    target.refresh_from_db()
    assert response["ETag"] == etag_of(target)
    row = target.history.order_by("-history_id").first()
    assert row.history_type == "~"
    assert row.history_door == "api"
    assert key.prefix in row.history_actor and world.a.site.code in row.history_actor, row.history_actor
    assert row.history_change_reason == REASONS[route.name]


@pytest.mark.parametrize("route", CONDITIONAL, ids=[r.id for r in CONDITIONAL])
def test_a_reason_of_the_longest_accepted_length_is_kept_whole_in_the_history(world, route):
    reason = ("Corrected after the source document review; " * 50)[:1999].rstrip() + "."
    response = call(
        client_for(key_for(world, route)),
        route.method,
        route.url(world, "a"),
        {**route.payload(world, "a"), "reason": reason},
        **route.headers(world, "a"),
    )
    assert response.status_code == 200, response.content
    target = route.target(world, "a")
    assert target.history.order_by("-history_id").first().history_change_reason == reason


def _patch_patient(world, if_match: str):
    patient = world.a.patient
    return call(
        client_for(world.keys["a_rw"]),
        "PATCH",
        f"/api/v1/patients/{patient.pk}/",
        {"birth_year": 1992, "reason": "Corrected"},
        **{"If-Match": if_match},
    )


def test_weak_form_of_the_current_etag_does_not_match(world):
    """If-Match compares strongly (RFC 9110, 13.1.1): a weak tag never matches, even of the current version."""
    body = assert_problem(_patch_patient(world, "W/" + etag_of(world.a.patient)), 412)
    assert "W/" in body["detail"]


@pytest.mark.parametrize(
    "header",
    ["*", "{current}", '"stale", {current}', '"a,b", {current}', ' {current} , "other"', 'W/"x", {current}'],
)
def test_if_match_star_or_a_list_holding_the_current_etag_is_saved(world, header):
    response = _patch_patient(world, header.format(current=etag_of(world.a.patient)))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("header", ['"stale", "older"', "W/{current}, W/{current}", "{current} garbage", "not-a-tag"])
def test_if_match_list_without_the_current_strong_etag_is_412(world, header):
    assert_problem(_patch_patient(world, header.format(current=etag_of(world.a.patient))), 412)


def test_correcting_a_recorded_visit_needs_if_match_and_is_attributed_to_the_key(world):
    visit = world.a.visit("M1")
    client = client_for(world.keys["a_rw"])
    url = f"/api/v1/visits/{visit.pk}/record/"
    payload = {"actual_date": "2025-04-02", "results": {"PLT": {"value": 180}}, "reason": "Lab re-issued the report"}
    before = row_snapshot()
    assert_problem(call(client, "POST", url, payload), 428)
    assert_problem(call(client, "POST", url, payload, **{"If-Match": '"0123456789abcdef0123456789abcdef"'}), 412)
    assert changed_tables(before, row_snapshot()) == {}
    response = call(client, "POST", url, payload, **{"If-Match": etag_of(visit)})
    assert response.status_code == 200, response.content
    visit.refresh_from_db()
    row = visit.results.get(code="PLT").history.order_by("-history_id").first()
    assert (row.history_door, row.history_change_reason) == ("api", "Lab re-issued the report")
    assert world.a.rw_key.prefix in row.history_actor and world.a.site.code in row.history_actor


def test_the_answer_to_a_recording_is_the_visit_as_a_get_then_reads_it(world):
    """The answer's results are the ones just written (not read back): through a first recording (a unit to
    convert, items, eGFR computed) and a correction that keeps, changes, adds and removes results."""
    client = client_for(world.keys["a_rw"])
    first = visit_record_by_key_payload(
        SHARED_STUDY,
        SUBJECT_A,
        results={"CREAT": {"value": 0.88, "unit": "mg/dL"}, "PLT": {"value": 230}, "C3": {"value": 0.9125}},
        sledai_items=["rash", "alopecia"],
    )
    recorded = call(client, "POST", "/api/v1/visits/record/", first)
    assert recorded.status_code == 200, recorded.content
    url = f"/api/v1/visits/{recorded.json()['id']}/"
    assert recorded.json() == call(client, "GET", url).json()
    correction = {
        "actual_date": first["actual_date"],
        "results": {"PLT": {"value": 180}, "ALB": {"value": 35.5}},
        "remove": ["C3"],
        "reason": "Lab re-issued the report",
    }
    corrected = call(client, "POST", f"{url}record/", correction, **{"If-Match": recorded["ETag"]})
    assert corrected.status_code == 200, corrected.content
    assert corrected.json() == call(client, "GET", url).json()
    assert [r["code"] for r in corrected.json()["results"]] == ["ALB", "CREAT", "EGFR", "PLT", "SLEDAI2K"]


def test_writes_through_the_api_are_attributed_to_the_api_door(world):
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/visits/record/",
        visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A),
    )
    assert response.status_code == 200, response.content
    visit = world.a.visit("M6")
    for row in [visit.history.order_by("-history_id").first()] + [
        r.history.order_by("-history_id").first() for r in visit.results.all()
    ]:
        assert row.history_door == "api"
        assert row.history_actor == f"api-key:{world.a.rw_key.prefix}@{world.a.site.code}"


# Problem details ---------------------------------------------------------------------------------------


def _record(world, payload: dict, visit_code: str = "M3"):
    visit = world.a.visit(visit_code)
    return call(client_for(world.keys["a_rw"]), "POST", f"/api/v1/visits/{visit.pk}/record/", payload)


def _single_error(body: dict, field_fragment: str) -> dict:
    matching = [e for e in body["errors"] if e["field"] and field_fragment in e["field"]]
    assert matching, body
    for error in body["errors"]:
        assert isinstance(error["message"], str) and error["message"]
        assert isinstance(error["code"], str) and error["code"]
    return matching[0]


def _refused(world, response, status: int = 400) -> dict:
    body = assert_problem(response, status)
    assert body["errors"], body
    field_errors(body)  # every entry is exactly {field, message, code}
    return body


def test_unknown_unit_names_the_code_the_unit_and_the_accepted_units(world):
    before = row_snapshot()
    payload = visit_record_payload(results={"CREAT": {"value": 0.9, "unit": "mmol/L"}})
    body = _refused(world, _record(world, payload))
    message = _single_error(body, "CREAT")["message"]
    for fragment in ("CREAT", "mmol/L", "umol/L", "mg/dL"):
        assert fragment in message, message
    assert message in body["detail"]
    assert changed_tables(before, row_snapshot()) == {}


def test_out_of_range_value_names_the_code_the_value_the_unit_and_the_range(world):
    before = row_snapshot()
    body = _refused(world, _record(world, visit_record_payload(results={"CREAT": {"value": 5000, "unit": "umol/L"}})))
    message = _single_error(body, "CREAT")["message"]
    for fragment in ("CREAT", "5000", "umol/L", "10", "2000"):
        assert fragment in message, message
    assert changed_tables(before, row_snapshot()) == {}


def test_out_of_range_value_in_another_unit_names_both_units(world):
    body = _refused(world, _record(world, visit_record_payload(results={"CREAT": {"value": 40, "unit": "mg/dL"}})))
    message = _single_error(body, "CREAT")["message"]
    for fragment in ("CREAT", "40", "mg/dL", "umol/L", "2000"):
        assert fragment in message, message


def test_window_violation_names_the_date_and_the_window(world):
    before = row_snapshot()
    body = _refused(world, _record(world, visit_record_payload(actual_date="2025-08-01")))
    message = _single_error(body, "actual_date")["message"]
    for fragment in ("2025-08-01", "M3", "2025-05-19", "2025-06-16", "deviation"):
        assert fragment in message, message
    assert changed_tables(before, row_snapshot()) == {}


def test_window_violation_with_a_deviation_reason_is_recorded(world):
    response = _record(world, visit_record_payload(actual_date="2025-08-01", deviation_reason="Patient abroad"))
    assert response.status_code == 200, response.content
    assert response.json()["actual_date"] == "2025-08-01"


def test_unknown_result_code_names_it(world):
    before = row_snapshot()
    body = _refused(world, _record(world, visit_record_payload(results={"XYZ": {"value": 1}})))
    error = [e for e in body["errors"] if "XYZ" in e["message"]]
    assert error, body
    assert "CREAT" in error[0]["message"], "the message lists the accepted codes"
    assert changed_tables(before, row_snapshot()) == {}


def test_unknown_visit_code_names_it(world):
    before = row_snapshot()
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/visits/record/",
        visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A, visit_code="M99"),
    )
    body = _refused(world, response)
    message = _single_error(body, "visit_code")["message"]
    assert "M99" in message and SUBJECT_A in message
    assert changed_tables(before, row_snapshot()) == {}


def test_sledai_total_that_disagrees_with_the_items_is_refused(world):
    before = row_snapshot()
    payload = visit_record_payload(results={"SLEDAI2K": {"value": 10}}, sledai_items=["arthritis"])
    body = _refused(world, _record(world, payload))
    message = _single_error(body, "SLEDAI2K")["message"]
    assert "10" in message and "4" in message, message
    assert changed_tables(before, row_snapshot()) == {}


def test_unknown_sledai_item_is_refused_by_field(world):
    body = _refused(world, _record(world, visit_record_payload(sledai_items=["rash", "telepathy"])))
    assert "sledai_items" in (body["errors"][0]["field"] or ""), body


def test_malformed_value_names_the_nested_field(world):
    body = _refused(world, _record(world, visit_record_payload(results={"CREAT": {"value": "lots"}})))
    error = _single_error(body, "CREAT")
    assert error["field"] == "results.CREAT.value", error
    assert error["code"] == "invalid"


def test_missing_required_fields_are_each_named(world):
    response = call(client_for(world.keys["a_rw"]), "POST", "/api/v1/patients/", {"study": SHARED_STUDY})
    body = _refused(world, response)
    named = {e["field"] for e in body["errors"]}
    assert {"subject_code", "sex", "birth_year", "diagnosis_date", "classification_criteria"} <= named
    assert all(e["code"] == "required" for e in body["errors"])


def test_infusion_time_without_a_utc_offset_is_refused(world):
    """A local clock time alone is ambiguous (the service refuses naive times): the API must not guess UTC."""
    before = row_snapshot()
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        "/api/v1/transplants/",
        transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_A, infused_at="2026-06-01T20:00:00"),
    )
    body = _refused(world, response)
    assert "time zone" in _single_error(body, "infused_at")["message"]
    assert changed_tables(before, row_snapshot()) == {}


def test_unknown_object_is_a_404_problem(world):
    assert_problem(call(client_for(world.keys["a_rw"]), "GET", "/api/v1/patients/999999/"), 404)
    assert_problem(call(client_for(world.keys["a_rw"]), "GET", "/api/v1/patients/not-a-number/"), 404)


def test_path_that_is_no_endpoint_is_a_404_problem(world):
    body = assert_problem(call(client_for(world.keys["a_rw"]), "GET", "/api/v1/no-such-thing/"), 404)
    assert "/api/schema/" in body["detail"]
    assert_problem(call(client_for(world.keys["a_rw"]), "GET", "/api/v2/patients/"), 404)
    assert_problem(call(client_for(world.keys["a_rw"]), "POST", "/api/v1/no-such-thing/", {"a": 1}), 404)


@pytest.mark.parametrize(
    "since", ["2025-03-01T08:00:00-22:12", "9999-12-31T23:00:00-10:00", "0001-01-01T00:30:00+01:00", "yesterday"]
)
def test_updated_since_outside_the_calendar_or_real_offsets_is_a_400_naming_it(world, since):
    response = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/patients/", {"updated_since": since})
    body = assert_problem(response, 400)
    assert "updated_since" in field_errors(body)


def test_updated_since_with_an_offset_is_the_same_instant_in_utc(world):
    client = client_for(world.keys["a_rw"])
    stamp = world.a.patient.updated_at
    local = stamp.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()
    rows = call(client, "GET", "/api/v1/patients/", {"updated_since": local}).json()["results"]
    assert world.a.patient.pk in [row["id"] for row in rows]


def test_codes_with_dots_are_found(world):
    from registry.models import CellProduct

    CellProduct.objects.filter(pk=world.a.lot.pk).update(lot_number="UC-2026.03.1")
    response = call(client_for(world.keys["a_rw"]), "GET", "/api/v1/lots/UC-2026.03.1/")
    assert response.status_code == 200, response.content
    assert response.json()["lot_number"] == "UC-2026.03.1"


def test_an_error_escaping_a_view_leaves_no_audit_attribution_behind(world, monkeypatch):
    """The key's audit context ends with the request, even when the view raises something unexpected."""
    from core.audit import Door, current_audit_context
    from patients.api.views import PatientViewSet

    def boom(self, request, *args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(PatientViewSet, "list", boom)
    client = client_for(world.keys["a_rw"])
    client.raise_request_exception = True
    with pytest.raises(RuntimeError):
        client.get("/api/v1/patients/")
    assert current_audit_context().door != Door.API


def test_method_not_allowed_is_a_problem(world):
    response = call(client_for(world.keys["a_rw"]), "PUT", f"/api/v1/patients/{world.a.patient.pk}/", {})
    assert_problem(response, 405)
    response = call(client_for(world.keys["a_rw"]), "DELETE", f"/api/v1/patients/{world.a.patient.pk}/")
    assert_problem(response, 405)


def test_body_that_is_not_json_is_a_problem(world):
    client = client_for(world.keys["a_rw"])
    response = client.post("/api/v1/patients/", {"study": SHARED_STUDY})  # multipart
    assert_problem(response, 415)
    response = client.post("/api/v1/patients/", "{not json", content_type="application/json")
    assert_problem(response, 400)


def test_body_with_an_unpaired_surrogate_escape_is_a_problem_and_writes_nothing(world):
    client = client_for(world.keys["a_rw"])
    before = row_snapshot()
    body = '{"study": "' + SHARED_STUDY + '", "subject_code": "A-\\udc1c", "sex": "F"}'
    response = client.post("/api/v1/patients/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="sur")
    assert "surrogate" in assert_problem(response, 400)["detail"]
    # The same body in UTF-16, where the escape's bytes are not those of UTF-8.
    response = client.post(
        "/api/v1/patients/",
        body.encode("utf-16"),
        content_type="application/json; charset=utf-16",
        HTTP_IDEMPOTENCY_KEY="sur-16",
    )
    assert "surrogate" in assert_problem(response, 400)["detail"]
    assert changed_tables(before, row_snapshot()) == {}


def test_service_refusal_on_a_valid_request_is_a_400_problem(world):
    """A rule of a service (here: no visit date in the future) comes back as a field error."""
    body = _refused(world, _record(world, visit_record_payload(actual_date="2030-01-01")))
    assert "future" in _single_error(body, "actual_date")["message"]


# Throttling --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_rate(settings, monkeypatch):
    rates = {"api_key": "3/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    api_settings.reload()
    # The throttle class read the rates when it was defined: point it at the tiny rate too.
    monkeypatch.setattr(ApiKeyThrottle, "THROTTLE_RATES", rates)
    yield
    monkeypatch.undo()
    api_settings.reload()


def test_too_many_requests_get_429_with_retry_after(world, tiny_rate):
    client = client_for(world.keys["a_rw"])
    for _ in range(3):
        assert call(client, "GET", "/api/v1/patients/").status_code == 200
    response = call(client, "GET", "/api/v1/patients/")
    body = assert_problem(response, 429)
    assert body["type"].endswith("throttled")
    # The sliding window is the current one-second slice and the 60 before it (core/api/throttling.py): the
    # oldest count leaves it at most 61 s later.
    assert 0 < int(response["Retry-After"]) <= 61


def test_throttled_write_writes_nothing(world, tiny_rate):
    client = client_for(world.keys["a_rw"])
    for _ in range(3):
        call(client, "GET", "/api/v1/sites/")
    before = row_snapshot()
    response = call(client, "POST", "/api/v1/patients/", {"study": SHARED_STUDY, "subject_code": "A-LATE"})
    assert_problem(response, 429)
    assert changed_tables(before, row_snapshot()) == {}


def test_throttling_is_per_key(world, tiny_rate):
    for _ in range(4):
        call(client_for(world.keys["a_rw"]), "GET", "/api/v1/sites/")
    assert call(client_for(world.keys["a_rw"]), "GET", "/api/v1/sites/").status_code == 429
    assert call(client_for(world.keys["a_ro"]), "GET", "/api/v1/sites/").status_code == 200
    assert call(client_for(world.keys["b_rw"]), "GET", "/api/v1/sites/").status_code == 200


def test_throttle_window_passes(world, tiny_rate, api_clock):
    import datetime as dt

    client = client_for(world.keys["a_rw"])
    for _ in range(3):
        call(client, "GET", "/api/v1/sites/")
    assert call(client, "GET", "/api/v1/sites/").status_code == 429
    api_clock.shift(dt.timedelta(seconds=61))
    assert call(client, "GET", "/api/v1/sites/").status_code == 200


def test_default_rate_lets_a_normal_sync_through(world):
    client = client_for(world.keys["a_rw"])
    assert all(call(client, "GET", "/api/v1/sites/").status_code == 200 for _ in range(20))
