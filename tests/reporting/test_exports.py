"""Study exports: the zip (tidy CSV, data dictionary, SDTM-style datasets, FHIR R4 bundle, manifest), built by
the service as the background task would, scoped to the requester's sites, and served by the admin and the API.

The world: study MSCT-SLE at site A (NJDT, Nanjing) and site B (LDN, London). Site A has A-001 (one infusion,
BL and M1 recorded, a medication, an adverse event) and A-002 (a double MSCT, day 0 and day 7); site B has
B-001 with the same data as A-001. Exports of site A must hold nothing of B.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib
import io
import json
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from django.contrib import admin
from django.core.cache import cache
from django.urls import include, path
from rest_framework.routers import SimpleRouter
from rest_framework.test import APIClient

from followup import services as followup_services
from followup.models import Visit
from patients.models import Patient
from patients.services import medication_record
from registry.api_keys import api_key_issue
from registry.models import ApiKey, ApiKeyScope, Site, Study
from reporting import exports
from reporting.api.exports import ExportViewSet
from reporting.constants import ExportState
from reporting.models import ExportJob
from tests.conftest import FROZEN_NOW
from tests.factories import DAY_ZERO, make_lot, make_patient, make_study, make_transplant, make_user

# The ExportJob admin registers itself on import; import it before admin.site.urls is read below.
importlib.import_module("reporting.admin")

router = SimpleRouter()
router.register("exports", ExportViewSet, basename="export")
# The project's URLs, with the export endpoints and an admin that has the ExportJob pages put first (the
# project's own admin URLs may have been built before the ExportJob admin was registered).
urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("admin/", admin.site.urls),
    *importlib.import_module("config.urls").urlpatterns,
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

TIDY = [
    "tidy/patients.csv",
    "tidy/infusions.csv",
    "tidy/visits.csv",
    "tidy/results.csv",
    "tidy/outcomes.csv",
    "tidy/outcome_changes.csv",
    "tidy/medications.csv",
    "tidy/adverse_events.csv",
]
SDTM = [
    "sdtm/dm.csv",
    "sdtm/ex.csv",
    "sdtm/cm.csv",
    "sdtm/lb.csv",
    "sdtm/is.csv",
    "sdtm/qs.csv",
    "sdtm/ae.csv",
    "sdtm/co.csv",
]
# IS (anti-dsDNA, ANA) has no records in these exports: its CSV is a header only, with no XPT or Dataset-JSON.
EMPTY_SDTM = {"sdtm/is.csv"}
SDTM_DELIVERY = [name.replace(".csv", ext) for name in SDTM if name not in EMPTY_SDTM for ext in (".xpt", ".json")] + [
    "sdtm/define.xml"
]
EVERY_FILE = {*TIDY, *SDTM, *SDTM_DELIVERY, "data_dictionary.csv", "fhir/bundle.json", "manifest.json"}
FHIR_TYPES = {
    "ResearchStudy",
    "ResearchSubject",
    "Patient",
    "Procedure",
    "Observation",
    "AdverseEvent",
    "MedicationStatement",
}


# The world ---------------------------------------------------------------------------------------------


@dataclass
class World:
    study: Study
    site_a: Site
    site_b: Site
    user_a: object
    user_b: object
    key_a: ApiKey
    raw_a: str
    raw_a_read: str
    raw_b: str
    patient_b: Patient
    lot_b: str


def record_visits(patient: Patient) -> None:
    followup_services.visit_record(
        visit=Visit.objects.get(patient=patient, code="BL"),
        actual_date=dt.date(2025, 3, 3),
        results={
            "CREAT": ("0.9", "mg/dL"),
            "C3": ("0.7", None),
            "PLT": ("210", None),
            "PROT24H": ("2505", "mg/24h"),
            "PGA": ("2", None),
            "PRED": ("30", None),
        },
        sledai_items=["arthritis", "rash", "low_complement", "proteinuria"],
    )
    followup_services.visit_record(
        visit=Visit.objects.get(patient=patient, code="M1"),
        actual_date=dt.date(2025, 4, 2),
        results={
            "CREAT": ("0.8", "mg/dL"),
            "C3": ("0.9", None),
            "PLT": ("220", None),
            "PROT24H": ("0.9", None),
            "PGA": ("1", None),
            "PRED": ("10", None),
        },
        sledai_items=["rash"],
    )


def add_medication_and_ae(patient: Patient) -> None:
    medication_record(
        patient=patient,
        drug="prednisone",
        dose=Decimal("10"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 1, 20),
    )
    medication_record(
        patient=patient,
        drug="hydroxychloroquine",
        dose=Decimal("200"),
        unit="mg",
        frequency="bid",
        start_date=dt.date(2025, 1, 20),
        stop_date=dt.date(2025, 6, 1),
    )
    followup_services.ae_record(
        patient=patient,
        transplant=None,
        term="Herpes zoster",
        category="infection",
        onset_date=dt.date(2025, 5, 1),
        grade=3,
        serious_hospitalisation=True,
        relatedness="possible",
        expected=False,
        aware_date=dt.date(2025, 5, 2),
    )


@pytest.fixture(autouse=True)
def clock():
    import time_machine

    with time_machine.travel(FROZEN_NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def export_dir(settings, tmp_path) -> Path:
    cache.clear()  # API throttle counters
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


@pytest.fixture
def world(site_a, site_b, study) -> World:
    lot_a = make_lot(study, site_a, lot_number="LOT-A-001")
    lot_b = make_lot(study, site_b, lot_number="LOT-B-777")

    a1 = make_patient(study, site_a, subject_code="A-001", birth_year=1990)
    make_transplant(a1, lot_a)
    record_visits(a1)
    add_medication_and_ae(a1)

    a2 = make_patient(study, site_a, subject_code="A-002", sex="M", birth_year=1985)
    make_transplant(a2, lot_a)
    make_transplant(a2, lot_a, day=DAY_ZERO + dt.timedelta(days=7))

    b1 = make_patient(study, site_b, subject_code="B-001", birth_year=1979)
    make_transplant(b1, lot_b)
    record_visits(b1)
    add_medication_and_ae(b1)

    key_a, raw_a = api_key_issue(site=site_a, name="NJDT EHR", scope=ApiKeyScope.READ_WRITE)
    _, raw_a_read = api_key_issue(site=site_a, name="NJDT reader", scope=ApiKeyScope.READ)
    _, raw_b = api_key_issue(site=site_b, name="LDN EHR", scope=ApiKeyScope.READ_WRITE)
    return World(
        study=study,
        site_a=site_a,
        site_b=site_b,
        user_a=make_user("export_a", site_a),
        user_b=make_user("export_b", site_b),
        key_a=key_a,
        raw_a=raw_a,
        raw_a_read=raw_a_read,
        raw_b=raw_b,
        patient_b=b1,
        lot_b="LOT-B-777",
    )


def run_export(world: World, user) -> tuple[ExportJob, zipfile.ZipFile]:
    job = exports.export_job_request(study=world.study, user=user)
    job = exports.export_job_run(job_id=job.pk)
    assert job.state == ExportState.DONE, job.error
    return job, zipfile.ZipFile(job.file_path)


@pytest.fixture
def export_a(world) -> tuple[ExportJob, zipfile.ZipFile]:
    return run_export(world, world.user_a)


def csv_rows(archive: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))


def api(raw_key: str) -> APIClient:
    client = APIClient(raise_request_exception=True)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


# The zip -----------------------------------------------------------------------------------------------


def test_export_holds_every_file_and_the_manifest_matches_the_members(world, export_a, export_dir):
    job, archive = export_a

    assert set(archive.namelist()) == EVERY_FILE
    assert Path(job.file_path) == export_dir / f"{job.pk}.zip"
    assert job.progress == 100
    assert [p.name for p in export_dir.iterdir()] == [f"{job.pk}.zip"], "no temporary file is left behind"

    manifest = json.loads(archive.read("manifest.json"))
    assert manifest == job.manifest
    assert manifest["format_version"] == exports.EXPORT_FORMAT_VERSION
    assert manifest["study"]["code"] == "MSCT-SLE"
    assert manifest["study"]["registration_id"] == "NCT01741857"
    assert manifest["sites"] == ["NJDT"]
    assert dt.datetime.fromisoformat(manifest["generated_at"]).tzinfo is not None
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == EVERY_FILE - {"manifest.json"}
    for name, entry in listed.items():
        data = archive.read(name)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["bytes"] == len(data), name
        if name.endswith(".csv"):
            assert entry["rows"] == len(csv_rows(archive, name)), name
        elif name == "fhir/bundle.json":
            assert entry["rows"] == len(json.loads(data)["entry"]), name
        elif name.endswith(".json"):
            assert entry["rows"] == len(json.loads(data)["rows"]) == json.loads(data)["records"], name
        elif name.endswith(".xpt"):
            assert entry["rows"] == len(csv_rows(archive, name.replace(".xpt", ".csv"))), name
        else:
            assert entry["rows"] == data.count(b"<ItemDef "), name


def test_row_counts_follow_the_data_of_site_a(export_a):
    _, archive = export_a
    rows = {f["name"]: f["rows"] for f in json.loads(archive.read("manifest.json"))["files"]}

    assert rows["tidy/patients.csv"] == 2
    assert rows["tidy/infusions.csv"] == 3  # A-001 once, A-002 twice
    assert rows["tidy/medications.csv"] == 2
    assert rows["tidy/adverse_events.csv"] == 1
    # BL and M1 of A-001: six entered results each plus the SLEDAI-2K total and eGFR
    assert rows["tidy/results.csv"] == 16
    assert rows["sdtm/qs.csv"] == 2 * (24 + 1 + 1)  # items, total, PGA at BL and M1
    assert rows["sdtm/lb.csv"] == 2 * 5  # CREAT, EGFR, C3, PLT, PROT24H
    assert rows["sdtm/is.csv"] == 0  # no anti-dsDNA or ANA result


def test_site_b_appears_nowhere_in_an_export_of_site_a(world, export_a):
    _, archive = export_a
    b_fhir_id = exports._fhir_id(
        exports.Context(job=None, study=world.study, site_ids=[], sites={}, generated_at=FROZEN_NOW),
        "Patient",
        world.patient_b.pk,
    )
    forbidden = ["B-001", "LDN", "London", world.lot_b, b_fhir_id]

    for name in archive.namelist():
        data = archive.read(name)  # bytes: the XPT files are binary
        for needle in forbidden:
            assert needle.encode() not in data, f"{needle} found in {name}"
    everything = "".join(archive.read(name).decode() for name in archive.namelist() if not name.endswith(".xpt"))
    assert "A-001" in everything and "A-002" in everything


def test_an_export_for_a_user_of_both_sites_holds_both(world):
    from registry.constants import Role
    from registry.services import membership_grant

    both = make_user("export_both", world.site_a)
    membership_grant(user=both, site=world.site_b, role=Role.MONITOR)
    job, archive = run_export(world, both)

    assert sorted(job.site_ids) == sorted([world.site_a.pk, world.site_b.pk])
    assert {r["SUBJID"] for r in csv_rows(archive, "sdtm/dm.csv")} == {"A-001", "A-002", "B-001"}


# Tidy CSV and the data dictionary ----------------------------------------------------------------------


def test_tidy_csvs_load_in_pandas_with_numeric_value_columns(export_a):
    _, archive = export_a
    dictionary = pd.read_csv(io.BytesIO(archive.read("data_dictionary.csv")))

    for name in TIDY:
        frame = pd.read_csv(io.BytesIO(archive.read(name)))
        kinds = dict(dictionary[dictionary["file"] == name][["column", "type"]].itertuples(index=False))
        assert list(frame.columns) == list(kinds), name
        for column, kind in kinds.items():
            if kind in ("integer", "decimal", "flag (1/0)"):
                assert pd.api.types.is_numeric_dtype(frame[column]), f"{name}:{column} is {frame[column].dtype}"

    results = pd.read_csv(io.BytesIO(archive.read("tidy/results.csv")), dtype={"subject": str})
    creat = results[(results["subject"] == "A-001") & (results["visit"] == "BL") & (results["code"] == "CREAT")].iloc[0]
    assert creat["value"] == pytest.approx(79.56)
    assert creat["unit"] == "umol/L"
    assert creat["entered_value"] == pytest.approx(0.9)
    assert creat["entered_unit"] == "mg/dL"
    assert creat["derived"] == 0
    assert creat["loinc"] == "14682-9"
    assert creat["date"] == "2025-03-03"
    egfr = results[(results["visit"] == "BL") & (results["code"] == "EGFR")].iloc[0]
    assert egfr["derived"] == 1 and pd.isna(egfr["entered_value"])

    outcomes = pd.read_csv(io.BytesIO(archive.read("tidy/outcomes.csv")))
    m1 = outcomes[outcomes["visit"] == "M1"].iloc[0]
    assert m1["sledai"] == 2 and m1["sledai_change"] == -10
    assert m1["sri4"] == 1

    infusions = pd.read_csv(io.BytesIO(archive.read("tidy/infusions.csv")))
    second = infusions[(infusions["subject"] == "A-002") & (infusions["infusion_number"] == 2)].iloc[0]
    assert second["infusion_date"] == "2025-03-10"
    assert second["infused_at"] == "2025-03-10T10:00+08:00"
    assert second["study_day"] == 7
    assert second["cell_type"] == "UC-MSC"


def test_data_dictionary_describes_every_column_of_every_csv(export_a):
    _, archive = export_a
    described: dict[str, list[str]] = {}
    for row in csv_rows(archive, "data_dictionary.csv"):
        assert row["description"], row
        assert row["type"] in {"string", "integer", "decimal", "date", "datetime", "flag (1/0)"}, row
        described.setdefault(row["file"], []).append(row["column"])

    csv_members = [name for name in archive.namelist() if name.endswith(".csv")]
    assert set(described) == set(csv_members)
    for name in csv_members:
        header = next(csv.reader(io.StringIO(archive.read(name).decode())))
        assert described[name] == header, name


# SDTM-style datasets -----------------------------------------------------------------------------------


def test_sdtm_datasets_use_standard_variables(export_a):
    _, archive = export_a

    dm = {r["SUBJID"]: r for r in csv_rows(archive, "sdtm/dm.csv")}
    assert dm["A-001"]["USUBJID"] == "MSCT-SLE-A-001"
    assert dm["A-001"]["STUDYID"] == "MSCT-SLE" and dm["A-001"]["DOMAIN"] == "DM"
    assert dm["A-001"]["SITEID"] == "NJDT"
    assert dm["A-001"]["BRTHDTC"] == "1990"
    assert dm["A-001"]["RFSTDTC"] == "2025-03-03T10:00"
    assert dm["A-001"]["RFICDTC"] == "2025-01-15"
    assert dm["A-001"]["SEX"] == "F"
    assert (dm["A-001"]["ARM"], dm["A-002"]["ARM"]) == ("MSCT single", "MSCT double")

    ex = csv_rows(archive, "sdtm/ex.csv")
    assert {(r["USUBJID"], r["EXSEQ"]) for r in ex} == {
        ("MSCT-SLE-A-001", "1"),
        ("MSCT-SLE-A-002", "1"),
        ("MSCT-SLE-A-002", "2"),
    }
    first = ex[0]
    assert (first["EXTRT"], first["EXDOSE"], first["EXDOSU"], first["EXROUTE"]) == (
        "UC-MSC",
        "1",
        "10^6/kg",
        "INTRAVENOUS",
    )
    assert first["EXSTDTC"] == "2025-03-03T10:00" and first["EXSTDY"] == "1"

    cm = csv_rows(archive, "sdtm/cm.csv")
    assert {(r["CMTRT"], r["CMDOSFRQ"], r["CMENRTPT"]) for r in cm} == {
        ("Prednisone (or equivalent)", "QD", "ONGOING"),
        ("Hydroxychloroquine", "BID", ""),
    }

    lb = csv_rows(archive, "sdtm/lb.csv")
    creat = next(r for r in lb if r["LBTESTCD"] == "CREAT" and r["VISIT"] == "BL")
    assert (creat["LBORRES"], creat["LBORRESU"], creat["LBSTRESN"], creat["LBSTRESU"]) == (
        "0.9",
        "mg/dL",
        "79.56",
        "umol/L",
    )
    assert creat["LBLOINC"] == "14682-9" and creat["LBDTC"] == "2025-03-03" and creat["LBBLFL"] == "Y"
    assert {r["LBTESTCD"] for r in lb} == {"CREAT", "GFRE", "C3", "PLAT", "PROTEXR"}
    assert all(r["LBLOINC"] for r in lb)
    assert [int(r["LBSEQ"]) for r in lb] == list(range(1, len(lb) + 1))

    qs = csv_rows(archive, "sdtm/qs.csv")
    bl = [r for r in qs if r["VISIT"] == "BL" and r["QSCAT"] == "SLEDAI-2K"]
    assert len(bl) == 25
    total = next(r for r in bl if r["QSTESTCD"] == "SLEDAITT")
    assert total["QSSTRESN"] == "12" and total["QSDRVFL"] == "Y"  # arthritis 4 + rash 2 + low C 2 + proteinuria 4
    items = [r for r in bl if r["QSTESTCD"] != "SLEDAITT"]
    assert sum(int(r["QSSTRESN"]) for r in items) == 12
    arthritis = next(r for r in items if r["QSTEST"] == "Arthritis")
    assert (arthritis["QSORRES"], arthritis["QSSTRESN"]) == ("PRESENT", "4")

    ae = csv_rows(archive, "sdtm/ae.csv")
    assert len(ae) == 1
    event = ae[0]
    assert event["AETERM"] == "Herpes zoster" and event["AEDECOD"] == ""
    assert (event["AESEV"], event["AETOXGR"], event["AESER"], event["AESHOSP"]) == ("SEVERE", "3", "Y", "Y")
    assert event["AEREL"] == "POSSIBLY RELATED" and event["AECAT"] == "INFECTION"
    assert (event["AESTDTC"], event["AEENDTC"], event["AEOUT"]) == ("2025-05-01", "", "UNKNOWN")


# FHIR --------------------------------------------------------------------------------------------------


def test_fhir_bundle_validates_and_observations_carry_loinc(world, export_a):
    from fhir.resources.R4B.bundle import Bundle

    from followup.catalogue import ANALYTES

    _, archive = export_a
    text = archive.read("fhir/bundle.json").decode()
    bundle = Bundle.model_validate_json(text)  # the whole bundle, every resource, validated by fhir.resources

    assert bundle.type == "collection"
    resources = [entry.resource for entry in bundle.entry]
    assert {r.get_resource_type() for r in resources} == FHIR_TYPES
    full_urls = {entry.fullUrl for entry in bundle.entry}
    assert len(full_urls) == len(bundle.entry)

    # Every reference points at a resource of the bundle.
    raw = json.loads(text)

    def references(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference":
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    assert set(references(raw)) <= full_urls

    observations = [r for r in resources if r.get_resource_type() == "Observation"]
    assert len(observations) == 16
    for observation in observations:
        registry_code = next(c.code for c in observation.code.coding if c.system.endswith("/CodeSystem/result"))
        loinc = [c.code for c in observation.code.coding if c.system == "http://loinc.org"]
        expected = ANALYTES[registry_code].loinc
        assert loinc == ([expected] if expected else []), registry_code
    creat = next(o for o in observations if any(c.code == "14682-9" for c in o.code.coding))
    assert float(creat.valueQuantity.value) == pytest.approx(79.56)
    assert creat.valueQuantity.system == "http://unitsofmeasure.org" and creat.valueQuantity.code == "umol/L"
    sledai = next(
        o for o in observations if o.code.text == "SLEDAI-2K total" and str(o.effectiveDateTime) == "2025-03-03"
    )
    assert sum(1 for component in sledai.component if component.valueBoolean) == 4

    patients = [r for r in resources if r.get_resource_type() == "Patient"]
    assert sorted(p.identifier[0].value for p in patients) == ["A-001", "A-002"]
    assert all(p.name is None for p in patients)
    subjects = [r for r in resources if r.get_resource_type() == "ResearchSubject"]
    assert sorted(s.actualArm for s in subjects) == ["MSCT double", "MSCT single"]
    event = next(r for r in resources if r.get_resource_type() == "AdverseEvent")
    assert event.seriousness.coding[0].code == "SeriousResultsInHospitalization"
    assert event.suspectEntity[0].causality[0].assessment.coding[0].code == "Possible"


# Running -----------------------------------------------------------------------------------------------


def test_requesting_an_export_queues_the_task_after_commit(world, django_capture_on_commit_callbacks, monkeypatch):
    from celery import current_app

    from reporting import tasks as export_tasks

    ran = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: ran.append(current_app.tasks[name](*args)))
    assert export_tasks.build_export.name == exports.jobs.BUILD_EXPORT_TASK

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = exports.export_job_request(study=world.study, user=world.user_a)
        assert ran == [], "nothing is queued before the commit"
    assert len(callbacks) == 1
    assert ran == [ExportState.DONE]
    job.refresh_from_db()
    assert (job.state, job.progress, job.site_ids) == (ExportState.DONE, 100, [world.site_a.pk])


def test_a_job_the_broker_never_got_is_queued_again_and_built_once(world, monkeypatch):
    from celery import current_app
    from kombu.exceptions import OperationalError

    from reporting import tasks as export_tasks

    def broker_down(name, args):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr(current_app, "send_task", broker_down)
    job = exports.export_job_request(study=world.study, user=world.user_a)
    exports._queue(job.pk)  # what the commit would run: the failure is logged, the job stays queued
    job.refresh_from_db()
    assert job.state == ExportState.QUEUED

    queued = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: queued.extend(args))
    assert exports.export_jobs_resume(now=job.updated_at + dt.timedelta(minutes=1)) == []  # still in grace
    later = job.updated_at + exports.QUEUE_GRACE + dt.timedelta(seconds=1)
    assert exports.export_jobs_resume(now=later) == [job.pk]
    assert queued == [job.pk]

    built = export_tasks.build_export(job.pk)
    assert built == ExportState.DONE
    assert exports.export_jobs_resume(now=later + dt.timedelta(days=1)) == []  # done: never again


def test_a_job_is_built_once(world):
    job, _ = run_export(world, world.user_a)
    before = job.updated_at
    again = exports.export_job_run(job_id=job.pk)
    assert again.state == ExportState.DONE and again.updated_at == before


def test_a_failure_keeps_the_error_and_leaves_no_file(world, export_dir, monkeypatch):
    def broken(ctx):
        yield ("x",)
        raise RuntimeError("the database went away")

    results = next(t for t in exports.TABLES if t.name == "tidy/results.csv")
    monkeypatch.setattr(results, "rows", broken)
    job = exports.export_job_request(study=world.study, user=world.user_a)
    job = exports.export_job_run(job_id=job.pk)

    assert job.state == ExportState.FAILED
    assert "RuntimeError: the database went away" in job.error
    assert job.file_path == ""
    assert list(export_dir.iterdir()) == []


def test_a_requester_who_left_the_site_gets_no_export(world):
    from registry.models import Membership

    job = exports.export_job_request(study=world.study, user=world.user_a)
    Membership.objects.filter(user=world.user_a).delete()
    job = exports.export_job_run(job_id=job.pk)
    assert job.state == ExportState.FAILED and "no longer belongs" in job.error


def test_a_user_of_no_site_of_the_study_cannot_request_one(world):
    from django.core.exceptions import ValidationError

    other_site_study = make_study(world.site_b)
    with pytest.raises(ValidationError) as excinfo:
        exports.export_job_request(study=other_site_study, user=world.user_a)
    assert "study" in excinfo.value.message_dict
    assert not ExportJob.objects.exists()


# Admin -------------------------------------------------------------------------------------------------


def test_admin_lists_and_downloads_only_jobs_of_the_users_sites(client, world):
    job_a, _ = run_export(world, world.user_a)
    job_b, _ = run_export(world, world.user_b)

    client.force_login(world.user_a)
    listing = client.get("/admin/reporting/exportjob/")
    assert listing.status_code == 200
    ids = list(listing.context["cl"].result_list.values_list("pk", flat=True))
    assert ids == [job_a.pk]

    refused = client.get(f"/admin/reporting/exportjob/{job_b.pk}/download/")
    assert refused.status_code == 404
    assert client.get(f"/admin/reporting/exportjob/{job_b.pk}/change/").status_code == 302  # "doesn't exist"

    response = client.get(f"/admin/reporting/exportjob/{job_a.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert json.loads(archive.read("manifest.json"))["sites"] == ["NJDT"]


def test_admin_export_a_study_creates_a_job_for_the_users_sites(client, world, django_capture_on_commit_callbacks):
    client.force_login(world.user_a)
    assert client.get("/admin/reporting/exportjob/add/").status_code == 200

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/admin/reporting/exportjob/add/", {"study": world.study.pk, "_save": "Save"})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ExportJob.objects.get()
    assert (job.site_ids, job.requested_by, job.state) == ([world.site_a.pk], world.user_a, ExportState.QUEUED)
    assert len(callbacks) == 1


def test_admin_refuses_a_download_before_the_export_is_ready(client, world):
    job = exports.export_job_request(study=world.study, user=world.user_a)
    client.force_login(world.user_a)
    assert client.get(f"/admin/reporting/exportjob/{job.pk}/download/").status_code == 404


# API ---------------------------------------------------------------------------------------------------


def test_api_post_creates_a_job_for_the_keys_site_only(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api(world.raw_a).post("/api/v1/exports/", {"study": "MSCT-SLE"}, format="json")

    assert response.status_code == 202, response.content
    job = ExportJob.objects.get(pk=response.data["id"])
    assert job.site_ids == [world.site_a.pk]
    assert job.requested_by_key == world.key_a
    assert response.data["sites"] == ["NJDT"]
    assert response.data["state"] == "queued" and response.data["download_url"] is None
    assert response["Location"].endswith(f"/api/v1/exports/{job.pk}/")
    assert len(callbacks) == 1


def test_api_refuses_a_study_the_keys_site_is_not_in(world):
    make_study(world.site_b, code="B-ONLY")
    response = api(world.raw_a).post("/api/v1/exports/", {"study": "B-ONLY"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "study"
    assert not ExportJob.objects.exists()


def test_api_read_only_key_may_not_request_an_export_but_reads_its_sites_jobs(world):
    refused = api(world.raw_a_read).post("/api/v1/exports/", {"study": "MSCT-SLE"}, format="json")
    assert refused.status_code == 403
    assert not ExportJob.objects.exists()

    job_id = api(world.raw_a).post("/api/v1/exports/", {"study": "MSCT-SLE"}, format="json").data["id"]
    exports.export_job_run(job_id=job_id)
    reader = api(world.raw_a_read)
    assert [row["id"] for row in reader.get("/api/v1/exports/").data["results"]] == [job_id]
    assert reader.get(f"/api/v1/exports/{job_id}/download/").status_code == 200


def test_api_lists_reads_and_downloads_the_keys_jobs(world):
    client = api(world.raw_a)
    job_id = client.post("/api/v1/exports/", {"study": "MSCT-SLE"}, format="json").data["id"]

    not_ready = client.get(f"/api/v1/exports/{job_id}/download/")
    assert not_ready.status_code == 409
    assert not_ready["Content-Type"] == "application/problem+json"

    exports.export_job_run(job_id=job_id)
    detail = client.get(f"/api/v1/exports/{job_id}/")
    assert detail.status_code == 200
    assert (detail.data["state"], detail.data["progress"]) == ("done", 100)
    assert detail.data["download_url"].endswith(f"/api/v1/exports/{job_id}/download/")
    assert {f["name"] for f in detail.data["manifest"]["files"]} == EVERY_FILE - {"manifest.json"}

    listing = client.get("/api/v1/exports/")
    assert [row["id"] for row in listing.data["results"]] == [job_id]

    download = client.get(f"/api/v1/exports/{job_id}/download/", HTTP_ACCEPT="application/zip")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/zip"
    assert "attachment" in download["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert set(archive.namelist()) == EVERY_FILE
    assert json.loads(archive.read("manifest.json"))["sites"] == ["NJDT"]


def test_api_another_sites_key_sees_nothing_of_the_job(world):
    job_id = api(world.raw_a).post("/api/v1/exports/", {"study": "MSCT-SLE"}, format="json").data["id"]
    exports.export_job_run(job_id=job_id)

    other = api(world.raw_b)
    assert other.get(f"/api/v1/exports/{job_id}/").status_code == 404
    assert other.get(f"/api/v1/exports/{job_id}/download/").status_code == 404
    assert other.get("/api/v1/exports/").data["results"] == []
