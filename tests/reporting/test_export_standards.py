"""The demo study's export checked the way an outside validator would (docs/exports.md): the FHIR bundle
against the official FHIR R4 JSON Schema (tests/reporting/data/fhir.r4.schema.json), the required bindings
of the coded elements it emits, UCUM on every Quantity, LOINC where the catalogue has it; the manifest's FHIR
version; MedDRA coding in the FHIR, tidy and SDTM AE outputs; the data dictionary's code lists."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from followup.catalogue import ANALYTES
from followup.models import AdverseEvent
from followup.services import ae_code_meddra, meddra_release_load
from registry.models import Study
from reporting import exports
from reporting.constants import ExportState
from reporting.exports.fhir import CTCAE_GRADE_EXTENSION, FHIR_VERSION, LOINC, MEDDRA, UCUM
from reporting.exports.sdtm_terms import ascii_text
from tests.factories import make_superuser

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SCHEMA = Path(__file__).parent / "data" / "fhir.r4.schema.json"
MEDDRA_SAMPLE = Path(__file__).parents[1] / "followup" / "meddra_sample"
SHINGLES = 94000001
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"
# Required bindings (FHIR R4) of the coded elements the bundle emits: element path -> (system or None for a
# plain code, allowed codes).
REQUIRED_CODES = {
    ("Bundle", "type"): {"collection"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("ResearchStudy", "status"): {
        "active",
        "administratively-completed",
        "approved",
        "closed-to-accrual",
        "closed-to-accrual-and-intervention",
        "completed",
        "disapproved",
        "in-review",
        "temporarily-closed-to-accrual",
        "temporarily-closed-to-accrual-and-intervention",
        "withdrawn",
    },
    ("ResearchSubject", "status"): {
        "candidate",
        "eligible",
        "follow-up",
        "ineligible",
        "not-registered",
        "off-study",
        "on-study",
        "on-study-intervention",
        "on-study-observation",
        "pending-on-study",
        "potential-candidate",
        "screening",
        "withdrawn",
    },
    ("Procedure", "status"): {
        "preparation",
        "in-progress",
        "not-done",
        "on-hold",
        "stopped",
        "completed",
        "entered-in-error",
        "unknown",
    },
    ("Observation", "status"): {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    },
    ("MedicationStatement", "status"): {
        "active",
        "completed",
        "entered-in-error",
        "intended",
        "stopped",
        "on-hold",
        "unknown",
        "not-taken",
    },
    ("AdverseEvent", "actuality"): {"actual", "potential"},
}
REQUIRED_CODEABLE = {
    ("AdverseEvent", "severity"): (f"{TERMINOLOGY}/adverse-event-severity", {"mild", "moderate", "severe"}),
    ("AdverseEvent", "outcome"): (
        f"{TERMINOLOGY}/adverse-event-outcome",
        {"resolved", "recovering", "ongoing", "resolvedWithSequelae", "fatal", "unknown"},
    ),
}
COMPARATORS = {"<", "<=", ">=", ">"}
# A UCUM expression: units, prefixes, exponents, '.', '/', brackets and {annotations}; no spaces.
UCUM_SYNTAX = re.compile(r"^(\{[^{}\s]+\}|[A-Za-z0-9%\[\]*^.\/()_'-]+(\{[^{}\s]+\})?)+$")


@pytest.fixture(scope="module")
def demo_export(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo study (6 patients) with a MedDRA release loaded and one adverse event coded, exported for
    both sites; the archive and the coded event's id."""
    with django_db_blocker.unblock(), transaction.atomic():
        with override_settings(EXPORT_DIR=tmp_path_factory.mktemp("exports")):
            call_command("seed_demo", patients=6, quiet=True, stdout=io.StringIO())
            meddra_release_load(directory=MEDDRA_SAMPLE, version="99.0")
            coded = AdverseEvent.objects.order_by("pk").first()
            assert coded is not None, "the demo study has adverse events"
            ae_code_meddra(ae=coded, llt_code=SHINGLES)
            study = Study.objects.get()
            job = exports.export_job_request(study=study, user=make_superuser("standards-export"))
            job = exports.export_job_run(job_id=job.pk)
            assert job.state == ExportState.DONE, job.error
            archive = zipfile.ZipFile(job.file_path)
            yield archive, coded
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def bundle(demo_export) -> dict:
    return json.loads(demo_export[0].read("fhir/bundle.json"))


def resources(bundle: dict, kind: str | None = None) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if kind is None or e["resource"]["resourceType"] == kind]


def csv_rows(archive: zipfile.ZipFile, name: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))


