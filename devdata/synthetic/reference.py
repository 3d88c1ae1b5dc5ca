"""The synthetic study's reference data, made through the services: sites, the study with its template,
staff, donors and released lots."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import zlib
from dataclasses import dataclass, field

from django.db import transaction

from devdata.demo import NEGATIVE_SCREENING, _release_tests, staff_user
from followup import outcomes
from followup.services import outcome_definitions_for
from registry import constants as rc
from registry.models import CellProduct, Donor, Site, Study, VisitDefinition
from registry.services import donor_save, lot_save, membership_grant, site_create, study_add_site, study_create

FOLLOW_UP_SPAN_DAYS = 6 * 365  # first infusions spread over the last six years
PATIENTS_PER_LOT = 200
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
        site_rows = [_site(number) for number in range(1, sites + 1)]
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
        for site in site_rows:
            study_add_site(study=study, site=site, activated_on=activated)
            for role in (rc.Role.COORDINATOR, rc.Role.INVESTIGATOR):
                user, _ = staff_user(f"syn.{role}.{site.code.lower()}")
                membership_grant(user=user, site=site, role=role)
        lots = _lots(rng, study=study, site=site_rows[0], patients=patients, today=today)
    definitions = list(VisitDefinition.objects.filter(study=study).order_by("offset_days"))
    ref = Reference(study=study, sites=site_rows, definitions=definitions, lots=lots)
    ref.outcome_definitions = outcome_definitions_for(study.pk)
    ref.definitions_json = json.dumps(ref.outcome_definitions.as_dict())
    return ref


def _site(number: int) -> Site:
    """Synthetic site `number`, made unless another cohort made it."""
    code = f"SYN{number:02d}"
    site = Site.objects.filter(code=code).first()
    if site is not None:
        return site
    country, zone = SITE_ZONES[(number - 1) % len(SITE_ZONES)]
    return site_create(
        code=code,
        name=f"Synthetic site {number:02d}",
        country=country,
        time_zone=zone,
        contact_email=f"msct-{code.lower()}@example.org",
        safety_email=f"msct-safety-{code.lower()}@example.org",
    )


def _lots(rng: random.Random, *, study: Study, site: Site, patients: int, today: dt.date) -> list[tuple]:
    """One lot per PATIENTS_PER_LOT patients (every fifth from bone marrow, the others from umbilical cord), each
    from its own donor, made along the six years (each lasts three years); (id, tissue source, cryopreserved
    on) of each, by date."""
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
                site=site,
                code=f"{study.code}-D{number:05d}",
                relation=rc.DonorRelation.RELATED if bone_marrow else rc.DonorRelation.UNRELATED,
                sex=rng.choice([rc.Sex.FEMALE, rc.Sex.MALE]),
                age_at_donation=rng.randint(19, 46) if bone_marrow else None,
                **NEGATIVE_SCREENING,
            )
        )
        lot = lot_save(
            lot=CellProduct(
                lot_number=f"{study.code}-L{number:05d}",
                study=study,
                site=site,
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
    return lots
