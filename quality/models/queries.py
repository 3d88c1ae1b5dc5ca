"""Queries (data clarification requests) on a clinical record and their threads, and each study's edit check
settings."""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.audit import Door, audit_history
from patients.models import Patient
from quality import constants as c
from registry.models import SiteScopedQuerySet, Study, TimeStampedModel


class Query(TimeStampedModel):
    """A question about one record (a visit, a result, a visit's SLEDAI-2K items, an adverse event, a medication
    or a patient), optionally about one of its fields or items (`field`: a field name, a result code or a
    SLEDAI-2K item code). Raised by a monitor or data manager, or by an edit check (`rule`, with its `key`:
    one query per record and rule). Changed only by `quality.services.queries`."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="queries")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="queries", verbose_name=_("patient"))
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT, related_name="+")
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    field = models.CharField(_("field or item"), max_length=40, blank=True)
    rule = models.CharField(
        _("edit check"), max_length=40, blank=True, help_text=_("Blank for a query raised by hand.")
    )
    key = models.CharField(
        max_length=120,
        null=True,
        blank=True,
        unique=True,
        help_text=_("An edit check's query: the rule and the record, so that it is raised once."),
    )
    text = models.CharField(_("question"), max_length=500)
    detail = models.JSONField(
        default=dict, blank=True, help_text=_("An edit check's values, from which its question is worded.")
    )
    state = models.CharField(_("state"), max_length=10, choices=c.QueryState.choices, default=c.QueryState.OPEN)
    resolution = models.CharField(max_length=10, choices=c.Resolution.choices, blank=True, default="")
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("raised by"),
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("query")
        verbose_name_plural = _("queries")
        indexes = [
            models.Index(fields=["content_type", "object_id"], name="query_target"),
            models.Index(fields=["patient", "state"], name="query_patient_state"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state=c.QueryState.CLOSED) | Q(resolution=""),
                name="query_resolution_only_when_closed",
            ),
            models.CheckConstraint(condition=Q(key__isnull=True) | ~Q(rule=""), name="query_key_needs_rule"),
        ]

    def __str__(self) -> str:
        where = f" {self.field}" if self.field else ""
        return f"#{self.pk} {self.content_type.model} {self.object_id}{where}"


class QueryMessage(models.Model):
    """One message of a query's thread: who wrote it, when, through which door, and the value of the queried
    field or item at that moment."""

    query = models.ForeignKey(Query, on_delete=models.CASCADE, related_name="messages")
    kind = models.CharField(max_length=10, choices=c.MessageKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor = models.CharField(max_length=150, blank=True, help_text=_("Who wrote it, as the audit trail names them."))
    door = models.CharField(max_length=16, choices=Door.choices)
    text = models.TextField()
    value = models.CharField(_("value then"), max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("query message")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on query #{self.query_id}"


class EditCheckSettings(models.Model):
    """A study's edit checks: which are switched off and their thresholds (`rules`: {rule code: {"enabled":
    bool, parameter: value}}; a rule or parameter not named keeps its default), and how old an open query may
    grow before the reminder digest lists it."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="edit_check_settings")
    rules = models.JSONField(default=dict, blank=True)
    query_age_limit_days = models.PositiveSmallIntegerField(
        _("open queries are overdue after (days)"), default=c.DEFAULT_AGE_LIMIT_DAYS
    )

    history = audit_history()

    class Meta:
        verbose_name = _("edit check settings")
        verbose_name_plural = _("edit check settings")

    def __str__(self) -> str:
        return f"Edit checks of {self.study.code}"
