"""Fixtures of the partner API tests: two sites in one study (and a study only site B takes part in),
a released lot, a transplanted patient with recorded visits, a medication and an adverse event at each
site, and API keys of every kind.

Everything is made through the services, the way production data is. The clock is set to
`tests.conftest.FROZEN_NOW` (2026-09-01 09:00 UTC) and keeps running from there: the services refuse
dates in the future, and ETags follow `updated_at`, which must move when a row changes.

Timeline (the defaults of tests.factories): consent 2025-01-15, first infusion 2025-03-03 (local), so the
visits of the default template are BL 2025-03-03, D7 2025-03-10, M1 2025-04-02, M3 2025-06-02 (window
2025-05-19 to 2025-06-16), M6 2025-09-01, M9 2025-12-02, M12 2026-03-03 and yearly after. BL and M1 are
recorded at both sites (so results and an M1 outcome exist); the others are open.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from followup import services as followup_services
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from patients.services import medication_record
from quality.models import Query
from quality.services.queries import query_raise
from registry.api_keys import api_key_issue, api_key_revoke
from registry.constants import Role
from registry.models import ApiKey, ApiKeyScope, CellProduct, Site, Study
from reporting.models import ExportJob
from tests.conftest import FROZEN_NOW
from tests.factories import make_finished_export, make_lot, make_patient, make_study, make_transplant, make_user

SHARED_STUDY = "MSCT-SLE"
B_ONLY_STUDY = "B-ONLY"
SUBJECT_A = "A-001"
SUBJECT_B = "B-001"
SUBJECT_B_ONLY = "BO-001"
LOT_A = "LOT-A-001"
LOT_B = "LOT-B-001"
LOT_B_ONLY = "LOT-BO-001"


# Clients -----------------------------------------------------------------------------------------------


def client_for(raw_key: str | None) -> APIClient:
    """An API client that sends `Authorization: Api-Key <raw_key>` (no header when `raw_key` is None)."""
    client = APIClient(raise_request_exception=False)
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def client_with_header(header: str) -> APIClient:
    """An API client that sends exactly `Authorization: <header>`."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def call(client: APIClient, method: str, url: str, payload=None, **headers):
    """One request; bodies always as JSON (the API parses nothing else)."""
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    if method == "GET":
        return client.get(url, payload, **extra)
    return getattr(client, method.lower())(url, payload if payload is not None else {}, format="json", **extra)


# Snapshots ---------------------------------------------------------------------------------------------


def row_snapshot() -> dict[str, int]:
    """Row counts of every table of the registry, patients, followup, notifications and reporting apps, history tables included.

    An update leaves a history row, so an unchanged snapshot means nothing was created, changed or deleted.
    API keys (last use) and idempotency records (the API's own bookkeeping) are left out.
    """
    counts = {}
    for app in ("registry", "patients", "followup", "quality", "notifications", "reporting"):
        for model in apps.get_app_config(app).get_models():
            if model._meta.label in ("registry.ApiKey", "registry.IdempotencyRecord", "registry.HistoricalApiKey"):
                continue
            counts[model._meta.label] = model._base_manager.count()
    return counts


