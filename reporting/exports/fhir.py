"""The HL7 FHIR R4 bundle of an export (type collection): the code systems and value maps, one builder per
kind of resource (ResearchStudy; Patient and ResearchSubject; a Procedure per infusion; Observation;
MedicationStatement; AdverseEvent) with ids stable within the study, and the writer that validates each
resource with its fhir.resources R4B model before streaming it into `fhir/bundle.json`.

The bundle is FHIR R4 (4.0.1): every element it emits exists in R4 with the same shape, and the test suite
checks the demo bundle against the official FHIR R4 JSON Schema, the required bindings of the coded
elements emitted and UCUM on every Quantity (tests/reporting/test_export_standards.py)."""

from __future__ import annotations

import datetime as dt
import uuid
import zipfile
from collections.abc import Iterator
from decimal import Decimal

from followup import constants as c
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.computations import plain
from patients import constants as pc
from patients.models import ConcomitantMedication, TransplantEvent
from registry import constants as rc
from reporting.exports.common import CELL_TYPE, ENDED_STATUSES, HEARTBEAT_ROWS, SERIOUS_FIELDS, Context, _Member
from reporting.exports.sdtm import _arm
from reporting.exports.sources import _ae_rows, _count_infusions, _patients, _results, _stream

REGISTRY_NS = "https://msct-registry.example.org/fhir"
FHIR_ID_NAMESPACE = uuid.UUID("4b0d1f5e-8f7a-5c53-9a55-6d3c2f1e0a11")
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
FHIR_VERSION = "4.0.1"
# The CTCAE grade of an adverse event: AdverseEvent.severity is bound (required) to mild | moderate | severe,
# so the grade itself travels in this extension (valueInteger 1-5).
CTCAE_GRADE_EXTENSION = f"{REGISTRY_NS}/StructureDefinition/ctcae-grade"

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
    # Medication dose units (patients.constants.DoseUnit).
    "mg": "mg",
    "g": "g",
    "mg/kg": "mg/kg",
    "mg/m2": "mg/m2",
    "ug": "ug",
    "IU": "[IU]",
    "kg": "kg",
    "points": "{score}",
    "0-3": "{score}",
    "1:N": "{titer}",
}
OBSERVATION_CATEGORY = {"SLEDAI2K": "survey", "PGA": "survey", "WEIGHT": "vital-signs", "PRED": "therapy"}
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


def _quantity(value: Decimal, unit: str, comparator: str = "") -> dict:
    quantity = {"value": Decimal(plain(value)), "unit": unit}
    if comparator:  # a censored result: the value is the limit ("<" 10)
        quantity["comparator"] = comparator
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
            "comparator",
            "visit__outcome",
        )
    )
    category_system = "http://terminology.hl7.org/CodeSystem/observation-category"
    for pk, patient, subject, visit, on, items, code, value, derived, comparator, outcome in _stream(qs):
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
            # A visit still being entered (docs/clinical-rules.md, "Completing a visit") gives preliminary values.
            "status": "preliminary" if outcome == c.VisitOutcome.IN_PROGRESS else "final",
            "category": [{"coding": [{"system": category_system, "code": category}]}],
            "code": {"coding": codings, "text": label},
            "subject": _ref(ctx, "Patient", patient, subject),
            "valueQuantity": _quantity(value, unit, comparator),
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
                        "doseAndRate": [{"doseQuantity": _quantity(dose, unit)}],
                    }
                ],
            },
        )


def _ae_event(ae: dict) -> dict:
    """The event as entered (text) and, once a data manager has coded it, its MedDRA LLT and PT."""
    event = {"text": ae["term"]}
    if ae["meddra_llt_code"]:
        version = ae["meddra_version"]
        event["coding"] = [
            {"system": MEDDRA, "version": version, "code": str(ae["meddra_llt_code"]), "display": ae["meddra_llt"]},
            {"system": MEDDRA, "version": version, "code": str(ae["meddra_pt_code"]), "display": ae["meddra_pt"]},
        ]
    return event


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
            "event": _ae_event(ae),
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
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity",
                        "code": severity,
                        "display": severity.capitalize(),
                    }
                ],
                "text": f"CTCAE grade {grade}",
            },
            "extension": [{"url": CTCAE_GRADE_EXTENSION, "valueInteger": grade}],
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
