"""Censored results typed on the visit page ("<10"): stored with their comparator and shown with the sign on
the visit page, in the results list and in the visit's history; a sign the page cannot read one way only is
refused at the field, naming it and the rule."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest

from followup.models import Result, Visit
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = pytest.mark.django_db

M1 = DAY_ZERO + dt.timedelta(days=30)
RESULTS_TABLE = {"results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0"}


@pytest.fixture
def page(client):
    clinical = make_clinical()
    client.force_login(make_user("censored_coordinator", clinical.site))
    visit = Visit.objects.get(patient=clinical.patient, code="M1")
    url = f"/admin/followup/visit/{visit.pk}/change/"

    def post(**fields):
        data = {"actual_date": M1.isoformat(), "deviation_reason": "", "reason": "", "_complete": "1", **RESULTS_TABLE}
        response = client.post(url, {**data, **fields})
        assert response.status_code in (200, 302)
        errors = (
            {name: " ".join(e) for name, e in response.context["adminform"].form.errors.items()}
            if response.status_code == 200
            else {}
        )
        return response, errors

    post.visit, post.url, post.client = visit, url, client
    return post


@pytest.mark.parametrize(
    ("typed", "comparator", "value"),
    [
        ("<10", "<", "10"),
        ("< 10", "<", "10"),
        ("<=10", "<=", "10"),
        ("≤10", "<=", "10"),
        (">800", ">", "800"),
        ("≥ 800.5", ">=", "800.5"),
    ],
)
def test_a_censored_value_typed_is_stored_with_its_comparator(page, typed, comparator, value):
    response, errors = page(ADSDNA_value=typed)
    assert errors == {} and response.status_code == 302
    row = Result.objects.get(visit=page.visit, code="ADSDNA")
    assert (row.comparator, row.value, row.entered_value) == (comparator, Decimal(value), Decimal(value))


def test_a_censored_value_in_another_unit_keeps_its_comparator(page):
    response, errors = page(C3_value="<5", C3_unit="mg/dL")
    assert errors == {}, errors
    row = Result.objects.get(visit=page.visit, code="C3")
    assert (row.shown_value, row.shown_entered_value, row.entered_unit) == ("<0.05", "<5", "mg/dL")


@pytest.mark.parametrize(
    ("typed", "rule"),
    [
        ("abc<", "write one of <, <=, >=, > before the number"),
        ("<<10", "write one of <, <=, >=, > before the number"),
        ("=<10", "write one of <, <=, >=, > before the number"),
        ("10<", "write one of <, <=, >=, > before the number"),
        ("<", "has a sign but no number"),
        ("< abc", "is not a number"),
        ("<10,5", "Use a point for decimals"),
    ],
)
def test_a_sign_that_cannot_be_read_one_way_is_refused_naming_the_field_and_the_rule(page, typed, rule):
    _, errors = page(ADSDNA_value=typed)
    assert rule in errors["ADSDNA_value"], errors
    assert f"“{typed}”" in errors["ADSDNA_value"]  # what was typed, quoted whole
    if "sign" in rule or "before the number" in rule:
        assert "Anti-dsDNA" in errors["ADSDNA_value"]
    assert not Result.objects.filter(visit=page.visit).exists()


def test_a_sign_on_a_value_that_is_not_a_laboratory_result_is_refused(page):
    _, errors = page(PRED_value="<5")
    assert "is not a number" in errors["PRED_value"]
    assert not Result.objects.filter(visit=page.visit).exists()


def test_the_visit_page_shows_the_censored_value_with_its_sign(page):
    page(ADSDNA_value="<10", CREAT_value="<20")
    html = page.client.get(page.url).content.decode()
    assert 'value="&lt;10"' in html  # the field shows what was typed
    assert "&lt;20" in html
    assert not Result.objects.filter(visit=page.visit, code="EGFR").exists()
    listed = page.client.get("/admin/followup/result/?code=ADSDNA").content.decode()
    assert "&lt;10" in listed


def test_a_censored_value_unchanged_is_not_a_change(page):
    page(ADSDNA_value="<10")
    history = Result.history.filter(code="ADSDNA").count()
    response, errors = page(ADSDNA_value="<10", reason="checked")
    assert errors == {} and response.status_code == 302
    assert Result.history.filter(code="ADSDNA").count() == history


def test_the_patient_chart_draws_a_censored_value_as_a_bound_not_as_a_point(page):
    from followup.charts import patient_charts
    from followup.services import visit_record

    visit_record(visit=page.visit.patient.visits.get(code="BL"), actual_date=DAY_ZERO, results={"ADSDNA": "80"})
    page(ADSDNA_value="<10")
    svg = patient_charts(patient=page.visit.patient)["ADSDNA"]
    assert len(re.findall(r'<use [^>]*style="fill: #1f77b4', svg)) == 1  # only BL's exact value as a filled point
    assert "<!-- &lt;10 -->" in svg  # the censored one labelled with its sign, drawn as an open triangle
    assert 'style="fill: #ffffff' in svg


def test_the_outcome_summary_shows_a_censored_change_with_its_sign(page):
    from followup.services import visit_record

    visit_record(visit=page.visit.patient.visits.get(code="BL"), actual_date=DAY_ZERO, results={"ADSDNA": "80"})
    page(ADSDNA_value="<10")
    html = page.client.get(page.url).content.decode()
    assert "&lt;10 vs baseline 80 (–, – %)" in html
