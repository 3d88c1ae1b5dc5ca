"""The outcomes engine: pure functions over one patient's ordered visits.

No database access here: `followup.services.outcomes_recompute` loads a patient's visits into
`VisitPoint`s, calls `compute_outcomes`, and stores one `VisitOutcome` per post-transplant visit with
`ALGORITHM_VERSION` and the settings used. Definitions (defaults of docs/clinical-rules.md, "Outcomes",
editable per study):

- change from baseline: for every result, value minus baseline and the percent change; the baseline of a
  code is its value at the BL visit, or else its last value dated on or before day 0;
- SRI-4 (simplified): SLEDAI-2K reduction >= 4 from baseline, and PGA increase < 0.3 when PGA is
  recorded at both; BILAG is not assessed;
- remission: complete when SLEDAI-2K <= 3 with prednisone <= 10 mg/day (prednisone must be known);
  partial when SLEDAI-2K <= 8 and reduced by >= 4 from baseline;
- renal response (only for baseline proteinuria >= 0.5 g/24h, or UPCR >= 0.5 g/g): complete when
  proteinuria < 0.5 with eGFR no more than 15% below baseline; partial when proteinuria fell by >= 50% to
  < 3;
- flare: SLEDAI-2K rise >= 3 versus the previous visit with a SLEDAI-2K; severe when the total is > 12 or
  prednisone > 0.5 mg/kg/day, otherwise mild/moderate;
- relapse: a flare at a visit when an earlier post-transplant visit was in remission (complete or
  partial) and no relapse has been counted since that remission.

A censored value ("<0.1": below the laboratory's limit) is a bound, not a number: no change from baseline
is computed from it, and a threshold is met or missed only when the bound settles it; otherwise the outcome
is not assessable (docs/clinical-rules.md, "Censored results").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field
from decimal import Decimal

from followup.computations import plain

# 1.1: censored results (the outcomes of exact values are those of 1.0).
ALGORITHM_VERSION = "msct-outcomes/1.1"

REMISSION_COMPLETE, REMISSION_PARTIAL, REMISSION_NONE = "complete", "partial", "none"
RENAL_COMPLETE, RENAL_PARTIAL, RENAL_NONE, RENAL_NOT_APPLICABLE = "complete", "partial", "none", "not_applicable"
FLARE_NONE, FLARE_MILD_MODERATE, FLARE_SEVERE = "none", "mild_moderate", "severe"


@dataclass(frozen=True)
class OutcomeDefinitions:
    """The thresholds in force (per study); defaults as in docs/clinical-rules.md, "Outcomes"."""

    cr_sledai_max: Decimal = Decimal("3")
    cr_prednisone_max_mg: Decimal = Decimal("10")
    pr_sledai_max: Decimal = Decimal("8")
    pr_reduction_min: Decimal = Decimal("4")
    sri4_reduction_min: Decimal = Decimal("4")
    sri4_pga_increase_below: Decimal = Decimal("0.3")
    renal_involvement_min: Decimal = Decimal("0.5")
    renal_cr_proteinuria_below: Decimal = Decimal("0.5")
    renal_cr_egfr_drop_max_pct: Decimal = Decimal("15")
    renal_pr_reduction_min_pct: Decimal = Decimal("50")
    renal_pr_proteinuria_below: Decimal = Decimal("3")
    flare_rise_min: Decimal = Decimal("3")
    flare_severe_total_above: Decimal = Decimal("12")
    flare_severe_prednisone_mg_per_kg_above: Decimal = Decimal("0.5")

    def as_dict(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class VisitPoint:
    """One completed visit of a patient: its date, day since day 0, results (canonical units) and context."""

    visit_id: int
    date: dt.date
    day: int
    is_baseline_visit: bool = False
    values: dict[str, Decimal] = field(default_factory=dict)
    prednisone_mg: Decimal | None = None
    weight_kg: Decimal | None = None
    censored: dict[str, str] = field(default_factory=dict)  # per code of a censored value: its comparator


@dataclass
class VisitOutcomeData:
    visit_id: int
    changes: dict[str, dict[str, str | None]] = field(default_factory=dict)
    sledai: Decimal | None = None
    sledai_change: Decimal | None = None
    sri4: bool | None = None
    sri4_note: str = ""
    remission: str | None = None
    renal_response: str | None = None
    flare: str | None = None
    relapse: bool | None = None
    notes: list[str] = field(default_factory=list)


def baseline_values(points: list[VisitPoint]) -> dict[str, Decimal]:
    """Per code: the BL visit's value, or else the last value dated on or before day 0."""
    return baseline_with_censoring(points)[0]


