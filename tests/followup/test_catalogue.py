"""The results catalogue (docs/clinical-rules.md, "Results catalogue") and unit conversion.

Each conversion is checked against a value worked out by hand; the property-based test checks that going
to the canonical unit and back returns the entered value within the stored precision (4 decimal places of
the canonical unit) for every analyte and every unit it accepts.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from followup.catalogue import ANALYTES, CANONICAL_PLACES
from followup.computations import from_canonical, to_canonical

D = Decimal

# docs/clinical-rules.md, "Results catalogue": code -> (canonical unit, {other unit: factor to canonical}, low, high).
DOMAIN_CATALOGUE = {
    "SLEDAI2K": ("points", {}, D("0"), D("105")),
    "PGA": ("0-3", {}, D("0"), D("3")),
    "PROT24H": ("g/24h", {"mg/24h": D("0.001")}, D("0"), D("30")),  # mg/24h (/1000)
    "UPCR": ("g/g", {"mg/mmol": D(1) / D("113.12")}, D("0"), D("30")),  # mg/mmol (/113.12)
    "ALB": ("g/L", {"g/dL": D("10")}, D("5"), D("60")),  # g/dL (x10)
    "CREAT": ("umol/L", {"mg/dL": D("88.4")}, D("10"), D("2000")),  # mg/dL (x88.4)
    "EGFR": ("mL/min/1.73m2", {}, D("1"), D("200")),
    "BUN": ("mmol/L", {"mg/dL": D("0.357")}, D("0.5"), D("80")),  # mg/dL (x0.357)
    "C3": ("g/L", {"mg/dL": D("0.01")}, D("0.05"), D("3")),  # mg/dL (/100)
    "C4": ("g/L", {"mg/dL": D("0.01")}, D("0.01"), D("1")),  # mg/dL (/100)
    "ADSDNA": ("IU/mL", {}, D("0"), D("10000")),
    "ANA": ("1:N", {}, D("0"), D("5120")),
    "WBC": ("10^9/L", {"/uL": D("0.001")}, D("0.1"), D("100")),  # /uL (/1000)
    "PLT": ("10^9/L", {"/uL": D("0.001")}, D("1"), D("2000")),  # /uL (/1000)
    "HGB": ("g/L", {"g/dL": D("10")}, D("20"), D("250")),  # g/dL (x10)
    "TREG": ("% of CD4+", {}, D("0"), D("100")),
    "PRED": ("mg/day", {}, D("0"), D("1000")),
    "WEIGHT": ("kg", {}, D("2"), D("300")),
}


def refusal(excinfo, code: str) -> str:
    messages = excinfo.value.message_dict
    assert code in messages, f"expected an error on {code}, got {messages}"
    return " ".join(messages[code])


# The catalogue matches docs/clinical-rules.md -----------------------------------------------------------


def test_catalogue_holds_exactly_the_domain_codes():
    assert set(ANALYTES) == set(DOMAIN_CATALOGUE)


@pytest.mark.parametrize("code", sorted(DOMAIN_CATALOGUE))
def test_each_code_has_its_canonical_unit_alternatives_and_plausible_range(code):
    unit, alternatives, low, high = DOMAIN_CATALOGUE[code]
    analyte = ANALYTES[code]
    assert analyte.unit == unit
    assert analyte.units == [unit, *alternatives]
    assert analyte.conversions == alternatives
    assert (analyte.low, analyte.high) == (low, high)


def test_only_egfr_is_computed_by_the_registry():
    assert [code for code, analyte in ANALYTES.items() if analyte.computed] == ["EGFR"]


# Conversions, worked by hand ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "unit", "canonical"),
    [
        ("CREAT", "1.0", "mg/dL", D("88.4")),  # 1.0 x 88.4 = 88.4 umol/L
        ("CREAT", "0.9", "mg/dL", D("79.56")),  # 0.9 x 88.4 = 79.56 umol/L
        ("PROT24H", "2505", "mg/24h", D("2.505")),  # 2505 / 1000 = 2.505 g/24h (Liang 2010 baseline)
        ("PROT24H", "858", "mg/24h", D("0.858")),  # 858 / 1000 = 0.858 g/24h
        ("UPCR", "113.12", "mg/mmol", D("1")),  # 113.12 / 113.12 = 1 g/g
        ("UPCR", "56.56", "mg/mmol", D("0.5")),  # 56.56 / 113.12 = 0.5 g/g
        ("ALB", "3.5", "g/dL", D("35")),  # 3.5 x 10 = 35 g/L
        ("BUN", "28", "mg/dL", D("9.996")),  # 28 x 0.357 = 9.996 mmol/L
        ("C3", "90", "mg/dL", D("0.9")),  # 90 / 100 = 0.9 g/L
        ("C4", "20", "mg/dL", D("0.2")),  # 20 / 100 = 0.2 g/L
        ("WBC", "4500", "/uL", D("4.5")),  # 4500 / 1000 = 4.5 x 10^9/L
        ("PLT", "150000", "/uL", D("150")),  # 150000 / 1000 = 150 x 10^9/L
        ("HGB", "12.5", "g/dL", D("125")),  # 12.5 x 10 = 125 g/L
    ],
)
def test_alternative_unit_is_converted_to_the_canonical_unit(code, value, unit, canonical):
    assert to_canonical(code, value, unit) == canonical


@pytest.mark.parametrize(
    ("code", "canonical", "unit", "entered"),
    [
        ("CREAT", D("88.4"), "mg/dL", D("1.0")),  # 88.4 / 88.4
        ("PROT24H", D("2.505"), "mg/24h", D("2505")),  # 2.505 x 1000
        ("UPCR", D("1"), "mg/mmol", D("113.12")),  # 1 x 113.12
        ("ALB", D("35"), "g/dL", D("3.5")),  # 35 / 10
        ("C3", D("0.9"), "mg/dL", D("90")),  # 0.9 x 100
        ("WBC", D("4.5"), "/uL", D("4500")),  # 4.5 x 1000
        ("HGB", D("125"), "g/dL", D("12.5")),  # 125 / 10
        ("BUN", D("9.996"), "mg/dL", D("28")),  # 9.996 / 0.357
    ],
)
def test_canonical_value_is_converted_back_to_the_entered_unit(code, canonical, unit, entered):
    assert from_canonical(code, canonical, unit).quantize(D("0.0001")) == entered


@pytest.mark.parametrize("code", sorted(DOMAIN_CATALOGUE))
def test_value_in_the_canonical_unit_is_kept_as_it_is(code):
    unit, _, low, high = DOMAIN_CATALOGUE[code]
    middle = (low + high) / 2
    if ANALYTES[code].whole:  # a score: the middle rounded down to a whole point
        middle = D(int(middle))
    assert to_canonical(code, middle, unit) == middle
    assert to_canonical(code, middle) == middle  # no unit given: the canonical unit
    assert from_canonical(code, middle, unit) == middle


def test_a_fractional_score_is_refused():
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("SLEDAI2K", "6.5")
    assert "not a whole number" in refusal(excinfo, "SLEDAI2K")


def test_converted_value_is_rounded_to_the_stored_precision():
    # 2505.37 mg/24h / 1000 = 2.50537 g/24h, kept to 4 places: 2.5054
    assert to_canonical("PROT24H", "2505.37", "mg/24h") == D("2.5054")
    # 100 mg/mmol / 113.12 = 0.884016973... g/g, kept to 4 places: 0.8840
    assert to_canonical("UPCR", "100", "mg/mmol") == D("0.8840")
    assert D("0.0001") == CANONICAL_PLACES


# Refusals ----------------------------------------------------------------------------------------------


def test_unknown_unit_is_refused_naming_the_code_the_unit_and_the_accepted_units():
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("CREAT", "1.1", "mmol/L")
    message = refusal(excinfo, "CREAT")
    assert "CREAT" in message
    assert "mmol/L" in message
    assert "umol/L" in message and "mg/dL" in message


def test_unknown_unit_message_also_names_the_value_and_the_plausible_range():
    # The refusal of an entry should say which entry it was (the value) and what would be accepted.
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("CREAT", "1.1", "mmol/L")
    message = refusal(excinfo, "CREAT")
    assert "1.1" in message
    assert "10–2000" in message


def test_unit_of_another_analyte_is_refused():
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("ADSDNA", "120", "mg/dL")
    message = refusal(excinfo, "ADSDNA")
    assert "mg/dL" in message and "IU/mL" in message


def test_unknown_code_is_refused():
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("GLUCOSE", "5.5", "mmol/L")
    assert "GLUCOSE" in refusal(excinfo, "GLUCOSE")


@pytest.mark.parametrize("value", ["abc", "", None, "NaN", "Infinity", "-inf"])
def test_value_that_is_not_a_finite_number_is_refused(value):
    with pytest.raises(ValidationError) as excinfo:
        to_canonical("CREAT", value, "umol/L")
    assert "not a number" in refusal(excinfo, "CREAT")


@pytest.mark.parametrize(
    ("code", "value", "unit", "fragments"),
    [
        ("CREAT", "2001", "umol/L", ["CREAT", "2001", "umol/L", "10–2000"]),
        ("CREAT", "9.9", "umol/L", ["CREAT", "9.9", "umol/L", "10–2000"]),
        # 30 mg/dL x 88.4 = 2652 umol/L > 2000: the message shows both the entered and the converted value.
        ("CREAT", "30", "mg/dL", ["CREAT", "30 mg/dL", "2652 umol/L", "10–2000 umol/L"]),
        ("PROT24H", "-1", "g/24h", ["PROT24H", "-1", "g/24h", "0–30"]),
        # 31000 mg/24h / 1000 = 31 g/24h > 30
        ("PROT24H", "31000", "mg/24h", ["PROT24H", "31000 mg/24h", "31 g/24h", "0–30 g/24h"]),
        ("SLEDAI2K", "106", "points", ["SLEDAI2K", "106", "points", "0–105"]),
        ("PGA", "3.1", "0-3", ["PGA", "3.1", "0–3"]),
        ("WBC", "0.05", "10^9/L", ["WBC", "0.05", "10^9/L", "0.1–100"]),
        ("C3", "4", "mg/dL", ["C3", "4 mg/dL", "0.04 g/L", "0.05–3 g/L"]),  # 4 / 100 = 0.04 g/L < 0.05
        ("WEIGHT", "301", "kg", ["WEIGHT", "301", "kg", "2–300"]),
    ],
)
def test_value_outside_the_plausible_range_is_refused_naming_code_value_unit_and_range(code, value, unit, fragments):
    with pytest.raises(ValidationError) as excinfo:
        to_canonical(code, value, unit)
    message = refusal(excinfo, code)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("code", sorted(DOMAIN_CATALOGUE))
def test_plausible_range_includes_both_boundaries(code):
    unit, _, low, high = DOMAIN_CATALOGUE[code]
    assert to_canonical(code, low, unit) == low
    assert to_canonical(code, high, unit) == high


@pytest.mark.parametrize("code", sorted(DOMAIN_CATALOGUE))
def test_one_stored_step_beyond_either_boundary_is_refused(code):
    unit, _, low, high = DOMAIN_CATALOGUE[code]
    step = D(1) if ANALYTES[code].whole else CANONICAL_PLACES
    for value in (low - step, high + step):
        with pytest.raises(ValidationError) as excinfo:
            to_canonical(code, value, unit)
        assert "outside the plausible range" in refusal(excinfo, code)


@pytest.mark.parametrize(
    ("code", "value", "unit", "accepted"),
    [
        ("ALB", "0.5", "g/dL", True),  # 0.5 x 10 = 5 g/L, the lower bound
        ("ALB", "0.49", "g/dL", False),  # 4.9 g/L
        ("ALB", "6", "g/dL", True),  # 60 g/L, the upper bound
        ("ALB", "6.01", "g/dL", False),  # 60.1 g/L
        ("WBC", "100000", "/uL", True),  # 100 x 10^9/L, the upper bound
        ("WBC", "100001", "/uL", False),  # 100.001
        ("WBC", "100", "/uL", True),  # 0.1 x 10^9/L, the lower bound
        ("WBC", "99", "/uL", False),  # 0.099
        ("C3", "5", "mg/dL", True),  # 0.05 g/L, the lower bound
        ("C3", "300", "mg/dL", True),  # 3 g/L, the upper bound
        ("C3", "301", "mg/dL", False),  # 3.01 g/L
        ("PROT24H", "30000", "mg/24h", True),  # 30 g/24h, the upper bound
        ("PROT24H", "30001", "mg/24h", False),  # 30.001 g/24h
        ("UPCR", "3393.6", "mg/mmol", True),  # 30 x 113.12 = 3393.6 mg/mmol -> 30 g/g
        ("UPCR", "3394", "mg/mmol", False),  # 3394 / 113.12 = 30.0035 g/g
    ],
)
def test_boundaries_in_alternative_units_are_checked_after_conversion(code, value, unit, accepted):
    if accepted:
        to_canonical(code, value, unit)
    else:
        with pytest.raises(ValidationError):
            to_canonical(code, value, unit)


# Property: to the canonical unit and back -------------------------------------------------------------

UNIT_PAIRS = [(code, unit) for code, analyte in ANALYTES.items() for unit in analyte.units]


def test_every_accepted_unit_takes_part_in_the_round_trip_property():
    assert len(UNIT_PAIRS) == len(ANALYTES) + sum(len(a.conversions) for a in ANALYTES.values())


@st.composite
def entered_values(draw):
    """An (code, unit, value) whose converted value lies in the plausible range; 4 decimal places."""
    code, unit = draw(st.sampled_from(UNIT_PAIRS))
    analyte = ANALYTES[code]
    factor = analyte.factor(unit)
    step = D("0.0001")
    low = (analyte.low / factor).quantize(step, rounding=ROUND_CEILING)
    high = (analyte.high / factor).quantize(step, rounding=ROUND_FLOOR)
    if analyte.whole:  # a score: whole numbers only
        return code, unit, D(draw(st.integers(min_value=int(low), max_value=int(high))))
    value = draw(st.decimals(min_value=low, max_value=high, places=4, allow_nan=False, allow_infinity=False))
    return code, unit, value


@settings(database=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(entered_values())
def test_round_trip_through_the_canonical_unit_stays_within_the_stored_precision(case):
    code, unit, value = case
    factor = ANALYTES[code].factor(unit)
    canonical = to_canonical(code, value, unit)
    back = from_canonical(code, canonical, unit)
    # The canonical value is kept to 0.0001, so it is off by at most 0.00005 canonical units, which is
    # 0.00005 / factor in the entered unit (e.g. 0.05 mg/24h, 0.0057 mg/mmol, 0.0000006 mg/dL creatinine).
    tolerance = D("0.00005") / factor + D("1e-20")
    assert abs(back - value) <= tolerance
    # Converting the shown value again gives the same stored value.
    assert to_canonical(code, back, unit) == canonical


@settings(database=None, max_examples=200)
@given(st.sampled_from(UNIT_PAIRS), st.integers(min_value=0, max_value=10**6))
def test_stored_canonical_value_survives_display_in_any_accepted_unit(pair, steps):
    code, unit = pair
    analyte = ANALYTES[code]
    # Any stored value: the low bound plus a whole number of storage steps, capped at the high bound
    # (a score moves in whole points).
    step = D(1) if analyte.whole else CANONICAL_PLACES
    canonical = min(analyte.low + steps * step, analyte.high)
    shown = from_canonical(code, canonical, unit)
    assert to_canonical(code, shown, unit) == canonical
