"""Issuing, checking and revoking partner API keys."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from registry.models import ApiKey, ApiKeyScope, Site
from registry.services import full_clean_plain

KEY_PREFIX_LENGTH = 8
DEFAULT_LIFETIME = dt.timedelta(days=365)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_key_issue(
    *,
    site: Site,
    name: str,
    scope: str = ApiKeyScope.READ,
    expires_at: dt.datetime | None = None,
    can_write_lots: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored and cannot be shown again."""
    expires_at = expires_at or timezone.now() + DEFAULT_LIFETIME
    if expires_at <= timezone.now():
        raise ValidationError({"expires_at": gettext("The expiry must be in the future.")})
    prefix = secrets.token_hex(KEY_PREFIX_LENGTH // 2)
    raw = f"msct_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        site=site,
        name=name,
        prefix=prefix,
        hashed_key=_digest(raw),
        scope=scope,
        expires_at=expires_at,
        can_write_lots=can_write_lots,
    )
    full_clean_plain(key)
    key.save()
    return key, raw


def api_key_verify(raw: str) -> ApiKey | None:
    """The live key matching `raw`, or None (unknown, wrong secret, revoked or expired)."""
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != "msct":
        return None
    try:
        key = ApiKey.objects.select_related("site").get(prefix=parts[1])  # the prefix is unique
    except ApiKey.DoesNotExist:
        return None
    if not hmac.compare_digest(key.hashed_key, _digest(raw)):
        return None
    now = timezone.now()
    if key.revoked_at is not None or key.expires_at <= now:
        return None
    if key.last_used_at is None or now - key.last_used_at > dt.timedelta(minutes=5):
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


@transaction.atomic
def api_key_revoke(*, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key._change_reason = "revoked"
        key.save(update_fields=["revoked_at"])
    return key
