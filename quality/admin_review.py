"""Admin pages of source verification, signatures, locks and freezes, the data quality dashboard, and the lock
awareness of the patient, visit and adverse event pages (read only while locked, with the reason shown)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from followup.models import AdverseEvent, Visit
from patients.models import Patient
from quality import selectors
from quality.models import Freeze, Lock, RecordKind, Signature, SigningFailure, SourceVerification
from quality.services import freezes, review
from registry.admin_tools import SiteScopedAdminMixin, request_memberships, request_memo
from registry.constants import Role
from registry.models import Study

RECORD_MODELS = {RecordKind.VISIT: Visit, RecordKind.ADVERSE_EVENT: AdverseEvent, RecordKind.PATIENT: Patient}


def _record(request, kind: str, pk: int):
    """The visit, adverse event or patient `pk`, if the user's sites hold it (404 otherwise)."""
    model = RECORD_MODELS.get(kind)
    if model is None:
        raise Http404
    return get_object_or_404(
        model.objects.for_user(request.user).select_related("patient__site" if model is not Patient else "site"), pk=pk
    )


def _record_url(record) -> str:
    meta = record._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[record.pk])


def _label(record) -> str:
    parts = review.record_parts(record)
    patient = parts["patient"]
    if parts["kind"] == RecordKind.VISIT:
        return f"{patient.subject_code} – {record.code} {record.label_shown}"
    if parts["kind"] == RecordKind.ADVERSE_EVENT:
        return f"{patient.subject_code} – {record.term} ({record.onset_date.isoformat()})"
    return gettext("%(code)s – whole casebook") % {"code": patient.subject_code}


# Forms --------------------------------------------------------------------------------------------------


class SignForm(forms.Form):
    password = forms.CharField(
        label=_("Your password"), widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}), strip=False
    )
    otp_token = forms.CharField(label=_("Authenticator code"), required=False, max_length=8)


class ReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))


class VerifyForm(forms.Form):
    fields = forms.MultipleChoiceField(
        label=_("Fields verified"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Tick none to verify the whole form."),
    )


class StudyLockForm(ReasonForm):
    study = forms.ModelChoiceField(label=_("Study"), queryset=Study.objects.none())
    field_order = ["study", "reason"]


class FreezeForm(forms.Form):
    study = forms.ModelChoiceField(label=_("Study"), queryset=Study.objects.none())
    name = forms.CharField(label=_("Name"), max_length=100)


def _service_errors(form, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for key, errors in exc.error_dict.items():
            form.add_error(key if key in form.fields else None, errors)
    else:
        form.add_error(None, exc)


# Pages --------------------------------------------------------------------------------------------------


class _QualityPages:
    """Shared by the pages below: rendering one form page of the admin."""

    def _page(self, request, *, title: str, form, intro: str = "", meaning: str = "", record=None, extra=None):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "form": form,
            "intro": intro,
            "meaning": meaning,
            "record": record,
            "record_url": _record_url(record) if record is not None else "",
            "opts": self.model._meta,
            **(extra or {}),
        }
        return TemplateResponse(request, "admin/quality/form_page.html", context)


class _ReadOnlyScoped(SiteScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SourceVerification)
class SourceVerificationAdmin(_QualityPages, _ReadOnlyScoped):
    list_display = ["__str__", "kind", "fields", "verified_by", "verified_at", "cleared_at", "cleared_reason"]
    list_filter = ["kind", ("cleared_at", admin.EmptyFieldListFilter), "patient__site", "patient__study"]
    list_select_related = ["patient", "visit", "verified_by"]
    search_fields = ["patient__subject_code"]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("verify/<str:kind>/<int:pk>/", view(self.verify_view), name="quality_sourceverification_verify"),
            path("dashboard/", view(self.dashboard_view), name="quality_dashboard"),
            *super().get_urls(),
        ]

    def verify_view(self, request, kind, pk):
        record = _record(request, kind, pk)
        form = VerifyForm(request.POST if request.method == "POST" else None)
        form.fields["fields"].choices = review.sdv_field_choices(record)
        if request.method == "POST" and form.is_valid():
            try:
                review.sdv_mark(record=record, actor=request.user, fields=form.cleaned_data["fields"])
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Verified against source: %(record)s.") % {"record": _label(record)})
                return HttpResponseRedirect(_record_url(record))
        return self._page(
            request,
            title=gettext("Verify against source: %(record)s") % {"record": _label(record)},
            form=form,
            intro=gettext(
                "Mark this record as checked against the source documents (the whole form, or the fields ticked). A later change clears the mark."
            ),
            record=record,
        )

    def dashboard_view(self, request):
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Data quality by site and study"),
            "rows": selectors.dashboard(user=request.user),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/quality/dashboard.html", context)


