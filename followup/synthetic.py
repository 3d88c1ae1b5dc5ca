"""A synthetic cohort of any size, written in bulk, for load tests and the benchmark (`manage.py seed_synthetic`).

The reference data (sites, the study with its default template, reminder policy and outcome settings, staff,
donors and released lots) are made through the services. Patients, infusions, visits, results, computed
outcomes and adverse events are then generated in memory and written in bulk: PostgreSQL `COPY` (psycopg 3)
on PostgreSQL, batched INSERTs elsewhere, a chunk of patients per transaction.

The rows follow what the services write: twelve visits per patient from the study's visit definitions with
their windows around day 0 (the local date of the first infusion); completed, missed, open (scheduled, due or
overdue by today's date) and not-required visits (after a withdrawal, loss to follow-up or death); results
in canonical units beside the value and unit as entered (some in the alternative units the catalogue
accepts); SLEDAI-2K totals as the sum of the items recorded at the visit; eGFR computed by CKD-EPI 2021 from
creatinine; the outcomes of every post-transplant visit computed by `followup.outcomes` (their `changes` hold
the codes the outcomes use: SLEDAI-2K, PGA, proteinuria and eGFR); adverse events with the expedited-report
clock of `ae_due_dates`. Differences from data entered through the services: no audit-history rows are
written for the bulk rows, and no concomitant-medication rows (prednisone is the PRED result at each visit).

Subjects are codes only (site code and number); there are no names or record numbers anywhere.

Deterministic: for a given --seed, --today and size, the same rows (ids apart, which follow the database's
sequences). Patient n's values come from `random.Random(f"{seed}:{n}")`. On PostgreSQL (outside a transaction)
the chunks of patients are generated and copied by one process per core, each chunk with its own block of ids.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import zlib
import zoneinfo
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from followup import constants as c
from followup import outcomes
from followup.catalogue import ANALYTES, CANONICAL_PLACES, SLEDAI_ITEMS
from followup.demo import NEGATIVE_SCREENING, _release_tests
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from followup.services import ae_due_dates, outcome_definitions_for
from patients import constants as pc
from patients.models import Patient, TransplantEvent
from registry import constants as rc
from registry.models import CellProduct, Donor, Site, Study, VisitDefinition
from registry.services import donor_save, lot_save, membership_grant, site_create, study_add_site, study_create

DEFAULT_SEED = 2010
STUDY_CODE = "MSCT-SLE-SYN"
FOLLOW_UP_SPAN_DAYS = 6 * 365  # first infusions spread over the last six years
PATIENTS_PER_LOT = 200
CHUNK = 1000  # patients per transaction (and per task of a worker process)

SITE_ZONES = (
    ("CN", "Asia/Shanghai"),
    ("CN", "Asia/Shanghai"),
    ("DE", "Europe/Berlin"),
    ("US", "America/New_York"),
    ("BR", "America/Sao_Paulo"),
    ("AU", "Australia/Sydney"),
    ("IN", "Asia/Kolkata"),
    ("GB", "Europe/London"),
    ("CN", "Asia/Shanghai"),
    ("US", "America/Los_Angeles"),
    ("JP", "Asia/Tokyo"),
    ("ZA", "Africa/Johannesburg"),
)

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


# Where rows go -----------------------------------------------------------------------------------------


TABLES = {
    "patient": (
        Patient,
        (
            "id",
            "study_id",
            "site_id",
            "subject_code",
            "sex",
            "birth_year",
            "diagnosis_date",
            "classification_criteria",
            "refractory_to",
            "refractory_notes",
            "consent_date",
            "status",
            "status_date",
            "status_reason",
            "created_at",
            "updated_at",
        ),
    ),
    "transplant": (
        TransplantEvent,
        (
            "id",
            "patient_id",
            "lot_id",
            "infused_at",
            "infusion_number",
            "weight_kg",
            "dose_cells_per_kg",
            "total_cells",
            "route",
            "duration_minutes",
            "premedication",
            "conditioning",
            "created_at",
            "updated_at",
        ),
    ),
    "visit": (
        Visit,
        (
            "id",
            "patient_id",
            "definition_id",
            "code",
            "label",
            "target_date",
            "window_start",
            "window_end",
            "outcome",
            "actual_date",
            "outcome_reason",
            "deviation_reason",
            "sledai_items",
            "created_at",
            "updated_at",
        ),
    ),
    "result": (
        Result,
        ("id", "visit_id", "code", "value", "entered_value", "entered_unit", "derived", "created_at", "updated_at"),
    ),
    "outcome": (
        ComputedOutcome,
        ("id", "visit_id", *ComputedOutcome.COMPUTED_FIELDS, "computed_at"),
    ),
    "ae": (
        AdverseEvent,
        (
            "id",
            "patient_id",
            "transplant_id",
            "term",
            "category",
            "onset_date",
            "resolution_date",
            "grade",
            "serious_death",
            "serious_life_threatening",
            "serious_hospitalisation",
            "serious_disability",
            "serious_congenital_anomaly",
            "serious_other_important",
            "relatedness",
            "expected",
            "action_taken",
            "outcome",
            "aware_date",
            "initial_report_due",
            "complete_report_due",
            "initial_report_submitted_on",
            "complete_report_submitted_on",
            "description",
            "created_at",
            "updated_at",
        ),
    ),
}
WRITE_ORDER = ("patient", "transplant", "visit", "result", "outcome", "ae")


class BulkWriter:
    """Writes rows (tuples in the column order of TABLES) with COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self):
        self.postgres = connection.vendor == "postgresql"

    def timestamp(self, moment: dt.datetime) -> str:
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
        return text + "+00" if self.postgres else text

    def boolean(self, value: bool | None):
        if value is None:
            return None
        if self.postgres:
            return "t" if value else "f"
        return 1 if value else 0

    def reserve_ids(self, bounds: dict[str, int]) -> dict[str, int]:
        """The first id of a block of `bound` ids per table, taken from its sequence (safe beside other writers)."""
        starts = {}
        with transaction.atomic(), connection.cursor() as cursor:
            for name, bound in bounds.items():
                table = TABLES[name][0]._meta.db_table
                if self.postgres:
                    cursor.execute(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')
                    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                    sequence = cursor.fetchone()[0]
                    cursor.execute(
                        f'SELECT setval(%s, GREATEST((SELECT COALESCE(MAX(id), 0) FROM "{table}"), '
                        f"(SELECT last_value FROM {sequence})) + %s)",
                        [sequence, bound],
                    )
                    starts[name] = cursor.fetchone()[0] - bound + 1
                else:
                    cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')
                    starts[name] = cursor.fetchone()[0] + 1
        return starts

    def drop_secondary_constraints(self, names) -> list[str]:
        """On PostgreSQL, drop the secondary indexes, unique and foreign-key constraints of the tables that are
        empty, and return the statements that put them back: building an index once over a loaded table is
        several times faster than maintaining it row by row (check constraints stay, they cost little)."""
        if not self.postgres:
            return []
        restore: list[str] = []
        with transaction.atomic(), connection.cursor() as cursor:
            for name in names:
                table = TABLES[name][0]._meta.db_table
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")')
                if cursor.fetchone()[0]:
                    continue
                cursor.execute(
                    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
                    [table],
                )
                constraints = cursor.fetchall()
                cursor.execute(
                    "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) ORDER BY i.relname",
                    [table],
                )
                indexes = cursor.fetchall()
                for conname, _, definition in constraints:
                    cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{conname}"')
                    restore.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{conname}" {definition}')
                for index_name, definition in indexes:
                    cursor.execute(f'DROP INDEX "{index_name}"')
                    restore.append(definition)
        return restore

    def restore(self, statements: list[str]) -> None:
        if not statements:
            return
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for statement in statements:
                cursor.execute(statement)

    def write(self, name: str, rows: list[tuple]) -> None:
        if not rows:
            return
        model, columns = TABLES[name]
        table = connection.ops.quote_name(model._meta.db_table)
        names = ", ".join(connection.ops.quote_name(col) for col in columns)
        with connection.cursor() as cursor:
            if self.postgres:
                with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(columns))
                for start in range(0, len(rows), 5000):
                    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows[start : start + 5000])