def baseline_with_censoring(points: list[VisitPoint]) -> tuple[dict[str, Decimal], dict[str, str]]:
    """`baseline_values`, and per code whose baseline is censored its comparator."""
    baseline: dict[str, Decimal] = {}
    censored: dict[str, str] = {}
    ordered = sorted((p for p in points if p.day <= 0), key=lambda p: p.date)
    for point in [*ordered, *(p for p in points if p.is_baseline_visit)]:
        baseline.update(point.values)
        for code in point.values:
            if code in point.censored:
                censored[code] = point.censored[code]
            else:
                censored.pop(code, None)
    return baseline, censored


def below(value: Decimal, comparator: str, threshold: Decimal) -> bool | None:
    """Whether a value, exact or censored, is below `threshold`: True or False when its bound settles it, else
    None ("<0.4" is below 0.5; "<1" may or may not be; ">3" is not)."""
    if not comparator:
        return value < threshold
    if comparator == "<":
        return True if value <= threshold else None
    if comparator == "<=":
        return True if value < threshold else None
    return False if value >= threshold else None  # ">" or ">="


def at_most(value: Decimal, comparator: str, threshold: Decimal) -> bool | None:
    """Whether a value, exact or censored, is at most `threshold`, as `below` decides it."""
    if not comparator:
        return value <= threshold
    if comparator in ("<", "<="):
        return True if value <= threshold else None
    if comparator == ">":
        return False if value >= threshold else None
    return False if value > threshold else None  # ">="


_HUNDREDTH = Decimal("0.01")


def change_from_baseline(
    values: dict[str, Decimal],
    baseline: dict[str, Decimal],
    baseline_text: dict[str, str] | None = None,
    censored: dict[str, str] | None = None,
    base_censored: dict[str, str] | None = None,
) -> dict[str, dict]:
    """Per code with a baseline: baseline, value, absolute and percent change, as text. `baseline_text` may
    hold the baselines already written as text (they are the same at every visit of a patient). A censored
    value or baseline comes with its comparator ("comparator", "baseline_comparator": "<"), and its changes
    are None: a bound has none."""
    changes = {}
    censored, base_censored = censored or {}, base_censored or {}
    for code, value in sorted(values.items()):
        if code not in baseline:
            continue
        base = baseline[code]
        if code in censored or code in base_censored:
            changes[code] = {"baseline": plain(base), "value": plain(value), "absolute": None, "percent": None}
            if code in base_censored:
                changes[code]["baseline_comparator"] = base_censored[code]
            if code in censored:
                changes[code]["comparator"] = censored[code]
            continue
        absolute = value - base
        percent = (absolute / base * 100).quantize(_HUNDREDTH) if base != 0 else None
        changes[code] = {
            "baseline": baseline_text[code] if baseline_text is not None else plain(base),
            "value": plain(value),
            "absolute": plain(absolute),
            "percent": None if percent is None else str(percent),
        }
    return changes


def sri4(*, sledai, base_sledai, pga, base_pga, d: OutcomeDefinitions) -> tuple[bool | None, str]:
    if sledai is None or base_sledai is None:
        return None, "SLEDAI-2K missing at this visit or at baseline"
    met = (base_sledai - sledai) >= d.sri4_reduction_min
    note = "BILAG not assessed"
    if pga is not None and base_pga is not None:
        met = met and (pga - base_pga) < d.sri4_pga_increase_below
    else:
        note += "; PGA not recorded at both visits"
    return met, note


