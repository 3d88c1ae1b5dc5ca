"""The patient page's links (add an adverse event or a medication for this patient, print the summary) and the
one-page print view. The patients are those of tests/followup/test_workspace_pages.py."""

from __future__ import annotations

import re

import pytest

from tests.followup import test_workspace_pages as pages
from tests.followup.test_workspace_pages import patient_url

pytestmark = pytest.mark.django_db

# The fixtures of the worklist's world, shared with test_workspace_pages.py.
clock = pages.clock
world = pages.world


def print_url(patient) -> str:
    return f"/admin/patients/patient/{patient.pk}/print/"


def selected_patient(html: str) -> str | None:
    """The value of the patient chosen in an add form's patient field."""
    select = re.search(r'<select[^>]*name="patient"[^>]*>(.*?)</select>', html, flags=re.S)
    assert select, "no patient field"
    chosen = re.search(r'<option value="(\d+)"[^>]*selected', select.group(1))
    return chosen.group(1) if chosen else None


def test_patient_page_links_to_add_an_adverse_event_and_a_medication_for_that_patient(client, world):
    client.force_login(world.coord_a)
    html = client.get(patient_url(world.a2)).content.decode()
    ae_add = re.search(r'href="([^"]+)"[^>]*id="add-adverse-event"', html).group(1)
    medication_add = re.search(r'href="([^"]+)"[^>]*id="add-medication"', html).group(1)
    assert ae_add == f"/admin/followup/adverseevent/add/?patient={world.a2.pk}"
    assert medication_add == f"/admin/patients/concomitantmedication/add/?patient={world.a2.pk}"
    for url in (ae_add, medication_add):
        response = client.get(url)
        assert response.status_code == 200, url
        assert selected_patient(response.content.decode()) == str(world.a2.pk), url
    assert f'href="{print_url(world.a2)}"' in html


def test_print_view_is_one_page_summary_with_a_print_stylesheet(client, world):
    client.force_login(world.coord_a)
    response = client.get(print_url(world.a2))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Patient summary: WL-A-002" in html
    assert re.search(r'<style media="print"[^>]*>[^<]*@page', html)
    assert ".toolbar { display: none; }" in html  # the buttons do not print
    assert "admin/css/base.css" not in html  # no admin header, sidebar or menus on paper
    visits = html[html.index('id="print-visits"') : html.index("</table>", html.index('id="print-visits"'))]
    assert re.findall(r"<tr><td>(\w+)</td>", visits)[:4] == ["BL", "D7", "M1", "M3"]
    assert "Completed" in visits and "Due" in visits
    assert "UC-WL-A" in html  # the infusion's lot
    assert "Anaphylaxis after infusion" in html
    assert "2026-08-01 10:00" in html  # infused at 02:00 UTC, shown at the site (Shanghai)


def test_print_view_of_another_sites_patient_is_not_found(client, world):
    client.force_login(world.coord_b)
    response = client.get(print_url(world.a2))
    assert response.status_code in (302, 404)
    assert "WL-A-002" not in response.content.decode()


def test_print_view_in_chinese(client, world):
    client.force_login(world.coord_a)
    html = client.get(print_url(world.a2), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "患者摘要" in html
    assert "不良事件" in html
