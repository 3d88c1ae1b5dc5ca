"""Study exports: tidy CSV per domain with a data dictionary, CDISC SDTM-style datasets and an HL7 FHIR R4
bundle, built in the background into one zip with a manifest (files, row counts, SHA-256).

Scoped like everything else: a job holds the sites in `ExportJob.site_ids` (the requester's sites, or the API
key's site) and nothing else; pseudonymous codes only (no free-text narratives, which cannot be vouched for).

Memory stays flat as the study grows: every member is written row by row from `.values_list(...).iterator()`,
straight into its zip entry, hashing and counting as it goes. The zip is built as a temporary file in
EXPORT_DIR and renamed to `<job id>.zip` only when complete, so a half-written file is never served.

Entry points: `export_job_request` (create and queue, from the admin and the API), `export_job_run` (build,
from the task `followup.tasks.build_export`), `export_jobs_for_user` / `export_job_visible_to`
(scoping), `export_file` (the finished zip of a job, or None).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import tempfile
import uuid
import zipfile
import zoneinfo
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from followup import constants as c
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from followup.models import AdverseEvent, ComputedOutcome, ExportJob, Result, Visit
from patients import constants as pc
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from registry import constants as rc
from registry.models import ApiKey, Site, Study, StudySite, user_site_ids

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "msct-registry-export"
EXPORT_FORMAT_VERSION = "1.0"
CHUNK_SIZE = 2000
# A running job that has not moved for this long belongs to a worker that died; a redelivered task takes it.
QUEUE_GRACE = dt.timedelta(minutes=5)
STALE_AFTER = dt.timedelta(hours=1)
# Bump `updated_at` (the heartbeat) at least every this many rows inside a long member.
HEARTBEAT_ROWS = 20_000

REGISTRY_NS = "https://msct-registry.example.org/fhir"
FHIR_ID_NAMESPACE = uuid.UUID("4b0d1f5e-8f7a-5c53-9a55-6d3c2f1e0a11")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"

# Canonical units of the catalogue as UCUM codes (only where the unit is a UCUM unit).
UCUM_CODES = {
    "g/24h": "g/(24.h)",
    "g/g": "g/g",
    "g/L": "g/L",
    "umol/L": "umol/L",
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mmol/L": "mmol/L",
    "IU/mL": "[IU]/mL",
    "10^9/L": "10*9/L",
    "% of CD4+": "%",
    "mg/day": "mg/d",
    "kg": "kg",
    "points": "{score}",
    "0-3": "{score}",
    "1:N": "{titer}",
}
LAB_CODES = ("PROT24H", "UPCR", "ALB", "CREAT", "EGFR", "BUN", "C3", "C4", "ADSDNA", "ANA", "WBC", "PLT", "HGB", "TREG")
LB_CATEGORY = {
    "PROT24H": "URINALYSIS",
    "UPCR": "URINALYSIS",
    "ALB": "CHEMISTRY",
    "CREAT": "CHEMISTRY",
    "EGFR": "CHEMISTRY",
    "BUN": "CHEMISTRY",
    "C3": "IMMUNOLOGY",
    "C4": "IMMUNOLOGY",
    "ADSDNA": "IMMUNOLOGY",
    "ANA": "IMMUNOLOGY",
    "WBC": "HEMATOLOGY",
    "PLT": "HEMATOLOGY",
    "HGB": "HEMATOLOGY",
    "TREG": "IMMUNOLOGY",
}
LB_SPECIMEN = {"PROT24H": "URINE", "UPCR": "URINE", "WBC": "BLOOD", "PLT": "BLOOD", "HGB": "BLOOD", "TREG": "BLOOD"}
OBSERVATION_CATEGORY = {"SLEDAI2K": "survey", "PGA": "survey", "WEIGHT": "vital-signs", "PRED": "therapy"}

CELL_TYPE = {
    rc.TissueSource.UMBILICAL_CORD: "UC-MSC",
    rc.TissueSource.BONE_MARROW: "BM-MSC",
    rc.TissueSource.ADIPOSE: "AD-MSC",
    rc.TissueSource.OTHER: "MSC",
}
CDISC_FREQUENCY = {
    pc.Frequency.ONCE: "ONCE",
    pc.Frequency.DAILY: "QD",
    pc.Frequency.BID: "BID",
    pc.Frequency.TID: "TID",
    pc.Frequency.WEEKLY: "QS",  # CDISC: QS = once a week
    pc.Frequency.EVERY_2_WEEKS: "Q2W",
    pc.Frequency.MONTHLY: "QM",
    pc.Frequency.OTHER: "OTHER",
}
AE_SEVERITY = {1: "MILD", 2: "MODERATE", 3: "SEVERE", 4: "SEVERE", 5: "SEVERE"}
AE_RELATEDNESS = {
    c.Relatedness.UNRELATED: "NOT RELATED",
    c.Relatedness.UNLIKELY: "UNLIKELY RELATED",
    c.Relatedness.POSSIBLE: "POSSIBLY RELATED",
    c.Relatedness.PROBABLE: "PROBABLY RELATED",
    c.Relatedness.DEFINITE: "DEFINITELY RELATED",
}
AE_OUTCOME = {
    c.AEOutcome.RECOVERED: "RECOVERED/RESOLVED",
    c.AEOutcome.RECOVERING: "RECOVERING/RESOLVING",
    c.AEOutcome.NOT_RECOVERED: "NOT RECOVERED/NOT RESOLVED",
    c.AEOutcome.SEQUELAE: "RECOVERED/RESOLVED WITH SEQUELAE",
    c.AEOutcome.FATAL: "FATAL",
    c.AEOutcome.UNKNOWN: "UNKNOWN",
}
AE_ACTION_ON_TREATMENT = {
    c.AEAction.INFUSION_INTERRUPTED: "DRUG INTERRUPTED",
    c.AEAction.INFUSION_STOPPED: "DRUG WITHDRAWN",
}
AE_OTHER_ACTION = {
    c.AEAction.TREATMENT_GIVEN: "TREATMENT GIVEN",
    c.AEAction.HOSPITALISED: "HOSPITALISED",
    c.AEAction.OTHER: "OTHER",
}
SERIOUS_FIELDS = [name for name, _ in c.SERIOUSNESS_CRITERIA]
SDTM_SERIOUS = {
    "serious_death": "AESDTH",
    "serious_life_threatening": "AESLIFE",
    "serious_hospitalisation": "AESHOSP",
    "serious_disability": "AESDISAB",
    "serious_congenital_anomaly": "AESCONG",
    "serious_other_important": "AESMIE",
}
FHIR_SERIOUSNESS = {
    "serious_death": ("SeriousResultsInDeath", "Serious Results in Death"),
    "serious_life_threatening": ("SeriousIsLifeThreatening", "Serious Is Life-threatening"),
    "serious_hospitalisation": ("SeriousResultsInHospitalization", "Serious Results in Hospitalization"),
    "serious_disability": ("SeriousResultsInPersistentDisability", "Serious Results in Persistent Disability"),
    "serious_congenital_anomaly": ("SeriousIsBirthDefect", "Serious Is Birth Defect"),
    "serious_other_important": ("Serious", "Serious"),
}
FHIR_AE_OUTCOME = {
    c.AEOutcome.RECOVERED: "resolved",
    c.AEOutcome.RECOVERING: "recovering",
    c.AEOutcome.NOT_RECOVERED: "ongoing",
    c.AEOutcome.SEQUELAE: "resolvedWithSequelae",
    c.AEOutcome.FATAL: "fatal",
    c.AEOutcome.UNKNOWN: "unknown",
}
FHIR_CAUSALITY = {
    c.Relatedness.DEFINITE: ("Certain", "Certain"),
    c.Relatedness.PROBABLE: ("Probably-Likely", "Probably/Likely"),
    c.Relatedness.POSSIBLE: ("Possible", "Possible"),
    c.Relatedness.UNLIKELY: ("Unlikely", "Unlikely"),
}
FHIR_STUDY_STATUS = {
    rc.StudyStatus.PLANNED: "approved",
    rc.StudyStatus.RECRUITING: "active",
    rc.StudyStatus.ACTIVE: "closed-to-accrual",
    rc.StudyStatus.COMPLETED: "completed",
    rc.StudyStatus.SUSPENDED: "temporarily-closed-to-accrual",
    rc.StudyStatus.TERMINATED: "administratively-completed",
}
FHIR_STUDY_PHASE = {
    rc.StudyPhase.EARLY_1: "early-phase-1",
    rc.StudyPhase.PHASE_1: "phase-1",
    rc.StudyPhase.PHASE_1_2: "phase-1-phase-2",
    rc.StudyPhase.PHASE_2: "phase-2",
    rc.StudyPhase.PHASE_2_3: "phase-2-phase-3",
    rc.StudyPhase.PHASE_3: "phase-3",
    rc.StudyPhase.PHASE_4: "phase-4",
    rc.StudyPhase.OBSERVATIONAL: "n-a",
}
FHIR_SUBJECT_STATUS = {
    pc.PatientStatus.SCREENING: "screening",
    pc.PatientStatus.ENROLLED: "on-study",
    pc.PatientStatus.COMPLETED: "off-study",
    pc.PatientStatus.WITHDRAWN: "withdrawn",
    pc.PatientStatus.LOST: "off-study",
    pc.PatientStatus.DECEASED: "off-study",
}
ENDED_STATUSES = {pc.PatientStatus.COMPLETED, *pc.INACTIVE_STATUSES}


# Scoping and requests ----------------------------------------------------------------------------------


def export_jobs_for_user(user):
    """The jobs whose every site is one of the user's sites (superusers: all)."""
    if not user or not user.is_authenticated or not user.is_active:
        return ExportJob.objects.none()
    if user.is_superuser:
        return ExportJob.objects.all()
    mine = set(user_site_ids(user).values_list("site_id", flat=True))
    if not mine:
        return ExportJob.objects.none()
    # site_ids is a JSON list (no portable containment lookup): jobs are few, so check them here.
    candidates = ExportJob.objects.filter(study__in=StudySite.objects.filter(site_id__in=mine).values("study_id"))
    ids = [pk for pk, site_ids in candidates.values_list("pk", "site_ids") if _sites_within(site_ids, mine)]
    return ExportJob.objects.filter(pk__in=ids)


