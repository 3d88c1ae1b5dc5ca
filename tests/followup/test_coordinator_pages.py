"""The coordinator's pages at two data sizes: the same number of queries whatever the size, lists over big
tables that never count every row, and the caches of the patient's charts and the cohort report page.

Workload 8 of `make bench` (docs/performance.md) times the same pages against bare pages of their rows."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from followup.models import Result, Visit
from patients.models import Patient
from registry.constants import Role
from registry.models import Site, Study
from registry.services import membership_grant
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

TODAY = dt.date(2026, 9, 1)
NOW = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)


def seed(patients: int, study: str) -> Study:
    call_command(
        "seed_synthetic", patients=patients, seed=5, today=TODAY, sites=2, study=study, quiet=True, stdout=StringIO()
    )
    return Study.objects.get(code=study)


def users():
    """A data manager of every site and the coordinator of the first site."""
    sites = list(Site.objects.order_by("code"))
    manager = make_user("dm_all")
    for site in sites:
        membership_grant(user=manager, site=site, role=Role.DATA_MANAGER)
    return {"all_sites": manager, "one_site": make_user("coord_one", sites[0], role=Role.COORDINATOR)}


def page_paths(study: Study, patient: Patient) -> dict[str, str]:
    return {
        "worklist": "/admin/",
        "patient": f"/admin/patients/patient/{patient.pk}/change/",
        "visits": "/admin/followup/visit/",
        "results": "/admin/followup/result/",
        "report": f"/admin/reporting/cohortreport/{study.pk}/change/",
    }


def counts(client, paths: dict[str, str]) -> dict[str, int]:
    out = {}
    for name, path in paths.items():
        assert client.get(path).status_code == 200, path  # warm: the session, the caches
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path)
        assert response.status_code == 200, path
        out[name] = len(ctx.captured_queries)
    return out


# Queries per page, after a first load (the patient's charts and the cohort report then come from the cache).
# Every admin page reads whether the user set up two-factor sign-in and the user's memberships (once per request
# each: whether the user belongs to a site, may write, reaches an object's site or is a data manager, which
# decides the two-factor events and partner keys in the menu, registry/admin_tools.py `request_memberships`);
# the worklist also shows the data-quality dashboard of the user's sites (4). Each worklist section shows its
# first rows with its total counted in SQL (followup/selectors.py): one query more than reading all the rows for
# each of the visits, the expedited reports (initial and complete) and the open findings. The data manager of
# every site and the coordinator of one now take the same number: the data manager's menu asked four times
# whether the user manages partner keys, and each page asked apart whether the user may read and may write.
# The patient page reads the patient once (the data quality notes and the form share it), its lock once, the
# user's roles for the data quality links from the memberships already read, and the infusions once for the
# summary and once for the charts (23, from 32).
# The report page reads the user's sites once (for the filter's list and the report's scope; it read them twice
# before reporting/report_page.py) and, when the report is cached, does not count the patients.
# The side menu comes from the cache after the first load (registry/templatetags/admin_menu.py): the user's
# Django permissions and groups are then not read (2 queries fewer on each page with the menu: all but the worklist).
# The patient page's visit timeline takes each visit's state from today at the patient's site, read with the
# patient (it read every site's time zone for the SQL state before: 20).
PINNED = {
    "all_sites": {"worklist": 24, "patient": 17, "visits": 13, "results": 10, "report": 11},
    "one_site": {"worklist": 24, "patient": 17, "visits": 13, "results": 10, "report": 11},
}


def test_each_page_takes_the_same_queries_at_two_data_sizes(client):
    cache.clear()
    with time_machine.travel(NOW, tick=False):
        study = seed(12, "SIZE-A")
        people = users()
        patient = Patient.objects.filter(study=study, site=Site.objects.order_by("code").first()).order_by("pk")[0]
        paths = page_paths(study, patient)
        small = {}
        for who, user in people.items():
            client.force_login(user)
            small[who] = counts(client, paths)
        seed(60, "SIZE-B")  # five times the patients, at the same sites
        assert Visit.objects.count() > 5 * Visit.objects.filter(patient__study=study).count()
        large = {}
        for who, user in people.items():
            client.force_login(user)
            large[who] = counts(client, paths)
    assert small == large
    assert small == PINNED


def test_the_results_list_counts_only_as_far_as_the_pages_it_can_link(client, monkeypatch):
    from registry.admin_tools import BoundedCountPaginator

    monkeypatch.setattr(BoundedCountPaginator, "PAGES_AHEAD", 1)
    with time_machine.travel(NOW, tick=False):
        seed(12, "SIZE-A")
        people = users()
    total = Result.objects.count()
    assert total > 3 * 100
    client.force_login(people["all_sites"])
    with CaptureQueriesContext(connection) as ctx:
        html = client.get("/admin/followup/result/").content.decode()
    counting = [
        q["sql"] for q in ctx.captured_queries if "COUNT(" in q["sql"].upper() and "followup_result" in q["sql"]
    ]
    assert len(counting) == 1 and "LIMIT 201" in counting[0], counting  # page 1 and one page ahead, plus one
    assert "more than 200 results" in html
    assert f"{total} results" not in html
    # The last page counted links the next one: a coordinator can walk on, one page at a time.
    html = client.get("/admin/followup/result/?p=3").content.decode()
    assert "more than 400 results" in html
    # A list that ends before the bound says its true count.
    from django.db.models import Count

    by_code = dict(Result.objects.values_list("code").annotate(n=Count("pk")).order_by())
    code, few = min(((c, n) for c, n in by_code.items() if n > 1), key=lambda item: item[1])
    assert few < 200
    html = client.get(f"/admin/followup/result/?code={code}").content.decode()
    assert f"{few} results" in html and "more than" not in html
