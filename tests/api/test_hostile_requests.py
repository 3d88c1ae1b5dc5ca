"""Requests built to hurt: nesting too deep, bodies too large, text no column stores, garbled cursors, weak or
listed ETags, corrections without a version, duplicates of another site's identifiers, failed authentication
from one address. Each is answered with a problem (never a 5xx) that names the rule or the field."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.test import RequestFactory

from core.api import problems
from core.api.etags import etag_of
from core.api.parsers import MAX_JSON_DEPTH
from patients.models import Patient
from registry.api.auth import AuthFailureThrottle
from registry.models import CellProduct
from tests.api.conftest import (
    LOT_A,
    LOT_B,
    SHARED_STUDY,
    SUBJECT_A,
    SUBJECT_B,
    assert_problem,
    call,
    changed_tables,
    client_for,
    field_errors,
    lot_payload,
    patient_payload,
    row_snapshot,
    visit_batch_payload,
    visit_record_by_key_payload,
)

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def post_raw(client, url: str, body: str | bytes, method: str = "post", **headers):
    return getattr(client, method)(url, body, content_type="application/json", **headers)


# Depth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("shape", ["list", "dict"])
def test_body_nested_deeper_than_the_limit_is_a_400_naming_the_limit(world, depth, shape):
    body = "[" * depth + "]" * depth if shape == "list" else '{"a":' * depth + "1" + "}" * depth
    before = row_snapshot()
    client = client_for(world.keys["a_rw"])
    response = post_raw(client, f"{V1}/patients/", body)
    assert f"deeper than {MAX_JSON_DEPTH} levels" in assert_problem(response, 400)["detail"]
    patient = world.a.patient
    response = post_raw(client, f"{V1}/patients/{patient.pk}/", body, method="patch", HTTP_IF_MATCH=etag_of(patient))
    assert f"deeper than {MAX_JSON_DEPTH} levels" in assert_problem(response, 400)["detail"]
    assert changed_tables(before, row_snapshot()) == {}


def test_body_nested_up_to_the_limit_is_read(world):
    """Nesting as deep as the limit reaches the fields (which refuse it as a value), not the parser's rule."""
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    body = json.dumps(patient_payload(subject_code="A-DEEP"))[:-1] + f', "refractory_notes": {nested}}}'
    response = post_raw(client_for(world.keys["a_rw"]), f"{V1}/patients/", body)
    assert "refractory_notes" in field_errors(assert_problem(response, 400))


# Size --------------------------------------------------------------------------------------------------


def test_body_over_the_size_limit_is_a_413_problem(world):
    padding = "x" * 3_000_000  # over the default 2.5 MB
    body = json.dumps(patient_payload(subject_code="A-BIG", refractory_notes=padding))
    response = post_raw(client_for(world.keys["a_rw"]), f"{V1}/patients/", body)
    body = assert_problem(response, 413)
    assert body["type"].endswith("too-large")
    assert "2621440 bytes" in body["detail"]