def export_job_visible_to(job: ExportJob, user) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return _sites_within(job.site_ids, set(user_site_ids(user).values_list("site_id", flat=True)))


def _sites_within(site_ids, allowed: set[int]) -> bool:
    return bool(site_ids) and all(isinstance(s, int) and s in allowed for s in site_ids)


def _study_site_ids(study: Study) -> set[int]:
    return set(StudySite.objects.filter(study=study).values_list("site_id", flat=True))


def export_job_request(*, study: Study, user=None, api_key: ApiKey | None = None) -> ExportJob:
    """Create an export of `study` for the user's sites (or the API key's site) and queue it on commit."""
    if (user is None) == (api_key is None):
        raise ValueError("Give the requesting user or the API key (one of them).")
    study_sites = _study_site_ids(study)
    if api_key is not None:
        site_ids = [api_key.site_id] if api_key.site_id in study_sites else []
    elif user.is_active and user.is_superuser:
        site_ids = sorted(study_sites)
    elif user.is_active:
        site_ids = sorted(study_sites & set(user_site_ids(user).values_list("site_id", flat=True)))
    else:
        site_ids = []
    if not site_ids:
        raise ValidationError({"study": f"None of your sites takes part in study {study.code}."})
    job = ExportJob(study=study, site_ids=site_ids, requested_by=user, requested_by_key=api_key)
    job.full_clean()
    job.save()
    transaction.on_commit(lambda: _queue(job.pk))
    return job


def _queue(job_id: int) -> None:
    from followup.tasks import build_export

    try:
        build_export.delay(job_id)
    except Exception:  # the broker is unreachable: the job stays queued and `export_jobs_resume` queues it again
        logger.warning("Export %s could not be queued; it will be queued again", job_id, exc_info=True)


def export_jobs_resume(*, now: dt.datetime | None = None) -> list[int]:
    """Queue again every job nobody is building: queued for longer than QUEUE_GRACE (the broker lost or never
    got it) or running with no progress for STALE_AFTER (its worker died). A job is built once whatever the
    number of tasks, since `export_job_run` claims it atomically."""
    now = now or timezone.now()
    stalled = ExportJob.objects.filter(
        Q(state=c.ExportState.QUEUED, updated_at__lt=now - QUEUE_GRACE)
        | Q(state=c.ExportState.RUNNING, updated_at__lt=now - STALE_AFTER)
    )
    job_ids = list(stalled.order_by("pk").values_list("pk", flat=True))
    for job_id in job_ids:
        _queue(job_id)
    return job_ids


def export_file(job: ExportJob) -> Path | None:
    """The finished zip of `job`, or None when it is not ready (or was removed)."""
    if job.state != c.ExportState.DONE or not job.file_path:
        return None
    path = Path(job.file_path)
    return path if path.is_file() else None


def _still_allowed(job: ExportJob) -> str | None:
    """Why the requester may no longer have this export (None when they may): re-checked when it runs."""
    if job.requested_by_key_id is not None:
        key = job.requested_by_key
        if key.revoked_at is not None or key.expires_at <= timezone.now():
            return "The API key that requested the export was revoked or has expired."
        if job.site_ids != [key.site_id]:
            return "The export holds sites other than the API key's site."
        return None
    user = job.requested_by
    if user is None:
        return "Whoever requested the export (a person or an API key) no longer exists."
    if not user.is_active:
        return "The person who requested the export is no longer active."
    if not user.is_superuser and not _sites_within(
        job.site_ids, set(user_site_ids(user).values_list("site_id", flat=True))
    ):
        return "The person who requested the export no longer belongs to every site it holds."
    return None


# Running -----------------------------------------------------------------------------------------------


def export_job_run(*, job_id: int) -> ExportJob | None:
    """Build the export of a queued job (or of a running one whose worker died); keep the error on failure."""
    now = timezone.now()
    claimed = (
        ExportJob.objects.filter(pk=job_id)
        .filter(Q(state=c.ExportState.QUEUED) | Q(state=c.ExportState.RUNNING, updated_at__lt=now - STALE_AFTER))
        .update(state=c.ExportState.RUNNING, progress=0, error="", updated_at=now)
    )
    job = ExportJob.objects.select_related("study", "requested_by", "requested_by_key").filter(pk=job_id).first()
    if job is None or not claimed:
        return job  # gone, already done or failed, or another worker has it
    refused = _still_allowed(job)
    if refused:
        return _fail(job, refused)
    export_dir = Path(settings.EXPORT_DIR)
    tmp_name = None
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=export_dir, prefix=f".{job.pk}-", suffix=".zip.part")
        os.close(fd)
        manifest = build_export_zip(job, Path(tmp_name))
        final = export_dir / f"{job.pk}.zip"
        os.replace(tmp_name, final)
        tmp_name = None
    except Exception as exc:
        logger.exception("Export %s failed", job.pk)
        return _fail(job, f"{exc.__class__.__name__}: {exc}")
    finally:
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    ExportJob.objects.filter(pk=job.pk).update(
        state=c.ExportState.DONE, progress=100, file_path=str(final), manifest=manifest, updated_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def _fail(job: ExportJob, error: str) -> ExportJob:
    ExportJob.objects.filter(pk=job.pk).update(state=c.ExportState.FAILED, error=error, updated_at=timezone.now())
    job.refresh_from_db()
    return job


# Writing members ---------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Passes bytes to the zip entry while hashing and counting them."""

    def __init__(self, target):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


@dataclass
class _Member:
    name: str
    zf: zipfile.ZipFile
    rows: int = 0

    def __enter__(self):
        self._entry = self.zf.open(self.name, "w", force_zip64=True)
        self._hasher = _HashingWriter(self._entry)
        self.text = io.TextIOWrapper(io.BufferedWriter(self._hasher, 64 * 1024), encoding="utf-8", newline="")
        return self

    def __exit__(self, *exc_info):
        self.text.flush()
        self.text.detach().detach()  # leave the zip entry to close below
        self._entry.close()
        return False

    @property
    def record(self) -> dict:
        return {
            "name": self.name,
            "rows": self.rows,
            "bytes": self._hasher.size,
            "sha256": self._hasher.sha256.hexdigest(),
        }


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # string, integer, decimal, date, datetime, flag (1/0)
    description: str
    unit: str = ""
    values: str = ""


@dataclass
class Context:
    """What every builder needs: the study, the sites it may include, and lookups of small tables."""

    job: ExportJob
    study: Study
    site_ids: list[int]
    sites: dict[int, Site]
    generated_at: dt.datetime
    heartbeat: Callable[[], None] = lambda: None

    def site_code(self, site_id: int) -> str:
        return self.sites[site_id].code

    def zone(self, site_id: int) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.sites[site_id].time_zone)

    def local_date(self, moment: dt.datetime | None, site_id: int) -> dt.date | None:
        return moment.astimezone(self.zone(site_id)).date() if moment else None

    def usubjid(self, subject: str) -> str:
        return f"{self.study.code}-{subject}"


@dataclass
class Table:
    name: str
    description: str
    columns: list[Column]
    rows: Callable[[Context], Iterable[tuple]]


@dataclass
class _Progress:
    job_id: int
    steps: int
    done: int = 0

    def step(self) -> None:
        self.done += 1
        percent = min(99, int(self.done * 100 / self.steps))
        ExportJob.objects.filter(pk=self.job_id).update(progress=percent, updated_at=timezone.now())

    def beat(self) -> None:
        ExportJob.objects.filter(pk=self.job_id).update(updated_at=timezone.now())


def _write_csv(zf: zipfile.ZipFile, table: Table, ctx: Context) -> dict:
    with _Member(table.name, zf) as member:
        writer = csv.writer(member.text, lineterminator="\n")
        writer.writerow([col.name for col in table.columns])
        for row in table.rows(ctx):
            writer.writerow(row)
            member.rows += 1
            if member.rows % HEARTBEAT_ROWS == 0:
                ctx.heartbeat()
    return member.record


