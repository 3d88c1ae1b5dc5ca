"""The visit page completes a visit only by "Complete visit": Enter presses "Save (in progress)", the page's
first button; completing lists each required item missing beside its field; a reason per item completes."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from followup.constants import VisitOutcome
from followup.models import Visit
from tests.factories import DAY_ZERO, make_clinical, make_site, make_study, make_user

pytestmark = pytest.mark.django_db

BL_DAY = DAY_ZERO - dt.timedelta(days=3)
RESULTS_TABLE = {"results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0"}
ALL_BUT_C4 = {"PROT24H_value": "0.4", "CREAT_value": "70", "C3_value": "0.9", "ADSDNA_value": "12"}


@pytest.fixture
def page(client):
    site = make_site()
    clinical = make_clinical(site=site, study=make_study(site, required_items=True))
    client.force_login(make_user("completion_page", clinical.site))
    visit = Visit.objects.get(patient=clinical.patient, code="BL")
    url = f"/admin/followup/visit/{visit.pk}/change/"

    def post(**fields):
        data = {"actual_date": BL_DAY.isoformat(), "deviation_reason": "", "reason": "", **RESULTS_TABLE, **fields}
        response = client.post(url, data)
        errors = (
            {name: " ".join(e) for name, e in response.context["adminform"].form.errors.items()}
            if response.status_code == 200
            else {}
        )
        visit.refresh_from_db()
        return response, errors

    post.visit, post.url, post.client = visit, url, client
    return post


def test_the_first_button_of_the_page_saves_in_progress(page):
    html = page.client.get(page.url).content.decode()
    buttons = html[html.index('<div class="submit-row">') :]
    assert buttons.index('name="_save"') < buttons.index('name="_complete"')
    assert 'value="Save (in progress)"' in buttons and 'value="Complete visit"' in buttons
    assert "Completing this visit needs SLEDAI2K, PROT24H, CREAT, C3, C4, ADSDNA" in html


def test_enter_saves_in_progress_and_the_worklist_says_what_is_missing(page):
    # Enter in a field submits the form as its first submit button: `_save` only.
    response, errors = page(_save="Save (in progress)", CREAT_value="70")
    assert errors == {} and response.status_code == 302 and response.url == "/admin/"
    assert page.visit.outcome == VisitOutcome.IN_PROGRESS
    home = page.client.get("/admin/").content.decode()
    assert "is saved in progress" in home and "Completing it needs: SLEDAI2K, PROT24H, C3, C4, ADSDNA." in home
    assert f"{page.visit.patient.subject_code} – BL" in home[home.index('id="in-progress"') :]
    # Adding more later needs no reason for change.
    response, errors = page(_save="Save (in progress)", CREAT_value="70", C3_value="0.9")
    assert errors == {} and page.visit.outcome == VisitOutcome.IN_PROGRESS


def test_complete_lists_each_missing_item_beside_its_field(page):
    response, errors = page(_complete="Complete visit", **ALL_BUT_C4)
    assert response.status_code == 200
    assert "required to complete visit BL" in errors["C4_value"]
    assert "required to complete visit BL" in errors["sledai_total_only"]
    assert set(errors) == {"C4_value", "sledai_total_only"}
    assert page.visit.outcome == VisitOutcome.OPEN


def test_complete_with_a_reason_per_missing_item_completes(page):
    response, errors = page(
        _complete="Complete visit",
        sledai_assessed="on",
        C4_not_done="not_available",
        **ALL_BUT_C4,
    )
    assert errors == {} and response.status_code == 302
    assert page.visit.outcome == VisitOutcome.COMPLETED
    assert page.visit.not_done == {"C4": "not_available"}
    # The completed visit's page saves corrections: its one button keeps it complete.
    html = page.client.get(page.url).content.decode()
    assert 'value="Save correction"' in html and 'name="_complete"' not in html
    response, errors = page(
        _save="Save correction", sledai_assessed="on", C4_not_done="not_available", reason="C3 re-run", **ALL_BUT_C4
    )
    assert errors == {} and page.visit.outcome == VisitOutcome.COMPLETED


def test_a_study_edits_the_required_items_of_a_visit_from_the_catalogue(client):
    from registry.models import VisitDefinition
    from tests.factories import make_superuser

    site = make_site()
    study = make_study(site, required_items=True)
    definition = VisitDefinition.objects.get(study=study, code="M6")
    client.force_login(make_superuser("template_editor"))
    url = f"/admin/registry/visitdefinition/{definition.pk}/change/"
    html = client.get(url).content.decode()
    checked = set(re.findall(r'name="required_items" value="(\w+)"[^>]*checked', html))
    assert checked == {"SLEDAI2K", "PROT24H", "CREAT", "C3", "C4", "ADSDNA"}
    fields = {
        "study": study.pk,
        "code": "M6",
        "label": definition.label,
        "offset_days": definition.offset_days,
        "window_before_days": definition.window_before_days,
        "window_after_days": definition.window_after_days,
        "required_items": ["C3", "CREAT", "SLEDAI2K"],
    }
    response = client.post(url, fields)
    assert response.status_code == 302, response.content.decode()[:3000]
    definition.refresh_from_db()
    assert definition.required_items == ["SLEDAI2K", "CREAT", "C3"]  # in the catalogue's order
    fields["required_items"] = ["NOPE"]
    response = client.post(url, fields)
    assert response.status_code == 200 and "NOPE is not one of the available choices" in response.content.decode()
