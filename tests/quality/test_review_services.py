"""Source verification, signatures and locks through their services, and the refusal of every clinical
write service to a locked or signed record."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from core.api.problems import RecordLocked
from followup import constants as fc
from followup.services import VisitEntry, ae_record, ae_save, visit_mark_missed, visit_record, visits_record_batch
from patients.constants import DoseUnit, Drug, PatientStatus
from patients.services import medication_record, patient_change_status, patient_update
from quality.models import Lock, RecordKind, Signature, SourceVerification
from quality.services import review
from tests.factories import make_patient, make_site, make_study, make_transplant
from tests.quality.conftest import M1, PASSWORD

pytestmark = pytest.mark.django_db


# Roles and scoping ---------------------------------------------------------------------------------------


def test_only_a_monitor_of_the_site_verifies(clinical, monitor, coordinator_a, coordinator_b):
    visit = clinical.visit("M1")
    for user in (coordinator_a, coordinator_b):
        with pytest.raises(PermissionDenied):
            review.sdv_mark(record=visit, actor=user)
    mark = review.sdv_mark(record=visit, actor=monitor, fields=["actual_date", "result:CREAT"])
    assert (mark.kind, mark.visit_id, mark.fields) == (RecordKind.VISIT, visit.pk, ["actual_date", "result:CREAT"])


def test_only_an_investigator_of_the_site_signs(clinical, investigator_a, coordinator_a, superuser, site_b):
    from tests.factories import make_user

    other = make_user("inv_b", site_b, role="investigator", password=PASSWORD)
    for user in (coordinator_a, other, superuser):
        with pytest.raises(PermissionDenied):
            review.signature_sign(record=clinical.visit("M1"), actor=user, password=PASSWORD)
    assert not Signature.objects.exists()


def test_only_a_data_manager_of_the_site_locks(clinical, coordinator_a, data_manager_b, data_manager_a):
    for user in (coordinator_a, data_manager_b):
        with pytest.raises(PermissionDenied):
            review.lock_patient(patient=clinical.patient, reason="Database lock", actor=user)
    with pytest.raises(ValidationError) as refused:
        review.lock_patient(patient=clinical.patient, reason="  ", actor=data_manager_a)
    assert "reason" in refused.value.message_dict
    review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)


def test_a_study_lock_covers_only_the_data_managers_sites(clinical, data_manager_a, study, site_a):
    locks = review.lock_study(study=study, reason="Interim analysis", actor=data_manager_a)
    assert [(lock.site_id, lock.patient_id) for lock in locks] == [(site_a.pk, None)]


def test_lists_are_scoped_to_the_users_sites(clinical, monitor, coordinator_b, data_manager_a):
    review.sdv_mark(record=clinical.ae, actor=monitor)
    review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)
    assert SourceVerification.objects.for_user(coordinator_b).count() == 0
    assert Lock.objects.for_user(coordinator_b).count() == 0
    assert SourceVerification.objects.for_user(monitor).count() == 1


# Signatures ----------------------------------------------------------------------------------------------


def test_a_wrong_password_signs_nothing(clinical, investigator_a):
    with pytest.raises(ValidationError) as refused:
        review.signature_sign(record=clinical.visit("M1"), actor=investigator_a, password="wrong")
    assert "password" in refused.value.message_dict
    assert not Signature.objects.exists()


def test_signature_keeps_name_time_and_meaning(clinical, investigator_a, frozen_now):
    signature = review.signature_sign(record=clinical.visit("M1"), actor=investigator_a, password=PASSWORD)
    assert signature.printed_name == "Lan Chen"
    assert signature.signed_at.isoformat() == "2026-09-01T09:00:00+00:00"
    assert "reviewed the data of this visit" in signature.meaning


def test_a_totp_device_needs_the_current_code(clinical, investigator_a, frozen_now):
    device = TOTPDevice.objects.create(user=investigator_a, name="phone", confirmed=True)
    with pytest.raises(ValidationError) as refused:
        review.signature_sign(record=clinical.ae, actor=investigator_a, password=PASSWORD, otp_token="000000")
    assert "otp_token" in refused.value.message_dict
    # The wrong code is kept, and so is the device's throttle (django-otp: a second after a wrong code).
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    frozen_now.shift(dt.timedelta(seconds=2))
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    code = f"{totp.token():0{device.digits}d}"
    review.signature_sign(record=clinical.ae, actor=investigator_a, password=PASSWORD, otp_token=code)
    assert Signature.objects.filter(kind=RecordKind.ADVERSE_EVENT, adverse_event=clinical.ae).count() == 1


def test_a_signed_visit_refuses_changes_until_its_signature_is_voided(clinical, investigator_a, data_manager_a):
    visit = clinical.visit("M1")
    signature = review.signature_sign(record=visit, actor=investigator_a, password=PASSWORD)
    with pytest.raises(RecordLocked):
        visit_record(visit=visit, actual_date=M1, results={"CREAT": "95"}, reason="Transcription error")
    review.signature_void(signature=signature, reason="Creatinine to correct", actor=data_manager_a)
    visit_record(visit=visit, actual_date=M1, results={"CREAT": "95"}, reason="Transcription error")
    signature.refresh_from_db()
    assert signature.void_reason == "Creatinine to correct" and signature.voided_by == data_manager_a


def test_a_signed_casebook_refuses_every_record_of_the_patient(clinical, investigator_a):
    review.signature_sign(record=clinical.patient, actor=investigator_a, password=PASSWORD)
    with pytest.raises(RecordLocked):
        ae_record(
            patient=clinical.patient,
            term="Fever",
            category=fc.AECategory.OTHER,
            grade=1,
            relatedness=fc.Relatedness.UNLIKELY,
            expected=True,
            onset_date=dt.date(2025, 5, 2),
            aware_date=dt.date(2025, 5, 2),
        )


# Locks at every service --------------------------------------------------------------------------------


def _writes(clinical):
    """Every clinical write service, each as a call on the patient's records."""
    patient = clinical.patient
    ae = clinical.ae
    return {
        "patient_update": lambda: patient_update(patient=patient, birth_year=1991, reason="ID card"),
        "patient_status": lambda: patient_change_status(
            patient=patient, status=PatientStatus.COMPLETED, on_date=dt.date(2026, 3, 1), reason="Done"
        ),
        "infusion": lambda: make_transplant(patient, clinical.lot, day=dt.date(2025, 9, 1)),
        "medication": lambda: medication_record(
            patient=patient,
            drug=Drug.HYDROXYCHLOROQUINE,
            dose=Decimal("200"),
            unit=DoseUnit.MG,
            frequency="bid",
            start_date=dt.date(2025, 3, 1),
        ),
        "adverse_event": lambda: ae_save(ae=_with(ae, outcome=fc.AEOutcome.RECOVERING), reason="Call"),
        "visit": lambda: visit_record(visit=clinical.visit("M3"), actual_date=dt.date(2025, 6, 2)),
        "missed": lambda: visit_mark_missed(visit=clinical.visit("M3"), reason="Abroad"),
        "batch": lambda: visits_record_batch(
            site=clinical.site,
            study_code=clinical.study.code,
            entries=[(patient.subject_code, "M3", VisitEntry(actual_date=dt.date(2025, 6, 2)))],
        ),
    }