def build_export_zip(job: ExportJob, path: Path) -> dict:
    """Write the whole export of `job` to `path` (a zip) and return its manifest."""
    site_ids = sorted(job.site_ids)
    sites = {s.pk: s for s in Site.objects.filter(pk__in=site_ids)}
    if set(sites) != set(site_ids):
        raise ValidationError("The export names a site that no longer exists.")
    progress = _Progress(job.pk, steps=len(TABLES) + 2)
    ctx = Context(
        job=job, study=job.study, site_ids=site_ids, sites=sites, generated_at=timezone.now(), heartbeat=progress.beat
    )
    files = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for table in TABLES:
            files.append(_write_csv(zf, table, ctx))
            progress.step()
        files.append(_write_csv(zf, DICTIONARY, ctx))
        progress.step()
        files.append(write_fhir_bundle(zf, ctx))
        progress.step()
        manifest = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "job": job.pk,
            "generated_at": ctx.generated_at.isoformat(),
            "study": {
                "code": ctx.study.code,
                "registration_id": ctx.study.registration_id,
                "title": ctx.study.title,
            },
            "sites": [sites[s].code for s in site_ids],
            "standards": {
                "sdtm": "CDISC SDTM-style datasets (CSV, not XPT); USUBJID = STUDYID-SUBJID",
                "fhir": "HL7 FHIR R4 (validated with fhir.resources R4B models); Bundle type collection",
                "loinc": "Observation.code and LBLOINC carry LOINC where the results catalogue has one",
            },
            "files": files,
        }
        with zf.open("manifest.json", "w") as entry:
            entry.write(json.dumps(manifest, indent=2).encode())
    return manifest


# Value formatting --------------------------------------------------------------------------------------


def _s(value) -> str:
    return "" if value is None else str(value)


def _num(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value)
    return str(value)


def _date(value) -> str:
    return value.isoformat() if value else ""


def _flag(value) -> str | int:
    return "" if value is None else int(bool(value))


def _yn(value) -> str:
    return "" if value is None else ("Y" if value else "N")


def _day(on: dt.date | None, day_zero: dt.date | None) -> str | int:
    """Day since the first infusion (day 0 = the day of the first infusion, the registry's convention)."""
    return (on - day_zero).days if on and day_zero else ""


def _sdtm_day(on: dt.date | None, reference: dt.date | None) -> str | int:
    """SDTM --DY: day 1 is the reference start date; there is no day 0."""
    if not on or not reference:
        return ""
    days = (on - reference).days
    return days + 1 if days >= 0 else days


def _sdtm_datetime(moment: dt.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if moment else ""


def _choices(choices) -> str:
    return "; ".join(f"{value}={label}" for value, label in choices)


def _first_infusion(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref), infusion_number=1).values("infused_at")[:1]
    )


def _count_infusions(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref))
        .order_by()
        .values("patient_id")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )


def _sequence() -> Callable[[str], int]:
    """A per-subject sequence number (rows arrive ordered by subject)."""
    state = {"subject": None, "n": 0}

    def next_for(subject: str) -> int:
        if subject != state["subject"]:
            state["subject"], state["n"] = subject, 0
        state["n"] += 1
        return state["n"]

    return next_for


def _patients(ctx: Context):
    return Patient.objects.for_sites(ctx.site_ids).filter(study_id=ctx.study.pk)


def _visits(ctx: Context):
    return Visit.objects.for_sites(ctx.site_ids).filter(patient__study_id=ctx.study.pk)


def _results(ctx: Context):
    return Result.objects.for_sites(ctx.site_ids).filter(visit__patient__study_id=ctx.study.pk)


def _stream(queryset) -> Iterator[tuple]:
    return queryset.iterator(chunk_size=CHUNK_SIZE)


# Tidy CSV ----------------------------------------------------------------------------------------------

STUDY = Column("study", "string", "Study code.")
SITE = Column("site", "string", "Site code.")
SUBJECT = Column("subject", "string", "Pseudonymous subject code, unique within the study (read it as text).")
VISIT = Column("visit", "string", "Visit code (BL, D7, M1, ... from the study's template; U01, U02, ... unscheduled).")
VISIT_DATE = Column("date", "date", "Date the visit took place (ISO 8601).")
STUDY_DAY = Column("study_day", "integer", "Days since the first infusion (day 0 = the day of the first infusion).")
ANALYTE_CODES = "; ".join(f"{a.code}={a.label} [{a.unit}]" for a in ANALYTES.values())


def _tidy_patients(ctx: Context) -> Iterator[tuple]:
    qs = (
        _patients(ctx)
        .annotate(day0_at=_first_infusion("pk"), n_infusions=_count_infusions("pk"))
        .order_by("subject_code")
        .values_list(
            "site_id",
            "subject_code",
            "sex",
            "birth_year",
            "diagnosis_date",
            "classification_criteria",
            "refractory_to",
            "consent_date",
            "status",
            "status_date",
            "day0_at",
            "n_infusions",
        )
    )
    for site, subject, sex, birth, diag, criteria, refractory, consent, status, status_date, day0_at, n in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            sex,
            birth,
            _date(diag),
            criteria,
            ";".join(refractory or []),
            _date(consent),
            status,
            _date(status_date),
            _date(ctx.local_date(day0_at, site)),
            n or 0,
        )


PATIENT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("sex", "string", "Sex.", values=_choices(rc.Sex.choices)),
    Column("birth_year", "integer", "Year of birth (only the year is kept)."),
    Column("diagnosis_date", "date", "Date of SLE diagnosis."),
    Column(
        "classification_criteria",
        "string",
        "Classification criteria met.",
        values=_choices(pc.ClassificationCriteria.choices),
    ),
    Column(
        "refractory_to", "string", "Therapies that failed, ';'-separated drug codes.", values=_choices(pc.Drug.choices)
    ),
    Column("consent_date", "date", "Date of informed consent."),
    Column("status", "string", "Current status.", values=_choices(pc.PatientStatus.choices)),
    Column("status_date", "date", "Date the current status began (death date for deceased)."),
    Column("day_zero", "date", "Day 0 of follow-up: local date of the first infusion."),
    Column("infusions", "integer", "Number of MSC infusions recorded."),
]


def _tidy_infusions(ctx: Context) -> Iterator[tuple]:
    qs = (
        TransplantEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "infusion_number")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "infusion_number",
            "infused_at",
            "day0_at",
            "lot__lot_number",
            "lot__tissue_source",
            "lot__origin",
            "lot__passage_number",
            "weight_kg",
            "dose_cells_per_kg",
            "total_cells",
            "route",
            "duration_minutes",
            "premedication",
            "conditioning",
        )
    )
    for row in _stream(qs):
        site, subject, number, at, day0_at, lot, tissue, origin, passage, weight, dose, total, route, minutes = row[:14]
        local = at.astimezone(ctx.zone(site))
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            number,
            local.date().isoformat(),
            local.isoformat(timespec="minutes"),
            _day(local.date(), ctx.local_date(day0_at, site)),
            lot,
            CELL_TYPE.get(tissue, "MSC"),
            tissue,
            origin,
            passage,
            _num(weight),
            dose,
            total,
            route,
            _num(minutes),
            row[14],
            row[15],
        )


INFUSION_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("infusion_number", "integer", "Infusion number within the course (1 = first; 2 = second of a double MSCT)."),
    Column("infusion_date", "date", "Local date of the infusion at the site."),
    Column("infused_at", "datetime", "Local date and time of the infusion with the site's UTC offset (ISO 8601)."),
    STUDY_DAY,
    Column("lot", "string", "Cell product lot number."),
    Column("cell_type", "string", "MSC type from the lot's tissue source.", values="UC-MSC; BM-MSC; AD-MSC; MSC"),
    Column("tissue_source", "string", "Tissue source of the lot.", values=_choices(rc.TissueSource.choices)),
    Column("origin", "string", "Allogeneic or autologous.", values=_choices(rc.ProductOrigin.choices)),
    Column("passage_number", "integer", "Passage number of the lot."),
    Column("weight_kg", "decimal", "Body weight at infusion.", unit="kg"),
    Column("dose_cells_per_kg", "integer", "Dose.", unit="cells/kg"),
    Column("total_cells", "integer", "Total cells infused (dose x weight).", unit="cells"),
    Column("route", "string", "Route.", values=_choices(pc.Route.choices)),
    Column("duration_minutes", "integer", "Duration of the infusion.", unit="min"),
    Column("premedication", "string", "Premedication given."),
    Column("conditioning", "string", "Conditioning, e.g. cyclophosphamide 1.0 g IV 24 h before."),
]


def _tidy_visits(ctx: Context) -> Iterator[tuple]:
    qs = (
        _visits(ctx)
        .with_state(ctx.generated_at)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "target_date", "code")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "code",
            "label",
            "definition_id",
            "target_date",
            "window_start",
            "window_end",
            "outcome",
            "state",
            "actual_date",
            "day0_at",
            "sledai_items",
            "deviation_reason",
        )
    )
    for (
        site,
        subject,
        code,
        label,
        definition,
        target,
        start,
        end,
        outcome,
        state,
        actual,
        day0_at,
        items,
        dev,
    ) in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            code,
            label,
            _flag(definition is not None),
            _date(target),
            _date(start),
            _date(end),
            outcome,
            state,
            _date(actual),
            _day(actual, ctx.local_date(day0_at, site)),
            _flag(items is not None),
            ";".join(sorted(items)) if items else "",
            _flag(bool(dev)),
        )


