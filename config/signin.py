"""Signing in to the admin: the form (password, then the two-factor code for whoever has a device), the warning
before a lockout, the lockout page, and the two-factor enrolment page (docs/sign-in.md).

The rules live in registry/two_factor.py; this module only draws pages and forms around them.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from registry import two_factor


def cooloff_minutes() -> int:
    from axes.helpers import get_cool_off

    cool_off = get_cool_off()
    return round(cool_off.total_seconds() / 60) if cool_off else 0


def support_contact() -> str:
    return settings.REGISTRY_SUPPORT_CONTACT or _("your site's data manager or the registry's administrator")


class RegistryLoginForm(AdminAuthenticationForm):
    """Username and password; the code from an authenticator app or a backup code for those who enrolled."""

    otp_token = forms.CharField(
        label=gettext_lazy("Two-factor code"),
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
        help_text=gettext_lazy("If you set up two-factor sign-in: the code your app shows, or a backup code."),
    )

    attempts_left: int | None = None
    lockout_minutes: int = 0

    def clean(self):
        try:
            cleaned = super().clean()
        except ValidationError:
            self._count_attempts()
            raise
        if self.user_cache is not None:
            try:
                device = two_factor.sign_in_device(user=self.user_cache, token=cleaned.get("otp_token", ""))
            except ValidationError as refused:
                self.add_error(None, refused.message_dict["otp_token"])
                return cleaned
            if device is not None:
                self.user_cache.otp_device = device  # django_otp marks the session verified at login
        return cleaned

    def _count_attempts(self) -> None:
        """From AXES_WARN_AFTER_FAILURES failures on, how many tries this name has left at this address."""
        from axes.handlers.proxy import AxesProxyHandler

        username = self.cleaned_data.get("username") or self.data.get("username") or ""
        if not username or self.request is None:
            return
        failures = AxesProxyHandler.get_failures(self.request, {"username": username})
        left = settings.AXES_FAILURE_LIMIT - failures
        if failures >= settings.AXES_WARN_AFTER_FAILURES and left > 0:
            self.attempts_left = left
            self.lockout_minutes = cooloff_minutes()


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """django-axes' answer once a username is locked at an address (AXES_LOCKOUT_CALLABLE): the admin's look,
    how long, and whom to contact."""
    from django.contrib import admin

    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        **admin.site.each_context(request),
        "title": _("Sign-in locked"),
        "locked_username": username,
        "minutes": cooloff_minutes(),
        "contact": support_contact(),
    }
    response = TemplateResponse(request, "admin/locked_out.html", context, status=429)
    response.render()
    return response


def second_factor_state(request) -> tuple[bool, bool]:
    """(enrolled, required) for the request's user, read once per request (every admin page asks)."""
    if not hasattr(request, "_second_factor_state"):
        user = request.user
        request._second_factor_state = (
            two_factor.second_factor_enrolled(user),
            two_factor.second_factor_required(user),
        )
    return request._second_factor_state


def second_factor_redirect(request):
    """Where an admin page must send a user who signed in without the second factor they need: to enrolment
    when it is required and they have no device yet; None otherwise (the site's permission check sends an
    enrolled but unverified session back to sign in)."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff) or user.is_verified():
        return None
    enrolled, required = second_factor_state(request)
    if required and not enrolled:
        return redirect("admin:two_factor")
    return None


def _qr_svg(uri: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    return image.to_string(encoding="unicode")


@never_cache
@csrf_protect
def two_factor_page(request, site):
    """Enrol an authenticator app (QR code and key), confirm it with a code, see the backup codes once; once
    enrolled, ask for new backup codes."""
    user = request.user
    login_url = f"{reverse('admin:login')}?next={request.path}"
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return redirect(login_url)
    enrolled = two_factor.second_factor_enrolled(user)
    if enrolled and not user.is_verified():
        return redirect(login_url)

    error = ""
    codes: list[str] = []
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "confirm" and not enrolled:
                device = two_factor.totp_begin(user=user)
                codes = two_factor.totp_confirm(user=user, device=device, token=request.POST.get("token", ""))
                from django_otp import login as otp_login

                otp_login(request, device)
                enrolled = True
            elif action == "regenerate" and enrolled:
                codes = two_factor.backup_codes_regenerate(user=user)
        except ValidationError as refused:
            error = " ".join(refused.message_dict.get("token", refused.messages))

    context = {
        **site.each_context(request),
        # The header's tools (log out, language) for everyone signed in; the admin's menu only once it opens.
        "has_permission": True,
        **({} if site.has_permission(request) else {"available_apps": [], "is_nav_sidebar_enabled": False}),
        "title": _("Two-factor sign-in"),
        "enrolled": enrolled,
        "required": two_factor.second_factor_required(user),
        "codes": codes,
        "error": error,
    }
    if enrolled:
        context["codes_left"] = two_factor.backup_codes_left(user)
    else:
        device = two_factor.totp_begin(user=user)
        context["qr_svg"] = mark_safe(_qr_svg(two_factor.totp_uri(device)))  # drawn here from our own URI
        context["key_text"] = two_factor.totp_key_text(device)
    return TemplateResponse(request, "admin/two_factor.html", context)


SIGN_IN_APPS = {
    "axes": gettext_lazy("Sign-in lockouts"),
    "otp_totp": gettext_lazy("Two-factor sign-in: authenticator apps"),
    "otp_static": gettext_lazy("Two-factor sign-in: backup codes"),
}


def translate_sign_in_labels() -> None:
    """The admin sections of django-axes and django-otp in the user's language: their app names, and the
    model and field labels django-otp writes in plain English (django-axes marks its own for translation)."""
    from django.apps import apps

    from core.i18n import english

    for label, name in SIGN_IN_APPS.items():
        config = apps.get_app_config(label)
        config.verbose_name = name
        for model in config.get_models():
            opts = model._meta
            opts.verbose_name = gettext_lazy(english(opts.verbose_name))
            opts.verbose_name_plural = gettext_lazy(english(opts.verbose_name_plural))
            for field in opts.fields:
                if field.verbose_name:
                    field.verbose_name = gettext_lazy(english(field.verbose_name))
                if field.help_text:
                    field.help_text = gettext_lazy(english(field.help_text))