def _with(ae, **changes):
    ae.refresh_from_db()
    for name, value in changes.items():
        setattr(ae, name, value)
    return ae


WRITES = ["patient_update", "patient_status", "infusion", "medication", "adverse_event", "visit", "missed", "batch"]


@pytest.mark.parametrize("write", WRITES)
def test_every_write_service_refuses_a_locked_patient(clinical, data_manager_a, write, frozen_now):
    review.lock_patient(patient=clinical.patient, reason="Database lock 2026", actor=data_manager_a)
    with pytest.raises(RecordLocked) as refused:
        _writes(clinical)[write]()
    assert "Database lock 2026" in str(refused.value.messages)


@pytest.mark.parametrize("write", WRITES)
def test_every_write_service_is_accepted_after_unlock(clinical, data_manager_a, write, frozen_now):
    lock = review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)
    review.lock_release(lock=lock, reason="Query to resolve", actor=data_manager_a)
    _writes(clinical)[write]()


def test_a_study_lock_refuses_new_patients_at_the_site_only(clinical, data_manager_a, study, site_a, site_b):
    review.lock_study(study=study, reason="Final analysis", actor=data_manager_a)
    with pytest.raises(RecordLocked):
        make_patient(study, site_a)
    make_patient(study, site_b)


def test_a_batch_names_the_locked_item(clinical, data_manager_a, study, site_a):
    other = make_patient(study, site_a)
    make_transplant(other, clinical.lot)
    review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)
    entries = [
        (other.subject_code, "M3", VisitEntry(actual_date=dt.date(2025, 6, 2))),
        (clinical.patient.subject_code, "M3", VisitEntry(actual_date=dt.date(2025, 6, 2))),
    ]
    with pytest.raises(RecordLocked) as refused:
        visits_record_batch(site=site_a, study_code=study.code, entries=entries)
    assert list(refused.value.message_dict) == ["visits.1.visit"]
    assert other.visits.get(code="M3").actual_date is None


