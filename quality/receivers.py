"""Receivers of the clinical write signals (`core.signals`): a write to a locked or signed record is refused
before anything is stored; a stored change clears the record's source verification."""

from __future__ import annotations

from django.dispatch import receiver

from core.signals import record_changed, record_changing, records_changed, records_changing
from quality.services import review


@receiver(record_changing, dispatch_uid="quality.refuse_locked")
def refuse_locked(sender, instance, patient_id, study_id, **kwargs):
    review.refuse_locked_write(instance, patient_id=patient_id, study_id=study_id)


@receiver(record_changed, dispatch_uid="quality.clear_verification")
def clear_verification(sender, instance, patient_id, study_id, **kwargs):
    review.verifications_clear(instance, patient_id=patient_id)


@receiver(records_changed, dispatch_uid="quality.clear_verification_batch")
def clear_verification_batch(sender, instances, patient_ids, study_id, **kwargs):
    review.verifications_clear_many(sender, instances, patient_ids=patient_ids)


@receiver(records_changing, dispatch_uid="quality.refuse_locked_batch")
def refuse_locked_batch(sender, instances, patient_ids, study_id, **kwargs):
    return review.locked_visits(instances, study_id=study_id)