VISIT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    Column("label", "string", "Visit label."),
    Column("scheduled", "flag", "1 = a time point of the study's template; 0 = unscheduled visit."),
    Column("target_date", "date", "Target date (day 0 + the time point's offset)."),
    Column("window_start", "date", "First day of the visit window."),
    Column("window_end", "date", "Last day of the visit window."),
    Column("outcome", "string", "What was recorded about the visit.", values=_choices(c.VisitOutcome.choices)),
    Column(
        "state", "string", "State on the export date, in the site's time zone.", values=_choices(c.VisitState.choices)
    ),
    Column("actual_date", "date", "Date the visit took place."),
    STUDY_DAY,
    Column("sledai_assessed", "flag", "1 = SLEDAI-2K items were assessed at the visit."),
    Column(
        "sledai_items",
        "string",
        "SLEDAI-2K items present, ';'-separated codes.",
        values=_choices((i.code, i.label) for i in SLEDAI_ITEMS.values()),
    ),
    Column("out_of_window", "flag", "1 = the visit took place outside its window (a deviation reason was recorded)."),
]


def _tidy_results(ctx: Context) -> Iterator[tuple]:
    qs = (
        _results(ctx)
        .annotate(day0_at=_first_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "visit__patient__site_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__actual_date",
            "day0_at",
            "code",
            "value",
            "entered_value",
            "entered_unit",
            "derived",
        )
    )
    for site, subject, visit, on, day0_at, code, value, entered, entered_unit, derived in _stream(qs):
        analyte = ANALYTES.get(code)
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            visit,
            _date(on),
            _day(on, ctx.local_date(day0_at, site)),
            code,
            analyte.label if analyte else "",
            _num(value),
            analyte.unit if analyte else "",
            _num(entered),
            entered_unit,
            _flag(derived),
            (analyte.loinc or "") if analyte else "",
        )


RESULT_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    STUDY_DAY,
    Column("code", "string", "Result code of the registry's catalogue.", values=ANALYTE_CODES),
    Column("label", "string", "What was measured."),
    Column("value", "decimal", "Value in the catalogue's canonical unit.", unit="see unit"),
    Column("unit", "string", "Canonical unit of the code."),
    Column(
        "entered_value", "decimal", "Value as entered (blank for values the registry derived).", unit="see entered_unit"
    ),
    Column("entered_unit", "string", "Unit as entered."),
    Column("derived", "flag", "1 = computed by the registry (SLEDAI-2K total from items, eGFR from creatinine)."),
    Column("loinc", "string", "LOINC code, where one exists."),
]


def _outcome_rows(ctx: Context):
    return (
        ComputedOutcome.objects.for_sites(ctx.site_ids)
        .filter(visit__patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code")
    )


def _tidy_outcomes(ctx: Context) -> Iterator[tuple]:
    qs = _outcome_rows(ctx).values_list(
        "visit__patient__site_id",
        "visit__patient__subject_code",
        "visit__code",
        "visit__actual_date",
        "day0_at",
        "algorithm_version",
        "sledai",
        "sledai_change",
        "sri4",
        "sri4_note",
        "remission",
        "renal_response",
        "flare",
        "relapse",
        "notes",
        "computed_at",
    )
    for (
        site,
        subject,
        visit,
        on,
        day0_at,
        version,
        sledai,
        change,
        sri4,
        note,
        rem,
        renal,
        flare,
        relapse,
        notes,
        at,
    ) in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            visit,
            _date(on),
            _day(on, ctx.local_date(day0_at, site)),
            version,
            _num(sledai),
            _num(change),
            _flag(sri4),
            note,
            rem,
            renal,
            flare,
            _flag(relapse),
            "; ".join(notes or []),
            at.isoformat(timespec="seconds") if at else "",
        )


OUTCOME_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    STUDY_DAY,
    Column("algorithm_version", "string", "Version of the outcome algorithm that computed the row."),
    Column("sledai", "decimal", "SLEDAI-2K total at the visit.", unit="points"),
    Column("sledai_change", "decimal", "SLEDAI-2K change from baseline.", unit="points"),
    Column("sri4", "flag", "SRI-4 (simplified; BILAG not assessed): 1 met, 0 not met, blank not assessable."),
    Column("sri4_note", "string", "Why SRI-4 could not be assessed, or what it rests on."),
    Column("remission", "string", "Remission (study's definitions): complete, partial or none; blank unknown."),
    Column("renal_response", "string", "Renal response (KDIGO-style): complete, partial, none, not applicable."),
    Column("flare", "string", "Flare (SELENA-SLEDAI-style) versus the previous visit: mild/moderate or severe."),
    Column("relapse", "flag", "1 = a flare after a remission; blank when not assessable."),
    Column("notes", "string", "Notes of the computation, '; '-separated."),
    Column("computed_at", "datetime", "When the outcomes were computed (UTC, ISO 8601)."),
]


def _tidy_changes(ctx: Context) -> Iterator[tuple]:
    qs = _outcome_rows(ctx).values_list(
        "visit__patient__site_id", "visit__patient__subject_code", "visit__code", "visit__actual_date", "changes"
    )
    for site, subject, visit, on, changes in _stream(qs):
        for code, change in sorted((changes or {}).items()):
            analyte = ANALYTES.get(code)
            yield (
                ctx.study.code,
                ctx.site_code(site),
                subject,
                visit,
                _date(on),
                code,
                analyte.unit if analyte else "",
                _s(change.get("baseline")),
                _s(change.get("value")),
                _s(change.get("absolute")),
                _s(change.get("percent")),
            )


CHANGE_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    VISIT,
    VISIT_DATE,
    Column("code", "string", "Result code.", values=ANALYTE_CODES),
    Column("unit", "string", "Canonical unit of the code."),
    Column(
        "baseline", "decimal", "Baseline value (BL visit, else the last value on or before day 0).", unit="see unit"
    ),
    Column("value", "decimal", "Value at the visit.", unit="see unit"),
    Column("change", "decimal", "Absolute change from baseline.", unit="see unit"),
    Column("percent_change", "decimal", "Percent change from baseline (blank when the baseline is 0).", unit="%"),
]


def _tidy_medications(ctx: Context) -> Iterator[tuple]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .order_by("patient__subject_code", "start_date", "pk")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "drug",
            "drug_other",
            "dose",
            "unit",
            "frequency",
            "start_date",
            "stop_date",
            "ongoing",
        )
    )
    labels = dict(pc.Drug.choices)
    for site, subject, drug, other, dose, unit, frequency, start, stop, ongoing in _stream(qs):
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            drug,
            other if drug == pc.Drug.OTHER else labels.get(drug, drug),
            _num(dose),
            unit,
            frequency,
            _date(start),
            _date(stop),
            _flag(ongoing),
        )


MEDICATION_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("drug", "string", "Drug code.", values=_choices(pc.Drug.choices)),
    Column("drug_name", "string", "Drug name (as recorded for 'other')."),
    Column("dose", "decimal", "Dose per administration.", unit="see unit"),
    Column("unit", "string", "Dose unit.", values=_choices(pc.DoseUnit.choices)),
    Column("frequency", "string", "Frequency.", values=_choices(pc.Frequency.choices)),
    Column("start_date", "date", "Start date."),
    Column("stop_date", "date", "Stop date (blank when ongoing)."),
    Column("ongoing", "flag", "1 = ongoing."),
]

AE_FIELDS = (
    "patient__site_id",
    "patient__subject_code",
    "term",
    "category",
    "onset_date",
    "resolution_date",
    "grade",
    *SERIOUS_FIELDS,
    "relatedness",
    "expected",
    "action_taken",
    "outcome",
    "aware_date",
    "initial_report_due",
    "initial_report_submitted_on",
    "complete_report_due",
    "complete_report_submitted_on",
    "transplant__infusion_number",
)


def _ae_rows(ctx: Context) -> Iterator[dict]:
    qs = (
        AdverseEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"), first_infusion_id=_first_infusion_id("patient_id"))
        .order_by("patient__subject_code", "onset_date", "pk")
        .values(*AE_FIELDS, "pk", "patient_id", "transplant_id", "day0_at", "first_infusion_id")
    )
    return _stream(qs)


def _first_infusion_id(patient_ref: str) -> Subquery:
    return Subquery(
        TransplantEvent.objects.filter(patient_id=OuterRef(patient_ref), infusion_number=1).values("pk")[:1]
    )


