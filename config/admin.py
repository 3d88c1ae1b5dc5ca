"""The registry's admin site: its home page is the coordinator's worklist; sign-in with a second factor for
whoever enrolled one, and enrolment first for those who must (config/signin.py, registry/two_factor.py)."""

from functools import update_wrapper

from django.contrib import admin
from django.urls import path
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache


class RegistryAdminSite(admin.AdminSite):
    site_header = _("MSCT registry")
    site_title = _("MSCT registry")
    index_title = _("Worklist")
    index_template = "admin/registry_index.html"
    # The registry has no public site: no "View site" link in the header (the home page is the worklist).
    site_url = None

    login_template = "admin/registry_login.html"

    @property
    def login_form(self):
        from config.signin import RegistryLoginForm

        return RegistryLoginForm

    def has_permission(self, request):
        from config.signin import second_factor_state

        allowed = super().has_permission(request)
        if not allowed or request.user.is_verified():
            return allowed
        # Whoever enrolled signs in with the code; whoever must enrol cannot use the admin before.
        enrolled, required = second_factor_state(request)
        return not (enrolled or required)

    def admin_view(self, view, cacheable=False):
        from config.signin import second_factor_redirect

        inner = super().admin_view(view, cacheable)
        if getattr(view, "__name__", "") == "logout":
            # Anyone signed in may sign out, also before the admin opens to them (on the set-up page).
            return update_wrapper(never_cache(view), view)

        def guarded(request, *args, **kwargs):
            return second_factor_redirect(request) or inner(request, *args, **kwargs)

        return update_wrapper(guarded, view)

    def get_urls(self):
        from config.signin import two_factor_page

        def page(request):
            return two_factor_page(request, self)

        return [path("two-factor/", page, name="two_factor"), *super().get_urls()]

    def get_app_list(self, request, app_label=None):
        # Worked out when first used: every page's context holds the menu's list, which the side menu reads
        # only when it is not in the cache (registry/templatetags/admin_menu.py).
        return SimpleLazyObject(lambda: super(RegistryAdminSite, self).get_app_list(request, app_label))

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
