"""The cohort report: what the published MSCT studies report, for any study or subset, as plain data.

Counts, means and standard deviations per time point are database aggregates; medians, quartiles,
paired tests (scipy) and Kaplan-Meier estimates (lifelines) work on value arrays fetched as numbers, never
on model instances. `cohort_report` returns a JSON-able dict; `report_csv_rows` flattens it; `charts`
draws the outcome-over-time figure and the survival curves as SVG.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import math
import zoneinfo
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
from django.db import connection
from django.db.models import Avg, Count, Exists, F, FloatField, Min, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from scipy import stats

from followup.constants import AECategory, Relatedness, VisitOutcome
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from followup.outcomes import ALGORITHM_VERSION
from patients.constants import PatientStatus
from patients.models import Patient, TransplantEvent
from registry.constants import TissueSource
from registry.models import Study

REPORT_VERSION = "cohort-report/1.0"
BASELINE_CODES = ["SLEDAI2K", "PROT24H", "ALB", "CREAT", "EGFR", "C3", "ADSDNA", "PRED"]
TIME_POINT_CODES = ["SLEDAI2K", "PROT24H", "UPCR", "ALB", "CREAT", "EGFR", "C3", "C4", "ADSDNA", "PRED"]
AT_RISK_DAYS = [0, 91, 182, 365, 730, 1095]


@dataclass
class CohortFilter:
    site_codes: list[str] = field(default_factory=list)
    cell_source: str = ""  # a TissueSource value
    infusions: str = ""  # "single" or "double"
    enrolled_from: dt.date | None = None
    enrolled_to: dt.date | None = None
    compare: str = "cell_source"  # or "infusions"

    def describe(self) -> dict:
        data = asdict(self)
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in data.items()}


# How a reader is told what the report's codes stand for (the JSON and CSV keep the codes).
COMPARISON_LABELS = {"cell_source": gettext_lazy("cell source"), "infusions": gettext_lazy("single vs double infusion")}
INFUSION_GROUP_LABELS = {"single": gettext_lazy("single infusion"), "double": gettext_lazy("double infusion")}


def group_label(compare: str, group: str) -> str:
    """The name of a comparison group (a cell source, or single or double infusion) in the reader's language."""
    if compare == "infusions":
        return str(INFUSION_GROUP_LABELS.get(group, group))
    if group in TissueSource.values:
        return gettext(TissueSource(group).label)
    return gettext("Unknown")


# Statistics helpers ------------------------------------------------------------------------------------


def _r(value, places=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), places)


def _p(value):
    """A p-value to 3 significant figures (0.000123 stays readable; 0 only when it is 0)."""
    if value is None or math.isnan(value):
        return None
    return float(f"{value:.3g}")


def summarise(values) -> dict:
    """n, mean, SD (sample), median and quartiles of a list of numbers."""
    if isinstance(values, np.ndarray):
        arr = values.astype(float, copy=False)
    else:
        arr = np.asarray([float(v) for v in values], dtype=float)
    if arr.size == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None, "q1": None, "q3": None}
    q1, median, q3 = np.percentile(arr, [25, 50, 75])
    return {
        "n": int(arr.size),
        "mean": _r(arr.mean()),
        "sd": _r(arr.std(ddof=1)) if arr.size > 1 else None,
        "median": _r(median),
        "q1": _r(q1),
        "q3": _r(q3),
    }


def _sample_sd(agg) -> float | None:
    n, mean, mean_sq = agg["n"], agg["mean"], agg["mean_sq"]
    if n is None or n < 2 or mean is None:
        return None
    variance = (float(mean_sq) - float(mean) ** 2) * n / (n - 1)
    return math.sqrt(max(variance, 0.0))


def paired_change(baseline: dict[int, float], later: dict[int, float]) -> dict:
    """Change from baseline among patients with both values: mean ± SD, paired t-test and Wilcoxon."""
    ids = sorted(set(baseline) & set(later))
    before = np.asarray([float(baseline[i]) for i in ids])
    after = np.asarray([float(later[i]) for i in ids])
    return _paired(before, after)


