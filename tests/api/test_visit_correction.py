"""Correcting a recorded visit by id (`visits/{id}/record/`): the If-Match header is handed to the recording
service, which compares it on the visit's locked row (the one place that decides for every door); the
answers are the API's precondition problems: 428 without If-Match, 412 (with the current ETag) for a stale,
weak or unknown tag."""

from __future__ import annotations

import pytest

from core.api.etags import etag_of
from tests.api.conftest import assert_problem, call, changed_tables, client_for, row_snapshot

pytestmark = pytest.mark.django_db

PAYLOAD = {"actual_date": "2025-04-02", "results": {"PLT": {"value": 180}}, "reason": "Lab re-issued the report"}


def _post(world, visit, **headers):
    return call(client_for(world.keys["a_rw"]), "POST", f"/api/v1/visits/{visit.pk}/record/", PAYLOAD, **headers)


def test_without_if_match_the_answer_is_the_428_problem(world):
    before = row_snapshot()
    response = _post(world, world.a.visit("M1"))
    body = assert_problem(response, 428)
    title = "Send If-Match with the ETag of the version you are changing."
    assert body == {"type": body["type"], "title": title, "status": 428, "detail": title}
    assert body["type"].endswith("/precondition-required")
    assert "ETag" not in response
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize(
    "header",
    ['"0123456789abcdef0123456789abcdef"', "W/{current}", '"stale", W/{current}', "not a tag"],
    ids=["unknown", "weak", "list-without-strong", "garbled"],
)
def test_a_stale_or_weak_if_match_is_the_412_problem_with_the_current_etag(world, header):
    visit = world.a.visit("M1")
    before = row_snapshot()
    response = _post(world, visit, **{"If-Match": header.format(current=etag_of(visit))})
    body = assert_problem(response, 412)
    assert body == {
        "type": body["type"],
        "title": "The object changed since you read it.",
        "status": 412,
        "detail": "GET it again and re-apply your change. If-Match compares strongly: send the ETag exactly as "
        "given, without W/.",
    }
    assert body["type"].endswith("/precondition-failed")
    assert response["ETag"] == etag_of(visit)
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize("header", ["{current}", "*", '"other", {current}'], ids=["current", "star", "list"])
def test_the_current_version_corrects_the_visit(world, header):
    visit = world.a.visit("M1")
    response = _post(world, visit, **{"If-Match": header.format(current=etag_of(visit))})
    assert response.status_code == 200, response.content
    visit.refresh_from_db()
    assert response["ETag"] == etag_of(visit) != header
    assert visit.results.get(code="PLT").history.first().history_change_reason == PAYLOAD["reason"]


def test_the_recording_service_decides_the_precondition(world, monkeypatch):
    """The view names the version to the service and checks nothing itself: the service's comparison, on the
    locked row, is what refuses."""
    from followup.services import recording

    seen = []
    real = recording.require_version

    def spy(obj, version, *, field, **kwargs):
        seen.append((obj.pk, version, field))
        return real(obj, version, field=field, **kwargs)

    monkeypatch.setattr(recording, "require_version", spy)
    visit = world.a.visit("M1")
    assert_problem(_post(world, visit), 428)
    assert_problem(_post(world, visit, **{"If-Match": '"0123456789abcdef0123456789abcdef"'}), 412)
    assert [pk for pk, _, _ in seen] == [visit.pk, visit.pk]
    assert [version for _, version, _ in seen] == ["", '"0123456789abcdef0123456789abcdef"']


def test_an_open_visit_is_recorded_without_if_match(world):
    response = call(
        client_for(world.keys["a_rw"]),
        "POST",
        f"/api/v1/visits/{world.a.visit('M3').pk}/record/",
        {"actual_date": "2025-06-02", "results": {"PLT": {"value": 200}}},
    )
    assert response.status_code == 200, response.content
