"""Named signals sent by every service that writes clinical data, so that an app higher up (data quality:
locks, edit checks, source verification) can take part without the writing app importing it.

Both are sent inside the writing service's transaction, synchronously. `record_changing` is sent after the
caller's permission is checked and before anything is written: a receiver refuses the write by raising
(`django.core.exceptions.ValidationError` or a subclass), and nothing is stored. `record_changed` is sent
after the write, before the transaction commits: a receiver's own writes commit or roll back with it.

kwargs of both: `instance` (the patient, infusion, medication, adverse event or visit; for a patient not yet
enrolled, the unsaved patient), `patient_id` (None for a new patient), `study_id`.

A batch that writes many records of one study at once (the partner API's visit batch) sends
`records_changing` once before and `records_changed` once after the write, with `instances` and
`patient_ids` (the same order) and `study_id`, so that a receiver can do its work for the whole batch in a
fixed number of statements. A receiver of `records_changing` does not raise: it returns {record pk:
ValidationError} for the records it refuses, and the batch reports each as that item's error.
"""

from django.dispatch import Signal

record_changing = Signal()
record_changed = Signal()
records_changing = Signal()
records_changed = Signal()


def changing(instance, *, patient_id: int | None, study_id: int) -> None:
    record_changing.send(sender=type(instance), instance=instance, patient_id=patient_id, study_id=study_id)


def changed(instance, *, patient_id: int | None, study_id: int) -> None:
    record_changed.send(sender=type(instance), instance=instance, patient_id=patient_id, study_id=study_id)


def changed_together(model, instances: list, *, study_id: int) -> None:
    records_changed.send(
        sender=model, instances=instances, patient_ids=[i.patient_id for i in instances], study_id=study_id
    )


def refusals_together(model, instances: list, *, study_id: int) -> dict:
    """{record pk: ValidationError} of the records some receiver of `records_changing` refuses."""
    refused: dict = {}
    responses = records_changing.send(
        sender=model, instances=instances, patient_ids=[i.patient_id for i in instances], study_id=study_id
    )
    for _, answer in responses:
        for pk, error in (answer or {}).items():
            refused.setdefault(pk, error)
    return refused