def test_unlock_voids_the_signatures_it_covered(clinical, investigator_a, data_manager_a):
    on_visit = review.signature_sign(record=clinical.visit("M1"), actor=investigator_a, password=PASSWORD)
    on_casebook = review.signature_sign(record=clinical.patient, actor=investigator_a, password=PASSWORD)
    lock = review.lock_patient(patient=clinical.patient, reason="Database lock", actor=data_manager_a)
    with pytest.raises(ValidationError):
        review.lock_release(lock=lock, reason="", actor=data_manager_a)
    review.lock_release(lock=lock, reason="Late lab result", actor=data_manager_a)
    for signature in (on_visit, on_casebook):
        signature.refresh_from_db()
        assert signature.voided_at is not None and "Late lab result" in signature.void_reason
    assert lock.history.count() == 2  # audited: locked, then released


# Source verification cleared by a change ----------------------------------------------------------------


def test_a_change_clears_the_verification_and_says_why(clinical, monitor):
    visit = clinical.visit("M1")
    mark = review.sdv_mark(record=visit, actor=monitor)
    on_ae = review.sdv_mark(record=clinical.ae, actor=monitor)
    visit_record(visit=visit, actual_date=M1, results={"CREAT": "120"}, reason="Lab report re-read")
    mark.refresh_from_db()
    on_ae.refresh_from_db()
    assert mark.cleared_at is not None and "Changed after verification" in mark.cleared_reason
    assert on_ae.cleared_at is None  # the adverse event did not change
    assert not review.status_of(visit)["source_verified"]


def test_a_batch_clears_the_verification_of_the_visits_it_changed(clinical, monitor, study, site_a):
    visit = clinical.visit("M1")
    mark = review.sdv_mark(record=visit, actor=monitor)
    other = review.sdv_mark(record=clinical.visit("M3"), actor=monitor)
    entry = VisitEntry(M1, {"CREAT": "120"}, reason="Lab report re-read", version=visit.updated_at)
    entries = [(clinical.patient.subject_code, "M1", entry)]
    visits_record_batch(site=site_a, study_code=study.code, entries=entries)
    mark.refresh_from_db()
    other.refresh_from_db()
    assert mark.cleared_at is not None and "Changed after verification" in mark.cleared_reason
    assert other.cleared_at is None  # M3 was not in the batch


def test_a_patient_change_clears_the_baseline_verification(clinical, monitor):
    mark = review.sdv_mark(record=clinical.patient, actor=monitor)
    patient_update(patient=clinical.patient, birth_year=1989, reason="ID card")
    mark.refresh_from_db()
    assert mark.cleared_at is not None


def test_a_mark_of_chosen_fields_is_cleared_only_when_one_of_them_changes(clinical, monitor):
    visit = clinical.visit("M1")
    mark = review.sdv_mark(record=visit, actor=monitor, fields=["actual_date", "result:CREAT"])
    assert mark.values == {"actual_date": M1.isoformat(), "result:CREAT": "80 umol/L"}
    # C3 was not verified: its correction leaves the mark.
    visit_record(visit=visit, actual_date=M1, results={"C3": "0.7", "CREAT": "80"}, reason="Lab report re-read")
    mark.refresh_from_db()
    assert mark.cleared_at is None
    assert review.status_of(visit)["source_verified"]
    # The creatinine was: the mark is cleared, naming the field and both values.
    visit_record(visit=visit, actual_date=M1, results={"C3": "0.7", "CREAT": "95"}, reason="Lab report re-read")
    mark.refresh_from_db()
    assert mark.cleared_at is not None
    assert "result:CREAT: 80 umol/L -> 95 umol/L" in mark.cleared_reason
    assert "actual_date" not in mark.cleared_reason


