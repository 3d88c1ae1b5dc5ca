from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.utils.html import format_html
from django.utils.translation import gettext_lazy
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from core.forms import PlainTextFormMixin
from registry import services, two_factor
from registry.admin_tools import ScopedAdmin, ScopedReadOnlyInlineMixin, is_data_manager
from registry.api_keys import api_key_issue, api_key_revoke
from registry.constants import ISCT_TEST_FIELDS, LOT_TEST_FIELDS, Role
from registry.models import (
    ApiKey,
    CellProduct,
    Donor,
    Membership,
    OutcomeSettings,
    ReminderPolicy,
    SecondFactorEvent,
    Site,
    Study,
    StudySite,
    VisitDefinition,
)


@admin.register(Site)
class SiteAdmin(ScopedAdmin):
    list_display = ["code", "name", "country", "time_zone"]
    search_fields = ["code", "name"]
    superuser_writes_only = True
    reason_on_change = False


class OutcomeSettingsInline(admin.StackedInline):
    model = OutcomeSettings
    can_delete = False
    extra = 0


class ReminderPolicyInline(admin.StackedInline):
    model = ReminderPolicy
    can_delete = False
    extra = 0


class StudySiteInline(ScopedReadOnlyInlineMixin, admin.TabularInline):
    """The sites of the study, read only: a site is added or removed on its participation page, with a reason."""

    model = StudySite
    extra = 0
    fields = ["site", "activated_on", "removed_on"]
    readonly_fields = fields
    show_change_link = True


class VisitDefinitionInline(ScopedReadOnlyInlineMixin, admin.TabularInline):
    model = VisitDefinition
    extra = 0
    fields = ["code", "label_display", "offset_days", "window_before_days", "window_after_days"]
    readonly_fields = fields
    show_change_link = True

    @admin.display(description=_("label"))
    def label_display(self, obj):
        return obj.label_shown


@admin.register(Study)
class StudyAdmin(ScopedAdmin):
    list_display = ["code", "registration_id", "title", "phase", "status", "target_enrolment"]
    list_filter = ["status", "phase"]
    search_fields = ["code", "registration_id", "title"]
    inlines = [StudySiteInline, OutcomeSettingsInline, ReminderPolicyInline, VisitDefinitionInline]
    superuser_writes_only = True

    def service_save(self, request, instance, cleaned_data, change):
        return services.study_save(study=instance, reason=cleaned_data.get("reason", ""), actor=request.user)


@admin.register(StudySite)
class StudySiteAdmin(ScopedAdmin):
    """A site's participation in a study: added, removed (the day it left) or added back, each with a reason."""

    list_display = ["study", "site", "activated_on", "removed_on"]
    list_filter = ["study", "site"]
    superuser_writes_only = True

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "reason"]
        return [*fields, "reason"]

    def get_readonly_fields(self, request, obj=None):
        return ["study", "site"] if obj is not None else []

    def service_save(self, request, instance, cleaned_data, change):
        return services.study_site_save(link=instance, reason=cleaned_data.get("reason", ""), actor=request.user)


@admin.register(VisitDefinition)
class VisitDefinitionAdmin(ScopedAdmin):
    list_display = ["study", "code", "label_display", "offset_days", "window_before_days", "window_after_days"]
    list_filter = ["study"]
    superuser_writes_only = True
    reason_on_change = False

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if request.user.is_superuser else qs.filter(study__in=Study.objects.for_user(request.user))

    def has_view_permission(self, request, obj=None):
        return self._is_member(request)

    def service_save(self, request, instance, cleaned_data, change):
        return services.visit_definition_save(definition=instance)

    @admin.display(description=_("label"), ordering="label")
    def label_display(self, obj):
        return obj.label_shown


@admin.register(Membership)
class MembershipAdmin(ScopedAdmin):
    list_display = ["user", "site", "role", "created_at"]
    list_filter = ["role", "site"]
    search_fields = ["user__username", "site__code"]
    autocomplete_fields = ["user", "site"]
    superuser_writes_only = True
    reason_on_change = False
    actions = ["reset_second_factor"]

    @admin.action(description=gettext_lazy("Reset two-factor sign-in of the selected people"))
    def reset_second_factor(self, request, queryset):
        """A data manager of the person's site (or a superuser), e.g. after a lost phone; audited
        (registry/two_factor.py)."""
        done, refused = [], []
        for user in {membership.user for membership in queryset.select_related("user")}:
            try:
                two_factor.second_factor_reset(
                    actor=request.user, user=user, reason=_("Reset from the memberships list")
                )
                done.append(user.get_username())
            except PermissionDenied:
                refused.append(user.get_username())
        if done:
            names = ", ".join(sorted(done))
            messages.success(
                request,
                _("Two-factor sign-in reset for: %(names)s. They set it up again at their next sign-in.")
                % {"names": names},
            )
        if refused:
            names = ", ".join(sorted(refused))
            messages.error(
                request, _("Not reset (only a data manager of their site may): %(names)s") % {"names": names}
            )


