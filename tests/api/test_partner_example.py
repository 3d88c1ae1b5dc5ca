"""The partner example client (docs/examples/partner_client.py), run for real.

The script runs as its own process, with this virtual environment's Python, against pytest-django's live
server (a real HTTP server on the test database), with a key issued here, exactly as a partner would run
it: register a patient, record the infusion, record the baseline and month-3 visits, read the outcome.
Running it again with the same subject code (hence the same Idempotency-Keys) must create nothing.

The clock is the real one here (the script reads it in its own process): every date below is relative
to today. The client's retry rules are checked in-process against a scripted transport.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from tests.factories import make_donor, make_lot, make_site, make_study

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "partner_client.py"
STUDY = "MSCT-SLE-EX"
LOT = "UC-EX-0001"
SUBJECT = "EX-0001"


def load_client_module():
    spec = importlib.util.spec_from_file_location("partner_client", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def api_clock():
    """No frozen clock: the script runs in another process, on the real one."""
    yield None


@pytest.fixture
def partner(transactional_db):
    """A site in a study with the default follow-up template, a released lot, and a read-write key."""
    from registry import constants as rc
    from registry.api_keys import api_key_issue
    from registry.models import ApiKeyScope

    today = timezone.now().date()
    site = make_site("EXH", name="Example Partner Hospital")
    study = make_study(
        site,
        code=STUDY,
        registration_id="NCT09999999",
        title="Allogeneic MSCT in refractory SLE (example client)",
        target_enrolment=20,
    )
    donor = make_donor(study, site, code="DN-EX-01", age_at_donation=26)
    lot = make_lot(
        study,
        site,
        lot_number=LOT,
        donor=donor,
        cryopreserved_on=today - dt.timedelta(days=400),
        expires_on=today + dt.timedelta(days=700),
    )
    assert lot.release_status == rc.ReleaseStatus.RELEASED, lot.release_failures
    _, raw = api_key_issue(site=site, name="Example client", scope=ApiKeyScope.READ_WRITE)
    return {"site": site, "study": study, "lot": lot, "key": raw}


def run_script(base_url: str, key: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MSCT_API_KEY": key}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--base-url", base_url, "--study", STUDY, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def snapshot(patient) -> dict:
    from followup.models import ComputedOutcome, Result, Visit
    from patients.models import Patient, TransplantEvent
    from registry.models import IdempotencyRecord

    return {
        "patients": Patient.objects.filter(study__code=STUDY).count(),
        "transplants": TransplantEvent.objects.filter(patient=patient).count(),
        "visits": Visit.objects.filter(patient=patient).count(),
        "recorded": Visit.objects.filter(patient=patient, outcome="completed").count(),
        "results": Result.objects.filter(visit__patient=patient).count(),
        "outcomes": ComputedOutcome.objects.filter(visit__patient=patient).count(),
        "patient history": Patient.history.filter(id=patient.pk).count(),
        "visit history": Visit.history.filter(patient=patient).count(),
        "result history": Result.history.filter(visit__patient=patient).count(),
        "idempotency records": IdempotencyRecord.objects.count(),
    }


@pytest.mark.slow
def test_example_client_runs_end_to_end_and_again_without_duplicates(live_server, partner):
    from followup.models import ComputedOutcome, Visit
    from patients.models import Patient, TransplantEvent

    first = run_script(live_server.url, partner["key"], "--lot", LOT, "--subject", SUBJECT)
    assert first.returncode == 0, f"stdout:\n{first.stdout}\nstderr:\n{first.stderr}"

    patient = Patient.objects.get(study__code=STUDY, subject_code=SUBJECT)
    assert patient.site == partner["site"] and patient.status == "enrolled"

    transplant = TransplantEvent.objects.get(patient=patient)
    assert (transplant.infusion_number, transplant.lot) == (1, partner["lot"])
    days_ago = (timezone.now() - transplant.infused_at).days
    assert 90 <= days_ago <= 110, "infused a little over three months ago, so that month 3 has come"

    m3 = Visit.objects.get(patient=patient, code="M3")
    assert m3.outcome == "completed" and m3.actual_date <= timezone.now().date()
    assert m3.sledai_items == ["rash"]
    results = {r.code: r for r in m3.results.all()}
    # Entered in the laboratory's units, stored in the canonical ones.
    assert (results["CREAT"].entered_value, results["CREAT"].entered_unit) == (Decimal("0.85"), "mg/dL")
    assert results["CREAT"].value == Decimal("75.14")  # umol/L
    assert (results["PROT24H"].entered_value, results["PROT24H"].entered_unit) == (Decimal("420"), "mg/24h")
    assert results["PROT24H"].value == Decimal("0.42")  # g/24h
    assert results["C3"].value == Decimal("0.91")  # g/L
    assert results["SLEDAI2K"].value == Decimal("2") and results["SLEDAI2K"].derived
    assert "EGFR" in results  # computed from creatinine
    # Below the laboratory's limit of detection: the limit with its comparator, as the laboratory reports it.
    assert (results["ADSDNA"].comparator, results["ADSDNA"].entered_value) == ("<", Decimal("10"))
    assert all(r.comparator == "" for code, r in results.items() if code != "ADSDNA")

    outcome = ComputedOutcome.objects.get(visit=m3)
    assert outcome.sledai == Decimal("2")
    assert outcome.sledai_change == Decimal("-16")  # baseline 18 (six items)
    assert outcome.sri4 is True
    assert "outcome at M3" in first.stdout

    before = snapshot(patient)
    again = run_script(live_server.url, partner["key"], "--lot", LOT, "--subject", SUBJECT)
    assert again.returncode == 0, f"stdout:\n{again.stdout}\nstderr:\n{again.stderr}"
    assert snapshot(patient) == before, "running again with the same subject and keys must change nothing"
    replayed = [line for line in again.stdout.splitlines() if "(replayed)" in line]
    assert len(replayed) == 4, again.stdout  # the patient, the infusion, BL and M3


def test_example_client_needs_a_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MSCT_API_KEY"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--base-url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "MSCT_API_KEY" in result.stderr


# Retries, against a scripted transport ------------------------------------------------------------------


@pytest.fixture
def client_module(monkeypatch):
    module = load_client_module()
    waits: list[float] = []
    monkeypatch.setattr(module.time, "sleep", waits.append)
    module.waits = waits
    return module


def scripted(answers):
    """A transport that answers each request with the next of `answers` (a response, or an exception)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), seen