def test_size_limit_follows_the_setting(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    small = json.dumps(patient_payload(subject_code="A-SMALL"))
    assert len(small) < 1_000
    client = client_for(world.keys["a_rw"])
    assert post_raw(client, f"{V1}/patients/", small).status_code == 201
    big = json.dumps(patient_payload(subject_code="A-BIG", refractory_notes="x" * 1_000))
    assert_problem(post_raw(client, f"{V1}/patients/", big), 413)


def test_errors_django_answers_itself_are_problems_under_the_api():
    factory = RequestFactory()
    api, admin = factory.post("/api/v1/patients/"), factory.post("/admin/login/")
    too_big = problems.bad_request(api, RequestDataTooBig("big"))
    assert (too_big.status_code, too_big["Content-Type"]) == (413, "application/problem+json")
    for response, status in [
        (problems.bad_request(api, ValueError()), 400),
        (problems.permission_denied(api, None), 403),
        (problems.page_not_found(api, None), 404),
        (problems.server_error(api), 500),
        (problems.csrf_failure(api, "no token"), 403),
    ]:
        assert (response.status_code, response["Content-Type"]) == (status, "application/problem+json")
        assert json.loads(response.content)["status"] == status
    assert problems.server_error(admin)["Content-Type"].startswith("text/html")
    assert problems.csrf_failure(admin, "no token")["Content-Type"].startswith("text/html")


def test_error_handlers_are_installed(settings):
    from config import urls

    assert settings.CSRF_FAILURE_VIEW == "core.api.problems.csrf_failure"
    assert urls.handler500 == "core.api.problems.server_error"
    assert urls.handler400 == "core.api.problems.bad_request"


def test_an_unexpected_error_in_a_view_is_a_500_problem(world, monkeypatch):
    from patients.api.views import PatientViewSet

    def boom(self, request, *args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(PatientViewSet, "list", boom)
    response = client_for(world.keys["a_rw"]).get(f"{V1}/patients/")
    body = assert_problem(response, 500)
    assert "unexpected" not in body["detail"]


# Text no column stores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", ["lots", "studies", "sites", "reports", "patients", "visits", "exports"])
@pytest.mark.parametrize("name", ["%00", "A%00B", "LOT-A-001%00"])
def test_nul_in_a_path_name_is_a_404_problem(world, resource, name):
    response = client_for(world.keys["a_rw"]).get(f"{V1}/{resource}/{name}/")
    assert_problem(response, 404)


def test_nul_in_the_path_of_an_update_is_a_404_problem(world):
    response = call(client_for(world.keys["a_lots"]), "PATCH", f"{V1}/lots/%00/", {"units": 3}, **{"If-Match": "*"})
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("patients/?subject_code=A%00", "subject_code"),
        ("patients/?study=%00", "study"),
        ("lots/?tissue_source=%00", "tissue_source"),
        ("visits/?code=M%00", "code"),
        ("results/?visit_code=%00", "visit_code"),
        ("adverse-events/?subject_code=%00", "subject_code"),
        ("patients/?%00=1", "\x00"),
    ],
)
def test_unstorable_text_in_a_query_parameter_is_a_400_naming_it(world, url, parameter):
    response = client_for(world.keys["a_rw"]).get(f"{V1}/{url}")
    body = assert_problem(response, 400)
    if parameter != "\x00":
        assert parameter in field_errors(body)


@pytest.mark.parametrize("field", ["subject_code", "refractory_notes", "sex", "study"])
def test_nul_in_a_body_field_is_a_400_naming_it(world, field):
    payload = {**patient_payload(subject_code="A-NUL"), field: "A\x00B"}
    response = call(client_for(world.keys["a_rw"]), "POST", f"{V1}/patients/", payload)
    assert field in field_errors(assert_problem(response, 400))


# Cursors -----------------------------------------------------------------------------------------------


def _cursor(**parts) -> str:
    from urllib.parse import urlencode

    return base64.b64encode(urlencode(parts, doseq=True).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        _cursor(o=0, r=0, p="not-a-date"),
        _cursor(o=0, r=0, p="2026-13-45 00:00:00+00:00"),
        _cursor(o=0, r=0, p="2026-01-01\x00"),
        _cursor(o=0, r=1, p="99999-01-01"),
    ],
)
@pytest.mark.parametrize("resource", ["patients", "visits", "outcomes"])
def test_garbled_cursor_is_a_404_problem(world, cursor, resource):
    response = client_for(world.keys["a_rw"]).get(f"{V1}/{resource}/", {"cursor": cursor})
    assert "cursor" in assert_problem(response, 404)["detail"].lower()


def test_a_cursor_the_api_gave_still_pages(world):
    client = client_for(world.keys["a_rw"])
    first = client.get(f"{V1}/visits/", {"page_size": 2}).json()
    assert first["next"]
    second = client.get(first["next"])
    assert second.status_code == 200
    assert {v["id"] for v in second.json()["results"]}.isdisjoint({v["id"] for v in first["results"]})


# Corrections through the natural-key doors need the version ----------------------------------------------


def _m1_by_key(world, **headers):
    payload = visit_record_by_key_payload(
        SHARED_STUDY, SUBJECT_A, visit_code="M1", actual_date="2025-04-02", reason="Value re-read from the report"
    )
    return call(client_for(world.keys["a_rw"]), "POST", f"{V1}/visits/record/", payload, **headers)


def test_correcting_by_key_without_if_match_is_428_and_writes_nothing(world):
    before = row_snapshot()
    body = assert_problem(_m1_by_key(world), 428)
    assert "If-Match" in field_errors(body)
    assert changed_tables(before, row_snapshot()) == {}


