"""The patient's page in the admin as a coordinator uses it: the therapies the patient was refractory to are
ticked in a list of boxes with the drugs' names, and saved as the same list of drug codes as before."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from patients.constants import Drug
from patients.models import Patient
from tests.factories import make_clinical, make_patient, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinical():
    return make_clinical()


@pytest.fixture
def coordinator(clinical):
    return make_user("patient_form_coord", clinical.site)


def change_url(patient: Patient) -> str:
    return f"/admin/patients/patient/{patient.pk}/change/"


def as_shown(response) -> dict:
    """What a browser sends back from the page: every field as shown, and the tables' management forms."""
    form = response.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{inline.formset.prefix}-{name}": management[name].value() for name in management.fields})
    return {name: value for name, value in data.items() if value is not None and value is not False and value != ""}


def refractory_row(html: str) -> str:
    start = html.rindex('<div class="form-row', 0, html.index("field-refractory_to"))
    return html[start : html.find('<div class="form-row', start + 1)]


def test_refractory_therapies_are_offered_as_named_boxes(client, clinical, coordinator):
    client.force_login(coordinator)
    html = client.get(change_url(clinical.patient)).content.decode()
    assert "patients/patient.css" in html  # a box and its name on one line
    row = refractory_row(html)
    boxes = dict(re.findall(r'<input type="checkbox" name="refractory_to" value="(\w+)"([^>]*)>', row))
    assert list(boxes) == Drug.values
    assert [value for value, attrs in boxes.items() if "checked" in attrs] == ["cyclophosphamide"]
    assert "Cyclophosphamide" in row and "Mycophenolate" in row and "Prednisone (or equivalent)" in row
    assert "<textarea" not in row and "[&quot;" not in row


def test_coordinator_saves_two_ticked_therapies_as_a_list_of_codes(client, clinical, coordinator):
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(clinical.patient)))
    data.update(refractory_to=["cyclophosphamide", "mycophenolate"], reason="Mycophenolate also failed", _save="Save")
    response = client.post(change_url(clinical.patient), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    clinical.patient.refresh_from_db()
    assert clinical.patient.refractory_to == ["cyclophosphamide", "mycophenolate"]
    latest = clinical.patient.history.order_by("-history_date", "-history_id").first()
    assert latest.history_change_reason == "Mycophenolate also failed"


def test_saving_the_page_unchanged_keeps_the_stored_list_and_needs_no_reason(client, clinical, coordinator):
    patient = make_patient(clinical.study, clinical.site, subject_code="SLE-ORDER")
    Patient.objects.filter(pk=patient.pk).update(refractory_to=["cyclophosphamide", "prednisone"])
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(patient)))
    assert sorted(data["refractory_to"]) == ["cyclophosphamide", "prednisone"]
    history = patient.history.count()
    # A browser sends the ticked boxes in the order they are shown: prednisone comes first.
    response = client.post(
        change_url(patient), {**data, "refractory_to": ["prednisone", "cyclophosphamide"], "_save": "Save"}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    patient.refresh_from_db()
    assert patient.refractory_to == ["cyclophosphamide", "prednisone"]
    assert patient.history.count() == history


def test_no_box_ticked_stores_an_empty_list(client, clinical, coordinator):
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(clinical.patient)))
    data["refractory_to"] = []
    response = client.post(change_url(clinical.patient), {**data, "reason": "entered in error", "_save": "Save"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    clinical.patient.refresh_from_db()
    assert clinical.patient.refractory_to == []


def test_an_unknown_therapy_is_refused_beside_the_field_and_nothing_changes(client, clinical, coordinator):
    client.force_login(coordinator)
    data = as_shown(client.get(change_url(clinical.patient)))
    data.update(refractory_to=["cyclophosphamide", "snake_oil"], reason="typo", _save="Save")
    response = client.post(change_url(clinical.patient), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["refractory_to"]
    assert "Unknown drug code(s) snake_oil" in errors["refractory_to"][0]
    assert "Unknown drug code(s) snake_oil" in refractory_row(response.content.decode())
    clinical.patient.refresh_from_db()
    assert clinical.patient.refractory_to == ["cyclophosphamide"]


def test_enrolling_through_the_add_page_stores_the_ticked_therapies(client, clinical, coordinator):
    client.force_login(coordinator)
    data = as_shown(client.get("/admin/patients/patient/add/"))
    data.update(
        study=clinical.study.pk,
        site=clinical.site.pk,
        subject_code="SLE-NEW-01",
        sex="F",
        birth_year="1991",
        diagnosis_date="2020-05-01",
        classification_criteria="slicc2012",
        consent_date="2025-01-10",
        refractory_to=["cyclophosphamide", "rituximab"],
        _save="Save",
    )
    response = client.post("/admin/patients/patient/add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Patient.objects.get(subject_code="SLE-NEW-01").refractory_to == ["cyclophosphamide", "rituximab"]


@pytest.fixture
def language_restored():
    """The language of this thread as it was: a request in Chinese activates Chinese here too."""
    language = translation.get_language()
    yield
    translation.activate(language)


def test_the_boxes_are_named_in_chinese_for_a_chinese_reader(client, language_restored, clinical, coordinator):
    client.force_login(coordinator)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    row = refractory_row(client.get(change_url(clinical.patient)).content.decode())
    labels = dict(re.findall(r'value="(\w+)"[^>]*>\s*([^<]+?)\s*</label>', row))
    assert labels["cyclophosphamide"] == "环磷酰胺"
    assert labels["mycophenolate"] != "Mycophenolate"
