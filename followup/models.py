"""Follow-up visits of each patient, instantiated from the study's template at the first infusion."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext

from core.audit import audit_history
from core.i18n import in_language
from followup import constants as c
from followup.catalogue import RESULT_CODE_CHOICES
from followup.computations import censored_text, plain
from followup.constants import VisitOutcome
from followup.states import VisitQuerySet, visit_state
from patients.models import Patient, TransplantEvent
from registry.models import CellProduct, SiteScopedQuerySet, TimeStampedModel, VisitDefinition


class Visit(TimeStampedModel):
    """A follow-up time point for one patient (or an unscheduled visit) and what was recorded there.

    `outcome` holds facts (in progress, completed, missed, not required); whether an open visit is scheduled, due or
    overdue follows from its window and today's date in the site's time zone (`followup.states`).
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits")
    definition = models.ForeignKey(
        VisitDefinition,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="visits",
        help_text="Blank for an unscheduled visit.",
    )
    code = models.CharField(max_length=10)
    label = models.CharField(max_length=100)
    label_zh = models.CharField(
        "label (Chinese)", max_length=100, blank=True, help_text="Shown to users reading Chinese; blank: the label."
    )
    target_date = models.DateField()
    window_start = models.DateField()
    window_end = models.DateField()
    outcome = models.CharField(max_length=12, choices=VisitOutcome.choices, default=VisitOutcome.OPEN)
    actual_date = models.DateField(null=True, blank=True)
    outcome_reason = models.TextField(blank=True, help_text="Why the visit was missed or is not required.")
    deviation_reason = models.TextField(blank=True, help_text="Why the visit took place outside its window.")
    sledai_items = models.JSONField(
        null=True,
        blank=True,
        help_text="SLEDAI-2K items present at the visit (codes); blank when only a total was recorded.",
    )
    not_done = models.JSONField(
        default=dict,
        blank=True,
        help_text="Required items without a value, each with the reason (result code: not_done or not_available).",
    )

    objects = VisitQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()
    # No label starts like a spreadsheet formula: refused (core/spreadsheets.py); the reasons are free text.
    PLAIN_TEXT_FIELDS = ("label",)  # label_zh is copied from the visit definition, which refuses it

    class Meta:
        ordering = ["patient", "target_date"]
        constraints = [
            models.UniqueConstraint(fields=["patient", "code"], name="visit_code_unique_per_patient"),
            models.CheckConstraint(
                condition=Q(window_start__lte=F("target_date")) & Q(target_date__lte=F("window_end")),
                name="visit_window_contains_target",
            ),
            models.CheckConstraint(
                condition=~Q(outcome__in=[VisitOutcome.COMPLETED, VisitOutcome.IN_PROGRESS])
                | Q(actual_date__isnull=False),
                name="visit_entered_has_date",
                violation_error_message="A visit completed or in progress needs its actual date.",
            ),
            models.CheckConstraint(
                condition=~Q(outcome__in=[VisitOutcome.MISSED, VisitOutcome.NOT_REQUIRED]) | ~Q(outcome_reason=""),
                name="visit_missed_has_reason",
                violation_error_message="A missed or not-required visit needs a reason.",
            ),
        ]
        indexes = [
            # The reminder sweeps and worklists look only at open visits by window.
            models.Index(fields=["window_start", "window_end"], condition=Q(outcome="open"), name="visit_open_window"),
        ]

    def __str__(self) -> str:
        return f"{self.patient.subject_code} {self.code}"

    @property
    def label_shown(self) -> str:
        """The label in the active language (core/i18n.py, `in_language`); exports keep `label`."""
        return in_language(self.label, zh=self.label_zh)

    def required_missing(self, present) -> list[str]:
        """The required items of the visit's definition (in its order) with neither a value among `present`
        (result codes) nor a reason they were not done."""
        required = self.definition.required_items if self.definition_id else []
        not_done = self.not_done or {}
        return [code for code in required if code not in present and code not in not_done]

    def current_state(self, today=None):
        """The visit's state today in the site's time zone (or on `today`)."""
        from followup.states import site_today

        if today is None:
            today = site_today(self.patient.site)
        return visit_state(
            outcome=self.outcome, window_start=self.window_start, window_end=self.window_end, today=today
        )