@admin.register(Signature)
class SignatureAdmin(_QualityPages, _ReadOnlyScoped):
    list_display = ["__str__", "kind", "printed_name", "signed_at", "meaning", "voided_at", "void_reason"]
    list_filter = ["kind", ("voided_at", admin.EmptyFieldListFilter), "patient__site", "patient__study"]
    list_select_related = ["patient", "visit"]
    search_fields = ["patient__subject_code", "printed_name"]
    readonly_fields = ["void_link"]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("sign/<str:kind>/<int:pk>/", view(self.sign_view), name="quality_signature_sign"),
            path("<int:pk>/void/", view(self.void_view), name="quality_signature_void"),
            *super().get_urls(),
        ]

    @admin.display(description=_("unlock"))
    def void_link(self, obj):
        if obj.voided_at is not None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:quality_signature_void", args=[obj.pk]),
            gettext("Void the signature (unlock)"),
        )

    def sign_view(self, request, kind, pk):
        record = _record(request, kind, pk)
        form = SignForm(request.POST if request.method == "POST" else None)
        needs_code = TOTPDevice.objects.devices_for_user(request.user, confirmed=True).exists()
        if not needs_code:
            del form.fields["otp_token"]
        if request.method == "POST" and form.is_valid():
            try:
                review.signature_sign(
                    record=record,
                    actor=request.user,
                    password=form.cleaned_data["password"],
                    otp_token=form.cleaned_data.get("otp_token", ""),
                )
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Signed: %(record)s.") % {"record": _label(record)})
                return HttpResponseRedirect(_record_url(record))
        return self._page(
            request,
            title=gettext("Sign: %(record)s") % {"record": _label(record)},
            form=form,
            intro=gettext("You sign as %(name)s. Re-enter your password to sign; the signed record is locked.")
            % {"name": review.printed_name(request.user)},
            meaning=review.signature_meaning(review.record_parts(record)["kind"]),
            record=record,
        )

    def void_view(self, request, pk):
        signature = get_object_or_404(Signature.objects.for_user(request.user).select_related("patient"), pk=pk)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                review.signature_void(signature=signature, reason=form.cleaned_data["reason"], actor=request.user)
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Signature voided; the record can be changed again."))
                return HttpResponseRedirect(reverse("admin:quality_signature_changelist"))
        return self._page(request, title=gettext("Void signature: %(signature)s") % {"signature": signature}, form=form)


@admin.register(SigningFailure)
class SigningFailureAdmin(_ReadOnlyScoped):
    """Wrong passwords and codes given to sign, kept for the audit; the row that locked signing says until when."""

    list_display = ["failed_at", "user", "kind", "patient", "field", "locks_until"]
    list_filter = ["field", "kind", "patient__site"]
    list_select_related = ["user", "patient"]
    search_fields = ["user__username", "patient__subject_code"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Lock)
