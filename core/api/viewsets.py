"""The base of the API's viewsets: every queryset narrowed to the caller's sites before anything else, every
write attributed to the caller in the audit trail, answers with their ETag, errors as problem details."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from core.api.etags import etag_of
from core.api.pagination import UpdatedCursorPagination
from core.api.problems import exception_handler
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
        return self.scoped(self.base_queryset())

    def scoped(self, queryset):
        return queryset.for_sites([self.site_id])

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
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