def test_correcting_by_key_with_a_stale_or_weak_etag_is_412(world):
    before = row_snapshot()
    response = _m1_by_key(world, **{"If-Match": '"stale"'})
    assert_problem(response, 412)
    assert response["ETag"] == etag_of(world.a.visit("M1"))
    assert_problem(_m1_by_key(world, **{"If-Match": "W/" + etag_of(world.a.visit("M1"))}), 412)
    assert changed_tables(before, row_snapshot()) == {}


def test_correcting_by_key_with_the_current_etag_is_saved(world):
    response = _m1_by_key(world, **{"If-Match": etag_of(world.a.visit("M1"))})
    assert response.status_code == 200, response.content
    assert response["ETag"] == etag_of(world.a.visit("M1"))


def test_recording_an_open_visit_by_key_needs_no_version(world):
    payload = visit_record_by_key_payload(SHARED_STUDY, SUBJECT_A)
    assert call(client_for(world.keys["a_rw"]), "POST", f"{V1}/visits/record/", payload).status_code == 200


def _batch_correction(world, **item_extra):
    payload = visit_batch_payload(SHARED_STUDY, SUBJECT_A, visit_code="M1", reason="Re-read", **item_extra)
    payload["visits"][0]["actual_date"] = "2025-04-02"
    return call(client_for(world.keys["a_rw"]), "POST", f"{V1}/visits/record-batch/", payload)


def test_correcting_in_a_batch_without_a_version_is_428_naming_the_item(world):
    before = row_snapshot()
    assert "visits.0.version" in field_errors(assert_problem(_batch_correction(world), 428))
    assert changed_tables(before, row_snapshot()) == {}


def test_correcting_in_a_batch_with_a_stale_version_is_412_naming_the_item(world):
    before = row_snapshot()
    assert "visits.0.version" in field_errors(assert_problem(_batch_correction(world, version='"stale"'), 412))
    response = _batch_correction(world, updated_at="2025-01-01T00:00:00+00:00")
    assert "visits.0.version" in field_errors(assert_problem(response, 412))
    assert changed_tables(before, row_snapshot()) == {}


def test_correcting_in_a_batch_with_the_current_etag_or_updated_at_is_saved(world):
    response = _batch_correction(world, version=etag_of(world.a.visit("M1")))
    assert response.status_code == 200, response.content
    updated_at = response.json()["visits"][0]["updated_at"]
    response = _batch_correction(world, updated_at=updated_at)
    assert response.status_code == 200, response.content


def test_a_batch_with_a_missing_version_and_another_error_is_a_400_naming_both(world):
    payload = visit_batch_payload(SHARED_STUDY, SUBJECT_A, visit_code="M1", reason="Re-read")
    payload["visits"].append({**payload["visits"][0], "visit_code": "M3", "actual_date": "2030-01-01"})
    payload["visits"][0]["actual_date"] = "2025-04-02"
    response = call(client_for(world.keys["a_rw"]), "POST", f"{V1}/visits/record-batch/", payload)
    errors = field_errors(assert_problem(response, 400))
    assert {"visits.0.version", "visits.1.actual_date"} <= set(errors)


# Duplicates of another site's identifiers ----------------------------------------------------------------


def _message(response, field: str) -> str:
    return field_errors(assert_problem(response, 400))[field][0]["message"]


def test_another_sites_subject_code_is_refused_in_the_words_of_ones_own(world):
    client = client_for(world.keys["a_rw"])
    theirs = _message(call(client, "POST", f"{V1}/patients/", patient_payload(subject_code=SUBJECT_B)), "subject_code")
    ours = _message(call(client, "POST", f"{V1}/patients/", patient_payload(subject_code=SUBJECT_A)), "subject_code")
    assert theirs.replace(SUBJECT_B, "X") == ours.replace(SUBJECT_A, "X")
    for telling in ("exist", "already", "another site", world.b.site.code, world.b.site.name):
        assert telling not in theirs