@admin.register(Donor)
class DonorAdmin(ScopedAdmin):
    list_display = ["code", "study", "site", "relation", "sex", "age_at_donation"]
    list_filter = ["relation", "study", "site"]
    search_fields = ["code"]

    def service_save(self, request, instance, cleaned_data, change):
        return services.donor_save(donor=instance, actor=request.user, reason=cleaned_data.get("reason", ""))


@admin.register(CellProduct)
class CellProductAdmin(ScopedAdmin):
    list_display = [
        "lot_number",
        "study",
        "site",
        "tissue_source",
        "origin",
        "passage_number",
        "expires_on",
        "release_status",
    ]
    list_filter = ["release_status", "tissue_source", "origin", "study", "site"]
    search_fields = ["lot_number", "donor__code"]
    readonly_fields = ["release_status", "release_failures_list"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "lot_number",
                    "study",
                    "site",
                    "donor",
                    "tissue_source",
                    "origin",
                    "passage_number",
                    "cryopreserved_on",
                    "expires_on",
                    "cells_per_unit",
                    "units",
                ]
            },
        ),
        (
            _("ISCT minimal criteria"),
            {"fields": list(ISCT_TEST_FIELDS)},
        ),
        (_("Lot tests"), {"fields": list(LOT_TEST_FIELDS)}),
        (_("Release"), {"fields": ["release_status", "release_failures_list"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append((_("Change"), {"fields": ["reason"]}))
        return fieldsets

    @admin.display(description=_("Criteria not met"))
    def release_failures_list(self, obj):
        return "; ".join(obj.release_failures) or "—"

    def service_save(self, request, instance, cleaned_data, change):
        return services.lot_save(lot=instance, actor=request.user, reason=cleaned_data.get("reason", ""))


def _key_managed_sites(user):
    """Sites whose API keys `user` may manage: all for superusers, else where they are data manager."""
    if user.is_superuser:
        return Site.objects.all()
    return Site.objects.filter(memberships__user=user, memberships__role=Role.DATA_MANAGER).distinct()


class ManagedSiteFilter(admin.RelatedFieldListFilter):
    """The partner keys' site filter: the sites whose keys the user manages, not every site of the registry."""

    def field_choices(self, field, request, model_admin):
        return [(site.pk, str(site)) for site in _key_managed_sites(request.user).order_by("code")]


class ApiKeyIssueForm(PlainTextFormMixin, forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["site", "name", "scope", "can_write_lots", "expires_at"]

    def clean_name(self):
        # The key is issued by `api_key_issue` after the form is valid: its text rule is shown here, beside the field.
        name = self.cleaned_data["name"]
        refused = services.plain_text_errors(ApiKey(name=name))
        if refused:
            raise forms.ValidationError(refused["name"])
        return name


@admin.register(ApiKey)
class ApiKeyAdmin(SimpleHistoryAdmin):
    """Partner credentials: issued here (the secret is shown once), revoked with an action."""

    form = ApiKeyIssueForm
    list_display = ["prefix", "name", "site", "scope", "can_write_lots", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["scope", ("site", ManagedSiteFilter)]
    search_fields = ["prefix", "name"]
    actions = ["revoke"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(site__in=_key_managed_sites(request.user))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "site":
            kwargs["queryset"] = _key_managed_sites(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["site", "name", "scope", "can_write_lots", "expires_at", "prefix", "revoked_at", "last_used_at"]

    def _manages(self, request) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        # A data manager of any site manages that site's keys (the memberships read once per request).
        return _key_managed_sites(user).exists() if user.is_superuser else is_data_manager(request)

    def has_module_permission(self, request):
        return self._manages(request)

    def has_view_permission(self, request, obj=None):
        return self._manages(request) and (
            obj is None or _key_managed_sites(request.user).filter(pk=obj.site_id).exists()
        )

    has_add_permission = _manages

    def has_change_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        key, raw = api_key_issue(
            site=form.cleaned_data["site"],
            name=form.cleaned_data["name"],
            scope=form.cleaned_data["scope"],
            expires_at=form.cleaned_data["expires_at"],
            can_write_lots=form.cleaned_data["can_write_lots"],
        )
        obj.pk = key.pk
        self.message_user(
            request,
            format_html(
                "API key for {}: <code>{}</code> — copy it now; it is not stored and cannot be shown again.",
                key.site.code,
                raw,
            ),
            level=messages.WARNING,
        )

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")


@admin.register(SecondFactorEvent)
class SecondFactorEventAdmin(admin.ModelAdmin):
    """The audit of two-factor sign-in (set up, new backup codes, reset), read only: superusers see all, data
    managers the people of their sites."""

    list_display = ["at", "username", "action", "actor", "reason"]
    list_filter = ["action"]
    search_fields = ["username"]

    def get_queryset(self, request):
        return two_factor.second_factor_events_for(request.user)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser:
            return True
        # Asked for the app list and again for the model's permissions: the memberships read once per request.
        return is_data_manager(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
