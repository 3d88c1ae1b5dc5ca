"""Choices of the followup app."""

from django.db import models
from django.utils.translation import gettext_lazy as _

# The worklist lists scheduled visits from this many days before their window opens (followup/selectors.py).
WORKLIST_HORIZON_DAYS = 14


class VisitOutcome(models.TextChoices):
    """What has been recorded about a visit. Scheduled/due/overdue are derived from dates (see states.py)."""

    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    MISSED = "missed", "Missed"
    NOT_REQUIRED = "not_required", "Not required"


# Visits whose date and results have been entered (complete or not): their values are real measurements.
ENTERED_OUTCOMES = (VisitOutcome.IN_PROGRESS, VisitOutcome.COMPLETED)


class RecordStatus(models.TextChoices):
    """What a recording asks of its visit: stay in progress (data entered, not complete) or complete it."""

    IN_PROGRESS = "in_progress", "In progress"
    COMPLETE = "complete", "Complete"


class NotDoneReason(models.TextChoices):
    """Why a required item of a visit has no value (as CDASH's ND: --STAT "NOT DONE" and its reason)."""

    NOT_DONE = "not_done", "Not done"
    NOT_AVAILABLE = "not_available", "Not available"


class Comparator(models.TextChoices):
    """How a censored result relates to its value (FHIR Quantity.comparator): "<10" is below a limit of 10.

    docs/clinical-rules.md, "Censored results"."""

    LT = "<", "<"
    LE = "<=", "<="
    GE = ">=", ">="
    GT = ">", ">"


COMPARATOR_HELP = (
    "Blank for an exact value. For a censored laboratory result, as FHIR's Quantity.comparator: '<', '<=', "
    "'>=' or '>', and the value is the limit (\"<10\": below 10). It holds for the value and the entered value."
)

# The comparators that put the true value below (or at most at) the value given.
BELOW_COMPARATORS = frozenset({Comparator.LT, Comparator.LE})


class VisitState(models.TextChoices):
    # Not a field's choices (a state follows from the window and today), so translated here: shown in the
    # user's language wherever a state is shown (lists, filters, the patient page's timeline).
    SCHEDULED = "scheduled", _("Scheduled")
    DUE = "due", _("Due")
    OVERDUE = "overdue", _("Overdue")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    MISSED = "missed", _("Missed")
    NOT_REQUIRED = "not_required", _("Not required")


class AECategory(models.TextChoices):
    INFUSION_REACTION = "infusion_reaction", "Infusion reaction"
    INFECTION = "infection", "Infection"
    CYTOPENIA = "cytopenia", "Cytopenia"
    ACUTE_KIDNEY_INJURY = "aki", "Acute kidney injury"
    LUPUS_FLARE = "lupus_flare", "Lupus flare"
    MALIGNANCY = "malignancy", "Malignancy"
    DEATH = "death", "Death"
    OTHER = "other", "Other"


class CTCAEGrade(models.IntegerChoices):
    MILD = 1, "1 – Mild"
    MODERATE = 2, "2 – Moderate"
    SEVERE = 3, "3 – Severe or medically significant"
    LIFE_THREATENING = 4, "4 – Life-threatening"
    DEATH = 5, "5 – Death"


class Relatedness(models.TextChoices):
    UNRELATED = "unrelated", "Unrelated"
    UNLIKELY = "unlikely", "Unlikely"
    POSSIBLE = "possible", "Possible"
    PROBABLE = "probable", "Probable"
    DEFINITE = "definite", "Definite"


# "At least possibly related" (ICH E2A): these make a serious unexpected event a suspected adverse reaction.
RELATED_LEVELS = frozenset({Relatedness.POSSIBLE, Relatedness.PROBABLE, Relatedness.DEFINITE})


class AEAction(models.TextChoices):
    NONE = "none", "None"
    INFUSION_INTERRUPTED = "infusion_interrupted", "Infusion interrupted"
    INFUSION_STOPPED = "infusion_stopped", "Infusion stopped"
    TREATMENT_GIVEN = "treatment_given", "Treatment given"
    HOSPITALISED = "hospitalised", "Hospitalised"
    OTHER = "other", "Other"


class AEOutcome(models.TextChoices):
    RECOVERED = "recovered", "Recovered / resolved"
    RECOVERING = "recovering", "Recovering / resolving"
    NOT_RECOVERED = "not_recovered", "Not recovered / not resolved"
    SEQUELAE = "sequelae", "Recovered with sequelae"
    FATAL = "fatal", "Fatal"
    UNKNOWN = "unknown", "Unknown"


SERIOUSNESS_CRITERIA = (
    ("serious_death", "results in death"),
    ("serious_life_threatening", "is life-threatening"),
    ("serious_hospitalisation", "requires or prolongs hospitalisation"),
    ("serious_disability", "results in persistent or significant disability"),
    ("serious_congenital_anomaly", "is a congenital anomaly"),
    ("serious_other_important", "is another important medical event"),
)

# Expedited reporting of a SUSAR, in calendar days from the day the site became aware (day 0).
FATAL_INITIAL_REPORT_DAYS = 7
FATAL_COMPLETE_REPORT_EXTRA_DAYS = 8
OTHER_REPORT_DAYS = 15


class SignalKind(models.TextChoices):
    CREATININE_RISE = "creatinine_rise", "Creatinine ≥ 1.5 × baseline (possible acute kidney injury)"
    THROMBOCYTOPENIA = "thrombocytopenia", "Platelets < 100 × 10^9/L"
    LEUKOPENIA = "leukopenia", "White cells < 3 × 10^9/L"
    PROTEINURIA_DOUBLING = "proteinuria_doubling", "Proteinuria doubled since the previous visit"
    SLEDAI_FLARE = "sledai_flare", "SLEDAI-2K flare"
    MALIGNANCY_CHECK = "malignancy_check", "Yearly malignancy check due"


class SignalStatus(models.TextChoices):
    OPEN = "open", "To review"
    ACCEPTED = "accepted", "Accepted as an adverse event"
    DISMISSED = "dismissed", "Dismissed"
    ANSWERED = "answered", "Answered (no malignancy)"
    IMPORTED = "imported", "Reviewed at import (found by the study's first safety run)"


class SignalSeverity(models.IntegerChoices):
    """How urgently a finding needs a person: the admin and the worklist list the most severe first."""

    ROUTINE = 0, "Routine check (a worklist task)"
    MODERATE = 1, "Moderate"
    HIGH = 2, "High"
    SEVERE = 3, "Severe"


# Routine scheduled checks: worklist tasks, not signals announced to investigators for review.
ROUTINE_SIGNAL_KINDS = (SignalKind.MALIGNANCY_CHECK,)


# The most visits one batch recording takes (`visits_record_batch`, POST /api/v1/visits/record-batch/).
MAX_BATCH_VISITS = 1000