def quantities(node, path="") -> list[tuple[str, dict]]:
    """Every Quantity of a resource: each object under a key ending in 'Quantity' (valueQuantity,
    doseQuantity...) and each object with a value and a unit."""
    found = []
    if isinstance(node, dict):
        if "value" in node and "unit" in node and not isinstance(node["value"], (dict, list)):
            found.append((path, node))
        for key, child in node.items():
            found += quantities(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += quantities(child, f"{path}[{i}]")
    return found


# FHIR --------------------------------------------------------------------------------------------------


def schema_errors(schema: dict, bundle: dict) -> list[str]:
    """The schema's errors in `bundle`: the bundle itself, then each resource against its own definition
    (what the schema's oneOf over every resource type picks for it, without trying the 146 others)."""
    from jsonschema import Draft6Validator

    def errors(instance, definition: str) -> list[str]:
        # Draft 6: a "$ref" replaces its siblings, so this is the schema of that one definition.
        validator = Draft6Validator({**schema, "$ref": f"#/definitions/{definition}"})
        return [
            f"{definition} {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(instance)
        ]

    shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in bundle["entry"]]}
    found = errors(shell, "Bundle")
    for entry in bundle["entry"]:
        assert "resource" in entry
        found += errors(entry["resource"], entry["resource"]["resourceType"])
    return found


def test_the_bundle_is_valid_against_the_official_fhir_r4_json_schema(bundle):
    schema = json.loads(SCHEMA.read_text())
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    assert schema_errors(schema, bundle) == []
    assert len(resources(bundle)) > 50
    # The schema refuses what R4 does not define.
    broken = json.loads(json.dumps(bundle))
    resources(broken, "AdverseEvent")[0]["severity"]["coding"][0]["unknownElement"] = 1
    resources(broken, "Patient")[0]["gender"] = "woman"
    found = schema_errors(schema, broken)
    assert len(found) == 2
    assert any("severity/coding/0" in f and "unknownElement" in f for f in found)
    assert any(f.startswith("Patient gender: 'woman' is not one of") for f in found)


def test_the_whole_bundle_is_valid_for_a_second_schema_engine(bundle):
    import jsonschema_rs

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema_rs.Draft6Validator(schema)
    assert [e.message[:200] for e in validator.iter_errors(bundle)] == []


def test_required_bindings_of_the_emitted_coded_elements_hold(bundle):
    assert bundle["type"] in REQUIRED_CODES[("Bundle", "type")]
    checked = 0
    for resource in resources(bundle):
        kind = resource["resourceType"]
        for (rkind, element), allowed in REQUIRED_CODES.items():
            if rkind == kind and element in resource:
                assert resource[element] in allowed, (kind, element, resource[element])
                checked += 1
        for (rkind, element), (system, allowed) in REQUIRED_CODEABLE.items():
            if rkind == kind and element in resource:
                # Every coding of a required-binding CodeableConcept is from its value set: no second coding.
                codings = resource[element]["coding"]
                assert [c["system"] for c in codings] == [system], (kind, element, codings)
                assert codings[0]["code"] in allowed
                checked += 1
        for path, quantity in quantities(resource):
            if "comparator" in quantity:
                assert quantity["comparator"] in COMPARATORS, (kind, path)
    assert checked > 50


def test_the_ctcae_grade_is_an_extension_beside_the_severity(bundle):
    events = resources(bundle, "AdverseEvent")
    assert events
    for event in events:
        (grade,) = [x["valueInteger"] for x in event["extension"] if x["url"] == CTCAE_GRADE_EXTENSION]
        severity = event["severity"]["coding"][0]["code"]
        assert severity == {1: "mild", 2: "moderate"}.get(grade, "severe")
        assert event["severity"]["text"] == f"CTCAE grade {grade}"


def test_every_quantity_has_a_ucum_system_and_code(bundle):
    seen_units = set()
    count = 0
    for resource in resources(bundle):
        for path, quantity in quantities(resource):
            where = f"{resource['resourceType']}{path}"
            assert quantity.get("system") == UCUM, where
            assert UCUM_SYNTAX.match(quantity.get("code", "")), (where, quantity.get("code"))
            seen_units.add((quantity["unit"], quantity["code"]))
            count += 1
    doses = [d["doseAndRate"][0]["doseQuantity"] for m in resources(bundle, "MedicationStatement") for d in m["dosage"]]
    assert doses and all(q["system"] == UCUM for q in doses)
    assert ("mg", "mg") in seen_units
    assert count > 50


def test_observations_carry_loinc_where_the_catalogue_has_it_and_the_local_code_beside(bundle):
    observations = resources(bundle, "Observation")
    local = {}
    for observation in observations:
        codings = observation["code"]["coding"]
        code = codings[-1]["code"]
        local[code] = codings
        analyte = ANALYTES[code]
        if analyte.loinc:
            assert codings[0] == {"system": LOINC, "code": analyte.loinc, "display": analyte.label}
            assert len(codings) == 2
        else:
            assert [c["system"] for c in codings] == ["https://msct-registry.example.org/fhir/CodeSystem/result"]
    assert {"SLEDAI2K", "PGA", "CREAT"} <= set(local)


