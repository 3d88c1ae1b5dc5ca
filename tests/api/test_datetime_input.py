"""A date-time that looks like ISO 8601 but names no instant (minute 60, hour 25, day 31 of a 30-day month) is
a 400 naming the field, not a server error (found by the schema fuzzing)."""

from __future__ import annotations

import pytest

from tests.api.conftest import (
    SHARED_STUDY,
    SUBJECT_A,
    assert_problem,
    call,
    client_for,
    field_errors,
    transplant_payload,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "infused_at",
    [
        "2026-06-01T10:60:00+08:00",
        "2026-06-01T25:00:00+08:00",
        "2026-06-31T10:00:00+08:00",
        "2026-06-01T10:00:00+25:00",
    ],
)
def test_an_impossible_date_time_is_a_400_naming_the_field(world, infused_at):
    payload = transplant_payload(SHARED_STUDY, SUBJECT_A, world.a.lot.lot_number, infused_at=infused_at)
    body = assert_problem(call(client_for(world.keys["a_rw"]), "POST", "/api/v1/transplants/", payload), 400)
    assert list(field_errors(body)) == ["infused_at"], body
