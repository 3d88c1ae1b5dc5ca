"""The coordinator's pages seen through the web: the worklist at the admin home, the patient page and list,
site scoping of every page, and the sign-in rules (lockout, two-factor, session lifetime, language).

The clock is frozen at NOW, 2026-09-01 09:00 UTC: 17:00 in Shanghai and 10:00 in London, so "today" is
2026-09-01 at every site. With the default template (BL 0 -14/+0, D7 7 ±2, M1 30 ±7, M3 91 ±14) the
worklist patients have, on that day:

    WL-A-001 (site WLA, day 0 2026-08-10): BL and D7 overdue, M1 opens 09-02 (upcoming)
    WL-A-002 (site WLA, day 0 2026-08-01): BL and D7 recorded (platelets 210 then 90: a cytopenia signal),
                                           M1 08-24..09-07 due; a life-threatening SUSAR aware 08-28
                                           (initial report due 09-04, complete report due 09-12)
    WL-A2-001 (site WLA2, day 0 2026-08-20): BL and D7 overdue, M1 opens 09-12 (upcoming); a serious
                                           SUSAR aware 08-10 whose report was due 08-25 (7 days late)
    WL-B-SECRET (site WLB, London, day 0 2026-08-01): recorded as WL-A-002 (a signal, M1 due) and a SUSAR,
                                           none of which a coordinator of WLA and WLA2 may see.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from html.parser import HTMLParser

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from followup import constants as fc
from followup.models import AdverseEvent, SafetySignal, Visit
from followup.safety import safety_sweep
from followup.services import ae_record, visit_record
from patients.constants import INACTIVE_STATUSES
from patients.models import Patient
from registry import constants as rc
from registry.models import CellProduct
from registry.services import membership_grant
from tests.factories import (
    make_lot,
    make_patient,
    make_site,
    make_study,
    make_transplant,
    make_user,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.UTC)
D = dt.date
PASSWORD = "Correct-horse-battery-42"
# The admin home with the worklist: session, user, memberships, language preference, site zones, the
# worklist (sites, visits, adverse events, signals, adverse events to code to MedDRA, open queries), the
# e-mail that failed (one count, shared with the banner), the app list, the data-quality dashboard of the
# user's sites (4), whether the user set up two-factor sign-in (once per request, config/signin.py) and the
# user's memberships (once per request, registry/admin_tools.py `request_memberships`: membership, writing,
# reaching a site, data manager). It must not grow with the patients.
# Each worklist section shows its first rows and counts the rest in SQL (followup/selectors.py): the visits, the
# expedited reports (initial and complete) and the open findings each take one query more than reading them all.
HOME_MAX_QUERIES = 24


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


# Builders ----------------------------------------------------------------------------------------------


def lot_of(study, site, *, lot_number: str, tissue_source: str = rc.TissueSource.UMBILICAL_CORD) -> CellProduct:
    """A released lot of `tissue_source`; a lot not from umbilical cord shares the donor of a cord lot made
    beside it (`<lot_number>-TPL`)."""
    if tissue_source == rc.TissueSource.UMBILICAL_CORD:
        return make_lot(study, site, lot_number=lot_number)
    template = make_lot(study, site, lot_number=f"{lot_number}-TPL")
    return make_lot(study, site, lot_number=lot_number, donor=template.donor, tissue_source=tissue_source)


def infused_patient(study, site, lot, subject_code: str, day_zero: dt.date) -> Patient:
    patient = make_patient(study, site, subject_code=subject_code)
    make_transplant(patient, lot, day=day_zero)
    patient.refresh_from_db()
    return patient


def visit_of(patient, code: str) -> Visit:
    return Visit.objects.get(patient=patient, code=code)


def susar(patient, term: str, *, aware: dt.date, life_threatening: bool) -> AdverseEvent:
    return ae_record(
        patient=patient,
        term=term,
        category=fc.AECategory.OTHER,
        grade=fc.CTCAEGrade.LIFE_THREATENING if life_threatening else fc.CTCAEGrade.SEVERE,
        serious_life_threatening=life_threatening,
        serious_hospitalisation=not life_threatening,
        relatedness=fc.Relatedness.POSSIBLE,
        expected=False,
        onset_date=aware - dt.timedelta(days=1),
        aware_date=aware,
    )


def record_platelet_drop(patient, day_zero: dt.date) -> None:
    """BL and D7 recorded, with SLEDAI-2K items and C3 for the charts; platelets 210 then 90 raise a signal."""
    visit_record(
        visit=visit_of(patient, "BL"),
        actual_date=day_zero,
        sledai_items=["arthritis", "rash"],
        results={"PLT": 210, "C3": "0.6"},
    )
    visit_record(
        visit=visit_of(patient, "D7"),
        actual_date=day_zero + dt.timedelta(days=7),
        sledai_items=["rash"],
        results={"PLT": 90, "C3": "0.8"},
    )


class World:
    pass


@pytest.fixture
def world(clock):
    """The patients of the module docstring, a coordinator of WLA and WLA2, and one of WLB."""
    w = World()
    w.site_a = make_site("WLA")
    w.site_a2 = make_site("WLA2")
    w.site_b = make_site("WLB", time_zone="Europe/London", country="GB")
    w.study = make_study(w.site_a, w.site_a2, w.site_b)
    safety_sweep(now=NOW)  # the study's first safety run, before its data: what is found later is announced
    w.lot_a = make_lot(w.study, w.site_a, lot_number="UC-WL-A")
    w.lot_b = make_lot(w.study, w.site_b, lot_number="UC-WL-B")

    w.a1 = infused_patient(w.study, w.site_a, w.lot_a, "WL-A-001", D(2026, 8, 10))
    w.a2 = infused_patient(w.study, w.site_a, w.lot_a, "WL-A-002", D(2026, 8, 1))
    record_platelet_drop(w.a2, D(2026, 8, 1))
    w.ae_a2 = susar(w.a2, "Anaphylaxis after infusion", aware=D(2026, 8, 28), life_threatening=True)
    w.a21 = infused_patient(w.study, w.site_a2, w.lot_a, "WL-A2-001", D(2026, 8, 20))
    w.ae_a21 = susar(w.a21, "Pneumonia needing admission", aware=D(2026, 8, 10), life_threatening=False)

    w.b1 = infused_patient(w.study, w.site_b, w.lot_b, "WL-B-SECRET", D(2026, 8, 1))
    record_platelet_drop(w.b1, D(2026, 8, 1))
    w.ae_b1 = susar(w.b1, "Secret sepsis", aware=D(2026, 8, 28), life_threatening=True)
    safety_sweep(now=NOW)
    w.signal_a2 = SafetySignal.objects.get(patient=w.a2)
    w.signal_b1 = SafetySignal.objects.get(patient=w.b1)

    w.coord_a = make_user("wl_coord_a", w.site_a)
    membership_grant(user=w.coord_a, site=w.site_a2, role=rc.Role.COORDINATOR)
    w.coord_b = make_user("wl_coord_b", w.site_b)
    return w


# Reading the worklist ----------------------------------------------------------------------------------


class WorklistPage(HTMLParser):
    """The links of div#worklist by section (the id of the h2 above them) and the rows of the per-site table."""

    def __init__(self, html: str):
        super().__init__()
        self.depth = 0
        self.section = "per_site"
        self.links: list[tuple[str, str, str]] = []
        self.per_site: list[list[str]] = []
        self.headings: dict[str, str] = {}
        self.text = ""
        self._a = self._row = self._cell = self._h2 = None
        self.feed(html)
        assert self.depth == 0, "div#worklist is not closed"

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.text += " "
        if not self.depth:
            if tag == "div" and attrs.get("id") == "worklist":
                self.depth = 1
            return
        if tag == "div":
            self.depth += 1
        elif tag == "h2":
            self.section = attrs.get("id") or self.section
            self._h2 = ""
        elif tag == "a":
            self._a = [attrs.get("href", ""), ""]
        elif tag == "tr" and self.section == "per_site":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if not self.depth:
            return
        if tag == "div":
            self.depth -= 1
        elif tag == "h2" and self._h2 is not None:
            self.headings[self.section] = self._h2.strip()
            self._h2 = None
        elif tag == "a" and self._a is not None:
            self.links.append((self.section, self._a[0], " ".join(self._a[1].split())))
            self._a = None
        elif tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.per_site.append(self._row)
            self._row = None

    def handle_data(self, data):
        if not self.depth:
            return
        self.text += data
        if self._a is not None:
            self._a[1] += data
        if self._h2 is not None:
            self._h2 += data
        if self._cell is not None:
            self._cell += data

    def section_links(self, section: str) -> list[tuple[str, str]]:
        return [(href, text) for s, href, text in self.links if s == section]