def changed_tables(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {label: (before[label], after[label]) for label in before if before[label] != after[label]}


# The world ---------------------------------------------------------------------------------------------


@dataclass
class Side:
    """What one site holds."""

    site: Site
    study: Study  # the shared study
    lot: CellProduct
    patient: Patient
    transplant: TransplantEvent
    medication: ConcomitantMedication
    adverse_event: AdverseEvent
    export: ExportJob  # a finished export requested by the side's key
    query: Query  # an open query on the patient, raised by the site's monitor
    rw: str  # raw read-write key
    rw_key: ApiKey

    def visit(self, code: str) -> Visit:
        return Visit.objects.get(patient=self.patient, code=code)

    @property
    def result(self) -> Result:
        return Result.objects.filter(visit__patient=self.patient).order_by("pk").first()

    @property
    def outcome(self) -> ComputedOutcome:
        return ComputedOutcome.objects.filter(visit__patient=self.patient).order_by("pk").first()


@dataclass
class World:
    a: Side
    b: Side
    study: Study
    study_b_only: Study
    lot_b_only: CellProduct
    patient_b_only: Patient
    keys: dict[str, str] = field(default_factory=dict)  # raw keys by name
    key_objects: dict[str, ApiKey] = field(default_factory=dict)

    def side(self, name: str) -> Side:
        return {"a": self.a, "b": self.b}[name]


def record_standard_visits(patient: Patient) -> None:
    """BL and M1 recorded with SLEDAI-2K items and a few results (so results and outcomes exist)."""
    followup_services.visit_record(
        visit=Visit.objects.get(patient=patient, code="BL"),
        actual_date=dt.date(2025, 3, 3),
        results={"CREAT": ("0.9", "mg/dL"), "C3": ("0.7", None), "PLT": ("210", None)},
        sledai_items=["arthritis", "rash", "low_complement", "proteinuria"],
    )
    followup_services.visit_record(
        visit=Visit.objects.get(patient=patient, code="M1"),
        actual_date=dt.date(2025, 4, 2),
        results={"CREAT": ("0.8", "mg/dL"), "C3": ("0.9", None), "PLT": ("220", None)},
        sledai_items=["rash"],
    )


def make_side(site: Site, study: Study, subject_code: str, lot_number: str) -> Side:
    lot = make_lot(study, site, lot_number=lot_number)
    patient = make_patient(study, site, subject_code=subject_code)
    transplant = make_transplant(patient, lot)
    record_standard_visits(patient)
    medication = medication_record(
        patient=patient,
        drug="prednisone",
        dose=Decimal("10"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 1, 20),
    )
    adverse_event = followup_services.ae_record(
        patient=patient,
        transplant=None,
        term="Herpes zoster",
        category="infection",
        onset_date=dt.date(2025, 5, 1),
        grade=3,
        serious_hospitalisation=True,
        relatedness="possible",
        expected=False,
        aware_date=dt.date(2025, 5, 2),
    )
    key, raw = api_key_issue(site=site, name=f"{site.code} EHR", scope=ApiKeyScope.READ_WRITE)
    export = make_finished_export(study, site, key)
    monitor = make_user(f"monitor-{site.code.lower()}", site, role=Role.MONITOR)
    query = query_raise(target=patient, field="birth_year", text="Year of birth per the ID card?", actor=monitor)
    patient.refresh_from_db()
    return Side(
        site=site,
        study=study,
        lot=lot,
        patient=patient,
        transplant=transplant,
        medication=medication,
        adverse_event=adverse_event,
        export=export,
        query=query,
        rw=raw,
        rw_key=key,
    )


def build_world(site_a: Site, site_b: Site, study: Study) -> World:
    a = make_side(site_a, study, SUBJECT_A, LOT_A)
    b = make_side(site_b, study, SUBJECT_B, LOT_B)
    study_b_only = make_study(site_b, code=B_ONLY_STUDY)
    lot_b_only = make_lot(study_b_only, site_b, lot_number=LOT_B_ONLY)
    patient_b_only = make_patient(study_b_only, site_b, subject_code=SUBJECT_B_ONLY)
    make_transplant(patient_b_only, lot_b_only)
    world = World(
        a=a, b=b, study=study, study_b_only=study_b_only, lot_b_only=lot_b_only, patient_b_only=patient_b_only
    )

    def issue(name: str, site: Site, **kwargs) -> ApiKey:
        key, raw = api_key_issue(site=site, name=name, **kwargs)
        world.keys[name], world.key_objects[name] = raw, key
        return key

    world.keys["a_rw"], world.key_objects["a_rw"] = a.rw, a.rw_key
    world.keys["b_rw"], world.key_objects["b_rw"] = b.rw, b.rw_key
    issue("a_ro", site_a, scope=ApiKeyScope.READ)
    issue("a_lots", site_a, scope=ApiKeyScope.READ_WRITE, can_write_lots=True)
    expired = issue("a_expired", site_a, scope=ApiKeyScope.READ_WRITE, can_write_lots=True)
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    revoked = issue("a_revoked", site_a, scope=ApiKeyScope.READ_WRITE, can_write_lots=True)
    api_key_revoke(key=revoked)
    return world


@pytest.fixture(autouse=True)
def api_clock():
    """The clock at FROZEN_NOW, running (updated_at, hence ETags, must move when a row changes)."""
    import time_machine

    with time_machine.travel(FROZEN_NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters live in the cache: every test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _many_failed_authentications(monkeypatch):
    """The tests send one address's bad credentials to every route: failed authentications are not limited
    here, except where a test sets the limit (`tiny_auth_rate` in test_hostile_requests.py)."""
    from registry.api.auth import AuthFailureThrottle

    monkeypatch.setattr(AuthFailureThrottle, "THROTTLE_RATES", {"auth_failure": "1000000/minute"})


@pytest.fixture
def world(site_a, site_b, study, settings, tmp_path) -> World:
    """The two sites of `tests.conftest` (A in Nanjing, B in London) in the shared study MSCT-SLE."""
    assert study.code == SHARED_STUDY
    settings.EXPORT_DIR = tmp_path / "exports"
    return build_world(site_a, site_b, study)


@pytest.fixture(name="client_for")
def client_for_fixture():
    """`client_for(raw_key)` as a fixture, for tests that prefer not to import it."""
    return client_for


# Payloads ----------------------------------------------------------------------------------------------


def patient_payload(study: str = SHARED_STUDY, subject_code: str = "A-NEW", **extra) -> dict:
    return {
        "study": study,
        "subject_code": subject_code,
        "sex": "F",
        "birth_year": 1990,
        "diagnosis_date": "2019-06-01",
        "classification_criteria": "acr1997",
        "consent_date": "2025-01-15",
        "refractory_to": ["cyclophosphamide"],
        **extra,
    }


def transplant_payload(study: str, subject_code: str, lot_number: str, **extra) -> dict:
    return {
        "study": study,
        "subject_code": subject_code,
        "lot_number": lot_number,
        "infused_at": "2026-06-01T10:00:00+08:00",
        "weight_kg": "61.5",
        "dose_cells_per_kg": 1_000_000,
        **extra,
    }


def medication_payload(study: str, subject_code: str, **extra) -> dict:
    return {
        "study": study,
        "subject_code": subject_code,
        "drug": "hydroxychloroquine",
        "dose": "200",
        "unit": "mg",
        "frequency": "bid",
        "start_date": "2025-03-10",
        **extra,
    }


def adverse_event_payload(study: str, subject_code: str, **extra) -> dict:
    return {
        "study": study,
        "subject_code": subject_code,
        "term": "Urinary tract infection",
        "category": "infection",
        "onset_date": "2025-06-10",
        "grade": 2,
        "relatedness": "unlikely",
        "expected": True,
        "aware_date": "2025-06-11",
        **extra,
    }


def visit_record_payload(**extra) -> dict:
    return {
        "actual_date": "2025-06-02",
        "results": {"CREAT": {"value": 0.85, "unit": "mg/dL"}, "C3": {"value": 0.95}},
        "sledai_items": ["rash"],
        **extra,
    }


def visit_record_by_key_payload(study: str, subject_code: str, visit_code: str = "M6", **extra) -> dict:
    return {
        "study": study,
        "subject_code": subject_code,
        "visit_code": visit_code,
        "actual_date": "2025-09-01",
        "results": {"CREAT": {"value": 78, "unit": "umol/L"}, "PLT": {"value": 230}},
        "sledai_items": [],
        **extra,
    }


def visit_batch_payload(study: str, *subject_codes: str, visit_code: str = "M6", **extra) -> dict:
    """A batch recording the same visit of each patient named (the by-key payload, without the study)."""
    one = visit_record_by_key_payload(study, "", visit_code=visit_code, **extra)
    del one["study"]
    return {"study": study, "visits": [{**one, "subject_code": subject} for subject in subject_codes]}


def lot_payload(study: str, donor: str, lot_number: str = "LOT-A-NEW", **extra) -> dict:
    return {
        "lot_number": lot_number,
        "study": study,
        "donor": donor,
        "tissue_source": "umbilical_cord",
        "origin": "allogeneic",
        "passage_number": 4,
        "cryopreserved_on": "2025-11-01",
        "expires_on": "2027-11-01",
        "cells_per_unit": 100_000_000,
        "units": 8,
        "plastic_adherent": True,
        "cd105_pct": "98.5",
        "cd73_pct": "99.1",
        "cd90_pct": "97.8",
        "cd45_pct": "0.8",
        "cd34_pct": "0.5",
        "cd14_or_cd11b_pct": "1.1",
        "cd79a_or_cd19_pct": "0.4",
        "hla_dr_pct": "0.9",
        "trilineage_shown": True,
        "viability_pct": "92.0",
        "sterility": "negative",
        "mycoplasma": "negative",
        "endotoxin_eu_per_ml": "0.120",
        "karyotype": "normal",
        **extra,
    }


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with `status`; returns the body."""
    assert response.status_code == status, (response.status_code, getattr(response, "data", response.content))
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    body = response.json()
    for name in ("type", "title", "status", "detail"):
        assert name in body, body
    assert body["status"] == status, body
    assert "Traceback" not in response.content.decode(), response.content
    return body


def field_errors(body: dict) -> dict[str | None, list[dict]]:
    errors: dict[str | None, list[dict]] = {}
    for error in body.get("errors", []):
        assert set(error) == {"field", "message", "code"}, error
        errors.setdefault(error["field"], []).append(error)
    return errors