def test_a_mark_of_the_whole_form_is_cleared_by_any_change(clinical, monitor):
    visit = clinical.visit("M1")
    mark = review.sdv_mark(record=visit, actor=monitor)
    visit_record(visit=visit, actual_date=M1, results={"C3": "0.7", "CREAT": "80"}, reason="Lab report re-read")
    mark.refresh_from_db()
    assert mark.cleared_at is not None and "Changed after verification (visit" in mark.cleared_reason


def test_chosen_fields_of_an_adverse_event_and_a_baseline(clinical, monitor):
    on_ae = review.sdv_mark(record=clinical.ae, actor=monitor, fields=["grade"])
    baseline = review.sdv_mark(record=clinical.patient, actor=monitor, fields=["birth_year"])
    ae_save(ae=_with(clinical.ae, description="Dermatomal rash"), reason="Narrative added")
    medication_record(
        patient=clinical.patient,
        drug=Drug.HYDROXYCHLOROQUINE,
        dose=Decimal("200"),
        unit=DoseUnit.MG,
        frequency="bid",
        start_date=dt.date(2025, 3, 1),
    )
    on_ae.refresh_from_db()
    baseline.refresh_from_db()
    assert on_ae.cleared_at is None and baseline.cleared_at is None
    ae_save(ae=_with(clinical.ae, grade=fc.CTCAEGrade.SEVERE), reason="Hospitalised")
    patient_update(patient=clinical.patient, birth_year=1989, reason="ID card")
    on_ae.refresh_from_db()
    baseline.refresh_from_db()
    assert "grade: 2 -> 3" in on_ae.cleared_reason
    assert "birth_year" in baseline.cleared_reason


def test_a_field_the_record_does_not_have_is_refused(clinical, monitor):
    with pytest.raises(ValidationError) as refused:
        review.sdv_mark(record=clinical.visit("M1"), actor=monitor, fields=["result:XYZ"])
    assert "result:XYZ" in refused.value.message_dict["fields"][0]


def test_status_reads_verified_signed_and_locked(clinical, monitor, investigator_a, data_manager_a):
    visit = clinical.visit("M1")
    assert review.status_of(visit) == {
        "source_verified": False,
        "verified_at": None,
        "signed": False,
        "signed_at": None,
        "locked": False,
        "lock_reason": "",
    }
    review.sdv_mark(record=visit, actor=monitor)
    review.signature_sign(record=visit, actor=investigator_a, password=PASSWORD)
    status = review.status_of(visit)
    assert status["source_verified"] and status["signed"] and status["locked"]
    review.lock_patient(patient=clinical.patient, reason="DB lock", actor=data_manager_a)
    assert review.status_of(clinical.patient)["lock_reason"] == "DB lock"


def _both_reads(record, patient):
    owners = {"patient_id": patient.pk, "study_id": patient.study_id}
    return review.write_refusal(record, **owners), review.status_of(record)["source_verified"]


def test_the_page_state_is_the_refusal_and_the_verification_in_one_query(
    clinical, monitor, investigator_a, data_manager_a, study, django_assert_num_queries
):
    patient, visit, ae = clinical.patient, clinical.visit("M1"), clinical.ae
    records = [patient, visit, ae]

    def check():
        for record in records:
            with django_assert_num_queries(1):
                state = review.page_state(record, patient_id=patient.pk, study_id=patient.study_id)
            assert state == _both_reads(record, patient), record

    check()  # nothing
    review.sdv_mark(record=visit, actor=monitor)
    review.signature_sign(record=visit, actor=investigator_a, password=PASSWORD)
    review.signature_sign(record=ae, actor=investigator_a, password=PASSWORD)
    check()  # the visit and the event signed, the visit verified
    assert review.page_state(visit, patient_id=patient.pk, study_id=study.pk)[0]
    assert review.page_state(patient, patient_id=patient.pk, study_id=study.pk) == (None, False)
    assert review.page_state(visit, patient_id=patient.pk, study_id=study.pk)[1]  # verified
    assert not review.page_state(ae, patient_id=patient.pk, study_id=study.pk)[1]
    review.signature_sign(record=patient, actor=investigator_a, password=PASSWORD)
    check()  # and the casebook
    lock = review.lock_patient(patient=patient, reason="DB lock", actor=data_manager_a)
    check()  # the patient locked
    assert "DB lock" in review.page_state(patient, patient_id=patient.pk, study_id=study.pk)[0]
    review.lock_release(lock=lock, reason="Query answered", actor=data_manager_a)
    review.lock_study(study=study, reason="Interim analysis", actor=data_manager_a)
    check()  # the study locked at the site (the unlock voided the signatures)
    assert "Interim analysis" in review.page_state(ae, patient_id=patient.pk, study_id=study.pk)[0]


