from django.contrib import admin

from registry import services
from registry.admin_tools import ScopedAdmin
from registry.models import (
    CellProduct,
    Donor,
    Membership,
    OutcomeSettings,
    ReminderPolicy,
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


class StudySiteInline(admin.TabularInline):
    model = StudySite
    extra = 0
    autocomplete_fields = ["site"]


class VisitDefinitionInline(admin.TabularInline):
    model = VisitDefinition
    extra = 0
    fields = ["code", "label", "offset_days", "window_before_days", "window_after_days"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Study)
class StudyAdmin(ScopedAdmin):
    list_display = ["code", "registration_id", "title", "phase", "status", "target_enrolment"]
    list_filter = ["status", "phase"]
    search_fields = ["code", "registration_id", "title"]
    inlines = [StudySiteInline, OutcomeSettingsInline, ReminderPolicyInline, VisitDefinitionInline]
    superuser_writes_only = True
    reason_on_change = False

    def service_save(self, request, instance, cleaned_data, change):
        study = services.save_validated(instance)
        if not change:
            OutcomeSettings.objects.get_or_create(study=study)
            ReminderPolicy.objects.get_or_create(study=study)
            services.schedule_install_default(study=study)
        return study


@admin.register(VisitDefinition)
class VisitDefinitionAdmin(ScopedAdmin):
    list_display = ["study", "code", "label", "offset_days", "window_before_days", "window_after_days"]
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


@admin.register(Membership)
class MembershipAdmin(ScopedAdmin):
    list_display = ["user", "site", "role", "created_at"]
    list_filter = ["role", "site"]
    search_fields = ["user__username", "site__code"]
    autocomplete_fields = ["user", "site"]
    superuser_writes_only = True
    reason_on_change = False


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
            "ISCT minimal criteria",
            {
                "fields": [
                    "plastic_adherent",
                    "cd105_pct",
                    "cd73_pct",
                    "cd90_pct",
                    "cd45_pct",
                    "cd34_pct",
                    "cd14_or_cd11b_pct",
                    "cd79a_or_cd19_pct",
                    "hla_dr_pct",
                    "trilineage_shown",
                ]
            },
        ),
        ("Lot tests", {"fields": ["viability_pct", "sterility", "mycoplasma", "endotoxin_eu_per_ml", "karyotype"]}),
        ("Release", {"fields": ["release_status", "release_failures_list"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            fieldsets.append(("Change", {"fields": ["reason"]}))
        return fieldsets

    @admin.display(description="Criteria not met")
    def release_failures_list(self, obj):
        return "; ".join(obj.release_failures) or "—"

    def service_save(self, request, instance, cleaned_data, change):
        return services.lot_save(lot=instance, actor=request.user, reason=cleaned_data.get("reason", ""))
