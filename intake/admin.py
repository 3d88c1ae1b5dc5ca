"""The import page of the admin: choose a study, give its files, check them (nothing written), then import
them (all or nothing); the empty templates are downloaded from the same page. A check or import is a job run
by a worker (`intake.services.jobs`); its page shows the progress while it runs, then the report. Thin: the
services do the work, as the user, for the user's sites only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext

from intake.constants import ORDER, ImportState
from intake.models import CohortImport
from intake.services import (
    import_job_from_check,
    import_job_progress,
    import_job_request,
    import_jobs_for_user,
    import_uploads_read,
    workbook_template,
)
from registry.admin_tools import StudyPageAdmin
from registry.models import Site

RECENT_JOBS = 10


@admin.register(CohortImport)
class CohortImportAdmin(StudyPageAdmin):
    """The study list; opening a study shows its import page."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/jobs/<int:job_id>/", view(self.job_view), name="intake_cohortimport_job"),
            path(
                "<path:object_id>/jobs/<int:job_id>/progress/",
                view(self.progress_view),
                name="intake_cohortimport_job_progress",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        study = self.study_or_refuse(request, object_id)
        if request.GET.get("template") == "xlsx":
            response = HttpResponse(
                workbook_template(),
                content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
            response["Content-Disposition"] = 'attachment; filename="import-template.xlsx"'
            return response
        sites = Site.objects.for_user(request.user, write=True).filter(studies=study).order_by("code")
        error = ""
        if request.method == "POST":
            site = next((s for s in sites if s.code == request.POST.get("site")), None)
            if request.POST.get("site") and site is None:
                raise PermissionDenied
            try:
                job = import_job_request(
                    study=study,
                    user=request.user,
                    files=import_uploads_read(request.FILES.getlist("files")),
                    site=site,
                    reason=request.POST.get("reason", ""),
                    dry_run="import" not in request.POST,
                )
            except ValidationError as exc:
                error = " ".join(exc.messages)
            else:
                return HttpResponseRedirect(self._job_url(study, job))
        jobs = import_jobs_for_user(request.user).filter(study=study).defer("report", "error")[:RECENT_JOBS]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Import into %(code)s") % {"code": study.code},
            "opts": self.model._meta,
            "study": study,
            "sites": sites,
            "kinds": ORDER,
            "error": error,
            "reason": request.POST.get("reason", ""),
            "jobs": [(job, self._job_url(study, job)) for job in jobs],
        }
        return TemplateResponse(request, "admin/intake/cohortimport/import.html", context)

    def job_view(self, request, object_id, job_id):
        study = self.study_or_refuse(request, object_id)
        job = get_object_or_404(import_jobs_for_user(request.user).filter(study=study), pk=job_id)
        if request.method == "POST":
            try:
                job = import_job_from_check(check=job, user=request.user)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            return HttpResponseRedirect(self._job_url(study, job))
        report = job.report or {}
        outcomes = {"created": gettext("created"), "changed": gettext("changed"), "unchanged": gettext("unchanged")}
        counts = [
            (kind.label, [(outcomes.get(what, what), n) for what, n in sorted(report["counts"][kind].items())])
            for kind in ORDER
            if report.get("counts", {}).get(kind)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Import into %(code)s") % {"code": study.code},
            "opts": self.model._meta,
            "study": study,
            "job": job,
            "progress": import_job_progress(job),
            "progress_url": reverse("admin:intake_cohortimport_job_progress", args=[study.pk, job.pk]),
            "import_page": reverse("admin:intake_cohortimport_change", args=[study.pk]),
            "report": report,
            "counts": counts,
            "can_import": job.dry_run
            and job.state == ImportState.DONE
            and not report.get("problems")
            and job.imported_as_id is None
            and job.files.exists(),
            "imported_url": self._job_url(study, job.imported_as) if job.imported_as_id else "",
        }
        return TemplateResponse(request, "admin/intake/cohortimport/job.html", context)

    def progress_view(self, request, object_id, job_id):
        study = self.study_or_refuse(request, object_id)
        job = get_object_or_404(import_jobs_for_user(request.user).filter(study=study), pk=job_id)
        return JsonResponse(import_job_progress(job))

    @staticmethod
    def _job_url(study, job) -> str:
        return reverse("admin:intake_cohortimport_job", args=[study.pk, job.pk])
