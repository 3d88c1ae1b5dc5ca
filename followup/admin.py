import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from core.forms import Censored, CensoredDecimalField, StrictDecimalField, keep_formula_start
from followup import (
    admin_patient,  # noqa: F401 (registers the patient page)
    safety,
    services,
)
from followup.admin_filters import (
    OutcomeWordsFilter,
    ReportPendingFilter,
    ToCodeFilter,
    VisitCodeFilter,
    VisitStateFilter,
    WorklistFilter,
    outcome_grade,
    report_clock_text,
)
from followup.catalogue import ANALYTES, CENSORABLE_CODES, SLEDAI_ITEMS
from followup.computations import censored_text, plain
from followup.constants import (
    AECategory,
    CTCAEGrade,
    NotDoneReason,
    RecordStatus,
    Relatedness,
    VisitOutcome,
    VisitState,
)
from followup.history import visit_history
from followup.models import AdverseEvent, ComputedOutcome, LotLookback, MedDRATerm, Result, SafetySignal, Visit
from followup.selectors import lot_lookback, next_overdue_visit, next_report_due
from registry.admin import VisitDefinitionAdmin
from registry.admin_tools import (
    BigListAdminMixin,
    ScopedAdmin,
    ScopedReadOnlyInlineMixin,
    ServiceModelForm,
    SiteScopedAdminMixin,
    date_column,
    request_memo,
)
from registry.models import VisitDefinition

ENTERED_ANALYTES = [a for a in ANALYTES.values() if not a.computed and a.code != "SLEDAI2K"]


def yes_no(value: bool | None) -> str:
    """A computed yes/no outcome as a reader says it; a dash when it could not be assessed."""
    if value is None:
        return "—"
    return gettext("Yes") if value else gettext("No")


def _sledai_choices():
    """The SLEDAI-2K items grouped by weight, in the reader's language (called per form, not at import)."""
    groups = {}
    for item in SLEDAI_ITEMS.values():
        groups.setdefault(item.weight, []).append((item.code, gettext(item.label)))
    return [
        (ngettext("%(points)s point each", "%(points)s points each", weight) % {"points": weight}, items)
        for weight, items in sorted(groups.items(), reverse=True)
    ]


def _sledai_codes():
    return [(item.code, item.label) for item in SLEDAI_ITEMS.values()]


def _analyte_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for analyte in ENTERED_ANALYTES:
        number_field = CensoredDecimalField if analyte.code in CENSORABLE_CODES else StrictDecimalField
        fields[f"{analyte.code}_value"] = number_field(
            required=False, label=format_lazy("{}: {}", analyte.code, _(analyte.label)), decimal_places=4, max_digits=14
        )
        fields[f"{analyte.code}_unit"] = forms.ChoiceField(
            choices=[(u, u) for u in analyte.units], required=False, label=_("unit"), initial=analyte.unit
        )
    for code in [*(a.code for a in ENTERED_ANALYTES), "SLEDAI2K"]:
        # Shown beside the items the visit's definition requires (`VisitAdmin.get_fieldsets`).
        fields[f"{code}_not_done"] = forms.ChoiceField(
            choices=[("", "—"), *NotDoneReason.choices], required=False, label=_("or, not done because")
        )
    return fields


