"""The registry's admin site: its home page is the coordinator's worklist; two-factor sign-in when required."""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.utils.translation import gettext_lazy as _
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite


class RegistryAdminSite(admin.AdminSite):
    site_header = _("MSCT registry")
    site_title = _("MSCT registry")
    index_title = _("Worklist")
    index_template = "admin/registry_index.html"
    # The registry has no public site: no "View site" link in the header (the home page is the worklist).
    site_url = None

    @property
    def requires_second_factor(self) -> bool:
        return getattr(settings, "REGISTRY_REQUIRE_2FA", False)

    @property
    def login_form(self):
        return OTPAdminAuthenticationForm if self.requires_second_factor else AdminAuthenticationForm

    @property
    def login_template(self):
        return OTPAdminSite.login_template if self.requires_second_factor else None

    def has_permission(self, request):
        allowed = super().has_permission(request)
        if allowed and self.requires_second_factor:
            return request.user.is_verified()
        return allowed

    def index(self, request, extra_context=None):
        from followup.selectors import worklist
        from quality.selectors import dashboard, worklist_queries

        extra = {}
        if request.user.is_active:
            extra = {"worklist": worklist(user=request.user), "open_queries": worklist_queries(user=request.user)}
            extra["email_trouble"] = email_trouble_of(request)
            extra["quality_dashboard"] = dashboard(user=request.user)
        return super().index(request, {**extra, **(extra_context or {})})


def email_trouble_of(request):
    """Failed and long-retrying e-mail at the user's sites, read once per request (the home page's worklist
    and the banner of every admin page share it)."""
    from notifications.selectors import email_trouble

    if not hasattr(request, "_email_trouble"):
        request._email_trouble = email_trouble(user=request.user)
    return request._email_trouble


def email_alert(request) -> dict:
    """Context processor: on admin pages, the banner's figures while any e-mail failed in the last day.

    Read from the ledger, so the alert reaches the study's data managers and staff however e-mail fares."""
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not (user.is_active and user.is_staff):
        return {}
    trouble = email_trouble_of(request)
    return {"email_alert": trouble} if trouble.failed_last_day else {}
