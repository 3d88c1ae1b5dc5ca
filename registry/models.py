"""Studies, sites and who works there, donors, cell product lots and follow-up schedule templates."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from core.audit import audit_history
from core.i18n import in_language
from registry import constants as c

# Site scoping ------------------------------------------------------------------------------------------
# Every queryset a person or partner sees starts from the sites they belong to. Each scoped model names the
# lookup from itself to its Site in `SITE_LOOKUP` and uses `SiteScopedQuerySet`; `for_user(user)` keeps the
# rows of the user's sites (superusers see all), and `for_sites(ids)` keeps those of given sites (the API
# narrows to its key's site this way).


def user_site_ids(user, *, write: bool = False) -> models.QuerySet:
    """A subquery of the ids of the sites `user` belongs to (with a writing role when `write`)."""
    memberships = Membership.objects.filter(user_id=user.pk, user__is_active=True)
    if write:
        memberships = memberships.filter(role__in=c.WRITE_ROLES)
    return memberships.values("site_id")


class SiteScopedQuerySet(models.QuerySet):
    def for_sites(self, site_ids) -> SiteScopedQuerySet:
        return self.filter(**{f"{self.model.SITE_LOOKUP}__in": site_ids})

    def for_user(self, user, *, write: bool = False) -> SiteScopedQuerySet:
        if not user or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.for_sites(user_site_ids(user, write=write))


def user_can_write_site(user, site_id) -> bool:
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user_site_ids(user, write=True).filter(site_id=site_id).exists()


CODE_VALIDATOR = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "Use letters, digits, '.', '_' or '-' (no spaces).")


def validate_code_list(value) -> None:
    """A list of distinct codes (e.g. a visit's required result codes)."""
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise ValidationError(gettext('Give a list of codes, e.g. ["CREAT", "C3"].'))
    if len(set(value)) != len(value):
        raise ValidationError(gettext("Each code once."))
    for code in value:
        CODE_VALIDATOR(code)


PERCENT_VALIDATORS = [
    MinValueValidator(0, message="A percentage cannot be below 0."),
    MaxValueValidator(100, message="A percentage cannot be above 100."),
]


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(
            gettext("'%(value)s' is not an IANA time zone (e.g. Asia/Shanghai).") % {"value": value}, code="time_zone"
        )


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        abstract = True


class Site(TimeStampedModel):
    """A hospital taking part in studies. Patients belong to one site; a site sees only its own."""

    code = models.CharField(max_length=20, unique=True, validators=[CODE_VALIDATOR])
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 code, e.g. CN.")
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone], default="UTC")
    contact_email = models.EmailField(blank=True)
    safety_email = models.EmailField(blank=True, help_text="Where expedited safety alerts go.")
    address = models.TextField(blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "pk"
    history = audit_history()
    # No real value starts like a spreadsheet formula: refused (core/spreadsheets.py).
    PLAIN_TEXT_FIELDS = ("name", "contact_email", "safety_email", "address")

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(country__regex=r"^[A-Z]{2}$"),
                name="site_country_iso2",
                violation_error_message="Country must be a two-letter upper-case ISO code.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} – {self.name}"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)

    def today(self, now=None):
        """The calendar date at this site now (or at the instant `now`)."""
        from django.utils import timezone

        return (now or timezone.now()).astimezone(self.zone).date()


class StudyQuerySet(models.QuerySet):
    def for_sites(self, site_ids) -> StudyQuerySet:
        return self.filter(pk__in=StudySite.objects.filter(site_id__in=site_ids).values("study_id"))

    def for_user(self, user, *, write: bool = False) -> StudyQuerySet:

        if not user or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        return self.for_sites(user_site_ids(user, write=write))


class Study(TimeStampedModel):
    """A protocol: registration, phase, status, sites, follow-up template and outcome definitions."""

    code = models.CharField(max_length=30, unique=True, validators=[CODE_VALIDATOR])
    registration_id = models.CharField(
        max_length=40, unique=True, help_text="Registry identifier, e.g. ClinicalTrials.gov NCT01741857."
    )
    title = models.CharField(max_length=300)
    phase = models.CharField(max_length=10, choices=c.StudyPhase.choices)
    status = models.CharField(max_length=12, choices=c.StudyStatus.choices, default=c.StudyStatus.PLANNED)
    sponsor = models.CharField(max_length=200, blank=True)
    target_enrolment = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    safety_contact_email = models.EmailField(blank=True)
    sites = models.ManyToManyField(Site, through="StudySite", related_name="studies")

    objects = StudyQuerySet.as_manager()
    history = audit_history()
    PLAIN_TEXT_FIELDS = ("registration_id", "title", "sponsor", "safety_contact_email")

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(target_enrolment__gte=1), name="study_target_enrolment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.registration_id})"


