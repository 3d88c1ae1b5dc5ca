"""Named signals sent by every service that writes clinical data, so that an app higher up (data quality:
locks, edit checks, source verification) can take part without the writing app importing it.

Both are sent inside the writing service's transaction, synchronously. `record_changing` is sent after the
caller's permission is checked and before anything is written: a receiver refuses the write by raising
(`django.core.exceptions.ValidationError` or a subclass), and nothing is stored. `record_changed` is sent
after the write, before the transaction commits: a receiver's own writes commit or roll back with it.

kwargs of both: `instance` (the patient, infusion, medication, adverse event or visit; for a patient not yet
enrolled, the unsaved patient), `patient_id` (None for a new patient), `study_id`.
"""

from django.dispatch import Signal

record_changing = Signal()
record_changed = Signal()


def changing(instance, *, patient_id: int | None, study_id: int) -> None:
    record_changing.send(sender=type(instance), instance=instance, patient_id=patient_id, study_id=study_id)


def changed(instance, *, patient_id: int | None, study_id: int) -> None:
    record_changed.send(sender=type(instance), instance=instance, patient_id=patient_id, study_id=study_id)
