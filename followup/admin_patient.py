"""The patient page: patients' own admin with the follow-up picture added (summary, visit timeline, charts)
and the patient's adverse events and medications as read-only tables, each row linked to its own page."""

from django.contrib import admin
from django.contrib.admin.utils import display_for_field
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from followup.admin_filters import CellSourceFilter, InfusionsFilter, OverdueFilter
from followup.charts import patient_charts
from followup.models import AdverseEvent, Visit
from patients.admin import PatientAdmin
from patients.models import ConcomitantMedication, Patient
from patients.services import day_zero
from registry.admin_tools import export_csv_action

AE_COLUMNS = ["term", "category", "grade", "onset_date", "relatedness", "expected", "outcome", "initial_report_due"]
MEDICATION_COLUMNS = ["drug", "drug_other", "dose", "unit", "frequency", "start_date", "stop_date", "ongoing"]
RECORD_TABLES = ["adverse_events", "medications"]  # the fields below, after the form's own


def _infusions(patient) -> list:
    """The patient's infusions with their lots, in order, read once for the page's summary and charts."""
    if not hasattr(patient, "_page_infusions"):
        patient._page_infusions = list(patient.transplants.select_related("lot").order_by("infusion_number"))
    return patient._page_infusions


def _change_link(url_name: str):
    """A function of a primary key giving its change page, from one reverse()."""
    before, after = reverse(url_name, args=[0]).rsplit("/0/", 1)
    return lambda pk: f"{before}/{pk}/{after}"


def record_table(rows, *, model, columns, url_name, group_id, empty_text, empty_value):
    """Rows of `model` as a table with a header of the columns' names, each value as the admin shows it,
    the first cell linked to the row's change page; `empty_text` when there is none."""
    if not rows:
        return format_html('<div id="{}"><p>{}</p></div>', group_id, empty_text)
    fields = [model._meta.get_field(name) for name in columns]
    link = _change_link(url_name)
    header = format_html_join("", "<th>{}</th>", ((capfirst(f.verbose_name),) for f in fields))
    body = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td>{}</tr>',
        (
            (
                link(row.pk),
                display_for_field(getattr(row, fields[0].name), fields[0], empty_value),
                format_html_join(
                    "", "<td>{}</td>", ((display_for_field(getattr(row, f.name), f, empty_value),) for f in fields[1:])
                ),
            )
            for row in rows
        ),
    )
    return format_html('<div id="{}"><table><tr>{}</tr>{}</table></div>', group_id, header, body)


def patient_records_field(model, columns, *, description, url_name, group_id, empty_text):
    """A read-only field of the patient page: the patient's rows of `model` as a `record_table`."""

    @admin.display(description=description)
    def field(model_admin, obj):
        return record_table(
            list(model.objects.filter(patient=obj).only("pk", *columns)),
            model=model,
            columns=columns,
            url_name=url_name,
            group_id=group_id,
            empty_text=empty_text,
            empty_value=model_admin.get_empty_value_display(),
        )

    return field


class PatientWorkspaceAdmin(PatientAdmin):
    """The patient page: summary, visit timeline, charts, adverse events, medications, audit history."""

    list_filter = ["status", "study", "site", CellSourceFilter, InfusionsFilter, OverdueFilter]
    search_fields = ["subject_code", "transplants__lot__lot_number"]
    actions = [export_csv_action]
    change_form_template = "admin/followup/patient/change_form.html"

    def get_urls(self):
        from django.urls import path

        from followup.patient_print import patient_print_view

        view = self.admin_site.admin_view(lambda request, object_id: patient_print_view(self, request, object_id))
        return [path("<path:object_id>/print/", view, name="patients_patient_print"), *super().get_urls()]

    def get_queryset(self, request):
        # The page's summary, timeline and charts read the patient's site (its time zone) and study.
        return super().get_queryset(request).select_related("site", "study")

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return ["summary", "timeline", "charts", *fields, *RECORD_TABLES] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "summary", "timeline", "charts", *RECORD_TABLES] if obj is not None else readonly

    adverse_events = patient_records_field(
        AdverseEvent,
        AE_COLUMNS,
        description=_("adverse events"),
        url_name="admin:followup_adverseevent_change",
        group_id="adverse_events-group",
        empty_text=_("No adverse event recorded."),
    )
    medications = patient_records_field(
        ConcomitantMedication,
        MEDICATION_COLUMNS,
        description=_("concomitant medications"),
        url_name="admin:patients_concomitantmedication_change",
        group_id="medications-group",
        empty_text=_("No medication recorded."),
    )

    @admin.display(description=_("summary"))
    def summary(self, obj):
        infusions = _infusions(obj)
        day0 = day_zero(obj, infusions)
        rows = [
            (_("Site"), f"{obj.site.code} ({obj.site.time_zone})"),
            (
                _("Status"),
                gettext("%(status)s since %(date)s")
                % {"status": obj.get_status_display(), "date": f"{obj.status_date:%Y-%m-%d}"}
                if obj.status_date
                else obj.get_status_display(),
            ),
            (_("Day 0"), day0.isoformat() if day0 else _("not infused yet")),
            (_("Cell source"), infusions[0].lot.get_tissue_source_display() if infusions else "—"),
            (
                _("Infusions"),
                "; ".join(
                    gettext("#%(number)s %(when)s lot %(lot)s, %(dose)s cells/kg × %(weight)s kg")
                    % {
                        "number": t.infusion_number,
                        "when": f"{t.infused_at.astimezone(obj.site.zone):%Y-%m-%d %H:%M}",
                        "lot": t.lot.lot_number,
                        "dose": f"{t.dose_cells_per_kg:,}",
                        "weight": t.weight_kg,
                    }
                    for t in infusions
                )
                or "—",
            ),
        ]
        history = reverse("admin:patients_patient_history", args=[obj.pk])
        rows.append((_("Audit trail"), format_html('<a href="{}">{}</a>', history, _("history of this record"))))
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description=_("visit timeline"))
    def timeline(self, obj):
        # The states from today at the patient's site (read with the patient), each link from one reverse().
        today, link = obj.site.today(), _change_link("admin:followup_visit_change")
        fields = ("pk", "code", "label", "label_zh", "window_start", "window_end", "outcome", "actual_date")
        rows = [
            (link(v.pk), v.code, v.label_shown, f"{v.window_start:%Y-%m-%d}")
            + (f"{v.window_end:%Y-%m-%d}", v.current_state(today).label, v.actual_date or "")
            for v in Visit.objects.filter(patient=obj).only(*fields).order_by("target_date")
        ]
        if not rows:
            return gettext("No visits: the schedule starts with the first infusion.")
        return format_html(
            "<table><tr><th>{}</th><th></th><th>{}</th><th></th><th>{}</th><th>{}</th></tr>{}</table>",
            gettext("visit"),
            gettext("window"),
            gettext("state"),
            gettext("date"),
            format_html_join(
                "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>', rows
            ),
        )

    @admin.display(description=_("results over time"))
    def charts(self, obj):
        figures = patient_charts(patient=obj, infusions=_infusions(obj))
        return format_html_join(
            "",
            '<div style="display:inline-block;max-width:480px">{}</div>',
            ((mark_safe(svg),) for svg in figures.values()),
        )  # noqa: S308 (SVG drawn here)


admin.site.unregister(Patient)
admin.site.register(Patient, PatientWorkspaceAdmin)