def test_the_manifest_names_the_fhir_version_truthfully(demo_export):
    manifest = json.loads(demo_export[0].read("manifest.json"))
    assert FHIR_VERSION == "4.0.1"
    assert manifest["fhir_version"] == "4.0.1"
    assert "R4B" not in manifest["standards"]["fhir"] and "4.0.1" in manifest["standards"]["fhir"]


def test_a_coded_event_carries_meddra_llt_and_pt_beside_the_text(bundle, demo_export):
    _, coded = demo_export
    events = resources(bundle, "AdverseEvent")
    with_coding = [e for e in events if "coding" in e["event"]]
    assert len(with_coding) == 1
    (event,) = with_coding
    assert event["event"]["text"] == coded.term
    assert event["event"]["coding"] == [
        {"system": MEDDRA, "version": "99.0", "code": str(SHINGLES), "display": "Invented shingles LLT"},
        {"system": MEDDRA, "version": "99.0", "code": "93000001", "display": "Invented zoster PT"},
    ]
    assert all(set(e["event"]) == {"text"} for e in events if e is not event)


# Tidy, SDTM and the data dictionary ---------------------------------------------------------------------


def test_tidy_and_sdtm_adverse_events_carry_the_meddra_hierarchy(demo_export):
    archive, coded = demo_export
    tidy = csv_rows(archive, "tidy/adverse_events.csv")
    (row,) = [r for r in tidy if r["meddra_llt_code"]]
    assert row["term"] == coded.term
    assert (row["meddra_version"], row["meddra_pt_code"], row["meddra_pt"]) == (
        "99.0",
        "93000001",
        "Invented zoster PT",
    )
    assert (row["meddra_hlt_code"], row["meddra_hlgt_code"]) == ("92000001", "91000001")
    assert (row["meddra_soc_code"], row["meddra_soc"]) == ("90000001", "Invented infections SOC")
    assert sum(1 for r in tidy if not r["meddra_llt_code"]) == len(tidy) - 1

    ae = csv_rows(archive, "sdtm/ae.csv")
    (coded_row,) = [r for r in ae if r["AEDECOD"]]
    assert coded_row["AETERM"] == ascii_text(coded.term)  # SDTM is ASCII; the verbatim is in tidy
    assert coded_row["AEDECOD"] == "Invented zoster PT" and coded_row["AEPTCD"] == "93000001"
    assert (coded_row["AELLT"], coded_row["AELLTCD"]) == ("Invented shingles LLT", str(SHINGLES))
    assert (coded_row["AEHLT"], coded_row["AEHLTCD"]) == ("Invented herpes viral HLT", "92000001")
    assert (coded_row["AEHLGT"], coded_row["AEHLGTCD"]) == ("Invented viral infections HLGT", "91000001")
    assert coded_row["AEBODSYS"] == coded_row["AESOC"] == "Invented infections SOC"
    assert coded_row["AEBDSYCD"] == coded_row["AESOCCD"] == "90000001"
    # SDTMIG 3.4 order of the dictionary variables.
    columns = list(ae[0])
    order = ["AETERM", "AELLT", "AELLTCD", "AEDECOD", "AEPTCD", "AEHLT", "AEHLTCD", "AEHLGT", "AEHLGTCD"]
    order += ["AEBODSYS", "AEBDSYCD", "AESOC", "AESOCCD"]
    assert [c for c in columns if c in order] == order


def test_the_data_dictionary_lists_every_qs_test_code_and_the_outcome_code_lists(demo_export):
    archive, _ = demo_export
    dictionary = {(r["file"], r["column"]): r for r in csv_rows(archive, "data_dictionary.csv")}
    qs_codes = {pair.split("=")[0] for pair in dictionary[("sdtm/qs.csv", "QSTESTCD")]["values"].split("; ")}
    found = {r["QSTESTCD"] for r in csv_rows(archive, "sdtm/qs.csv")}
    assert {"SLEDAITT", "PGA"} <= qs_codes
    assert found <= qs_codes
    outcomes = csv_rows(archive, "tidy/outcomes.csv")
    for column, codes in (
        ("remission", {"complete", "partial", "none"}),
        ("renal_response", {"complete", "partial", "none", "not_applicable"}),
        ("flare", {"none", "mild_moderate", "severe"}),
    ):
        listed = {pair.split("=")[0] for pair in dictionary[("tidy/outcomes.csv", column)]["values"].split("; ")}
        assert listed == codes, column
        assert {r[column] for r in outcomes} - {""} <= listed, column