class StudySite(models.Model):
    """A site's participation in a study. A site removed from a study keeps the row (`removed_on`): it still
    reads the study and its own patients, and writes nothing more for them (`registry.services.
    participation_check`). Changes go through `study_site_save`, each audited with its reason."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="study_sites")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="study_sites")
    activated_on = models.DateField(null=True, blank=True)
    removed_on = models.DateField(
        null=True, blank=True, help_text="The day the site left the study; it records nothing for the study since."
    )

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "site"], name="studysite_unique")]

    def __str__(self) -> str:
        return f"{self.study.code} @ {self.site.code}"


class Membership(models.Model):
    """A user's role at a site. Access to every site-scoped record follows memberships."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=c.Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "site", "role"], name="membership_unique_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} – {self.get_role_display()} at {self.site.code}"


class Donor(TimeStampedModel):
    """A cell donor, pseudonymous, with infectious-disease screening."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="donors")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="donors")
    code = models.CharField(max_length=40, validators=[CODE_VALIDATOR])
    relation = models.CharField(max_length=12, choices=c.DonorRelation.choices)
    sex = models.CharField(max_length=1, choices=c.Sex.choices)
    age_at_donation = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(100)],
        help_text="Years; blank for umbilical cord (neonatal) donors.",
    )
    hbv = models.CharField("HBV", max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE)
    hcv = models.CharField("HCV", max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE)
    hiv = models.CharField("HIV", max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE)
    syphilis = models.CharField(max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE)
    cmv = models.CharField("CMV", max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE)
    htlv = models.CharField(
        "HTLV", max_length=10, choices=c.ScreeningResult.choices, default=c.ScreeningResult.NOT_DONE
    )

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["study", "code"], name="donor_code_unique_per_study"),
            models.CheckConstraint(
                condition=Q(age_at_donation__isnull=True) | Q(age_at_donation__lte=100),
                name="donor_age_plausible",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class CellProductQuerySet(SiteScopedQuerySet):
    def for_sites(self, site_ids) -> CellProductQuerySet:
        # A lot is seen by its manufacturing site and by every site of its study (they infuse it).
        return self.filter(
            Q(site_id__in=site_ids) | Q(study_id__in=StudySite.objects.filter(site_id__in=site_ids).values("study_id"))
        )


class CellProduct(TimeStampedModel):
    """An MSC product lot, its release testing, and the outcome of the release evaluation.

    `release_status` and `release_failures` are written only by `lot_evaluate_release`, which every
    service that saves a lot calls; a lot that is not released cannot be infused.
    """

    lot_number = models.CharField(max_length=60, unique=True, validators=[CODE_VALIDATOR])
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="lots")
    site = models.ForeignKey(
        Site, on_delete=models.PROTECT, related_name="lots", help_text="Manufacturing or holding site."
    )
    donor = models.ForeignKey(Donor, on_delete=models.PROTECT, related_name="lots")
    tissue_source = models.CharField(max_length=20, choices=c.TissueSource.choices)
    origin = models.CharField(max_length=12, choices=c.ProductOrigin.choices)
    passage_number = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(20)])
    cryopreserved_on = models.DateField()
    expires_on = models.DateField()
    cells_per_unit = models.BigIntegerField(help_text="Viable cells per unit (bag or vial).")
    units = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])

    plastic_adherent = models.BooleanField(null=True, blank=True)
    cd105_pct = models.DecimalField(
        "CD105 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd73_pct = models.DecimalField(
        "CD73 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd90_pct = models.DecimalField(
        "CD90 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd45_pct = models.DecimalField(
        "CD45 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd34_pct = models.DecimalField(
        "CD34 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd14_or_cd11b_pct = models.DecimalField(
        "CD14 or CD11b %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    cd79a_or_cd19_pct = models.DecimalField(
        "CD79a or CD19 %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    hla_dr_pct = models.DecimalField(
        "HLA-DR %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    trilineage_shown = models.BooleanField(null=True, blank=True)
    viability_pct = models.DecimalField(
        "viability %", max_digits=5, decimal_places=2, null=True, blank=True, validators=PERCENT_VALIDATORS
    )
    sterility = models.CharField(max_length=10, choices=c.TestOutcome.choices, blank=True)
    mycoplasma = models.CharField(max_length=10, choices=c.TestOutcome.choices, blank=True)
    endotoxin_eu_per_ml = models.DecimalField("endotoxin EU/mL", max_digits=7, decimal_places=3, null=True, blank=True)
    karyotype = models.CharField(max_length=10, choices=c.Karyotype.choices, blank=True)

    release_status = models.CharField(
        max_length=10, choices=c.ReleaseStatus.choices, default=c.ReleaseStatus.PENDING, editable=False
    )
    release_failures = models.JSONField(default=list, blank=True, editable=False)

    objects = CellProductQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history()

    class Meta:
        ordering = ["lot_number"]
        verbose_name = "cell product lot"
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_on__gt=models.F("cryopreserved_on")), name="lot_expiry_after_cryo"
            ),
            models.CheckConstraint(condition=Q(cells_per_unit__gt=0), name="lot_cells_per_unit_positive"),
            models.CheckConstraint(
                condition=Q(passage_number__gte=1) & Q(passage_number__lte=20), name="lot_passage_plausible"
            ),
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{name}__isnull": True}) | (Q(**{f"{name}__gte": 0}) & Q(**{f"{name}__lte": 100})),
                    name=f"lot_{name}_percentage",
                )
                for name in (
                    "cd105_pct",
                    "cd73_pct",
                    "cd90_pct",
                    "cd45_pct",
                    "cd34_pct",
                    "cd14_or_cd11b_pct",
                    "cd79a_or_cd19_pct",
                    "hla_dr_pct",
                    "viability_pct",
                )
            ],
        ]

    def __str__(self) -> str:
        return self.lot_number

    def unique_error_message(self, model_class, unique_check):
        # Lot numbers are unique across sites: the words do not say that another site holds this one.
        if tuple(unique_check) == ("lot_number",):
            return ValidationError(
                gettext_lazy("This lot number is not available: choose another."),
                code="unique",
                params={"field": "lot_number"},
            )
        return super().unique_error_message(model_class, unique_check)

    @property
    def total_cells(self) -> int:
        return self.cells_per_unit * self.units


class VisitDefinition(models.Model):
    """One time point of a study's follow-up template: offset from day 0 and the window around it."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="visit_definitions")
    code = models.CharField(max_length=10, validators=[CODE_VALIDATOR])
    label = models.CharField(max_length=100)
    label_zh = models.CharField(
        "label (Chinese)", max_length=100, blank=True, help_text="Shown to users reading Chinese; blank: the label."
    )
    offset_days = models.PositiveIntegerField()
    window_before_days = models.PositiveIntegerField(default=0)
    window_after_days = models.PositiveIntegerField(default=0)
    required_items = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_code_list],
        help_text="Result codes that must be recorded, or said not done with a reason, to complete the visit.",
    )

    history = audit_history()
    PLAIN_TEXT_FIELDS = ("label", "label_zh")

    class Meta:
        ordering = ["study", "offset_days"]
        constraints = [
            models.UniqueConstraint(fields=["study", "code"], name="visitdef_code_unique_per_study"),
            models.UniqueConstraint(fields=["study", "offset_days"], name="visitdef_offset_unique_per_study"),
        ]

    def __str__(self) -> str:
        return f"{self.code} (day {self.offset_days})"

    @property
    def label_shown(self) -> str:
        """The label in the active language (core/i18n.py, `in_language`)."""
        return in_language(self.label, zh=self.label_zh)

    @property
    def window_first_day(self) -> int:
        return self.offset_days - self.window_before_days

    @property
    def window_last_day(self) -> int:
        return self.offset_days + self.window_after_days