def home(client) -> tuple[str, WorklistPage]:
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    return html, WorklistPage(html)


def visit_url(visit) -> str:
    return f"/admin/followup/visit/{visit.pk}/change/"


def ae_url(ae) -> str:
    return f"/admin/followup/adverseevent/{ae.pk}/change/"


def signal_url(signal) -> str:
    return f"/admin/followup/safetysignal/{signal.pk}/change/"


def patient_url(patient) -> str:
    return f"/admin/patients/patient/{patient.pk}/change/"


# The worklist ------------------------------------------------------------------------------------------


def test_worklist_lists_the_coordinators_visits_reports_and_signals_by_section(client, world):
    client.force_login(world.coord_a)
    html, page = home(client)
    assert page.section_links("overdue") == [
        (visit_url(visit_of(world.a1, "BL")), "WL-A-001 – BL"),  # by the end of the window
        (visit_url(visit_of(world.a1, "D7")), "WL-A-001 – D7"),
        (visit_url(visit_of(world.a21, "BL")), "WL-A2-001 – BL"),
        (visit_url(visit_of(world.a21, "D7")), "WL-A2-001 – D7"),
    ]
    assert page.section_links("due") == [(visit_url(visit_of(world.a2, "M1")), "WL-A-002 – M1")]
    assert page.section_links("upcoming") == [
        (visit_url(visit_of(world.a1, "M1")), "WL-A-001 – M1"),
        (visit_url(visit_of(world.a21, "M1")), "WL-A2-001 – M1"),
    ]
    assert page.section_links("reports") == [
        (ae_url(world.ae_a21), "WL-A2-001 – Pneumonia needing admission"),
        (ae_url(world.ae_a2), "WL-A-002 – Anaphylaxis after infusion"),
        (ae_url(world.ae_a2), "WL-A-002 – Anaphylaxis after infusion"),
    ]
    assert page.section_links("signals") == [(signal_url(world.signal_a2), "WL-A-002")]
    assert page.headings["overdue"].endswith("(4)")
    assert page.headings["due"].endswith("(1)")
    assert page.headings["upcoming"].endswith("(2)")
    assert page.headings["reports"].endswith("(3)")
    assert page.headings["signals"].endswith("(1)")
    # The reporting clock: the pneumonia report (due 08-25) is 7 days late; the anaphylaxis reports
    # (initial due 09-04, complete 09-12) have 3 and 11 days left.
    text = " ".join(page.text.split())
    assert "initial report due 2026-08-25 7 days late" in text
    assert "initial report due 2026-09-04 3 days left" in text
    assert "complete report due 2026-09-12 11 days left" in text
    assert "window closed 2026-08-10" in text  # WL-A-001 BL
    assert "window opens 2026-09-02" in text  # WL-A-001 M1