class LockAdmin(_QualityPages, _ReadOnlyScoped):
    list_display = [
        "__str__",
        "study",
        "site",
        "patient",
        "reason",
        "locked_by",
        "locked_at",
        "released_at",
        "release_reason",
        "unlock_link",
    ]
    list_filter = [("released_at", admin.EmptyFieldListFilter), "site", "study"]
    list_select_related = ["study", "site", "patient", "locked_by"]
    readonly_fields = ["unlock_link"]

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("patient/<int:pk>/", view(self.lock_patient_view), name="quality_lock_patient"),
            path("study/", view(self.lock_study_view), name="quality_lock_study"),
            path("<int:pk>/unlock/", view(self.unlock_view), name="quality_lock_unlock"),
            *super().get_urls(),
        ]

    @admin.display(description=_("unlock"))
    def unlock_link(self, obj):
        if obj.released_at is not None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:quality_lock_unlock", args=[obj.pk]), gettext("Unlock")
        )

    def changelist_view(self, request, extra_context=None):
        extra = {"lock_study_url": reverse("admin:quality_lock_study")}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def lock_patient_view(self, request, pk):
        patient = _record(request, RecordKind.PATIENT, pk)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                review.lock_patient(patient=patient, reason=form.cleaned_data["reason"], actor=request.user)
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Patient %(code)s locked.") % {"code": patient.subject_code})
                return HttpResponseRedirect(_record_url(patient))
        return self._page(
            request,
            title=gettext("Lock patient %(code)s") % {"code": patient.subject_code},
            form=form,
            intro=gettext(
                "While locked, every change to the patient and their records is refused, through every door."
            ),
            record=patient,
        )

    def lock_study_view(self, request):
        form = StudyLockForm(request.POST if request.method == "POST" else None)
        form.fields["study"].queryset = Study.objects.for_user(request.user)
        if request.method == "POST" and form.is_valid():
            try:
                locks = review.lock_study(
                    study=form.cleaned_data["study"], reason=form.cleaned_data["reason"], actor=request.user
                )
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Study locked at %(count)d site(s).") % {"count": len(locks)})
                return HttpResponseRedirect(reverse("admin:quality_lock_changelist"))
        return self._page(
            request,
            title=gettext("Lock a study"),
            form=form,
            intro=gettext("Locks the study at each of your sites where you are a data manager."),
        )

    def unlock_view(self, request, pk):
        lock = get_object_or_404(Lock.objects.for_user(request.user), pk=pk)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                review.lock_release(lock=lock, reason=form.cleaned_data["reason"], actor=request.user)
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Unlocked; the signatures it covered are void."))
                return HttpResponseRedirect(reverse("admin:quality_lock_changelist"))
        return self._page(
            request,
            title=gettext("Unlock: %(lock)s") % {"lock": lock},
            form=form,
            intro=gettext("Unlocking voids every signature of the records the lock covered."),
        )