def _tidy_adverse_events(ctx: Context) -> Iterator[tuple]:
    seq = _sequence()
    for ae in _ae_rows(ctx):
        site, subject = ae["patient__site_id"], ae["patient__subject_code"]
        serious = any(ae[name] for name in SERIOUS_FIELDS)
        susar = serious and not ae["expected"] and ae["relatedness"] in c.RELATED_LEVELS
        yield (
            ctx.study.code,
            ctx.site_code(site),
            subject,
            seq(subject),
            ae["term"],
            ae["category"],
            _date(ae["onset_date"]),
            _date(ae["resolution_date"]),
            _day(ae["onset_date"], ctx.local_date(ae["day0_at"], site)),
            ae["grade"],
            _flag(serious),
            *(_flag(ae[name]) for name in SERIOUS_FIELDS),
            ae["relatedness"],
            _flag(ae["expected"]),
            _flag(susar),
            ae["action_taken"],
            ae["outcome"],
            _date(ae["aware_date"]),
            _date(ae["initial_report_due"]),
            _date(ae["initial_report_submitted_on"]),
            _date(ae["complete_report_due"]),
            _date(ae["complete_report_submitted_on"]),
            _s(ae["transplant__infusion_number"]),
        )


AE_COLUMNS = [
    STUDY,
    SITE,
    SUBJECT,
    Column("ae_number", "integer", "Sequence of the event within the subject (by onset)."),
    Column("term", "string", "Event term as reported."),
    Column("category", "string", "Category.", values=_choices(c.AECategory.choices)),
    Column("onset_date", "date", "Onset date."),
    Column("resolution_date", "date", "Resolution date (for a fatal event, the date of death)."),
    Column("onset_study_day", "integer", "Days from the first infusion to the onset (day 0 = first infusion)."),
    Column("grade", "integer", "CTCAE v5 grade.", values=_choices(c.CTCAEGrade.choices)),
    Column("serious", "flag", "1 = serious (ICH E2A: at least one criterion below)."),
    *[Column(name, "flag", f"1 = serious because it {label}.") for name, label in c.SERIOUSNESS_CRITERIA],
    Column("relatedness", "string", "Relatedness to MSCT.", values=_choices(c.Relatedness.choices)),
    Column("expected", "flag", "1 = expected according to the study's reference safety information."),
    Column("susar", "flag", "1 = suspected unexpected serious adverse reaction."),
    Column("action_taken", "string", "Action taken.", values=_choices(c.AEAction.choices)),
    Column("outcome", "string", "Outcome.", values=_choices(c.AEOutcome.choices)),
    Column("aware_date", "date", "Day the site became aware (day 0 of the reporting clock)."),
    Column("initial_report_due", "date", "Expedited initial report due (SUSAR only)."),
    Column("initial_report_submitted_on", "date", "Expedited initial report submitted."),
    Column("complete_report_due", "date", "Expedited complete report due (fatal or life-threatening SUSAR)."),
    Column("complete_report_submitted_on", "date", "Expedited complete report submitted."),
    Column("infusion_number", "integer", "The infusion, for an infusion-related event."),
]


# SDTM-style datasets -----------------------------------------------------------------------------------

STUDYID = Column("STUDYID", "string", "Study identifier (study code).")
USUBJID = Column("USUBJID", "string", "Unique subject identifier: STUDYID-SUBJID.")
VISITNUM = Column("VISITNUM", "integer", "Visit number: the time point's planned day offset (blank unscheduled).")
VISIT_SDTM = Column("VISIT", "string", "Visit name (the registry's visit code).")


def _domain(code: str) -> Column:
    return Column("DOMAIN", "string", "Domain abbreviation.", values=code)


def _arm(infusions: int) -> tuple[str, str]:
    if not infusions:
        return "NOTTRT", "Not Treated"
    if infusions == 1:
        return "MSCT1", "MSCT single"
    if infusions == 2:
        return "MSCT2", "MSCT double"
    return f"MSCT{infusions}", f"MSCT x{infusions}"


def _sdtm_dm(ctx: Context) -> Iterator[tuple]:
    qs = (
        _patients(ctx)
        .annotate(day0_at=_first_infusion("pk"), n_infusions=_count_infusions("pk"))
        .order_by("subject_code")
        .values_list(
            "site_id",
            "subject_code",
            "sex",
            "birth_year",
            "consent_date",
            "status",
            "status_date",
            "day0_at",
            "n_infusions",
        )
    )
    for site, subject, sex, birth, consent, status, status_date, day0_at, n in _stream(qs):
        zone = ctx.zone(site)
        armcd, arm = _arm(n or 0)
        deceased = status == pc.PatientStatus.DECEASED
        yield (
            ctx.study.code,
            "DM",
            ctx.usubjid(subject),
            subject,
            _sdtm_datetime(day0_at, zone),
            _date(status_date) if status in ENDED_STATUSES else "",
            _date(consent),
            _date(status_date) if deceased else "",
            "Y" if deceased else "",
            ctx.site_code(site),
            str(birth),
            (day0_at.astimezone(zone).year - birth) if day0_at else "",
            "YEARS" if day0_at else "",
            sex,
            armcd,
            arm,
            armcd,
            arm,
        )


DM_COLUMNS = [
    STUDYID,
    _domain("DM"),
    USUBJID,
    Column("SUBJID", "string", "Subject identifier within the study (pseudonymous subject code)."),
    Column("RFSTDTC", "datetime", "Reference start: first infusion, local date and time (ISO 8601)."),
    Column("RFENDTC", "date", "Reference end: date the patient completed, withdrew, was lost or died."),
    Column("RFICDTC", "date", "Date of informed consent."),
    Column("DTHDTC", "date", "Date of death."),
    Column("DTHFL", "string", "Subject death flag.", values="Y"),
    Column("SITEID", "string", "Site code."),
    Column("BRTHDTC", "string", "Year of birth (ISO 8601 year; only the year is kept)."),
    Column("AGE", "integer", "Age at RFSTDTC from the year of birth (year difference, may be one year high)."),
    Column("AGEU", "string", "Age unit.", values="YEARS"),
    Column("SEX", "string", "Sex.", values=_choices(rc.Sex.choices)),
    Column("ARMCD", "string", "Arm code (from the infusions recorded: the registry has no planned arm)."),
    Column("ARM", "string", "Arm.", values="MSCT single; MSCT double; MSCT xN; Not Treated"),
    Column("ACTARMCD", "string", "Actual arm code."),
    Column("ACTARM", "string", "Actual arm."),
]


def _sdtm_ex(ctx: Context) -> Iterator[tuple]:
    qs = (
        TransplantEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "infusion_number")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "infusion_number",
            "infused_at",
            "duration_minutes",
            "day0_at",
            "lot__lot_number",
            "lot__tissue_source",
            "dose_cells_per_kg",
        )
    )
    for site, subject, number, at, minutes, day0_at, lot, tissue, dose in _stream(qs):
        zone = ctx.zone(site)
        end = at + dt.timedelta(minutes=minutes) if minutes else None
        yield (
            ctx.study.code,
            "EX",
            ctx.usubjid(subject),
            number,
            CELL_TYPE.get(tissue, "MSC"),
            dose,
            "cells/kg",
            "SUSPENSION",
            "ONCE",
            "INTRAVENOUS",
            lot,
            _sdtm_datetime(at, zone),
            _sdtm_datetime(end, zone),
            _sdtm_day(at.astimezone(zone).date(), ctx.local_date(day0_at, site)),
        )


EX_COLUMNS = [
    STUDYID,
    _domain("EX"),
    USUBJID,
    Column("EXSEQ", "integer", "Sequence number (the infusion number)."),
    Column(
        "EXTRT", "string", "Treatment: MSC type from the lot's tissue source.", values="UC-MSC; BM-MSC; AD-MSC; MSC"
    ),
    Column("EXDOSE", "integer", "Dose.", unit="cells/kg"),
    Column("EXDOSU", "string", "Dose unit.", values="cells/kg"),
    Column("EXDOSFRM", "string", "Dose form.", values="SUSPENSION"),
    Column("EXDOSFRQ", "string", "Dosing frequency per interval.", values="ONCE"),
    Column("EXROUTE", "string", "Route.", values="INTRAVENOUS"),
    Column("EXLOT", "string", "Lot number."),
    Column("EXSTDTC", "datetime", "Start of the infusion, local date and time (ISO 8601)."),
    Column("EXENDTC", "datetime", "End of the infusion (start + duration, when the duration is known)."),
    Column("EXSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
]


def _sdtm_cm(ctx: Context) -> Iterator[tuple]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .annotate(day0_at=_first_infusion("patient_id"))
        .order_by("patient__subject_code", "start_date", "pk")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "drug",
            "drug_other",
            "dose",
            "unit",
            "frequency",
            "start_date",
            "stop_date",
            "ongoing",
            "day0_at",
        )
    )
    labels = dict(pc.Drug.choices)
    seq = _sequence()
    cutoff = ctx.generated_at.date().isoformat()
    for site, subject, drug, other, dose, unit, frequency, start, stop, ongoing, day0_at in _stream(qs):
        name = other if drug == pc.Drug.OTHER else labels.get(drug, drug)
        reference = ctx.local_date(day0_at, site)
        yield (
            ctx.study.code,
            "CM",
            ctx.usubjid(subject),
            seq(subject),
            name,
            "" if drug == pc.Drug.OTHER else drug.upper(),
            _num(dose),
            unit,
            CDISC_FREQUENCY.get(frequency, "OTHER"),
            _date(start),
            _date(stop),
            _sdtm_day(start, reference),
            _sdtm_day(stop, reference),
            "ONGOING" if ongoing else "",
            cutoff if ongoing else "",
        )


