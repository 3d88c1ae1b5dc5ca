"""The import page of the admin: choose a study, give its files, check them (nothing written), then import
them (all or nothing); the empty templates are downloaded from the same page. Thin: `cohort_import` does the
work, for the user's sites only."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext

from intake.constants import ORDER
from intake.models import CohortImport
from intake.services import cohort_import, workbook_template
from registry.admin_tools import SiteScopedAdminMixin
from registry.models import Site

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


@admin.register(CohortImport)
class CohortImportAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """The study list; opening a study shows its import page."""

    list_display = ["code", "registration_id", "title", "status"]
    search_fields = ["code", "registration_id", "title"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        study = self.get_object(request, object_id)
        if study is None or not self.has_view_permission(request, study):
            raise PermissionDenied
        if request.GET.get("template") == "xlsx":
            response = HttpResponse(
                workbook_template(),
                content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            response["Content-Disposition"] = 'attachment; filename="import-template.xlsx"'
            return response
        sites = Site.objects.for_user(request.user, write=True).filter(studies=study).order_by("code")
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Import into %(code)s") % {"code": study.code},
            "opts": self.model._meta,
            "study": study,
            "sites": sites,
            "kinds": ORDER,
        }
        if request.method == "POST":
            context.update(self._run(request, study, sites))
        return TemplateResponse(request, "admin/intake/cohortimport/import.html", context)

    def _run(self, request, study, sites) -> dict:
        uploads = request.FILES.getlist("files")
        if not uploads:
            return {"error": gettext("Choose the files to import.")}
        if sum(upload.size for upload in uploads) > MAX_UPLOAD_BYTES:
            return {"error": gettext("The files are larger than 50 MB together; import them in parts.")}
        site = sites.filter(code=request.POST.get("site", "")).first()
        if request.POST.get("site") and site is None:
            raise PermissionDenied
        dry_run = "import" not in request.POST
        report = cohort_import(
            study=study,
            files=[(upload.name, upload.read()) for upload in uploads],
            site=site,
            actor=request.user,
            reason=request.POST.get("reason", ""),
            dry_run=dry_run,
        )
        counts = [(kind, sorted(report.counts[kind].items())) for kind in ORDER if report.counts.get(kind)]
        return {"report": report, "counts": counts, "dry_run": dry_run, "reason": request.POST.get("reason", "")}