def _paired_arrays(pks: np.ndarray, baseline: np.ndarray, later: np.ndarray) -> dict:
    """`paired_change` on arrays aligned by patient (NaN where a value is missing), pairs in patient order."""
    both = ~np.isnan(baseline) & ~np.isnan(later)
    order = np.argsort(pks[both], kind="stable")
    return _paired(baseline[both][order], later[both][order])


def _paired(before: np.ndarray, after: np.ndarray) -> dict:
    diff = after - before
    n = int(diff.size)
    out = {
        "n_pairs": n,
        "mean_change": _r(diff.mean()) if n else None,
        "sd_change": _r(diff.std(ddof=1)) if n > 1 else None,
        "t_test_p": None,
        "wilcoxon_p": None,
    }
    if n >= 2 and np.any(diff != 0):
        if diff.std(ddof=1) > 0:  # identical changes have no t statistic
            out["t_test_p"] = _p(stats.ttest_rel(after, before).pvalue)
        out["wilcoxon_p"] = _p(stats.wilcoxon(after, before).pvalue)
    return out


def rate(numerator: int, denominator: int) -> dict:
    return {
        "numerator": numerator,
        "denominator": denominator,
        # Half up, as people round percentages (6.25 % -> 6.3 %).
        "percent": float((Decimal(100 * numerator) / Decimal(denominator)).quantize(Decimal("0.1"), ROUND_HALF_UP))
        if denominator
        else None,
    }


def _id_list(ids):
    """The cohort's patient ids for an `__in` filter. On PostgreSQL one array parameter: a list of 100,000
    ids would be 100,000 parameters for Django to process and psycopg to quote, in every query."""
    ids = list(ids)
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (ids,))
    return ids


# Cohort selection --------------------------------------------------------------------------------------


def cohort(study: Study, site_ids, flt: CohortFilter):
    """The transplanted patients of the study in the caller's sites, narrowed by the filter."""
    # One row per patient (unique infusion number): no ordering, which would join the patient and study.
    first = TransplantEvent.objects.filter(patient=OuterRef("pk"), infusion_number=1).order_by()
    patients = (
        Patient.objects.filter(study=study)
        .for_sites(site_ids)
        .annotate(
            first_infused_at=Subquery(first.values("infused_at")[:1]),
            cell_source=Subquery(first.values("lot__tissue_source")[:1]),
            n_infusions=Count("transplants", distinct=True),
        )
        .filter(first_infused_at__isnull=False)
    )
    if flt.site_codes:
        patients = patients.filter(site__code__in=flt.site_codes)
    if flt.cell_source:
        patients = patients.filter(cell_source=flt.cell_source)
    if flt.infusions == "single":
        patients = patients.filter(n_infusions=1)
    elif flt.infusions == "double":
        patients = patients.filter(n_infusions__gte=2)
    if flt.enrolled_from:
        patients = patients.filter(consent_date__gte=flt.enrolled_from)
    if flt.enrolled_to:
        patients = patients.filter(consent_date__lte=flt.enrolled_to)
    return patients


@dataclass(slots=True)
class PatientFacts:
    pk: int
    index: int  # the patient's row in CohortFacts.values and CohortFacts.baseline
    sex: str
    age: int
    disease_years: float
    day_zero: dt.date
    group: str
    status: str
    status_date: dt.date | None
    last_contact: dt.date | None = None
    first_relapse: dt.date | None = None


@dataclass
class CohortFacts:
    """The cohort's patients, and the results the report uses as arrays (NaN where there is none).

    `values[i, v, c]`: patient i's result `TIME_POINT_CODES[c]` at the completed visit `visit_codes[v]`;
    `baseline[i, c]`: the value at the BL visit, else the last one on or before day 0.
    """

    patients: list[PatientFacts]
    pks: np.ndarray
    visit_codes: list[str]
    values: np.ndarray
    baseline: np.ndarray

    def __len__(self) -> int:
        return len(self.patients)

    def visit(self, visit_code: str) -> int | None:
        return self.visit_codes.index(visit_code) if visit_code in self.visit_codes else None


CODE_INDEX = {code: i for i, code in enumerate(TIME_POINT_CODES)}


