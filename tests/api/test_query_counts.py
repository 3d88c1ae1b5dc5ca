"""Queries per request are pinned, and a list's count does not grow with the rows on the page.

Each request is measured after one warm-up request with the same key (the first use of a key also stamps
its last use, once per five minutes). The pinned numbers include authentication (one query: the key with
its site).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from followup import services as followup_services
from followup.models import Visit
from patients.services import medication_record
from quality.services.queries import query_raise
from registry.api_keys import api_key_issue
from registry.models import ApiKeyScope
from tests.api.conftest import call, client_for
from tests.factories import (
    make_finished_export,
    make_lot,
    make_patient,
    make_study,
    make_superuser,
    make_transplant,
)

pytestmark = pytest.mark.django_db

PAGE = 50  # the default page size

# (query string, for lists that would otherwise hold more than one row per patient)
LISTS = {
    "study-list": "/api/v1/studies/",
    "site-list": "/api/v1/sites/",
    "lot-list": "/api/v1/lots/",
    "patient-list": "/api/v1/patients/",
    "transplant-list": "/api/v1/transplants/",
    "medication-list": "/api/v1/medications/",
    "visit-list": "/api/v1/visits/?code=BL",
    "result-list": "/api/v1/results/?visit_code=BL&code=CREAT",
    "outcome-list": "/api/v1/outcomes/",
    "adverse-event-list": "/api/v1/adverse-events/",
    "export-list": "/api/v1/exports/",
    "query-list": "/api/v1/queries/",
}

# Authentication is one query (the key with its site); a page is one more; prefetches add one each.
PINNED_LIST_QUERIES = {
    "study-list": 3,  # + visit definitions
    "site-list": 2,
    "lot-list": 2,
    "patient-list": 2,
    "transplant-list": 2,
    "medication-list": 2,
    "visit-list": 3,  # + results (today from the time zone of the key's site, read with the key)
    "result-list": 2,
    "outcome-list": 2,
    "adverse-event-list": 2,
    "export-list": 3,  # + the site's code
    "query-list": 3,  # + the messages of the page's queries
}

PINNED_DETAIL_QUERIES = {
    "study-detail": 3,  # + visit definitions
    "site-detail": 2,
    "lot-detail": 2,
    "patient-detail": 2,
    "transplant-detail": 2,
    "medication-detail": 2,
    "visit-detail": 3,  # + results
    "result-detail": 2,
    "outcome-detail": 2,
    "adverse-event-detail": 2,
    "export-detail": 3,  # + the site's code
    "query-detail": 3,  # + its messages
    "report-detail": 19,  # the cohort report's aggregates, independent of the number of patients
}


def add_patient(study, site, *, subject_code: str | None = None):
    """One transplanted patient with BL and M1 recorded (CREAT), a medication, an adverse event and a query."""
    lot = make_lot(study, site)
    patient = make_patient(study, site, subject_code=subject_code)
    make_transplant(patient, lot)
    for code, day, creat in (("BL", dt.date(2025, 3, 3), "0.9"), ("M1", dt.date(2025, 4, 2), "0.8")):
        followup_services.visit_record(
            visit=Visit.objects.get(patient=patient, code=code),
            actual_date=day,
            results={"CREAT": (creat, "mg/dL")},
            sledai_items=["rash"],
        )
    medication_record(
        patient=patient,
        drug="prednisone",
        dose=Decimal("10"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 1, 20),
    )
    followup_services.ae_record(
        patient=patient,
        transplant=None,
        term="Upper respiratory infection",
        category="infection",
        onset_date=dt.date(2025, 5, 1),
        grade=1,
        relatedness="unlikely",
        expected=True,
        aware_date=dt.date(2025, 5, 1),
    )
    monitor = get_user_model().objects.filter(username="counts-monitor").first() or make_superuser("counts-monitor")
    query_raise(target=patient, field="birth_year", text="Year of birth?", actor=monitor)
    return patient


@pytest.fixture
def solo(site_a, site_b, settings, tmp_path):
    """Site A with one row of every kind (one study, lot, patient, infusion, medication, adverse event, BL
    visit, BL creatinine and M1 outcome), beside a site B with its own patient."""
    study = make_study(site_a, code="SOLO")
    patient = add_patient(study, site_a, subject_code="SOLO-001")
    study_b = make_study(site_b, code="SOLO-B")
    add_patient(study_b, site_b, subject_code="SOLO-B-001")
    key, raw = api_key_issue(site=site_a, name="query counts", scope=ApiKeyScope.READ_WRITE)
    settings.EXPORT_DIR = tmp_path / "exports"
    export = make_finished_export(study, site_a, key)
    client = client_for(raw)
    assert call(client, "GET", "/api/v1/sites/").status_code == 200  # warm-up
    return {"study": study, "site": site_a, "patient": patient, "client": client, "key": key, "export": export}


def count_queries(client, url: str) -> tuple[int, int]:
    """(queries, rows on the page) of one GET."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    rows = len(body["results"]) if "results" in body else 1
    return len(captured.captured_queries), rows


