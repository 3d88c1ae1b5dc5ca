"""What every partner endpoint adds to the shared API base: API-key authentication, its permissions, per-key
throttling and the table that keeps idempotent answers (the plumbing itself is in `core.api`)."""

from __future__ import annotations

from core.api.throttling import SharedRateThrottle
from core.api.viewsets import ScopedViewSet
from registry.api.auth import ApiKeyAuthentication, AuthFailureThrottle, PartnerPermission
from registry.models import ApiKey, IdempotencyRecord


class ApiKeyThrottle(SharedRateThrottle):
    scope = "api_key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class PartnerViewSet(ScopedViewSet):
    """A viewset for partner hospitals: the caller is an API key, bound to one site."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [PartnerPermission]
    throttle_classes = [ApiKeyThrottle]
    idempotency_model = IdempotencyRecord

    def permission_denied(self, request, message=None, code=None):
        # A request with no credentials at all is a failed authentication too, counted per client address.
        if request.auth is None:
            AuthFailureThrottle().count_failure(request)
        super().permission_denied(request, message, code)
