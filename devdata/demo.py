"""A demonstration study modelled on the Nanjing MSCT cohorts in refractory SLE, built through the services.

Everything is written by the same services the admin and the API use (study_create, lot_save,
patient_enroll, transplant_record, visit_record, ae_record, ...), so every rule of the registry holds for
the demo data too. Figures follow docs/clinical-rules.md, "Demo data": SLEDAI-2K 12.2 +/- 3.3 at
baseline falling to about 3 at 12 months in responders (Liang 2010), proteinuria about 2.5 g/24h falling
to under 1 g/24h, a few non-responders, relapses at 9 and 12 months (Wang 2014), herpes zoster and
tuberculosis among the adverse events, one death judged unrelated, and one withdrawal.

Data are deterministic: reference data come from `random.Random(f"{seed}:reference")`, each patient's from
`random.Random(f"{seed}:{subject_code}")`; every date is relative to "now" in the site's time zone.
Patient number n has its first infusion about 730 - 18 * ((n - 1) % 40) days ago, so the first patients
have two years of follow-up and the last a few weeks. Objects are identified by their natural keys (site
code, study code, donor code, lot number, subject code); an object that exists is left as it is, and a
patient that exists is skipped whole, so seeding twice adds nothing.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum

from followup.catalogue import SLEDAI_ITEMS
from followup.constants import AEAction, AECategory, AEOutcome, CTCAEGrade, Relatedness
from followup.models import Result, Visit
from followup.services import ae_record, visit_mark_missed, visit_record
from followup.states import site_today
from patients import constants as pc
from patients.models import Patient, TransplantEvent
from patients.services import medication_record, patient_enroll, patient_withdraw, transplant_record
from registry import constants as rc
from registry.models import CellProduct, Donor, Membership, Site, Study, StudySite
from registry.services import donor_save, lot_save, membership_grant, site_create, study_add_site, study_create

DEFAULT_SEED = 2007  # the year of the first MSCT for lupus in Nanjing
DEFAULT_PATIENTS = 40
COHORT_SIZE = 40  # the infusion dates repeat every 40 patients
DAYS_BETWEEN_PATIENTS = 18
FIRST_PATIENT_DAYS_AGO = 730

STUDY_CODE = "MSCT-SLE-DEMO"
REGISTRATION_ID = "NCT01741857"
STUDY_TITLE = (
    "Allogeneic umbilical cord and bone marrow mesenchymal stem cell transplantation "
    "for refractory systemic lupus erythematosus (demonstration data)"
)

SITES = (
    {
        "code": "NJDT",
        "name": "Nanjing Drum Tower Hospital",
        "country": "CN",
        "time_zone": "Asia/Shanghai",
        "contact_email": "msct-njdt@example.org",
        "safety_email": "msct-safety-njdt@example.org",
        "address": "321 Zhongshan Road, Gulou District, Nanjing, Jiangsu",
    },
    {
        "code": "JSPH",
        "name": "Jiangsu Province Hospital",
        "country": "CN",
        "time_zone": "Asia/Shanghai",
        "contact_email": "msct-jsph@example.org",
        "safety_email": "msct-safety-jsph@example.org",
        "address": "300 Guangzhou Road, Gulou District, Nanjing, Jiangsu",
    },
)
MANUFACTURING_SITE = "NJDT"

STAFF = (
    ("coordinator.njdt", "NJDT", rc.Role.COORDINATOR),
    ("investigator.njdt", "NJDT", rc.Role.INVESTIGATOR),
    ("coordinator.jsph", "JSPH", rc.Role.COORDINATOR),
)

# Umbilical cord lots, one per slice of 8 consecutive patients (one set per cohort of 40), and a lot that
# failed release (CD34 4%), which nobody receives.
UC_LOTS_PER_COHORT = COHORT_SIZE // 8
UC_CELLS_PER_UNIT = 100_000_000
UC_UNITS = 12
BM_CELLS_PER_UNIT = 100_000_000
BM_UNITS = 2
DOSE_CELLS_PER_KG = 1_000_000
FAILED_LOT_NUMBER = "MSC-UC-090"

# Who is who among the first patients (patient numbers); the pattern is chosen so that 8 patients already
# show single and double infusions, both cell sources, both sites, a relapse, a death and a withdrawal.
RELAPSE_AT = {2: "M9", 6: "M12", 16: "M12", 22: "M9"}
NON_RESPONDERS = {8, 21, 30}
DEATH = {3: (185, 192)}  # onset day, day of death
WITHDRAWAL = {5: 300}  # day of withdrawal
INFUSION_FEVER = {1, 9, 18, 26, 35}
HERPES_ZOSTER = {7: 135, 12: 291, 19: 187}  # onset day (Wang 2014, Table 2)
TUBERCULOSIS = {4: 326}
OVERDUE = {27, 33, 38}  # the latest visit whose window closed is left without data
MISSED = {13: "M3", 24: "M3"}

# Share of the baseline-to-12-month change reached at each visit (SLEDAI-2K and prednisone).
SLEDAI_PATH = {"BL": 1.0, "M1": 0.6, "M3": 0.35, "M6": 0.15, "M9": 0.05}
PREDNISONE_PATH = {"BL": 1.0, "D7": 1.0, "M1": 0.85, "M3": 0.55, "M6": 0.25, "M9": 0.1}
POST_RELAPSE_PREDNISONE = (30, 20, 15, 10, 10, 10)

# Items other than those read from the laboratory (proteinuria, low complement, anti-dsDNA).
CLINICAL_ITEMS = (
    "haematuria",
    "urinary_casts",
    "pyuria",
    "arthritis",
    "myositis",
    "rash",
    "alopecia",
    "mucosal_ulcers",
    "pleurisy",
    "pericarditis",
    "fever",
    "thrombocytopenia",
    "leukopenia",
)
PROTEINURIA_ITEM_ABOVE = Decimal("0.5")  # g/24h
LOW_C3_BELOW = Decimal("0.9")  # g/L
DSDNA_POSITIVE_ABOVE = Decimal("30")  # IU/mL


@dataclass
class DemoReference:
    """The objects every demo patient refers to."""

    study: Study
    sites: dict[str, Site]
    uc_lots: dict[int, list[CellProduct]] = field(default_factory=dict)  # cohort -> lots by slice


# Helpers -----------------------------------------------------------------------------------------------


def subject_code(number: int) -> str:
    """The subject code of patient `number` (1-based): the site code and the number."""
    return f"{site_code_for(number)}-{number:03d}"


def site_code_for(number: int) -> str:
    return "JSPH" if number % 6 == 0 else "NJDT"


def is_bone_marrow(number: int) -> bool:
    return number % 5 == 2  # 8 of every 40 patients (20%); the rest umbilical cord


def is_double(number: int) -> bool:
    return number % 3 == 1  # about a third: a second infusion on day 7


def days_since_first_infusion(number: int, rng: random.Random) -> int:
    slot = (number - 1) % COHORT_SIZE
    return FIRST_PATIENT_DAYS_AGO - DAYS_BETWEEN_PATIENTS * slot + rng.randint(-4, 4)


def _dec(value: float, places: int) -> Decimal:
    return Decimal(str(round(value, places)))


def _round_to(value: float, step: float) -> float:
    return round(value / step) * step


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _days(n: int) -> dt.timedelta:
    return dt.timedelta(days=n)


# Reference data: sites, study, staff, donors and lots -----------------------------------------------------


def seed_reference(*, seed: int, patients: int, now: dt.datetime) -> tuple[DemoReference, Counter]:
    """Create (or find) the sites, the study, the staff and the umbilical cord lots; return them and counts."""
    counts: Counter = Counter()
    rng = random.Random(f"{seed}:reference")
    with transaction.atomic():
        sites: dict[str, Site] = {}
        for spec in SITES:
            site = Site.objects.filter(code=spec["code"]).first()
            if site is None:
                site = site_create(**spec)
                counts["sites"] += 1
            sites[site.code] = site
        today = site_today(sites[MANUFACTURING_SITE], now)

        study = Study.objects.filter(code=STUDY_CODE).first()
        if study is None:
            study = study_create(
                code=STUDY_CODE,
                registration_id=REGISTRATION_ID,
                title=STUDY_TITLE,
                phase=rc.StudyPhase.PHASE_1_2,
                target_enrolment=DEFAULT_PATIENTS,
                status=rc.StudyStatus.RECRUITING,
                sponsor="The Affiliated Drum Tower Hospital of Nanjing University Medical School",
                safety_contact_email="msct-safety@example.org",
            )
            counts["studies"] += 1
        for site in sites.values():
            if not StudySite.objects.filter(study=study, site=site).exists():
                study_add_site(study=study, site=site, activated_on=today - _days(FIRST_PATIENT_DAYS_AGO + 60))
                counts["study sites"] += 1

        for username, site_code, role in STAFF:
            user, made = staff_user(username)
            if made:
                counts["users"] += 1
            if not Membership.objects.filter(user=user, site=sites[site_code], role=role).exists():
                membership_grant(user=user, site=sites[site_code], role=role)
                counts["memberships"] += 1

        reference = DemoReference(study=study, sites=sites)
        manufacturer = sites[MANUFACTURING_SITE]
        for cohort in range(math.ceil(patients / COHORT_SIZE)):
            lots = []
            for slice_ in range(UC_LOTS_PER_COHORT):
                number = cohort * 100 + slice_ + 1
                # Made shortly before the first infusion of its slice of 8 patients; 3 years' shelf life.
                cryopreserved = today - _days(FIRST_PATIENT_DAYS_AGO + 15 - DAYS_BETWEEN_PATIENTS * 8 * slice_)
                lots.append(
                    _uc_lot(
                        study=study,
                        site=manufacturer,
                        donor_code=f"DON-UC-{number:03d}",
                        lot_number=f"MSC-UC-{number:03d}",
                        cryopreserved=cryopreserved,
                        rng=rng,
                        counts=counts,
                    )
                )
            reference.uc_lots[cohort] = lots
        _uc_lot(
            study=study,
            site=manufacturer,
            donor_code="DON-UC-090",
            lot_number=FAILED_LOT_NUMBER,
            cryopreserved=today - _days(420),
            rng=rng,
            counts=counts,
            cd34_pct=Decimal("4.00"),  # fails the ISCT criterion CD34 <= 2%
        )
    return reference, counts


def staff_user(username: str) -> tuple:
    """The staff user `username` (an e-mail at example.org, no usable password), made if missing; and whether
    it was made."""
    manager = get_user_model()._default_manager
    user = manager.filter(username=username).first()
    if user is not None:
        return user, False
    return manager.create_user(username=username, email=f"{username}@example.org", password=None, is_staff=True), True


def _release_tests(rng: random.Random) -> dict:
    """Release test results meeting every ISCT criterion and lot test."""
    return {
        "plastic_adherent": True,
        "cd105_pct": _dec(rng.uniform(96.0, 99.8), 2),
        "cd73_pct": _dec(rng.uniform(97.0, 99.9), 2),
        "cd90_pct": _dec(rng.uniform(96.5, 99.9), 2),
        "cd45_pct": _dec(rng.uniform(0.1, 1.2), 2),
        "cd34_pct": _dec(rng.uniform(0.1, 1.0), 2),
        "cd14_or_cd11b_pct": _dec(rng.uniform(0.1, 1.5), 2),
        "cd79a_or_cd19_pct": _dec(rng.uniform(0.1, 1.0), 2),
        "hla_dr_pct": _dec(rng.uniform(0.1, 1.5), 2),
        "trilineage_shown": True,
        "viability_pct": _dec(rng.uniform(88.0, 97.0), 2),
        "sterility": rc.TestOutcome.NEGATIVE,
        "mycoplasma": rc.TestOutcome.NEGATIVE,
        "endotoxin_eu_per_ml": _dec(rng.uniform(0.05, 0.3), 3),
        "karyotype": rc.Karyotype.NORMAL,
    }


NEGATIVE_SCREENING = {name: rc.ScreeningResult.NEGATIVE for name in rc.DONOR_SCREENING_TESTS}


def _uc_lot(*, study, site, donor_code, lot_number, cryopreserved, rng, counts, **overrides) -> CellProduct:
    # Draw the random values first, so that what exists does not shift the values of what follows.
    donor_sex = rng.choice([rc.Sex.FEMALE, rc.Sex.MALE])
    tests = {**_release_tests(rng), **overrides}
    passage = rng.randint(3, 5)
    lot = CellProduct.objects.filter(lot_number=lot_number).first()
    if lot is not None:
        return lot
    donor = Donor.objects.filter(study=study, code=donor_code).first()
    if donor is None:
        donor = donor_save(
            donor=Donor(
                study=study,
                site=site,
                code=donor_code,
                relation=rc.DonorRelation.UNRELATED,
                sex=donor_sex,
                age_at_donation=None,
                **NEGATIVE_SCREENING,
            )
        )
        counts["donors"] += 1
    lot = lot_save(
        lot=CellProduct(
            lot_number=lot_number,
            study=study,
            site=site,
            donor=donor,
            tissue_source=rc.TissueSource.UMBILICAL_CORD,
            origin=rc.ProductOrigin.ALLOGENEIC,
            passage_number=passage,
            cryopreserved_on=cryopreserved,
            expires_on=cryopreserved + _days(3 * 365),
            cells_per_unit=UC_CELLS_PER_UNIT,
            units=UC_UNITS,
            **tests,
        )
    )
    counts["lots"] += 1
    return lot


def _bm_lot(*, reference: DemoReference, number: int, day0: dt.date, rng: random.Random, counts) -> CellProduct:
    """The bone marrow lot from the patient's own family donor (Sun 2009: relatives aged 19-46)."""
    lot_number = f"MSC-BM-{number:03d}"
    lot = CellProduct.objects.filter(lot_number=lot_number).first()
    if lot is not None:
        return lot
    study, site = reference.study, reference.sites[MANUFACTURING_SITE]
    donor_code = f"DON-BM-{number:03d}"
    donor = Donor.objects.filter(study=study, code=donor_code).first()
    if donor is None:
        donor = donor_save(
            donor=Donor(
                study=study,
                site=site,
                code=donor_code,
                relation=rc.DonorRelation.RELATED,
                sex=rng.choice([rc.Sex.FEMALE, rc.Sex.MALE]),
                age_at_donation=rng.randint(19, 46),
                **NEGATIVE_SCREENING,
            )
        )
        counts["donors"] += 1
    cryopreserved = day0 - _days(rng.randint(10, 30))
    lot = lot_save(
        lot=CellProduct(
            lot_number=lot_number,
            study=study,
            site=site,
            donor=donor,
            tissue_source=rc.TissueSource.BONE_MARROW,
            origin=rc.ProductOrigin.ALLOGENEIC,
            passage_number=rng.randint(3, 5),
            cryopreserved_on=cryopreserved,
            expires_on=cryopreserved + _days(2 * 365),
            cells_per_unit=BM_CELLS_PER_UNIT,
            units=BM_UNITS,
            **_release_tests(rng),
        )
    )
    counts["lots"] += 1
    return lot


