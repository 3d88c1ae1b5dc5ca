"""Source data verification, investigator signatures, locks and freezes.

A record is a visit, an adverse event or a patient (for a verification: the patient's baseline form; for a
signature: the whole casebook). Each row names its patient, so every query is scoped through the patient's
site, and its study (denormalised from the patient: the study-wide views read it without a join).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from core.audit import audit_history
from registry.models import SiteScopedQuerySet


class RecordKind(models.TextChoices):
    VISIT = "visit", _("Visit")
    ADVERSE_EVENT = "adverse_event", _("Adverse event")
    PATIENT = "patient", _("Patient")


class _RecordMixin(models.Model):
    """The record a verification or signature is about: exactly one of visit / adverse event, or neither for
    the patient itself."""

    kind = models.CharField(_("record"), max_length=16, choices=RecordKind.choices)
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="+")
    visit = models.ForeignKey("followup.Visit", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    adverse_event = models.ForeignKey(
        "followup.AdverseEvent", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"

    class Meta:
        abstract = True

    def record_label(self) -> str:
        if self.kind == RecordKind.VISIT:
            return f"{self.patient.subject_code} {self.visit.code}"
        if self.kind == RecordKind.ADVERSE_EVENT:
            return f"{self.patient.subject_code} AE {self.adverse_event_id}"
        return self.patient.subject_code


_ONE_RECORD = (
    Q(kind=RecordKind.VISIT, visit__isnull=False, adverse_event__isnull=True)
    | Q(kind=RecordKind.ADVERSE_EVENT, visit__isnull=True, adverse_event__isnull=False)
    | Q(kind=RecordKind.PATIENT, visit__isnull=True, adverse_event__isnull=True)
)


class SourceVerification(_RecordMixin):
    """A monitor's mark that a visit, an adverse event or a patient's baseline was checked against the source
    documents (the whole form, or the fields named in `fields`, whose values then are kept in `values`). A later
    change to the record clears a whole-form mark, and a mark of chosen fields when one of them changed:
    `cleared_at` and `cleared_reason` say when and why (which field, from what to what); the mark is kept."""

    fields = models.JSONField(_("fields"), default=list, blank=True, help_text=_("Empty: the whole form."))
    values = models.JSONField(
        _("values verified"), default=dict, blank=True, help_text=_("The chosen fields' values when verified.")
    )
    verified_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    verified_at = models.DateTimeField(_("verified at"))
    cleared_at = models.DateTimeField(_("cleared at"), null=True, blank=True)
    cleared_reason = models.TextField(_("why cleared"), blank=True)

    history = audit_history()

    class Meta:
        verbose_name = _("source data verification")
        verbose_name_plural = _("source data verifications")
        ordering = ["-verified_at"]
        constraints = [models.CheckConstraint(condition=_ONE_RECORD, name="sdv_one_record")]
        indexes = [models.Index(fields=["kind", "cleared_at"], name="sdv_kind_cleared")]

    def __str__(self) -> str:
        return f"SDV {self.record_label()}"


class Signature(_RecordMixin):
    """An investigator's electronic signature of a visit, an adverse event or a patient's whole casebook, with
    the printed name, the date and time and the meaning (21 CFR 11.50). A signed record is locked until the
    signature is voided (`voided_at`, with the reason) by a data manager's unlock."""

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    printed_name = models.CharField(_("printed name"), max_length=300)
    meaning = models.TextField(_("meaning"))
    signed_at = models.DateTimeField(_("signed at"))
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)
    voided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    void_reason = models.TextField(_("why voided"), blank=True)

    history = audit_history()

    class Meta:
        verbose_name = _("signature")
        verbose_name_plural = _("signatures")
        ordering = ["-signed_at"]
        constraints = [models.CheckConstraint(condition=_ONE_RECORD, name="signature_one_record")]

    def __str__(self) -> str:
        return f"{self.printed_name}: {self.record_label()}"


class SigningFailure(models.Model):
    """A wrong password or authenticator code given to sign a record (21 CFR 11.300(d): attempts at the
    unauthorised use of a signature are kept). Enough of them in a row lock signing for the user for a while:
    the row that reached the limit carries `locks_until` (`quality.services.review.signature_sign`)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(_("record"), max_length=16, choices=RecordKind.choices)
    patient = models.ForeignKey("patients.Patient", on_delete=models.PROTECT, related_name="+")
    field = models.CharField(_("wrong"), max_length=16, help_text=_("password or otp_token"))
    failed_at = models.DateTimeField(_("failed at"))
    locks_until = models.DateTimeField(_("signing locked until"), null=True, blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"

    class Meta:
        verbose_name = _("failed signing attempt")
        verbose_name_plural = _("failed signing attempts")
        ordering = ["-failed_at"]
        indexes = [models.Index(fields=["user", "failed_at"], name="signing_failure_user_at")]

    def __str__(self) -> str:
        return f"{self.user} {self.field} {self.failed_at:%Y-%m-%d %H:%M}"


class Lock(models.Model):
    """A data manager's lock on one patient or on a whole study at one site: no clinical write to what it
    covers is accepted while it is active. Releasing it needs a reason and voids the signatures it covers."""

    study = models.ForeignKey("registry.Study", on_delete=models.PROTECT, related_name="+")
    site = models.ForeignKey("registry.Site", on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(
        "patients.Patient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Blank: the whole study at the site."),
    )
    reason = models.TextField(_("reason"))
    locked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    locked_at = models.DateTimeField(_("locked at"))
    released_at = models.DateTimeField(_("unlocked at"), null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    release_reason = models.TextField(_("why unlocked"), blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        verbose_name = _("lock")
        verbose_name_plural = _("locks")
        ordering = ["-locked_at"]
        indexes = [models.Index(fields=["study", "site", "released_at"], name="lock_study_site_active")]

    def __str__(self) -> str:
        what = self.patient.subject_code if self.patient_id else self.study.code
        return f"{what} @ {self.site.code}"


class Freeze(models.Model):
    """A named point in time of a study, for analysis: the export and the cohort report as they stood then,
    kept with their SHA-256 so that they are served, and verified, byte for byte later."""

    study = models.ForeignKey("registry.Study", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(_("name"), max_length=100)
    site_ids = models.JSONField(help_text=_("The sites whose data the freeze holds."))
    frozen_at = models.DateTimeField(_("frozen at"))
    frozen_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    export_path = models.CharField(max_length=500, blank=True)
    export_sha256 = models.CharField(_("export SHA-256"), max_length=64, blank=True)
    report_csv = models.TextField(blank=True)
    report_sha256 = models.CharField(_("report SHA-256"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("freeze")
        verbose_name_plural = _("freezes")
        ordering = ["-frozen_at"]
        constraints = [models.UniqueConstraint(fields=["study", "name"], name="freeze_unique_name")]

    def __str__(self) -> str:
        return f"{self.study.code}: {self.name}"
