"""Writes of the followup app, one module per concern; every name is re-exported here, so callers write
`from followup.services import visit_record` whichever module holds it.

- `schedule`: the planned visits of a patient, moved with day 0, taken out when the patient leaves.
- `recording`: visits and their results (one, by natural key, a batch, unscheduled, missed).
- `outcomes`: computed outcomes, recomputed from the stored visits.
- `adverse_events`: adverse events and the expedited-reporting clock.
- `coding`: MedDRA releases and coding adverse events to them.
"""

from followup.services.adverse_events import (
    ae_can_code,
    ae_check_posted_coding,
    ae_code_meddra,
    ae_due_dates,
    ae_flag_pre_treatment,
    ae_record,
    ae_record_submission,
    ae_report_clock,
    ae_save,
)
from followup.services.coding import meddra_current_release, meddra_release_load
from followup.services.outcomes import outcome_definitions_for, outcomes_recompute, outcomes_recompute_patients
from followup.services.recording import (
    NEW_RESULT_FIELDS,
    RESULT_VALUE_FIELDS,
    VISIT_RECORD_FIELDS,
    ResultsInput,
    VisitEntry,
    visit_mark_missed,
    visit_record,
    visit_record_by_key,
    visit_record_unscheduled,
    visits_record_batch,
)
from followup.services.schedule import visits_move_day_zero, visits_schedule, visits_take_out

__all__ = [
    "visits_schedule",
    "visits_move_day_zero",
    "visits_take_out",
    "ResultsInput",
    "VisitEntry",
    "VISIT_RECORD_FIELDS",
    "RESULT_VALUE_FIELDS",
    "NEW_RESULT_FIELDS",
    "visit_record",
    "visit_record_by_key",
    "visits_record_batch",
    "visit_record_unscheduled",
    "visit_mark_missed",
    "outcome_definitions_for",
    "outcomes_recompute",
    "outcomes_recompute_patients",
    "ae_can_code",
    "ae_check_posted_coding",
    "ae_due_dates",
    "ae_flag_pre_treatment",
    "ae_save",
    "ae_record",
    "ae_record_submission",
    "ae_report_clock",
    "ae_code_meddra",
    "meddra_current_release",
    "meddra_release_load",
]