def test_another_sites_lot_number_is_refused_in_the_words_of_ones_own(world):
    client = client_for(world.keys["a_lots"])
    donor = world.a.lot.donor.code
    theirs = _message(call(client, "POST", f"{V1}/lots/", lot_payload(SHARED_STUDY, donor, LOT_B)), "lot_number")
    ours = _message(call(client, "POST", f"{V1}/lots/", lot_payload(SHARED_STUDY, donor, LOT_A)), "lot_number")
    assert theirs.replace(LOT_B, "X") == ours.replace(LOT_A, "X")
    for telling in ("exist", "already", "another site", world.b.site.code):
        assert telling not in theirs


def test_a_duplicate_the_checks_missed_is_a_409_naming_the_field(world, monkeypatch):
    """Two creates at once both pass the checks; the database keeps one and the other is a 409, not a 500."""
    from patients import services

    monkeypatch.setattr(services, "_check_patient", lambda patient: None)
    monkeypatch.setattr(Patient, "validate_constraints", lambda self, exclude=None: None)
    response = call(client_for(world.keys["a_rw"]), "POST", f"{V1}/patients/", patient_payload(subject_code=SUBJECT_B))
    body = assert_problem(response, 409)
    assert list(field_errors(body)) == ["subject_code"]
    assert SUBJECT_B not in body["detail"]
    assert Patient.objects.filter(subject_code=SUBJECT_B).count() == 1


def test_a_lot_number_duplicate_the_checks_missed_is_a_409_naming_it(world, monkeypatch):
    from registry import services

    real_filter = CellProduct.objects.filter
    monkeypatch.setattr(
        CellProduct.objects, "filter", lambda *a, **k: real_filter(pk=-1) if "lot_number" in k else real_filter(*a, **k)
    )
    payload = lot_payload(SHARED_STUDY, world.a.lot.donor.code, LOT_B)
    monkeypatch.setattr(services.CellProduct, "full_clean", lambda self, **kwargs: None)
    body = assert_problem(call(client_for(world.keys["a_lots"]), "POST", f"{V1}/lots/", payload), 409)
    assert list(field_errors(body)) == ["lot_number"]


# Throttling --------------------------------------------------------------------------------------------


def test_the_cache_table_is_made_by_migrate(settings):
    assert settings.CACHE_TABLE in connection.introspection.table_names()


def test_without_redis_the_throttle_counts_in_the_database(world, settings, monkeypatch):
    """Every web process reads the same counters: the database cache, when there is no Redis."""
    from core.cache import DatabaseCache
    from registry.api.base import ApiKeyThrottle

    monkeypatch.setattr(ApiKeyThrottle, "cache", DatabaseCache(settings.CACHE_TABLE, {}))
    assert client_for(world.keys["a_rw"]).get(f"{V1}/studies/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT cache_key FROM {settings.CACHE_TABLE}")
        keys = [row[0] for row in cursor.fetchall()]
    assert any("throttle_api_key" in key for key in keys), keys


def test_the_settings_share_the_cache_between_processes():
    """Redis when REDIS_URL is set, the database cache otherwise; never a cache of one process."""
    from config.settings import base

    expected = "django.core.cache.backends.redis.RedisCache" if base.REDIS_URL else "core.cache.DatabaseCache"
    assert base.CACHES["default"]["BACKEND"] == expected


@pytest.fixture
def tiny_auth_rate(settings, monkeypatch):
    rates = {"auth_failure": "3/minute"}
    monkeypatch.setattr(AuthFailureThrottle, "THROTTLE_RATES", rates)
    return rates


def test_failed_authentications_are_throttled_per_address(world, tiny_auth_rate):
    bad = client_for("msct_unknown_key")
    for _ in range(2):
        assert_problem(bad.get(f"{V1}/studies/"), 401)
    assert_problem(client_for(None).get(f"{V1}/studies/"), 401)  # no credentials at all counts too
    response = bad.get(f"{V1}/studies/")
    assert_problem(response, 429)
    assert int(response["Retry-After"]) > 0
    # A forwarded-for header does not change the address the server sees.
    assert_problem(bad.get(f"{V1}/studies/", HTTP_X_FORWARDED_FOR="203.0.113.9"), 429)
    # Another address is not held back.
    assert bad.get(f"{V1}/studies/", REMOTE_ADDR="198.51.100.7").status_code == 401


def test_successful_requests_do_not_count_as_failures(world, tiny_auth_rate):
    good = client_for(world.keys["a_rw"])
    for _ in range(6):
        assert good.get(f"{V1}/studies/").status_code == 200