def test_worklist_counts_per_site_and_shows_nothing_of_another_site(client, world):
    client.force_login(world.coord_a)
    html, page = home(client)
    # site, overdue, due, next 14 days, reports due or late, signals
    assert page.per_site == [
        ["WLA", "0", "2", "1", "1", "2", "1"],
        ["WLA2", "0", "2", "0", "1", "1", "0"],
    ]
    for secret in ("WL-B-SECRET", "Secret sepsis", "WLB"):
        assert secret not in html
    hrefs = {href for _, href, _ in page.links}
    for other in (world.ae_b1, world.signal_b1, *Visit.objects.filter(patient=world.b1)):
        assert not any(href.endswith(f"/{other.pk}/change/") and type(other)._meta.model_name in href for href in hrefs)


def test_worklist_of_the_other_site_shows_only_its_own(client, world):
    client.force_login(world.coord_b)
    html, page = home(client)
    assert page.per_site == [["WLB", "0", "0", "1", "0", "2", "1"]]
    # Query links read "#<query> <subject> – ...".
    assert {text.split(" – ")[0].split(" ")[-1] for _, _, text in page.links} == {"WL-B-SECRET"}
    for secret in ("WL-A-001", "WL-A-002", "WL-A2-001", "Anaphylaxis after infusion"):
        assert secret not in html


def test_worklist_headings_are_not_stretched_by_the_dashboard_style(client, world):
    # Django's dashboard.css gives every heading of a dashboard module table `width: 100%`, which squeezes
    # the per-site headings into one column; the worklist must undo that after loading it.
    client.force_login(world.coord_a)
    html, _ = home(client)
    dashboard = html.index("admin/css/dashboard.css")
    overrides = [
        (match.start(), match.group(1))
        for match in re.finditer(r"<style[^>]*>(.*?)</style>", html, flags=re.S)
        if match.start() > dashboard
    ]
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", " ".join(css for _, css in overrides))
    heading_widths = [body for selectors, body in rules if "#worklist" in selectors and re.search(r"\bth\b", selectors)]
    assert any(re.search(r"width:\s*auto", body) for body in heading_widths), heading_widths
    assert '<div id="worklist"' in html and 'class="site-counts"' in html


def test_every_worklist_link_opens_the_visit_ae_or_signal_page(client, world):
    client.force_login(world.coord_a)
    _, page = home(client)
    assert page.links
    pattern = re.compile(r"^/admin/(?:followup|quality)/(visit|adverseevent|safetysignal|query)/(\d+)/change/$")
    expected_model = {
        "overdue": "visit",
        "due": "visit",
        "upcoming": "visit",
        "reports": "adverseevent",
        "signals": "safetysignal",
        "queries": "query",
    }
    for section, href, text in page.links:
        match = pattern.match(href)
        assert match, f"{section} link {href!r} is not a visit, AE or signal page"
        assert match.group(1) == expected_model[section], (section, href)
        response = client.get(href)
        assert response.status_code == 200, href
        subject_code = text.split(" – ")[0].split(" ")[-1]
        assert subject_code in response.content.decode(), (href, subject_code)