def remission(*, sledai, base_sledai, prednisone, d: OutcomeDefinitions) -> str | None:
    if sledai is None:
        return None
    if sledai <= d.cr_sledai_max and prednisone is not None and prednisone <= d.cr_prednisone_max_mg:
        return REMISSION_COMPLETE
    if base_sledai is not None and sledai <= d.pr_sledai_max and (base_sledai - sledai) >= d.pr_reduction_min:
        return REMISSION_PARTIAL
    return REMISSION_NONE


def renal_response(*, values, baseline, d: OutcomeDefinitions, censored=None, base_censored=None) -> str | None:
    """KDIGO-style renal response. A censored proteinuria (docs/clinical-rules.md, "Censored results") counts
    only where its bound settles a threshold; otherwise the response is None (not assessable)."""
    censored, base_censored = censored or {}, base_censored or {}
    for code in ("PROT24H", "UPCR"):
        if code in values and code in baseline:
            current, base = values[code], baseline[code]
            break
    else:
        return None
    if code in censored or code in base_censored:
        return _renal_response_censored(
            current, censored.get(code, ""), base, base_censored.get(code, ""), values, baseline, d
        )
    if base < d.renal_involvement_min:
        return RENAL_NOT_APPLICABLE
    egfr, base_egfr = values.get("EGFR"), baseline.get("EGFR")
    egfr_kept = (
        egfr is not None and base_egfr is not None and egfr >= base_egfr * (1 - d.renal_cr_egfr_drop_max_pct / 100)
    )
    if current < d.renal_cr_proteinuria_below and egfr_kept:
        return RENAL_COMPLETE
    if current < d.renal_pr_proteinuria_below and (base - current) >= base * d.renal_pr_reduction_min_pct / 100:
        return RENAL_PARTIAL
    return RENAL_NONE


def _renal_response_censored(current, comparator, base, base_comparator, values, baseline, d) -> str | None:
    """`renal_response` when the proteinuria at the visit or at baseline is censored: each threshold is
    tested by `below`; when a bound cannot settle one the response needs, the answer is None."""
    involved = below(base, base_comparator, d.renal_involvement_min)
    if involved is True:
        return RENAL_NOT_APPLICABLE
    if involved is None:
        return None
    egfr, base_egfr = values.get("EGFR"), baseline.get("EGFR")
    egfr_kept = (
        egfr is not None and base_egfr is not None and egfr >= base_egfr * (1 - d.renal_cr_egfr_drop_max_pct / 100)
    )
    complete = below(current, comparator, d.renal_cr_proteinuria_below)
    if egfr_kept and complete is not False:
        return RENAL_COMPLETE if complete else None  # "<1": complete or partial, the bound cannot tell
    # Partial: a fall of at least the given share of baseline, to below the ceiling. With a censored baseline
    # the share is of an unknown number: not assessable unless the visit's value settles "none".
    under_ceiling = below(current, comparator, d.renal_pr_proteinuria_below)
    if under_ceiling is False:
        return RENAL_NONE
    if base_comparator:
        return None
    fell = at_most(current, comparator, base * (1 - d.renal_pr_reduction_min_pct / 100))
    if under_ceiling and fell:
        return RENAL_PARTIAL
    if fell is False:
        return RENAL_NONE
    return None


def flare(*, sledai, previous_sledai, prednisone, weight_kg, d: OutcomeDefinitions) -> str | None:
    if sledai is None or previous_sledai is None:
        return None
    if sledai - previous_sledai < d.flare_rise_min:
        return FLARE_NONE
    heavy_steroid = (
        prednisone is not None and weight_kg and prednisone / weight_kg > d.flare_severe_prednisone_mg_per_kg_above
    )
    if sledai > d.flare_severe_total_above or heavy_steroid:
        return FLARE_SEVERE
    return FLARE_MILD_MODERATE


# With `since`, of a post-transplant visit dated before it only these values are read (the SLEDAI-2K before a
# flare, the remission before a relapse); the baseline visits are read whole.
EARLIER_VISIT_CODES = ("SLEDAI2K", "PRED", "WEIGHT")