class Result(TimeStampedModel):
    """One measured or assessed value at a visit: canonical value, and the value and unit as entered."""

    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="results")
    code = models.CharField(max_length=10, choices=RESULT_CODE_CHOICES)
    value = models.DecimalField(
        max_digits=14,
        decimal_places=4,
        help_text='In the catalogue\'s canonical unit; with a comparator, the limit (e.g. 10 of "<10").',
    )
    comparator = models.CharField(
        max_length=2,
        choices=c.Comparator.choices,
        blank=True,
        default="",
        db_default="",  # rows written by COPY (the synthetic cohort, the benchmark) name no comparator
        help_text="Blank for an exact value; <, <=, >= or > for a censored one (it holds for both values).",
    )
    entered_value = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    entered_unit = models.CharField(max_length=20, blank=True)
    derived = models.BooleanField(default=False, help_text="Computed by the registry (e.g. eGFR from creatinine).")

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "visit__patient__site"
    history = audit_history()

    class Meta:
        ordering = ["visit", "code"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "code"], name="result_one_per_visit_and_code"),
            models.CheckConstraint(
                condition=Q(comparator__in=["", *c.Comparator.values]), name="result_comparator_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.comparator}{plain(self.value)}"

    @property
    def shown_value(self) -> str:
        """The canonical value as people write it, with its comparator ("<10")."""
        return censored_text(self.value, self.comparator)

    @property
    def shown_entered_value(self) -> str:
        return "" if self.entered_value is None else censored_text(self.entered_value, self.comparator)


class ComputedOutcome(models.Model):
    """The outcomes computed at one post-transplant visit, with the algorithm version and definitions used."""

    visit = models.OneToOneField(Visit, on_delete=models.CASCADE, related_name="computed_outcome")
    algorithm_version = models.CharField(max_length=40)
    definitions = models.JSONField(help_text="The study's outcome definitions in force when computed.")
    sledai = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    sledai_change = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    sri4 = models.BooleanField("SRI-4 (simplified)", null=True, blank=True)
    sri4_note = models.CharField(max_length=200, blank=True)
    remission = models.CharField(max_length=10, blank=True)
    renal_response = models.CharField(max_length=16, blank=True)
    flare = models.CharField(max_length=16, blank=True)
    relapse = models.BooleanField(null=True, blank=True)
    changes = models.JSONField(default=dict, help_text="Per result code: baseline, value, absolute and % change.")
    notes = models.JSONField(default=list, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "visit__patient__site"
    # What the outcomes engine computes (with the definitions it used), in the order of the table.
    COMPUTED_FIELDS = (
        "algorithm_version",
        "definitions",
        "sledai",
        "sledai_change",
        "sri4",
        "sri4_note",
        "remission",
        "renal_response",
        "flare",
        "relapse",
        "changes",
        "notes",
    )

    def __str__(self) -> str:
        return f"Outcomes at {self.visit}"


class MedDRARelease(models.Model):
    """A centre's own MedDRA release, loaded from its ASCII distribution by `load_meddra` (the registry ships
    none: MedDRA is licensed). The release loaded last is the one new codings use."""

    version = models.CharField(max_length=10, unique=True, help_text="MedDRA version, e.g. 27.1.")
    language = models.CharField(max_length=20, default="English")
    loaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-loaded_at", "-pk"]
        verbose_name = "MedDRA release"

    def __str__(self) -> str:
        return f"MedDRA {self.version} ({self.language})"


class MedDRATerm(models.Model):
    """A lowest level term (LLT) of a release with its preferred term and the PT's primary path (HLT, HLGT,
    primary SOC), as `mdhier.asc` gives it."""

    release = models.ForeignKey(MedDRARelease, on_delete=models.CASCADE, related_name="terms")
    llt_code = models.PositiveIntegerField("LLT code")
    llt_name = models.CharField("lowest level term", max_length=100)
    current = models.BooleanField(default=True, help_text="A non-current LLT is kept for history, not for coding.")
    pt_code = models.PositiveIntegerField("PT code")
    pt_name = models.CharField("preferred term", max_length=100)
    hlt_code = models.PositiveIntegerField("HLT code")
    hlt_name = models.CharField("high level term", max_length=100)
    hlgt_code = models.PositiveIntegerField("HLGT code")
    hlgt_name = models.CharField("high level group term", max_length=100)
    soc_code = models.PositiveIntegerField("SOC code")
    soc_name = models.CharField("primary system organ class", max_length=100)

    class Meta:
        ordering = ["llt_name"]
        verbose_name = "MedDRA term"
        constraints = [models.UniqueConstraint(fields=["release", "llt_code"], name="meddra_llt_once_per_release")]

    def __str__(self) -> str:
        return f"{self.llt_name} ({self.llt_code}) - PT {self.pt_name} - SOC {self.soc_name}"


class AdverseEvent(TimeStampedModel):
    """An adverse event with CTCAE grade, ICH E2A seriousness, relatedness and the expedited-report clock.

    The due dates are computed by `followup.services.ae_save` from the day the site became aware; a
    suspected unexpected serious adverse reaction (SUSAR) has them, any other event does not.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="adverse_events")
    transplant = models.ForeignKey(
        TransplantEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="adverse_events",
        help_text="The infusion, when the event is infusion-related.",
    )
    term = models.CharField(max_length=200, help_text="Event term, e.g. herpes zoster.")
    category = models.CharField(max_length=20, choices=c.AECategory.choices)
    onset_date = models.DateField()
    pre_treatment = models.BooleanField(
        default=False,
        editable=False,
        help_text="Onset before the first infusion: not treatment-emergent (set by the registry).",
    )
    resolution_date = models.DateField(null=True, blank=True, help_text="For a fatal event: the date of death.")
    grade = models.PositiveSmallIntegerField("CTCAE grade", choices=c.CTCAEGrade.choices)
    serious_death = models.BooleanField("serious: death", default=False)
    serious_life_threatening = models.BooleanField("serious: life-threatening", default=False)
    serious_hospitalisation = models.BooleanField("serious: hospitalisation or prolongation", default=False)
    serious_disability = models.BooleanField("serious: persistent disability", default=False)
    serious_congenital_anomaly = models.BooleanField("serious: congenital anomaly", default=False)
    serious_other_important = models.BooleanField("serious: other important medical event", default=False)
    relatedness = models.CharField("relatedness to MSCT", max_length=10, choices=c.Relatedness.choices)
    expected = models.BooleanField(help_text="Expected according to the study's reference safety information.")
    action_taken = models.CharField(max_length=24, choices=c.AEAction.choices, default=c.AEAction.NONE)
    outcome = models.CharField(max_length=16, choices=c.AEOutcome.choices, default=c.AEOutcome.UNKNOWN)
    aware_date = models.DateField(help_text="The day the site became aware (day 0 of the reporting clock).")
    initial_report_due = models.DateField(null=True, blank=True, editable=False)
    complete_report_due = models.DateField(null=True, blank=True, editable=False)
    initial_report_submitted_on = models.DateField(null=True, blank=True)
    complete_report_submitted_on = models.DateField(null=True, blank=True)
    description = models.TextField(blank=True)
    # MedDRA coding by a data manager (followup/services/coding.py): the chosen LLT, and its hierarchy copied
    # from the release so the export does not depend on the dictionary staying loaded. The term stays as entered.
    meddra_term = models.ForeignKey(
        MedDRATerm,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="MedDRA lowest level term",
        help_text="Code the event term: search the lowest level terms of the loaded MedDRA release.",
    )
    meddra_version = models.CharField("MedDRA version", max_length=10, blank=True, editable=False)
    meddra_llt_code = models.PositiveIntegerField("LLT code", null=True, blank=True, editable=False)
    meddra_llt = models.CharField("lowest level term", max_length=100, blank=True, editable=False)
    meddra_pt_code = models.PositiveIntegerField("PT code", null=True, blank=True, editable=False)
    meddra_pt = models.CharField("preferred term", max_length=100, blank=True, editable=False)
    meddra_hlt_code = models.PositiveIntegerField("HLT code", null=True, blank=True, editable=False)
    meddra_hlt = models.CharField("high level term", max_length=100, blank=True, editable=False)
    meddra_hlgt_code = models.PositiveIntegerField("HLGT code", null=True, blank=True, editable=False)
    meddra_hlgt = models.CharField("high level group term", max_length=100, blank=True, editable=False)
    meddra_soc_code = models.PositiveIntegerField("SOC code", null=True, blank=True, editable=False)
    meddra_soc = models.CharField("primary system organ class", max_length=100, blank=True, editable=False)

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()
    # No event term starts like a spreadsheet formula: refused (core/spreadsheets.py); the description is free text.
    PLAIN_TEXT_FIELDS = ("term",)

    class Meta:
        ordering = ["patient", "onset_date"]
        constraints = [
            models.CheckConstraint(condition=Q(grade__gte=1) & Q(grade__lte=5), name="ae_grade_1_to_5"),
            models.CheckConstraint(
                condition=Q(resolution_date__isnull=True) | Q(resolution_date__gte=F("onset_date")),
                name="ae_resolution_after_onset",
                violation_error_message="The resolution date cannot be before the onset.",
            ),
            models.CheckConstraint(
                condition=Q(aware_date__gte=F("onset_date")),
                name="ae_aware_after_onset",
                violation_error_message="The site cannot become aware before the onset.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["initial_report_due"],
                condition=Q(initial_report_submitted_on__isnull=True) & Q(initial_report_due__isnull=False),
                name="ae_initial_report_open",
            ),
        ]

    def __str__(self) -> str:
        return gettext("%(subject)s: %(term)s (grade %(grade)s)") % {
            "subject": self.patient.subject_code,
            "term": self.term,
            "grade": self.grade,
        }

    @property
    def serious(self) -> bool:
        return any(getattr(self, name) for name, _ in c.SERIOUSNESS_CRITERIA)

    @property
    def is_susar(self) -> bool:
        """Serious, unexpected, and at least possibly related to MSCT."""
        return self.serious and not self.expected and self.relatedness in c.RELATED_LEVELS

    @property
    def fatal_or_life_threatening(self) -> bool:
        return self.serious_death or self.serious_life_threatening


class LotLookback(CellProduct):
    """A lot seen from its recipients: every patient who received it, their AEs and current status."""

    class Meta:
        proxy = True
        verbose_name = "lot look-back"
        verbose_name_plural = "lot look-back"


class SafetySignal(TimeStampedModel):
    """A finding for an investigator to review: accepted as an adverse event, or dismissed with a reason.

    Raised at most once per `dedupe_key` (the kind and the visit, or the patient and the year for the yearly
    malignancy question); never turned into an adverse event without a person's decision.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="safety_signals")
    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, null=True, blank=True, related_name="safety_signals")
    kind = models.CharField(max_length=24, choices=c.SignalKind.choices)
    severity = models.PositiveSmallIntegerField(
        choices=c.SignalSeverity.choices,
        default=c.SignalSeverity.MODERATE,
        help_text="Set by the safety check that raised it; routine checks are worklist tasks.",
    )
    dedupe_key = models.CharField(max_length=100, unique=True)
    detail = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=c.SignalStatus.choices, default=c.SignalStatus.OPEN)
    review_reason = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    adverse_event = models.ForeignKey(
        AdverseEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="from_signals"
    )

    objects = SiteScopedQuerySet.as_manager()
    SITE_LOOKUP = "patient__site"
    history = audit_history()

    class Meta:
        ordering = ["-severity", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="open") | ~Q(review_reason="") | Q(status="accepted"),
                name="signal_review_has_reason",
                violation_error_message="Give a reason when dismissing or answering a signal.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.patient.subject_code}: {self.get_kind_display()}"


class SafetyCheckRun(models.Model):
    """One run of the safety checks over one study: its first run records the study's history as reviewed at
    import (`followup.safety.safety_sweep`), so that only what is found afterwards is announced."""

    study = models.ForeignKey("registry.Study", on_delete=models.CASCADE, related_name="safety_check_runs")
    started_at = models.DateTimeField()
    findings = models.PositiveIntegerField(default=0)
    raised = models.PositiveIntegerField(default=0, help_text="New signals and tasks left open for review.")
    imported = models.PositiveIntegerField(default=0, help_text="New findings recorded as reviewed at import.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.study_id} {self.started_at:%Y-%m-%d %H:%M}"
