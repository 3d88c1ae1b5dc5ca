"""The cohort report's statistics on small lists: summaries, paired change against the formula and SciPy,
rates, and Kaplan-Meier against the textbook 6-MP example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reporting.cohort import AT_RISK_DAYS, _km, paired_change, rate, summarise
from tests.reporting.hand_cohort import (
    D,
    p3,
    r2,
)

pytestmark = pytest.mark.django_db


# Statistics helpers on small lists ---------------------------------------------------------------------


def test_summarise_mean_sample_sd_median_and_linear_quartiles():
    values = [1, 2, 4, 7, 11, 16]
    n = 6
    mean = (1 + 2 + 4 + 7 + 11 + 16) / n  # 41 / 6 = 6.8333
    squares = (
        (1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2 + (7 - mean) ** 2 + (11 - mean) ** 2 + (16 - mean) ** 2
    )  # 447 - 41**2 / 6 = 166.8333
    sd = math.sqrt(squares / (n - 1))  # sqrt(33.3667) = 5.7764
    # numpy's default (linear) percentile: position p * (n - 1) in the sorted list, interpolated.
    q1 = 2 + 0.25 * (4 - 2)  # position 1.25 -> 2.5
    median = 4 + 0.5 * (7 - 4)  # position 2.5 -> 5.5
    q3 = 7 + 0.75 * (11 - 7)  # position 3.75 -> 10.0
    assert summarise(values) == {"n": 6, "mean": 6.83, "sd": 5.78, "median": 5.5, "q1": 2.5, "q3": 10.0}
    assert (r2(mean), r2(sd), median, q1, q3) == (6.83, 5.78, 5.5, 2.5, 10.0)
    # The order of the input and Decimal values do not matter.
    assert summarise([D(16), D(1), D(11), D(2), D(7), D(4)]) == summarise(values)


def test_summarise_odd_count_one_value_and_none():
    # [3, 5, 9]: mean 17/3 = 5.67, SD sqrt(((3-5.667)^2 + (5-5.667)^2 + (9-5.667)^2) / 2) = sqrt(9.333) = 3.06;
    # quartiles at positions 0.5 and 1.5: 3 + 0.5*2 = 4, 5 + 0.5*4 = 7.
    mean = 17 / 3
    sd = math.sqrt(((3 - mean) ** 2 + (5 - mean) ** 2 + (9 - mean) ** 2) / 2)
    assert summarise([9, 3, 5]) == {"n": 3, "mean": r2(mean), "sd": r2(sd), "median": 5.0, "q1": 4.0, "q3": 7.0}
    assert summarise([42]) == {"n": 1, "mean": 42.0, "sd": None, "median": 42.0, "q1": 42.0, "q3": 42.0}
    assert summarise([]) == {"n": 0, "mean": None, "sd": None, "median": None, "q1": None, "q3": None}


def test_paired_change_against_the_formula_and_scipy():
    baseline = {1: 10, 2: 12, 3: 9, 4: 15, 5: 8, 6: 20}  # patient 6 has no later value
    later = {1: 6, 2: 10, 3: 10, 4: 9, 5: 5, 7: 3}  # patient 7 has no baseline
    ids = [1, 2, 3, 4, 5]
    diff = [6 - 10, 10 - 12, 10 - 9, 9 - 15, 5 - 8]  # [-4, -2, 1, -6, -3]
    n = 5
    mean = sum(diff) / n  # -14 / 5 = -2.8
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1))  # sqrt(26.8 / 4) = 2.5884
    t = mean / (sd / math.sqrt(n))  # -2.8 / 1.15758 = -2.41884
    p_t = 2 * stats.t.sf(abs(t), df=n - 1)
    # Wilcoxon signed-rank by hand: |d| ranks 1 (+1), 2 (-2), 3 (-3), 4 (-4), 5 (-6); W+ = 1.
    # Exact two-sided p: 2 * P(W+ <= 1) = 2 * (subsets {} and {1}) / 2^5 = 4 / 32 = 0.125.
    p_w = 2 * 2 / 2**5

    before = np.array([baseline[i] for i in ids], dtype=float)
    after = np.array([later[i] for i in ids], dtype=float)
    scipy_t = stats.ttest_rel(after, before)
    scipy_w = stats.wilcoxon(after, before)
    assert scipy_t.statistic == pytest.approx(t)
    assert scipy_t.pvalue == pytest.approx(p_t)
    assert scipy_w.pvalue == pytest.approx(p_w)

    out = paired_change(baseline, later)
    assert out == {
        "n_pairs": 5,
        "mean_change": -2.8,
        "sd_change": 2.59,
        "t_test_p": p3(p_t),
        "wilcoxon_p": p3(p_w),
    }
    assert (r2(sd), round(t, 4)) == (2.59, -2.4188)


def test_paired_change_degenerate_cases():
    # No change at all: the tests are undefined and left out.
    assert paired_change({1: 5, 2: 6}, {1: 5, 2: 6}) == {
        "n_pairs": 2,
        "mean_change": 0.0,
        "sd_change": 0.0,
        "t_test_p": None,
        "wilcoxon_p": None,
    }
    # One pair: a mean change, no SD, no test.
    assert paired_change({1: 5, 2: 6}, {1: 2}) == {
        "n_pairs": 1,
        "mean_change": -3.0,
        "sd_change": None,
        "t_test_p": None,
        "wilcoxon_p": None,
    }
    assert paired_change({1: 5}, {2: 2}) == {
        "n_pairs": 0,
        "mean_change": None,
        "sd_change": None,
        "t_test_p": None,
        "wilcoxon_p": None,
    }


def test_paired_change_t_test_is_undefined_when_every_change_is_the_same():
    # Changes -2 and -2: mean -2, SD 0, so t = mean / (SD / sqrt(n)) = -2 / 0 has no value and the paired
    # t-test has no p-value; two pairs can never give p = 0. Wilcoxon: both negative, exact p = 2 / 2^2 = 0.5.
    diff = [3 - 5, 4 - 6]
    mean = sum(diff) / 2
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / 1)
    assert (mean, sd) == (-2.0, 0.0)
    assert paired_change({1: 5, 2: 6}, {1: 3, 2: 4}) == {
        "n_pairs": 2,
        "mean_change": -2.0,
        "sd_change": 0.0,
        "t_test_p": None,
        "wilcoxon_p": 0.5,
    }


def test_rate():
    assert rate(1, 3) == {"numerator": 1, "denominator": 3, "percent": 33.3}  # 100 / 3 = 33.33
    assert rate(2, 3) == {"numerator": 2, "denominator": 3, "percent": 66.7}  # 200 / 3 = 66.67
    assert rate(3, 4) == {"numerator": 3, "denominator": 4, "percent": 75.0}
    assert rate(0, 5) == {"numerator": 0, "denominator": 5, "percent": 0.0}
    assert rate(0, 0) == {"numerator": 0, "denominator": 0, "percent": None}


# Kaplan-Meier: the 6-MP arm of Freireich et al. (1963), as in Gehan (1965) and most textbooks ----------

# Weeks of remission; False = censored (still in remission when last seen).
SIX_MP = [
    (6, True), (6, True), (6, True), (6, False), (7, True), (9, False), (10, True), (10, False), (11, False),
    (13, True), (16, True), (17, False), (19, False), (20, False), (22, True), (23, True), (25, False),
    (32, False), (32, False), (34, False), (35, False),
]  # fmt: skip


def six_mp_product_limit() -> dict[int, float]:
    """S(t) = product over event times t_i <= t of (1 - d_i / n_i), written out."""
    s6 = 1 - 3 / 21  # 21 at risk, 3 relapses                      = 0.857143
    s7 = s6 * (1 - 1 / 17)  # 21 - 3 relapses - 1 censored at 6 = 17    = 0.806723
    s10 = s7 * (1 - 1 / 15)  # 17 - 1 (7) - 1 censored at 9 = 15         = 0.752941
    s13 = s10 * (1 - 1 / 12)  # 15 - 2 at 10 - 1 censored at 11 = 12     = 0.690196
    s16 = s13 * (1 - 1 / 11)  # = 0.627451
    s22 = s16 * (1 - 1 / 7)  # 11 - 1 (16) - 3 censored at 17, 19, 20 = 7 = 0.537815
    s23 = s22 * (1 - 1 / 6)  # = 0.448179
    return {6: s6, 7: s7, 10: s10, 13: s13, 16: s16, 22: s22, 23: s23}


def test_product_limit_arithmetic_gives_the_textbook_values():
    textbook = {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    assert {t: round(s, 3) for t, s in six_mp_product_limit().items()} == textbook


def test_km_matches_the_6mp_textbook_curve():
    durations = [t for t, _ in SIX_MP]
    events = [e for _, e in SIX_MP]
    km = _km(durations, events)
    expected = six_mp_product_limit()
    assert km["n"] == 21
    assert km["events"] == 9
    curve = {point["day"]: point["survival"] for point in km["curve"]}
    # Every distinct time appears once; the curve starts at 1 and drops only at relapse times.
    assert sorted(curve) == [0, 6, 7, 9, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 34, 35]
    assert curve[0] == 1.0
    for t, s in expected.items():
        assert curve[t] == round(s, 4), t
    # Censoring times keep the value of the last relapse before them.
    assert curve[9] == curve[7]
    assert curve[11] == curve[10]
    assert curve[17] == curve[19] == curve[20] == curve[16]
    assert curve[25] == curve[32] == curve[34] == curve[35] == curve[23]
    assert [p["day"] for p in km["at_risk"]] == AT_RISK_DAYS
    # Time in weeks: at day 0 all 21 are at risk; nobody has a time of 91 or more.
    assert [p["at_risk"] for p in km["at_risk"]] == [21, 0, 0, 0, 0, 0]


def test_km_numbers_at_risk_at_the_report_days():
    # The same data in days (weeks x 7): 42, 42, 42, 42+, 49, 63+, 70, 70+, 77+, 91, 112, 119+, 133+, 140+,
    # 154, 161, 175+, 224+, 224+, 238+, 245+.
    durations = [t * 7 for t, _ in SIX_MP]
    events = [e for _, e in SIX_MP]
    km = _km(durations, events)
    # Still at risk on day d: time >= d.  Day 91: 91, 112, 119, 133, 140, 154, 161, 175, 224, 224, 238, 245
    # (12); day 182: 224, 224, 238, 245 (4); nobody from day 365.
    assert km["at_risk"] == [
        {"day": 0, "at_risk": 21},
        {"day": 91, "at_risk": 12},
        {"day": 182, "at_risk": 4},
        {"day": 365, "at_risk": 0},
        {"day": 730, "at_risk": 0},
        {"day": 1095, "at_risk": 0},
    ]
    s = six_mp_product_limit()
    curve = {point["day"]: point["survival"] for point in km["curve"]}
    assert curve[42] == round(s[6], 4)
    assert curve[161] == round(s[23], 4)
    # Day 182 is after the last relapse (day 161): S = 0.448179.
    assert km["survival_at_day"][182] == round(s[23], 4)


def test_km_without_anyone():
    assert _km([], []) == {"n": 0, "events": 0, "curve": [], "at_risk": []}
