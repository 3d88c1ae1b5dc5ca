from django.contrib import admin

from followup.constants import VisitState
from followup.models import Visit
from registry.admin_tools import ScopedAdmin


class VisitStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return VisitState.choices

    def queryset(self, request, queryset):
        if self.value() in VisitState.values:
            return queryset.filter(state=self.value())
        return queryset


@admin.register(Visit)
class VisitAdmin(ScopedAdmin):
    list_display = [
        "patient",
        "code",
        "label",
        "target_date",
        "window_start",
        "window_end",
        "state_display",
        "actual_date",
    ]
    list_filter = [VisitStateFilter, "code", "patient__site", "patient__study"]
    search_fields = ["patient__subject_code"]
    list_select_related = ["patient"]
    date_hierarchy = "target_date"
    readonly_fields = [
        "patient",
        "definition",
        "code",
        "label",
        "target_date",
        "window_start",
        "window_end",
        "outcome",
        "actual_date",
        "outcome_reason",
        "deviation_reason",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).with_state()

    @admin.display(description="state", ordering="state")
    def state_display(self, obj):
        return VisitState(obj.state).label

    def has_add_permission(self, request):
        return False
