"""The admin's side menu (registry/templatetags/admin_menu.py): read from the cache, it is the menu Django
draws for that user, language and page; it never crosses users; a change of memberships shows at once; a
cache that cannot be reached leaves the page working."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry.constants import Role
from registry.services import membership_grant
from tests.factories import make_patient, make_site, make_study, make_user

pytestmark = pytest.mark.django_db

NAV = re.compile(r'<nav class="sticky" id="nav-sidebar".*?</nav>', re.S)


@pytest.fixture
def setting():
    site, other = make_site("MENU1"), make_site("MENU2")
    study = make_study(site, other)
    patient = make_patient(study, site)
    coordinator = make_user("menu_coord", site, role=Role.COORDINATOR)
    manager = make_user("menu_dm", site, role=Role.DATA_MANAGER)
    paths = [  # the home page (the worklist) and the apps' pages have no side menu
        "/admin/followup/adverseevent/add/",
        "/admin/followup/visit/",
        f"/admin/patients/patient/{patient.pk}/change/",
        "/admin/patients/patient/",
        "/admin/two-factor/",
    ]
    return {"site": site, "other": other, "coordinator": coordinator, "manager": manager, "paths": paths}


def menu(client, path: str, language: str = "en") -> str:
    response = client.get(path, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, path
    found = NAV.findall(response.content.decode())
    assert len(found) == 1, path
    return found[0]


def drawn(client, path: str, language: str = "en") -> str:
    """The menu as Django draws it, nothing in the cache."""
    cache.clear()
    return menu(client, path, language)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_cached_menu_is_the_drawn_one(client, setting, language):
    client.cookies.load({"django_language": language})
    for user in (setting["coordinator"], setting["manager"]):
        client.force_login(user)
        fresh = {path: drawn(client, path, language) for path in setting["paths"]}
        for path in setting["paths"]:  # every page kind now in the cache
            menu(client, path, language)
        for path in reversed(setting["paths"]):
            assert menu(client, path, language) == fresh[path], (user.username, path)
        # The current entry follows the page.
        assert 'aria-current="page">' in fresh["/admin/followup/visit/"]
        assert fresh["/admin/followup/visit/"] != fresh["/admin/patients/patient/"]


def test_users_do_not_share_a_menu(client, setting):
    client.force_login(setting["manager"])
    managers = menu(client, "/admin/followup/visit/")
    assert "/admin/registry/apikey/" in managers  # partner keys: data managers only
    client.force_login(setting["coordinator"])
    coordinators = menu(client, "/admin/followup/visit/")
    assert "/admin/registry/apikey/" not in coordinators
    assert coordinators == drawn(client, "/admin/followup/visit/")


def test_a_new_membership_shows_at_once(client, setting):
    client.force_login(setting["coordinator"])
    assert "/admin/registry/apikey/" not in menu(client, "/admin/followup/visit/")
    membership_grant(user=setting["coordinator"], site=setting["other"], role=Role.DATA_MANAGER)
    assert "/admin/registry/apikey/" in menu(client, "/admin/followup/visit/")


def test_the_menu_from_the_cache_reads_no_permissions(client, setting):
    client.force_login(setting["manager"])
    menu(client, "/admin/followup/visit/")
    with CaptureQueriesContext(connection) as ctx:
        menu(client, "/admin/followup/visit/")
    assert not [q["sql"] for q in ctx.captured_queries if "auth_permission" in q["sql"]]
    cache.clear()
    with CaptureQueriesContext(connection) as ctx:
        menu(client, "/admin/followup/visit/")
    assert [q["sql"] for q in ctx.captured_queries if "auth_permission" in q["sql"]]


def test_an_unreachable_cache_still_draws_the_menu(client, setting):
    client.force_login(setting["manager"])
    expected = drawn(client, "/admin/followup/visit/")
    with (
        mock.patch("registry.templatetags.admin_menu.cache.get", side_effect=ConnectionError("down")),
        mock.patch("registry.templatetags.admin_menu.cache.set", side_effect=ConnectionError("down")),
    ):
        assert menu(client, "/admin/followup/visit/") == expected


def test_a_django_group_change_shows_at_once(client, setting, django_capture_on_commit_callbacks):
    """A user put into a group that may view the sign-in lockouts sees them in the menu on the next page;
    taken out, no longer."""
    from django.contrib.auth.models import Group, Permission

    user = setting["coordinator"]
    client.force_login(user)
    assert "/admin/axes/accessattempt/" not in menu(client, "/admin/followup/visit/")
    with django_capture_on_commit_callbacks(execute=True):
        group = Group.objects.create(name="unlockers")
        group.permissions.add(Permission.objects.get(codename="view_accessattempt"))
        user.groups.add(group)
    assert "/admin/axes/accessattempt/" in menu(client, "/admin/followup/visit/")
    with django_capture_on_commit_callbacks(execute=True):
        group.delete()
    assert "/admin/axes/accessattempt/" not in menu(client, "/admin/followup/visit/")
