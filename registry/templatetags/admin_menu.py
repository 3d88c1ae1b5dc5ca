"""`{% admin_menu %}`: the admin's side menu (Django's admin/nav_sidebar.html), drawn once per user, language,
memberships and page kind, and then read from the cache for `MENU_CACHE_SECONDS`.

Working out the menu asks every model admin whether the user may see, add and change its objects (about 70
questions and 60 `reverse()` calls), and drawing it writes a row per model: about a tenth of a list's or the
patient page's CPU. What the menu holds depends on the user's memberships (read once per request anyway,
`request_memberships`) and Django permissions, the language and the page (which entry is marked current).
A change of memberships draws a new menu at once (they are in the key); a change of Django permissions or
groups, once committed, draws every user's menu anew (`menus_outdated`, connected in registry/apps.py)."""

from __future__ import annotations

import hashlib
import logging
import uuid

from django import template
from django.core.cache import cache
from django.db import transaction
from django.utils import translation
from django.utils.safestring import mark_safe

from registry.admin_tools import request_memberships

register = template.Library()
log = logging.getLogger(__name__)

MENU_CACHE_SECONDS = 60
MENU_TEMPLATE = "admin/nav_sidebar.html"
GENERATION_KEY = "admin-menu:generation"  # changed whenever Django permissions or groups change


def menus_outdated(**kwargs) -> None:
    """A signal receiver: after the transaction commits, no menu drawn before is shown again."""

    def renew():
        try:
            cache.set(GENERATION_KEY, uuid.uuid4().hex, None)
        except Exception:  # menus then expire after MENU_CACHE_SECONDS
            log.warning("admin menu: cache unreachable, menus expire on their own", exc_info=True)

    transaction.on_commit(renew)


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
    key, generation = menu_key(request), None
    try:
        found = cache.get_many([key, GENERATION_KEY])
        generation = found.get(GENERATION_KEY, "")
        kept = found.get(key)
        if kept is not None and kept[0] == generation:
            return mark_safe(kept[1])  # noqa: S308 (drawn below from the admin's own template)
    except Exception:  # a cache that cannot be reached: the menu is drawn, the page still shows
        log.warning("admin menu: cache unreachable", exc_info=True)
    html = context.template.engine.get_template(MENU_TEMPLATE).render(context)
    if generation is not None:
        try:
            cache.set(key, (generation, str(html)), MENU_CACHE_SECONDS)
        except Exception:
            log.warning("admin menu: cache unreachable", exc_info=True)
    return html