class _AsFloat(Cast):
    """A number cast to double precision by the database, handed over as it comes (no per-row converter)."""

    def __init__(self, expression):
        super().__init__(expression, FloatField())

    @property
    def convert_value(self):
        return self._convert_value_noop


RESULT_CHUNK = 50_000


def _facts(patients, compare: str, visit_codes) -> CohortFacts:
    """`_read_facts` with Python's cyclic garbage collector paused. Reading the rows makes a tuple per row and
    a value per cell, none of them in a reference cycle (freed as each chunk is done with), yet the collector
    walks the young objects every 700 allocations: at 2,000 patients (139,000 results) it took as long as
    reading the rows. The collector runs again as before once the facts are read."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _read_facts(patients, compare, visit_codes)
    finally:
        if was_enabled:
            gc.enable()


def _read_facts(patients, compare: str, visit_codes) -> CohortFacts:
    """One query for the patients, one streamed query for their results of the report's codes.

    The results are never model instances: each chunk of rows is turned into index and value arrays and
    written into a patients x visits x codes array, so memory is bounded by that array, not by the rows.

    Long because the query, the index maps and the array filling share their locals; split, each part would
    take and hand back half a dozen arrays.
    """
    visit_codes = list(dict.fromkeys(["BL", *visit_codes, "M12"]))
    last_result = (
        Visit.objects.filter(patient=OuterRef("pk"), outcome=VisitOutcome.COMPLETED, actual_date__isnull=False)
        .filter(Exists(Result.objects.filter(visit=OuterRef("pk"))))
        .order_by("-actual_date")
        .values("actual_date")[:1]
    )
    rows = patients.annotate(last_result_date=Subquery(last_result)).values_list(
        "pk",
        "sex",
        "birth_year",
        "diagnosis_date",
        "status",
        "status_date",
        "first_infused_at",
        "cell_source",
        "n_infusions",
        "site__time_zone",
        "last_result_date",
    )
    people: list[PatientFacts] = []
    terminal = (PatientStatus.DECEASED, PatientStatus.WITHDRAWN, PatientStatus.LOST)
    for pk, sex, birth_year, diagnosis, status, status_date, infused, source, n_inf, tz, last in rows:
        day_zero = infused.astimezone(zoneinfo.ZoneInfo(tz)).date()
        group = (source or "unknown") if compare == "cell_source" else ("double" if n_inf >= 2 else "single")
        last_contact = max(day_zero, last) if last else day_zero
        if status_date and status in terminal:
            last_contact = max(last_contact, status_date)
        people.append(
            PatientFacts(
                pk=pk,
                index=len(people),
                sex=sex,
                age=day_zero.year - birth_year,
                disease_years=(day_zero - diagnosis).days / 365.25,
                day_zero=day_zero,
                group=group,
                status=status,
                status_date=status_date,
                last_contact=last_contact,
            )
        )
    n, n_codes = len(people), len(TIME_POINT_CODES)
    index = {f.pk: f.index for f in people}
    visit_index = {code: i for i, code in enumerate(visit_codes)}
    values = np.full((n, len(visit_codes), n_codes), np.nan)
    day_zero_ordinal = np.fromiter((f.day_zero.toordinal() for f in people), np.int64, n)
    pre: list[tuple[np.ndarray, ...]] = []  # results on or before day 0: patient, code, date, value
    results = (
        Result.objects.filter(
            visit__patient_id__in=_id_list(index), visit__outcome=VisitOutcome.COMPLETED, code__in=TIME_POINT_CODES
        )
        .order_by()
        .values_list("visit__patient_id", "visit__code", "visit__actual_date", "code", _AsFloat("value"))
    )
    iterator = results.iterator(chunk_size=RESULT_CHUNK)
    while chunk := list(itertools.islice(iterator, RESULT_CHUNK)):
        size = len(chunk)
        patient_ids, visit_code_col, dates, codes, numbers = zip(*chunk, strict=True)
        del chunk
        p = np.fromiter(map(index.__getitem__, patient_ids), np.int64, size)
        v = np.fromiter(map(visit_index.get, visit_code_col, itertools.repeat(-1)), np.int64, size)
        d = np.fromiter(map(dt.date.toordinal, dates), np.int64, size)
        c = np.fromiter(map(CODE_INDEX.__getitem__, codes), np.int64, size)
        x = np.fromiter(numbers, np.float64, size)
        known = v >= 0
        values[p[known], v[known], c[known]] = x[known]  # one result per visit and code
        early = d <= day_zero_ordinal[p]
        pre.append((p[early], c[early], d[early], x[early]))
    baseline = np.full((n, n_codes), np.nan)
    if pre:
        p, c, d, x = (np.concatenate(parts) for parts in zip(*pre, strict=True))
        # The last value before day 0 by date (then by value), code by code; BL's own values win.
        order = np.lexsort((x, d, c, p))
        p, c, x = p[order], c[order], x[order]
        key = p * n_codes + c
        last = np.append(key[1:] != key[:-1], True) if key.size else key.astype(bool)
        baseline[p[last], c[last]] = x[last]
    at_bl = values[:, visit_index["BL"], :]
    baseline = np.where(np.isnan(at_bl), baseline, at_bl)
    relapses = (
        ComputedOutcome.objects.filter(visit__patient_id__in=_id_list(index), relapse=True)
        .values("visit__patient_id")
        .annotate(first=Min("visit__actual_date"))
    )
    for row in relapses:
        people[index[row["visit__patient_id"]]].first_relapse = row["first"]
    return CohortFacts(
        patients=people,
        pks=np.fromiter(index, np.int64, n),
        visit_codes=visit_codes,
        values=values,
        baseline=baseline,
    )


# Sections ----------------------------------------------------------------------------------------------


def baseline_table(facts: CohortFacts) -> dict:
    people = facts.patients
    table = {
        "n": len(people),
        "age_years": summarise([p.age for p in people]),
        "female": rate(sum(p.sex == "F" for p in people), len(people)),
        "disease_duration_years": summarise([round(p.disease_years, 2) for p in people]),
    }
    for code in BASELINE_CODES:
        column = facts.baseline[:, CODE_INDEX[code]]
        table[code] = summarise(column[~np.isnan(column)])
    return table


def time_points(codes: list[tuple[str, int]], patient_ids: list[int], facts: CohortFacts) -> list[dict]:
    """Each result at each scheduled time point: database aggregates, then medians and paired tests."""
    aggregates = {
        (row["visit__code"], row["code"]): row
        for row in Result.objects.filter(
            visit__patient_id__in=_id_list(patient_ids),
            visit__outcome=VisitOutcome.COMPLETED,
            code__in=TIME_POINT_CODES,
        )
        .values("visit__code", "code")
        # Count, mean and mean of squares in SQL (every backend has them; a sample SD of one value is undefined).
        .annotate(
            n=Count("id"),
            mean=Avg("value"),
            mean_sq=Avg(F("value") * F("value")),
            # A censored value ("<10") is summarised at its limit; how many were is said beside n
            # (docs/clinical-rules.md, "Censored results").
            censored=Count("id", filter=~Q(comparator="")),
        )
    }
    out = []
    for visit_code, offset in codes:
        for code in TIME_POINT_CODES:
            agg = aggregates.get((visit_code, code))
            if not agg:
                continue
            column = facts.values[:, facts.visit(visit_code), CODE_INDEX[code]]
            summary = summarise(column[~np.isnan(column)])
            summary.update({"n": agg["n"], "mean": _r(agg["mean"]), "sd": _r(_sample_sd(agg))})
            entry = {"time_point": visit_code, "day": offset, "code": code, **summary}
            if agg["censored"]:
                entry["censored"] = agg["censored"]
            if visit_code != "BL":
                entry["change_from_baseline"] = _paired_arrays(facts.pks, facts.baseline[:, CODE_INDEX[code]], column)
            out.append(entry)
    return out


def response_rates(study: Study, patient_ids: list[int]) -> dict:
    codes = [c for c in study.visit_definitions.order_by("offset_days").values_list("code", flat=True) if c != "BL"]
    rows = {
        row["visit__code"]: row
        for row in ComputedOutcome.objects.filter(visit__patient_id__in=_id_list(patient_ids))
        .values("visit__code")
        .annotate(
            sri4_yes=Count("id", filter=Q(sri4=True)),
            sri4_known=Count("id", filter=Q(sri4__isnull=False)),
            cr=Count("id", filter=Q(remission="complete")),
            pr=Count("id", filter=Q(remission="partial")),
            remission_known=Count("id", filter=~Q(remission="")),
            renal_cr=Count("id", filter=Q(renal_response="complete")),
            renal_pr=Count("id", filter=Q(renal_response="partial")),
            renal_known=Count("id", filter=Q(renal_response__in=["complete", "partial", "none"])),
            flares=Count("id", filter=Q(flare__in=["mild_moderate", "severe"])),
            flare_known=Count("id", filter=~Q(flare="")),
        )
    }
    per_point = []
    for code in codes:
        row = rows.get(code)
        if not row or not (row["sri4_known"] or row["remission_known"] or row["renal_known"]):
            continue
        per_point.append(
            {
                "time_point": code,
                "sri4": rate(row["sri4_yes"], row["sri4_known"]),
                "complete_remission": rate(row["cr"], row["remission_known"]),
                "partial_remission": rate(row["pr"], row["remission_known"]),
                "any_remission": rate(row["cr"] + row["pr"], row["remission_known"]),
                "complete_renal_response": rate(row["renal_cr"], row["renal_known"]),
                "partial_renal_response": rate(row["renal_pr"], row["renal_known"]),
                "flare": rate(row["flares"], row["flare_known"]),
            }
        )
    outcomes = ComputedOutcome.objects.filter(visit__patient_id__in=_id_list(patient_ids))
    responders = outcomes.filter(remission__in=["complete", "partial"]).values("visit__patient_id").distinct().count()
    relapsed = outcomes.filter(relapse=True).values("visit__patient_id").distinct().count()
    return {
        "by_time_point": per_point,
        "relapse_among_responders": rate(relapsed, responders),
        "note": "SRI-4 is simplified: BILAG not assessed. Denominators: visits with the outcome assessable.",
    }


def _km(durations, events) -> dict:
    from lifelines import KaplanMeierFitter

    if not durations:
        return {"n": 0, "events": 0, "curve": [], "at_risk": []}
    kmf = KaplanMeierFitter().fit(durations, event_observed=events)
    curve = [{"day": int(t), "survival": _r(s, 4)} for t, s in kmf.survival_function_.iloc[:, 0].items()]
    durations = np.asarray(durations)
    at_risk = [{"day": d, "at_risk": int((durations >= d).sum())} for d in AT_RISK_DAYS]
    # No estimate beyond the last follow-up (the curve is not known there).
    last = float(durations.max())
    at = {d: (_r(float(kmf.predict(d)), 4) if d <= last else None) for d in (182, 365, 730, 1095)}
    return {"n": len(durations), "events": int(sum(events)), "curve": curve, "at_risk": at_risk, "survival_at_day": at}


def survival(facts: CohortFacts) -> dict:
    os_d, os_e, rfs_d, rfs_e = [], [], [], []
    for f in facts.patients:
        died = f.status == PatientStatus.DECEASED and f.status_date is not None
        end = f.status_date if died else (f.last_contact or f.day_zero)
        os_d.append(max((end - f.day_zero).days, 0))
        os_e.append(bool(died))
        if f.first_relapse and (not died or f.first_relapse <= f.status_date):
            rfs_d.append(max((f.first_relapse - f.day_zero).days, 0))
            rfs_e.append(True)
        else:
            rfs_d.append(os_d[-1])
            rfs_e.append(bool(died))
    return {
        "overall": _km(os_d, os_e),
        "relapse_free": _km(rfs_d, rfs_e),
        "_raw": {"os": (os_d, os_e), "rfs": (rfs_d, rfs_e)},
    }


def compare_groups(facts: CohortFacts, outcome_by_patient: dict, compare: str) -> dict:
    """The main outcomes side by side for the two largest groups, with the tests the papers use."""
    from lifelines.statistics import logrank_test

    groups: dict[str, list[PatientFacts]] = defaultdict(list)
    for f in facts.patients:
        groups[f.group].append(f)
    sledai = CODE_INDEX["SLEDAI2K"]
    m12 = facts.values[:, facts.visit("M12"), sledai]
    names = sorted(groups, key=lambda g: -len(groups[g]))[:2]
    out = {"by": compare, "groups": {}}
    for name in names:
        members = groups[name]
        rows = np.fromiter((f.index for f in members), np.int64, len(members))
        changes = m12[rows] - facts.baseline[rows, sledai]
        changes = changes[~np.isnan(changes)]
        baseline_sledai = facts.baseline[rows, sledai]
        remission = [outcome_by_patient.get(f.pk) for f in members if outcome_by_patient.get(f.pk) is not None]
        out["groups"][name] = {
            "n": len(members),
            "baseline_sledai": summarise(baseline_sledai[~np.isnan(baseline_sledai)]),
            "m12_sledai_change": summarise(changes),
            "m12_remission": rate(sum(remission), len(remission)),
            "deaths": sum(f.status == PatientStatus.DECEASED for f in members),
            "_changes": changes,
            "_remission": remission,
        }
    if len(names) == 2:
        a, b = (out["groups"][n] for n in names)
        tests = {}
        if len(a["_changes"]) >= 1 and len(b["_changes"]) >= 1:
            tests["m12_sledai_change_mann_whitney_p"] = _p(stats.mannwhitneyu(a["_changes"], b["_changes"]).pvalue)
        if a["_remission"] and b["_remission"]:
            table = [
                [sum(a["_remission"]), len(a["_remission"]) - sum(a["_remission"])],
                [sum(b["_remission"]), len(b["_remission"]) - sum(b["_remission"])],
            ]
            tests["m12_remission_fisher_p"] = _p(stats.fisher_exact(table).pvalue)
        da = [
            (f.last_contact - f.day_zero).days
            if f.status != PatientStatus.DECEASED
            else (f.status_date - f.day_zero).days
            for f in groups[names[0]]
        ]
        db = [
            (f.last_contact - f.day_zero).days
            if f.status != PatientStatus.DECEASED
            else (f.status_date - f.day_zero).days
            for f in groups[names[1]]
        ]
        ea = [f.status == PatientStatus.DECEASED for f in groups[names[0]]]
        eb = [f.status == PatientStatus.DECEASED for f in groups[names[1]]]
        if any(ea) or any(eb):
            tests["overall_survival_logrank_p"] = _p(logrank_test(da, db, ea, eb).p_value)
        out["tests"] = tests
    for group in out["groups"].values():
        group.pop("_changes")
        group.pop("_remission")
    return out


def adverse_events(patient_ids: list[int]) -> dict:
    events = AdverseEvent.objects.filter(patient_id__in=_id_list(patient_ids))
    serious = (
        Q(serious_death=True)
        | Q(serious_life_threatening=True)
        | Q(serious_hospitalisation=True)
        | Q(serious_disability=True)
        | Q(serious_congenital_anomaly=True)
        | Q(serious_other_important=True)
    )

    def by(field_name, labels=None):
        rows = events.values(field_name).annotate(events=Count("id"), patients=Count("patient", distinct=True))
        return [
            {
                "value": (labels or {}).get(r[field_name], r[field_name]),
                "events": r["events"],
                "patients": r["patients"],
            }
            for r in rows.order_by(field_name)
        ]

    return {
        "total": {"events": events.count(), "patients": events.values("patient").distinct().count()},
        "by_category": by("category", dict(AECategory.choices)),
        "by_grade": by("grade"),
        "by_relatedness": by("relatedness", dict(Relatedness.choices)),
        "serious": {
            "events": events.filter(serious).count(),
            "patients": events.filter(serious).values("patient").distinct().count(),
        },
    }


def cohort_facts(*, study: Study, site_ids, flt: CohortFilter | None = None) -> CohortFacts:
    """The facts of the study's patients in `site_ids`, narrowed by `flt`: what `cohort_report` and the
    report's charts (reporting/charts.py) are computed from. A page that shows both reads them once."""
    flt = flt or CohortFilter()
    codes = study.visit_definitions.order_by("offset_days").values_list("code", flat=True)
    return _facts(cohort(study, site_ids, flt), flt.compare, list(codes))