@admin.register(Freeze)
class FreezeAdmin(_QualityPages, admin.ModelAdmin):
    list_display = ["__str__", "frozen_at", "frozen_by", "export_sha256", "report_sha256", "downloads"]
    readonly_fields = [
        "study",
        "name",
        "frozen_at",
        "frozen_by",
        "export_sha256",
        "report_sha256",
        "checksums",
        "downloads",
    ]
    fields = readonly_fields

    def get_queryset(self, request):
        return freezes.freezes_for_user(request.user).select_related("study", "frozen_by")

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        # Any writing member (cached for the request); the service refuses whoever is not a data manager.
        return SiteScopedAdminMixin._is_member(self, request, write=True)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/export/", view(self.export_view), name="quality_freeze_export"),
            path("<int:pk>/report/", view(self.report_view), name="quality_freeze_report"),
            *super().get_urls(),
        ]

    @admin.display(description=_("files"))
    def downloads(self, obj):
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:quality_freeze_export", args=[obj.pk]),
            gettext("export (zip)"),
            reverse("admin:quality_freeze_report", args=[obj.pk]),
            gettext("cohort report (CSV)"),
        )

    @admin.display(description=_("checksums"))
    def checksums(self, obj):
        checked = freezes.freeze_verify(obj)
        ok, bad = gettext("unchanged"), gettext("CHANGED OR MISSING")
        return gettext("export: %(export)s; report: %(report)s") % {
            "export": ok if checked["export"] else bad,
            "report": ok if checked["report"] else bad,
        }

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = FreezeForm(request.POST if request.method == "POST" else None)
        form.fields["study"].queryset = Study.objects.for_user(request.user)
        if request.method == "POST" and form.is_valid():
            try:
                freeze = freezes.freeze_create(
                    study=form.cleaned_data["study"], name=form.cleaned_data["name"], actor=request.user
                )
            except PermissionDenied as exc:
                form.add_error(None, str(exc))
            except ValidationError as exc:
                _service_errors(form, exc)
            else:
                messages.success(request, gettext("Frozen: %(freeze)s.") % {"freeze": freeze})
                return HttpResponseRedirect(reverse("admin:quality_freeze_change", args=[freeze.pk]))
        return self._page(
            request,
            title=gettext("Freeze a study"),
            form=form,
            intro=gettext(
                "The export and the cohort report are kept as they are now, with their SHA-256, for analysis later."
            ),
        )

    def _freeze(self, request, pk) -> Freeze:
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def export_view(self, request, pk):
        freeze = self._freeze(request, pk)
        response = HttpResponse(freezes.freeze_export_bytes(freeze), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{freeze.study.code}-freeze-{freeze.pk}.zip"'
        return response

    def report_view(self, request, pk):
        freeze = self._freeze(request, pk)
        response = HttpResponse(freeze.report_csv.encode(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{freeze.study.code}-freeze-{freeze.pk}-report.csv"'
        return response


# The patient, visit and adverse event pages: read only while locked, with the reason and the actions ------


def _owners(obj) -> dict:
    if isinstance(obj, Patient):
        return {"patient_id": obj.pk, "study_id": obj.study_id}
    return {"patient_id": obj.patient_id, "study_id": obj.patient.study_id}


def _lock_state(obj):
    return review.write_refusal(obj, **_owners(obj))


def _actions(request, obj) -> list[tuple[str, str]]:
    kind = review.record_parts(obj)["kind"]
    site_id = obj.site_id if isinstance(obj, Patient) else obj.patient.site_id
    user = request.user
    memberships = request_memberships(request)
    links = []
    if review.has_role(user, site_id, Role.MONITOR, memberships=memberships):
        links.append(
            (reverse("admin:quality_sourceverification_verify", args=[kind, obj.pk]), gettext("Verify against source"))
        )
    if review.has_role(user, site_id, Role.INVESTIGATOR, superuser=False, memberships=memberships):
        label = gettext("Sign the casebook") if kind == RecordKind.PATIENT else gettext("Sign")
        links.append((reverse("admin:quality_signature_sign", args=[kind, obj.pk]), label))
    if isinstance(obj, Patient) and review.has_role(user, site_id, Role.DATA_MANAGER, memberships=memberships):
        links.append((reverse("admin:quality_lock_patient", args=[obj.pk]), gettext("Lock the patient")))
    return links


def make_lock_aware(model_admin) -> None:
    """Wrap a registered ModelAdmin: a locked or signed object cannot be changed (its page is read only and
    says why), and the page offers the data quality actions the user's roles allow."""
    has_change = model_admin.has_change_permission
    change_view = model_admin.change_view

    def has_change_permission(request, obj=None):
        if obj is not None and request_memo(request, ("lock", obj._meta.label, obj.pk), lambda: _lock_state(obj)):
            return False
        return has_change(request, obj)

    get_object = model_admin.get_object

    def get_object_once(request, object_id, from_field=None):
        # A page shown (GET) reads its object once: for the data quality notes here and for Django's form.
        if request.method != "GET":
            return get_object(request, object_id, from_field)
        return request_memo(
            request,
            ("object", model_admin.model._meta.label, object_id, from_field),
            lambda: get_object(request, object_id, from_field),
        )

    def lock_aware_change_view(request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            obj = model_admin.get_object(request, object_id)
            if obj is not None and model_admin.has_view_permission(request, obj):
                # The lock and the status in one query; the lock is then known to has_change_permission.
                read, verified = review.page_state(obj, **_owners(obj))
                refusal = request_memo(request, ("lock", obj._meta.label, obj.pk), lambda: read)
                if refusal:
                    messages.warning(request, gettext("Read only: %(why)s") % {"why": refusal})
                if verified:
                    messages.info(request, gettext("Verified against source."))
                links = _actions(request, obj)
                if links:
                    joined = format_html(
                        " · ".join('<a href="{}" class="quality-action">{}</a>' for _ in links),
                        *[x for link in links for x in link],
                    )
                    messages.info(request, format_html("{} {}", gettext("Data quality:"), joined))
        return change_view(request, object_id, form_url, extra_context)

    model_admin.has_change_permission = has_change_permission
    model_admin.get_object = get_object_once
    model_admin.change_view = lock_aware_change_view


for _model in (Patient, Visit, AdverseEvent):
    if admin.site.is_registered(_model):
        make_lock_aware(admin.site.get_model_admin(_model))