CM_COLUMNS = [
    STUDYID,
    _domain("CM"),
    USUBJID,
    Column("CMSEQ", "integer", "Sequence number within the subject (by start date)."),
    Column("CMTRT", "string", "Medication as recorded."),
    Column("CMDECOD", "string", "Standardised drug name (registry drug code, upper case; blank for 'other')."),
    Column("CMDOSE", "decimal", "Dose per administration.", unit="see CMDOSU"),
    Column("CMDOSU", "string", "Dose unit.", values=_choices(pc.DoseUnit.choices)),
    Column("CMDOSFRQ", "string", "Frequency (CDISC terms).", values="ONCE; QD; BID; TID; QS (weekly); Q2W; QM; OTHER"),
    Column("CMSTDTC", "date", "Start date."),
    Column("CMENDTC", "date", "End date."),
    Column("CMSTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("CMENDY", "integer", "Study day of the end."),
    Column("CMENRTPT", "string", "End relative to the reference time point.", values="ONGOING"),
    Column("CMENTPT", "date", "Reference time point for CMENRTPT: the export date."),
]


def _sdtm_lb(ctx: Context) -> Iterator[tuple]:
    qs = (
        _results(ctx)
        .filter(code__in=LAB_CODES)
        .annotate(day0_at=_first_infusion("visit__patient_id"))
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "visit__patient__site_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__definition__offset_days",
            "visit__actual_date",
            "day0_at",
            "code",
            "value",
            "entered_value",
            "entered_unit",
            "derived",
        )
    )
    seq = _sequence()
    for site, subject, visit, offset, on, day0_at, code, value, entered, entered_unit, derived in _stream(qs):
        analyte = ANALYTES[code]
        has_entered = entered is not None and entered_unit
        yield (
            ctx.study.code,
            "LB",
            ctx.usubjid(subject),
            seq(subject),
            code,
            analyte.label[:40],
            LB_CATEGORY.get(code, ""),
            LB_SPECIMEN.get(code, "SERUM"),
            _num(entered) if has_entered else _num(value),
            entered_unit if has_entered else analyte.unit,
            _num(value),
            _num(value),
            analyte.unit,
            analyte.loinc or "",
            "Y" if visit == "BL" else "",
            "Y" if derived else "",
            _s(offset),
            visit,
            _date(on),
            _sdtm_day(on, ctx.local_date(day0_at, site)),
        )


LB_COLUMNS = [
    STUDYID,
    _domain("LB"),
    USUBJID,
    Column("LBSEQ", "integer", "Sequence number within the subject."),
    Column("LBTESTCD", "string", "Test code (the registry's result code).", values="; ".join(LAB_CODES)),
    Column("LBTEST", "string", "Test name."),
    Column("LBCAT", "string", "Category.", values="CHEMISTRY; HEMATOLOGY; IMMUNOLOGY; URINALYSIS"),
    Column("LBSPEC", "string", "Specimen.", values="SERUM; BLOOD; URINE"),
    Column("LBORRES", "string", "Result as entered."),
    Column("LBORRESU", "string", "Unit as entered."),
    Column("LBSTRESC", "string", "Standard result (character)."),
    Column("LBSTRESN", "decimal", "Standard result (numeric), in LBSTRESU.", unit="see LBSTRESU"),
    Column("LBSTRESU", "string", "Standard unit (the catalogue's canonical unit)."),
    Column("LBLOINC", "string", "LOINC code."),
    Column("LBBLFL", "string", "Baseline flag (the BL visit).", values="Y"),
    Column("LBDRVFL", "string", "Derived flag (computed by the registry, e.g. eGFR).", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    Column("LBDTC", "date", "Date of the visit (collection)."),
    Column("LBDY", "integer", "Study day (day 1 = RFSTDTC)."),
]

SLEDAI_TESTCD = {code: f"SLEDAI{n:02d}" for n, code in enumerate(SLEDAI_ITEMS, start=1)}


def _sdtm_qs(ctx: Context) -> Iterator[tuple]:
    def score(code: str):
        return Subquery(Result.objects.filter(visit_id=OuterRef("pk"), code=code).values("value")[:1])

    qs = (
        _visits(ctx)
        .annotate(day0_at=_first_infusion("patient_id"), sledai_total=score("SLEDAI2K"), pga=score("PGA"))
        .filter(Q(sledai_items__isnull=False) | Q(sledai_total__isnull=False) | Q(pga__isnull=False))
        .order_by("patient__subject_code", "target_date", "code")
        .values_list(
            "patient__site_id",
            "patient__subject_code",
            "code",
            "definition__offset_days",
            "actual_date",
            "day0_at",
            "sledai_items",
            "sledai_total",
            "pga",
        )
    )
    seq = _sequence()
    for site, subject, visit, offset, on, day0_at, items, total, pga in _stream(qs):
        tail = (_s(offset), visit, _date(on), _sdtm_day(on, ctx.local_date(day0_at, site)))

        def row(testcd, test, category, orres, points, derived=""):
            head = (ctx.study.code, "QS", ctx.usubjid(subject), seq(subject), testcd, test, category)  # noqa: B023
            return (*head, orres, points, points, derived, *tail)  # noqa: B023

        if items is not None:
            present = set(items)
            for code, item in SLEDAI_ITEMS.items():
                found = code in present
                points = str(item.weight if found else 0)
                yield row(SLEDAI_TESTCD[code], item.label[:40], "SLEDAI-2K", "PRESENT" if found else "ABSENT", points)
        if total is not None:
            derived = "Y" if items is not None else ""
            yield row("SLEDAITT", "SLEDAI-2K Total Score", "SLEDAI-2K", plain(total), plain(total), derived)
        if pga is not None:
            yield row("PGA", "Physician Global Assessment", "PHYSICIAN GLOBAL ASSESSMENT", plain(pga), plain(pga))


QS_COLUMNS = [
    STUDYID,
    _domain("QS"),
    USUBJID,
    Column("QSSEQ", "integer", "Sequence number within the subject."),
    Column(
        "QSTESTCD",
        "string",
        "Question code: SLEDAI01..SLEDAI24 (items), SLEDAITT (total), PGA.",
        values=_choices((SLEDAI_TESTCD[code], item.label) for code, item in SLEDAI_ITEMS.items()),
    ),
    Column("QSTEST", "string", "Question name."),
    Column("QSCAT", "string", "Category.", values="SLEDAI-2K; PHYSICIAN GLOBAL ASSESSMENT"),
    Column("QSORRES", "string", "Finding as collected (PRESENT/ABSENT for items; the score for totals)."),
    Column("QSSTRESC", "string", "Standard result (character): points."),
    Column(
        "QSSTRESN",
        "decimal",
        "Standard result (numeric): points (the item's weight when present, else 0).",
        unit="points",
    ),
    Column("QSDRVFL", "string", "Derived flag: the total computed from the items.", values="Y"),
    VISITNUM,
    VISIT_SDTM,
    Column("QSDTC", "date", "Date of the assessment (the visit)."),
    Column("QSDY", "integer", "Study day (day 1 = RFSTDTC)."),
]


def _sdtm_ae(ctx: Context) -> Iterator[tuple]:
    seq = _sequence()
    categories = dict(c.AECategory.choices)
    for ae in _ae_rows(ctx):
        site, subject = ae["patient__site_id"], ae["patient__subject_code"]
        reference = ctx.local_date(ae["day0_at"], site)
        serious = any(ae[name] for name in SERIOUS_FIELDS)
        yield (
            ctx.study.code,
            "AE",
            ctx.usubjid(subject),
            seq(subject),
            ae["term"],
            "",
            categories.get(ae["category"], ae["category"]).upper(),
            AE_SEVERITY.get(ae["grade"], ""),
            str(ae["grade"]),
            _yn(serious),
            *(_yn(ae[name]) for name in SERIOUS_FIELDS),
            AE_RELATEDNESS.get(ae["relatedness"], ""),
            AE_ACTION_ON_TREATMENT.get(ae["action_taken"], "NOT APPLICABLE"),
            AE_OTHER_ACTION.get(ae["action_taken"], ""),
            AE_OUTCOME.get(ae["outcome"], "UNKNOWN"),
            _date(ae["onset_date"]),
            _date(ae["resolution_date"]),
            _sdtm_day(ae["onset_date"], reference),
            _sdtm_day(ae["resolution_date"], reference),
        )


AE_SDTM_COLUMNS = [
    STUDYID,
    _domain("AE"),
    USUBJID,
    Column("AESEQ", "integer", "Sequence number within the subject (by onset)."),
    Column("AETERM", "string", "Reported term."),
    Column("AEDECOD", "string", "Dictionary-derived term (blank: not MedDRA-coded in the registry)."),
    Column(
        "AECAT",
        "string",
        "Category (registry categories).",
        values="; ".join(label.upper() for _, label in c.AECategory.choices),
    ),
    Column(
        "AESEV",
        "string",
        "Severity from the CTCAE grade (1 mild, 2 moderate, 3-5 severe).",
        values="MILD; MODERATE; SEVERE",
    ),
    Column("AETOXGR", "string", "CTCAE v5 grade.", values="1; 2; 3; 4; 5"),
    Column("AESER", "string", "Serious event (ICH E2A).", values="Y; N"),
    *[
        Column(SDTM_SERIOUS[name], "string", f"Serious because it {label}.", values="Y; N")
        for name, label in c.SERIOUSNESS_CRITERIA
    ],
    Column(
        "AEREL",
        "string",
        "Causality to MSCT.",
        values="NOT RELATED; UNLIKELY RELATED; POSSIBLY RELATED; PROBABLY RELATED; DEFINITELY RELATED",
    ),
    Column(
        "AEACN", "string", "Action taken with the infusion.", values="DRUG INTERRUPTED; DRUG WITHDRAWN; NOT APPLICABLE"
    ),
    Column("AEACNOTH", "string", "Other action taken.", values="TREATMENT GIVEN; HOSPITALISED; OTHER"),
    Column("AEOUT", "string", "Outcome.", values="; ".join(AE_OUTCOME.values())),
    Column("AESTDTC", "date", "Start date."),
    Column("AEENDTC", "date", "End date (for a fatal event, the date of death)."),
    Column("AESTDY", "integer", "Study day of the start (day 1 = RFSTDTC)."),
    Column("AEENDY", "integer", "Study day of the end."),
]


TABLES: list[Table] = [
    Table("tidy/patients.csv", "One row per patient.", PATIENT_COLUMNS, _tidy_patients),
    Table("tidy/infusions.csv", "One row per MSC infusion.", INFUSION_COLUMNS, _tidy_infusions),
    Table("tidy/visits.csv", "One row per visit (scheduled or unscheduled).", VISIT_COLUMNS, _tidy_visits),
    Table("tidy/results.csv", "One row per result (long format).", RESULT_COLUMNS, _tidy_results),
    Table("tidy/outcomes.csv", "One row per visit with computed outcomes.", OUTCOME_COLUMNS, _tidy_outcomes),
    Table(
        "tidy/outcome_changes.csv",
        "One row per visit and result code: change from baseline.",
        CHANGE_COLUMNS,
        _tidy_changes,
    ),
    Table("tidy/medications.csv", "One row per concomitant medication.", MEDICATION_COLUMNS, _tidy_medications),
    Table("tidy/adverse_events.csv", "One row per adverse event.", AE_COLUMNS, _tidy_adverse_events),
    Table("sdtm/dm.csv", "SDTM-style DM (demographics).", DM_COLUMNS, _sdtm_dm),
    Table("sdtm/ex.csv", "SDTM-style EX (exposure: MSC infusions).", EX_COLUMNS, _sdtm_ex),
    Table("sdtm/cm.csv", "SDTM-style CM (concomitant medications).", CM_COLUMNS, _sdtm_cm),
    Table("sdtm/lb.csv", "SDTM-style LB (laboratory results).", LB_COLUMNS, _sdtm_lb),
    Table("sdtm/qs.csv", "SDTM-style QS (SLEDAI-2K items and total; PGA).", QS_COLUMNS, _sdtm_qs),
    Table("sdtm/ae.csv", "SDTM-style AE (adverse events).", AE_SDTM_COLUMNS, _sdtm_ae),
]

DICTIONARY_COLUMNS = [
    Column("file", "string", "Member of the zip the column belongs to."),
    Column("column", "string", "Column name."),
    Column("position", "integer", "Position of the column in the file (1 = first)."),
    Column("type", "string", "Type.", values="string; integer; decimal; date; datetime; flag (1/0)"),
    Column("unit", "string", "Unit, where the column has a fixed one."),
    Column("description", "string", "What the column holds."),
    Column("values", "string", "Allowed values (code=label), where the column is coded."),
    Column("file_description", "string", "What one row of the file is."),
]


def _dictionary_rows(ctx: Context) -> Iterator[tuple]:
    for table in [*TABLES, DICTIONARY]:
        for position, col in enumerate(table.columns, start=1):
            kind = "flag (1/0)" if col.kind == "flag" else col.kind
            yield (table.name, col.name, position, kind, col.unit, col.description, col.values, table.description)


DICTIONARY = Table("data_dictionary.csv", "One row per column of every CSV file.", DICTIONARY_COLUMNS, _dictionary_rows)


# FHIR R4 bundle ----------------------------------------------------------------------------------------


def _fhir_id(ctx: Context, kind: str, pk) -> str:
    return str(uuid.uuid5(FHIR_ID_NAMESPACE, f"{ctx.study.code}/{kind}/{pk}"))


def _ref(ctx: Context, kind: str, pk, display: str | None = None) -> dict:
    ref = {"reference": f"urn:uuid:{_fhir_id(ctx, kind, pk)}"}
    if display:
        ref["display"] = display
    return ref


def _local_code(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": f"{REGISTRY_NS}/CodeSystem/{system}", "code": code}
    if display:
        coding["display"] = display
    return coding


def _subject_identifier(ctx: Context, subject: str) -> dict:
    return {"system": f"{REGISTRY_NS}/sid/{ctx.study.code}/subject", "value": subject}


def _quantity(value: Decimal, unit: str) -> dict:
    quantity = {"value": Decimal(plain(value)), "unit": unit}
    if unit in UCUM_CODES:
        quantity.update(system=UCUM, code=UCUM_CODES[unit])
    return quantity


def _fhir_study(ctx: Context) -> Iterator[tuple[str, dict]]:
    study = ctx.study
    system = (
        "https://clinicaltrials.gov"
        if study.registration_id.upper().startswith("NCT")
        else f"{REGISTRY_NS}/sid/registration"
    )
    resource = {
        "resourceType": "ResearchStudy",
        "id": _fhir_id(ctx, "ResearchStudy", study.pk),
        "identifier": [
            {"system": system, "value": study.registration_id},
            {"system": f"{REGISTRY_NS}/sid/study", "value": study.code},
        ],
        "title": study.title,
        "status": FHIR_STUDY_STATUS.get(study.status, "active"),
        "phase": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/research-study-phase",
                    "code": FHIR_STUDY_PHASE.get(study.phase, "n-a"),
                }
            ],
            "text": study.get_phase_display(),
        },
        "condition": [{"coding": [{"system": SNOMED, "code": "55464009", "display": "Systemic lupus erythematosus"}]}],
        "site": [
            {
                "identifier": {"system": f"{REGISTRY_NS}/sid/site", "value": ctx.sites[s].code},
                "display": ctx.sites[s].code,
            }
            for s in ctx.site_ids
        ],
    }
    if study.sponsor:
        resource["sponsor"] = {"display": study.sponsor}
    yield "ResearchStudy", resource


