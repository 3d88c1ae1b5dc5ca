"""Named signals by which patients tells the follow-up app what happened, inside the same transaction.

followup depends on patients, never the reverse; these are the explicit hand-over points, sent by the
services below and handled by `followup.handlers` synchronously (so schedule changes commit or roll back
with the event that caused them).
"""

from django.dispatch import Signal

# The first infusion of a course was recorded: schedule the patient's visits from day 0.
# kwargs: patient, transplant, day_zero (date in the site's time zone)
first_infusion_recorded = Signal()

# Day 0 moved because the first infusion's date was corrected: move the open visits.
# kwargs: patient, transplant, day_zero
day_zero_moved = Signal()

# The patient left follow-up (withdrawn, lost, deceased): take future visits out.
# kwargs: patient, status, on_date, reason
patient_left_follow_up = Signal()
