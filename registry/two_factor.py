"""Two-factor sign-in: an authenticator app (TOTP) and one-time backup codes, both django-otp devices.

Every door goes through these functions: the sign-in form, the enrolment page and the admin's reset action
(docs/sign-in.md). Each enrolment, new set of backup codes and reset leaves a SecondFactorEvent.
"""

from __future__ import annotations

import base64

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry import constants as c
from registry.models import Membership, SecondFactorEvent

AUTHENTICATOR_NAME = "authenticator"
BACKUP_NAME = "backup codes"


def second_factor_enrolled(user) -> bool:
    """True when the user has a confirmed authenticator app."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()


def second_factor_required(user) -> bool:
    """True when the user may not use the admin without a second factor: with REGISTRY_REQUIRE_2FA on,
    superusers and whoever holds an investigator's or data manager's role at any site."""
    if not getattr(settings, "REGISTRY_REQUIRE_2FA", False) or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user_id=user.pk, role__in=c.SECOND_FACTOR_ROLES).exists()


def totp_uri(device: TOTPDevice) -> str:
    """The otpauth:// URI the QR code carries (issuer OTP_TOTP_ISSUER, the username as the account)."""
    return device.config_url


def totp_key_text(device: TOTPDevice) -> str:
    """The key in base32, in groups of four, for typing into an app by hand."""
    key = base64.b32encode(device.bin_key).decode("ascii").rstrip("=")
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def backup_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user_id=user.pk, device__confirmed=True).count()


def _event(*, user, action: str, actor=None, reason: str = "") -> None:
    SecondFactorEvent.objects.create(user=user, username=user.get_username(), actor=actor, action=action, reason=reason)


def totp_begin(*, user) -> TOTPDevice:
    """The user's unconfirmed authenticator (a new key, or the one shown before so a reload shows the same)."""
    if second_factor_enrolled(user):
        raise ValidationError(
            {"token": _("Two-factor sign-in is already set up; ask a data manager to reset it to start again.")}
        )
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)


def _issue_backup_codes(user) -> list[str]:
    device, _created = StaticDevice.objects.get_or_create(user=user, name=BACKUP_NAME, defaults={"confirmed": True})
    device.token_set.all().delete()
    codes: set[str] = set()
    while len(codes) < c.BACKUP_CODE_COUNT:
        codes.add(StaticToken.random_token())
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in sorted(codes)])
    return sorted(codes)


def totp_confirm(*, user, device: TOTPDevice, token: str) -> list[str]:
    """Confirm the authenticator with a code it shows; returns the ten backup codes (shown once, kept only as
    one-time tokens)."""
    if device.user_id != user.pk or device.confirmed:
        raise ValidationError({"token": _("This authenticator is not waiting for confirmation; reload the page.")})
    token = "".join((token or "").split())
    allowed, _why = device.verify_is_allowed()
    if not allowed:  # django-otp waits longer after each wrong code (1 s, 2 s, 4 s, ...)
        raise ValidationError({"token": _("Too many wrong codes in a row: wait a few seconds, then try again.")})
    if not (token.isdigit() and len(token) == device.digits) or not device.verify_token(token):
        raise ValidationError(
            {"token": _("The code is not correct: enter the 6 digits your authenticator app shows now.")}
        )
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).delete()
        codes = _issue_backup_codes(user)
        _event(user=user, action=c.SecondFactorAction.ENROLLED, actor=user)
    return codes


def backup_codes_regenerate(*, user) -> list[str]:
    """Replace the user's backup codes with ten new ones (the old ones stop working)."""
    if not second_factor_enrolled(user):
        raise ValidationError({"token": _("Set up an authenticator app before asking for backup codes.")})
    with transaction.atomic():
        codes = _issue_backup_codes(user)
        _event(user=user, action=c.SecondFactorAction.BACKUP_CODES, actor=user)
    return codes


def sign_in_device(*, user, token: str) -> Device | None:
    """At sign-in, after the password: the device that accepts `token`, or None for a user with no device.

    A user with a confirmed device must give a code from the app or an unused backup code (which is then
    spent)."""
    if not second_factor_enrolled(user):
        return None
    token = "".join((token or "").split()).lower()
    if not token:
        raise ValidationError(
            {"otp_token": _("Enter the code from your authenticator app, or one of your backup codes.")}
        )
    with transaction.atomic():
        # The row lock keeps the app's replay guard (the last time step used) from being passed twice at once.
        for device in TOTPDevice.objects.devices_for_user(user, confirmed=True).select_for_update():
            if device.verify_token(token):
                return device
    device = backup_code_spend(user=user, token=token)
    if device is None:
        raise ValidationError({"otp_token": _("The two-factor code is not correct, or that backup code was used.")})
    return device


def backup_code_spend(*, user, token: str) -> StaticDevice | None:
    """Spend one of the user's backup codes: the device it belongs to, or None when no unused code matches.

    The one place a backup code is used up. The code's row goes in one conditional DELETE (by its id) and
    counts only when this DELETE removed it: django-otp's StaticDevice.verify_token reads the code, then deletes
    it without looking at the count, so the same code sent twice at once could sign in twice."""
    for device in StaticDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk"):
        allowed, _why = device.verify_is_allowed()
        if not allowed:  # waiting after a wrong code (django-otp's throttling)
            continue
        code_id = device.token_set.filter(token=token).values_list("pk", flat=True).first()
        if code_id is not None:
            spent, _by_model = StaticToken.objects.filter(pk=code_id).delete()
            if spent == 1:
                device.throttle_reset(commit=False)
                device.set_last_used_timestamp(commit=False)
                device.save(update_fields=["throttling_failure_timestamp", "throttling_failure_count", "last_used_at"])
                return device
        device.throttle_increment()
    return None


def second_factor_events_for(viewer):
    """The sign-in audit a viewer may read: everything for a superuser; for a data manager, the events of the
    people of the sites they manage; nothing for anyone else."""
    events = SecondFactorEvent.objects.select_related("actor").order_by("-at", "-pk")
    if not (viewer.is_active and viewer.is_staff):
        return events.none()
    if viewer.is_superuser:
        return events
    manager_sites = Membership.objects.filter(user_id=viewer.pk, role=c.Role.DATA_MANAGER).values("site_id")
    return events.filter(user__memberships__site_id__in=manager_sites).distinct()


def _may_reset(actor, user) -> bool:
    if not (actor.is_active and actor.is_staff):
        return False
    if actor.is_superuser:
        return True
    manager_sites = Membership.objects.filter(user_id=actor.pk, role=c.Role.DATA_MANAGER).values("site_id")
    return Membership.objects.filter(user_id=user.pk, site_id__in=manager_sites).exists()


def second_factor_reset(*, actor, user, reason: str) -> None:
    """A data manager of one of the user's sites (or a superuser) removes the user's authenticator and backup
    codes, e.g. after a lost phone; the user enrols again at the next sign-in."""
    if not _may_reset(actor, user):
        raise PermissionDenied(
            _("Only a data manager of one of this person's sites can reset their two-factor sign-in.")
        )
    with transaction.atomic():
        TOTPDevice.objects.filter(user_id=user.pk).delete()
        StaticDevice.objects.filter(user_id=user.pk).delete()
        _event(user=user, action=c.SecondFactorAction.RESET, actor=actor, reason=reason)
