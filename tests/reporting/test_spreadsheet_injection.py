"""Text a spreadsheet would run as a formula (issue 25, row 10; core/spreadsheets.py).

Every text field users fill is classified: refused at the door (a model's `PLAIN_TEXT_FIELDS`, a code's
validator, a choice, the catalogue's units, a pattern), or free text that is neutralised in every CSV the
registry writes (the export's tidy and SDTM-style tables and its data dictionary, the cohort report, the
admin's list download). A new text field fails `test_every_text_field_is_classified` until it is put in one
of the groups. Then each refused field is refused through its service (the door every admin page, API
endpoint and command goes through) naming the field, and every CSV, built from rows whose every text starts
like a formula, holds no cell a spreadsheet would run.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import models

from core.spreadsheets import FORMULA_PREFIXES, formula_start, neutralise
from followup import services as followup_services
from followup.models import AdverseEvent, SafetySignal, Visit
from patients import services as patient_services
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from quality.services.queries import query_raise
from registry import services as registry_services
from registry.api_keys import api_key_issue
from registry.models import CODE_VALIDATOR, CellProduct, Donor, Site, Study, VisitDefinition
from reporting.cohort import CohortFilter, cohort_report
from reporting.exports.archive import build_export_zip
from reporting.models import ExportJob
from reporting.rendering import render_csv
from tests.factories import make_clinical, make_superuser

pytestmark = pytest.mark.django_db

APPS = ("registry", "patients", "followup", "quality", "notifications", "reporting", "intake")
HOSTILE = '=HYPERLINK("http://evil.example","click")'

# Refused by a rule other than the plain-text one (a code's validator and choices are found by introspection).
REFUSED_OTHERWISE = {
    "registry.Site.country": "two upper-case letters (constraint site_country_iso2)",
    "registry.Site.time_zone": "an IANA zone name (validate_time_zone)",
    "followup.Result.entered_unit": "a unit of the results catalogue (to_canonical)",
}
# Free text that may start with '-' or '+' (a list, a remark): kept as written, neutralised in every CSV.
FREE_TEXT = {
    "patients.Patient.refractory_notes",
    "patients.Patient.status_reason",
    "patients.TransplantEvent.premedication",
    "patients.TransplantEvent.conditioning",
    "followup.Visit.outcome_reason",
    "followup.Visit.deviation_reason",
    "followup.AdverseEvent.description",
    "followup.SafetySignal.review_reason",
}
# The free text the export's CSV tables carry.
EXPORTED_FREE_TEXT = {"premedication", "conditioning"}
# Written by the registry itself, never typed by a person.
SYSTEM_TEXT = {
    "registry.ApiKey.prefix",
    "registry.ApiKey.hashed_key",
    "registry.IdempotencyRecord.key",  # a client's header, checked and stored, never shown in a CSV
    "registry.IdempotencyRecord.request_hash",
    "registry.IdempotencyRecord.response_body",
    "followup.Visit.code",  # the template's code (validated there) or U01, U02, ...
    "followup.Visit.label_zh",  # copied from its visit definition, whose label_zh is refused there
    "followup.ComputedOutcome.algorithm_version",
    "followup.ComputedOutcome.sri4_note",
    "followup.ComputedOutcome.remission",
    "followup.ComputedOutcome.renal_response",
    "followup.ComputedOutcome.flare",
    "followup.SafetySignal.dedupe_key",
    "followup.SafetySignal.detail",
    "notifications.Notification.stage",
    "notifications.Notification.language",
    "notifications.Notification.recipient_email",
    "notifications.Notification.message_id",
    "notifications.Notification.last_error",
    "reporting.ExportJob.file_path",
    "reporting.ExportJob.error",
}


# Copied from the centre's own MedDRA release by `load_meddra` (a data manager codes an event to one of its
# terms): never typed into the registry; CSVs neutralise them like any cell.
DICTIONARY_TEXT = {
    "followup.AdverseEvent.meddra_version",
    "followup.AdverseEvent.meddra_llt",
    "followup.AdverseEvent.meddra_pt",
    "followup.AdverseEvent.meddra_hlt",
    "followup.AdverseEvent.meddra_hlgt",
    "followup.AdverseEvent.meddra_soc",
    "followup.MedDRARelease.version",
    "followup.MedDRARelease.language",
    "followup.MedDRATerm.llt_name",
    "followup.MedDRATerm.pt_name",
    "followup.MedDRATerm.hlt_name",
    "followup.MedDRATerm.hlgt_name",
    "followup.MedDRATerm.soc_name",
}
# The data quality workflow's own text (docs/data-quality.md): questions, answers, reasons and names typed by
# monitors, investigators and data managers, and what the registry writes beside them. Of these only a query's
# question reaches a CSV (sdtm/co.csv), neutralised there as every cell is.
QUALITY_TEXT = {
    "quality.Freeze.name",
    "quality.Freeze.export_path",
    "quality.Freeze.export_sha256",
    "quality.Freeze.report_csv",
    "quality.Freeze.report_sha256",
    "quality.Lock.reason",
    "quality.Lock.release_reason",
    "quality.Query.field",
    "quality.Query.key",
    "quality.Query.rule",
    "quality.Query.text",
    "quality.QueryMessage.actor",
    "quality.QueryMessage.text",
    "quality.QueryMessage.value",
    "quality.Signature.meaning",
    "quality.Signature.printed_name",
    "quality.Signature.void_reason",
    "quality.SourceVerification.cleared_reason",
    "quality.SigningFailure.field",  # "password" or "otp_token", written by the signing service
}
# Sign-in records (docs/sign-in.md): the username copied from the account, and the reason a data manager gives
# for resetting a device; shown in the admin only, never in a CSV.
SIGN_IN_TEXT = {
    "registry.SecondFactorEvent.username",
    "registry.SecondFactorEvent.reason",
}

# Import jobs (docs/import.md, "In the admin"): the reason given for an import's corrections (each correction
# takes it through the services, which refuse a formula there), the report's language, the job's error, the
# files' names and digests; shown on the asker's job page only, never in a CSV.
IMPORT_TEXT = {
    "intake.ImportJob.reason",
    "intake.ImportJob.language",
    "intake.ImportJob.error",
    "intake.ImportFile.name",
    "intake.ImportFile.sha256",
}


def text_fields():
    """(label, model, field) of every concrete text field of the registry's own models."""
    for app in APPS:
        for model in apps.get_app_config(app).get_models():
            if model._meta.proxy or model.__name__.startswith("Historical"):
                continue
            for field in model._meta.concrete_fields:
                if isinstance(field, models.CharField | models.TextField):
                    yield f"{model._meta.label}.{field.name}", model, field


