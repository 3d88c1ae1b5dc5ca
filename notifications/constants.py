"""Choices of the notification ledger."""

from django.db import models


class NotificationKind(models.TextChoices):
    VISIT_REMINDER = "visit_reminder", "Visit reminder"
    VISIT_ESCALATION = "visit_escalation", "Overdue visit escalated"
    AE_REPORT = "ae_report", "Expedited safety report"
    SAFETY_SIGNAL = "safety_signal", "Safety signal to review"
    QUERY_OVERDUE = "query_overdue", "Query open too long"


class NotificationState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending (claimed)"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled (no longer applies)"


class ReminderStage(models.TextChoices):
    UPCOMING = "upcoming", "Window opens soon"
    DUE = "due", "Window open"
    CLOSING = "closing", "Window closes soon"
    OVERDUE = "overdue", "Overdue"
