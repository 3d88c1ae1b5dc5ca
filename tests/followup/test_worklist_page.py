"""The worklist's day at each site: today's date per site (its time zone), the days left or late on each
visit, open queries only when there are some, and the data-quality dashboard of the user's own sites.

The patients are those of tests/followup/test_workspace_pages.py (its module docstring); the clock is frozen
at 2026-09-01 09:00 UTC unless a test moves it.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from quality import constants as qc
from quality.models import Query
from quality.selectors import dashboard
from quality.services import queries as query_services
from registry import constants as rc
from tests.factories import make_user
from tests.followup import test_workspace_pages as pages
from tests.followup.test_workspace_pages import NOW, home, visit_of, visit_url

pytestmark = pytest.mark.django_db

# The fixtures of the worklist's world, shared with test_workspace_pages.py.
clock = pages.clock
world = pages.world


def monitor_of(world):
    return make_user("wl_monitor", world.site_a, role=rc.Role.MONITOR)


def cells(html: str) -> list[list[str]]:
    """The words of each data cell, row by row, of an HTML table."""
    return [
        [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
        if "<td" in row
    ]


def row_text(html: str, href: str) -> str:
    """The words of the table row that holds the link `href`."""
    start = html.index(f'href="{href}"')
    row = html[html.rindex("<tr", 0, start) : html.index("</tr>", start)]
    return " ".join(re.sub(r"<[^>]+>", " ", row).split())


def test_worklist_shows_today_at_each_of_the_users_sites(client, world):
    client.force_login(world.coord_a)
    html, page = home(client)
    text = " ".join(page.text.split())
    assert "Today at WLA: 2026-09-01 (Asia/Shanghai)" in text
    assert "Today at WLA2: 2026-09-01 (Asia/Shanghai)" in text
    assert "WLB" not in text
    client.force_login(world.coord_b)
    _, page = home(client)
    assert "Today at WLB: 2026-09-01 (Europe/London)" in " ".join(page.text.split())


def test_today_is_the_sites_own_date(client, world, clock):
    # 20:00 UTC: already 2 September in Shanghai (04:00), still 1 September in London (21:00).
    clock.move_to(dt.datetime(2026, 9, 1, 20, 0, tzinfo=dt.UTC))
    client.force_login(world.coord_a)
    _, page = home(client)
    assert "Today at WLA: 2026-09-02 (Asia/Shanghai)" in " ".join(page.text.split())
    client.force_login(world.coord_b)
    _, page = home(client)
    assert "Today at WLB: 2026-09-01 (Europe/London)" in " ".join(page.text.split())


def test_each_visit_says_how_many_days_are_left_or_late(client, world):
    client.force_login(world.coord_a)
    html, _ = home(client)
    # WL-A-001 BL closed 2026-08-10: 22 days late; D7 (08-15..08-19) 13 days late.
    assert row_text(html, visit_url(visit_of(world.a1, "BL"))).endswith("window closed 2026-08-10 22 days late")
    assert row_text(html, visit_url(visit_of(world.a1, "D7"))).endswith("window closed 2026-08-19 13 days late")
    # WL-A-002 M1 (2026-08-24..09-07): 6 days left.
    assert row_text(html, visit_url(visit_of(world.a2, "M1"))).endswith("2026-09-07 6 days left")
    # WL-A-001 M1 opens 2026-09-02: in 1 day; WL-A2-001 M1 opens 09-12: in 11 days.
    assert row_text(html, visit_url(visit_of(world.a1, "M1"))).endswith("window opens 2026-09-02 in 1 day")
    assert row_text(html, visit_url(visit_of(world.a21, "M1"))).endswith("window opens 2026-09-12 in 11 days")


def test_a_visit_on_the_last_day_of_its_window_says_so(client, world, clock):
    clock.move_to(dt.datetime(2026, 9, 7, 9, 0, tzinfo=dt.UTC))
    client.force_login(world.coord_a)
    html, _ = home(client)
    assert row_text(html, visit_url(visit_of(world.a2, "M1"))).endswith("2026-09-07 last day")


def test_open_queries_are_listed_only_when_there_are_some(client, world):
    client.force_login(world.coord_a)
    query = query_services.query_raise(
        target=visit_of(world.a1, "BL"), field="", text="Was the visit done elsewhere?", actor=monitor_of(world)
    )
    html, page = home(client)
    assert f"/admin/quality/query/{query.pk}/change/" in {href for href, _ in page.section_links("queries")}
    Query.objects.filter(patient__site__in=[world.site_a, world.site_a2]).update(state=qc.QueryState.CLOSED)
    html, page = home(client)
    assert 'id="queries"' not in html
    assert "No open query." not in html


def test_worklist_shows_the_data_quality_dashboard_of_the_users_sites(client, world):
    client.force_login(world.coord_a)
    html, page = home(client)
    assert page.headings["quality"] == "Data quality at your sites"
    table = html[html.index('id="quality-dashboard"') : html.index("</table>", html.index('id="quality-dashboard"'))]
    rows = cells(table)
    live = {
        site: Query.objects.filter(patient__site__code=site, state__in=(qc.QueryState.OPEN, qc.QueryState.ANSWERED))
        for site in ("WLA", "WLA2")
    }
    # site, study, complete, in progress, overdue, verified, signatures pending, open queries, by age (3)
    study = world.study.code
    assert rows == [
        ["WLA", study, "2", "0", "2", "0.0% (0)", "2", str(live["WLA"].count()), str(live["WLA"].count()), "0", "0"],
        ["WLA2", study, "0", "0", "2", "—", "0", str(live["WLA2"].count()), str(live["WLA2"].count()), "0", "0"],
    ]
    assert "WLB" not in table


def test_open_queries_are_counted_by_age(client, world, clock):
    Query.objects.update(state=qc.QueryState.CLOSED)  # whatever the edit checks opened
    monitor = monitor_of(world)
    for code, text, age in [("BL", "Old question", 40), ("D7", "Month question", 10), ("M1", "New question", 0)]:
        query = query_services.query_raise(target=visit_of(world.a1, code), field="", text=text, actor=monitor)
        Query.objects.filter(pk=query.pk).update(created_at=NOW - dt.timedelta(days=age))
    row = next(r for r in dashboard(user=world.coord_a) if r["site"].code == "WLA")
    assert row["queries_by_age"] == [1, 1, 1]
    assert row["open_queries"] == 3
    other = next(r for r in dashboard(user=world.coord_a) if r["site"].code == "WLA2")
    assert other["queries_by_age"] == [0, 0, 0]


def test_the_header_has_no_view_site_link(client, world):
    client.force_login(world.coord_a)
    html, _ = home(client)
    assert "View site" not in html


def test_the_days_and_the_dashboard_read_in_chinese(client, world):
    client.force_login(world.coord_a)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    html, page = home(client)
    text = " ".join(page.text.split())
    assert "WLA 今天：2026-09-01（Asia/Shanghai）" in text
    assert row_text(html, visit_url(visit_of(world.a1, "BL"))).endswith("逾期 22 天")
    assert row_text(html, visit_url(visit_of(world.a2, "M1"))).endswith("还剩 6 天")
    assert row_text(html, visit_url(visit_of(world.a1, "M1"))).endswith("1 天后")
    assert page.headings["quality"] == "您所在中心的数据质量"
    for english in ("days late", "days left", "Today at", "under 7 days", "over 30 days"):
        assert english not in text, english


def test_the_expedited_reports_section_links_to_every_event_with_a_report_pending(client, world, monkeypatch):
    from followup import selectors
    from followup.models import AdverseEvent

    monkeypatch.setattr(selectors, "WORKLIST_ROWS", 1)
    client.force_login(world.coord_a)
    html, page = home(client)
    text = " ".join(page.text.split())
    # Three reports of two events at the coordinator's sites: WL-A-002's initial and complete, WL-A2-001's.
    assert "Expedited safety reports (3)" in text
    assert "The first 1 of 3." in text
    link = "/admin/followup/adverseevent/?report_pending=yes"
    assert f'href="{link}"' in html
    response = client.get(link)
    assert response.status_code == 200
    listed = [ae.patient.subject_code for ae in response.context["cl"].result_list]
    pending = AdverseEvent.objects.filter(
        patient__site__in=[world.site_a, world.site_a2], initial_report_due__isnull=False
    )
    assert sorted(listed) == sorted(ae.patient.subject_code for ae in pending) == ["WL-A-002", "WL-A2-001"]
    # Most urgent first: the report due on 08-25 (7 days late) before the one due on 09-04.
    assert listed == ["WL-A2-001", "WL-A-002"]
    # Once its reports are submitted, an event leaves the list.
    late = pending.get(patient__subject_code="WL-A2-001")
    AdverseEvent.objects.filter(pk=late.pk).update(
        initial_report_submitted_on=dt.date(2026, 8, 30), complete_report_submitted_on=dt.date(2026, 8, 31)
    )
    listed = [ae.patient.subject_code for ae in client.get(link).context["cl"].result_list]
    assert listed == ["WL-A-002"]
