"""The visits list, a list over a big table (registry/admin_tools.py `BigListAdminMixin`): each row links to its
visit (the links built from one reverse()), and its date columns are written year first, as dates are typed,
under headers in the reader's language."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine

from tests.factories import make_clinical, make_user

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)


def visit_url(visit) -> str:
    return f"/admin/followup/visit/{visit.pk}/change/"


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_visits_list_links_each_row_to_its_visit_and_writes_dates_year_first(client, language):
    with time_machine.travel(NOW, tick=False):
        clinical = make_clinical()
        client.force_login(make_user("coord", clinical.site))
        _check(client, language)


def _check(client, language):
    client.post("/i18n/setlang/", {"language": language, "next": "/admin/"})
    response = client.get("/admin/followup/visit/")
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r"<tr>.*?</tr>", html.split('id="result_list"')[1].split("</table>")[0], flags=re.S)[1:]
    visits = list(response.context["cl"].result_list)
    assert len(rows) == len(visits) > 0
    for row, visit in zip(rows, visits, strict=True):
        assert f'href="{visit_url(visit)}"' in row
        cells = dict(re.findall(r'<td class="field-(\w+)[^"]*">(.*?)</td>', row, flags=re.S))
        assert cells["target_date"] == visit.target_date.isoformat()
        assert cells["window_start"] == visit.window_start.isoformat()
        assert cells["window_end"] == visit.window_end.isoformat()
        assert cells["actual_date"] == (visit.actual_date.isoformat() if visit.actual_date else "-")
    headers = {
        "en": ["Target date", "Window start", "Window end", "Actual date"],
        "zh-hans": ["目标日期", "窗口开始", "窗口结束", "实际日期"],
    }
    for header in headers[language]:
        assert re.search(rf'<th scope="col"[^>]*>.*?{header}.*?</th>', html, flags=re.S), header
    # The date columns still sort by their dates, and keep their cells' classes.
    for name in ("target_date", "window_start", "window_end", "actual_date"):
        assert re.search(rf'<th scope="col" class="sortable column-{name}', html), name