# Reference data ----------------------------------------------------------------------------------------


@dataclass
class Reference:
    study: Study
    sites: list[Site]
    definitions: list[VisitDefinition]
    lots: list[tuple[int, str, dt.date]]  # (id, tissue source, cryopreserved on), by date
    definitions_json: str = ""
    outcome_definitions: outcomes.OutcomeDefinitions = field(default_factory=outcomes.OutcomeDefinitions)


def default_sites(patients: int) -> int:
    return max(2, min(8, patients // 100))


def seed_reference(*, patients: int, sites: int, seed: int, today: dt.date, study_code: str) -> Reference:
    """Sites, the study with its default template, two staff per site, donors and released lots (via services)."""
    rng = random.Random(f"{seed}:reference")
    with transaction.atomic():
        site_rows = []
        for number in range(1, sites + 1):
            code = f"SYN{number:02d}"
            site = Site.objects.filter(code=code).first()
            if site is None:
                country, zone = SITE_ZONES[(number - 1) % len(SITE_ZONES)]
                site = site_create(
                    code=code,
                    name=f"Synthetic site {number:02d}",
                    country=country,
                    time_zone=zone,
                    contact_email=f"msct-{code.lower()}@example.org",
                    safety_email=f"msct-safety-{code.lower()}@example.org",
                )
            site_rows.append(site)
        study = study_create(
            code=study_code,
            registration_id=f"NCT{zlib.crc32(study_code.encode()) % 10**8:08d}",
            title="Synthetic cohort for load tests (no real patients)",
            phase=rc.StudyPhase.PHASE_2,
            target_enrolment=max(patients, 1),
            status=rc.StudyStatus.RECRUITING,
            safety_contact_email="msct-safety-syn@example.org",
        )
        activated = today - dt.timedelta(days=FOLLOW_UP_SPAN_DAYS + 120)
        user_model = get_user_model()
        for site in site_rows:
            study_add_site(study=study, site=site, activated_on=activated)
            for role in (rc.Role.COORDINATOR, rc.Role.INVESTIGATOR):
                username = f"syn.{role}.{site.code.lower()}"
                user = user_model._default_manager.filter(username=username).first()
                if user is None:
                    user = user_model._default_manager.create_user(
                        username=username, email=f"{username}@example.org", password=None, is_staff=True
                    )
                membership_grant(user=user, site=site, role=role)

        # One lot per PATIENTS_PER_LOT patients, made along the six years (each lasts three years).
        n_lots = max(2, math.ceil(patients / PATIENTS_PER_LOT))
        lots = []
        start = today - dt.timedelta(days=FOLLOW_UP_SPAN_DAYS + 60)
        for number in range(1, n_lots + 1):
            cryopreserved = start + dt.timedelta(days=(number - 1) * FOLLOW_UP_SPAN_DAYS // n_lots)
            bone_marrow = number % 5 == 0
            source = rc.TissueSource.BONE_MARROW if bone_marrow else rc.TissueSource.UMBILICAL_CORD
            donor = donor_save(
                donor=Donor(
                    study=study,
                    site=site_rows[0],
                    code=f"{study_code}-D{number:05d}",
                    relation=rc.DonorRelation.RELATED if bone_marrow else rc.DonorRelation.UNRELATED,
                    sex=rng.choice([rc.Sex.FEMALE, rc.Sex.MALE]),
                    age_at_donation=rng.randint(19, 46) if bone_marrow else None,
                    **NEGATIVE_SCREENING,
                )
            )
            lot = lot_save(
                lot=CellProduct(
                    lot_number=f"{study_code}-L{number:05d}",
                    study=study,
                    site=site_rows[0],
                    donor=donor,
                    tissue_source=source,
                    origin=rc.ProductOrigin.ALLOGENEIC,
                    passage_number=rng.randint(3, 5),
                    cryopreserved_on=cryopreserved,
                    expires_on=cryopreserved + dt.timedelta(days=3 * 365),
                    cells_per_unit=100_000_000,
                    units=600,
                    **_release_tests(rng),
                )
            )
            lots.append((lot.pk, source, cryopreserved))
    definitions = list(VisitDefinition.objects.filter(study=study).order_by("offset_days"))
    ref = Reference(study=study, sites=site_rows, definitions=definitions, lots=lots)
    ref.outcome_definitions = outcome_definitions_for(study.pk)
    ref.definitions_json = json.dumps(ref.outcome_definitions.as_dict())
    return ref


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
        rng = random.Random(f"{self.seed}:{number}")
        ref, today = self.ref, self.today
        site = ref.sites[(number - 1) % len(ref.sites)]
        # Anchors: the first patients show every visit state even in a tiny cohort.
        anchor = number if number <= 4 else 0
        days_ago = rng.randint(0, FOLLOW_UP_SPAN_DAYS)
        if anchor == 1:
            days_ago = 100  # the month-3 window (days 77-105) is open today
        elif anchor == 2:
            days_ago = 400  # the month-12 window has closed recently: left overdue below
        day0 = today - dt.timedelta(days=days_ago)
        sex = "F" if rng.random() < 0.9 else "M"
        age = max(14, min(70, int(rng.gauss(32, 10))))
        consent = day0 - dt.timedelta(days=rng.randint(20, 45))
        diagnosis = day0 - dt.timedelta(days=rng.randint(365, 12 * 365))
        status, status_date, status_reason = pc.PatientStatus.ENROLLED, None, ""
        roll = rng.random()
        if anchor == 3 or (not anchor and roll < 0.03 and days_ago > 60):
            status, status_reason = pc.PatientStatus.WITHDRAWN, "consent withdrawn"
            status_date = day0 + dt.timedelta(days=rng.randint(30, max(31, days_ago)))
        elif not anchor and roll < 0.045 and days_ago > 60:
            status, status_reason = pc.PatientStatus.LOST, "no contact after repeated attempts"
            status_date = day0 + dt.timedelta(days=rng.randint(60, max(61, days_ago)))
        elif not anchor and roll < 0.07 and days_ago > 20:
            status, status_reason = pc.PatientStatus.DECEASED, "death"
            status_date = day0 + dt.timedelta(days=rng.randint(7, max(8, days_ago)))
        elif days_ago > ref.definitions[-1].window_last_day:
            status, status_reason = pc.PatientStatus.COMPLETED, "follow-up completed"
            status_date = day0 + dt.timedelta(days=ref.definitions[-1].window_last_day)
        if status_date is not None and status_date > today:
            status_date = today
        patient_id = self.ids.take("patient")
        created = self._stamp(consent, 9)
        self.rows["patient"].append(
            (
                patient_id,
                ref.study.pk,
                site.pk,
                f"{site.code}-{number:06d}",
                sex,
                day0.year - age,
                diagnosis,
                rng.choice(pc.ClassificationCriteria.values),
                '["cyclophosphamide", "prednisone"]',
                "",
                consent,
                status,
                status_date,
                status_reason,
                created,
                self._stamp(status_date, 11) if status_date else created,
            )
        )

        # Infusions: about a third receive a second on day 7 (double MSCT).
        lot_index = min(
            len(ref.lots) - 1, max(0, int((FOLLOW_UP_SPAN_DAYS - days_ago) / FOLLOW_UP_SPAN_DAYS * len(ref.lots)))
        )
        lot_id, _, _ = ref.lots[lot_index]
        weight = round(rng.uniform(42, 78), 1)
        infusions = 2 if rng.random() < 0.35 and days_ago >= 8 else 1
        transplant_ids = []
        local_hour = rng.randint(9, 11)
        for infusion in range(1, infusions + 1):
            day = day0 + dt.timedelta(days=7 * (infusion - 1))
            local = dt.datetime.combine(day, dt.time(local_hour), tzinfo=self.zones[site.pk])
            transplant_id = self.ids.take("transplant")
            transplant_ids.append(transplant_id)
            stamp = self._stamp(day, 12)
            self.rows["transplant"].append(
                (
                    transplant_id,
                    patient_id,
                    lot_id,
                    self.ts(local.astimezone(dt.UTC)),
                    infusion,
                    f"{weight:.1f}",
                    1_000_000,
                    int(1_000_000 * weight),
                    pc.Route.IV,
                    rng.randint(30, 60),
                    "promethazine 25 mg IM",
                    "cyclophosphamide 1.0 g IV 24 h before" if infusion == 1 else "",
                    stamp,
                    stamp,
                )
            )

        # Disease course.
        responder = rng.random() < 0.78
        relapse_at = rng.choice(["M9", "M12", "M18", "M24"]) if responder and rng.random() < 0.2 else None
        base_sledai = max(6, min(30, round(rng.gauss(12.2, 3.3))))
        base_prot = max(0.2, rng.gauss(2.5, 1.3))
        base_creat = rng.uniform(55, 110)
        base_dsdna = rng.uniform(40, 400)
        base_pred = rng.choice([30, 40, 50, 60])
        relapsed = False
        points = []
        overdue_left = anchor == 2
        window_open_today = False

        for definition in ref.definitions:
            target = day0 + dt.timedelta(days=definition.offset_days)
            start = target - dt.timedelta(days=definition.window_before_days)
            end = target + dt.timedelta(days=definition.window_after_days)
            visit_id = self.ids.take("visit")
            outcome, actual, reason, deviation, items = c.VisitOutcome.OPEN, None, "", "", None
            inactive = status in pc.INACTIVE_STATUSES
            if inactive and end >= status_date:
                outcome = c.VisitOutcome.NOT_REQUIRED
                reason = f"{pc.PatientStatus(status).label} on {status_date.isoformat()}: {status_reason}"
            elif definition.code == "BL":
                outcome, actual = c.VisitOutcome.COMPLETED, day0 - dt.timedelta(days=rng.randint(0, 7))
            elif start > today:
                pass  # scheduled
            elif end >= today:  # the window is open today
                window_open_today = True
                if anchor != 1 and rng.random() < 0.4:
                    actual = start + dt.timedelta(days=rng.randint(0, (today - start).days))
                    outcome = c.VisitOutcome.COMPLETED
            else:  # the window has closed
                recent = (today - end).days <= 60
                roll = rng.random()
                if overdue_left and definition.code == "M12":
                    overdue_left = False
                elif roll < (0.12 if recent else 0.015):
                    pass  # overdue
                elif roll < (0.16 if recent else 0.055) or (anchor == 4 and definition.code == "M1"):
                    outcome, reason = c.VisitOutcome.MISSED, "patient did not attend"
                else:
                    outcome = c.VisitOutcome.COMPLETED
                    spread = max(1, min(definition.window_before_days, definition.window_after_days) // 2)
                    actual = target + dt.timedelta(days=max(-spread, min(spread, round(rng.gauss(0, spread / 2)))))
                    if rng.random() < 0.02:
                        actual = end + dt.timedelta(days=rng.randint(1, 5))
                        deviation = "patient travelling during the window"
                    if actual > today:
                        actual = today
                    if status_date and actual > status_date:
                        outcome, actual, deviation = c.VisitOutcome.MISSED, None, ""
                        reason = "patient did not attend"
            if outcome == c.VisitOutcome.COMPLETED and actual is not None and not (start <= actual <= end):
                deviation = deviation or "visit outside its window"

            created = self._stamp(min(day0, today), 12)
            updated = created
            if outcome == c.VisitOutcome.COMPLETED:
                updated = self._stamp(actual + dt.timedelta(days=1), 10)
                if relapse_at == definition.code:
                    relapsed = True
                activity = 1.0 if not responder else RESPONSE_PATH.get(definition.code, LATE_ACTIVITY)
                if not responder:
                    activity = 0.85 if definition.code not in ("BL", "D7") else 1.0
                if relapsed:
                    activity = 0.75
                items, point = self._results(
                    rng=rng,
                    visit_id=visit_id,
                    code=definition.code,
                    activity=activity,
                    age=age,
                    sex=sex,
                    weight=weight,
                    base=(base_sledai, base_prot, base_creat, base_dsdna, base_pred),
                    stamp=updated,
                )
                if point is not None:
                    points.append(
                        outcomes.VisitPoint(
                            visit_id=visit_id,
                            date=actual,
                            day=(actual - day0).days,
                            is_baseline_visit=definition.code == "BL",
                            values=point[0],
                            prednisone_mg=point[1],
                            weight_kg=point[2],
                        )
                    )
            elif outcome in (c.VisitOutcome.MISSED, c.VisitOutcome.NOT_REQUIRED) and status_date:
                updated = self._stamp(max(status_date, day0), 11)
            self.rows["visit"].append(
                (
                    visit_id,
                    patient_id,
                    definition.pk,
                    definition.code,
                    definition.label,
                    target,
                    start,
                    end,
                    outcome,
                    actual,
                    reason,
                    deviation,
                    None if items is None else json.dumps(items),
                    created,
                    updated,
                )
            )
            self.counts[f"visits {outcome}"] += 1
        if window_open_today:
            self.counts["patients with a window open today"] += 1
        self._outcomes(points)
        self._adverse_events(rng, patient_id, transplant_ids, day0, status, status_date, days_ago)

    def _results(self, *, rng, visit_id, code, activity, age, sex, weight, base, stamp):
        """The results of one completed visit; returns its SLEDAI-2K items and the outcome inputs."""
        base_sledai, base_prot, base_creat, base_dsdna, base_pred = base
        g = rng.gauss
        values: dict[str, float] = {}
        values["PGA"] = max(0.0, min(3.0, 0.3 + 2.2 * activity + g(0, 0.2)))
        values["PROT24H"] = max(0.02, base_prot * (0.2 + 0.8 * activity) * math.exp(g(0, 0.15)))
        values["ALB"] = max(15.0, min(52.0, 40 - 10 * activity + g(0, 2.5)))
        values["CREAT"] = max(45.0, min(400.0, base_creat * (1 + 0.15 * activity) + g(0, 6)))
        values["BUN"] = max(1.0, min(30.0, 4.5 + 3 * activity + g(0, 0.8)))
        values["C3"] = max(0.1, min(2.0, 1.0 - 0.45 * activity + g(0, 0.08)))
        values["C4"] = max(0.02, min(0.6, 0.22 - 0.12 * activity + g(0, 0.03)))
        values["ADSDNA"] = max(1.0, base_dsdna * activity + g(0, 8))
        values["WBC"] = max(1.0, min(20.0, 6.0 - 2.0 * activity + g(0, 0.9)))
        values["PLT"] = max(20.0, min(600.0, 230 - 70 * activity + g(0, 35)))
        values["HGB"] = max(60.0, min(170.0, 128 - 18 * activity + g(0, 7)))
        values["PRED"] = max(5.0, base_pred * activity if activity > 0.2 else rng.choice([5.0, 7.5, 10.0]))
        values["WEIGHT"] = max(35.0, weight + g(0, 1.5))
        codes = SAFETY_CODES if code == "D7" else ALL_CODES
        items = None
        sledai = None
        if "SLEDAI2K" in codes:
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
            target = max(0, min(40, round(base_sledai * activity + g(0, 1.2))))
            items = _sledai_items(target, rng, labs)
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
                text = f"{_egfr(values['CREAT_STORED'], age, sex):.1f}"
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
        prednisone = Decimal(f"{values['PRED']:.1f}")
        return items, (point_values, prednisone, Decimal(f"{values['WEIGHT']:.1f}"))

    def _outcomes(self, points: list[outcomes.VisitPoint]) -> None:
        if not points:
            return
        for out in outcomes.compute_outcomes(points, self.ref.outcome_definitions):
            self.rows["outcome"].append(
                (
                    self.ids.take("outcome"),
                    out.visit_id,
                    outcomes.ALGORITHM_VERSION,
                    self.ref.definitions_json,
                    None if out.sledai is None else str(out.sledai),
                    None if out.sledai_change is None else str(out.sledai_change),
                    self.b(out.sri4),
                    out.sri4_note,
                    out.remission or "",
                    out.renal_response or "",
                    out.flare or "",
                    self.b(out.relapse),
                    json.dumps(out.changes),
                    json.dumps(out.notes),
                    self.now_text,
                )
            )

    def _adverse_events(self, rng, patient_id, transplant_ids, day0, status, status_date, days_ago) -> None:
        today = self.today
        events = []
        if rng.random() < 0.08:
            events.append(
                dict(
                    transplant_id=transplant_ids[0],
                    term="transient fever after infusion",
                    category=c.AECategory.INFUSION_REACTION,
                    onset=day0,
                    resolution=min(today, day0 + dt.timedelta(days=1)),
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
            events.append(
                dict(
                    term=rng.choice(INFECTIONS),
                    category=c.AECategory.INFECTION,
                    onset=onset,
                    resolution=onset + dt.timedelta(days=rng.randint(7, 30)) if (today - onset).days > 40 else None,
                    grade=grade,
                    serious_hospitalisation=serious,
                    relatedness=c.Relatedness.POSSIBLE if possible else c.Relatedness.UNLIKELY,
                    expected=False,
                    outcome=c.AEOutcome.RECOVERED if (today - onset).days > 40 else c.AEOutcome.RECOVERING,
                )
            )
        if days_ago > 40 and rng.random() < 0.03:
            onset = day0 + dt.timedelta(days=rng.randint(10, days_ago))
            events.append(
                dict(
                    term="leukopenia",
                    category=c.AECategory.CYTOPENIA,
                    onset=onset,
                    resolution=onset + dt.timedelta(days=14) if (today - onset).days > 20 else None,
                    grade=2,
                    relatedness=c.Relatedness.UNLIKELY,
                    expected=True,
                    outcome=c.AEOutcome.RECOVERED if (today - onset).days > 20 else c.AEOutcome.NOT_RECOVERED,
                )
            )
        if status == pc.PatientStatus.DECEASED:
            events.append(
                dict(
                    term=rng.choice(DEATH_CAUSES),
                    category=c.AECategory.DEATH,
                    onset=max(day0, status_date - dt.timedelta(days=rng.randint(0, 10))),
                    resolution=status_date,
                    grade=5,
                    serious_death=True,
                    relatedness=c.Relatedness.UNRELATED,
                    expected=False,
                    outcome=c.AEOutcome.FATAL,
                )
            )
        for event in events:
            onset = min(event["onset"], today)
            aware = min(today, onset + dt.timedelta(days=rng.randint(0, 2)))
            ae = AdverseEvent(
                grade=event["grade"],
                serious_death=event.get("serious_death", False),
                serious_hospitalisation=event.get("serious_hospitalisation", False),
                relatedness=event["relatedness"],
                expected=event["expected"],
                aware_date=aware,
            )
            initial_due, complete_due = ae_due_dates(ae)
            initial_on = complete_on = None
            if initial_due and (today - aware).days > 3:
                initial_on = min(today, aware + dt.timedelta(days=rng.randint(1, 12)))
            if complete_due and initial_on and (today - aware).days > 14:
                complete_on = min(today, aware + dt.timedelta(days=rng.randint(8, 15)))
            stamp = self._stamp(aware, 15)
            b = self.b
            self.rows["ae"].append(
                (
                    self.ids.take("ae"),
                    patient_id,
                    event.get("transplant_id"),
                    event["term"],
                    event["category"],
                    onset,
                    event["resolution"],
                    event["grade"],
                    b(event.get("serious_death", False)),
                    b(False),
                    b(event.get("serious_hospitalisation", False)),
                    b(False),
                    b(False),
                    b(False),
                    event["relatedness"],
                    b(event["expected"]),
                    c.AEAction.TREATMENT_GIVEN if event["grade"] >= 2 else c.AEAction.NONE,
                    event["outcome"],
                    aware,
                    initial_due,
                    complete_due,
                    initial_on,
                    complete_on,
                    "",
                    stamp,
                    stamp,
                )
            )


# The whole cohort --------------------------------------------------------------------------------------


def _chunks(patients: int) -> list[tuple[int, int, int]]:
    """(index, first patient, last patient) of each chunk of `CHUNK` patients."""
    return [(i, first, min(first + CHUNK - 1, patients)) for i, first in enumerate(range(1, patients + 1, CHUNK))]


@dataclass
class IdBlocks:
    """The ids reserved for the cohort: from `starts`, a block of `per_chunk` ids per table for each chunk."""

    starts: dict[str, int]
    per_chunk: dict[str, int]


def _generate_chunk(generator: CohortGenerator, blocks: IdBlocks, index: int, first: int, last: int) -> None:
    """Generate the rows of patients `first` to `last` with the ids of chunk `index`'s block: a chunk's rows
    are the same whichever process makes them and in whatever order the chunks are made."""
    generator.ids.next = {name: start + index * blocks.per_chunk[name] for name, start in blocks.starts.items()}
    for number in range(first, last + 1):
        generator.patient(number)


_worker: tuple[CohortGenerator, IdBlocks] | None = None  # set before the workers fork


def _copy_chunk(index: int, first: int, last: int) -> Counter:
    """In a worker process: generate one chunk and copy it, in one transaction on the worker's connection.
    Returns the chunk's counts (rows written, visits by state)."""
    generator, blocks = _worker
    generator.counts = Counter()
    try:
        _generate_chunk(generator, blocks, index, first, last)
        generator.flush()
        return generator.counts
    finally:
        connection.close()


def _generate_parallel(generator: CohortGenerator, blocks: IdBlocks, patients: int, progress) -> None:
    """Chunks generated and copied by one process per core (at least two, so that PostgreSQL copies one chunk
    while Python generates the next): the generation is Python, one core per process."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from django.db import connections

    global _worker
    chunks = _chunks(patients)
    workers = min(len(chunks), max(2, os.cpu_count() or 1))
    connections.close_all()  # a forked process must not share the parent's connection
    _worker = (generator, blocks)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = {pool.submit(_copy_chunk, *chunk): chunk for chunk in chunks}
            for done in as_completed(pending):
                generator.counts.update(done.result())
                if progress:
                    _, first, last = pending[done]
                    progress(last - first + 1)
    finally:
        _worker = None


def upper_bounds(patients: int, n_definitions: int) -> dict[str, int]:
    visits = patients * n_definitions
    return {
        "patient": patients,
        "transplant": 2 * patients,
        "visit": visits,
        "result": visits * len(ALL_CODES),
        "outcome": visits,
        "ae": 4 * patients,
    }


def seed_synthetic(
    *,
    patients: int,
    seed: int = DEFAULT_SEED,
    today: dt.date | None = None,
    sites: int | None = None,
    study_code: str = STUDY_CODE,
    progress: Callable[[int], None] | None = None,
) -> Counter:
    """Create the study `study_code` with `patients` synthetic patients; returns the counts of rows written."""
    from django.utils import timezone

    if Study.objects.filter(code=study_code).exists():
        raise ValueError(f"Study {study_code} exists already; seed another --study code or a fresh database.")
    now = timezone.now()
    today = today or now.date()
    if today < now.date():
        now = dt.datetime.combine(today, dt.time(23, 59), tzinfo=dt.UTC)
    ref = seed_reference(
        patients=patients, sites=sites or default_sites(patients), seed=seed, today=today, study_code=study_code
    )
    writer = BulkWriter()
    # A block of ids per chunk of patients, so that the chunks can be made in any order, by any process.
    chunks = _chunks(patients)
    per_chunk = upper_bounds(min(CHUNK, patients), len(ref.definitions))
    blocks = IdBlocks(writer.reserve_ids({name: n * len(chunks) for name, n in per_chunk.items()}), per_chunk)
    generator = CohortGenerator(ref=ref, seed=seed, today=today, writer=writer, ids=Ids({}), now=now)
    # Dropping indexes and copying from other processes need a connection outside any transaction (not in a
    # test's, for instance); otherwise the rows go in chunk by chunk on this connection.
    fast = writer.postgres and not connection.in_atomic_block
    restore = writer.drop_secondary_constraints(WRITE_ORDER) if fast else []
    try:
        if fast:
            _generate_parallel(generator, blocks, patients, progress)
        else:
            for index, first, last in chunks:
                _generate_chunk(generator, blocks, index, first, last)
                generator.flush()
                if progress:
                    progress(last - first + 1)
    finally:
        writer.restore(restore)
    if writer.postgres:
        with connection.cursor() as cursor:
            for name in WRITE_ORDER:
                cursor.execute(f'ANALYZE "{TABLES[name][0]._meta.db_table}"')
    generator.counts["sites"] = len(ref.sites)
    generator.counts["lots"] = len(ref.lots)
    return generator.counts