def _cells_left(lot: CellProduct) -> int:
    used = TransplantEvent.objects.filter(lot=lot).aggregate(total=Sum("total_cells"))["total"] or 0
    return lot.total_cells - used


def _pick_uc_lot(reference: DemoReference, number: int, first: dt.date, last: dt.date, cells: int) -> CellProduct:
    """The lot of the patient's slice, or else any released cord lot usable on those dates with the cells."""
    cohort, slot = divmod(number - 1, COHORT_SIZE)
    lots = reference.uc_lots.get(cohort) or [lot for lots in reference.uc_lots.values() for lot in lots]
    preferred = lots[min(slot // 8, len(lots) - 1)]
    usable = CellProduct.objects.filter(
        study=reference.study,
        tissue_source=rc.TissueSource.UMBILICAL_CORD,
        release_status=rc.ReleaseStatus.RELEASED,
        cryopreserved_on__lte=first,
        expires_on__gte=last,
    ).order_by("lot_number")
    candidates = [lot for lot in usable if lot.pk == preferred.pk] + [lot for lot in usable if lot.pk != preferred.pk]
    for lot in candidates:
        if _cells_left(lot) >= cells:
            return lot
    return preferred  # transplant_record will say why it cannot be used


# Clinical course ---------------------------------------------------------------------------------------


@dataclass
class VisitPlan:
    """What is recorded at one visit: SLEDAI-2K items and results (value, unit as entered)."""

    items: list[str] | None
    results: dict[str, tuple[Decimal, str]]


@dataclass
class Course:
    """A patient's disease course: SLEDAI-2K targets and prednisone per visit code, and lab anchors."""

    kind: str  # responder, non_responder, relapse
    sledai: dict[str, int]
    prednisone: dict[str, float]
    prot0: float
    c3_0: float
    c3_normal: float
    dsdna0: float
    creat0: float
    pga0: float
    weight0: float


def plan_course(*, number: int, rng: random.Random, codes: list[str], sex: str) -> Course:
    """SLEDAI-2K and prednisone per visit code for a responder, a non-responder or a relapse."""
    relapse_at = RELAPSE_AT.get(number)
    kind = "relapse" if relapse_at else "non_responder" if number in NON_RESPONDERS else "responder"
    base = int(_clip(round(rng.gauss(12.2, 3.3)), 8, 22))
    if kind == "non_responder":
        end = base - rng.randint(0, 3)
    else:
        end = int(_clip(round(rng.gauss(2.4, 2.0)), 0, min(8, base - 4)))
    pred0 = rng.choice([20, 25, 30, 30, 30, 35, 40, 45])
    pred_end = rng.choice([15, 20, 25]) if kind == "non_responder" else rng.choice([5, 7.5, 10, 10, 12.5, 12.5, 15])

    sledai: dict[str, int] = {}
    prednisone: dict[str, float] = {}
    previous = None
    relapsed_at_index = None
    for index, code in enumerate(codes):
        share = PREDNISONE_PATH.get(code, 0.0)
        prednisone[code] = _round_to(pred_end + (pred0 - pred_end) * share, 2.5)
        if code == "D7":
            continue  # an early safety visit: no SLEDAI-2K
        if code == "BL":
            value = base
        elif relapse_at and code == relapse_at:
            value = previous + rng.randint(4, 8)  # a flare after remission
            relapsed_at_index = index
        elif relapsed_at_index is not None:
            value = max(end + 2, previous - rng.randint(3, 5))  # treated, settling again
        else:
            value = round(end + (base - end) * SLEDAI_PATH.get(code, 0.0) + rng.gauss(0, 0.8))
            if code not in SLEDAI_PATH:  # after 12 months: stable around the 12-month value
                value = sledai.get("M12", end) + rng.choice([-1, 0, 0, 1])
            value = min(value, previous + 2)  # no unintended flare (a rise of 3 or more)
        if kind == "non_responder":
            value = max(value, base - 3)  # never the 4-point fall of a partial remission
        if kind == "relapse" and code == "M6":
            value = min(value, 8, base - 4)  # in remission before the relapse
        value = int(_clip(value, 0, 30))
        sledai[code] = value
        previous = value
    if relapsed_at_index is not None:
        for offset, code in enumerate(codes[relapsed_at_index + 1 :]):
            prednisone[code] = POST_RELAPSE_PREDNISONE[min(offset, len(POST_RELAPSE_PREDNISONE) - 1)]

    female = sex == rc.Sex.FEMALE
    return Course(
        kind=kind,
        sledai=sledai,
        prednisone=prednisone,
        prot0=_clip(rng.gauss(2.5, 1.3), 0.7, 7.0),
        c3_0=_clip(rng.gauss(0.5, 0.15), 0.2, 0.85),
        c3_normal=_clip(rng.gauss(0.98, 0.1), 0.8, 1.3),
        dsdna0=_clip(math.exp(rng.gauss(math.log(180), 0.6)), 40, 1500),
        creat0=_clip(rng.gauss(80 if female else 92, 10), 55, 120),
        pga0=rng.uniform(1.8, 2.6),
        weight0=_clip(rng.gauss(56, 7) if female else rng.gauss(66, 8), 42, 85),
    )


def _choose_items(
    *, total: int, proteinuria: bool, low_c3: bool, dsdna: bool, previous: list[str], rng: random.Random
) -> list[str]:
    """SLEDAI-2K items that sum to `total`: laboratory items first when the values call for them, then
    the clinical items the patient already had, then others."""
    chosen: list[str] = []
    left = total
    for item, wanted in (("proteinuria", proteinuria), ("low_complement", low_c3), ("increased_dna_binding", dsdna)):
        weight = SLEDAI_ITEMS[item].weight
        if wanted and weight <= left:
            chosen.append(item)
            left -= weight
    kept = [item for item in previous if item in CLINICAL_ITEMS]
    for attempt in range(2):
        picked, remaining = [], left
        if attempt == 0:
            for item in kept:
                if SLEDAI_ITEMS[item].weight <= remaining:
                    picked.append(item)
                    remaining -= SLEDAI_ITEMS[item].weight
        pool = [item for item in CLINICAL_ITEMS if item not in picked]
        rng.shuffle(pool)
        pool.sort(key=lambda item: -SLEDAI_ITEMS[item].weight)
        for item in pool:
            if SLEDAI_ITEMS[item].weight <= remaining:
                picked.append(item)
                remaining -= SLEDAI_ITEMS[item].weight
        if remaining == 0:
            return sorted(chosen + picked)
    raise ValueError(f"no SLEDAI-2K items sum to {total}")  # pragma: no cover (the pool covers 0-33)


def _not_measured(visit, plan) -> dict[str, str]:
    """The required items of `visit` the demonstration centre did not measure (C4, for one), said not done."""
    present = {*plan.results, *(["SLEDAI2K"] if plan.items is not None else [])}
    required = visit.definition.required_items if visit.definition_id else []
    return {code: "not_done" for code in required if code not in present}


def plan_visit(
    *, code: str, course: Course, previous_items: list[str], rng: random.Random, units: dict[str, str]
) -> VisitPlan:
    """Items and results for one visit, coherent with each other (e.g. the proteinuria item with PROT24H)."""
    pred = course.prednisone[code]
    creat = course.creat0 * rng.uniform(0.93, 1.07)
    results: dict[str, tuple[Decimal, str]] = {"PRED": (_dec(pred, 1), "mg/day")}
    total = course.sledai.get(code)
    activity = 1.0 if total is None else total / course.sledai["BL"]
    weight = course.weight0 - 2.0 * (1 - min(activity, 1.0)) + rng.gauss(0, 0.5)
    results["WEIGHT"] = (_dec(weight, 1), "kg")
    results["CREAT"] = _in_unit("CREAT", creat, units)
    if total is None:
        return VisitPlan(items=None, results=results)

    prot = course.prot0 * (0.1 + 0.9 * activity) * rng.uniform(0.85, 1.15)
    c3 = course.c3_normal - (course.c3_normal - course.c3_0) * min(activity, 1.0) + rng.gauss(0, 0.03)
    dsdna = course.dsdna0 * (0.08 + 0.92 * activity) * rng.uniform(0.8, 1.2)
    items = _choose_items(
        total=total,
        proteinuria=prot > 0.5,
        low_c3=c3 < 0.9,
        dsdna=dsdna > 30,
        previous=previous_items,
        rng=rng,
    )
    # Make the laboratory values agree with the items scored.
    prot = max(prot, rng.uniform(0.55, 0.8)) if "proteinuria" in items else min(prot, rng.uniform(0.15, 0.45))
    c3 = min(c3, rng.uniform(0.7, 0.88)) if "low_complement" in items else max(c3, rng.uniform(0.9, 1.05))
    dsdna = max(dsdna, rng.uniform(35, 60)) if "increased_dna_binding" in items else min(dsdna, rng.uniform(5, 28))
    pga = _clip(0.2 + course.pga0 * activity + rng.gauss(0, 0.15), 0, 3)
    results["PROT24H"] = _in_unit("PROT24H", prot, units)
    results["C3"] = _in_unit("C3", c3, units)
    results["ADSDNA"] = (_dec(dsdna, 0), "IU/mL")
    results["PGA"] = (_dec(pga, 1), "0-3")
    return VisitPlan(items=items, results=results)


def _in_unit(code: str, canonical: float, units: dict[str, str]) -> tuple[Decimal, str]:
    """The value as the site's laboratory reports it."""
    unit = units[code]
    if code == "PROT24H":
        return (_dec(canonical * 1000, 0), unit) if unit == "mg/24h" else (_dec(canonical, 2), unit)
    if code == "C3":
        return (_dec(canonical * 100, 0), unit) if unit == "mg/dL" else (_dec(canonical, 2), unit)
    if code == "CREAT":
        return (_dec(canonical / 88.4, 2), unit) if unit == "mg/dL" else (_dec(canonical, 0), unit)
    raise KeyError(code)


def _visit_date(visit: Visit, rng: random.Random, *, not_before: dt.date, today: dt.date) -> dt.date:
    first = max(visit.window_start, not_before)
    last = min(visit.window_end, today)
    if visit.code == "BL":
        first, last = max(first, visit.window_end - _days(7)), visit.window_end - _days(1)
    low = max(first, visit.target_date - _days(7))
    high = min(last, visit.target_date + _days(7))
    if low > high:
        low, high = first, last
    return low + _days(rng.randint(0, (high - low).days))


# Patients ----------------------------------------------------------------------------------------------


def seed_patient(*, reference: DemoReference, number: int, seed: int, now: dt.datetime) -> Counter:
    """Enrol patient `number` with infusions, visits, medications and adverse events, in one transaction.

    Returns the counts of what was added (empty when the subject code already exists in the study).
    """
    code = subject_code(number)
    counts: Counter = Counter()
    if Patient.objects.filter(study=reference.study, subject_code=code).exists():
        return counts
    rng = random.Random(f"{seed}:{code}")
    site = reference.sites[site_code_for(number)]
    today = site_today(site, now)
    with transaction.atomic():
        _seed_patient(reference=reference, number=number, code=code, site=site, today=today, rng=rng, counts=counts)
    return counts


def _seed_patient(*, reference, number, code, site, today, rng, counts) -> None:
    """The patient, then its infusions, visits, medications and adverse events, drawn from `rng` in that order;
    a patient due to withdraw by today withdraws last."""
    patient, day0 = _enrol(reference=reference, number=number, code=code, site=site, today=today, rng=rng)
    counts["patients"] += 1
    codes = list(reference.study.visit_definitions.order_by("offset_days").values_list("code", flat=True))
    course = plan_course(number=number, rng=rng, codes=codes, sex=patient.sex)
    transplants = _seed_infusions(
        patient=patient, reference=reference, number=number, day0=day0, course=course, rng=rng, counts=counts
    )
    exit_day = WITHDRAWAL.get(number) or (DEATH[number][1] if number in DEATH else None)
    exit_date = day0 + _days(exit_day) if exit_day is not None else None
    recorded = _seed_visits(
        patient=patient,
        number=number,
        course=course,
        transplants=transplants,
        exit_date=exit_date,
        today=today,
        rng=rng,
        counts=counts,
    )
    _seed_medications(patient=patient, recorded=recorded, exit_date=exit_date, rng=rng, counts=counts)
    _seed_adverse_events(
        patient=patient, number=number, day0=day0, transplant=transplants[0], today=today, rng=rng, counts=counts
    )
    if number in WITHDRAWAL and exit_date <= today:
        patient_withdraw(
            patient=patient,
            on_date=exit_date,
            reason="Withdrew consent for further follow-up (moved to another province).",
        )
        counts["withdrawals"] += 1


def _enrol(*, reference, number, code, site, today, rng) -> tuple[Patient, dt.date]:
    """Enrol the patient (its first infusion some months or years ago, by its number); returns it and day 0."""
    day0 = today - _days(days_since_first_infusion(number, rng))
    sex = rc.Sex.FEMALE if rng.random() < 0.9 else rc.Sex.MALE
    age = rng.randint(18, 55)
    birth_year = day0.year - age
    years_ill = rng.uniform(2.0, min(12.0, age - 12))
    diagnosis = max(day0 - _days(round(365.25 * years_ill)), dt.date(birth_year + 12, 1, 1))
    consent = day0 - _days(rng.randint(14, 30))
    refractory = [pc.Drug.CYCLOPHOSPHAMIDE, pc.Drug.PREDNISONE]
    refractory += rng.sample([pc.Drug.MYCOPHENOLATE, pc.Drug.HYDROXYCHLOROQUINE, pc.Drug.TACROLIMUS], rng.randint(0, 2))
    patient = patient_enroll(
        study=reference.study,
        site=site,
        subject_code=code,
        sex=sex,
        birth_year=birth_year,
        diagnosis_date=diagnosis,
        classification_criteria=rng.choice(
            [pc.ClassificationCriteria.ACR_1997] * 4 + [pc.ClassificationCriteria.SLICC_2012]
        ),
        consent_date=consent,
        refractory_to=refractory,
        refractory_notes="Active lupus despite at least 6 months of cyclophosphamide and glucocorticoids.",
    )
    return patient, day0


def _seed_infusions(*, patient, reference, number, day0, course, rng, counts) -> list[TransplantEvent]:
    """1 x 10^6 cells/kg on day 0, and on day 7 for a double MSCT, from a bone marrow or umbilical cord lot."""
    site = patient.site
    weight = _dec(course.weight0, 1)
    infusion_days = [0, 7] if is_double(number) else [0]
    cells = int(weight * DOSE_CELLS_PER_KG) * len(infusion_days)
    if is_bone_marrow(number):
        lot = _bm_lot(reference=reference, number=number, day0=day0, rng=rng, counts=counts)
    else:
        lot = _pick_uc_lot(reference, number, day0, day0 + _days(infusion_days[-1]), cells)
    conditioning = ""
    if is_bone_marrow(number) or rng.random() < 0.3:
        conditioning = f"Cyclophosphamide {rng.choice(['0.8', '1.0', '1.2', '1.4', '1.6', '1.8'])} g IV 24 h before"
    transplants = []
    for day in infusion_days:
        moment = dt.datetime.combine(
            day0 + _days(day), dt.time(rng.randint(9, 11), rng.choice([0, 15, 30, 45])), tzinfo=site.zone
        )
        transplants.append(
            transplant_record(
                patient=patient,
                lot=lot,
                infused_at=moment,
                weight_kg=weight,
                dose_cells_per_kg=DOSE_CELLS_PER_KG,
                duration_minutes=rng.choice([30, 40, 45, 60]),
                premedication="" if rng.random() < 0.5 else "Promethazine 25 mg IM",
                conditioning=conditioning if day == 0 else "",
            )
        )
        counts["infusions"] += 1
    return transplants


def _seed_visits(*, patient, number, course, transplants, exit_date, today, rng, counts) -> list[tuple]:
    """Every visit whose window closed by today (and before the patient left) is recorded, except a missed
    one and, for some patients, the latest left overdue. Returns (date, prednisone) of each recorded visit."""
    site = patient.site
    njdt_mg = site.code == "NJDT" and rng.random() < 0.4
    units = {
        "PROT24H": "mg/24h" if njdt_mg else "g/24h",
        "CREAT": "mg/dL" if site.code == "JSPH" else "umol/L",
        "C3": "mg/dL" if site.code == "JSPH" else "g/L",
    }
    visits = list(patient.visits.filter(definition__isnull=False).select_related("definition").order_by("target_date"))
    closed = [v for v in visits if v.window_end < today and (exit_date is None or v.window_end < exit_date)]
    left_open = {closed[-1].code} if number in OVERDUE and len(closed) > 2 else set()
    previous_items: list[str] = []
    recorded: list[tuple[dt.date, float]] = []
    consent = last_date = patient.consent_date
    for visit in closed:
        plan = plan_visit(code=visit.code, course=course, previous_items=previous_items, rng=rng, units=units)
        if visit.code in left_open:
            continue
        if MISSED.get(number) == visit.code:
            visit_mark_missed(visit=visit, reason="The patient could not travel to the clinic; no assessment done.")
            counts["visits missed"] += 1
            continue
        if visit.code == "D7" and is_double(number):
            on_date = transplants[1].infused_at.astimezone(site.zone).date()
        else:
            on_date = _visit_date(visit, rng, not_before=max(last_date, consent), today=today)
        visit_record(
            visit=visit,
            actual_date=on_date,
            results=plan.results,
            sledai_items=plan.items,
            not_done=_not_measured(visit, plan),
        )
        counts["visits recorded"] += 1
        last_date = on_date + _days(1)
        if plan.items is not None:
            previous_items = plan.items
        recorded.append((on_date, course.prednisone[visit.code]))
    counts["results"] += Result.objects.filter(visit__patient=patient).count()
    return recorded


def _seed_medications(*, patient, recorded, exit_date, rng, counts) -> None:
    """Prednisone as a concomitant medication (about half the patients), and hydroxychloroquine for some."""
    if recorded and rng.random() < 0.5:
        steps: list[tuple[dt.date, float]] = []
        for on_date, dose in recorded:
            if not steps or steps[-1][1] != dose:
                steps.append((on_date, dose))
        start = max(patient.diagnosis_date, patient.consent_date - _days(rng.randint(60, 240)))
        steps[0] = (start, steps[0][1])
        for index, (begin, dose) in enumerate(steps):
            stop = steps[index + 1][0] - _days(1) if index + 1 < len(steps) else exit_date
            medication_record(
                patient=patient,
                drug=pc.Drug.PREDNISONE,
                dose=_dec(dose, 1),
                unit=pc.DoseUnit.MG,
                frequency=pc.Frequency.DAILY,
                start_date=begin,
                stop_date=stop,
            )
            counts["medications"] += 1
    if rng.random() < 0.4:
        medication_record(
            patient=patient,
            drug=pc.Drug.HYDROXYCHLOROQUINE,
            dose=Decimal("200"),
            unit=pc.DoseUnit.MG,
            frequency=pc.Frequency.BID,
            start_date=patient.diagnosis_date + _days(30),
            stop_date=exit_date,
        )
        counts["medications"] += 1


def _seed_adverse_events(*, patient, number, day0, transplant, today, rng, counts) -> None:
    """Adverse events of the published MSCT tables: transient fever, herpes zoster, tuberculosis, a death."""

    def add(**fields):
        if fields["onset_date"] > today or (fields.get("resolution_date") or fields["onset_date"]) > today:
            return
        ae_record(patient=patient, **fields)
        counts["adverse events"] += 1

    if number in INFUSION_FEVER:
        add(
            transplant=transplant,
            term="Transient fever after infusion (38.4 °C)",
            category=AECategory.INFUSION_REACTION,
            onset_date=day0,
            resolution_date=day0 + _days(1),
            grade=CTCAEGrade.MILD,
            relatedness=Relatedness.POSSIBLE,
            expected=True,
            action_taken=AEAction.NONE,
            outcome=AEOutcome.RECOVERED,
            aware_date=day0,
            description="Fever within 6 hours of the infusion, settled without treatment by the next day.",
        )
    if number in HERPES_ZOSTER:
        onset = day0 + _days(HERPES_ZOSTER[number])
        add(
            term="Herpes zoster",
            category=AECategory.INFECTION,
            onset_date=onset,
            resolution_date=onset + _days(rng.randint(18, 30)),
            grade=CTCAEGrade.MODERATE,
            relatedness=Relatedness.UNLIKELY,
            expected=False,
            action_taken=AEAction.TREATMENT_GIVEN,
            outcome=AEOutcome.RECOVERED,
            aware_date=onset + _days(rng.randint(1, 4)),
            description="Thoracic dermatomal zoster; oral valaciclovir.",
        )
    if number in TUBERCULOSIS:
        onset = day0 + _days(TUBERCULOSIS[number])
        resolution = onset + _days(240)
        add(
            term="Pulmonary tuberculosis",
            category=AECategory.INFECTION,
            onset_date=onset,
            resolution_date=resolution if resolution <= today else None,
            grade=CTCAEGrade.SEVERE,
            serious_hospitalisation=True,
            relatedness=Relatedness.UNLIKELY,
            expected=False,
            action_taken=AEAction.HOSPITALISED,
            outcome=AEOutcome.RECOVERED if resolution <= today else AEOutcome.RECOVERING,
            aware_date=onset + _days(3),
            description="Admitted for fever and cough; sputum positive; standard anti-tuberculous therapy.",
        )
    if number in DEATH:
        onset_day, death_day = DEATH[number]
        death = day0 + _days(death_day)
        add(
            term="Severe pneumonia with respiratory failure",
            category=AECategory.INFECTION,
            onset_date=day0 + _days(onset_day),
            resolution_date=death,
            grade=CTCAEGrade.DEATH,
            serious_death=True,
            serious_hospitalisation=True,
            relatedness=Relatedness.UNRELATED,
            expected=False,
            action_taken=AEAction.HOSPITALISED,
            outcome=AEOutcome.FATAL,
            aware_date=day0 + _days(onset_day),
            description="Community-acquired pneumonia on long-term immunosuppression; judged unrelated to MSCT.",
        )
