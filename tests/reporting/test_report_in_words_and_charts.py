"""The cohort report in words (groups, tests and the filter, in English and Chinese; machine formats keep
the codes) and its charts (legends, the time axis of the cohort's and a patient's charts)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import translation

from followup.services import visit_record
from reporting.charts import charts
from reporting.cohort import CohortFilter
from tests.factories import (
    make_clinical,
    make_user,
)
from tests.reporting.hand_cohort import (
    BL,
    admin_url,
    page_text,
)

pytestmark = pytest.mark.django_db


# The report in words -----------------------------------------------------------------------------------


def test_html_report_names_groups_tests_and_the_filter_in_words(client, cohort):
    client.force_login(make_user("report_words", cohort.site_a))
    text = page_text(client.get(admin_url(cohort.study)).content.decode())
    assert "Filter: all transplanted patients. Groups compared by cell source." in text
    assert "Comparison by cell source" in text
    start = text.index("Comparison by")
    comparison = text[start : text.index("Adverse events", start)]
    assert "Umbilical cord 2" in comparison and "Bone marrow 2" in comparison
    assert "Overall survival, log-rank test: p = 0.317." in comparison
    assert "Age (years) 4" in text and "Disease duration (years) 4" in text
    assert "Overall survival 4" in text and "Relapse-free survival 4" in text
    for code in ("cell_source", "umbilical_cord", "bone_marrow", "compare=", "age_years", "relapse_free", "_p:"):
        assert code not in text, code
    report = text[text.index(cohort.study.title) :]
    assert " ." not in report, report[max(report.index(" .") - 200, 0) : report.index(" .") + 20]


def test_html_report_of_a_filtered_comparison_by_infusions_in_words(client, cohort):
    client.force_login(make_user("report_words_2", cohort.site_a))
    params = {"compare": "infusions", "cell_source": "umbilical_cord", "site": "RPA", "enrolled_from": "2025-01-01"}
    text = page_text(client.get(admin_url(cohort.study), params).content.decode())
    assert (
        "Filter: site RPA; cell source Umbilical cord; enrolled from 2025-01-01. "
        "Groups compared by single vs double infusion."
    ) in text
    start = text.index("Comparison by")
    comparison = text[start : text.index("Adverse events", start)]
    assert comparison.startswith("Comparison by single vs double infusion")
    assert "single infusion 1" in comparison and "double infusion 1" in comparison
    assert "umbilical_cord" not in text and "infusions=" not in text


@pytest.fixture
def language_restored():
    """The language of this thread as it was: a request in Chinese activates Chinese here too."""
    language = translation.get_language()
    yield
    translation.activate(language)


def test_html_report_in_chinese_shows_its_headings_tables_and_filter_form_in_chinese(client, cohort, language_restored):
    client.force_login(make_user("report_zh", cohort.site_a))
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    html = client.get(admin_url(cohort.study)).content.decode()
    text = page_text(html)
    for chinese in (
        "表 1. 基线特征",
        "疗效指标随时间变化",
        "各随访时间点结果",
        "缓解率",
        "完全缓解",
        "部分缓解",
        "肾脏完全缓解",
        "生存分析（Kaplan–Meier）",
        "不良事件",
        "均值 ± 标准差",
        "随访时间点",
        "您的中心共有 4 例已移植患者。",
        "比较依据",
        "您的所有中心",
        "脐带",  # a cell source, in the filter form and the comparison
        "感染",  # an adverse event category
    ):
        assert chinese in text, chinese
    for english in (
        "Record the visit",
        "Baseline characteristics",
        "Outcomes over time",
        "Results at each time point",
        "Response rates",
        "Kaplan–Meier)",
        "Adverse events",
        "transplanted patients",
        "mean ± SD",
        "time point",
        "complete remission",
        "Relapse among responders",
        "Enrolled from",
        "Compare by",
        "all your sites",
        "Umbilical cord",
        "Infection",
    ):
        assert english not in text, english
    assert 'value="更新"' in html


def test_machine_formats_do_not_change_with_the_language(client, cohort, language_restored):
    client.force_login(make_user("report_zh_codes", cohort.site_a))
    english_csv = client.get(admin_url(cohort.study), {"format": "csv"}).content.decode()
    english = client.get(admin_url(cohort.study), {"format": "json"}).json()
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/admin/"})
    chinese = client.get(admin_url(cohort.study), {"format": "json"}).json()
    for data in (english, chinese):
        data.pop("generated_at", None)
    assert chinese == english
    assert chinese["responses"]["note"].startswith("SRI-4 is simplified")
    chinese_csv = client.get(admin_url(cohort.study), {"format": "csv"}).content.decode()
    assert [r[:1] for r in csv.reader(io.StringIO(chinese_csv))] == [
        r[:1] for r in csv.reader(io.StringIO(english_csv))
    ]


def test_filter_sentence_of_each_narrowing():
    from reporting.rendering import filter_sentence

    assert filter_sentence(CohortFilter(infusions="double", enrolled_to=dt.date(2025, 1, 20))) == (
        "Filter: double infusion; enrolled up to 2025-01-20. Groups compared by cell source."
    )
    assert filter_sentence(CohortFilter(site_codes=["RPA", "RPB"], compare="infusions")) == (
        "Filter: sites RPA, RPB. Groups compared by single vs double infusion."
    )


def test_machine_formats_keep_the_codes(client, cohort):
    client.force_login(make_user("report_codes", cohort.site_a))
    data = client.get(admin_url(cohort.study), {"format": "json"}).json()
    assert data["filter"]["compare"] == "cell_source"
    assert data["comparison"]["by"] == "cell_source"
    assert set(data["comparison"]["groups"]) == {"umbilical_cord", "bone_marrow"}
    assert set(data["comparison"]["tests"]) == {"overall_survival_logrank_p"}
    assert set(data["survival"]) == {"overall", "relapse_free"}
    rows = list(csv.reader(io.StringIO(client.get(admin_url(cohort.study), {"format": "csv"}).content.decode())))
    groups = {row[1] for row in rows[1:] if row[0] == "comparison" and row[1]}
    assert groups == {"umbilical_cord", "bone_marrow"}


def test_chart_legends_name_the_groups(cohort):
    svg = charts(study=cohort.study, site_ids=[cohort.site_a.pk])["SLEDAI2K"]
    assert "<!-- Umbilical cord -->" in svg and "<!-- Bone marrow -->" in svg and "<!-- cell source -->" in svg
    assert "umbilical_cord" not in svg and "cell_source" not in svg
    svg = charts(study=cohort.study, site_ids=[cohort.site_a.pk], flt=CohortFilter(compare="infusions"))["SLEDAI2K"]
    assert "<!-- single infusion -->" in svg and "<!-- double infusion -->" in svg


# The charts' time axis ---------------------------------------------------------------------------------


@pytest.fixture
def x_ranges(monkeypatch):
    """The x-axis range of every chart drawn, by its y-axis label or title (the cache emptied first: a
    patient's charts drawn before would not be drawn again)."""
    from django.core.cache import cache

    from followup import charts as patient_figures
    from reporting import charts as cohort_figures

    drawn = {}
    to_svg = patient_figures._svg

    def capture(fig, plt):
        ax = fig.axes[0]
        drawn[ax.get_title() or ax.get_ylabel() or "survival"] = ax.get_xlim()
        return to_svg(fig, plt)

    monkeypatch.setattr(patient_figures, "_svg", capture)
    monkeypatch.setattr(cohort_figures, "_svg", capture)
    cache.clear()
    return drawn


def test_cohort_charts_of_a_single_time_point_span_day_0_to_month_3(frozen_now, x_ranges):
    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=BL, sledai_items=["rash"], results={"C3": "0.6"})
    figures = charts(study=clinical.study, site_ids=[clinical.site.pk])
    assert set(figures) == {"SLEDAI2K", "PROT24H", "EGFR", "C3", "survival"}
    assert set(x_ranges) == {"SLEDAI-2K", "24-h proteinuria (g/24h)", "eGFR (mL/min/1.73 m²)", "C3 (g/L)", "survival"}
    for name, (low, high) in x_ranges.items():
        assert low <= 0 < 3 <= high <= 3.5, (name, low, high)
    for svg in figures.values():
        assert "0.04" not in svg


def test_cohort_charts_reach_the_last_time_point(cohort, x_ranges):
    charts(study=cohort.study, site_ids=[cohort.site_a.pk])
    low, high = x_ranges["SLEDAI-2K"]
    assert low <= 0 and 182 / 30.44 <= high <= 182 / 30.44 * 1.1


def test_patient_charts_of_a_single_visit_span_day_0_to_month_3(frozen_now, x_ranges):
    from followup.charts import patient_charts

    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=BL, sledai_items=["rash"], results={"C3": "0.6"})
    figures = patient_charts(patient=clinical.patient)
    assert set(figures) == {"SLEDAI2K", "C3"}
    assert set(x_ranges) == {"SLEDAI-2K", "Complement C3"}
    for name, (low, high) in x_ranges.items():
        assert low <= 0 < 3 <= high <= 3.5, (name, low, high)
