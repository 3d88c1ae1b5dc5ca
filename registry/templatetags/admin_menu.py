"""`{% admin_menu %}`: the admin's side menu (Django's admin/nav_sidebar.html), drawn once per user, language,
memberships and page kind, and then read from the cache for `MENU_CACHE_SECONDS`.

Working out the menu asks every model admin whether the user may see, add and change its objects (about 70
questions and 60 `reverse()` calls), and drawing it writes a row per model: about a tenth of a list's or the
patient page's CPU. What the menu holds depends on the user's memberships (read once per request anyway,
`request_memberships`) and Django permissions, the language and the page (which entry is marked current).
A change of memberships draws a new menu at once; a change of Django permissions or groups shows within
`MENU_CACHE_SECONDS` (each page still checks the permission itself)."""

from __future__ import annotations

import hashlib
import logging

from django import template
from django.core.cache import cache
from django.utils import translation
from django.utils.safestring import mark_safe

from registry.admin_tools import request_memberships

register = template.Library()
log = logging.getLogger(__name__)

MENU_CACHE_SECONDS = 60
MENU_TEMPLATE = "admin/nav_sidebar.html"


def menu_key(request) -> str:
    """The menu's cache key. The page kind decides which entry is current (Django marks the app and model
    whose address starts the page's): every address of one URL name shares that start, but for the app
    pages' own `app_label`."""
    user = request.user
    match = getattr(request, "resolver_match", None)
    page = f"{match.url_name}:{match.kwargs.get('app_label', '')}" if match and match.url_name else request.path
    facts = repr((user.is_superuser, user.is_staff, sorted(request_memberships(request)), page))
    digest = hashlib.sha256(facts.encode()).hexdigest()[:32]
    return f"admin-menu:{user.pk}:{translation.get_language()}:{digest}"


@register.simple_tag(takes_context=True)
def admin_menu(context) -> str:
    request = context["request"]
    key = menu_key(request)
    try:
        html = cache.get(key)
    except Exception:  # a cache that cannot be reached: the menu is drawn, the page still shows
        log.warning("admin menu: cache unreachable", exc_info=True)
        html, key = None, None
    if html is None:
        html = context.template.engine.get_template(MENU_TEMPLATE).render(context)
        if key is not None:
            try:
                cache.set(key, html, MENU_CACHE_SECONDS)
            except Exception:
                log.warning("admin menu: cache unreachable", exc_info=True)
    return mark_safe(html)  # noqa: S308 (the admin's own template, drawn above)
