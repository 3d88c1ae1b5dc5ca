"""The edit checks, one small rule object each (docs/data-quality.md, "Edit checks").

A rule reads its candidates in one query (over a patient, or over whole studies), judges each row with the
parameters of the row's study, and gives a `Finding` per record that breaks it: the record (model and id),
the field or item it is about, the values that make the question (`detail`) and the value now. The runner
(`quality.services.edit_checks`) turns findings into queries and closes the queries whose finding is gone.

Results are read in their canonical units (followup/catalogue.py); a censored result ("<10") is read at its
limit, as the safety checks read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import OuterRef, Subquery
from django.utils.text import format_lazy
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _

from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from followup.constants import ENTERED_OUTCOMES, VisitOutcome
from followup.models import AdverseEvent, Result, Visit
from patients.constants import PatientStatus
from patients.models import Patient, TransplantEvent


@dataclass(frozen=True)
class Finding:
    rule: str
    study_id: int
    patient_id: int
    model: type
    object_id: int
    field: str
    detail: dict
    value: str = ""

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.model._meta.model_name}:{self.object_id}"


@dataclass(frozen=True)
class Scope:
    """Where a run looks: some patients (those a write changed), or whole studies."""

    patient_ids: tuple[int, ...] = ()
    study_ids: tuple[int, ...] = ()
    # Rows a run reads once for several rules (the SLEDAI-2K rules share one read of the visits and labs).
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def filter(self, queryset, patient_lookup: str):
        if self.patient_ids:
            return queryset.filter(**{f"{patient_lookup}_id__in": self.patient_ids})
        return queryset.filter(**{f"{patient_lookup}__study_id__in": self.study_ids})


TICKED, NOT_TICKED = gettext_noop("ticked"), gettext_noop("not ticked")


def _num(value) -> str:
    return "" if value is None else plain(Decimal(value))


@dataclass(frozen=True)
class Rule:
    """One edit check: its code, what it asks (`message`, formatted with a finding's `detail`), its tunable
    parameters with their defaults, and the records whose change makes it worth running again."""

    code: str
    label: str
    message: str
    defaults: dict = field(default_factory=dict)
    triggers: tuple[type, ...] = ()

    def findings(self, scope: Scope, params: dict[int, dict]) -> list[Finding]:
        raise NotImplementedError


def _result_value(code: str, visit_ref: str = "pk"):
    """A subquery of the value of result `code` at the outer visit."""
    return Subquery(Result.objects.filter(visit_id=OuterRef(visit_ref), code=code).values("value")[:1])


@dataclass(frozen=True)
class ResultChangeRule(Rule):
    """A result that moved too far: up since the previous entered visit (`against` "previous"), or down from
    the baseline visit (`against` "baseline"), by more than `pct` per cent."""

    result_code: str = ""
    against: str = "previous"
    direction: str = "up"

    def findings(self, scope, params):
        reference = Result.objects.filter(
            code=self.result_code,
            visit__patient_id=OuterRef("visit__patient_id"),
            visit__outcome__in=ENTERED_OUTCOMES,
        )
        if self.against == "previous":
            reference = reference.filter(visit__actual_date__lt=OuterRef("visit__actual_date")).order_by(
                "-visit__actual_date"
            )
        else:
            reference = reference.filter(visit__code="BL")
        rows = (
            scope.filter(Result.objects, "visit__patient")
            .filter(code=self.result_code, visit__outcome__in=ENTERED_OUTCOMES)
            .exclude(visit__code="BL")
            .annotate(reference=Subquery(reference.values("value")[:1]))
            .filter(reference__gt=0)
            .values("pk", "value", "reference", "visit__code", "visit__patient_id", "visit__patient__study_id")
        )
        found = []
        for row in rows:
            study_id = row["visit__patient__study_id"]
            pct = Decimal(str(params[study_id]["pct"]))
            value, reference_value = row["value"], row["reference"]
            change = (value - reference_value) / reference_value * 100
            if (self.direction == "up" and change > pct) or (self.direction == "down" and -change > pct):
                unit = ANALYTES[self.result_code].unit
                found.append(
                    Finding(
                        self.code,
                        study_id,
                        row["visit__patient_id"],
                        Result,
                        row["pk"],
                        self.result_code,
                        {
                            "visit": row["visit__code"],
                            "value": _num(value),
                            "reference": _num(reference_value),
                            "unit": unit,
                            "change": _num(round(change, 1)),
                            "pct": _num(pct),
                        },
                        f"{_num(value)} {unit}",
                    )
                )
        return found


@dataclass(frozen=True)
class SledaiLabRule(Rule):
    """A SLEDAI-2K item against the laboratory: ticked while its results are normal, or not ticked while one
    is abnormal. Each of `labs` is (result code, parameter, "below" or "above" or "at_least"); a visit with
    none of them measured, or with only a total (no items), is not judged."""

    item: str = ""
    labs: tuple[tuple[str, str, str], ...] = ()

    @staticmethod
    def _abnormal(value: Decimal, limit: Decimal, how: str) -> bool:
        return value < limit if how == "below" else value > limit if how == "above" else value >= limit

    @staticmethod
    def _rows(scope) -> list[dict]:
        """The entered visits with items, each with every lab a SLEDAI-2K rule reads: one query per run."""
        if "sledai" not in scope.memo:
            annotations = {f"lab_{code}": _result_value(code) for code in SLEDAI_LABS}
            scope.memo["sledai"] = list(
                scope.filter(Visit.objects, "patient")
                .filter(outcome__in=ENTERED_OUTCOMES, sledai_items__isnull=False)
                .annotate(**annotations)
                .values("pk", "code", "sledai_items", "patient_id", "patient__study_id", *annotations)
            )
        return scope.memo["sledai"]

    def findings(self, scope, params):
        rows = self._rows(scope)
        found = []
        for row in rows:
            study_id = row["patient__study_id"]
            measured = [(code, row[f"lab_{code}"], param, how) for code, param, how in self.labs]
            measured = [m for m in measured if m[1] is not None]
            if not measured or not isinstance(row["sledai_items"], list):
                continue
            abnormal = [
                code
                for code, value, param, how in measured
                if self._abnormal(value, Decimal(str(params[study_id][param])), how)
            ]
            ticked = self.item in row["sledai_items"]
            if ticked == bool(abnormal):
                continue
            labs = ", ".join(f"{code} {_num(value)} {ANALYTES[code].unit}" for code, value, _, _ in measured)
            found.append(
                Finding(
                    self.code,
                    study_id,
                    row["patient_id"],
                    Visit,
                    row["pk"],
                    self.item,
                    {
                        "visit": row["code"],
                        "item": SLEDAI_ITEMS[self.item].label,
                        "labs": labs,
                        "ticked": TICKED if ticked else NOT_TICKED,
                    },
                    TICKED if ticked else NOT_TICKED,
                )
            )
        return found


@dataclass(frozen=True)
class FatalEventRule(Rule):
    """A grade 5 adverse event of a patient whose status is not "deceased"."""

    def findings(self, scope, params):
        rows = (
            scope.filter(AdverseEvent.objects, "patient")
            .filter(grade=5)
            .exclude(patient__status=PatientStatus.DECEASED)
            .values("pk", "term", "patient_id", "patient__study_id", "patient__status")
        )
        return [
            Finding(
                self.code,
                row["patient__study_id"],
                row["patient_id"],
                AdverseEvent,
                row["pk"],
                "grade",
                {"term": row["term"], "status": row["patient__status"]},
                "5",
            )
            for row in rows
        ]


@dataclass(frozen=True)
class DeceasedWithoutFatalEventRule(Rule):
    """A patient whose status is "deceased" without a grade 5 adverse event."""

    def findings(self, scope, params):
        patients = (
            Patient.objects.filter(pk__in=scope.patient_ids)
            if scope.patient_ids
            else Patient.objects.filter(study_id__in=scope.study_ids)
        )
        rows = (
            patients.filter(status=PatientStatus.DECEASED)
            .exclude(pk__in=AdverseEvent.objects.filter(grade=5).values("patient_id"))
            .values("pk", "study_id", "status_date")
        )
        return [
            Finding(
                self.code,
                row["study_id"],
                row["pk"],
                Patient,
                row["pk"],
                "status",
                {"date": row["status_date"].isoformat() if row["status_date"] else ""},
                PatientStatus.DECEASED,
            )
            for row in rows
        ]


@dataclass(frozen=True)
class RequiredItemsRule(Rule):
    """A completed visit with required items of its definition neither recorded nor said not done (a visit
    completed before the item became required, or written in bulk)."""

    def findings(self, scope, params):
        visits = list(
            scope.filter(Visit.objects, "patient")
            .filter(outcome=VisitOutcome.COMPLETED, definition__isnull=False)
            .exclude(definition__required_items=[])
            .values("pk", "code", "not_done", "patient_id", "patient__study_id", "definition__required_items")
        )
        present: dict[int, set[str]] = {visit["pk"]: set() for visit in visits}
        if visits:
            for visit_id, code in Result.objects.filter(visit_id__in=list(present)).values_list("visit_id", "code"):
                present[visit_id].add(code)
        found = []
        for visit in visits:
            not_done = visit["not_done"] or {}
            missing = [
                code
                for code in visit["definition__required_items"] or []
                if code not in present[visit["pk"]] and code not in not_done
            ]
            if missing:
                found.append(
                    Finding(
                        self.code,
                        visit["patient__study_id"],
                        visit["patient_id"],
                        Visit,
                        visit["pk"],
                        "",
                        {"visit": visit["code"], "missing": ", ".join(missing)},
                        ", ".join(missing),
                    )
                )
        return found


@dataclass(frozen=True)
class WeightChangeRule(Rule):
    """The body weight at an infusion more than `pct` per cent away from the weight at the infusion before."""

    def findings(self, scope, params):
        previous = TransplantEvent.objects.filter(
            patient_id=OuterRef("patient_id"), infusion_number=OuterRef("infusion_number") - 1
        ).values("weight_kg")[:1]
        rows = (
            scope.filter(TransplantEvent.objects, "patient")
            .filter(infusion_number__gt=1)
            .annotate(previous=Subquery(previous))
            .filter(previous__gt=0)
            .values("pk", "weight_kg", "previous", "infusion_number", "patient_id", "patient__study_id")
        )
        found = []
        for row in rows:
            pct = Decimal(str(params[row["patient__study_id"]]["pct"]))
            change = (row["weight_kg"] - row["previous"]) / row["previous"] * 100
            if abs(change) > pct:
                found.append(
                    Finding(
                        self.code,
                        row["patient__study_id"],
                        row["patient_id"],
                        TransplantEvent,
                        row["pk"],
                        "weight_kg",
                        {
                            "infusion": row["infusion_number"],
                            "value": _num(row["weight_kg"]),
                            "reference": _num(row["previous"]),
                            "change": _num(round(change, 1)),
                            "pct": _num(pct),
                        },
                        f"{_num(row['weight_kg'])} kg",
                    )
                )
        return found


SLEDAI_LABS = ("C3", "C4", "ADSDNA", "PROT24H", "PLT", "WBC")


def _sledai(item: str, labs, defaults: dict, message: str) -> SledaiLabRule:
    return SledaiLabRule(
        code=f"sledai_{item}",
        label=format_lazy(_("SLEDAI-2K \u201c{item}\u201d against the laboratory"), item=_(SLEDAI_ITEMS[item].label)),
        message=message,
        defaults=defaults,
        triggers=(Visit,),
        item=item,
        labs=labs,
    )


_SLEDAI_MESSAGE = _(
    "%(visit)s: SLEDAI-2K \u201c%(item)s\u201d is %(ticked)s, but the laboratory reads %(labs)s. Please check the item "
    "or the results."
)

RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in [
        ResultChangeRule(
            code="creatinine_rise",
            label=_("Creatinine up since the previous visit"),
            message=_(
                "%(visit)s: creatinine %(value)s %(unit)s is %(change)s%% above the previous visit's %(reference)s "
                "%(unit)s (more than %(pct)s%%). Please confirm the value."
            ),
            defaults={"pct": 50},
            triggers=(Visit,),
            result_code="CREAT",
            against="previous",
            direction="up",
        ),
        ResultChangeRule(
            code="egfr_drop",
            label=_("eGFR down from baseline"),
            message=_(
                "%(visit)s: eGFR %(value)s %(unit)s is %(change)s%% from the baseline's %(reference)s %(unit)s "
                "(a fall of more than %(pct)s%%). Please confirm the creatinine."
            ),
            defaults={"pct": 30},
            triggers=(Visit,),
            result_code="EGFR",
            against="baseline",
            direction="down",
        ),
        _sledai(
            "low_complement",
            (("C3", "c3_low_below", "below"), ("C4", "c4_low_below", "below")),
            {"c3_low_below": "0.9", "c4_low_below": "0.1"},
            _SLEDAI_MESSAGE,
        ),
        _sledai(
            "increased_dna_binding",
            (("ADSDNA", "adsdna_high_above", "above"),),
            {"adsdna_high_above": "30"},
            _SLEDAI_MESSAGE,
        ),
        _sledai(
            "proteinuria", (("PROT24H", "prot24h_at_least", "at_least"),), {"prot24h_at_least": "0.5"}, _SLEDAI_MESSAGE
        ),
        _sledai("thrombocytopenia", (("PLT", "plt_below", "below"),), {"plt_below": "100"}, _SLEDAI_MESSAGE),
        _sledai("leukopenia", (("WBC", "wbc_below", "below"),), {"wbc_below": "3"}, _SLEDAI_MESSAGE),
        FatalEventRule(
            code="fatal_ae_not_deceased",
            label=_("Grade 5 adverse event without a deceased status"),
            message=_(
                "Adverse event \u201c%(term)s\u201d is grade 5 (death) but the patient's status is %(status)s. "
                "Please correct the grade or the status."
            ),
            # Recording a grade 5 event records the death too (followup's `ae_save`), after announcing the
            # event: run on the patient's change, not the event's, or every fatal event would open a query
            # that closes a moment later.
            triggers=(Patient,),
        ),
        DeceasedWithoutFatalEventRule(
            code="deceased_without_fatal_ae",
            label=_("Deceased status without a grade 5 adverse event"),
            message=_(
                "The patient is recorded as deceased (%(date)s) but no adverse event is grade 5. Please record the "
                "fatal event or correct the status."
            ),
            triggers=(AdverseEvent, Patient),
        ),
        RequiredItemsRule(
            code="required_items_missing",
            label=_("Completed visit with required items missing"),
            message=_(
                "%(visit)s is completed without the required items %(missing)s. Please record them or say why not."
            ),
            triggers=(Visit,),
        ),
        WeightChangeRule(
            code="weight_change",
            label=_("Weight changed between infusions"),
            message=_(
                "Infusion %(infusion)s: weight %(value)s kg is %(change)s%% away from the infusion before "
                "(%(reference)s kg, more than %(pct)s%%). Please confirm the weight."
            ),
            defaults={"pct": 10},
            triggers=(TransplantEvent,),
        ),
    ]
}


def rules_triggered_by(model: type | None) -> Iterable[Rule]:
    """The rules worth running again after a change to a `model` record (every rule for None)."""
    return [rule for rule in RULES.values() if model is None or any(issubclass(model, t) for t in rule.triggers)]


def question(rule_code: str, detail: dict) -> str:
    """A rule's question in the active language, from the values of its finding."""
    rule = RULES.get(rule_code)
    if rule is None:
        return ""
    if "ticked" in detail:
        detail = {**detail, "ticked": gettext(detail["ticked"])}
    try:
        return str(rule.message) % detail
    except (KeyError, TypeError, ValueError):
        return str(rule.label)
