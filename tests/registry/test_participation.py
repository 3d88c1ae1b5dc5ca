"""Study status and site participation (issue 25, row 8; docs/clinical-rules.md, "Study status and site
participation"), through the services every door shares and through the admin.

A site removed from a study writes nothing more for it (no patient, infusion, visit, medication or adverse
event), and still reads its history. A study takes new patients only while recruiting; it gives no new
infusions once suspended, completed or terminated; the follow-up of its patients (visits, medications,
adverse events, status) goes on whatever its status. Every participation and status change is audited with
its reason.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from followup import services as followup_services
from patients import services as patient_services
from patients.models import Patient
from registry import constants as rc
from registry import services
from registry.models import Study, StudySite
from tests.factories import make_clinical, make_lot, make_patient, make_site, make_transplant, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinical(frozen_now):
    return make_clinical()


def refused(call, field: str, *phrases: str) -> str:
    with pytest.raises(ValidationError) as caught:
        call()
    errors = caught.value.message_dict
    assert field in errors, errors
    message = " ".join(errors[field])
    for phrase in phrases:
        assert phrase in message, message
    return message


def enroll(study, site, code="NEW-001", consent=dt.date(2026, 1, 10)):
    return patient_services.patient_enroll(
        study=study,
        site=site,
        subject_code=code,
        sex="F",
        birth_year=1990,
        diagnosis_date=dt.date(2019, 1, 1),
        classification_criteria="slicc2012",
        consent_date=consent,
    )


def ae(patient):
    return followup_services.ae_record(
        patient=patient,
        term="Fever",
        category="other",
        onset_date=dt.date(2026, 8, 1),
        grade=1,
        relatedness="unlikely",
        expected=True,
        aware_date=dt.date(2026, 8, 1),
    )


def medication(patient):
    return patient_services.medication_record(
        patient=patient,
        drug="prednisone",
        dose=Decimal("5"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2026, 8, 1),
    )


# Site participation ----------------------------------------------------------------------------------------


def test_removing_a_site_needs_a_reason(clinical):
    refused(lambda: services.study_remove_site(study=clinical.study, site=clinical.site, reason=" "), "reason")
    assert StudySite.objects.get(study=clinical.study, site=clinical.site).removed_on is None


def test_removing_a_site_is_audited_with_its_reason(clinical):
    link = services.study_remove_site(study=clinical.study, site=clinical.site, reason="site closed its SLE clinic")
    assert link.removed_on == dt.date(2026, 9, 1)  # the site's today
    last = link.history.order_by("-history_id").first()
    assert last.removed_on == dt.date(2026, 9, 1)
    assert last.history_change_reason == "site closed its SLE clinic"


def test_adding_a_site_is_audited(clinical):
    other = make_site()
    link = services.study_add_site(study=clinical.study, site=other, reason="second centre opened")
    assert link.history.get().history_change_reason == "second centre opened"


def test_a_removed_site_writes_nothing_more_for_the_study(clinical):
    patient = clinical.patient
    services.study_remove_site(study=clinical.study, site=clinical.site, reason="site withdrew")
    rule = "was removed from study"
    refused(lambda: enroll(clinical.study, clinical.site), "site", rule)
    refused(lambda: medication(patient), "patient", rule)
    refused(lambda: ae(patient), "patient", rule)
    refused(
        lambda: followup_services.visit_record(visit=clinical.visit("M18"), actual_date=dt.date(2026, 8, 30)),
        "visit",
        rule,
    )
    refused(lambda: followup_services.visit_mark_missed(visit=clinical.visit("M18"), reason="away"), "visit", rule)
    refused(
        lambda: followup_services.visit_record_unscheduled(patient=patient, actual_date=dt.date(2026, 8, 30)),
        "patient",
        rule,
    )
    refused(
        lambda: make_transplant(patient, clinical.lot, day=dt.date(2026, 8, 20)),
        "patient",
        rule,
    )
    refused(
        lambda: patient_services.patient_withdraw(patient=patient, on_date=dt.date(2026, 8, 30), reason="moved"),
        "patient",
        rule,
    )
    refused(
        lambda: patient_services.patient_update(patient=patient, reason="typo", refractory_notes="x"),
        "site",
        rule,
    )
    # Its history stays readable.
    assert list(Patient.objects.for_sites([clinical.site.pk])) == [patient]
    assert clinical.study in Study.objects.for_sites([clinical.site.pk])


def test_another_site_of_the_study_goes_on(clinical):
    other = make_site()
    services.study_add_site(study=clinical.study, site=other, reason="second centre")
    services.study_remove_site(study=clinical.study, site=clinical.site, reason="site withdrew")
    patient = enroll(clinical.study, other, code="OTHER-001")
    assert medication(patient).pk


def test_a_site_added_back_writes_again(clinical):
    services.study_remove_site(study=clinical.study, site=clinical.site, reason="paused by the sponsor")
    refused(lambda: services.study_add_site(study=clinical.study, site=clinical.site), "reason")
    services.study_add_site(study=clinical.study, site=clinical.site, reason="sponsor lifted the pause")
    assert medication(clinical.patient).pk


def test_only_a_superuser_changes_participation(clinical):
    coordinator = make_user("participation_coord", clinical.site)
    refused(
        lambda: services.study_remove_site(study=clinical.study, site=clinical.site, reason="x", actor=coordinator),
        "site",
        "superuser",
    )


# Study status ----------------------------------------------------------------------------------------------


def test_changing_the_status_needs_a_reason_and_is_audited(clinical):
    study = clinical.study
    refused(lambda: services.study_change_status(study=study, status=rc.StudyStatus.TERMINATED, reason=""), "reason")
    services.study_change_status(study=study, status=rc.StudyStatus.TERMINATED, reason="sponsor ended the trial")
    last = Study.objects.get(pk=study.pk).history.order_by("-history_id").first()
    assert (last.status, last.history_change_reason) == ("terminated", "sponsor ended the trial")


@pytest.mark.parametrize(
    "status",
    [
        rc.StudyStatus.PLANNED,
        rc.StudyStatus.ACTIVE,
        rc.StudyStatus.SUSPENDED,
        rc.StudyStatus.COMPLETED,
        rc.StudyStatus.TERMINATED,
    ],
)
def test_a_study_not_recruiting_takes_no_new_patients(clinical, status):
    services.study_change_status(study=clinical.study, status=status, reason="status changed")
    message = refused(lambda: enroll(clinical.study, clinical.site), "study", "takes no new patients")
    assert rc.StudyStatus(status).label.lower() in message.lower()


def test_a_recruiting_study_takes_new_patients(clinical):
    assert clinical.study.status == rc.StudyStatus.RECRUITING
    assert enroll(clinical.study, clinical.site).pk


def test_a_screened_patient_is_not_enrolled_once_recruitment_has_closed(clinical):
    screened = make_patient(clinical.study, clinical.site, consent_date=None)
    services.study_change_status(study=clinical.study, status=rc.StudyStatus.ACTIVE, reason="enrolment complete")
    refused(
        lambda: patient_services.patient_update(patient=screened, reason="consent", consent_date=dt.date(2026, 8, 1)),
        "study",
        "takes no new patients",
    )


@pytest.mark.parametrize("status", [rc.StudyStatus.SUSPENDED, rc.StudyStatus.COMPLETED, rc.StudyStatus.TERMINATED])
def test_a_stopped_study_gives_no_new_infusions(clinical, status):
    services.study_change_status(study=clinical.study, status=status, reason="stopped")
    refused(
        lambda: make_transplant(clinical.patient, clinical.lot, day=dt.date(2026, 8, 20)), "study", "no new infusions"
    )


def test_an_active_study_still_gives_the_second_infusion(clinical):
    services.study_change_status(study=clinical.study, status=rc.StudyStatus.ACTIVE, reason="enrolment complete")
    assert make_transplant(clinical.patient, clinical.lot, day=dt.date(2025, 3, 10)).infusion_number == 2


def test_a_terminated_study_goes_on_following_its_patients(clinical):
    services.study_change_status(study=clinical.study, status=rc.StudyStatus.TERMINATED, reason="futility")
    patient = clinical.patient
    visit = followup_services.visit_record(
        visit=clinical.visit("M18"), actual_date=dt.date(2026, 8, 30), results={"PLT": ("210", None)}
    )
    assert visit.outcome == "completed"
    assert ae(patient).pk and medication(patient).pk
    assert patient_services.patient_withdraw(patient=patient, on_date=dt.date(2026, 8, 31), reason="moved").status


# The admin --------------------------------------------------------------------------------------------------


def test_the_admin_removes_a_site_with_a_reason(client, clinical, superuser):
    client.force_login(superuser)
    link = StudySite.objects.get(study=clinical.study, site=clinical.site)
    url = f"/admin/registry/studysite/{link.pk}/change/"
    data = {"study": clinical.study.pk, "site": clinical.site.pk, "activated_on": "", "removed_on": "2026-08-31"}
    response = client.post(url, {**data, "reason": "", "_save": "Save"})
    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    response = client.post(url, {**data, "reason": "site closed", "_save": "Save"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    link.refresh_from_db()
    assert link.removed_on == dt.date(2026, 8, 31)
    assert link.history.order_by("-history_id").first().history_change_reason == "site closed"


def test_the_admin_refuses_a_patient_at_a_removed_site_beside_the_field(client, clinical, superuser):
    services.study_remove_site(study=clinical.study, site=clinical.site, reason="site withdrew")
    client.force_login(superuser)
    response = client.post(
        "/admin/patients/patient/add/",
        {
            "study": clinical.study.pk,
            "site": clinical.site.pk,
            "subject_code": "ADM-001",
            "sex": "F",
            "birth_year": "1990",
            "diagnosis_date": "2019-01-01",
            "classification_criteria": "slicc2012",
            "consent_date": "2026-01-10",
            "_save": "Save",
        },
    )
    assert response.status_code == 200
    assert "was removed from study" in " ".join(response.context["adminform"].form.errors["site"])
    assert not Patient.objects.filter(subject_code="ADM-001").exists()


def test_the_admin_changes_a_study_status_only_with_a_reason(client, clinical, superuser):
    client.force_login(superuser)
    study = clinical.study
    url = f"/admin/registry/study/{study.pk}/change/"
    page = client.get(url)
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    for formset in page.context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{prefix}-{name}"] = management[name].value()
        for inline_form in formset.formset.forms:
            for name in inline_form.fields:
                value = inline_form[name].value()
                if value is not None:
                    data[inline_form.add_prefix(name)] = value
    data.update(status="terminated", _save="Save", reason="")
    response = client.post(url, data)
    assert response.status_code == 200
    assert "reason" in response.context["adminform"].form.errors
    data["reason"] = "sponsor ended the trial"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    study.refresh_from_db()
    assert study.status == "terminated"
    assert study.history.order_by("-history_id").first().history_change_reason == "sponsor ended the trial"


def test_lots_of_a_removed_site_can_still_be_corrected(clinical):
    lot = make_lot(clinical.study, clinical.site, lot_number="LOT-KEEP")
    services.study_remove_site(study=clinical.study, site=clinical.site, reason="site withdrew")
    lot.units = 9
    assert services.lot_save(lot=lot, reason="units recounted").units == 9
    refused(lambda: make_lot(clinical.study, clinical.site, lot_number="LOT-NEW"), "site", "was removed from study")


# In Chinese -------------------------------------------------------------------------------------------------


def test_the_new_rules_speak_chinese_to_a_chinese_reader(clinical):
    from django.utils import translation

    from core.spreadsheets import formula_errors

    patient = clinical.patient
    with translation.override("zh-hans"):
        refused(
            lambda: followup_services.visit_mark_missed(visit=clinical.visit("M24"), reason="x"), "outcome", "时间窗"
        )
        refused(
            lambda: followup_services.visit_record(
                visit=clinical.visit("BL"),
                actual_date=dt.date(2025, 3, 3),
                results={"CREAT": ("0.9", "mg/dL")},
                remove=["CREAT"],
                reason="x",
            ),
            "remove",
            "不能既删除又录入",
        )
        refused(
            lambda: patient_services.medication_record(
                patient=patient,
                drug="prednisone",
                dose=Decimal("5"),
                unit="mg",
                frequency="daily",
                start_date=dt.date(2026, 8, 1),
                stop_date=dt.date(9999, 12, 31),
            ),
            "stop_date",
            "请填写真实日期",
        )
        assert "电子表格" in formula_errors(term="=1+1")["term"]
        assert "制表符" in formula_errors(term="\tx")["term"]
        services.study_change_status(study=clinical.study, status=rc.StudyStatus.SUSPENDED, reason="hold")
        refused(lambda: enroll(clinical.study, clinical.site), "study", "不再接收新患者")
        refused(lambda: make_transplant(patient, clinical.lot, day=dt.date(2026, 8, 20)), "study", "不再进行新的输注")
        refused(
            lambda: services.study_remove_site(study=clinical.study, site=clinical.site, reason=""), "reason", "移出"
        )
        services.study_remove_site(study=clinical.study, site=clinical.site, reason="closed")
        refused(lambda: medication(patient), "patient", "已于 2026-09-01 退出研究")
        refused(lambda: services.study_add_site(study=clinical.study, site=clinical.site), "reason", "重新加入")
        refused(
            lambda: services.study_change_status(study=clinical.study, status="terminated", reason=""),
            "reason",
            "更改研究状态",
        )
