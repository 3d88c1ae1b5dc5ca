"""The follow-up admin's list filters, and the words in which its pages show graded outcomes and the expedited
reporting clock, in the user's language."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from followup.constants import WORKLIST_HORIZON_DAYS, VisitState
from followup.models import ComputedOutcome, Visit
from patients.models import TransplantEvent
from registry.constants import TissueSource
from registry.models import VisitDefinition

OUTCOME_GRADES = {
    "complete": _("complete"),
    "partial": _("partial"),
    "none": _("none"),
    "not_applicable": _("not applicable (no renal involvement at baseline)"),
    "mild_moderate": _("mild or moderate"),
    "severe": _("severe"),
}


REPORTS = {"initial": _("initial report"), "complete": _("complete report")}
REPORT_STATES = {
    "due": _("due"),
    "overdue": _("overdue"),
    "submitted on time": _("submitted on time"),
    "submitted late": _("submitted late"),
}


def report_clock_text(clock: dict) -> str:
    """One expedited report's clock (followup/services/adverse_events.py, `ae_report_clock`) in words."""
    text = gettext("%(report)s due %(date)s: %(state)s") % {
        "report": REPORTS.get(clock["report"], clock["report"]),
        "date": clock["due"].isoformat(),
        "state": REPORT_STATES.get(clock["state"], clock["state"]),
    }
    if clock["state"] == "due":
        text += (
            " (" + ngettext("%(n)d day left", "%(n)d days left", clock["days_left"]) % {"n": clock["days_left"]} + ")"
        )
    if clock["state"] == "overdue":
        late = -clock["days_left"]
        text += " (" + ngettext("%(n)d day late", "%(n)d days late", late) % {"n": late} + ")"
    return text


def outcome_grade(code: str) -> str:
    """A graded outcome (remission, renal response, flare) in words; a dash when it could not be assessed."""
    return str(OUTCOME_GRADES.get(code, code)) if code else "—"


class VisitStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return VisitState.choices

    def queryset(self, request, queryset):
        if self.value() in VisitState.values:
            return queryset.filter(state=self.value())
        return queryset


class OutcomeWordsFilter(admin.AllValuesFieldListFilter):
    """The values a graded outcome takes (complete, partial, none, severe, ...), in the user's language."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            if choice.get("display") in OUTCOME_GRADES:
                choice = {**choice, "display": outcome_grade(choice["display"])}
            yield choice


class CellSourceFilter(admin.SimpleListFilter):
    title = _("cell source")
    parameter_name = "cell_source"

    def lookups(self, request, model_admin):
        return [(value, _(label)) for value, label in TissueSource.choices]

    def queryset(self, request, queryset):
        if self.value():
            first_infusions = TransplantEvent.objects.filter(infusion_number=1, lot__tissue_source=self.value())
            return queryset.filter(pk__in=first_infusions.values("patient_id"))
        return queryset


class InfusionsFilter(admin.SimpleListFilter):
    title = _("infusions")
    parameter_name = "infusions"

    def lookups(self, request, model_admin):
        return [("single", _("single MSCT")), ("double", _("double MSCT")), ("none", _("not infused yet"))]

    def queryset(self, request, queryset):
        # Counted in a subquery: a join on transplants made by another filter must not change the count.
        per_patient = (
            TransplantEvent.objects.filter(patient=OuterRef("pk"))
            .order_by()
            .values("patient")
            .annotate(n=Count("pk"))
            .values("n")
        )
        counted = queryset.alias(n_infusions=Coalesce(Subquery(per_patient, output_field=IntegerField()), 0))
        return {
            "single": counted.filter(n_infusions=1),
            "double": counted.filter(n_infusions__gte=2),
            "none": counted.filter(n_infusions=0),
        }.get(self.value(), queryset)


class OverdueFilter(admin.SimpleListFilter):
    title = _("follow-up")
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", _("has an overdue visit"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            overdue = Visit.objects.in_state(VisitState.OVERDUE).values("patient_id")
            return queryset.filter(pk__in=overdue)
        return queryset


class WorklistFilter(admin.SimpleListFilter):
    """The visits of a section of the worklist (followup/selectors.py, `worklist_visits`): the whole list behind
    the first rows the worklist shows, most urgent first (VisitAdmin.get_ordering)."""

    title = _("Worklist")
    parameter_name = "worklist"
    STATES = {
        "in_progress": VisitState.IN_PROGRESS,
        "overdue": VisitState.OVERDUE,
        "due": VisitState.DUE,
        "upcoming": VisitState.SCHEDULED,
    }

    def lookups(self, request, model_admin):
        return [
            ("in_progress", _("Visits in progress (not complete)")),
            ("overdue", _("Overdue visits")),
            ("due", _("Due now")),
            ("upcoming", gettext("Coming within %(days)s days") % {"days": WORKLIST_HORIZON_DAYS}),
        ]

    def queryset(self, request, queryset):
        from django.utils import timezone

        from followup.selectors import worklist_visits
        from registry.models import Site

        state = self.STATES.get(self.value())
        if state is None:
            return queryset
        sites = list(Site.objects.for_user(request.user))
        chosen = worklist_visits(queryset, sites=sites, now=timezone.now(), horizon_days=WORKLIST_HORIZON_DAYS)
        return chosen.filter(state=state)


class ToCodeFilter(admin.SimpleListFilter):
    """The adverse events the worklist asks the user to code to MedDRA (followup/selectors.py,
    `adverse_events_to_code`): the whole list behind the first rows it shows, the oldest onset first."""

    title = _("MedDRA coding")
    parameter_name = "to_code"

    def lookups(self, request, model_admin):
        return [("yes", _("Adverse events to code to MedDRA"))]

    def queryset(self, request, queryset):
        from followup.selectors import adverse_events_to_code

        if self.value() != "yes":
            return queryset
        return adverse_events_to_code(queryset, user=request.user)


class ReportPendingFilter(admin.SimpleListFilter):
    """The adverse events whose expedited reports the worklist lists (followup/selectors.py,
    `adverse_events_report_pending`): the whole list behind its first rows, the earliest due first."""

    title = _("expedited report")
    parameter_name = "report_pending"

    def lookups(self, request, model_admin):
        return [("yes", _("Expedited report pending"))]

    def queryset(self, request, queryset):
        from followup.selectors import adverse_events_report_pending

        return adverse_events_report_pending(queryset) if self.value() == "yes" else queryset


class VisitCodeFilter(admin.SimpleListFilter):
    """The time points of the follow-up templates (a small table), rather than every visit's code
    (`SELECT DISTINCT` over the visits)."""

    title = _("visit")
    parameter_name = "code"

    def __init__(self, request, params, model, model_admin):
        self.lookup = "visit__code" if model is ComputedOutcome else "code"
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        rows = VisitDefinition.objects.order_by("offset_days", "code").values_list("code", "offset_days")
        return [(code, code) for code in dict(rows)]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.lookup: self.value()}) if self.value() else queryset