def cohort_report(*, study: Study, site_ids, flt: CohortFilter | None = None, facts: CohortFacts | None = None) -> dict:
    """The whole report for the study's patients in `site_ids`, narrowed by `flt`. `facts`: the same cohort's
    `cohort_facts`, when the caller has them already."""
    flt = flt or CohortFilter()
    codes = list(study.visit_definitions.order_by("offset_days").values_list("code", "offset_days"))
    if facts is None:
        facts = _facts(cohort(study, site_ids, flt), flt.compare, [code for code, _ in codes])
    ids = facts.pks.tolist()
    m12_remission = {
        row["visit__patient_id"]: row["remission"] in ("complete", "partial")
        for row in ComputedOutcome.objects.filter(visit__patient_id__in=_id_list(ids), visit__code="M12")
        .exclude(remission="")
        .order_by()
        .values("visit__patient_id", "remission")
    }
    surv = survival(facts)
    surv.pop("_raw")
    return {
        "report_version": REPORT_VERSION,
        "outcome_algorithm": ALGORITHM_VERSION,
        "generated_at": timezone.now().isoformat(),
        "study": {"code": study.code, "registration_id": study.registration_id, "title": study.title},
        "filter": flt.describe(),
        "n_patients": len(ids),
        "baseline": baseline_table(facts),
        "time_points": time_points(codes, ids, facts),
        "responses": response_rates(study, ids),
        "survival": surv,
        "comparison": compare_groups(facts, m12_remission, flt.compare),
        "adverse_events": adverse_events(ids),
        "cell_sources": dict(TissueSource.choices),
    }