def _fhir_patients(ctx: Context) -> Iterator[tuple[str, dict]]:
    qs = (
        _patients(ctx)
        .annotate(n_infusions=_count_infusions("pk"))
        .order_by("subject_code")
        .values_list(
            "pk", "site_id", "subject_code", "sex", "birth_year", "consent_date", "status", "status_date", "n_infusions"
        )
    )
    gender = {rc.Sex.FEMALE: "female", rc.Sex.MALE: "male"}
    study_ref = _ref(ctx, "ResearchStudy", ctx.study.pk)
    for pk, site, subject, sex, birth, consent, status, status_date, n in _stream(qs):
        patient = {
            "resourceType": "Patient",
            "id": _fhir_id(ctx, "Patient", pk),
            "identifier": [_subject_identifier(ctx, subject)],
            "gender": gender.get(sex, "unknown"),
            "birthDate": f"{birth:04d}",
        }
        if status == pc.PatientStatus.DECEASED and status_date:
            patient["deceasedDateTime"] = status_date.isoformat()
        elif status == pc.PatientStatus.DECEASED:
            patient["deceasedBoolean"] = True
        yield "Patient", patient
        arm = _arm(n or 0)[1]
        subject_resource = {
            "resourceType": "ResearchSubject",
            "id": _fhir_id(ctx, "ResearchSubject", pk),
            "identifier": [_subject_identifier(ctx, subject)],
            "status": FHIR_SUBJECT_STATUS.get(status, "on-study"),
            "study": study_ref,
            "individual": _ref(ctx, "Patient", pk, subject),
            "assignedArm": arm,
            "actualArm": arm,
        }
        period = {}
        if consent:
            period["start"] = consent.isoformat()
        if status in ENDED_STATUSES and status_date:
            period["end"] = status_date.isoformat()
        if period:
            subject_resource["period"] = period
        subject_resource["extension"] = [
            {"url": f"{REGISTRY_NS}/StructureDefinition/site", "valueString": ctx.site_code(site)}
        ]
        yield "ResearchSubject", subject_resource