TIMES = [dt.datetime(2026, 1, day, tzinfo=dt.UTC) for day in (1, 2, 3)]  # few, so that times tie


def _random_review_rows(rng, *, clinical, other_study, other_site, other_patient, visits, events, user):
    """Up to three locks, three signatures and two verifications around the clinical patient, some released,
    voided or cleared, some of other patients, studies, sites, visits or events; and the patient moved to
    `other_site` now and then."""
    patient = clinical.patient
    Lock.objects.all().delete(), Signature.objects.all().delete(), SourceVerification.objects.all().delete()
    records = {
        "casebook": {"kind": RecordKind.PATIENT, "patient": patient},
        "other casebook": {"kind": RecordKind.PATIENT, "patient": other_patient},
        **{f"visit {i}": {"kind": RecordKind.VISIT, "patient": patient, "visit": v} for i, v in enumerate(visits)},
        **{
            f"event {i}": {"kind": RecordKind.ADVERSE_EVENT, "patient": patient, "adverse_event": e}
            for i, e in enumerate(events)
        },
    }
    for _ in range(rng.randint(0, 3)):
        which = rng.choice(["patient", "study here", "study at the other site", "other study", "other patient"])
        Lock.objects.create(
            study=other_study if which == "other study" else clinical.study,
            site=other_site if which == "study at the other site" else clinical.site,
            patient={"patient": patient, "other patient": other_patient}.get(which),
            reason=which,
            locked_by=user,
            locked_at=rng.choice(TIMES),
            released_at=TIMES[2] if rng.random() < 0.25 else None,
        )
    for _ in range(rng.randint(0, 3)):
        Signature.objects.create(
            **records[rng.choice(list(records))],
            signer=user,
            printed_name="Lan Chen",
            meaning="reviewed",
            signed_at=rng.choice(TIMES),
            voided_at=TIMES[2] if rng.random() < 0.25 else None,
        )
    for _ in range(rng.randint(0, 2)):
        SourceVerification.objects.create(
            **records[rng.choice([name for name in records if name != "other casebook"])],
            verified_by=user,
            verified_at=TIMES[0],
            cleared_at=TIMES[1] if rng.random() < 0.4 else None,
        )
    site = other_site if rng.random() < 0.3 else clinical.site
    type(patient).objects.filter(pk=patient.pk).update(site=site)


def test_the_page_state_equals_the_two_reads_in_random_combinations(clinical, data_manager_a):
    other_site = make_site()
    other_study = make_study(clinical.site, other_site)
    second = ae_record(
        patient=clinical.patient,
        term="Cough",
        category=fc.AECategory.INFECTION,
        grade=fc.CTCAEGrade.MILD,
        relatedness=fc.Relatedness.UNLIKELY,
        expected=True,
        onset_date=dt.date(2025, 4, 22),
        aware_date=dt.date(2025, 4, 22),
    )
    visits = [clinical.visit("M1"), clinical.visit("M3")]
    context = {
        "clinical": clinical,
        "other_study": other_study,
        "other_site": other_site,
        "other_patient": make_patient(clinical.study, clinical.site),
        "visits": visits,
        "events": [clinical.ae, second],
        "user": data_manager_a,
    }
    rng, differences, refused = random.Random(21), [], 0
    for round_ in range(120):
        _random_review_rows(rng, **context)
        patient = type(clinical.patient).objects.get(pk=clinical.patient.pk)
        for record in (patient, visits[0], clinical.ae):
            record = type(record).objects.get(pk=record.pk)
            state = review.page_state(record, patient_id=patient.pk, study_id=patient.study_id)
            refused += state[0] is not None
            if state != _both_reads(record, patient):
                differences.append((round_, record, state, _both_reads(record, patient)))
    assert not differences
    assert 60 < refused < 300  # both refused and open records were met