class OutcomeSettings(models.Model):
    """A study's outcome definitions (defaults: docs/clinical-rules.md, "Outcomes"). Every computed outcome
    stores a copy of these."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="outcome_settings")
    cr_sledai_max = models.DecimalField(
        "complete remission: SLEDAI-2K at most", max_digits=5, decimal_places=2, default=3
    )
    cr_prednisone_max_mg = models.DecimalField(
        "complete remission: prednisone at most (mg/day)", max_digits=6, decimal_places=2, default=10
    )
    pr_sledai_max = models.DecimalField(
        "partial remission: SLEDAI-2K at most", max_digits=5, decimal_places=2, default=8
    )
    pr_reduction_min = models.DecimalField(
        "partial remission: reduction from baseline at least", max_digits=5, decimal_places=2, default=4
    )
    sri4_reduction_min = models.DecimalField(
        "SRI-4: SLEDAI-2K reduction at least", max_digits=5, decimal_places=2, default=4
    )
    sri4_pga_increase_below = models.DecimalField(
        "SRI-4: PGA increase below", max_digits=4, decimal_places=2, default=0.3
    )
    renal_involvement_min = models.DecimalField(
        "renal response applies from baseline proteinuria (g/24h or g/g)", max_digits=5, decimal_places=2, default=0.5
    )
    renal_cr_proteinuria_below = models.DecimalField(
        "complete renal response: proteinuria below", max_digits=5, decimal_places=2, default=0.5
    )
    renal_cr_egfr_drop_max_pct = models.DecimalField(
        "complete renal response: eGFR drop at most (%)", max_digits=5, decimal_places=2, default=15
    )
    renal_pr_reduction_min_pct = models.DecimalField(
        "partial renal response: proteinuria reduction at least (%)", max_digits=5, decimal_places=2, default=50
    )
    renal_pr_proteinuria_below = models.DecimalField(
        "partial renal response: proteinuria below", max_digits=5, decimal_places=2, default=3
    )
    flare_rise_min = models.DecimalField("flare: SLEDAI-2K rise at least", max_digits=5, decimal_places=2, default=3)
    flare_severe_total_above = models.DecimalField(
        "severe flare: SLEDAI-2K above", max_digits=5, decimal_places=2, default=12
    )
    flare_severe_prednisone_mg_per_kg_above = models.DecimalField(
        "severe flare: prednisone above (mg/kg/day)", max_digits=5, decimal_places=2, default=0.5
    )

    history = audit_history()

    class Meta:
        verbose_name = "outcome definitions"
        verbose_name_plural = "outcome definitions"

    def __str__(self) -> str:
        return gettext("Outcome definitions of %(study)s") % {"study": self.study.code}


class ReminderPolicy(models.Model):
    """When a study's coordinators are reminded of visits and safety reports (defaults: docs/clinical-rules.md,
    "Reminders and safety checks")."""

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="reminder_policy")
    upcoming_days = models.PositiveSmallIntegerField("remind this many days before a window opens", default=7)
    closing_days = models.PositiveSmallIntegerField("remind this many days before a window closes", default=3)
    overdue_repeat_days = models.PositiveSmallIntegerField("repeat an overdue reminder every (days)", default=7)
    overdue_max_reminders = models.PositiveSmallIntegerField(
        "overdue reminders before escalating to the investigator", default=4
    )
    send_hour = models.PositiveSmallIntegerField(
        "local hour at which reminders go out", default=8, validators=[MaxValueValidator(23)]
    )
    ae_due_soon_days = models.PositiveSmallIntegerField("warn this many days before a safety report is due", default=2)

    history = audit_history()

    class Meta:
        verbose_name_plural = "reminder policies"
        constraints = [
            models.CheckConstraint(condition=Q(send_hour__lte=23), name="reminder_send_hour_valid"),
            models.CheckConstraint(condition=Q(overdue_repeat_days__gte=1), name="reminder_repeat_positive"),
        ]

    def __str__(self) -> str:
        return gettext("Reminder policy of %(study)s") % {"study": self.study.code}


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read only"
    READ_WRITE = "read_write", "Read and write"


class ApiKey(models.Model):
    """A partner hospital's credential for the REST API, bound to one site.

    The key is shown once when issued; only its SHA-256 digest is kept (the key is 256 random bits, so a
    fast digest is safe), found by its public prefix. Keys expire and can be revoked.
    """

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'JSPH EHR integration'.")
    prefix = models.CharField(max_length=12, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=12, choices=ApiKeyScope.choices, default=ApiKeyScope.READ)
    can_write_lots = models.BooleanField(
        default=False, help_text="The site manufactures cell products and may record its lots."
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "site"
    history = audit_history(excluded_fields=["last_used_at"])
    PLAIN_TEXT_FIELDS = ("name",)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.site.code}, {self.name})"

    @property
    def can_write(self) -> bool:
        return self.scope == ApiKeyScope.READ_WRITE


class IdempotencyRecord(models.Model):
    """The first response to a POST with an Idempotency-Key, replayed for a retry with the same key and body."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    completed = models.BooleanField(default=False)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The first answer as JSON text, non-ASCII escaped: an error may echo any input back (even U+0000 or a
    # lone surrogate, which a jsonb column refuses).
    response_body = models.TextField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key")]

    def __str__(self) -> str:
        return f"{self.api_key.prefix}: {self.key}"


class SecondFactorEvent(models.Model):
    """A change to someone's two-factor sign-in (enrolled, new backup codes, reset by a data manager): the audit
    trail of sign-in devices, which django-otp does not keep. The username stays when the account is deleted."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="second_factor_events"
    )
    username = models.CharField(max_length=150)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    action = models.CharField(max_length=20, choices=c.SecondFactorAction.choices)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.username}: {self.get_action_display()}"
