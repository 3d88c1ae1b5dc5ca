"""Receivers of the clinical writes' signals (core/signals.py); each hands over to a quality service."""

from django.dispatch import receiver

from core.signals import record_changed, records_changed
from patients.models import Patient
from quality.services.edit_checks import run_edit_checks


@receiver(record_changed, dispatch_uid="quality.edit_checks_on_change")
def edit_checks_on_change(sender, *, instance, patient_id, study_id, **kwargs):
    """The edit checks a change to this kind of record can affect, over its patient, in the writer's transaction."""
    if patient_id is None and isinstance(instance, Patient):
        patient_id = instance.pk
    if patient_id is None:
        return
    run_edit_checks(patient_ids=[patient_id], study_id=study_id, model=sender)


@receiver(records_changed, dispatch_uid="quality.edit_checks_on_batch")
def edit_checks_on_batch(sender, *, instances, patient_ids, study_id, **kwargs):
    """A batch's edit checks over all its patients at once, in a number of statements that does not grow with it."""
    run_edit_checks(patient_ids=patient_ids, study_id=study_id, model=sender)
