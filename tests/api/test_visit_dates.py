"""The partner API refuses the visit dates the registry refuses at every door: a month visit before day 0 and a
baseline before consent, even with a deviation reason (problem details naming `actual_date`)."""

from __future__ import annotations

import pytest

from core.api.etags import etag_of
from followup.constants import VisitOutcome
from followup.models import Visit
from tests.api.conftest import SHARED_STUDY, SUBJECT_A, assert_problem, call, field_errors

pytestmark = pytest.mark.django_db


def record(world, client_for, visit_code: str, actual_date: str, **extra):
    payload = {
        "study": SHARED_STUDY,
        "subject_code": SUBJECT_A,
        "visit_code": visit_code,
        "actual_date": actual_date,
        "results": {"PLT": {"value": 210}},
        "deviation_reason": "seen early",
        **extra,
    }
    # A visit recorded already is corrected with If-Match, as by id.
    version = etag_of(Visit.objects.get(patient=world.a.patient, code=visit_code))
    return call(client_for(world.keys["a_rw"]), "post", "/api/v1/visits/record/", payload, **{"If-Match": version})


def test_a_month_visit_five_days_before_day_zero_is_a_400(world, client_for):
    body = assert_problem(record(world, client_for, "M3", "2025-02-26"), 400)
    assert "after day 0 (2025-03-03)" in field_errors(body)["actual_date"][0]["message"]
    assert Visit.objects.get(patient=world.a.patient, code="M3").outcome == VisitOutcome.OPEN


def test_a_baseline_before_consent_is_a_400(world, client_for):
    response = record(world, client_for, "BL", "2025-01-10", reason="baseline date corrected")
    body = assert_problem(response, 400)
    assert "consented (2025-01-15)" in field_errors(body)["actual_date"][0]["message"]
    assert str(Visit.objects.get(patient=world.a.patient, code="BL").actual_date) == "2025-03-03"
