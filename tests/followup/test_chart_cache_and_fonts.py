"""The patient's charts: drawn once per patient, data and language (from the cache after), drawn again when
a result changes; Chinese labels drawn with a font that has their glyphs; the cohort report page kept by
data version."""

from __future__ import annotations

import warnings

import pytest
from django.core.cache import cache
from django.utils import translation

from followup import charts
from followup.services import visit_record
from tests.factories import make_clinical

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinical(frozen_now):
    cache.clear()
    clinical = make_clinical()
    first = clinical.visit("BL")
    visit_record(
        visit=first, actual_date=first.window_start, sledai_items=["rash"], results={"C4": "0.2", "CREAT": "80"}
    )
    return clinical.refresh()


@pytest.fixture
def drawings(monkeypatch):
    """How many times the charts were drawn."""
    drawn = []
    draw = charts.draw_patient_charts

    def counting(data):
        drawn.append(data)
        return draw(data)

    monkeypatch.setattr(charts, "draw_patient_charts", counting)
    return drawn


def test_the_charts_are_drawn_once_and_again_when_the_data_change(clinical, drawings):
    first = charts.patient_charts(patient=clinical.patient)
    assert set(first) == {"SLEDAI2K", "CREAT", "EGFR", "C4"}
    assert charts.patient_charts(patient=clinical.patient) == first
    assert len(drawings) == 1
    d7 = clinical.visit("D7")
    visit_record(visit=d7, actual_date=d7.window_start, results={"C4": "0.3"})
    again = charts.patient_charts(patient=clinical.patient)
    assert len(drawings) == 2
    assert again["C4"] != first["C4"]


def test_the_charts_are_drawn_per_language(clinical, drawings):
    english = charts.patient_charts(patient=clinical.patient)
    with translation.override("zh-hans"):
        chinese = charts.patient_charts(patient=clinical.patient)
    assert len(drawings) == 2
    assert "<!-- 补体 C4 -->" in chinese["C4"]
    assert "<!-- Complement C4 -->" in english["C4"]


def test_each_chart_names_its_unit_on_the_y_axis_and_marks_the_infusion(clinical):
    figures = charts.patient_charts(patient=clinical.patient)
    assert "<!-- g/L -->" in figures["C4"]
    assert "<!-- umol/L -->" in figures["CREAT"]
    assert "<!-- mL/min/1.73m2 -->" in figures["EGFR"]
    assert figures["C4"].count("stroke: #d62728") >= 1  # the infusion's dashed red line (tab:red)


def test_a_chinese_chart_has_every_glyph(clinical):
    """fonts-noto-cjk (or another CJK font) must be installed: .ci/run installs it. matplotlib warns of
    every glyph its fonts lack; none may be missing."""
    assert charts.cjk_font() is not None, "no CJK font found by matplotlib: install fonts-noto-cjk"
    with translation.override("zh-hans"), warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"Glyph \d+ .* missing from font")
        figures = charts.draw_patient_charts(charts.patient_chart_points(patient=clinical.patient))
    assert "距第 0 天的月数" in "".join(figures.values())


def test_the_cohort_report_page_is_computed_again_only_when_the_data_change(clinical, monkeypatch, superuser, client):
    from reporting import rendering

    computed = []
    render = rendering.render_html

    def counting(**kwargs):
        computed.append(kwargs)
        return render(**kwargs)

    monkeypatch.setattr(rendering, "render_html", counting)
    client.force_login(superuser)
    url = f"/admin/reporting/cohortreport/{clinical.study.pk}/change/"
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 200
    assert len(computed) == 1
    version = rendering.data_version()
    d7 = clinical.visit("D7")
    visit_record(visit=d7, actual_date=d7.window_start, results={"C3": "0.9"})
    assert rendering.data_version() != version
    assert client.get(url).status_code == 200
    assert len(computed) == 2
    assert client.get(url + "?compare=infusions").status_code == 200  # another filter, another report
    assert len(computed) == 3