@pytest.mark.parametrize("n_patients", [1, 20])
def test_admin_home_takes_a_fixed_number_of_queries(client, clock, django_assert_max_num_queries, n_patients):
    site = make_site("WLQ")
    study = make_study(site)
    safety_sweep(now=NOW)  # the study's first safety run, before its data
    for number in range(n_patients):
        if number % 10 == 0:  # a lot holds enough cells for ten patients
            lot = make_lot(study, site, lot_number=f"UC-WLQ-{n_patients}-{number}")
        day_zero = D(2026, 8, 1) + dt.timedelta(days=number % 20)
        patient = infused_patient(study, site, lot, f"WLQ-{number:03d}", day_zero)
        record_platelet_drop(patient, day_zero)
        susar(patient, f"Event {number}", aware=D(2026, 8, 28), life_threatening=number % 2 == 0)
    safety_sweep(now=NOW)
    coordinator = make_user("wlq_coord", site)
    client.force_login(coordinator)
    client.get("/admin/")  # warm the per-process caches (content types, translations)
    with django_assert_max_num_queries(HOME_MAX_QUERIES):
        response = client.get("/admin/")
    assert response.status_code == 200
    page = WorklistPage(response.content.decode())
    assert len(page.section_links("signals")) == n_patients
    assert len(page.section_links("reports")) >= n_patients


def test_each_worklist_section_shows_its_first_rows_the_true_total_and_a_link_to_the_rest(client, world, monkeypatch):
    from followup import selectors

    monkeypatch.setattr(selectors, "WORKLIST_ROWS", 3)
    client.force_login(world.coord_a)

    def overdue_page():
        with CaptureQueriesContext(connection) as ctx:
            html, page = home(client)
        return html, page, len(ctx.captured_queries)

    home(client)  # warm the per-process caches
    _, page, queries = overdue_page()
    first = page.section_links("overdue")
    # The world's four overdue visits: the first three, most urgent first, and the link to all four.
    assert [text for _, text in first] == [
        "WL-A-001 – BL",
        "WL-A-001 – D7",
        "WL-A2-001 – BL",
        "See them all in the list",
    ]
    assert page.headings["overdue"].endswith("(4)")

    # Twelve more patients with three overdue visits each, at both sites; their windows closed earlier.
    for number in range(12):
        site = world.site_a if number % 2 else world.site_a2
        infused_patient(world.study, site, world.lot_a, f"WL-X-{number:03d}", D(2026, 7, 1) + dt.timedelta(days=number))
    overdue = Visit.objects.for_user(world.coord_a).in_state(fc.VisitState.OVERDUE, now=NOW)
    overdue = overdue.exclude(patient__status__in=INACTIVE_STATUSES)
    assert overdue.count() == 40  # BL, D7 and M1 of each new patient
    html, page, more_queries = overdue_page()
    assert more_queries == queries  # the same queries,
    links = page.section_links("overdue")
    expected = list(overdue.order_by("window_end", "patient__subject_code", "pk")[:3])
    # ... the same number of rows (and the link to the rest), the most urgent first.
    assert links[:3] == [(visit_url(v), f"{v.patient.subject_code} – {v.code}") for v in expected]
    assert links[3] == ("/admin/followup/visit/?worklist=overdue", "See them all in the list")
    assert len(links) == 4
    assert page.headings["overdue"].endswith("(40)")  # the true total
    assert "The first 3 of 40." in " ".join(page.text.split())
    by_site = {row[0]: row for row in page.per_site}
    assert int(by_site["WLA"][2]) + int(by_site["WLA2"][2]) == 40
    # The link lists every overdue visit of the coordinator's sites, as the worklist orders them.
    response = client.get(links[3][0])
    assert response.status_code == 200
    listed = [v.pk for v in response.context["cl"].result_list]
    assert listed == list(overdue.order_by("window_end", "patient__subject_code", "pk").values_list("pk", flat=True))
    # The sections that fit show no link to the rest.
    assert len(page.section_links("due")) == 1 and page.headings["due"].endswith("(1)")


def test_the_visits_lists_worklist_filter_selects_each_sections_visits(client, world):
    client.force_login(world.coord_a)
    _, page = home(client)
    for section in ("overdue", "due", "upcoming"):
        response = client.get(f"/admin/followup/visit/?worklist={section}")
        assert response.status_code == 200
        listed = [visit_url(v) for v in response.context["cl"].result_list]
        assert listed == [href for href, _ in page.section_links(section)], section


