"""Pagination shared by the API's lists."""

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from core.api.text import unstorable


class UpdatedCursorPagination(CursorPagination):
    """Stable pages for incremental sync: ordered by last change, then id. A cursor this API did not make (its
    position not an instant of the ordering) is "not found", like one that does not decode."""

    ordering = ("updated_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request):
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        try:
            instant = None if unstorable(cursor.position) else parse_datetime(cursor.position)
        except ValueError:  # well formed, but no date (month 13)
            instant = None
        if instant is None:
            raise NotFound(self.invalid_cursor_message)
        return cursor
