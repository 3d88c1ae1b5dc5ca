"""Censored results in the study export (docs/clinical-rules.md, "Censored results"): SDTM LB keeps the sign
in LBORRES and LBSTRESC and leaves LBSTRESN empty; FHIR gives valueQuantity.comparator; the tidy CSV has a
comparator column, and the change from baseline of a censored value has the sign and no arithmetic."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile

import pandas as pd
import pytest

from followup.services import visit_record
from reporting import exports
from reporting.constants import ExportState
from tests.conftest import FROZEN_NOW
from tests.factories import DAY_ZERO, make_lot, make_patient, make_transplant, make_user

pytestmark = pytest.mark.django_db

M1 = DAY_ZERO + dt.timedelta(days=30)


@pytest.fixture(autouse=True)
def clock():
    import time_machine

    with time_machine.travel(FROZEN_NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def archive(site_a, study, settings, tmp_path) -> zipfile.ZipFile:
    settings.EXPORT_DIR = tmp_path / "exports"
    patient = make_patient(study, site_a, subject_code="A-001", birth_year=1990)
    make_transplant(patient, make_lot(study, site_a))
    visits = {v.code: v for v in patient.visits.all()}
    visit_record(
        visit=visits["BL"],
        actual_date=DAY_ZERO,
        results={"ADSDNA": ("120", None), "C3": ("5", "mg/dL", "<"), "CREAT": ("0.9", "mg/dL")},
    )
    visit_record(
        visit=visits["M1"],
        actual_date=M1,
        results={"ADSDNA": ("10", "IU/mL", "<"), "C3": ("0.8", None), "CREAT": ("20", None, "<")},
    )
    job = exports.export_job_request(study=study, user=make_user("censored_export", site_a))
    job = exports.export_job_run(job_id=job.pk)
    assert job.state == ExportState.DONE, job.error
    return zipfile.ZipFile(job.file_path)


def rows(archive, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))


def test_sdtm_lb_and_is_keep_the_sign_in_the_character_results_and_no_numeric_result(archive):
    lb = {(r["VISIT"], r["LBTESTCD"]): r for r in rows(archive, "sdtm/lb.csv")}
    autoantibodies = {(r["VISIT"], r["ISBDAGNT"]): r for r in rows(archive, "sdtm/is.csv")}
    dsdna = autoantibodies["M1", "DOUBLE STRANDED DNA"]
    assert (dsdna["ISORRES"], dsdna["ISORRESU"], dsdna["ISSTRESC"], dsdna["ISSTRESN"], dsdna["ISSTRESU"]) == (
        "<10",
        "IU/mL",
        "<10",
        "",
        "IU/mL",
    )
    c3 = lb["BL", "C3"]  # entered in mg/dL, standard in g/L: the sign goes with both
    assert (c3["LBORRES"], c3["LBORRESU"], c3["LBSTRESC"], c3["LBSTRESN"], c3["LBSTRESU"]) == (
        "<5",
        "mg/dL",
        "<0.05",
        "",
        "g/L",
    )
    exact = autoantibodies["BL", "DOUBLE STRANDED DNA"]
    assert (exact["ISTESTCD"], exact["ISORRES"], exact["ISSTRESC"], exact["ISSTRESN"]) == ("ATAB", "120", "120", "120")
    assert not {code for _, code in lb} & {"DSDNAAB", "ATAB"}
    assert ("M1", "GFRE") not in lb, "no eGFR from a censored creatinine"
    assert lb["M1", "CREAT"]["LBSTRESC"] == "<20"


def test_a_lab_result_and_an_autoantibody_of_one_visit_agree_on_the_variables_lb_and_is_share(archive):
    """Creatinine (LB) and anti-dsDNA (IS) recorded together, exact at BL and censored at M1: the records of
    a visit have the same identifiers, timing and flags, and the result in the same form."""
    lb = {(r["VISIT"], r["LBTESTCD"]): r for r in rows(archive, "sdtm/lb.csv")}
    autoantibodies = {(r["VISIT"], r["ISBDAGNT"]): r for r in rows(archive, "sdtm/is.csv")}

    def shared(record: dict, domain: str) -> dict:
        names = ["STUDYID", "USUBJID", "VISITNUM", "VISIT", "EPOCH"]
        suffixes = ["SPEC", "LOBXFL", "BLFL", "DTC", "DY"]
        form = {
            "censored": record[f"{domain}ORRES"].startswith("<"),
            "sign kept": record[f"{domain}STRESC"].startswith("<") == record[f"{domain}ORRES"].startswith("<"),
            "numeric": record[f"{domain}STRESN"] != "",
        }
        return {**{n: record[n] for n in names}, **{s: record[domain + s] for s in suffixes}, **form}

    for visit, censored in (("BL", False), ("M1", True)):
        creatinine = shared(lb[visit, "CREAT"], "LB")
        dsdna = shared(autoantibodies[visit, "DOUBLE STRANDED DNA"], "IS")
        assert creatinine == dsdna
        assert (creatinine["censored"], creatinine["numeric"]) == (censored, not censored)
    assert [lb[v, "CREAT"]["VISITNUM"] for v in ("BL", "M1")] == ["0", "30"]
    assert [lb[v, "CREAT"]["LBBLFL"] for v in ("BL", "M1")] == ["Y", ""]


def test_fhir_observation_carries_the_comparator(archive):
    from fhir.resources.R4B.bundle import Bundle

    text = archive.read("fhir/bundle.json").decode()
    Bundle.model_validate_json(text)  # still a valid bundle
    observations = [e["resource"] for e in json.loads(text)["entry"] if e["resource"]["resourceType"] == "Observation"]

    def quantity(loinc: str, day: str) -> dict:
        return next(
            o["valueQuantity"]
            for o in observations
            if o.get("effectiveDateTime") == day and any(c["code"] == loinc for c in o["code"]["coding"])
        )

    censored = quantity("5130-0", M1.isoformat())
    assert (censored["comparator"], censored["value"], censored["unit"]) == ("<", 10, "IU/mL")
    assert quantity("4485-9", DAY_ZERO.isoformat())["comparator"] == "<"
    assert "comparator" not in quantity("5130-0", DAY_ZERO.isoformat())


def test_tidy_results_have_a_comparator_column_and_changes_keep_the_sign(archive):
    results = pd.read_csv(io.BytesIO(archive.read("tidy/results.csv")), keep_default_na=False)
    assert list(results.columns[results.columns.get_loc("comparator") :][:2]) == ["comparator", "value"]
    by_key = {(r.visit, r.code): r for r in results.itertuples()}
    assert (by_key["M1", "ADSDNA"].comparator, float(by_key["M1", "ADSDNA"].value)) == ("<", 10.0)
    assert by_key["BL", "ADSDNA"].comparator == ""
    assert pd.api.types.is_numeric_dtype(pd.read_csv(io.BytesIO(archive.read("tidy/results.csv")))["value"])

    changes = {r["code"]: r for r in rows(archive, "tidy/outcome_changes.csv") if r["visit"] == "M1"}
    assert (changes["ADSDNA"]["baseline"], changes["ADSDNA"]["comparator"], changes["ADSDNA"]["value"]) == (
        "120",
        "<",
        "10",
    )
    assert changes["ADSDNA"]["change"] == "" and changes["ADSDNA"]["percent_change"] == ""
    assert (changes["C3"]["baseline_comparator"], changes["C3"]["baseline"], changes["C3"]["change"]) == (
        "<",
        "0.05",
        "",
    )
    dictionary = rows(archive, "data_dictionary.csv")
    assert any(r["file"] == "tidy/results.csv" and r["column"] == "comparator" for r in dictionary)


def test_the_cohort_report_summarises_a_censored_value_at_its_limit_and_says_how_many(site_a, study):
    from django.http import QueryDict
    from django.utils import translation

    from reporting.cohort import cohort_report, report_csv_rows
    from reporting.rendering import parse_filter, render_html

    patient = make_patient(study, site_a, subject_code="A-001", birth_year=1990)
    make_transplant(patient, make_lot(study, site_a))
    visits = {v.code: v for v in patient.visits.all()}
    visit_record(visit=visits["BL"], actual_date=DAY_ZERO, results={"ADSDNA": ("120", None)})
    visit_record(visit=visits["M1"], actual_date=M1, results={"ADSDNA": ("10", None, "<")})
    report = cohort_report(study=study, site_ids=[site_a.pk])
    m1 = next(r for r in report["time_points"] if (r["time_point"], r["code"]) == ("M1", "ADSDNA"))
    assert (m1["n"], m1["mean"], m1["censored"]) == (1, 10.0, 1)
    bl = next(r for r in report["time_points"] if (r["time_point"], r["code"]) == ("BL", "ADSDNA"))
    assert "censored" not in bl
    assert ["time_point", "", "M1", "ADSDNA", "censored", 1] in list(report_csv_rows(report))
    for language, words in (("en", "1 censored, at its limit"), ("zh-hans", "1 个删失值，按其界限值计")):
        with translation.override(language):
            assert words in render_html(study=study, site_ids=[site_a.pk], flt=parse_filter(QueryDict()))
