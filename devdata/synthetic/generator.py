"""One synthetic patient at a time: enrolment, infusions, visits, results, outcomes and adverse events, each
drawn from the patient's own random generator in a fixed order (one method per table)."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import BooleanField

from devdata.synthetic.reference import FOLLOW_UP_SPAN_DAYS, Reference
from devdata.synthetic.writer import TABLES, WRITE_ORDER, BulkWriter
from followup import constants as c
from followup import outcomes
from followup.catalogue import ANALYTES, CANONICAL_PLACES, SLEDAI_ITEMS
from followup.models import AdverseEvent
from followup.services import ae_due_dates
from patients import constants as pc
from registry.models import Site

ALL_CODES = ("SLEDAI2K", "PGA", "PROT24H", "ALB", "CREAT", "EGFR", "BUN", "C3", "C4", "ADSDNA")
ALL_CODES += ("WBC", "PLT", "HGB", "PRED", "WEIGHT")
SAFETY_CODES = ("CREAT", "EGFR", "WBC", "PLT", "HGB", "PRED", "WEIGHT")  # the day-7 visit
# Share of values entered in the catalogue's alternative unit (the rest in the canonical unit).
ALTERNATIVE_UNIT = {"PROT24H": 0.4, "CREAT": 0.3, "ALB": 0.2, "BUN": 0.2, "C3": 0.2, "C4": 0.2, "HGB": 0.2}
PLACES = {"PGA": 1, "PROT24H": 3, "ALB": 1, "CREAT": 1, "BUN": 2, "C3": 2, "C4": 3, "ADSDNA": 0}
PLACES.update({"WBC": 2, "PLT": 0, "HGB": 0, "PRED": 1, "WEIGHT": 1})
# Disease activity relative to baseline at each visit of a responder (1.0 = as at baseline).
RESPONSE_PATH = {"BL": 1.0, "D7": 1.0, "M1": 0.6, "M3": 0.35, "M6": 0.18, "M9": 0.1}
LATE_ACTIVITY = 0.06
SLEDAI_BY_WEIGHT = sorted(SLEDAI_ITEMS.values(), key=lambda item: item.weight)
LAB_ITEMS = {"proteinuria", "low_complement", "increased_dna_binding", "thrombocytopenia", "leukopenia"}
CLINICAL_ITEMS = [i for i in SLEDAI_BY_WEIGHT if i.code not in LAB_ITEMS and i.weight < 8]
INFECTIONS = ("herpes zoster", "pneumonia", "urinary tract infection", "upper respiratory tract infection")
DEATH_CAUSES = ("sepsis", "lupus nephritis progression", "pulmonary haemorrhage", "myocardial infarction")


# One patient -------------------------------------------------------------------------------------------


@dataclass
class Ids:
    next: dict[str, int]

    def take(self, name: str) -> int:
        value = self.next[name]
        self.next[name] = value + 1
        return value


def _sledai_items(total: int, rng: random.Random, labs: set[str]) -> list[str]:
    """Items present that sum to `total`: the laboratory items the results show, then clinical ones."""
    chosen = [code for code in sorted(labs) if SLEDAI_ITEMS[code].weight <= total]
    remaining = total - sum(SLEDAI_ITEMS[code].weight for code in chosen)
    pool = CLINICAL_ITEMS[:]
    rng.shuffle(pool)
    for item in sorted(pool, key=lambda i: -i.weight):
        if remaining <= 0:
            break
        if item.weight <= remaining and item.code not in chosen:
            chosen.append(item.code)
            remaining -= item.weight
    if remaining >= 8:  # a severe flare: an 8-point item
        chosen.append("vasculitis")
        remaining -= 8
    return sorted(chosen)


def _egfr(creatinine_umol_l: float, age: int, sex: str) -> float:
    scr = creatinine_umol_l / 88.4
    female = sex == "F"
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = scr / kappa
    value = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age
    return round(value * (1.012 if female else 1), 1)


def _lab_items(values: dict[str, float]) -> set[str]:
    """The SLEDAI-2K items the laboratory values show."""
    labs = set()
    if values["PROT24H"] > 0.5:
        labs.add("proteinuria")
    if values["C3"] < 0.9:
        labs.add("low_complement")
    if values["ADSDNA"] > 30:
        labs.add("increased_dna_binding")
    if values["PLT"] < 100:
        labs.add("thrombocytopenia")
    if values["WBC"] < 3:
        labs.add("leukopenia")
    return labs


@dataclass
class Subject:
    """A synthetic patient as the rows after its own need it."""

    id: int
    site: Site
    anchor: int  # 1-4: the first patients, who show every visit state even in a tiny cohort; 0: the others
    days_ago: int  # since day 0
    day0: dt.date
    sex: str
    age: int
    status: str
    status_date: dt.date | None
    status_reason: str


@dataclass
class Course:
    """A patient's disease course, drawn once: the weight (at the infusions), whether they respond, when they
    relapse and the values at baseline; `relapsed` once the visit of the relapse is completed."""

    weight: float
    responder: bool
    relapse_at: str | None
    base_sledai: int
    base_prot: float  # g/24h
    base_creat: float  # umol/L
    base_dsdna: float  # IU/mL
    base_pred: int  # mg/day
    relapsed: bool = False

    @classmethod
    def draw(cls, rng: random.Random, weight: float) -> Course:
        """About four in five respond, and one in five of those relapses later."""
        responder = rng.random() < 0.78
        relapse_at = rng.choice(["M9", "M12", "M18", "M24"]) if responder and rng.random() < 0.2 else None
        return cls(
            weight=weight,
            responder=responder,
            relapse_at=relapse_at,
            base_sledai=max(6, min(30, round(rng.gauss(12.2, 3.3)))),
            base_prot=max(0.2, rng.gauss(2.5, 1.3)),
            base_creat=rng.uniform(55, 110),
            base_dsdna=rng.uniform(40, 400),
            base_pred=rng.choice([30, 40, 50, 60]),
        )

    def activity(self, code: str) -> float:
        """Disease activity at a completed visit relative to baseline (1.0 = as at baseline)."""
        if self.relapsed:
            return 0.75
        if not self.responder:
            return 1.0 if code in ("BL", "D7") else 0.85
        return RESPONSE_PATH.get(code, LATE_ACTIVITY)

    def values(self, rng: random.Random, activity: float) -> dict[str, float]:
        """The values of a completed visit (canonical units) at this disease activity."""
        g = rng.gauss
        values: dict[str, float] = {}
        values["PGA"] = max(0.0, min(3.0, 0.3 + 2.2 * activity + g(0, 0.2)))
        values["PROT24H"] = max(0.02, self.base_prot * (0.2 + 0.8 * activity) * math.exp(g(0, 0.15)))
        values["ALB"] = max(15.0, min(52.0, 40 - 10 * activity + g(0, 2.5)))
        values["CREAT"] = max(45.0, min(400.0, self.base_creat * (1 + 0.15 * activity) + g(0, 6)))
        values["BUN"] = max(1.0, min(30.0, 4.5 + 3 * activity + g(0, 0.8)))
        values["C3"] = max(0.1, min(2.0, 1.0 - 0.45 * activity + g(0, 0.08)))
        values["C4"] = max(0.02, min(0.6, 0.22 - 0.12 * activity + g(0, 0.03)))
        values["ADSDNA"] = max(1.0, self.base_dsdna * activity + g(0, 8))
        values["WBC"] = max(1.0, min(20.0, 6.0 - 2.0 * activity + g(0, 0.9)))
        values["PLT"] = max(20.0, min(600.0, 230 - 70 * activity + g(0, 35)))
        values["HGB"] = max(60.0, min(170.0, 128 - 18 * activity + g(0, 7)))
        values["PRED"] = max(5.0, self.base_pred * activity if activity > 0.2 else rng.choice([5.0, 7.5, 10.0]))
        values["WEIGHT"] = max(35.0, self.weight + g(0, 1.5))
        return values


@dataclass
class ScheduledVisit:
    """The outcome of one visit by today, with its date when completed."""

    outcome: str = c.VisitOutcome.OPEN
    actual: dt.date | None = None
    reason: str = ""
    deviation: str = ""
    open_today: bool = False  # the visit's window is open today


class CohortGenerator:
    """Generates the rows of one patient at a time (see the module docstring for what they look like)."""

    def __init__(self, *, ref: Reference, seed: int, today: dt.date, writer: BulkWriter, ids: Ids, now: dt.datetime):
        self.ref, self.seed, self.today, self.writer, self.ids, self.now = ref, seed, today, writer, ids, now
        self.rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
        self.counts: Counter = Counter()
        self.ts = writer.timestamp
        self.b = writer.boolean
        self.now_text = writer.timestamp(now)
        self.zones = {site.pk: zoneinfo.ZoneInfo(site.time_zone) for site in ref.sites}
        self.units = {code: next(iter(ANALYTES[code].conversions), None) for code in ALTERNATIVE_UNIT}
        self.booleans = {  # the places of each table's boolean columns
            name: [i for i, column in enumerate(columns) if isinstance(model._meta.get_field(column), BooleanField)]
            for name, (model, columns) in TABLES.items()
        }

    def flush(self) -> None:
        with transaction.atomic():
            for name in WRITE_ORDER:
                self.writer.write(name, self.rows[name])
                self.counts[name] += len(self.rows[name])
                self.rows[name] = []

    def _stamp(self, day: dt.date, hour: int = 10) -> str:
        moment = dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)
        return self.ts(min(moment, self.now))

    def patient(self, number: int) -> None:
        """The rows of patient `number`, table by table. Every value comes from one generator, drawn in this
        order: the patient, the infusions, the disease course, the visits with their results, the adverse
        events."""
        rng = random.Random(f"{self.seed}:{number}")
        subject = self._patient(rng, number)
        transplant_ids, weight = self._transplants(rng, subject)
        course = Course.draw(rng, weight)
        points = self._visits(rng, subject, course)
        self._outcomes(points)
        self._adverse_events(rng, subject, self._events(rng, subject, transplant_ids))

    def _patient(self, rng: random.Random, number: int) -> Subject:
        ref = self.ref
        site = ref.sites[(number - 1) % len(ref.sites)]
        anchor = number if number <= 4 else 0
        days_ago = rng.randint(0, FOLLOW_UP_SPAN_DAYS)
        if anchor == 1:
            days_ago = 100  # the month-3 window (days 77-105) is open today
        elif anchor == 2:
            days_ago = 400  # the month-12 window has closed recently: left overdue (`_schedule`)
        day0 = self.today - dt.timedelta(days=days_ago)
        sex = "F" if rng.random() < 0.9 else "M"
        age = max(14, min(70, int(rng.gauss(32, 10))))
        consent = day0 - dt.timedelta(days=rng.randint(20, 45))
        diagnosis = day0 - dt.timedelta(days=rng.randint(365, 12 * 365))
        status, status_date, status_reason = self._status(rng, anchor, day0, days_ago)
        subject = Subject(
            self.ids.take("patient"), site, anchor, days_ago, day0, sex, age, status, status_date, status_reason
        )
        created = self._stamp(consent, 9)
        self._add(
            "patient",
            id=subject.id,
            study_id=ref.study.pk,
            site_id=site.pk,
            subject_code=f"{site.code}-{number:06d}",
            sex=sex,
            birth_year=day0.year - age,
            diagnosis_date=diagnosis,
            classification_criteria=rng.choice(pc.ClassificationCriteria.values),
            refractory_to='["cyclophosphamide", "prednisone"]',
            refractory_notes="",
            consent_date=consent,
            status=status,
            status_date=status_date,
            status_reason=status_reason,
            created_at=created,
            updated_at=self._stamp(status_date, 11) if status_date else created,
        )
        return subject

    def _status(self, rng: random.Random, anchor: int, day0: dt.date, days_ago: int) -> tuple[str, dt.date | None, str]:
        """Withdrawn, lost to follow-up or deceased (a few), completed (the follow-up is over) or enrolled."""
        roll = rng.random()
        if anchor == 3 or (not anchor and roll < 0.03 and days_ago > 60):
            status, reason = pc.PatientStatus.WITHDRAWN, "consent withdrawn"
            on_date = day0 + dt.timedelta(days=rng.randint(30, max(31, days_ago)))
        elif not anchor and roll < 0.045 and days_ago > 60:
            status, reason = pc.PatientStatus.LOST, "no contact after repeated attempts"
            on_date = day0 + dt.timedelta(days=rng.randint(60, max(61, days_ago)))
        elif not anchor and roll < 0.07 and days_ago > 20:
            status, reason = pc.PatientStatus.DECEASED, "death"
            on_date = day0 + dt.timedelta(days=rng.randint(7, max(8, days_ago)))
        elif days_ago > self.ref.definitions[-1].window_last_day:
            status, reason = pc.PatientStatus.COMPLETED, "follow-up completed"
            on_date = day0 + dt.timedelta(days=self.ref.definitions[-1].window_last_day)
        else:
            return pc.PatientStatus.ENROLLED, None, ""
        return status, min(on_date, self.today), reason

    def _transplants(self, rng: random.Random, subject: Subject) -> tuple[list[int], float]:
        """The infusions, from the lot made about when day 0 falls: about a third receive a second on day 7
        (double MSCT). Returns their ids and the patient's weight."""
        lots = self.ref.lots
        lot_index = min(
            len(lots) - 1, max(0, int((FOLLOW_UP_SPAN_DAYS - subject.days_ago) / FOLLOW_UP_SPAN_DAYS * len(lots)))
        )
        lot_id, _, _ = lots[lot_index]
        weight = round(rng.uniform(42, 78), 1)
        infusions = 2 if rng.random() < 0.35 and subject.days_ago >= 8 else 1
        transplant_ids = []
        local_hour = rng.randint(9, 11)
        for infusion in range(1, infusions + 1):
            day = subject.day0 + dt.timedelta(days=7 * (infusion - 1))
            local = dt.datetime.combine(day, dt.time(local_hour), tzinfo=self.zones[subject.site.pk])
            transplant_ids.append(self.ids.take("transplant"))
            stamp = self._stamp(day, 12)
            self._add(
                "transplant",
                id=transplant_ids[-1],
                patient_id=subject.id,
                lot_id=lot_id,
                infused_at=self.ts(local.astimezone(dt.UTC)),
                infusion_number=infusion,
                weight_kg=f"{weight:.1f}",
                dose_cells_per_kg=1_000_000,
                total_cells=int(1_000_000 * weight),
                route=pc.Route.IV,
                duration_minutes=rng.randint(30, 60),
                premedication="promethazine 25 mg IM",
                conditioning="cyclophosphamide 1.0 g IV 24 h before" if infusion == 1 else "",
                created_at=stamp,
                updated_at=stamp,
            )
        return transplant_ids, weight

    def _visits(self, rng: random.Random, subject: Subject, course: Course) -> list[outcomes.VisitPoint]:
        """A visit per visit definition, with the results of the completed ones; returns the outcome inputs."""
        points = []
        window_open_today = False
        for definition in self.ref.definitions:
            target = subject.day0 + dt.timedelta(days=definition.offset_days)
            start = target - dt.timedelta(days=definition.window_before_days)
            end = target + dt.timedelta(days=definition.window_after_days)
            visit_id = self.ids.take("visit")
            visit = self._schedule(rng, subject, definition, target, start, end)
            window_open_today = window_open_today or visit.open_today
            created = updated = self._stamp(min(subject.day0, self.today), 12)
            items = None
            if visit.outcome == c.VisitOutcome.COMPLETED:
                updated = self._stamp(visit.actual + dt.timedelta(days=1), 10)
                if course.relapse_at == definition.code:
                    course.relapsed = True
                items, point = self._results(rng, visit_id, definition.code, visit.actual, subject, course, updated)
                points.append(point)
            elif visit.outcome in (c.VisitOutcome.MISSED, c.VisitOutcome.NOT_REQUIRED) and subject.status_date:
                updated = self._stamp(max(subject.status_date, subject.day0), 11)
            self._add(
                "visit",
                id=visit_id,
                patient_id=subject.id,
                definition_id=definition.pk,
                code=definition.code,
                label=definition.label,
                label_zh=definition.label_zh,
                target_date=target,
                window_start=start,
                window_end=end,
                outcome=visit.outcome,
                actual_date=visit.actual,
                outcome_reason=visit.reason,
                deviation_reason=visit.deviation,
                sledai_items=None if items is None else json.dumps(items),
                not_done=json.dumps({}),
                created_at=created,
                updated_at=updated,
            )
            self.counts[f"visits {visit.outcome}"] += 1
        if window_open_today:
            self.counts["patients with a window open today"] += 1
        return points

    def _schedule(self, rng, subject: Subject, definition, target, start, end) -> ScheduledVisit:
        """Where a visit stands today: not required after the patient left, completed (the baseline always;
        most visits whose window has closed, some whose window is open), missed, or open (scheduled, due or
        overdue by the dates). Anchor 1 leaves its open window open, anchor 2 its month-12 visit overdue,
        anchor 4 misses its month-1 visit."""
        today, status_date = self.today, subject.status_date
        visit = ScheduledVisit()
        if subject.status in pc.INACTIVE_STATUSES and end >= status_date:
            visit.outcome = c.VisitOutcome.NOT_REQUIRED
            label = pc.PatientStatus(subject.status).label
            visit.reason = f"{label} on {status_date.isoformat()}: {subject.status_reason}"
        elif definition.code == "BL":
            visit.outcome, visit.actual = c.VisitOutcome.COMPLETED, subject.day0 - dt.timedelta(days=rng.randint(0, 7))
        elif start > today:
            pass  # scheduled
        elif end >= today:  # the window is open today
            visit.open_today = True
            if subject.anchor != 1 and rng.random() < 0.4:
                visit.actual = start + dt.timedelta(days=rng.randint(0, (today - start).days))
                visit.outcome = c.VisitOutcome.COMPLETED
        else:  # the window has closed
            recent = (today - end).days <= 60
            roll = rng.random()
            if roll < (0.12 if recent else 0.015) or (subject.anchor == 2 and definition.code == "M12"):
                pass  # overdue
            elif roll < (0.16 if recent else 0.055) or (subject.anchor == 4 and definition.code == "M1"):
                visit.outcome, visit.reason = c.VisitOutcome.MISSED, "patient did not attend"
            else:
                visit.outcome = c.VisitOutcome.COMPLETED
                spread = max(1, min(definition.window_before_days, definition.window_after_days) // 2)
                visit.actual = target + dt.timedelta(days=max(-spread, min(spread, round(rng.gauss(0, spread / 2)))))
                if rng.random() < 0.02:
                    visit.actual = end + dt.timedelta(days=rng.randint(1, 5))
                    visit.deviation = "patient travelling during the window"
                visit.actual = min(visit.actual, today)
                if status_date and visit.actual > status_date:
                    visit.outcome, visit.actual, visit.deviation = c.VisitOutcome.MISSED, None, ""
                    visit.reason = "patient did not attend"
        if visit.outcome == c.VisitOutcome.COMPLETED and not (start <= visit.actual <= end):
            visit.deviation = visit.deviation or "visit outside its window"
        return visit

    def _results(self, rng, visit_id: int, code: str, on_date: dt.date, subject: Subject, course: Course, stamp: str):
        """The results of one completed visit; returns its SLEDAI-2K items and the visit as the outcomes read it."""
        activity = course.activity(code)
        values = course.values(rng, activity)
        codes = SAFETY_CODES if code == "D7" else ALL_CODES
        items = sledai = None
        if "SLEDAI2K" in codes:
            target = max(0, min(40, round(course.base_sledai * activity + rng.gauss(0, 1.2))))
            items = _sledai_items(target, rng, _lab_items(values))
            sledai = sum(SLEDAI_ITEMS[item].weight for item in items)
        rows = self.rows["result"]
        derived_true, derived_false = self.b(True), self.b(False)
        take = self.ids.take
        point_values: dict[str, Decimal] = {}
        for result_code in codes:
            if result_code == "SLEDAI2K":
                text = str(sledai)
                rows.append((take("result"), visit_id, "SLEDAI2K", text, text, "points", derived_true, stamp, stamp))
                point_values["SLEDAI2K"] = Decimal(sledai)
                continue
            if result_code == "EGFR":
                text = f"{_egfr(values['CREAT_STORED'], subject.age, subject.sex):.1f}"
                rows.append((take("result"), visit_id, "EGFR", text, None, "computed", derived_true, stamp, stamp))
                point_values["EGFR"] = Decimal(text)
                continue
            analyte = ANALYTES[result_code]
            places = PLACES[result_code]
            share = ALTERNATIVE_UNIT.get(result_code)
            if share and rng.random() < share:
                unit = self.units[result_code]
                factor = analyte.conversions[unit]
                entered = Decimal(f"{values[result_code] / float(factor):.{places + 2}f}")
                canonical = (entered * factor).quantize(CANONICAL_PLACES)
                value_text, entered_text = str(canonical), str(entered)
            else:
                unit = analyte.unit
                value_text = entered_text = f"{values[result_code]:.{places}f}"
            if result_code == "CREAT":
                values["CREAT_STORED"] = float(value_text)
            point_values[result_code] = Decimal(value_text)  # every value, as the outcome service reads them
            rows.append(
                (take("result"), visit_id, result_code, value_text, entered_text, unit, derived_false, stamp, stamp)
            )
        point = outcomes.VisitPoint(
            visit_id=visit_id,
            date=on_date,
            day=(on_date - subject.day0).days,
            is_baseline_visit=code == "BL",
            values=point_values,
            prednisone_mg=Decimal(f"{values['PRED']:.1f}"),
            weight_kg=Decimal(f"{values['WEIGHT']:.1f}"),
        )
        return items, point

    def _outcomes(self, points: list[outcomes.VisitPoint]) -> None:
        if not points:
            return
        for out in outcomes.compute_outcomes(points, self.ref.outcome_definitions):
            self._add(
                "outcome",
                id=self.ids.take("outcome"),
                visit_id=out.visit_id,
                algorithm_version=outcomes.ALGORITHM_VERSION,
                definitions=self.ref.definitions_json,
                sledai=None if out.sledai is None else str(out.sledai),
                sledai_change=None if out.sledai_change is None else str(out.sledai_change),
                sri4=out.sri4,
                sri4_note=out.sri4_note,
                remission=out.remission or "",
                renal_response=out.renal_response or "",
                flare=out.flare or "",
                relapse=out.relapse,
                changes=json.dumps(out.changes),
                notes=json.dumps(out.notes),
                computed_at=self.now_text,
            )

    def _events(self, rng: random.Random, subject: Subject, transplant_ids: list[int]) -> list[AdverseEvent]:
        """A few adverse events: a fever after the infusion, an infection, a leukopenia, and the death of a
        patient who died."""
        today, day0, days_ago = self.today, subject.day0, subject.days_ago
        events = []
        if rng.random() < 0.08:
            events.append(
                AdverseEvent(
                    transplant_id=transplant_ids[0],
                    term="transient fever after infusion",
                    category=c.AECategory.INFUSION_REACTION,
                    onset_date=day0,
                    resolution_date=min(today, day0 + dt.timedelta(days=1)),
                    grade=1,
                    relatedness=c.Relatedness.PROBABLE,
                    expected=True,
                    outcome=c.AEOutcome.RECOVERED,
                )
            )
        if days_ago > 40 and rng.random() < 0.12:
            onset = day0 + dt.timedelta(days=rng.randint(30, days_ago))
            grade = rng.choice([2, 2, 3])
            serious = grade == 3 and rng.random() < 0.5
            possible = serious and rng.random() < 0.1
            recovered = (today - onset).days > 40
            events.append(
                AdverseEvent(
                    term=rng.choice(INFECTIONS),
                    category=c.AECategory.INFECTION,
                    onset_date=onset,
                    resolution_date=onset + dt.timedelta(days=rng.randint(7, 30)) if recovered else None,
                    grade=grade,
                    serious_hospitalisation=serious,
                    relatedness=c.Relatedness.POSSIBLE if possible else c.Relatedness.UNLIKELY,
                    expected=False,
                    outcome=c.AEOutcome.RECOVERED if recovered else c.AEOutcome.RECOVERING,
                )
            )
        if days_ago > 40 and rng.random() < 0.03:
            onset = day0 + dt.timedelta(days=rng.randint(10, days_ago))
            recovered = (today - onset).days > 20
            events.append(
                AdverseEvent(
                    term="leukopenia",
                    category=c.AECategory.CYTOPENIA,
                    onset_date=onset,
                    resolution_date=onset + dt.timedelta(days=14) if recovered else None,
                    grade=2,
                    relatedness=c.Relatedness.UNLIKELY,
                    expected=True,
                    outcome=c.AEOutcome.RECOVERED if recovered else c.AEOutcome.NOT_RECOVERED,
                )
            )
        if subject.status == pc.PatientStatus.DECEASED:
            events.append(
                AdverseEvent(
                    term=rng.choice(DEATH_CAUSES),
                    category=c.AECategory.DEATH,
                    onset_date=max(day0, subject.status_date - dt.timedelta(days=rng.randint(0, 10))),
                    resolution_date=subject.status_date,
                    grade=5,
                    serious_death=True,
                    relatedness=c.Relatedness.UNRELATED,
                    expected=False,
                    outcome=c.AEOutcome.FATAL,
                )
            )
        return events

    def _adverse_events(self, rng: random.Random, subject: Subject, events: list[AdverseEvent]) -> None:
        """The adverse events, reported (when their clock of `ae_due_dates` runs) a few days after awareness."""
        today = self.today
        for ae in events:
            ae.id, ae.patient_id = self.ids.take("ae"), subject.id
            ae.onset_date = min(ae.onset_date, today)
            ae.aware_date = aware = min(today, ae.onset_date + dt.timedelta(days=rng.randint(0, 2)))
            ae.action_taken = c.AEAction.TREATMENT_GIVEN if ae.grade >= 2 else c.AEAction.NONE
            ae.pre_treatment = ae.onset_date < subject.day0
            ae.initial_report_due, ae.complete_report_due = ae_due_dates(ae)
            if ae.initial_report_due and (today - aware).days > 3:
                ae.initial_report_submitted_on = min(today, aware + dt.timedelta(days=rng.randint(1, 12)))
            if ae.complete_report_due and ae.initial_report_submitted_on and (today - aware).days > 14:
                ae.complete_report_submitted_on = min(today, aware + dt.timedelta(days=rng.randint(8, 15)))
            ae.created_at = ae.updated_at = self._stamp(aware, 15)
            self._add("ae", **vars(ae))

    def _add(self, name: str, **values) -> None:
        """Add a row to table `name` from its values by column (an instance's attributes will do), every column
        of TABLES[name] given; booleans as the writer takes them."""
        row = [values[column] for column in TABLES[name][1]]
        for index in self.booleans[name]:
            row[index] = self.b(row[index])
        self.rows[name].append(tuple(row))
