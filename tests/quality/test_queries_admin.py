"""The queries in the admin: a monitor raises one from the visit page, the coordinator answers it on the query's
page, the monitor closes it; the list filters; the record's page marks the queried field; the worklist shows
the site's open queries with their age; another site's people see none of it."""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo

import pytest
import time_machine

from followup.models import Result
from followup.services import visit_record
from quality.constants import QueryState
from quality.models import Query
from quality.services.queries import query_raise
from registry.constants import Role
from tests.factories import make_clinical, make_site, make_user

pytestmark = pytest.mark.django_db

SETUP = dt.datetime(2025, 10, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(SETUP, tick=True) as traveller:
        yield traveller


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(
        visit=clinical.visit("M1"),
        actual_date=dt.date(2025, 4, 2),
        results={"CREAT": ("88", None)},
        status="in_progress",
    )
    return clinical


@pytest.fixture
def monitor(clinical):
    return make_user("mon", clinical.site, role=Role.MONITOR)


@pytest.fixture
def coordinator(clinical):
    return make_user("coord", clinical.site, role=Role.COORDINATOR)


def creatinine(clinical) -> Result:
    return Result.objects.get(visit=clinical.visit("M1"), code="CREAT")


def test_raise_answer_close_through_the_admin(client, clinical, monitor, coordinator):
    result = creatinine(clinical)
    client.force_login(monitor)
    page = client.get(f"/admin/followup/visit/{clinical.visit('M1').pk}/change/")
    assert page.status_code == 200
    visit_url = f"/admin/followup/visit/{clinical.visit('M1').pk}/change/"
    raise_url = f"/admin/quality/query/raise/result/{result.pk}/?field=CREAT&next={visit_url.replace('/', '%2F')}"
    assert raise_url.replace("&", "&amp;") in page.content.decode()
    form = client.get(raise_url)
    assert "88 umol/L" in form.content.decode()
    response = client.post(raise_url, {"field": "CREAT", "text": "Source says 8.8 mg/dL?"})
    assert (response.status_code, response["Location"]) == (302, visit_url)  # back to the visit
    query = Query.objects.get()
    assert (query.target, query.field, query.raised_by) == (result, "CREAT", monitor)

    page = client.get(f"/admin/followup/visit/{clinical.visit('M1').pk}/change/").content.decode()
    marks = json.loads(re.search(r'id="query-marks" type="application/json">(.*?)</script>', page).group(1))
    assert marks == {"CREAT_value": 1}

    client.force_login(coordinator)
    page = client.get(f"/admin/quality/query/{query.pk}/change/").content.decode()
    assert 'value="answer"' in page and 'value="close"' not in page
    client.post(f"/admin/quality/query/{query.pk}/act/", {"action": "answer", "text": "Checked: 88 umol/L is right."})
    query.refresh_from_db()
    assert query.state == QueryState.ANSWERED

    client.force_login(monitor)
    page = client.get(f"/admin/quality/query/{query.pk}/change/").content.decode()
    assert "Checked: 88 umol/L is right." in page and 'value="close"' in page
    client.post(f"/admin/quality/query/{query.pk}/act/", {"action": "close", "text": ""})
    query.refresh_from_db()
    assert query.state == QueryState.CLOSED
    assert list(query.messages.values_list("door", flat=True)) == ["admin", "admin", "admin"]


def test_a_coordinator_cannot_raise_or_close(client, clinical, coordinator, monitor):
    client.force_login(coordinator)
    page = client.get(f"/admin/followup/visit/{clinical.visit('M1').pk}/change/").content.decode()
    assert "/admin/quality/query/raise/" not in page
    response = client.post(f"/admin/quality/query/raise/visit/{clinical.visit('M1').pk}/", {"text": "?"})
    assert response.status_code == 200 and Query.objects.count() == 0
    assert "Only a monitor or data manager" in response.content.decode()
    query = query_raise(target=clinical.patient, text="Check", actor=monitor)
    client.post(f"/admin/quality/query/{query.pk}/act/", {"action": "close"})
    query.refresh_from_db()
    assert query.state == QueryState.OPEN


def test_another_sites_people_see_nothing(client, clinical, monitor):
    query = query_raise(target=clinical.patient, text="Check", actor=monitor)
    other = make_user("coord_other", make_site("OTH", name="Other"), role=Role.COORDINATOR)
    client.force_login(other)
    assert client.get(f"/admin/quality/query/{query.pk}/change/").status_code in (302, 404)
    assert client.get(f"/admin/quality/query/raise/patient/{clinical.patient.pk}/").status_code == 404
    listing = client.get("/admin/quality/query/")
    assert listing.status_code == 200 and f">#{query.pk}</a>" not in listing.content.decode()
    client.post(f"/admin/quality/query/{query.pk}/act/", {"action": "answer", "text": "x"})
    query.refresh_from_db()
    assert query.state == QueryState.OPEN


def test_list_filters_by_state_and_age(client, clinical, monitor, clock):
    old = query_raise(target=clinical.patient, field="birth_year", text="Old one", actor=monitor)
    clock.shift(dt.timedelta(days=10))
    new = query_raise(target=clinical.patient, field="sex", text="New one", actor=monitor)
    client.force_login(monitor)
    aged = client.get("/admin/quality/query/", {"age": "7"}).content.decode()
    assert f">#{old.pk}</a>" in aged and f">#{new.pk}</a>" not in aged
    closed = client.get("/admin/quality/query/", {"state__exact": "closed"}).content.decode()
    assert f">#{old.pk}</a>" not in closed


def test_worklist_shows_the_sites_open_queries_with_their_age(client, clinical, monitor, coordinator, clock):
    query_raise(target=clinical.patient, field="birth_year", text="Year of birth per the ID card?", actor=monitor)
    clock.shift(dt.timedelta(days=8))
    client.force_login(coordinator)
    page = client.get("/admin/").content.decode()
    assert "Open queries (1)" in page and "Year of birth per the ID card?" in page
    assert "<strong>8 days</strong>" in page  # older than the study's limit (7 days)


def test_pages_in_chinese(client, clinical, monitor):
    query = query_raise(target=clinical.patient, text="Check", actor=monitor)
    client.force_login(monitor)
    page = client.get(f"/admin/quality/query/{query.pk}/change/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "关闭质疑" in page
