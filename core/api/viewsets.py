"""The base of the API's viewsets: every queryset narrowed to the caller's sites before anything else, every
write attributed to the caller in the audit trail, answers with their ETag, errors as problem details."""

from __future__ import annotations

from django.db import transaction
from rest_framework import exceptions, status
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from core import record_status
from core.api.etags import etag_of
from core.api.pagination import UpdatedCursorPagination
from core.api.problems import exception_handler
from core.api.text import UNSTORABLE_MESSAGE, unstorable
from core.audit import Door, audit_context


class ScopedViewSet(GenericViewSet):
    """Every queryset starts from the caller's site (`request.auth.site_id`); every write is attributed to the
    caller. Subclasses give the authentication, and `base_queryset`, a callable returning the unscoped queryset
    of a model with a `SiteScopedQuerySet`."""

    pagination_class = UpdatedCursorPagination
    base_queryset = None

    def get_exception_handler(self):
        return exception_handler

    @property
    def site_id(self) -> int:
        return self.request.auth.site_id

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no key and may have no database
            model = getattr(getattr(self.serializer_class, "Meta", None), "model", None)
            return model._default_manager.none() if model is not None else self.base_queryset().none()
        return record_status.annotate(self.scoped(self.base_queryset()))

    def scoped(self, queryset):
        return queryset.for_sites([self.site_id])

    def _changes_one_object(self, request) -> bool:
        return request.method not in SAFE_METHODS and (self.lookup_url_kwarg or self.lookup_field) in self.kwargs

    def dispatch(self, request, *args, **kwargs):
        # A write to one object (an update, an action on it) runs in one transaction in which `get_object` locks
        # the object's row: its version is compared (If-Match) and changed while no other request can change it,
        # so of concurrent updates naming the same version one succeeds and the others find it stale (412).
        self.kwargs = kwargs
        if self._changes_one_object(request):
            with transaction.atomic():
                self._lock_object = True
                return super().dispatch(request, *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    def get_object(self):
        if not getattr(self, "_lock_object", False):
            return super().get_object()
        # Only the object's own row is locked (`of`): a nullable join may not be locked on PostgreSQL, and two
        # writers of one site must not queue on the site's row.
        queryset = self.filter_queryset(self.get_queryset()).select_for_update(of=("self",))
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        obj = get_object_or_404(queryset, **{self.lookup_field: lookup})
        self.check_object_permissions(self.request, obj)
        return obj

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Text a column cannot store (NUL, lone surrogates) is refused before any query sees it: in the path
        # an object's name that cannot exist (404), in a query parameter a 400 naming it.
        if any(unstorable(value) for value in kwargs.values()):
            raise exceptions.NotFound()
        refused = {
            name: [UNSTORABLE_MESSAGE]
            for name, values in request.query_params.lists()
            if unstorable(name) or any(map(unstorable, values))
        }
        if refused:
            raise exceptions.ValidationError(refused)
        if request.auth is not None:
            self._audit = audit_context(door=Door.API, actor=str(request.user))
            self._audit.__enter__()

    def _close_audit(self) -> None:
        audit = getattr(self, "_audit", None)
        if audit is not None:
            self._audit = None
            audit.__exit__(None, None, None)

    def handle_exception(self, exc):
        try:
            return super().handle_exception(exc)
        except BaseException:
            self._close_audit()  # an error that escapes the view must not leave this thread attributed to the key
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        self._close_audit()
        return super().finalize_response(request, response, *args, **kwargs)

    def respond(self, obj, serializer_class, status_code=status.HTTP_200_OK, headers=None) -> Response:
        data = serializer_class(obj, context=self.get_serializer_context()).data
        return Response(data, status=status_code, headers={"ETag": etag_of(obj), **(headers or {})})

    def retrieve(self, request, *args, **kwargs):
        obj = self.get_object()
        return self.respond(obj, self.get_serializer_class())

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        serializer = self.get_serializer(page, many=True)
        return self.get_paginated_response(serializer.data)
