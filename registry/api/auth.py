"""Partner authentication: a per-site API key in the Authorization header; permissions by the key's scope.

Kept apart from the views so that REST framework can import it as a default without import cycles.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.api.throttling import SharedRateThrottle
from registry.api_keys import api_key_verify
from registry.models import ApiKey


class Partner:
    """The caller behind an API key: authenticated, bound to one site, never a Django user."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, key: ApiKey):
        self.key = key
        self.site_id = key.site_id

    def __str__(self) -> str:
        return f"api-key:{self.key.prefix}@{self.key.site.code}"


class AuthFailureThrottle(SharedRateThrottle):
    """Failed authentications per client address (`auth_failure` rate), in the shared cache: past the limit an
    address is answered 429 without its key being looked at, until the window passes."""

    scope = "auth_failure"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def refuse_if_over(self, request) -> None:
        """429 when the address has failed too often (nothing is counted)."""
        self.key = self.get_cache_key(request, None)
        if self.current() >= self.num_requests:
            raise exceptions.Throttled(self.wait())

    def count_failure(self, request) -> None:
        """Count a failure; 429 when it is one too many."""
        self.key = self.get_cache_key(request, None)
        if self.count() > self.num_requests:
            raise exceptions.Throttled(self.wait())


def authentication_failed(request, message: str):
    """Count a failed authentication against the client's address; the error to raise (429 once over)."""
    AuthFailureThrottle().count_failure(request)
    return exceptions.AuthenticationFailed(message)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>`."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        AuthFailureThrottle().refuse_if_over(request)
        if len(header) != 2:
            raise authentication_failed(request, "Send the header as 'Authorization: Api-Key <key>'.")
        key = api_key_verify(header[1])
        if key is None:
            raise authentication_failed(request, "The API key is unknown, revoked or expired.")
        return Partner(key), key

    def authenticate_header(self, request):
        return self.keyword


class ApiKeySchema(OpenApiAuthenticationExtension):
    target_class = "registry.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`: a per-site key issued in the admin.",
        }


class PartnerPermission(BasePermission):
    """Any live key reads; writing needs a read-write key."""

    message = "This API key is read-only."

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return False
        return request.method in SAFE_METHODS or request.auth.can_write
