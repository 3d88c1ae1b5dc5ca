"""After saving a visit the coordinator is back on the worklist; "Complete and open the next overdue visit"
opens the overdue visit of their sites whose window closed first. The patients are those of
tests/followup/test_workspace_pages.py (today 2026-09-01 at every site)."""

from __future__ import annotations

import pytest

from followup.constants import VisitOutcome
from tests.followup import test_workspace_pages as pages
from tests.followup.test_workspace_pages import visit_of, visit_url

pytestmark = pytest.mark.django_db

# The fixtures of the worklist's world, shared with test_workspace_pages.py.
clock = pages.clock
world = pages.world

RESULTS_TABLE = {"results-TOTAL_FORMS": "0", "results-INITIAL_FORMS": "0"}


def save(client, visit, actual_date: str, button: str):
    data = {"actual_date": actual_date, "deviation_reason": "", "reason": "", **RESULTS_TABLE, button: "1"}
    return client.post(visit_url(visit), data)


def test_the_visit_page_offers_to_complete_and_open_the_next_overdue_visit(client, world):
    client.force_login(world.coord_a)
    html = client.get(visit_url(visit_of(world.a1, "BL"))).content.decode()
    buttons = html[html.index('<div class="submit-row">') :]
    assert 'name="_complete_next"' in buttons
    assert buttons.index('name="_save"') < buttons.index('name="_complete_next"')


def test_saving_returns_to_the_worklist(client, world):
    client.force_login(world.coord_a)
    response = save(client, visit_of(world.a1, "BL"), "2026-08-09", "_complete")
    assert response.status_code == 302 and response.url == "/admin/"
    assert visit_of(world.a1, "BL").outcome == VisitOutcome.COMPLETED


def test_complete_and_next_opens_the_overdue_visit_whose_window_closed_first(client, world):
    client.force_login(world.coord_a)
    # Overdue: WL-A-001 BL (closed 08-10), WL-A-001 D7 (08-19), WL-A2-001 BL (08-20), WL-A2-001 D7 (08-29).
    response = save(client, visit_of(world.a1, "BL"), "2026-08-09", "_complete_next")
    assert visit_of(world.a1, "BL").outcome == VisitOutcome.COMPLETED
    assert response.status_code == 302 and response.url == visit_url(visit_of(world.a1, "D7"))
    response = save(client, visit_of(world.a1, "D7"), "2026-08-18", "_complete_next")
    assert response.url == visit_url(visit_of(world.a21, "BL"))


def test_complete_and_next_with_nothing_else_overdue_returns_to_the_worklist(client, world):
    # WL-B-SECRET's site has nothing overdue; the overdue visits of site WLA are not this coordinator's.
    client.force_login(world.coord_b)
    response = save(client, visit_of(world.b1, "M1"), "2026-08-31", "_complete_next")
    assert visit_of(world.b1, "M1").outcome == VisitOutcome.COMPLETED
    assert response.status_code == 302 and response.url == "/admin/"
    assert "No other visit is overdue." in client.get("/admin/").content.decode()