def refused_by_field(model, field) -> bool:
    return bool(field.choices) or CODE_VALIDATOR in field.validators


def plain_text_labels() -> set[str]:
    return {
        f"{model._meta.label}.{name}"
        for _, model, _ in text_fields()
        for name in getattr(model, "PLAIN_TEXT_FIELDS", ())
    }


# The helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_a_cell_starting_like_a_formula_gets_a_single_quote(prefix):
    assert neutralise(f"{prefix}SUM(A1:A9)") == f"'{prefix}SUM(A1:A9)"


@pytest.mark.parametrize(
    "value", ["-4", "+1.5", "-0.25", "-.5", "+3e2", "12", "", "note - fine", 3, Decimal("-2.5"), None]
)
def test_numbers_and_ordinary_text_are_left_alone(value):
    assert neutralise(value) == value


# Classification ------------------------------------------------------------------------------------------


def test_every_text_field_is_classified():
    labels = {label for label, _, _ in text_fields()}
    by_field = {label for label, model, field in text_fields() if refused_by_field(model, field)}
    plain = plain_text_labels()
    classified = (
        by_field
        | plain
        | set(REFUSED_OTHERWISE)
        | FREE_TEXT
        | SYSTEM_TEXT
        | DICTIONARY_TEXT
        | QUALITY_TEXT
        | SIGN_IN_TEXT
        | IMPORT_TEXT
    )
    assert labels - classified == set(), "classify these text fields (refused at the door, or free text)"
    assert classified - labels == set(), "these classified fields no longer exist"
    assert not (plain & FREE_TEXT) and not (plain & SYSTEM_TEXT) and not (FREE_TEXT & SYSTEM_TEXT)
    # The figures the report quotes.
    assert (len(labels), len(by_field), len(plain), len(FREE_TEXT)) == (138, 53, 14, 8)


# Refused at the door -------------------------------------------------------------------------------------


@pytest.fixture
def clinical(frozen_now):
    return make_clinical()


