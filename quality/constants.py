"""Choices of the data quality app."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from registry.constants import Role


class QueryState(models.TextChoices):
    OPEN = "open", pgettext_lazy("query state", "Open")
    ANSWERED = "answered", _("Answered")
    CLOSED = "closed", _("Closed")


class MessageKind(models.TextChoices):
    RAISED = "raised", _("Raised")
    ANSWER = "answer", _("Answer")
    CLOSE = "close", _("Closed")
    REOPEN = "reopen", _("Re-opened")
    CHECK = "check", _("Edit check")


class Resolution(models.TextChoices):
    """How a closed query was closed: by a person, or by its edit check once the data were corrected."""

    NONE = "", _("Not closed")
    CLOSED = "closed", _("Closed by a monitor or data manager")
    CORRECTED = "corrected", _("Closed by its edit check: the data were corrected")


# Who may do what with a query (docs/data-quality.md, "Queries"): site-scoped like every write.
RAISE_ROLES = frozenset({Role.MONITOR, Role.DATA_MANAGER})
CLOSE_ROLES = RAISE_ROLES
ANSWER_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR, Role.DATA_MANAGER})

# Open queries older than this many days are overdue, unless the study sets its own limit.
DEFAULT_AGE_LIMIT_DAYS = 7