def _fhir_procedures(ctx: Context) -> Iterator[tuple[str, dict]]:
    qs = (
        TransplantEvent.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .order_by("patient__subject_code", "infusion_number")
        .values_list(
            "pk",
            "patient_id",
            "patient__site_id",
            "patient__subject_code",
            "infusion_number",
            "infused_at",
            "duration_minutes",
            "lot__lot_number",
            "lot__tissue_source",
            "lot__origin",
            "weight_kg",
            "dose_cells_per_kg",
            "total_cells",
        )
    )
    for pk, patient, site, subject, number, at, minutes, lot, tissue, origin, weight, dose, total in _stream(qs):
        zone = ctx.zone(site)
        cell_type = CELL_TYPE.get(tissue, "MSC")
        resource = {
            "resourceType": "Procedure",
            "id": _fhir_id(ctx, "Procedure", pk),
            "identifier": [{"system": f"{REGISTRY_NS}/sid/{ctx.study.code}/infusion", "value": f"{subject}-{number}"}],
            "status": "completed",
            "category": {"text": "Cell therapy"},
            "code": {
                "coding": [_local_code("procedure", "MSCT", "Mesenchymal stem cell infusion")],
                "text": f"{cell_type} infusion ({origin})",
            },
            "subject": _ref(ctx, "Patient", patient, subject),
            "usedCode": [{"coding": [_local_code("cell-product-lot", lot)], "text": f"{cell_type} lot {lot}"}],
            "note": [
                {
                    "text": f"Infusion {number}; dose {dose} cells/kg; body weight {plain(weight)} kg; "
                    f"total {total} cells; route intravenous."
                }
            ],
        }
        local = at.astimezone(zone)
        if minutes:
            resource["performedPeriod"] = {
                "start": local.isoformat(timespec="seconds"),
                "end": (local + dt.timedelta(minutes=minutes)).isoformat(timespec="seconds"),
            }
        else:
            resource["performedDateTime"] = local.isoformat(timespec="seconds")
        yield "Procedure", resource


def _fhir_observations(ctx: Context) -> Iterator[tuple[str, dict]]:
    qs = (
        _results(ctx)
        .order_by("visit__patient__subject_code", "visit__target_date", "visit__code", "code")
        .values_list(
            "pk",
            "visit__patient_id",
            "visit__patient__subject_code",
            "visit__code",
            "visit__actual_date",
            "visit__sledai_items",
            "code",
            "value",
            "derived",
        )
    )
    category_system = "http://terminology.hl7.org/CodeSystem/observation-category"
    for pk, patient, subject, visit, on, items, code, value, derived in _stream(qs):
        analyte = ANALYTES.get(code)
        label = analyte.label if analyte else code
        unit = analyte.unit if analyte else ""
        codings = []
        if analyte and analyte.loinc:
            codings.append({"system": LOINC, "code": analyte.loinc, "display": label})
        codings.append(_local_code("result", code, label))
        category = OBSERVATION_CATEGORY.get(code, "laboratory")
        resource = {
            "resourceType": "Observation",
            "id": _fhir_id(ctx, "Observation", pk),
            "status": "final",
            "category": [{"coding": [{"system": category_system, "code": category}]}],
            "code": {"coding": codings, "text": label},
            "subject": _ref(ctx, "Patient", patient, subject),
            "valueQuantity": _quantity(value, unit),
            "note": [{"text": f"Visit {visit}"}],
        }
        if on:
            resource["effectiveDateTime"] = on.isoformat()
        if derived:
            resource["method"] = {"text": "Computed by the registry"}
        if code == "SLEDAI2K" and items is not None:
            present = set(items)
            resource["component"] = [
                {
                    "code": {"coding": [_local_code("sledai-2k-item", item_code, item.label)], "text": item.label},
                    "valueBoolean": item_code in present,
                }
                for item_code, item in SLEDAI_ITEMS.items()
            ]
        yield "Observation", resource


def _fhir_medications(ctx: Context) -> Iterator[tuple[str, dict]]:
    qs = (
        ConcomitantMedication.objects.for_sites(ctx.site_ids)
        .filter(patient__study_id=ctx.study.pk)
        .order_by("patient__subject_code", "start_date", "pk")
        .values_list(
            "pk",
            "patient_id",
            "patient__subject_code",
            "drug",
            "drug_other",
            "dose",
            "unit",
            "frequency",
            "start_date",
            "stop_date",
            "ongoing",
        )
    )
    labels = dict(pc.Drug.choices)
    frequencies = dict(pc.Frequency.choices)
    for pk, patient, subject, drug, other, dose, unit, frequency, start, stop, ongoing in _stream(qs):
        name = other if drug == pc.Drug.OTHER else labels.get(drug, drug)
        period = {"start": start.isoformat()}
        if stop:
            period["end"] = stop.isoformat()
        yield (
            "MedicationStatement",
            {
                "resourceType": "MedicationStatement",
                "id": _fhir_id(ctx, "MedicationStatement", pk),
                "status": "active" if ongoing else "completed",
                "medicationCodeableConcept": {"coding": [_local_code("drug", drug, labels.get(drug))], "text": name},
                "subject": _ref(ctx, "Patient", patient, subject),
                "effectivePeriod": period,
                "dosage": [
                    {
                        "text": f"{plain(dose)} {unit} {frequencies.get(frequency, frequency).lower()}",
                        "doseAndRate": [{"doseQuantity": {"value": Decimal(plain(dose)), "unit": unit}}],
                    }
                ],
            },
        )


def _fhir_adverse_events(ctx: Context) -> Iterator[tuple[str, dict]]:
    categories = dict(c.AECategory.choices)
    study_ref = _ref(ctx, "ResearchStudy", ctx.study.pk)
    for ae in _ae_rows(ctx):
        subject = ae["patient__subject_code"]
        criteria = [name for name in SERIOUS_FIELDS if ae[name]]
        if criteria:
            code, display = FHIR_SERIOUSNESS[criteria[0]]
        else:
            code, display = "Non-serious", "Non-serious"
        grade = ae["grade"]
        severity = {1: "mild", 2: "moderate"}.get(grade, "severe")
        resource = {
            "resourceType": "AdverseEvent",
            "id": _fhir_id(ctx, "AdverseEvent", ae["pk"]),
            "actuality": "actual",
            "category": [{"coding": [_local_code("ae-category", ae["category"], categories.get(ae["category"]))]}],
            "event": {"text": ae["term"]},
            "subject": _ref(ctx, "Patient", ae["patient_id"], subject),
            "date": ae["onset_date"].isoformat(),
            "detected": ae["aware_date"].isoformat(),
            "seriousness": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
                        "code": code,
                        "display": display,
                    }
                ]
            },
            "severity": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "code": severity},
                    _local_code("ctcae-grade", str(grade), f"CTCAE grade {grade}"),
                ]
            },
            "outcome": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
                        "code": FHIR_AE_OUTCOME.get(ae["outcome"], "unknown"),
                    }
                ]
            },
            "study": [study_ref],
        }
        infusion = ae["transplant_id"] or ae["first_infusion_id"]
        if infusion:
            causality = FHIR_CAUSALITY.get(ae["relatedness"])
            assessment = (
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess",
                            "code": causality[0],
                            "display": causality[1],
                        }
                    ]
                }
                if causality
                else {"coding": [_local_code("relatedness", ae["relatedness"], "Unrelated")], "text": "Unrelated"}
            )
            resource["suspectEntity"] = [
                {"instance": _ref(ctx, "Procedure", infusion), "causality": [{"assessment": assessment}]}
            ]
        yield "AdverseEvent", resource


FHIR_BUILDERS = [
    _fhir_study,
    _fhir_patients,
    _fhir_procedures,
    _fhir_observations,
    _fhir_medications,
    _fhir_adverse_events,
]


def fhir_models() -> dict[str, type]:
    """The fhir.resources R4 (R4B package) model of each resource type the bundle holds."""
    from fhir.resources.R4B.adverseevent import AdverseEvent as FhirAdverseEvent
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.medicationstatement import MedicationStatement
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient as FhirPatient
    from fhir.resources.R4B.procedure import Procedure
    from fhir.resources.R4B.researchstudy import ResearchStudy
    from fhir.resources.R4B.researchsubject import ResearchSubject

    return {
        "Bundle": Bundle,
        "ResearchStudy": ResearchStudy,
        "ResearchSubject": ResearchSubject,
        "Patient": FhirPatient,
        "Procedure": Procedure,
        "Observation": Observation,
        "AdverseEvent": FhirAdverseEvent,
        "MedicationStatement": MedicationStatement,
    }


def write_fhir_bundle(zf: zipfile.ZipFile, ctx: Context) -> dict:
    """A Bundle (type collection) written entry by entry; each resource validated by its model first."""
    models = fhir_models()
    bundle_id = str(uuid.uuid5(FHIR_ID_NAMESPACE, f"export/{ctx.job.pk}"))
    header = models["Bundle"].model_validate(
        {
            "resourceType": "Bundle",
            "id": bundle_id,
            "type": "collection",
            "timestamp": ctx.generated_at.isoformat(),
        }
    )
    opening = header.model_dump_json()
    assert opening.endswith("}")
    with _Member("fhir/bundle.json", zf) as member:
        member.text.write(opening[:-1] + ',"entry":[\n')
        for builder in FHIR_BUILDERS:
            for kind, data in builder(ctx):
                resource = models[kind].model_validate(data)
                if member.rows:
                    member.text.write(",\n")
                member.text.write(f'{{"fullUrl":"urn:uuid:{data["id"]}","resource":{resource.model_dump_json()}}}')
                member.rows += 1
                if member.rows % HEARTBEAT_ROWS == 0:
                    ctx.heartbeat()
        member.text.write("\n]}\n")
    return member.record