def _writers(clinical):
    """A write through the service of each plain-text field's model, the hostile text in `field`."""
    site, study, patient = clinical.site, clinical.study, clinical.patient

    def site_write(field):
        fields = {"name": "Hospital", **{field: HOSTILE}}
        registry_services.site_create(code="HX1", country="CN", time_zone="UTC", **fields)

    def study_write(field):
        fields = {"registration_id": "NCT0000HX1", "title": "A title", **{field: HOSTILE}}
        registry_services.study_create(code="HX1", phase="2", target_enrolment=10, sites=[site], **fields)

    def definition_write(field):
        fields = {"label": "Month 72", **{field: HOSTILE}}
        registry_services.visit_definition_save(
            definition=VisitDefinition(study=study, code="M72", offset_days=2190, **fields)
        )

    def api_key_write(field):
        api_key_issue(site=site, name=HOSTILE)

    def medication_write(field):
        patient_services.medication_record(
            patient=patient,
            drug="other",
            drug_other=HOSTILE,
            dose=Decimal("1"),
            unit="mg",
            frequency="daily",
            start_date=dt.date(2025, 2, 1),
        )

    def visit_write(field):
        followup_services.visit_record_unscheduled(patient=patient, actual_date=dt.date(2025, 5, 5), label=HOSTILE)

    def ae_write(field):
        followup_services.ae_record(
            patient=patient,
            term=HOSTILE,
            category="other",
            onset_date=dt.date(2025, 5, 1),
            grade=1,
            relatedness="unlikely",
            expected=True,
            aware_date=dt.date(2025, 5, 1),
        )

    return {
        Site: site_write,
        Study: study_write,
        VisitDefinition: definition_write,
        "registry.ApiKey": api_key_write,
        ConcomitantMedication: medication_write,
        Visit: visit_write,
        AdverseEvent: ae_write,
    }


def test_every_plain_text_field_is_refused_by_its_service(clinical):
    writers = {(k if isinstance(k, str) else k._meta.label): v for k, v in _writers(clinical).items()}
    refused = []
    for label in sorted(plain_text_labels()):
        model_label, field = label.rsplit(".", 1)
        with pytest.raises(ValidationError) as caught:
            writers[model_label](field)
        errors = caught.value.message_dict
        assert field in errors, (label, errors)
        assert any("cannot start with =, +, -, @" in message for message in errors[field]), errors[field]
        refused.append(label)
    assert len(refused) == 14


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_an_adverse_event_term_starting_like_a_formula_is_refused(clinical, prefix):
    with pytest.raises(ValidationError) as caught:
        followup_services.ae_record(
            patient=clinical.patient,
            term=f"{prefix}cmd",
            category="other",
            onset_date=dt.date(2025, 5, 1),
            grade=1,
            relatedness="unlikely",
            expected=True,
            aware_date=dt.date(2025, 5, 1),
        )
    assert "term" in caught.value.message_dict
    assert not AdverseEvent.objects.exists()


def test_codes_and_choices_refuse_a_formula_through_full_clean(clinical):
    checked = 0
    for _label, model, field in text_fields():
        if not refused_by_field(model, field):
            continue
        with pytest.raises(ValidationError):
            field.clean(HOSTILE, None)
        checked += 1
    assert checked == 53


def test_a_unit_that_starts_like_a_formula_is_refused(clinical):
    with pytest.raises(ValidationError) as caught:
        followup_services.visit_record(
            visit=clinical.visit("BL"), actual_date=dt.date(2025, 3, 3), results={"CREAT": ("0.9", "=1+1")}
        )
    assert "CREAT" in caught.value.message_dict


# Neutralised in every CSV --------------------------------------------------------------------------------


def hostile(label: str) -> str:
    return f'=HYPERLINK("http://evil.example/{label}","click")'


@pytest.fixture
def full_world(frozen_now):
    """One patient with every kind of row, free text written through the services, then every other text
    of those rows overwritten in the database (as rows stored before the rule existed would be)."""
    clinical = make_clinical()
    patient, site, study = clinical.patient, clinical.site, clinical.study
    followup_services.visit_record(
        visit=clinical.visit("BL"),
        actual_date=dt.date(2025, 3, 3),
        results={"CREAT": ("0.9", "mg/dL"), "PGA": ("2", None)},
        sledai_items=["rash", "arthritis"],
    )
    followup_services.visit_record(
        visit=clinical.visit("M1"),
        actual_date=dt.date(2025, 4, 20),
        results={"CREAT": ("0.8", "mg/dL")},
        sledai_items=["rash"],
        deviation_reason=hostile("deviation_reason"),
    )
    followup_services.visit_mark_missed(visit=clinical.visit("M3"), reason=hostile("outcome_reason"))
    patient_services.medication_record(
        patient=patient,
        drug="other",
        drug_other="Belimumab biosimilar",
        dose=Decimal("10"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 2, 1),
    )
    followup_services.ae_record(
        patient=patient,
        term="Herpes zoster",
        category="infection",
        onset_date=dt.date(2025, 5, 1),
        grade=2,
        relatedness="unlikely",
        expected=True,
        aware_date=dt.date(2025, 5, 1),
        description=hostile("description"),
    )
    patient_services.patient_update(patient=patient, reason="notes", refractory_notes=hostile("refractory_notes"))
    patient_services.transplant_correct(
        transplant=clinical.transplant,
        reason="premedication recorded",
        premedication=hostile("premedication"),
        conditioning=hostile("conditioning"),
    )
    patient_services.patient_withdraw(patient=patient, on_date=dt.date(2026, 8, 1), reason=hostile("status_reason"))
    # Every other text of the rows exported, as a row stored before the rule would hold it.
    for model, queryset in (
        (Site, Site.objects.filter(pk=site.pk)),
        (Study, Study.objects.filter(pk=study.pk)),
        (Donor, Donor.objects.filter(study=study)),
        (CellProduct, CellProduct.objects.filter(study=study)),
        (Patient, Patient.objects.filter(pk=patient.pk)),
        (TransplantEvent, TransplantEvent.objects.filter(patient=patient)),
        (ConcomitantMedication, ConcomitantMedication.objects.filter(patient=patient)),
        (Visit, Visit.objects.filter(patient=patient)),
        (AdverseEvent, AdverseEvent.objects.filter(patient=patient)),
    ):
        changes = {}
        for field in model._meta.concrete_fields:
            label = f"{model._meta.label}.{field.name}"
            if not isinstance(field, models.CharField | models.TextField) or field.choices:
                continue
            if label in ("registry.Site.time_zone", "registry.Site.country", "followup.Visit.code"):
                continue  # read as a zone, held by a constraint, mapped to the template
            if label in FREE_TEXT:
                continue  # written through the services above
            changes[field.name] = hostile(field.name)[: field.max_length]
        queryset.update(**changes)
    assert SafetySignal._meta.get_field("review_reason")  # free text, but no CSV carries it
    return clinical


