"""eGFR by the race-free CKD-EPI 2021 creatinine equation, worked by hand, and its storage at a visit.

    eGFR = 142 x min(Scr/k, 1)^a x max(Scr/k, 1)^-1.200 x 0.9938^age x 1.012 (female)
    Scr in mg/dL (umol/L / 88.4); k = 0.7 (F) / 0.9 (M); a = -0.241 (F) / -0.302 (M)

Only the year of birth is kept, so the age is the visit's year minus the year of birth.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from followup.computations import egfr_ckd_epi_2021
from followup.constants import VisitOutcome
from followup.models import Result
from followup.services import visit_record
from tests.factories import DAY_ZERO, make_clinical

D = Decimal


def egfr(umol_l: str, age: int, sex: str) -> Decimal:
    return egfr_ckd_epi_2021(creatinine_umol_l=D(umol_l), age=age, sex=sex)


# Hand-worked examples ----------------------------------------------------------------------------------


def test_woman_above_kappa():
    # 35-year-old woman, creatinine 0.9 mg/dL = 0.9 x 88.4 = 79.56 umol/L.
    # Scr/k = 0.9 / 0.7 = 1.285714 > 1, so min(.)^a = 1 and max(.)^-1.2 = 1.285714^-1.2 = 0.739651
    # 0.9938^35 = 0.804386
    # 142 x 0.739651 x 0.804386 x 1.012 = 85.499 -> 85.5
    assert round(142 * (0.9 / 0.7) ** -1.2 * 0.9938**35 * 1.012, 1) == 85.5
    assert egfr("79.56", 35, "F") == D("85.5")


def test_woman_below_kappa():
    # 25-year-old woman, creatinine 0.5 mg/dL = 44.2 umol/L.
    # Scr/k = 0.5 / 0.7 = 0.714286 < 1: min(.)^-0.241 = 0.714286^-0.241 = 1.084468, max(.)^-1.2 = 1
    # 0.9938^25 = 0.856002
    # 142 x 1.084468 x 0.856002 x 1.012 = 133.401 -> 133.4
    assert round(142 * (0.5 / 0.7) ** -0.241 * 0.9938**25 * 1.012, 1) == 133.4
    assert egfr("44.2", 25, "F") == D("133.4")


def test_woman_exactly_at_kappa():
    # 40-year-old woman, creatinine 0.7 mg/dL = 61.88 umol/L: Scr/k = 1, both power terms are 1.
    # 142 x 0.9938^40 x 1.012 = 142 x 0.779758 x 1.012 = 112.054 -> 112.1
    assert round(142 * 0.9938**40 * 1.012, 1) == 112.1
    assert egfr("61.88", 40, "F") == D("112.1")


def test_man_above_kappa():
    # 60-year-old man, creatinine 1.2 mg/dL = 1.2 x 88.4 = 106.08 umol/L.
    # Scr/k = 1.2 / 0.9 = 1.333333 > 1: max(.)^-1.2 = 1.333333^-1.2 = 0.708066
    # 0.9938^60 = 0.688556
    # 142 x 0.708066 x 0.688556 = 69.231 -> 69.2 (no sex factor for men)
    assert round(142 * (1.2 / 0.9) ** -1.2 * 0.9938**60, 1) == 69.2
    assert egfr("106.08", 60, "M") == D("69.2")


def test_man_below_kappa():
    # 50-year-old man, creatinine 0.7 mg/dL = 61.88 umol/L.
    # Scr/k = 0.7 / 0.9 = 0.777778 < 1: min(.)^-0.302 = 0.777778^-0.302 = 1.078851
    # 0.9938^50 = 0.732740
    # 142 x 1.078851 x 0.732740 = 112.253 -> 112.3
    assert round(142 * (0.7 / 0.9) ** -0.302 * 0.9938**50, 1) == 112.3
    assert egfr("61.88", 50, "M") == D("112.3")


def test_man_exactly_at_kappa():
    # 45-year-old man, creatinine 0.9 mg/dL = 79.56 umol/L: Scr/k = 1.
    # 142 x 0.9938^45 = 142 x 0.755883 = 107.335 -> 107.3
    assert egfr("79.56", 45, "M") == D("107.3")


def test_same_creatinine_and_age_gives_a_man_a_different_egfr_than_a_woman():
    # 0.9 mg/dL at 35: the man is exactly at his k (0.9), so 142 x 0.9938^35 = 142 x 0.804386 = 114.2;
    # the woman (above her k of 0.7) has 85.5, worked out above.
    assert egfr("79.56", 35, "M") == D("114.2")
    assert egfr("79.56", 35, "F") == D("85.5")


def test_a_year_older_multiplies_by_0_9938():
    # 85.499 x 0.9938 = 84.969 -> 85.0
    assert egfr("79.56", 36, "F") == D("85.0")


def test_result_has_one_decimal_place():
    assert egfr("79.56", 35, "F").as_tuple().exponent == -1


@settings(database=None, max_examples=200)
@given(
    st.integers(min_value=10, max_value=1999),
    st.integers(min_value=18, max_value=90),
    st.sampled_from(["F", "M"]),
)
def test_egfr_falls_as_creatinine_or_age_rises(umol_l, age, sex):
    base = egfr(str(umol_l), age, sex)
    assert egfr(str(umol_l + 1), age, sex) <= base
    assert egfr(str(umol_l), age + 1, sex) <= base
    assert base > 0


# Stored at a visit -------------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def results_of(visit) -> dict[str, Result]:
    return {r.code: r for r in Result.objects.filter(visit=visit)}


def test_creatinine_recorded_stores_a_derived_egfr():
    clinical = make_clinical(sex="F", birth_year=1990)  # 35 at a visit in 2025
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")})
    rows = results_of(visit)
    assert rows["CREAT"].value == D("79.56")  # 0.9 x 88.4
    assert rows["CREAT"].entered_value == D("0.9")
    assert rows["CREAT"].entered_unit == "mg/dL"
    assert rows["EGFR"].value == D("85.5")
    assert rows["EGFR"].derived is True
    assert rows["EGFR"].entered_value is None


def test_egfr_of_a_man_is_stored_from_creatinine_in_umol_per_litre():
    clinical = make_clinical(sex="M", birth_year=1965)  # 2025 - 1965 = 60
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("106.08", "umol/L")})
    assert results_of(visit)["EGFR"].value == D("69.2")


def test_age_is_taken_in_the_year_of_the_visit():
    clinical = make_clinical(sex="F", birth_year=1990)
    # M12 is 2026-03-03: age 2026 - 1990 = 36, so 85.5 becomes 85.0 (see above).
    visit = visit_record(visit=clinical.visit("M12"), actual_date=dt.date(2026, 3, 3), results={"CREAT": "79.56"})
    assert results_of(visit)["EGFR"].value == D("85.0")


def test_egfr_that_disagrees_by_more_than_1_with_the_computed_one_is_refused():
    clinical = make_clinical(sex="F", birth_year=1990)
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        # computed 85.5; 87 is 1.5 away
        visit_record(visit=visit, actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL"), "EGFR": "87"})
    message = " ".join(excinfo.value.message_dict["EGFR"])
    assert "87" in message and "85.5" in message
    assert not Result.objects.filter(visit=visit).exists()
    visit.refresh_from_db()
    assert visit.outcome == VisitOutcome.OPEN


@pytest.mark.parametrize("submitted", ["86.5", "84.5", "85.9"])
def test_egfr_within_1_of_the_computed_one_is_accepted_and_the_computed_value_kept(submitted):
    clinical = make_clinical(sex="F", birth_year=1990)
    visit = visit_record(
        visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL"), "EGFR": submitted}
    )
    row = results_of(visit)["EGFR"]
    assert row.value == D("85.5")
    assert row.derived is True


def test_egfr_without_creatinine_is_stored_as_entered():
    clinical = make_clinical()
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"EGFR": "72"})
    row = results_of(visit)["EGFR"]
    assert row.value == D("72")
    assert row.derived is False


def test_correcting_creatinine_recomputes_egfr():
    clinical = make_clinical(sex="M", birth_year=1965)
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")})
    # Man of 60 exactly at k: 142 x 0.9938^60 = 142 x 0.688556 = 97.8
    assert results_of(visit)["EGFR"].value == D("97.8")
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"CREAT": ("1.2", "mg/dL")}, reason="transcription error")
    assert results_of(visit)["EGFR"].value == D("69.2")


def test_later_results_keep_the_egfr_from_the_stored_creatinine():
    clinical = make_clinical(sex="F", birth_year=1990)
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")})
    visit_record(visit=visit, actual_date=DAY_ZERO, results={"C3": "0.7"}, reason="C3 came back late")
    rows = results_of(visit)
    assert rows["EGFR"].value == D("85.5")
    # A submitted eGFR is checked against the stored creatinine too.
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, results={"EGFR": "90"}, reason="eGFR from the lab")
    assert "EGFR" in excinfo.value.message_dict


def test_removing_creatinine_removes_the_egfr_computed_from_it():
    clinical = make_clinical(sex="F", birth_year=1990)
    visit = visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, results={"CREAT": ("0.9", "mg/dL")})
    visit_record(visit=visit, actual_date=DAY_ZERO, remove=["CREAT"], reason="sample haemolysed")
    rows = results_of(visit)
    assert "CREAT" not in rows
    assert "EGFR" not in rows, "a derived eGFR must not outlive the creatinine it was computed from"


def test_out_of_range_creatinine_is_refused_and_no_egfr_is_computed():
    clinical = make_clinical()
    visit = clinical.visit("BL")
    with pytest.raises(ValidationError) as excinfo:
        visit_record(visit=visit, actual_date=DAY_ZERO, results={"CREAT": ("25", "mg/dL")})  # 2210 umol/L
    assert set(excinfo.value.message_dict) == {"CREAT"}
    assert not Result.objects.filter(visit=visit).exists()