class VisitRecordFormBase(ServiceModelForm):
    """Record a visit: its date, the SLEDAI-2K items (or a total), and results in the unit at hand."""

    sledai_assessed = forms.BooleanField(
        required=False,
        label=_("SLEDAI-2K assessed"),
        help_text=_("Tick when the SLEDAI-2K was assessed, even if no item is present."),
    )
    sledai_items = forms.MultipleChoiceField(
        choices=_sledai_codes(),
        required=False,
        widget=forms.CheckboxSelectMultiple(
            attrs={"data-sledai-weights": json.dumps({code: item.weight for code, item in SLEDAI_ITEMS.items()})}
        ),
        label=_("SLEDAI-2K items present"),
    )
    sledai_total_only = StrictDecimalField(
        required=False, min_value=0, max_value=105, label=_("SLEDAI-2K total (only when items were not assessed)")
    )
    missed_reason = forms.CharField(
        required=False,
        label=_("Missed: reason"),
        help_text=_("Fill in only to confirm the visit did not take place."),
    )

    check_the_rest = True  # `visit_record` reloads the visit; the form's instance is never changed

    class Meta:
        model = Visit
        fields = ["actual_date", "deviation_reason"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sledai_items"].choices = _sledai_choices()
        self.fields["sledai_items"].widget.attrs["data-sledai-total-text"] = gettext(
            "SLEDAI-2K total: %(total)s / %(max)s"
        )
        existing = {r.code: r for r in self.instance.results.all()} if self.instance.pk else {}
        for code, row in existing.items():
            if f"{code}_value" in self.fields:
                entered = row.entered_value is not None and row.entered_unit in ANALYTES[code].units
                self.fields[f"{code}_value"].initial = censored_text(
                    row.entered_value if entered else row.value, row.comparator
                )
                self.fields[f"{code}_unit"].initial = row.entered_unit if entered else ANALYTES[code].unit
        if self.instance.pk and self.instance.sledai_items is not None:
            self.fields["sledai_items"].initial = self.instance.sledai_items
            self.fields["sledai_assessed"].initial = True
        elif self.instance.pk and "SLEDAI2K" in existing:
            self.fields["sledai_total_only"].initial = existing["SLEDAI2K"].value
        for code, why in (self.instance.not_done or {}).items() if self.instance.pk else ():
            if f"{code}_not_done" in self.fields:
                self.fields[f"{code}_not_done"].initial = why
        for name, field in self.fields.items():
            if name.endswith("_not_done"):
                field.choices = [("", "—"), *((value, gettext(label)) for value, label in NotDoneReason.choices)]

    # Service errors about something the form asks under another name.
    SERVICE_ERROR_FIELDS = {
        "SLEDAI2K": "sledai_total_only",  # a total that disagrees with the items, or out of range
        "EGFR": "CREAT_value",  # computed from creatinine
        "outcome_reason": "missed_reason",
    }

    def service_error_field(self, key: str) -> str | None:
        field = self.SERVICE_ERROR_FIELDS.get(key) or (f"{key}_value" if f"{key}_value" in self.fields else key)
        return field if field in self.fields else None

    @staticmethod
    def sledai_items_from(cleaned_data) -> list[str] | None:
        """The items to record: None when SLEDAI-2K was not assessed (or only a total was given)."""
        items = cleaned_data.get("sledai_items") or []
        return items if (items or cleaned_data.get("sledai_assessed")) else None

    @staticmethod
    def results_from(cleaned_data) -> dict:
        results = {}
        for analyte in ENTERED_ANALYTES:
            value = cleaned_data.get(f"{analyte.code}_value")
            if value is not None:
                value, comparator = (value.number, value.comparator) if isinstance(value, Censored) else (value, "")
                results[analyte.code] = (value, cleaned_data.get(f"{analyte.code}_unit") or analyte.unit, comparator)
        if cleaned_data.get("sledai_total_only") is not None:  # beside ticked items, it must agree with them
            results["SLEDAI2K"] = (cleaned_data["sledai_total_only"], "points")
        return results

    @staticmethod
    def not_done_from(cleaned_data, required) -> dict[str, str]:
        """The reasons given for required items without a value, by result code."""
        return {code: cleaned_data[f"{code}_not_done"] for code in required if cleaned_data.get(f"{code}_not_done")}


VisitRecordForm = type("VisitRecordForm", (VisitRecordFormBase,), _analyte_fields())


class ResultRowForm(forms.ModelForm):
    class Meta:
        help_texts = {"shown_value": _("In the catalogue's canonical unit.")}


class ResultInline(ScopedReadOnlyInlineMixin, admin.TabularInline):
    """The visit's results, read only: values as people write them (79.56, not 79.5600), one line each."""

    model = Result
    form = ResultRowForm
    template = "admin/followup/visit/results_table.html"
    extra = 0
    fields = ["code", "shown_value", "canonical_unit", "shown_entered_value", "entered_unit", "derived"]
    readonly_fields = fields

    @admin.display(description=_("value"))
    def shown_value(self, obj):
        return obj.shown_value

    @admin.display(description=_("unit"))
    def canonical_unit(self, obj):
        return ANALYTES[obj.code].unit

    @admin.display(description=_("entered value"))
    def shown_entered_value(self, obj):
        return self.get_empty_value_display() if obj.entered_value is None else obj.shown_entered_value


@admin.register(Visit)
class VisitAdmin(BigListAdminMixin, ScopedAdmin):
    form = VisitRecordForm

    class Media:
        js = ["followup/sledai.js"]
        css = {"all": ["followup/visit.css"]}

    list_display = [
        "patient",
        "code",
        "label_display",
        date_column(Visit, "target_date"),
        date_column(Visit, "window_start"),
        date_column(Visit, "window_end"),
        "state_display",
        date_column(Visit, "actual_date"),
    ]
    list_filter = [VisitStateFilter, WorklistFilter, VisitCodeFilter, "patient__site", "patient__study"]
    search_fields = ["patient__subject_code"]
    list_select_related = ["patient"]
    # The newest visits first, by the primary key's index: the model's order (study, subject, date) sorted
    # every visit of the user's sites before showing the first hundred. A date hierarchy would read every
    # visit's year first; the state and visit filters narrow instead.
    ordering = ["-pk"]
    inlines = [ResultInline]
    readonly_fields = [
        "patient",
        "code",
        "label_display",
        "target_date",
        "window",
        "state_display",
        "outcome_reason",
        "outcome_summary",
    ]

    change_form_template = "admin/followup/visit/change_form.html"

    @staticmethod
    def _required(obj) -> list[str]:
        return list(obj.definition.required_items) if obj is not None and obj.definition_id else []

    def get_fieldsets(self, request, obj=None):
        required = self._required(obj)
        analyte_fields = [
            (f"{a.code}_value", f"{a.code}_unit", *([f"{a.code}_not_done"] if a.code in required else []))
            for a in ENTERED_ANALYTES
        ]
        sledai = ["sledai_assessed", "sledai_items", "sledai_total_only"]
        if "SLEDAI2K" in required:
            sledai[-1] = ("sledai_total_only", "SLEDAI2K_not_done")
        if obj is not None and not self.has_change_permission(request, obj):
            return self._read_only_fieldsets()
        return [
            (
                None,
                {
                    "fields": [
                        "patient",
                        ("code", "label_display"),
                        ("target_date", "window"),
                        "state_display",
                        "outcome_reason",
                    ]
                },
            ),
            (_("Record the visit"), {"fields": ["actual_date", "deviation_reason"]}),
            ("SLEDAI-2K", {"fields": sledai}),
            (
                _("Results (choose the unit you have; values are stored in the canonical unit)"),
                {"fields": analyte_fields},
            ),
            (_("Missed visit"), {"fields": ["missed_reason"], "classes": ["collapse"]}),
            (_("Computed outcomes"), {"fields": ["outcome_summary"]}),
            (_("Correction"), {"fields": ["reason"]}),
        ]

    @staticmethod
    def _read_only_fieldsets():
        """A visit the user may only read (signed, locked, another role's): its recorded fields; the results are
        in the table below. The entry form's own fields (units, not-done reasons, a reason for a correction)
        have nothing to show, and Django would label them by their names, in English."""
        return [
            (
                None,
                {"fields": ["patient", ("code", "label_display"), ("target_date", "window"), "state_display"]},
            ),
            (_("Record the visit"), {"fields": ["actual_date", "deviation_reason", "outcome_reason"]}),
            ("SLEDAI-2K", {"fields": ["sledai_items"]}),
            (_("Computed outcomes"), {"fields": ["outcome_summary"]}),
        ]

    def get_queryset(self, request):
        return super().get_queryset(request).with_state().select_related("patient__site", "definition")

    def get_ordering(self, request):
        # A section of the worklist in full: as the worklist orders it, most urgent first.
        if request.GET.get(WorklistFilter.parameter_name) in WorklistFilter.STATES:
            return ["window_end", "patient__subject_code", "pk"]
        return super().get_ordering(request)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        required = self._required(obj)
        context["required_items"] = required
        context["visit_completed"] = obj is not None and obj.outcome == VisitOutcome.COMPLETED
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description=_("label"), ordering="label")
    def label_display(self, obj):
        return obj.label_shown

    @admin.display(description=_("state"), ordering="state")
    def state_display(self, obj):
        state = obj.state if isinstance(getattr(obj, "state", None), str) else obj.current_state()
        return gettext(VisitState(state).label)

    @admin.display(description=_("window"))
    def window(self, obj):
        return gettext("%(start)s to %(end)s") % {
            "start": obj.window_start.isoformat(),
            "end": obj.window_end.isoformat(),
        }

    @admin.display(description=_("outcomes at this visit"))
    def outcome_summary(self, obj):
        outcome = ComputedOutcome.objects.filter(visit=obj).first()
        if outcome is None:
            return "—"
        sledai = "—" if outcome.sledai is None else plain(outcome.sledai)
        if outcome.sledai is not None and outcome.sledai_change is not None:
            sledai = gettext("%(value)s (change %(change)s)") % {
                "value": sledai,
                "change": plain(outcome.sledai_change),
            }
        rows = [
            ("SLEDAI-2K", sledai),
            (
                "SRI-4 (simplified)",
                f"{yes_no(outcome.sri4)} – {outcome.sri4_note}" if outcome.sri4_note else yes_no(outcome.sri4),
            ),
            (gettext("Remission"), outcome_grade(outcome.remission)),
            (gettext("Renal response"), outcome_grade(outcome.renal_response)),
            (gettext("Flare"), outcome_grade(outcome.flare)),
            (gettext("Relapse"), yes_no(outcome.relapse)),
            (gettext("Algorithm"), outcome.algorithm_version),
        ]
        rows += [
            (
                code,
                gettext("%(value)s vs baseline %(baseline)s (%(absolute)s, %(percent)s %%)")
                % {
                    "value": change.get("comparator", "") + change["value"],
                    "baseline": change.get("baseline_comparator", "") + change["baseline"],
                    "absolute": change["absolute"] if change["absolute"] is not None else "–",
                    "percent": change["percent"] if change["percent"] is not None else "–",
                },
            )
            for code, change in outcome.changes.items()
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    def has_add_permission(self, request):
        return False

    def history_view(self, request, object_id, extra_context=None):
        """One history of the visit: its fields, its results and its SLEDAI-2K items, who, when, door, why."""
        visit = self.get_object(request, unquote(object_id))
        if visit is None or not self.has_view_or_change_permission(request, visit):
            raise Http404
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("History: %(visit)s") % {"visit": visit},
            "subtitle": None,
            "opts": self.model._meta,
            "object": visit,
            "entries": visit_history(visit),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/followup/visit/history.html", context)

    def response_post_save_change(self, request, obj):
        """Saving takes the coordinator back to the worklist, where the next visit waits; a visit left in
        progress is named there with what completing it still needs."""
        if obj.outcome == VisitOutcome.IN_PROGRESS:
            missing = getattr(obj, "missing_items", None) or []
            message = gettext("Visit %(visit)s is saved in progress; it stays on the worklist until completed.") % {
                "visit": obj
            }
            if missing:
                message += " " + gettext("Completing it needs: %(items)s.") % {"items": ", ".join(missing)}
            self.message_user(request, message, messages.WARNING)
        if "_complete_next" in request.POST:
            following = next_overdue_visit(user=request.user, exclude_pk=obj.pk)
            if following is not None:
                return HttpResponseRedirect(
                    reverse(f"{self.admin_site.name}:followup_visit_change", args=[following.pk])
                )
            self.message_user(request, gettext("No other visit is overdue."), messages.INFO)
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:index"))

    @staticmethod
    def requested_status(request, instance) -> str:
        """ "Complete visit" completes; "Save (in progress)", the default that Enter presses, does not. A
        completed visit's page saves a correction, which keeps it complete."""
        if (
            "_complete" in request.POST
            or "_complete_next" in request.POST
            or instance.outcome == VisitOutcome.COMPLETED
        ):
            return RecordStatus.COMPLETE
        return RecordStatus.IN_PROGRESS

    def service_save(self, request, instance, cleaned_data, change):
        if cleaned_data.get("missed_reason") and not cleaned_data.get("actual_date"):
            return services.visit_mark_missed(visit=instance, reason=cleaned_data["missed_reason"], actor=request.user)
        results = VisitRecordForm.results_from(cleaned_data)
        stored = set(instance.results.filter(derived=False).values_list("code", flat=True))
        cleared = sorted(code for code in stored if f"{code}_value" in cleaned_data and code not in results)
        return services.visit_record(
            visit=instance,
            actual_date=cleaned_data.get("actual_date"),
            results=results,
            remove=cleared,
            sledai_items=VisitRecordForm.sledai_items_from(cleaned_data),
            deviation_reason=cleaned_data.get("deviation_reason") or "",
            reason=cleaned_data.get("reason") or "",
            status=self.requested_status(request, instance),
            not_done=VisitRecordForm.not_done_from(cleaned_data, self._required(instance)),
            actor=request.user,
        )


@admin.register(Result)
class ResultAdmin(BigListAdminMixin, ScopedAdmin):
    list_display = ["visit", "code", "shown_value", "shown_entered_value", "entered_unit", "derived"]
    list_filter = ["code", "derived", "visit__patient__site"]  # the code's choices come from the catalogue
    search_fields = ["visit__patient__subject_code"]
    list_select_related = ["visit__patient"]
    ordering = ["-pk"]  # by the primary key's index (the model's order sorts every result by study and patient)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # results are recorded and corrected on their visit's page

    @admin.display(description=_("value"), ordering="value")
    def shown_value(self, obj):
        return obj.shown_value

    @admin.display(description=_("entered value"), ordering="entered_value")
    def shown_entered_value(self, obj):
        return obj.shown_entered_value or self.get_empty_value_display()


def _outcome_word(field: str):
    @admin.display(description=_(str(ComputedOutcome._meta.get_field(field).verbose_name)), ordering=field)
    def shown(self, obj):
        return outcome_grade(getattr(obj, field))

    return shown


@admin.register(ComputedOutcome)
class ComputedOutcomeAdmin(BigListAdminMixin, SiteScopedAdminMixin, admin.ModelAdmin):
    list_display = [
        "visit",
        "sledai",
        "sledai_change",
        "sri4",
        "remission_shown",
        "renal_response_shown",
        "flare_shown",
        "relapse",
        "algorithm_version",
    ]
    list_filter = [
        ("remission", OutcomeWordsFilter),
        ("renal_response", OutcomeWordsFilter),
        ("flare", OutcomeWordsFilter),
        "relapse",
        VisitCodeFilter,
        "visit__patient__site",
    ]
    remission_shown = _outcome_word("remission")
    renal_response_shown = _outcome_word("renal_response")
    flare_shown = _outcome_word("flare")
    search_fields = ["visit__patient__subject_code"]
    list_select_related = ["visit__patient"]
    ordering = ["-pk"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AdverseEvent)
class AdverseEventAdmin(ScopedAdmin):
    class Media:
        css = {"all": ["followup/adverse_event.css"]}

    list_display = [
        "patient",
        "term",
        "category",
        "grade",
        "serious_flag",
        "relatedness",
        "expected",
        "onset_date",
        "pre_treatment",
        "initial_report_due",
        "report_clock",
    ]
    list_filter = ["category", "grade", "relatedness", "expected", "patient__site", "meddra_soc", ToCodeFilter]
    list_filter += [ReportPendingFilter]
    search_fields = ["patient__subject_code", "term", "meddra_llt", "meddra_pt"]
    list_select_related = ["patient__site"]
    autocomplete_fields = ["patient", "meddra_term"]
    readonly_fields = ["pre_treatment", "initial_report_due", "complete_report_due", "report_clock", "meddra_coding"]

    def get_ordering(self, request):
        # The events to code in full: as the worklist orders them, the oldest onset first.
        if request.GET.get(ToCodeFilter.parameter_name) == "yes":
            return ["onset_date", "pk"]
        if request.GET.get(ReportPendingFilter.parameter_name) == "yes":  # as the worklist: the earliest due first
            return [next_report_due().asc(), "pk"]
        return super().get_ordering(request)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        site_id = obj.patient.site_id if obj is not None and obj.patient_id else None
        if not request_memo(request, ("ae_can_code", site_id), lambda: services.ae_can_code(request.user, site_id)):
            fields.append("meddra_term")  # coded by a data manager of the site (followup/services/adverse_events.py)
        return fields

    @admin.display(description=_("MedDRA coding"))
    def meddra_coding(self, obj):
        if obj.pk is None or obj.meddra_llt_code is None:
            return gettext("not coded")
        return format_html(
            "MedDRA {} &ndash; LLT {} {}; PT {} {}; HLT {} {}; HLGT {} {}; SOC {} {}",
            obj.meddra_version,
            obj.meddra_llt_code,
            obj.meddra_llt,
            obj.meddra_pt_code,
            obj.meddra_pt,
            obj.meddra_hlt_code,
            obj.meddra_hlt,
            obj.meddra_hlgt_code,
            obj.meddra_hlgt,
            obj.meddra_soc_code,
            obj.meddra_soc,
        )

    @admin.display(description=_("serious"), boolean=True)
    def serious_flag(self, obj):
        return obj.serious

    @admin.display(description=_("expedited reporting"))
    def report_clock(self, obj):
        if obj.pk is None:
            return "—"
        clock = services.ae_report_clock(obj)
        if not clock:
            return gettext("not a SUSAR: no expedited report")
        return "; ".join(report_clock_text(c) for c in clock)

    def service_save(self, request, instance, cleaned_data, change):
        if "meddra_term" not in cleaned_data:  # the field is read only for this user: was a coding sent anyway?
            services.ae_check_posted_coding(ae=instance, posted=request.POST.get("meddra_term"), actor=request.user)
        return services.ae_save(ae=instance, actor=request.user, reason=cleaned_data.get("reason", ""))


@admin.register(MedDRATerm)
class MedDRATermAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """The lowest level terms of the current MedDRA release, searched by the coding field of an adverse event."""

    list_display = ["llt_name", "llt_code", "pt_name", "soc_name"]
    search_fields = ["llt_name", "=llt_code", "pt_name"]
    superuser_writes_only = True

    def get_queryset(self, request):
        release = services.meddra_current_release()
        return super().get_queryset(request).filter(release=release, current=True)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LotLookback)