# What an outcome takes from the visits before its own; everything else in it comes from the visit's own
# values, the baseline and the definitions.
CHAIN_FIELDS = ("flare", "relapse")


def _visit_outcome(
    point, baseline, baseline_text, d, in_remission, flared, relapse, base_censored=None
) -> VisitOutcomeData:
    """A visit's whole outcome: what comes from its own values and the baseline, with its remission, flare and
    relapse."""
    base_censored = base_censored or {}
    sledai, base_sledai = point.values.get("SLEDAI2K"), baseline.get("SLEDAI2K")
    out = VisitOutcomeData(
        visit_id=point.visit_id,
        changes=change_from_baseline(point.values, baseline, baseline_text, point.censored, base_censored),
        sledai=sledai,
        remission=in_remission,
        flare=flared,
        relapse=relapse,
    )
    if sledai is not None and base_sledai is not None:
        out.sledai_change = sledai - base_sledai
    out.sri4, out.sri4_note = sri4(
        sledai=sledai, base_sledai=base_sledai, pga=point.values.get("PGA"), base_pga=baseline.get("PGA"), d=d
    )
    if sledai is not None and sledai <= d.cr_sledai_max and point.prednisone_mg is None:
        out.notes.append("prednisone not known: complete remission not assessable")
    out.renal_response = renal_response(
        values=point.values, baseline=baseline, d=d, censored=point.censored, base_censored=base_censored
    )
    if out.renal_response is None and any(
        code in point.censored or code in base_censored
        for code in ("PROT24H", "UPCR")
        if code in point.values and code in baseline
    ):
        out.notes.append("proteinuria censored: renal response not assessable")
    return out


def compute_outcomes(
    points: list[VisitPoint],
    d: OutcomeDefinitions | None = None,
    *,
    since: dt.date | None = None,
    chain: Container[int] = frozenset(),
) -> list[VisitOutcomeData]:
    """Outcomes for every post-transplant visit (day > 0), in date order; with `since`, only those of the
    visits on or after that date (the earlier visits are still read, for `EARLIER_VISIT_CODES`: a flare or
    relapse depends on them). Of the visits in `chain` (by id; their own values and the baseline unchanged)
    only the `CHAIN_FIELDS` are wanted, and their points need hold only `EARLIER_VISIT_CODES`: the other
    fields of their outcomes are left empty."""
    d = d or OutcomeDefinitions()
    points = sorted(points, key=lambda p: (p.date, p.visit_id))
    baseline, base_censored = baseline_with_censoring(points)
    baseline_text = {code: plain(value) for code, value in baseline.items()}
    base_sledai = baseline.get("SLEDAI2K")
    results: list[VisitOutcomeData] = []
    previous_sledai = None
    in_remission_since_relapse = False
    for point in points:
        sledai = point.values.get("SLEDAI2K")
        if point.day <= 0:
            previous_sledai = sledai if sledai is not None else previous_sledai
            continue
        wanted = since is None or point.date >= since
        whole = wanted and point.visit_id not in chain
        # The remission (the state a relapse follows) and the flare: from the values a chain point holds.
        in_remission = remission(sledai=sledai, base_sledai=base_sledai, prednisone=point.prednisone_mg, d=d)
        flared = flare(
            sledai=sledai,
            previous_sledai=previous_sledai,
            prednisone=point.prednisone_mg,
            weight_kg=point.weight_kg,
            d=d,
        )
        relapse = None
        if flared is not None:
            relapse = flared != FLARE_NONE and in_remission_since_relapse
            if relapse:
                in_remission_since_relapse = False
        if in_remission in (REMISSION_COMPLETE, REMISSION_PARTIAL):
            in_remission_since_relapse = True
        if sledai is not None:
            previous_sledai = sledai
        if whole:
            results.append(
                _visit_outcome(point, baseline, baseline_text, d, in_remission, flared, relapse, base_censored)
            )
        elif wanted:
            results.append(VisitOutcomeData(visit_id=point.visit_id, flare=flared, relapse=relapse))
    return results
