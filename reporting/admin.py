"""Reporting in the admin. Study exports: request one for your sites, follow its progress, download the zip.

The list shows the jobs whose every site is one of the user's sites; the download view checks the same
before it serves a file. Jobs are never edited: the add page ("Export a study") asks for the study only,
and `reporting.exports.export_job_request` creates the job for the user's sites and queues it on commit.

The cohort report's page (a study opened from the list) is here too.
"""

from __future__ import annotations

import threading

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from registry.admin_tools import SiteScopedAdminMixin, StudyPageAdmin
from registry.constants import TissueSource
from registry.models import Site, Study
from reporting import exports, report_page
from reporting.cohort import COMPARISON_LABELS, CohortFilter
from reporting.constants import ExportState
from reporting.models import CohortReport, ExportJob
from reporting.rendering import parse_filter, render_csv

_local = threading.local()


class ExportRequestForm(forms.ModelForm):
    """Choose the study; the export holds your sites of that study."""

    request = None  # set by ExportJobAdmin.get_form

    class Meta:
        model = ExportJob
        fields = ["study"]
        help_texts = {
            "study": _("The export holds the data of your sites in this study, with pseudonymous codes only.")
        }

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        try:
            self.instance = exports.export_job_request(study=self.cleaned_data["study"], user=self.request.user)
        except ValidationError as exc:
            self.add_error("study" if "study" in getattr(exc, "error_dict", {}) else None, exc.messages)


@admin.register(ExportJob)
class ExportJobAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    form = ExportRequestForm

    class Media:
        # Polls each unfinished job's progress (the `progress` view) while the page is open.
        js = ["reporting/export_progress.js"]

    list_display = ["id", "study", "sites", "state", "progress_percent", "requested", "created_at", "download"]
    list_filter = ["state"]
    list_select_related = ["study", "requested_by", "requested_by_key"]
    search_fields = ["study__code"]
    readonly_fields = [
        "study",
        "sites",
        "state",
        "progress_percent",
        "requested",
        "created_at",
        "updated_at",
        "error",
        "files",
        "download",
    ]

    # Scoping and permissions ----------------------------------------------------------------------------

    def get_queryset(self, request):
        return exports.export_jobs_for_user(request.user).select_related("study", "requested_by", "requested_by_key")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "study":
            kwargs["queryset"] = Study.objects.for_user(request.user)
        return super(SiteScopedAdminMixin, self).formfield_for_foreignkey(db_field, request, **kwargs)

    def has_view_permission(self, request, obj=None):
        if not self._is_member(request):
            return False
        return obj is None or exports.export_job_visible_to(obj, request.user)

    def has_add_permission(self, request):
        # Exporting reads data the member already reads; any role of a site may export its data.
        return self._is_member(request)

    def has_change_permission(self, request, obj=None):
        return False

    # Pages ---------------------------------------------------------------------------------------------

    def get_fields(self, request, obj=None):
        return ["study"] if obj is None else self.readonly_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "title": gettext("Export a study")}
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        pass  # the form's validation created the job through the service

    def changelist_view(self, request, extra_context=None):
        # Site codes for the "sites" column, read once per list rather than once per row.
        _local.site_codes = dict(Site.objects.values_list("pk", "code"))
        extra_context = {**(extra_context or {}), "title": gettext("Study exports")}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="reporting_exportjob_download",
        )
        progress = path(
            "<path:object_id>/progress/",
            self.admin_site.admin_view(self.progress_view),
            name="reporting_exportjob_progress",
        )
        return [download, progress, *super().get_urls()]

    def progress_view(self, request, object_id):
        """A job's state and progress as JSON, for the page to update itself; the same scoping as the page."""
        job = self.get_object(request, object_id)
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such export.")
        done = job.state == ExportState.DONE
        return JsonResponse(
            {
                "id": job.pk,
                "state": job.state,
                "state_label": job.get_state_display(),
                "progress": job.progress,
                "finished": job.state in (ExportState.DONE, ExportState.FAILED),
                "download_url": reverse(f"{self.admin_site.name}:reporting_exportjob_download", args=[job.pk])
                if done
                else None,
            }
        )

    def download_view(self, request, object_id):
        """The finished zip of a job whose every site is one of the user's sites; anything else is 404."""
        job = self.get_object(request, object_id)
        if job is None or not self.has_view_permission(request, job):
            raise Http404("No such export.")
        path_ = exports.export_file(job)
        if path_ is None:
            raise Http404("This export is not ready to download.")
        return FileResponse(
            path_.open("rb"),
            as_attachment=True,
            filename=f"{job.study.code}-export-{job.pk}.zip",
            content_type="application/zip",
        )

    # Columns ---------------------------------------------------------------------------------------------

    @admin.display(description=_("sites"))
    def sites(self, obj):
        codes = getattr(_local, "site_codes", None) or {}
        missing = [pk for pk in obj.site_ids if pk not in codes]
        if missing:
            codes = {**codes, **dict(Site.objects.filter(pk__in=missing).values_list("pk", "code"))}
        return ", ".join(codes.get(pk, str(pk)) for pk in obj.site_ids)

    @admin.display(description=_("progress"))
    def progress_percent(self, obj):
        if obj.state in (ExportState.DONE, ExportState.FAILED):
            return f"{obj.progress}%"
        url = reverse(f"{self.admin_site.name}:reporting_exportjob_progress", args=[obj.pk])
        return format_html('<span class="export-progress" data-progress-url="{}">{}%</span>', url, obj.progress)

    @admin.display(description=_("requested by"))
    def requested(self, obj):
        if obj.requested_by_key_id:
            return gettext("API key %(prefix)s…") % {"prefix": obj.requested_by_key.prefix}
        return obj.requested_by or "—"

    @admin.display(description=_("download"))
    def download(self, obj):
        if obj.state != ExportState.DONE:
            return "—"
        url = reverse(f"{self.admin_site.name}:reporting_exportjob_download", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, gettext("Download zip"))

    @admin.display(description=_("files"))
    def files(self, obj):
        rows = (obj.manifest or {}).get("files") or []
        if not rows:
            return "—"
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>SHA-256</th></tr>{}</table>",
            gettext("file"),
            gettext("rows"),
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                ((r.get("name"), r.get("rows"), r.get("sha256")) for r in rows),
            ),
        )