class LotLookbackAdmin(ScopedAdmin):
    list_display = ["lot_number", "study", "tissue_source", "release_status", "expires_on"]
    search_fields = ["lot_number"]
    list_filter = ["tissue_source", "study"]
    fields = ["lot_number", "study", "tissue_source", "origin", "release_status"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def history_view(self, request, object_id, extra_context=None):
        # A proxy has no history of its own (simple-history records the lot): the lot's history page.
        return redirect("admin:registry_cellproduct_history", object_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        lot = self.get_object(request, object_id)
        extra_context = {**(extra_context or {}), "recipients": lot_lookback(lot=lot, user=request.user) if lot else []}
        return super().change_view(request, object_id, form_url, extra_context)


class SignalReviewForm(ServiceModelForm):
    decision = forms.ChoiceField(
        choices=[
            ("", "—"),
            ("dismiss", _("Dismiss (or answer the malignancy question)")),
            ("accept", _("Accept as an AE")),
        ],
        required=False,
    )
    ae_term = keep_formula_start(forms.CharField(required=False, label=_("AE term (when accepting)")))
    ae_category = forms.ChoiceField(
        choices=[("", "—"), *((v, _(label)) for v, label in AECategory.choices)], required=False, label=_("AE category")
    )
    ae_grade = forms.TypedChoiceField(
        choices=[("", "—"), *((v, _(label)) for v, label in CTCAEGrade.choices)],
        coerce=int,
        required=False,
        label=_("CTCAE grade"),
    )
    ae_relatedness = forms.ChoiceField(
        choices=[("", "—"), *((v, _(label)) for v, label in Relatedness.choices)],
        required=False,
        label=_("relatedness to MSCT"),
    )
    ae_expected = forms.BooleanField(required=False, label=_("expected"))
    ae_onset_date = forms.DateField(required=False, label=_("onset date"))
    ae_aware_date = forms.DateField(required=False, label=_("date the site became aware"))

    class Meta:
        model = SafetySignal
        fields = ["review_reason"]


@admin.register(SafetySignal)
class SafetySignalAdmin(ScopedAdmin):
    form = SignalReviewForm
    list_display = ["created_at", "patient", "severity", "kind", "detail", "status", "reviewed_by", "adverse_event"]
    list_filter = ["status", "severity", "kind", "patient__site"]
    ordering = ["-severity", "-created_at"]  # a severe flare above a routine check
    search_fields = ["patient__subject_code"]
    list_select_related = ["patient", "reviewed_by", "adverse_event"]
    readonly_fields = [
        "patient",
        "visit",
        "severity",
        "kind",
        "detail",
        "status",
        "reviewed_by",
        "reviewed_at",
        "adverse_event",
    ]
    fields = [
        *readonly_fields,
        "decision",
        "review_reason",
        "ae_term",
        "ae_category",
        "ae_grade",
        "ae_relatedness",
        "ae_expected",
        "ae_onset_date",
        "ae_aware_date",
    ]
    reason_on_change = False

    def has_add_permission(self, request):
        return False

    def service_save(self, request, instance, cleaned_data, change):
        decision = cleaned_data.get("decision")
        if decision == "dismiss":
            return safety.signal_dismiss(
                signal=instance, reason=cleaned_data.get("review_reason", ""), actor=request.user
            )
        if decision == "accept":
            fields = {
                name: cleaned_data.get(f"ae_{name}")
                for name in ("term", "category", "grade", "relatedness", "expected", "onset_date", "aware_date")
            }
            missing = [name for name, value in fields.items() if value in (None, "") and name != "expected"]
            if missing:
                raise ValidationError(
                    {f"ae_{name}": gettext("Needed to record the adverse event.") for name in missing}
                )
            return safety.signal_accept(
                signal=instance, actor=request.user, description=cleaned_data.get("review_reason", ""), **fields
            )
        raise ValidationError({"decision": gettext("Choose to dismiss the signal or accept it as an adverse event.")})


class VisitDefinitionItemsForm(ServiceModelForm):
    """A time point of the template, its required items chosen from the catalogue."""

    required_items = forms.MultipleChoiceField(
        choices=[
            (code, format_lazy("{}: {}", code, _(analyte.label)))
            for code, analyte in ANALYTES.items()
            if not analyte.computed
        ],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("required items"),
        help_text=_("Result codes that must be recorded, or said not done with a reason, to complete the visit."),
    )

    class Meta:
        model = VisitDefinition
        fields = "__all__"

    def clean_required_items(self):
        chosen = self.cleaned_data["required_items"]
        return [code for code in ANALYTES if code in chosen]  # in the catalogue's order


class VisitDefinitionItemsAdmin(VisitDefinitionAdmin):
    form = VisitDefinitionItemsForm
    list_display = [*VisitDefinitionAdmin.list_display, "required_items"]


admin.site.unregister(VisitDefinition)
admin.site.register(VisitDefinition, VisitDefinitionItemsAdmin)