@pytest.mark.parametrize("path", ["/admin/", "/admin/followup/visit/", "/admin/followup/result/"])
def test_an_admin_page_reads_the_users_memberships_once(client, world, path):
    # Whether the user may see each app, write, reach an object's site, or is a data manager (the two-factor
    # events, the partner keys) is answered from one read of the user's memberships per request.
    client.force_login(world.coord_a)
    client.get(path)  # warm the per-process caches
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    first_from = [re.search(r'\bFROM\s+"?(\w+)"?', q["sql"]) for q in ctx.captured_queries]
    reads = [
        q["sql"]
        for q, m in zip(ctx.captured_queries, first_from, strict=True)
        if m and m.group(1) == "registry_membership"
    ]
    assert len(reads) == 1, reads
    data_manager_joins = [
        q["sql"] for q in ctx.captured_queries if 'FROM "registry_site" INNER JOIN "registry_membership"' in q["sql"]
    ]
    assert data_manager_joins == []


# The patient page --------------------------------------------------------------------------------------


def test_patient_page_shows_summary_timeline_and_charts(client, world):
    client.force_login(world.coord_a)
    response = client.get(patient_url(world.a2))
    assert response.status_code == 200
    html = response.content.decode()
    summary = html[html.index("field-summary") : html.index("field-timeline")]
    assert "WLA (Asia/Shanghai)" in summary
    assert "2026-08-01" in summary  # day 0
    assert "Umbilical cord" in summary
    assert "#1 2026-08-01 10:00 lot UC-WL-A" in summary
    assert f"/admin/patients/patient/{world.a2.pk}/history/" in summary

    timeline = html[html.index("field-timeline") : html.index("field-charts")]
    rows = re.findall(
        r'<tr><td><a href="([^"]+)">(\w+)</a></td><td>[^<]*</td><td>[^<]*</td><td>[^<]*</td><td>(\w[\w ]*)</td>',
        timeline,
    )
    states = {code: state for _, code, state in rows}
    assert states["BL"] == "Completed"
    assert states["D7"] == "Completed"
    assert states["M1"] == "Due"
    assert states["M3"] == "Scheduled"
    assert {href for href, _, _ in rows} == {visit_url(v) for v in Visit.objects.filter(patient=world.a2)}

    charts = html[html.index("field-charts") :]
    svgs = re.findall(r"<svg.*?</svg>", charts, flags=re.S)
    texts = [found for found in (re.findall(r"<!-- (.*?) -->", s) for s in svgs) if set(found) & set(CHART_TITLES)]
    svgs = [s for s in svgs if set(re.findall(r"<!-- (.*?) -->", s)) & set(CHART_TITLES)]
    titles = [next(t for t in found if t in CHART_TITLES) for found in texts]
    # In the catalogue's order: activity, kidney, serology, blood counts; each y-axis names its unit.
    assert titles == ["SLEDAI-2K", "Complement C3", "Platelets"]
    assert [CHART_TITLES[t] in found for t, found in zip(titles, texts, strict=True)] == [True, True, True]
    sledai = svgs[titles.index("SLEDAI-2K")]
    assert data_markers(sledai) == 2  # BL and D7


# Each chart's title and its y-axis label.
CHART_TITLES = {
    "SLEDAI-2K": "points",
    "24-h urine protein": "g/24h",
    "Serum creatinine": "umol/L",
    "eGFR (CKD-EPI 2021)": "mL/min/1.73m2",
    "Complement C3": "g/L",
    "Complement C4": "g/L",
    "Anti-dsDNA": "IU/mL",
    "White cells": "10^9/L",
    "Platelets": "10^9/L",
    "Haemoglobin": "g/L",
}


def test_patient_page_lists_the_patients_adverse_events(client, world):
    client.force_login(world.coord_a)
    html = client.get(patient_url(world.a2)).content.decode()
    assert 'id="adverse_events-group"' in html, "no adverse-event table on the patient page"
    assert "Anaphylaxis after infusion" in html


def test_visit_page_shows_the_recorded_results(client, world):
    client.force_login(world.coord_a)
    html = client.get(visit_url(visit_of(world.a2, "D7"))).content.decode()
    assert 'id="results-group"' in html, "no results table on the visit page"
    inline = html[html.index('id="results-group"') :]
    cells = re.findall(r'<td class="field-(code|shown_value)">\s*<p>(.*?)</p>', inline, flags=re.S)
    assert ("code", "PLT – Platelets") in cells, cells
    assert ("shown_value", "90") in cells, cells


def data_markers(svg: str) -> int:
    """Points drawn on a chart: matplotlib draws each one as a <use> filled with the first line colour."""
    return len(re.findall(r'<use [^>]*style="fill: #1f77b4', svg))


def test_patient_page_before_any_result_has_no_chart(client, world):
    client.force_login(world.coord_a)
    html = client.get(patient_url(world.a1)).content.decode()
    charts = html[html.index("field-charts") :]
    assert "<svg" not in charts.split("</fieldset>")[0]
    assert "Overdue" in html[html.index("field-timeline") : html.index("field-charts")]


# The patient list: filters, search and CSV export --------------------------------------------------------


