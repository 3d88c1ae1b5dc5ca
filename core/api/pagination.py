"""Pagination shared by the API's lists."""

from rest_framework.pagination import CursorPagination


class UpdatedCursorPagination(CursorPagination):
    """Stable pages for incremental sync: ordered by last change, then id."""

    ordering = ("updated_at", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
