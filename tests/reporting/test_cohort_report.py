"""The cohort report end to end through the services, on the small cohort worked out by hand in
`hand_cohort.py` (the statistics helpers are in `test_report_statistics.py`), and who sees what."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math

import numpy as np
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient
from scipy import stats

from followup.services import visit_record
from registry.api_keys import api_key_issue
from registry.models import Site
from reporting.charts import charts
from reporting.cohort import CohortFilter, cohort_report, rate
from tests.factories import (
    DAY_ZERO,
    DIAGNOSIS,
    make_clinical,
    make_lot,
    make_patient,
    make_site,
    make_study,
    make_transplant,
    make_user,
)
from tests.reporting.hand_cohort import (
    A4_DEATH,
    BL,
    CSV_HEADER,
    M3,
    M6,
    PROT,
    SLEDAI,
    STUDY,
    D,
    admin_url,
    p3,
    page_text,
    r2,
    record,
    report_a,
    time_point,
)

pytestmark = pytest.mark.django_db


def test_baseline_table_by_hand(cohort):
    report = report_a(cohort)
    assert report["n_patients"] == 4
    table = report["baseline"]
    assert table["n"] == 4

    # SLEDAI-2K 12, 16, 10, 14: mean 52/4 = 13; deviations -1, 3, -3, 1 -> squares 20 -> SD sqrt(20/3) = 2.582;
    # sorted 10, 12, 14, 16: median 13, Q1 10 + 0.75 * 2 = 11.5, Q3 14 + 0.25 * 2 = 14.5.
    assert table["SLEDAI2K"] == {
        "n": 4,
        "mean": 13.0,
        "sd": r2(math.sqrt(20 / 3)),
        "median": 13.0,
        "q1": 11.5,
        "q3": 14.5,
    }
    assert r2(math.sqrt(20 / 3)) == 2.58

    # PROT24H 1.2, 3.0, 0.4, 2.0: mean 6.6/4 = 1.65; deviations -0.45, 1.35, -1.25, 0.35 ->
    # 0.2025 + 1.8225 + 1.5625 + 0.1225 = 3.71 -> SD sqrt(3.71/3) = 1.112; sorted 0.4, 1.2, 2.0, 3.0:
    # median 1.6, Q1 0.4 + 0.75 * 0.8 = 1.0, Q3 2.0 + 0.25 * 1.0 = 2.25.
    assert table["PROT24H"] == {"n": 4, "mean": 1.65, "sd": 1.11, "median": 1.6, "q1": 1.0, "q3": 2.25}
    assert r2(math.sqrt(3.71 / 3)) == 1.11

    # Prednisone 20, 30, 25, 40: mean 115/4 = 28.75; deviations -8.75, 1.25, -3.75, 11.25 ->
    # 76.5625 + 1.5625 + 14.0625 + 126.5625 = 218.75 -> SD sqrt(218.75/3) = 8.539.
    assert table["PRED"]["n"] == 4
    assert table["PRED"]["mean"] == 28.75
    assert table["PRED"]["sd"] == r2(math.sqrt(218.75 / 3)) == 8.54

    # Ages at day 0 (2025 - birth year): 35, 40, 30, 45 -> mean 37.5, SD sqrt((6.25+6.25+56.25+56.25)/3) = 6.455.
    assert table["age_years"]["mean"] == 37.5
    assert table["age_years"]["sd"] == r2(math.sqrt(125 / 3)) == 6.45
    assert table["female"] == {"numerator": 3, "denominator": 4, "percent": 75.0}
    years = round((DAY_ZERO - DIAGNOSIS).days / 365.25, 2)  # 2102 days / 365.25 = 5.75 years, the same for everyone
    assert table["disease_duration_years"] == {
        "n": 4,
        "mean": years,
        "sd": 0.0,
        "median": years,
        "q1": years,
        "q3": years,
    }
    # Not recorded in this cohort.
    assert table["ALB"]["n"] == 0
    assert table["ALB"]["mean"] is None


def test_time_points_and_paired_change_by_hand(cohort):
    report = report_a(cohort)
    days = {e["time_point"]: e["day"] for e in report["time_points"]}
    assert days == {"BL": 0, "M3": 91, "M6": 182}

    bl = time_point(report, "BL", "SLEDAI2K")
    assert (bl["n"], bl["mean"], bl["sd"]) == (4, 13.0, 2.58)
    assert "change_from_baseline" not in bl

    # M3 SLEDAI-2K 2, 8, 10, 12: mean 32/4 = 8; deviations -6, 0, 2, 4 -> 56 -> SD sqrt(56/3) = 4.320;
    # sorted: median (8 + 10)/2 = 9, Q1 2 + 0.75 * 6 = 6.5, Q3 10 + 0.25 * 2 = 10.5.
    m3 = time_point(report, "M3", "SLEDAI2K")
    assert {k: m3[k] for k in ("day", "n", "mean", "sd", "median", "q1", "q3")} == {
        "day": 91,
        "n": 4,
        "mean": 8.0,
        "sd": r2(math.sqrt(56 / 3)),
        "median": 9.0,
        "q1": 6.5,
        "q3": 10.5,
    }
    assert r2(math.sqrt(56 / 3)) == 4.32

    # Change M3 - BL: 2-12, 8-16, 10-10, 12-14 = -10, -8, 0, -2: mean -20/4 = -5; deviations -5, -3, 5, 3 ->
    # 68 -> SD sqrt(68/3) = 4.761; t = mean / (SD / sqrt(n)) = -5 / (4.761 / 2) = -2.100 on 3 df.
    before, after = np.array(SLEDAI["BL"], dtype=float), np.array(SLEDAI["M3"], dtype=float)
    diff = [-10, -8, 0, -2]
    assert list(after - before) == diff
    sd = math.sqrt(68 / 3)
    t = -5 / (sd / math.sqrt(4))
    assert stats.ttest_rel(after, before).statistic == pytest.approx(t)
    p_t = 2 * stats.t.sf(abs(t), df=3)
    assert stats.ttest_rel(after, before).pvalue == pytest.approx(p_t)
    p_w = stats.wilcoxon(after, before).pvalue
    assert m3["change_from_baseline"] == {
        "n_pairs": 4,
        "mean_change": -5.0,
        "sd_change": r2(sd),
        "t_test_p": p3(p_t),
        "wilcoxon_p": p3(p_w),
    }
    assert (r2(sd), round(t, 3)) == (4.76, -2.1)

    # M3 PROT24H 0.3, 1.2, 0.4, 2.5: mean 4.4/4 = 1.1. Change -0.9, -1.8, 0, 0.5: mean -2.2/4 = -0.55;
    # deviations -0.35, -1.25, 0.55, 1.05 -> 0.1225 + 1.5625 + 0.3025 + 1.1025 = 3.09 -> SD sqrt(1.03) = 1.015.
    prot = time_point(report, "M3", "PROT24H")
    assert (prot["n"], prot["mean"], prot["median"]) == (4, 1.1, 0.8)
    change = prot["change_from_baseline"]
    assert (change["n_pairs"], change["mean_change"], change["sd_change"]) == (4, -0.55, r2(math.sqrt(1.03)))
    pb, pa = np.array(PROT["BL"]), np.array(PROT["M3"])
    assert change["t_test_p"] == p3(stats.ttest_rel(pa, pb).pvalue)
    assert change["wilcoxon_p"] == p3(stats.wilcoxon(pa, pb).pvalue)

    # M3 prednisone 7.5, 15, 20, 30: mean 72.5/4 = 18.125 -> 18.12 or 18.13 depending on binary rounding;
    # the paired change -12.5, -15, -5, -10 has mean -42.5/4 = -10.625.
    pred = time_point(report, "M3", "PRED")
    assert pred["n"] == 4
    assert pred["mean"] == pytest.approx(18.125, abs=0.006)
    assert pred["change_from_baseline"]["mean_change"] == pytest.approx(-10.625, abs=0.006)

    # M6 (A-04 died): SLEDAI-2K 9, 4, 2: mean 5; deviations 4, -1, -3 -> 26 -> SD sqrt(13) = 3.606.
    # Pairs: 9-12, 4-16, 2-10 = -3, -12, -8: mean -23/3 = -7.67; SD sqrt((4.667^2 + 4.333^2 + 0.333^2)/2) = 4.51.
    m6 = time_point(report, "M6", "SLEDAI2K")
    assert (m6["n"], m6["mean"], m6["sd"], m6["median"]) == (3, 5.0, r2(math.sqrt(13)), 4.0)
    d6 = np.array([-3, -12, -8], dtype=float)
    m6_change = m6["change_from_baseline"]
    assert m6_change["n_pairs"] == 3
    assert m6_change["mean_change"] == r2(-23 / 3) == -7.67
    assert m6_change["sd_change"] == r2(float(np.sqrt(((d6 - d6.mean()) ** 2).sum() / 2))) == 4.51
    b6, a6 = np.array([12, 16, 10], dtype=float), np.array(SLEDAI["M6"], dtype=float)
    t6 = (-23 / 3) / (math.sqrt(((d6 - d6.mean()) ** 2).sum() / 2) / math.sqrt(3))
    assert stats.ttest_rel(a6, b6).statistic == pytest.approx(t6)
    assert m6_change["t_test_p"] == p3(2 * stats.t.sf(abs(t6), df=2))
    # Wilcoxon on 3 pairs all negative: exact two-sided p = 2 / 2^3 = 0.25.
    assert m6_change["wilcoxon_p"] == p3(stats.wilcoxon(a6, b6).pvalue) == 0.25

    prot6 = time_point(report, "M6", "PROT24H")
    assert (prot6["n"], prot6["mean"]) == (3, r2(1.6 / 3))  # 0.8 + 0.6 + 0.2 = 1.6 -> 0.53


def test_response_rates_by_hand(cohort):
    """Outcome definitions (docs/clinical-rules.md), default thresholds, worked per patient:

    M3  A-01 SLEDAI 2 <= 3, PRED 7.5 <= 10: complete; fall 10 -> SRI-4; PROT 1.2 -> 0.3: no eGFR so not
             complete renal, fall 75% to < 3: partial renal.
        A-02 SLEDAI 8 <= 8, fall 8: partial; SRI-4; PROT 3.0 -> 1.2 (fall 60%): partial renal.
        A-03 SLEDAI 10: none; fall 0: no SRI-4; baseline PROT 0.4 < 0.5: renal not applicable.
        A-04 SLEDAI 12: none; fall 2: no SRI-4; PROT 2.0 -> 2.5: no renal response.
        -> SRI-4 2/4, CR 1/4, PR 1/4, any 2/4, renal CR 0/3, renal PR 2/3, flare 0/4.
    M6  A-01 SLEDAI 9 > 8: none; fall 3: no SRI-4; 2 -> 9 is a rise of 7 >= 3: flare (9 <= 12, PRED 15/60 kg
             = 0.25 mg/kg): mild/moderate, after the M3 remission: relapse. PROT 0.8: fall 33%: none.
        A-02 SLEDAI 4: partial; SRI-4; PROT 0.6 (fall 80%, not < 0.5): partial renal.
        A-03 SLEDAI 2, PRED 5: complete; fall 8: SRI-4; renal not applicable.
        -> SRI-4 2/3, CR 1/3, PR 1/3, any 2/3, renal CR 0/2, renal PR 1/2, flare 1/3.
    Responders (a remission at any visit): A-01, A-02, A-03; relapsed: A-01 -> 1/3.
    """
    responses = report_a(cohort)["responses"]
    by_point = {row["time_point"]: row for row in responses["by_time_point"]}
    assert list(by_point) == ["M3", "M6"]
    assert by_point["M3"] == {
        "time_point": "M3",
        "sri4": rate(2, 4),
        "complete_remission": rate(1, 4),
        "partial_remission": rate(1, 4),
        "any_remission": rate(2, 4),
        "complete_renal_response": rate(0, 3),
        "partial_renal_response": rate(2, 3),
        "flare": rate(0, 4),
    }
    assert by_point["M6"] == {
        "time_point": "M6",
        "sri4": rate(2, 3),
        "complete_remission": rate(1, 3),
        "partial_remission": rate(1, 3),
        "any_remission": rate(2, 3),
        "complete_renal_response": rate(0, 2),
        "partial_renal_response": rate(1, 2),
        "flare": rate(1, 3),
    }
    assert by_point["M3"]["any_remission"]["percent"] == 50.0
    assert by_point["M6"]["sri4"]["percent"] == 66.7
    assert responses["relapse_among_responders"] == {"numerator": 1, "denominator": 3, "percent": 33.3}


def test_survival_by_hand(cohort):
    """Day 0 is 2025-03-03 for everyone.

    Overall: A-04 died 2025-07-15 = day 134 (28 + 30 + 31 + 30 + 15 days); A-01, A-02, A-03 last seen at M6,
    day 182, alive (censored). S = 1 until day 134, then 1 - 1/4 = 0.75, unchanged at 182.
    Relapse-free: A-01 relapsed at M6 (day 182), A-04 died at day 134; A-02, A-03 censored at 182.
    S(134) = 3/4; at 182, 3 at risk and 1 event: 0.75 * (1 - 1/3) = 0.5.
    """
    assert (A4_DEATH - DAY_ZERO).days == 134
    assert (M6 - DAY_ZERO).days == 182
    surv = report_a(cohort)["survival"]
    overall, rfs = surv["overall"], surv["relapse_free"]
    assert (overall["n"], overall["events"]) == (4, 1)
    assert [(p["day"], p["survival"]) for p in overall["curve"]] == [(0, 1.0), (134, 0.75), (182, 0.75)]
    assert overall["at_risk"] == [
        {"day": 0, "at_risk": 4},
        {"day": 91, "at_risk": 4},
        {"day": 182, "at_risk": 3},
        {"day": 365, "at_risk": 0},
        {"day": 730, "at_risk": 0},
        {"day": 1095, "at_risk": 0},
    ]
    assert overall["survival_at_day"][182] == 0.75

    assert (rfs["n"], rfs["events"]) == (4, 2)
    assert [(p["day"], p["survival"]) for p in rfs["curve"]] == [(0, 1.0), (134, 0.75), (182, round(0.75 * 2 / 3, 4))]
    assert rfs["survival_at_day"][182] == 0.5
    assert [p["at_risk"] for p in rfs["at_risk"]] == [4, 4, 3, 0, 0, 0]


def test_comparison_by_cell_source_by_hand(cohort):
    comparison = report_a(cohort)["comparison"]
    assert comparison["by"] == "cell_source"
    groups = comparison["groups"]
    assert set(groups) == {"umbilical_cord", "bone_marrow"}
    uc, bm = groups["umbilical_cord"], groups["bone_marrow"]
    # UC: A-01 12, A-02 16 -> mean 14, SD sqrt(((12-14)^2 + (16-14)^2)/1) = sqrt(8) = 2.83.
    assert (uc["n"], uc["deaths"]) == (2, 0)
    assert uc["baseline_sledai"] == {
        "n": 2,
        "mean": 14.0,
        "sd": r2(math.sqrt(8)),
        "median": 14.0,
        "q1": 13.0,
        "q3": 15.0,
    }
    # BM: A-03 10, A-04 14 -> mean 12, SD 2.83; A-04 died.
    assert (bm["n"], bm["deaths"]) == (2, 1)
    assert bm["baseline_sledai"] == {
        "n": 2,
        "mean": 12.0,
        "sd": r2(math.sqrt(8)),
        "median": 12.0,
        "q1": 11.0,
        "q3": 13.0,
    }
    # Nobody has reached M12.
    for group in (uc, bm):
        assert group["m12_sledai_change"]["n"] == 0
        assert group["m12_remission"] == {"numerator": 0, "denominator": 0, "percent": None}
    # Log-rank by hand: one death, day 134, when 4 are at risk (2 BM); expected BM deaths E = 2 * 1/4 = 0.5,
    # variance V = n1 n2 d (n - d) / (n^2 (n - 1)) = 2*2*1*3 / (16*3) = 0.25; chi2 = (1 - 0.5)^2 / 0.25 = 1.
    chi2 = (1 - 0.5) ** 2 / 0.25
    assert comparison["tests"]["overall_survival_logrank_p"] == p3(stats.chi2.sf(chi2, df=1)) == 0.317
    assert "m12_sledai_change_mann_whitney_p" not in comparison["tests"]
    assert "m12_remission_fisher_p" not in comparison["tests"]


def test_comparison_single_versus_double_infusion(cohort):
    report = report_a(cohort, compare="infusions")
    comparison = report["comparison"]
    assert comparison["by"] == "infusions"
    groups = comparison["groups"]
    assert set(groups) == {"single", "double"}
    # Single: A-01 12, A-03 10, A-04 14 -> mean 12, SD 2; double: A-02 16.
    assert groups["single"]["n"] == 3
    assert groups["single"]["deaths"] == 1
    assert groups["single"]["baseline_sledai"]["mean"] == 12.0
    assert groups["single"]["baseline_sledai"]["sd"] == 2.0
    assert groups["double"]["n"] == 1
    assert groups["double"]["deaths"] == 0
    assert groups["double"]["baseline_sledai"] == {
        "n": 1,
        "mean": 16.0,
        "sd": None,
        "median": 16.0,
        "q1": 16.0,
        "q3": 16.0,
    }
    assert report["filter"]["compare"] == "infusions"


@pytest.mark.parametrize(
    ("flt", "subjects"),
    [
        ({}, ["A-01", "A-02", "A-03", "A-04"]),
        ({"site_codes": ["RPA"]}, ["A-01", "A-02", "A-03", "A-04"]),
        ({"site_codes": ["RPB"]}, []),  # another site's code never opens its patients
        ({"cell_source": "umbilical_cord"}, ["A-01", "A-02"]),
        ({"cell_source": "bone_marrow"}, ["A-03", "A-04"]),
        ({"cell_source": "adipose"}, []),
        ({"infusions": "single"}, ["A-01", "A-03", "A-04"]),
        ({"infusions": "double"}, ["A-02"]),
        ({"enrolled_from": dt.date(2025, 1, 20)}, ["A-03", "A-04"]),
        ({"enrolled_to": dt.date(2025, 1, 20)}, ["A-01", "A-02"]),
        ({"enrolled_from": dt.date(2025, 1, 15), "enrolled_to": dt.date(2025, 1, 15)}, ["A-01", "A-02"]),
        ({"cell_source": "umbilical_cord", "infusions": "single"}, ["A-01"]),
    ],
)
def test_filters_narrow_the_cohort(cohort, flt, subjects):
    report = report_a(cohort, **flt)
    assert report["n_patients"] == len(subjects)
    assert report["baseline"]["n"] == len(subjects)
    sledai = {"A-01": 12, "A-02": 16, "A-03": 10, "A-04": 14}
    values = [sledai[s] for s in subjects]
    assert report["baseline"]["SLEDAI2K"]["n"] == len(values)
    assert report["baseline"]["SLEDAI2K"]["mean"] == (r2(sum(values) / len(values)) if values else None)
    assert report["survival"]["overall"]["events"] == (1 if "A-04" in subjects else 0)


def test_single_infusion_filter_rates_by_hand(cohort):
    # at M3: A-01 complete; none -> any remission 1/3.
    report = report_a(cohort, infusions="single")
    m3 = next(row for row in report["responses"]["by_time_point"] if row["time_point"] == "M3")
    assert m3["any_remission"] == rate(1, 3)
    assert m3["complete_remission"] == rate(1, 3)
    assert time_point(report, "M3", "SLEDAI2K")["mean"] == r2((2 + 10 + 12) / 3)  # 8.0
    # Responders: A-01 (complete at M3), A-03 (complete at M6); relapsed: A-01.
    assert report["responses"]["relapse_among_responders"] == rate(1, 2)


# Scoping -----------------------------------------------------------------------------------------------


def test_a_report_for_site_a_never_counts_site_b(cohort):
    a = report_a(cohort)
    assert a["n_patients"] == 4
    # Adverse events at A: 3 events in 2 patients (B-01's pneumonia is not one of them).
    ae = a["adverse_events"]
    assert ae["total"] == {"events": 3, "patients": 2}
    assert ae["serious"] == {"events": 1, "patients": 1}
    assert ae["by_category"] == [
        {"value": "Cytopenia", "events": 1, "patients": 1},
        {"value": "Infection", "events": 1, "patients": 1},
        {"value": "Other", "events": 1, "patients": 1},
    ]
    assert ae["by_grade"] == [
        {"value": 1, "events": 1, "patients": 1},
        {"value": 2, "events": 1, "patients": 1},
        {"value": 3, "events": 1, "patients": 1},
    ]
    assert ae["by_relatedness"] == [
        {"value": "Unlikely", "events": 2, "patients": 2},
        {"value": "Unrelated", "events": 1, "patients": 1},
    ]
    # B-01's death and values stay out.
    assert a["survival"]["overall"]["events"] == 1
    assert time_point(a, "BL", "SLEDAI2K")["n"] == 4

    b = cohort_report(study=cohort.study, site_ids=[cohort.site_b.pk])
    assert b["n_patients"] == 1
    assert b["adverse_events"]["total"] == {"events": 1, "patients": 1}
    assert b["baseline"]["SLEDAI2K"]["mean"] == 20.0  # vasculitis 8 + seizure 8 + arthritis 4

    both = cohort_report(study=cohort.study, site_ids=[cohort.site_a.pk, cohort.site_b.pk])
    assert both["n_patients"] == 5
    assert both["adverse_events"]["total"] == {"events": 4, "patients": 3}
    # The other study has nobody, whoever asks.
    assert cohort_report(study=cohort.other_study, site_ids=[cohort.site_a.pk])["n_patients"] == 0


def test_admin_report_for_a_coordinator_of_a(client, cohort):
    client.force_login(make_user("report_coord_a", cohort.site_a))
    response = client.get(admin_url(cohort.study), {"format": "json"})
    assert response.status_code == 200
    data = response.json()
    assert data["n_patients"] == 4
    assert data["adverse_events"]["total"] == {"events": 3, "patients": 2}
    # Naming site B in the filter does not open its patients.
    response = client.get(admin_url(cohort.study), {"format": "json", "site": "RPB"})
    assert response.status_code == 200
    assert response.json()["n_patients"] == 0
    response = client.get(admin_url(cohort.study), {"format": "json", "infusions": "double"})
    assert response.json()["n_patients"] == 1

    page = client.get(admin_url(cohort.study))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Table 1" in html
    assert "<svg" in html
    assert "B-01" not in html


def test_admin_report_for_a_coordinator_of_b_counts_only_b(client, cohort):
    client.force_login(make_user("report_coord_b", cohort.site_b))
    response = client.get(admin_url(cohort.study), {"format": "json"})
    assert response.status_code == 200
    assert response.json()["n_patients"] == 1


def test_admin_report_refused_to_a_site_outside_the_study(client, cohort):
    client.force_login(make_user("report_coord_c", cohort.site_c))
    for params in ({}, {"format": "json"}, {"format": "csv"}):
        response = client.get(admin_url(cohort.study), params)
        assert response.status_code in (403, 404)
        assert b"n_patients" not in response.content
    # Their own study opens.
    response = client.get(admin_url(cohort.other_study), {"format": "json"})
    assert response.status_code == 200
    assert response.json()["n_patients"] == 0


def test_admin_bad_filter_shows_an_error(client, cohort):
    client.force_login(make_user("report_coord_a2", cohort.site_a))
    response = client.get(admin_url(cohort.study), {"cell_source": "xyz"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "errorlist" in html
    assert "cell_source" in html
    assert "umbilical_cord" in html  # the message names the accepted values
    assert "Table 1" not in html
    # Asking for JSON with a bad filter does not give a report.
    response = client.get(admin_url(cohort.study), {"cell_source": "xyz", "format": "json"})
    assert response.get("Content-Type", "").startswith("text/html")
    assert "errorlist" in response.content.decode()


def test_admin_csv_parses(client, cohort):
    client.force_login(make_user("report_coord_a3", cohort.site_a))
    response = client.get(admin_url(cohort.study), {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"cohort-report-{STUDY}.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == CSV_HEADER
    assert all(len(row) == 6 for row in rows)
    by_key = {tuple(row[:5]): row[5] for row in rows[1:]}
    assert by_key[("baseline", "", "BL", "n", "n")] == "4"
    assert float(by_key[("baseline", "", "BL", "SLEDAI2K", "mean")]) == 13.0
    assert float(by_key[("baseline", "", "BL", "SLEDAI2K", "sd")]) == 2.58
    assert float(by_key[("time_point", "", "M3", "SLEDAI2K", "mean")]) == 8.0
    assert float(by_key[("change_from_baseline", "", "M3", "SLEDAI2K", "mean_change")]) == -5.0
    assert by_key[("response", "", "M3", "any_remission", "numerator")] == "2"
    assert by_key[("response", "", "M3", "any_remission", "denominator")] == "4"
    assert by_key[("survival", "", "day 182", "overall_survival", "at_risk")] == "3"
    assert float(by_key[("survival", "", "day 182", "relapse_free_survival", "survival")]) == 0.5
    assert by_key[("adverse_events", "", "", "by_category:Infection", "events")] == "1"
    # An empty statistic is an empty cell.
    assert by_key[("baseline", "", "BL", "ALB", "mean")] == ""


def api(raw: str) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    return client


def test_api_report_counts_only_the_keys_site(cohort):
    _, raw_a = api_key_issue(site=cohort.site_a, name="RPA reports")
    _, raw_b = api_key_issue(site=cohort.site_b, name="RPB reports")
    _, raw_c = api_key_issue(site=cohort.site_c, name="RPC reports")
    url = f"/api/v1/reports/{STUDY}/"

    response = api(raw_a).get(url)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["n_patients"] == 4
    assert data["adverse_events"]["total"] == {"events": 3, "patients": 2}
    assert data["baseline"]["SLEDAI2K"]["mean"] == 13.0
    # A site filter cannot widen (or move) the key's scope.
    assert api(raw_a).get(url, {"site": "RPB"}).json()["n_patients"] == 4
    assert api(raw_a).get(url, {"cell_source": "bone_marrow"}).json()["n_patients"] == 2
    assert api(raw_a).get(url, {"infusions": "double"}).json()["n_patients"] == 1

    assert api(raw_b).get(url).json()["n_patients"] == 1

    response = api(raw_c).get(url)
    assert response.status_code in (403, 404)
    assert "n_patients" not in response.json()


def test_api_bad_filter_is_a_400_problem(cohort):
    _, raw = api_key_issue(site=cohort.site_a, name="RPA reports")
    response = api(raw).get(f"/api/v1/reports/{STUDY}/", {"cell_source": "xyz"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 400
    assert body["type"].endswith("/validation")
    assert [e["field"] for e in body["errors"]] == ["cell_source"]
    response = api(raw).get(f"/api/v1/reports/{STUDY}/", {"enrolled_from": "2025-13-40"})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["enrolled_from"]


# The command and the charts ----------------------------------------------------------------------------


def test_command_writes_json(cohort, tmp_path):
    out = tmp_path / "report.json"
    call_command("cohort_report", STUDY, format="json", output=str(out))
    data = json.loads(out.read_text(encoding="utf-8"))
    everyone = cohort_report(study=cohort.study, site_ids=list(Site.objects.values_list("pk", flat=True)))
    assert data["n_patients"] == everyone["n_patients"] == 5
    assert data["baseline"] == json.loads(json.dumps(everyone["baseline"]))

    out_a = tmp_path / "report-a.json"
    call_command("cohort_report", STUDY, format="json", output=str(out_a), site=["RPA"], compare="infusions")
    data_a = json.loads(out_a.read_text(encoding="utf-8"))
    assert data_a["n_patients"] == report_a(cohort)["n_patients"] == 4
    assert set(data_a["comparison"]["groups"]) == {"single", "double"}

    out_csv = tmp_path / "report.csv"
    call_command("cohort_report", STUDY, format="csv", output=str(out_csv), site=["RPA"])
    rows = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert rows[0] == CSV_HEADER


def test_command_writes_html(cohort, tmp_path):
    out = tmp_path / "report.html"
    call_command("cohort_report", STUDY, format="html", output=str(out), site=["RPA"])
    html = out.read_text(encoding="utf-8")
    assert "Table 1" in html
    assert "<svg" in html


def test_command_refuses_a_bad_filter_and_an_unknown_study(cohort, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="cell_source"):
        call_command("cohort_report", STUDY, format="json", cell_source="xyz", output=str(tmp_path / "x.json"))
    with pytest.raises(CommandError, match="NO-SUCH"):
        call_command("cohort_report", "NO-SUCH", format="json", output=str(tmp_path / "y.json"))


def test_admin_report_of_a_study_with_little_data_shows_no_none(client, frozen_now):
    clinical = make_clinical()
    client.force_login(make_user("report_little", clinical.site))
    figures_missing = client.get(admin_url(clinical.study))
    assert figures_missing.status_code == 200
    text = page_text(figures_missing.content.decode())
    assert "Table 1" in text
    assert "None" not in text, text[text.index("None") - 200 : text.index("None") + 50]
    assert "—" in text  # a missing figure is shown as a dash

    visit_record(visit=clinical.visit("BL"), actual_date=BL, sledai_items=["rash"], results={"C3": "0.6"})
    text = page_text(client.get(admin_url(clinical.study)).content.decode())
    assert "None" not in text, text[text.index("None") - 200 : text.index("None") + 50]


@pytest.mark.slow
def test_report_of_the_cohort_shows_no_none(client, cohort):
    client.force_login(make_user("report_coord_none", cohort.site_a))
    for params in ({}, {"compare": "infusions"}, {"cell_source": "adipose"}):
        text = page_text(client.get(admin_url(cohort.study), params).content.decode())
        assert "Table 1" in text, params
        assert "None" not in text, (params, text[text.index("None") - 200 : text.index("None") + 50])


def test_charts_are_svg(cohort):
    figures = charts(study=cohort.study, site_ids=[cohort.site_a.pk])
    assert set(figures) == {"SLEDAI2K", "PROT24H", "EGFR", "C3", "survival"}
    for name, svg in figures.items():
        assert isinstance(svg, str), name
        assert svg.startswith("<svg"), name
        assert svg.rstrip().endswith("</svg>"), name
    figures = charts(study=cohort.study, site_ids=[cohort.site_a.pk], flt=CohortFilter(compare="infusions"))
    assert all(svg.startswith("<svg") for svg in figures.values())


def test_flare_denominator_counts_only_visits_where_a_flare_is_assessable(frozen_now):
    """A flare needs an earlier SLEDAI-2K (docs/clinical-rules.md); the report's note says denominators are the
    visits where the outcome is assessable.

    F-01: BL SLEDAI 6 (arthritis 4 + rash 2), M3 SLEDAI 10 (arthritis 4 + rash 2 + alopecia 2 + low
          complement 2): a rise of 4 to <= 12 -> mild/moderate flare; 10 > 8: no remission; SRI-4 no.
    F-02: BL without SLEDAI-2K, M3 SLEDAI 6: no earlier total -> flare and SRI-4 not assessable; remission
          "none" (6 > 3 and no baseline for a partial one) is assessable.
    -> M3 flare 1/1 (F-02 has no flare assessment), SRI-4 0/1, any remission 0/2.
    """
    from followup.models import ComputedOutcome

    site = make_site("RPF")
    study = make_study(site, code="RPT-FLARE")
    lot = make_lot(study, site, lot_number="UC-RPF-1")
    f1 = make_patient(study, site, subject_code="F-01")
    f2 = make_patient(study, site, subject_code="F-02")
    make_transplant(f1, lot)
    make_transplant(f2, lot)
    record(f1, "BL", BL, ["arthritis", "rash"], "1.0", "20")
    record(f1, "M3", M3, ["arthritis", "rash", "alopecia", "low_complement"], "1.0", "20")
    visit_record(visit=f2.visits.get(code="BL"), actual_date=BL, results={"PROT24H": D("1.0"), "PRED": D("20")})
    record(f2, "M3", M3, ["arthritis", "rash"], "1.0", "20")

    f2_m3 = ComputedOutcome.objects.get(visit__patient=f2, visit__code="M3")
    assert (f2_m3.flare, f2_m3.sri4, f2_m3.remission) == ("", None, "none")
    f1_m3 = ComputedOutcome.objects.get(visit__patient=f1, visit__code="M3")
    assert (f1_m3.flare, f1_m3.sri4, f1_m3.remission) == ("mild_moderate", False, "none")

    report = cohort_report(study=study, site_ids=[site.pk])
    (m3,) = report["responses"]["by_time_point"]
    assert m3["sri4"] == rate(0, 1)
    assert m3["any_remission"] == rate(0, 2)
    assert m3["flare"] == rate(1, 1)


def test_the_report_page_reads_the_patients_results_no_more_often_than_the_report_alone(cohort):
    # The page shows the report and its charts: both are computed from one reading of the cohort's facts.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reporting.rendering import render_html

    site_ids = [cohort.site_a.pk, cohort.site_b.pk]

    def result_reads(compute) -> int:
        with CaptureQueriesContext(connection) as ctx:
            compute()
        return sum('"followup_result"' in q["sql"] for q in ctx.captured_queries)

    alone = result_reads(lambda: cohort_report(study=cohort.study, site_ids=site_ids))
    page = result_reads(lambda: render_html(study=cohort.study, site_ids=site_ids, flt=CohortFilter()))
    assert alone >= 1
    assert page == alone
    # The same figures either way.
    facts_report = cohort_report(study=cohort.study, site_ids=site_ids)
    from reporting.cohort import cohort_facts

    shared = cohort_report(
        study=cohort.study, site_ids=site_ids, facts=cohort_facts(study=cohort.study, site_ids=site_ids)
    )
    for report in (facts_report, shared):
        report.pop("generated_at")
    assert shared == facts_report


def test_reading_the_facts_pauses_the_cyclic_garbage_collector_and_restores_it(cohort, monkeypatch):
    import gc

    from reporting import cohort as cohort_module

    seen = []
    read = cohort_module._read_facts

    def spy(*args):
        seen.append(gc.isenabled())
        return read(*args)

    monkeypatch.setattr(cohort_module, "_read_facts", spy)
    assert gc.isenabled()
    report = cohort_report(study=cohort.study, site_ids=[cohort.site_a.pk])
    assert seen == [False] and gc.isenabled()
    assert report["n_patients"] > 0

    def fails(*args):
        raise RuntimeError("database gone")

    monkeypatch.setattr(cohort_module, "_read_facts", fails)
    with pytest.raises(RuntimeError):
        cohort_report(study=cohort.study, site_ids=[cohort.site_a.pk])
    assert gc.isenabled()