@pytest.fixture
def cohort(clock):
    """Patients of site LS for the list: cell source, infusions and overdue visits differ."""
    c = World()
    c.site = make_site("LS")
    c.other_site = make_site("LSB")
    c.study = make_study(c.site, c.other_site)
    uc = lot_of(c.study, c.site, lot_number="UC-LOT-LIST-1")
    bm = lot_of(c.study, c.site, lot_number="BM-LOT-LIST-2", tissue_source=rc.TissueSource.BONE_MARROW)
    c.uc_single = infused_patient(c.study, c.site, uc, "LS-UC-01", D(2025, 3, 3))  # visits overdue
    c.bm_double = infused_patient(c.study, c.site, bm, "LS-BM-02", D(2025, 3, 3))
    make_transplant(c.bm_double, bm, day=D(2025, 9, 3))
    c.bm_recent = infused_patient(c.study, c.site, bm, "LS-BM-03", D(2026, 8, 30))
    visit_record(visit=visit_of(c.bm_recent, "BL"), actual_date=D(2026, 8, 30), results={"C3": "0.7"})
    c.not_infused = make_patient(c.study, c.site, subject_code="LS-NONE-04")
    c.elsewhere = infused_patient(c.study, c.other_site, bm, "LS-OTHER-05", D(2025, 3, 3))
    c.coordinator = make_user("ls_coord", c.site)
    return c


def listed(client, query: dict) -> list[str]:
    response = client.get("/admin/patients/patient/", query)
    assert response.status_code == 200
    codes = [p.subject_code for p in response.context["cl"].result_list]
    html = response.content.decode()
    for code in codes:
        assert code in html
    return sorted(codes)


LIST_CASES = {
    "everything of the site": ({}, ["LS-BM-02", "LS-BM-03", "LS-NONE-04", "LS-UC-01"]),
    "bone marrow": ({"cell_source": "bone_marrow"}, ["LS-BM-02", "LS-BM-03"]),
    "umbilical cord": ({"cell_source": "umbilical_cord"}, ["LS-UC-01"]),
    "adipose": ({"cell_source": "adipose"}, []),
    "single": ({"infusions": "single"}, ["LS-BM-03", "LS-UC-01"]),
    "double": ({"infusions": "double"}, ["LS-BM-02"]),
    "not infused": ({"infusions": "none"}, ["LS-NONE-04"]),
    "overdue": ({"overdue": "yes"}, ["LS-BM-02", "LS-UC-01"]),
    "bone marrow and single": ({"cell_source": "bone_marrow", "infusions": "single"}, ["LS-BM-03"]),
    "bone marrow and double": ({"cell_source": "bone_marrow", "infusions": "double"}, ["LS-BM-02"]),
    "bone marrow and overdue": ({"cell_source": "bone_marrow", "overdue": "yes"}, ["LS-BM-02"]),
    "umbilical cord and single": ({"cell_source": "umbilical_cord", "infusions": "single"}, ["LS-UC-01"]),
    "umbilical cord and double": ({"cell_source": "umbilical_cord", "infusions": "double"}, []),
    "bone marrow and not infused": ({"cell_source": "bone_marrow", "infusions": "none"}, []),
    "bone marrow, double and overdue": (
        {"cell_source": "bone_marrow", "infusions": "double", "overdue": "yes"},
        ["LS-BM-02"],
    ),
    "double, searched by lot": ({"infusions": "double", "q": "BM-LOT-LIST-2"}, ["LS-BM-02"]),
    "search subject code prefix": ({"q": "LS-BM"}, ["LS-BM-02", "LS-BM-03"]),
    "search subject code": ({"q": "LS-UC-01"}, ["LS-UC-01"]),
    "search lot number": ({"q": "UC-LOT-LIST-1"}, ["LS-UC-01"]),
    # once each, though LS-BM-02 received the lot twice
    "search lot given twice": ({"q": "BM-LOT-LIST-2"}, ["LS-BM-02", "LS-BM-03"]),
    "search another site's patient": ({"q": "LS-OTHER-05"}, []),
}


@pytest.mark.parametrize("query, expected", list(LIST_CASES.values()), ids=list(LIST_CASES))
def test_patient_list_filters_and_search_narrow_the_list(client, cohort, query, expected):
    client.force_login(cohort.coordinator)
    assert listed(client, query) == expected


def facet_counts(client, query: dict, parameter: str) -> dict[str, int]:
    """The counts the list shows beside the choices of one filter (with facets on), by choice label."""
    response = client.get("/admin/patients/patient/", {**query, "_facets": "1"})
    assert response.status_code == 200
    changelist = response.context["cl"]
    spec = next(spec for spec in changelist.filter_specs if getattr(spec, "parameter_name", None) == parameter)
    counts = {}
    for choice in spec.choices(changelist):
        match = re.fullmatch(r"(.+) \((\d+)\)", str(choice["display"]))
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