def csv_cells(text: str):
    for row in csv.reader(io.StringIO(text)):
        yield from row


def assert_no_formula(name: str, text: str) -> int:
    """Every cell of the CSV `text` is safe; returns how many cells were neutralised."""
    neutralised = 0
    for cell in csv_cells(text):
        assert formula_start(cell) is None or neutralise(cell) == cell, (name, cell)
        neutralised += cell.startswith("'=HYPERLINK")
    return neutralised


def test_every_csv_of_the_export_holds_no_formula(full_world, tmp_path):
    study, site = full_world.study, full_world.site
    # A query's question is free text too: it comes out in sdtm/co.csv.
    query_raise(target=full_world.patient, text=hostile("query"), actor=make_superuser("injection_monitor"))
    job = ExportJob.objects.create(study=study, site_ids=[site.pk])
    build_export_zip(job, tmp_path / "export.zip")
    seen = set()
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        members = [name for name in archive.namelist() if name.endswith(".csv")]
        assert len(members) == 17  # tidy, the SDTM datasets (IS included) and data_dictionary.csv
        for name in members:
            text = archive.read(name).decode()
            assert_no_formula(name, text)
            seen |= {cell for cell in csv_cells(text) if cell.startswith("'=HYPERLINK")}
    # The free text the export carries comes out, neutralised (the others are not exported at all, which
    # `assert_no_formula` also shows: no cell holds them as written).
    carried = {label.rsplit(".", 1)[1] for label in FREE_TEXT if "'" + hostile(label.rsplit(".", 1)[1]) in seen}
    assert carried == EXPORTED_FREE_TEXT
    assert "'" + hostile("term") in seen  # a stored term of before the rule, in tidy and sdtm/ae.csv
    assert "'" + hostile("query") in seen  # a query's question, in sdtm/co.csv


def test_the_cohort_report_csv_holds_no_formula(full_world):
    report = cohort_report(study=full_world.study, site_ids=[full_world.site.pk], flt=CohortFilter())
    assert_no_formula("cohort report", render_csv(report))


def test_the_admin_list_download_holds_no_formula(full_world, rf):
    from django.contrib import admin

    from registry.admin_tools import export_csv_action

    request = rf.get("/admin/")
    request.user = make_superuser("csv-admin")
    model_admin = admin.site.get_model_admin(Patient)
    response = export_csv_action(model_admin, request, Patient.objects.all())
    assert_no_formula("admin download", response.content.decode())


def test_the_admin_refuses_an_api_key_name_starting_like_a_formula_beside_the_field(client, frozen_now):
    from registry.models import ApiKey
    from tests.factories import make_site

    site = make_site()
    client.force_login(make_superuser("key-admin"))
    response = client.post(
        "/admin/registry/apikey/add/",
        {
            "site": site.pk,
            "name": "+cmd|' /C calc'!A0",
            "scope": "read",
            "expires_at_0": "2027-01-01",
            "expires_at_1": "00:00:00",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    assert "cannot start with =, +, -, @" in " ".join(response.context["adminform"].form.errors["name"])
    assert not ApiKey.objects.exists()
