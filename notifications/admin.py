"""The ledger's admin pages: every e-mail item with its state and error, and each person's e-mail preferences."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from notifications import ledger, selectors
from notifications.models import Notification, NotificationPreference
from registry.admin_tools import SiteScopedAdminMixin


class TroubleFilter(admin.SimpleListFilter):
    """Failed items, and items still retrying more than an hour after their first attempt."""

    title = _("e-mail trouble")
    parameter_name = "trouble"

    def lookups(self, request, model_admin):
        return [
            (selectors.FAILED, _("Failed")),
            (selectors.RETRYING, _("Retrying for more than an hour")),
        ]

    def queryset(self, request, queryset):
        if self.value() in (selectors.FAILED, selectors.RETRYING):
            return queryset.filter(selectors.trouble_filter(self.value()))
        return queryset


# The words a ledger row's stage is made of (notifications/ledger.py), in the user's language.
STAGE_WORDS = {
    "upcoming": _("Window opens soon"),
    "due": _("Window open"),
    "closing": _("Window closes soon"),
    "overdue": _("Overdue"),
    "initial": _("initial report"),
    "complete": _("complete report"),
    "late": _("late"),
}


@admin.register(Notification)
class NotificationAdmin(SiteScopedAdminMixin, admin.ModelAdmin):
    """The ledger: every e-mail item, its state and its error; failed or cancelled items can be resent."""

    list_display = [
        "created_at",
        "kind",
        "object_id",
        "stage_display",
        "recipient_email",
        "site",
        "state",
        "attempts",
        "send_after",
        "sent_at",
        "last_error",
        "message_id",
    ]
    list_filter = [TroubleFilter, "state", "kind", "site"]
    search_fields = ["recipient_email", "stage"]
    list_select_related = ["site"]
    actions = ["resend"]

    readonly_fields = ["stage_display"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return [
            "stage_display" if f == "stage" else f for f in super().get_fields(request, obj) if f != "stage_display"
        ]

    @admin.display(description=_("stage"), ordering="stage")
    def stage_display(self, obj):
        return " ".join(str(STAGE_WORDS.get(word, word)) for word in obj.stage.split("-"))

    @admin.action(description=_("Resend the selected failed, cancelled or retrying items (if they still apply)"))
    def resend(self, request, queryset):
        done, refused = 0, []
        for row in queryset:
            try:
                ledger.notification_resend(notification=row, actor=request.user)
                done += 1
            except ValidationError as exc:
                refused.append(f"{row.key}: {'; '.join(exc.messages)}")
        self.message_user(request, _("%(count)d item(s) queued again.") % {"count": done})
        for line in refused:
            self.message_user(request, line, level=messages.WARNING)


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    """Everyone edits their own e-mail preferences; superusers see all."""

    list_display = ["user", "language", "digest", "paused_until", "unsubscribed"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if request.user.is_superuser else qs.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return [] if request.user.is_superuser else ["user"]

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk}

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser:
            obj.user = request.user
        super().save_model(request, obj, form, change)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_add_permission(self, request):
        return self.has_module_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.has_module_permission(request) and (
            obj is None or request.user.is_superuser or obj.user_id == request.user.pk
        )

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)
