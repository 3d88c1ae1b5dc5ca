"""One visit history: the visit's page's History shows its fields, each result's value and unit and the SLEDAI-2K
items by label (in the reader's language), who (user or API key), when, door and reason; the creation row
names its author. Before, a changed creatinine showed a reason and a blank change list."""

from __future__ import annotations

import datetime as dt
import html as html_text
import re

import pytest

from core.audit import Door, audit_context
from followup.services import visit_record
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = pytest.mark.django_db

M1 = DAY_ZERO + dt.timedelta(days=30)


@pytest.fixture
def history(client):
    clinical = make_clinical()
    coordinator = make_user("history_coordinator", clinical.site)
    visit = clinical.visit("M1")
    with audit_context(door=Door.ADMIN, user=coordinator):
        visit_record(visit=visit, actual_date=M1, results={"CREAT": ("68", "umol/L")}, sledai_items=["arthritis"])
    with audit_context(door=Door.API, actor="key JSPH-lab"):
        visit_record(
            visit=visit,
            actual_date=M1,
            results={"CREAT": ("86", "umol/L")},
            sledai_items=["arthritis", "rash"],
            reason="creatinine transcribed wrongly",
        )
    client.force_login(coordinator)

    def page(language="en") -> list[list[str]]:
        response = client.get(f"/admin/followup/visit/{visit.pk}/history/", HTTP_ACCEPT_LANGUAGE=language)
        assert response.status_code == 200
        html = html_text.unescape(response.content.decode())
        rows = re.findall(r'<tr class="history-entry">(.*?)</tr>', html, flags=re.S)
        return [
            [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in rows
        ]

    page.client, page.visit = client, visit
    return page


def test_a_changed_lab_value_shows_in_the_visits_history_with_who_door_and_reason(history):
    newest, recorded, created = history()
    when, who, door, reason, changes = newest
    assert (who, door, reason) == ("key JSPH-lab", "API key", "creatinine transcribed wrongly")
    assert "CREAT: Serum creatinine : 68 umol/L → 86 umol/L" in changes
    assert "SLEDAI-2K items present : Arthritis → Arthritis, Rash" in changes
    assert "SLEDAI2K: SLEDAI-2K total : 4 points → 6 points" in changes


def test_the_recording_and_the_creation_rows_name_their_authors(history):
    _, recorded, created = history()
    assert recorded[1:3] == ["history_coordinator", "Admin"]
    assert "date of the visit : — → " + M1.isoformat() in recorded[4]
    assert "outcome : Open → Completed" in recorded[4]
    assert created[3].startswith("Created")
    assert created[1] == "System (task or shell)"  # scheduled by the registry when infusion 1 was recorded
    assert "target date" in created[4]


def test_the_history_speaks_the_readers_language(history):
    newest, recorded, _ = history("zh-hans")
    assert "关节炎" in newest[4]  # Arthritis
    assert "已完成" in recorded[4]  # Completed
    assert recorded[2] == "管理界面"  # the admin door


def test_another_sites_coordinator_gets_no_history(history, client):
    other = make_clinical()
    client.force_login(make_user("history_outsider", other.site))
    assert client.get(f"/admin/followup/visit/{history.visit.pk}/history/").status_code == 404