@admin.register(CohortReport)
class CohortReportAdmin(StudyPageAdmin):
    """The study list; opening a study shows its cohort report for the user's sites (HTML, CSV or JSON)."""

    def get_urls(self):
        status = path(
            "<path:object_id>/status/",
            self.admin_site.admin_view(self.status_view),
            name="reporting_cohortreport_status",
        )
        return [status, *super().get_urls()]

    def _question(self, request, object_id):
        """The study (refused outside the user's sites), the user's sites, the filter and its errors."""
        study = self.study_or_refuse(request, object_id)
        sites = list(Site.objects.for_user(request.user).order_by("code"))
        try:
            return study, sites, parse_filter(request.GET), {}
        except ValidationError as exc:
            return study, sites, CohortFilter(), exc.message_dict

    def _status_url(self, request, study, page=None) -> str:
        params = request.GET.copy()
        params.pop("format", None)
        params.pop("since", None)
        if page is not None and page.since:
            params["since"] = f"{page.since:.3f}"  # when the page was drawn: a report taken later is the one it awaits
        url = reverse(f"{self.admin_site.name}:reporting_cohortreport_status", args=[study.pk])
        return f"{url}?{params.urlencode()}" if params else url

    def status_view(self, request, object_id):
        """Whether the report the user's page waits for is ready, as JSON; the key is the user's own."""
        try:
            study, sites, flt, errors = self._question(request, object_id)
        except PermissionDenied:
            raise Http404("No such study.") from None
        if errors:
            raise Http404("No such report.")
        try:
            since = float(request.GET["since"]) if "since" in request.GET else None
        except ValueError:
            raise Http404("No such report.") from None
        return JsonResponse(
            {
                "state": report_page.report_status(
                    study=study, sites=sites, flt=flt, since=since, requester=request.user.pk
                )
            }
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        study, sites, flt, errors = self._question(request, object_id)
        download = request.GET.get("format") in ("json", "csv") and not errors
        page = None
        if download:
            page = report_page.report_download(study=study, sites=sites, flt=flt, requester=request.user.pk)
            if page.report is not None and request.GET["format"] == "json":
                return JsonResponse(page.report, json_dumps_params={"indent": 1})
            if page.report is not None:
                response = HttpResponse(render_csv(page.report), content_type="text/csv")
                response["Content-Disposition"] = f'attachment; filename="cohort-report-{study.code}.csv"'
                return response
            if request.GET["format"] == "json":
                body = {
                    "state": page.state,
                    "detail": page.message,
                    "status_url": self._status_url(request, study, page),
                }
                return JsonResponse(body, status=202 if page.polls else 503)
        elif not errors:
            page = report_page.report_page(study=study, sites=sites, flt=flt, requester=request.user.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Cohort report: %(code)s") % {"code": study.code},
            "opts": self.model._meta,
            "flt": flt,
            "errors": errors,
            "sites": sites,
            "cell_sources": TissueSource.choices,
            "compare_choices": list(COMPARISON_LABELS.items()),
            "page": page,
            "status_url": self._status_url(request, study, page),
        }
        # A download not ready yet answers 202 (503 when it cannot be computed now), with the page's message.
        status = (202 if page.polls else 503) if download else 200
        return TemplateResponse(request, "admin/reporting/cohortreport/report.html", context, status=status)
