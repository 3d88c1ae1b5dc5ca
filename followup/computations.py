"""Pure computations on single values: unit conversion, SLEDAI-2K totals and eGFR (CKD-EPI 2021)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.utils.translation import gettext

from followup.catalogue import ANALYTES, CANONICAL_PLACES, CENSORABLE_CODES, SLEDAI_ITEMS
from followup.constants import Comparator

EGFR_ALGORITHM = "CKD-EPI 2021 (creatinine)"


def plain(number: Decimal) -> str:
    """A decimal as people write it: no exponent, no trailing zeros (10, 2.5, 0.03)."""
    text = format(number if type(number) is Decimal else Decimal(number), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def censored_text(number: Decimal, comparator: str = "") -> str:
    """A value as people write it, with its comparator when censored: "10", "<10", ">=2000"."""
    return f"{comparator or ''}{plain(number)}"


def check_comparator(code: str, comparator: str | None) -> str:
    """The comparator of a result ("" for an exact value), or a ValidationError naming the field and the rule."""
    if comparator in (None, ""):
        return ""
    if comparator not in Comparator.values:
        raise ValidationError(
            {code: f"{code}: comparator '{comparator}' is not one of {', '.join(Comparator.values)} (or none)."},
            code="comparator",
        )
    if code not in CENSORABLE_CODES:
        raise ValidationError(
            {
                code: f"{code}: a comparator ({comparator}) is for laboratory results only; give {code} as an exact value."
            },
            code="comparator",
        )
    return comparator


def to_canonical(code: str, value, unit: str | None = None, comparator: str = "") -> Decimal:
    """Convert a value entered in `unit` to the code's canonical unit, refusing what cannot be trusted.

    With a comparator (a censored result, "<10"), the value is the limit: it is converted the same way (the
    comparator holds for both units) and must itself lie within the plausible range; "<0" is refused (no
    result is negative)."""
    analyte = ANALYTES.get(code)
    if analyte is None:
        raise ValidationError(
            {
                code: gettext("Unknown result code '%(code)s'; use one of %(codes)s.")
                % {"code": code, "codes": ", ".join(ANALYTES)}
            }
        )
    comparator = check_comparator(code, comparator)
    unit = unit or analyte.unit
    if unit not in analyte.units:
        raise ValidationError(
            {
                code: f"{code}: unit '{unit}' (value {value}) is not accepted; use {' or '.join(analyte.units)} "
                f"(plausible range {analyte.low}–{analyte.high} {analyte.unit})."
            },
            code="unit",
        )
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise ValidationError(
            {code: gettext("%(code)s: '%(value)s' is not a number.") % {"code": code, "value": value}}, code="invalid"
        ) from None
    if not number.is_finite():
        raise ValidationError(
            {code: gettext("%(code)s: '%(value)s' is not a number.") % {"code": code, "value": value}}, code="invalid"
        )
    if analyte.whole and number != number.to_integral_value():
        raise ValidationError(
            {
                code: gettext("%(code)s: %(value)s is not a whole number of %(unit)s.")
                % {"code": code, "value": value, "unit": analyte.unit}
            },
            code="invalid",
        )
    canonical = (number * analyte.factor(unit)).quantize(CANONICAL_PLACES)
    if not analyte.low <= canonical <= analyte.high:
        shown = f"{plain(number)} {unit}" + (f" (= {plain(canonical)} {analyte.unit})" if unit != analyte.unit else "")
        raise ValidationError(
            {code: f"{code}: {shown} is outside the plausible range {analyte.low}–{analyte.high} {analyte.unit}."},
            code="range",
        )
    if comparator == Comparator.LT and canonical <= 0:
        raise ValidationError(
            {code: f"{code}: <{plain(number)} {unit} leaves nothing possible: no {code} is below 0."},
            code="range",
        )
    return canonical


def from_canonical(code: str, canonical: Decimal, unit: str) -> Decimal:
    """The inverse of `to_canonical` (for display in a user's preferred unit)."""
    return Decimal(canonical) / ANALYTES[code].factor(unit)


def sledai_total(items: Iterable[str]) -> int:
    """Sum of the weights of the SLEDAI-2K items present (each counted once)."""
    items = set(items)
    unknown = sorted(items - SLEDAI_ITEMS.keys())
    if unknown:
        raise ValidationError(
            {"sledai_items": f"Unknown SLEDAI-2K item(s) {', '.join(unknown)}; use {', '.join(SLEDAI_ITEMS)}."}
        )
    return sum(SLEDAI_ITEMS[code].weight for code in items)


def egfr_ckd_epi_2021(*, creatinine_umol_l: Decimal, age: int, sex: str) -> Decimal:
    """eGFR in mL/min/1.73 m² by the race-free CKD-EPI 2021 creatinine equation (Inker et al., NEJM 2021).

    eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^-1.200 × 0.9938^age × 1.012 (if female),
    with Scr in mg/dL, κ = 0.7 (F) / 0.9 (M), α = -0.241 (F) / -0.302 (M).
    """
    scr = float(creatinine_umol_l) / 88.4
    female = sex == "F"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = scr / kappa
    value = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age
    if female:
        value *= 1.012
    if not math.isfinite(value):
        raise ValidationError({"EGFR": gettext("eGFR could not be computed from these inputs.")})
    return Decimal(str(round(value, 1)))