def report_csv_rows(report: dict):
    """The report as long rows: section, group, time point, variable, statistic, value."""
    yield ["section", "group", "time_point", "variable", "statistic", "value"]
    for variable, stats_ in report["baseline"].items():
        if isinstance(stats_, dict):
            for stat, value in stats_.items():
                yield ["baseline", "", "BL", variable, stat, value]
        else:
            yield ["baseline", "", "BL", variable, "n", stats_]
    for row in report["time_points"]:
        for stat in ("n", "mean", "sd", "median", "q1", "q3"):
            yield ["time_point", "", row["time_point"], row["code"], stat, row[stat]]
        if row.get("censored"):
            yield ["time_point", "", row["time_point"], row["code"], "censored", row["censored"]]
        for stat, value in (row.get("change_from_baseline") or {}).items():
            yield ["change_from_baseline", "", row["time_point"], row["code"], stat, value]
    for row in report["responses"]["by_time_point"]:
        for outcome, r in row.items():
            if isinstance(r, dict):
                for stat, value in r.items():
                    yield ["response", "", row["time_point"], outcome, stat, value]
    for name, curve in (
        ("overall_survival", report["survival"]["overall"]),
        ("relapse_free_survival", report["survival"]["relapse_free"]),
    ):
        for point in curve["at_risk"]:
            yield ["survival", "", f"day {point['day']}", name, "at_risk", point["at_risk"]]
        for day, value in (curve.get("survival_at_day") or {}).items():
            yield ["survival", "", f"day {day}", name, "survival", value]
    for name, group in report["comparison"]["groups"].items():
        for variable in ("baseline_sledai", "m12_sledai_change", "m12_remission"):
            for stat, value in group[variable].items():
                yield ["comparison", name, "M12", variable, stat, value]
    for test, value in report["comparison"].get("tests", {}).items():
        yield ["comparison", "", "", test, "p", value]
    for key in ("by_category", "by_grade", "by_relatedness"):
        for row in report["adverse_events"][key]:
            yield ["adverse_events", "", "", f"{key}:{row['value']}", "events", row["events"]]
            yield ["adverse_events", "", "", f"{key}:{row['value']}", "patients", row["patients"]]
