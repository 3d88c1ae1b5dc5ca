"""Choices of the followup app."""

from django.db import models


class VisitOutcome(models.TextChoices):
    """What has been recorded about a visit. Scheduled/due/overdue are derived from dates (see states.py)."""

    OPEN = "open", "Open"
    COMPLETED = "completed", "Completed"
    MISSED = "missed", "Missed"
    NOT_REQUIRED = "not_required", "Not required"


class VisitState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    DUE = "due", "Due"
    OVERDUE = "overdue", "Overdue"
    COMPLETED = "completed", "Completed"
    MISSED = "missed", "Missed"
    NOT_REQUIRED = "not_required", "Not required"