FACET_CASES = {
    "infusions among bone marrow": (
        {"cell_source": "bone_marrow"},
        "infusions",
        {"single MSCT": 1, "double MSCT": 1, "not infused yet": 0},
    ),
    "infusions among umbilical cord": (
        {"cell_source": "umbilical_cord"},
        "infusions",
        {"single MSCT": 1, "double MSCT": 0, "not infused yet": 0},
    ),
    "infusions of everyone": ({}, "infusions", {"single MSCT": 2, "double MSCT": 1, "not infused yet": 1}),
    "cell source among double": (
        {"infusions": "double"},
        "cell_source",
        {"Bone marrow": 1, "Umbilical cord": 0, "Adipose tissue": 0},
    ),
    "cell source among single": (
        {"infusions": "single"},
        "cell_source",
        {"Bone marrow": 1, "Umbilical cord": 1, "Adipose tissue": 0},
    ),
}


@pytest.mark.parametrize("query, parameter, expected", list(FACET_CASES.values()), ids=list(FACET_CASES))
def test_patient_list_filter_counts_compose(client, cohort, query, parameter, expected):
    client.force_login(cohort.coordinator)
    counts = facet_counts(client, query, parameter)
    assert {label: counts.get(label) for label in expected} == expected


def test_patient_list_offers_the_filters(client, cohort):
    client.force_login(cohort.coordinator)
    html = client.get("/admin/patients/patient/").content.decode()
    for link in ("?cell_source=bone_marrow", "?infusions=single", "?infusions=double", "?overdue=yes"):
        assert link in html


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="patient.csv"'
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_csv_export_of_the_selected_patients(client, cohort):
    client.force_login(cohort.coordinator)
    selected = [cohort.uc_single.pk, cohort.bm_double.pk, cohort.elsewhere.pk]  # the last is not theirs
    response = client.post(
        "/admin/patients/patient/", {"action": "export_csv_action", "_selected_action": selected, "index": 0}
    )
    rows = read_csv(response)
    assert rows[0] == ["subject_code", "study", "site", "sex", "birth_year", "status", "consent_date"]
    assert sorted(row[0] for row in rows[1:]) == ["LS-BM-02", "LS-UC-01"]
    row = next(r for r in rows if r[0] == "LS-UC-01")
    assert row[2] == str(cohort.site)
    assert row[3] == "Female"
    assert row[4] == "1990"
    assert row[6] == "2025-01-15"


def test_csv_export_of_everything_the_filtered_list_shows(client, cohort):
    client.force_login(cohort.coordinator)
    response = client.post(
        "/admin/patients/patient/?overdue=yes",
        {"action": "export_csv_action", "_selected_action": [cohort.uc_single.pk], "select_across": "1", "index": 0},
    )
    rows = read_csv(response)
    assert sorted(row[0] for row in rows[1:]) == ["LS-BM-02", "LS-UC-01"]


# Site scoping ------------------------------------------------------------------------------------------


def refused(response, *secrets: str) -> bool:
    html = response.content.decode(errors="replace")
    return response.status_code in (302, 403, 404) and not any(secret in html for secret in secrets)


def pages_of_site_a(world) -> dict[str, str]:
    visit = visit_of(world.a2, "D7")
    return {
        "patient": patient_url(world.a2),
        "patient history": f"/admin/patients/patient/{world.a2.pk}/history/",
        "visit": visit_url(visit),
        "visit history": f"/admin/followup/visit/{visit.pk}/history/",
        "adverse event": ae_url(world.ae_a2),
        "adverse event history": f"/admin/followup/adverseevent/{world.ae_a2.pk}/history/",
        "signal": signal_url(world.signal_a2),
        "signal history": f"/admin/followup/safetysignal/{world.signal_a2.pk}/history/",
    }


def test_coordinator_of_another_site_cannot_open_the_patients_pages(client, world):
    client.force_login(world.coord_b)
    for name, url in pages_of_site_a(world).items():
        response = client.get(url)
        assert refused(response, "WL-A-002", "Anaphylaxis after infusion"), (
            f"{name} {url}: status {response.status_code}"
        )
    # ... nor change them.
    response = client.post(
        visit_url(visit_of(world.a2, "M1")), {"actual_date": "2026-08-31", "PLT_value": "150", "_save": "Save"}
    )
    assert response.status_code in (302, 403, 404)
    assert visit_of(world.a2, "M1").actual_date is None


def test_coordinator_of_the_site_opens_the_same_pages(client, world):
    client.force_login(world.coord_a)
    for name, url in pages_of_site_a(world).items():
        response = client.get(url)
        assert response.status_code == 200, f"{name} {url}"
        assert "WL-A-002" in response.content.decode(), name


