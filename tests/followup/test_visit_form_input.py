"""The visit page reads what is typed one way only: a decimal comma, a thousands separator or text in a number
field, and a date that is not year first, are refused at the field with the rule; nothing is reinterpreted or
dropped, and every error of the page shows in one pass."""

from __future__ import annotations

import datetime as dt

import pytest

from followup.models import Result, Visit
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = pytest.mark.django_db

M1 = DAY_ZERO + dt.timedelta(days=30)
RESULTS_TABLE = {"results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0"}


@pytest.fixture
def page(client):
    clinical = make_clinical()
    client.force_login(make_user("input_coordinator", clinical.site))
    visit = Visit.objects.get(patient=clinical.patient, code="M1")

    def post(**fields):
        data = {"actual_date": M1.isoformat(), "deviation_reason": "", "reason": "", "_save": "Save", **RESULTS_TABLE}
        response = client.post(f"/admin/followup/visit/{visit.pk}/change/", {**data, **fields})
        assert response.status_code in (200, 302)
        errors = (
            {name: " ".join(e) for name, e in response.context["adminform"].form.errors.items()}
            if response.status_code == 200
            else {}
        )
        return response, errors

    post.visit = visit
    return post


def nothing_stored(visit) -> bool:
    visit.refresh_from_db()
    return visit.actual_date is None and not Result.objects.filter(visit=visit).exists()


@pytest.mark.parametrize("typed", ["68,5", "1,200", "68，5"])
def test_a_comma_in_a_number_is_refused_not_read_as_another_number(page, typed):
    _, errors = page(CREAT_value=typed, CREAT_unit="umol/L")
    assert "Use a point for decimals" in errors["CREAT_value"]
    assert nothing_stored(page.visit)


@pytest.mark.parametrize("typed", ["abc", "1e3", "10 mg"])  # "<10": a censored value (test_censored_admin.py)
def test_text_in_a_number_field_is_refused_not_dropped(page, typed):
    _, errors = page(PLT_value=typed)
    assert "is not a number" in errors["PLT_value"]
    assert nothing_stored(page.visit)


def test_a_number_with_a_point_is_recorded_as_typed(page):
    response, errors = page(CREAT_value="68.5", CREAT_unit="umol/L")
    assert errors == {} and response.status_code == 302
    assert Result.objects.get(visit=page.visit, code="CREAT").entered_value == 68.5


@pytest.mark.parametrize("typed", ["05/11/2025", "11.05.2025", "2 April 2025"])
def test_a_date_not_year_first_is_refused_with_the_rule(page, typed):
    _, errors = page(actual_date=typed, PLT_value="210")
    assert "year first: 2026-10-01" in errors["actual_date"]
    assert nothing_stored(page.visit)


def test_a_year_first_date_with_slashes_is_read(page):
    response, errors = page(actual_date=M1.strftime("%Y/%m/%d"), PLT_value="210")
    assert errors == {} and response.status_code == 302
    page.visit.refresh_from_db()
    assert page.visit.actual_date == M1


def test_every_error_of_the_page_shows_in_one_pass(page):
    _, errors = page(actual_date="05/11/2025", CREAT_value="99999", CREAT_unit="umol/L", C3_value="abc")
    assert set(errors) == {"actual_date", "CREAT_value", "C3_value"}, errors
    assert "year first" in errors["actual_date"]
    assert "is not a number" in errors["C3_value"]
    assert "CREAT" in errors["CREAT_value"]
    assert nothing_stored(page.visit)


def test_the_number_fields_are_text_inputs_that_keep_what_was_typed(page):
    response, _ = page(PLT_value="abc")
    html = response.content.decode()
    assert 'name="PLT_value" value="abc"' in html
    assert 'type="number"' not in html.split('name="PLT_value"')[0].rsplit("<input", 1)[1]


def test_the_rules_are_given_in_chinese(page, client, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    _, errors = page(CREAT_value="68,5", PLT_value="abc", actual_date="05/11/2025")
    assert "小数请用小数点" in errors["CREAT_value"]
    assert "不是数字" in errors["PLT_value"]
    assert "日期请按年-月-日填写" in errors["actual_date"]


def test_ticked_items_with_a_different_total_are_refused_not_the_total_dropped(page):
    _, errors = page(sledai_assessed="on", sledai_items=["arthritis", "rash"], sledai_total_only="10")
    assert "disagrees with the items recorded, which sum to 6" in errors["sledai_total_only"]
    assert nothing_stored(page.visit)
    response, errors = page(sledai_assessed="on", sledai_items=["arthritis", "rash"], sledai_total_only="6")
    assert errors == {} and response.status_code == 302
    assert Result.objects.get(visit=page.visit, code="SLEDAI2K").value == 6


def test_save_returns_to_the_worklist(page):
    response, errors = page(PLT_value="210")
    assert errors == {} and response["Location"] == "/admin/"