def _detail_urls(solo) -> dict[str, str]:
    patient = solo["patient"]
    bl = Visit.objects.get(patient=patient, code="BL")
    return {
        "study-detail": f"/api/v1/studies/{solo['study'].code}/",
        "site-detail": f"/api/v1/sites/{solo['site'].code}/",
        "lot-detail": f"/api/v1/lots/{patient.transplants.get().lot.lot_number}/",
        "patient-detail": f"/api/v1/patients/{patient.pk}/",
        "transplant-detail": f"/api/v1/transplants/{patient.transplants.get().pk}/",
        "medication-detail": f"/api/v1/medications/{patient.medications.get().pk}/",
        "visit-detail": f"/api/v1/visits/{bl.pk}/",
        "result-detail": f"/api/v1/results/{bl.results.get(code='CREAT').pk}/",
        "outcome-detail": f"/api/v1/outcomes/{Visit.objects.get(patient=patient, code='M1').computed_outcome.pk}/",
        "adverse-event-detail": f"/api/v1/adverse-events/{patient.adverse_events.get().pk}/",
        "export-detail": f"/api/v1/exports/{solo['export'].pk}/",
        "query-detail": f"/api/v1/queries/{patient.queries.get().pk}/",
        "report-detail": f"/api/v1/reports/{solo['study'].code}/",
    }


def test_every_list_and_detail_route_has_a_pinned_count():
    from tests.api.routes import router_routes

    # A download is a file, not rows: its cost is the file's, not the database's.
    names = {name for name, method in router_routes() if method == "GET"} - {"export-download"}
    assert names == set(PINNED_LIST_QUERIES) | set(PINNED_DETAIL_QUERIES)


@pytest.mark.parametrize("name", list(LISTS))
def test_list_query_count_is_pinned(solo, name, django_assert_num_queries):
    with django_assert_num_queries(PINNED_LIST_QUERIES[name]):
        response = solo["client"].get(LISTS[name])
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1, "one row of every kind in the small world"


@pytest.mark.parametrize("name", list(PINNED_DETAIL_QUERIES))
def test_detail_query_count_is_pinned(solo, name, django_assert_num_queries):
    url = _detail_urls(solo)[name]
    with django_assert_num_queries(PINNED_DETAIL_QUERIES[name]):
        response = solo["client"].get(url)
    assert response.status_code == 200


@pytest.mark.slow
def test_query_counts_are_the_same_with_one_row_and_with_a_full_page(solo):
    client = solo["client"]
    small = {name: count_queries(client, url) for name, url in LISTS.items()}
    assert all(rows == 1 for _, rows in small.values()), small
    details = _detail_urls(solo)
    small_details = {name: count_queries(client, url)[0] for name, url in details.items()}

    study, site = solo["study"], solo["site"]
    for _ in range(PAGE - 1):
        add_patient(study, site)
        make_study(site)
        make_finished_export(study, site, solo["key"])
    full = {name: count_queries(client, url) for name, url in LISTS.items()}

    # Site A has exactly one site; every other list now fills a page.
    expected_rows = {name: (1 if name == "site-list" else PAGE) for name in LISTS}
    assert {name: rows for name, (_, rows) in full.items()} == expected_rows
    assert {name: q for name, (q, _) in full.items()} == {name: q for name, (q, _) in small.items()}
    assert {name: q for name, (q, _) in full.items()} == PINNED_LIST_QUERIES
    # Details too, the cohort report above all (it summarises every patient of the study).
    assert {name: count_queries(client, url)[0] for name, url in details.items()} == small_details
    assert small_details == PINNED_DETAIL_QUERIES