def test_lot_lookback_shows_only_the_recipients_of_ones_own_sites(client, world):
    lookback = f"/admin/followup/lotlookback/{world.lot_a.pk}/change/"
    client.force_login(world.coord_a)
    html = client.get(lookback).content.decode()
    assert "WL-A-001" in html and "WL-A2-001" in html
    # Site WLB belongs to the study, so it may see the lot, but none of its recipients at WLA.
    client.force_login(world.coord_b)
    response = client.get(lookback)
    assert response.status_code in (200, 302, 403, 404)
    html = response.content.decode()
    for secret in ("WL-A-001", "WL-A-002", "WL-A2-001", "Anaphylaxis after infusion"):
        assert secret not in html


def test_coordinator_of_a_site_outside_the_study_gets_nothing(client, world):
    outsider_site = make_site("WLX")
    make_study(outsider_site)
    outsider = make_user("wl_outsider", outsider_site)
    client.force_login(outsider)
    pages = {**pages_of_site_a(world), "look-back": f"/admin/followup/lotlookback/{world.lot_a.pk}/change/"}
    for name, url in pages.items():
        response = client.get(url)
        assert refused(response, "WL-A-002", "WL-A-001", "UC-WL-A"), f"{name} {url}: status {response.status_code}"
    for url in (
        "/admin/patients/patient/",
        "/admin/followup/visit/",
        "/admin/followup/adverseevent/",
        "/admin/followup/safetysignal/",
        "/admin/followup/lotlookback/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "WL-A-" not in response.content.decode() and "UC-WL-A" not in response.content.decode(), url


def test_lists_of_the_other_site_exclude_site_a(client, world):
    client.force_login(world.coord_b)
    for url in (
        "/admin/patients/patient/",
        "/admin/followup/visit/",
        "/admin/followup/adverseevent/",
        "/admin/followup/safetysignal/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "WL-A-" not in html and "WL-A2-" not in html, url
        assert "WL-B-SECRET" in html, url


def choice_values(form, field: str) -> set:
    return set(form.fields[field].queryset.values_list("pk", flat=True))


def test_foreign_key_choices_exclude_the_other_site(client, world):
    client.force_login(world.coord_b)
    form = client.get("/admin/patients/patient/add/").context["adminform"].form
    assert choice_values(form, "site") == {world.site_b.pk}
    form = client.get("/admin/followup/adverseevent/add/").context["adminform"].form
    assert choice_values(form, "patient") == {world.b1.pk}
    form = client.get("/admin/patients/concomitantmedication/add/").context["adminform"].form
    assert choice_values(form, "patient") == {world.b1.pk}
    form = client.get("/admin/patients/transplantevent/add/").context["adminform"].form
    assert choice_values(form, "patient") == {world.b1.pk}
    # The autocomplete behind the patient fields searches only their own patients.
    response = client.get(
        "/admin/autocomplete/",
        {"app_label": "followup", "model_name": "adverseevent", "field_name": "patient", "term": "WL-"},
    )
    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == [str(world.b1)]


def test_recording_an_ae_for_a_patient_of_another_site_is_refused(client, world):
    client.force_login(world.coord_b)
    before = AdverseEvent.objects.count()
    response = client.post(
        "/admin/followup/adverseevent/add/",
        {
            "patient": world.a2.pk,
            "term": "Injected",
            "category": fc.AECategory.OTHER,
            "onset_date": "2026-08-20",
            "grade": "2",
            "relatedness": fc.Relatedness.UNLIKELY,
            "expected": "on",
            "action_taken": fc.AEAction.NONE,
            "outcome": fc.AEOutcome.UNKNOWN,
            "aware_date": "2026-08-20",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    assert AdverseEvent.objects.count() == before
    assert "errorlist" in response.content.decode()


# Language ----------------------------------------------------------------------------------------------


def test_choosing_chinese_shows_the_chinese_worklist(client, world):
    client.force_login(world.coord_a)
    html, _ = home(client)
    assert "Worklist" in html and "工作清单" not in html
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    html, page = home(client)
    assert "工作清单" in html
    assert "逾期访视" in html  # "Overdue visits"
    assert page.section_links("overdue")  # the same worklist, in Chinese
    assert '<option value="zh-hans" selected>' in html


def test_chinese_home_names_the_models_in_chinese(client, world):
    client.force_login(world.coord_a)
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    html = client.get("/admin/").content.decode()
    names = {}  # the first link to each list is the model's name (then come "add" and "change")
    for url, text in re.findall(r'<a href="/admin/(\w+/\w+)/"[^>]*>([^<]+)</a>', html):
        names.setdefault(url, text.strip())
    assert names["registry/study"] == "研究"  # a model with its own plural: translated
    assert names["patients/patient"] == "患者", names  # models with Django's default plural
    assert names["followup/adverseevent"] == "不良事件", names


def test_language_selector_is_in_the_header(client, world):
    client.force_login(world.coord_a)
    html, _ = home(client)
    assert 'id="language-select"' in html
    assert '<option value="zh-hans">简体中文</option>' in html
    assert 'action="/i18n/setlang/"' in html
