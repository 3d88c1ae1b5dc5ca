"""The read-only tables inside the visit and patient pages (results, adverse events, medications): seen by
whoever may see the page, with rights from site memberships as for the page itself, never Django's
per-model permissions; closed to a user of another site; never editable from there."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import RequestFactory

from followup import constants as fc
from followup.admin import ResultInline
from followup.models import AdverseEvent
from followup.services import ae_record, visit_record
from patients.constants import DoseUnit, Drug, Frequency
from patients.models import ConcomitantMedication
from patients.services import medication_record
from tests.factories import DAY_ZERO, make_clinical, make_site, make_user

pytestmark = pytest.mark.django_db

M1 = dt.date(2025, 4, 2)


@pytest.fixture
def clinical():
    """A patient with a recorded M1 visit, an adverse event and a medication; none seen by anyone."""
    clinical = make_clinical()
    visit_record(visit=clinical.visit("M1"), actual_date=M1, results={"C3": "0.61", "PRED": "12.5"})
    ae_record(
        patient=clinical.patient,
        term="Herpes zoster",
        category=fc.AECategory.INFECTION,
        grade=fc.CTCAEGrade.MODERATE,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
        onset_date=dt.date(2025, 4, 20),
        aware_date=dt.date(2025, 4, 21),
    )
    medication_record(
        patient=clinical.patient,
        drug=Drug.HYDROXYCHLOROQUINE,
        dose=Decimal("200"),
        unit=DoseUnit.MG,
        frequency=Frequency.BID,
        start_date=DAY_ZERO,
    )
    return clinical


@pytest.fixture
def coordinator(clinical):
    return make_user("inline_coord", clinical.site)


@pytest.fixture
def outsider(clinical):
    return make_user("inline_outsider", make_site(time_zone="Europe/London", country="GB"))


def visit_url(visit) -> str:
    return f"/admin/followup/visit/{visit.pk}/change/"


def patient_url(patient) -> str:
    return f"/admin/patients/patient/{patient.pk}/change/"


def request_of(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_coordinator_of_the_site_sees_the_results_of_the_visit(client, clinical, coordinator):
    assert not coordinator.has_perm("followup.view_result")  # rights come from the membership only
    client.force_login(coordinator)
    html = client.get(visit_url(clinical.visit("M1"))).content.decode()
    assert 'id="results-group"' in html
    table = html[html.index('id="results-group"') :]
    assert "C3 – Complement C3" in table
    assert "PRED – Prednisone (equivalent) dose" in table


def test_coordinator_of_the_site_sees_the_adverse_events_and_medications_of_the_patient(client, clinical, coordinator):
    client.force_login(coordinator)
    html = client.get(patient_url(clinical.patient)).content.decode()
    assert 'id="adverse_events-group"' in html
    assert "Herpes zoster" in html[html.index('id="adverse_events-group"') :]
    assert 'id="medications-group"' in html
    assert "Hydroxychloroquine" in html[html.index('id="medications-group"') :]


def test_monitor_of_the_site_sees_the_tables_too(client, clinical):
    client.force_login(make_user("inline_monitor", clinical.site, role="monitor"))
    assert 'id="results-group"' in client.get(visit_url(clinical.visit("M1"))).content.decode()
    html = client.get(patient_url(clinical.patient)).content.decode()
    assert 'id="adverse_events-group"' in html and 'id="medications-group"' in html


def test_the_results_table_follows_the_site_of_the_page(clinical, coordinator, outsider):
    parent = clinical.visit("M1")
    inline = ResultInline(type(parent), admin.site)

    mine = request_of(coordinator)
    assert inline.has_view_permission(mine) is True
    assert inline.has_view_permission(mine, parent) is True
    assert inline.get_queryset(mine).exists()

    theirs = request_of(outsider)
    assert inline.has_view_permission(theirs, parent) is False
    assert not inline.get_queryset(theirs).exists()

    for request in (mine, theirs):
        assert inline.has_add_permission(request, parent) is False
        assert inline.has_change_permission(request, parent) is False
        assert inline.has_delete_permission(request, parent) is False


def test_a_user_without_membership_sees_no_table(clinical):
    nobody = make_user("inline_nobody")
    inline = ResultInline(type(clinical.visit("M1")), admin.site)
    assert inline.has_view_permission(request_of(nobody)) is False
    assert inline.has_view_permission(request_of(nobody), clinical.visit("M1")) is False


def test_the_other_sites_coordinator_gets_neither_page_nor_table(client, clinical, outsider):
    client.force_login(outsider)
    for url in (visit_url(clinical.visit("M1")), patient_url(clinical.patient)):
        response = client.get(url)
        assert response.status_code in (302, 403, 404), url
        html = response.content.decode()
        assert "Herpes zoster" not in html and "Hydroxychloroquine" not in html and "results-group" not in html


def _table(html: str, group_id: str) -> str:
    start = html.index(f'id="{group_id}"')
    return html[start : html.index("</div>", start)]


def test_the_patient_pages_tables_link_each_row_and_show_values_as_the_admin_does(client, clinical, coordinator):
    client.force_login(coordinator)
    html = client.get(patient_url(clinical.patient)).content.decode()
    ae = AdverseEvent.objects.get(patient=clinical.patient)
    events = _table(html, "adverse_events-group")
    assert f'<a href="/admin/followup/adverseevent/{ae.pk}/change/">Herpes zoster</a>' in events
    assert "<th>Category</th>" in events and "<td>Infection</td>" in events  # the choice's label, not its code
    assert "icon-yes.svg" in events  # expected: the admin's yes icon
    medication = ConcomitantMedication.objects.get(patient=clinical.patient)
    medications = _table(html, "medications-group")
    assert (
        f'<a href="/admin/patients/concomitantmedication/{medication.pk}/change/">Hydroxychloroquine</a>' in medications
    )
    assert "<td>-</td>" in medications  # no stop date: the admin's empty mark
    assert 'name="adverse_events-TOTAL_FORMS"' not in html  # tables to read, not forms to post


def test_the_patient_pages_tables_say_when_nothing_is_recorded_in_both_languages(client, coordinator):
    other = make_clinical(site=coordinator.memberships.get().site)
    client.force_login(coordinator)
    html = client.get(patient_url(other.patient)).content.decode()
    assert "No adverse event recorded." in _table(html, "adverse_events-group")
    assert "No medication recorded." in _table(html, "medications-group")
    html = client.get(patient_url(other.patient), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "未记录不良事件。" in _table(html, "adverse_events-group")
    assert "未记录用药。" in _table(html, "medications-group")


def test_the_patient_pages_tables_hold_only_this_patients_records(client, clinical, coordinator):
    other = make_clinical(site=clinical.site)
    client.force_login(coordinator)
    html = client.get(patient_url(other.patient)).content.decode()
    assert "No adverse event recorded." in _table(html, "adverse_events-group")
    assert "No medication recorded." in _table(html, "medications-group")
    assert "Herpes zoster" not in html