def test_a_post_is_retried_with_the_same_key_after_errors_and_throttling(client_module):
    created = {"id": 7, "subject_code": SUBJECT}
    transport, seen = scripted(
        [
            httpx.ConnectError("connection reset"),
            httpx.Response(429, headers={"Retry-After": "3"}, json={"title": "Too many requests.", "status": 429}),
            httpx.Response(409, headers={"Retry-After": "2"}, json={"title": "Still being processed.", "status": 409}),
            httpx.Response(201, json=created),
        ]
    )
    api = client_module.RegistryClient("http://registry.test", "msct_x_y", transport=transport, verbose=False)

    response = api.post("patients/", {"subject_code": SUBJECT}, key="partner-example:S:EX-0001:register")

    assert response.status_code == 201 and response.json() == created
    assert len(seen) == 4
    assert {r.headers["Idempotency-Key"] for r in seen} == {"partner-example:S:EX-0001:register"}
    assert {r.content for r in seen} == {seen[0].content}, "every attempt sends the same body"
    assert client_module.waits[1:] == [3.0, 2.0], "Retry-After is honoured"
    assert 0 < client_module.waits[0] < 1, "a network error backs off"


def test_a_post_without_a_key_is_not_repeated(client_module):
    transport, seen = scripted([httpx.Response(503, json={"title": "Unavailable", "status": 503})])
    api = client_module.RegistryClient("http://registry.test", "msct_x_y", transport=transport, verbose=False)

    with pytest.raises(client_module.ApiError) as raised:
        api.request("POST", "patients/", json={})

    assert raised.value.status == 503 and len(seen) == 1


def test_a_refusal_is_reported_with_its_field_errors(client_module):
    problem = {
        "type": "https://msct-registry.example.org/problems/validation",
        "title": "The request is not valid.",
        "status": 400,
        "detail": "lot_number: No lot with this number is available to your site.",
        "errors": [
            {"field": "lot_number", "message": "No lot with this number is available to your site.", "code": "invalid"}
        ],
    }
    transport, seen = scripted(
        [httpx.Response(400, json=problem, headers={"Content-Type": "application/problem+json"})]
    )
    api = client_module.RegistryClient("http://registry.test", "msct_x_y", transport=transport, verbose=False)

    with pytest.raises(client_module.ApiError) as raised:
        api.post("transplants/", {}, key="k")

    assert len(seen) == 1, "a 400 is not retried"
    assert "lot_number: No lot with this number is available to your site. [invalid]" in raised.value.describe()
