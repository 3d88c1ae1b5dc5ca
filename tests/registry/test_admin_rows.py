"""The big lists' rows (registry/admin_rows.py) are what Django's admin writes, cell for cell: on every big
list, for a coordinator and an all-sites data manager, sorted, filtered, searched, in both languages, and with
columns of every kind (a field, a choice, a boolean, a foreign key, an admin method, a callable, a property,
the key, text that needs escaping, empty values)."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import results
from django.core.exceptions import ObjectDoesNotExist
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import resolve
from django.utils import translation

from followup.models import ComputedOutcome, Result, Visit
from registry.admin_rows import RowWriter
from registry.constants import Role
from registry.models import Site
from registry.services import membership_grant
from tests.factories import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

QUERIES = [
    "",
    "o=2",
    "o=-3.1",
    "p=2",
    "q=S",
    "all=",  # an unknown parameter: Django's error page, not a list (skipped below)
]


@pytest.fixture
def registry_users():
    call_command(
        "seed_synthetic",
        patients=12,
        seed=3,
        today=dt.date(2026, 9, 1),
        sites=2,
        study="ROWS",
        quiet=True,
        stdout=StringIO(),
    )
    sites = list(Site.objects.order_by("code"))
    manager = make_user("rows_dm")
    for site in sites:
        membership_grant(user=manager, site=site, role=Role.DATA_MANAGER)
    return [manager, make_user("rows_coord", sites[0], role=Role.COORDINATOR)]


def changelist(model, user, query: str):
    path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    request = RequestFactory().get(f"{path}?{query}")
    request.user = user
    request.resolver_match = resolve(path)  # as on the page: each row's link keeps the list's filters
    model_admin = admin.site._registry[model]
    cl = model_admin.get_changelist_instance(request)
    cl.formset = None  # as changelist_view sets it for a list without editable columns
    cl.request = request
    return cl


def both(cl) -> tuple[list[str], list[str]]:
    django_rows = ["".join(items) for items in results(cl)]
    ours = ["".join(row) for row in RowWriter(cl).rows()]
    return django_rows, ours


@pytest.mark.parametrize("model", [Visit, Result, ComputedOutcome])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_rows_are_djangos(registry_users, model, language):
    filters = {
        Visit: "patient__site__id__exact={site}",
        Result: "derived__exact=1",
        ComputedOutcome: "visit__patient__site__id__exact={site}",
    }[model]
    site = Site.objects.order_by("code").first().pk
    compared = 0
    with translation.override(language):
        for user in registry_users:
            for query in [*QUERIES[:-1], filters.format(site=site), f"{filters.format(site=site)}&o=-1&q=0"]:
                cl = changelist(model, user, query)
                django_rows, ours = both(cl)
                assert ours == django_rows, (model.__name__, user.username, query)
                compared += len(ours)
    assert compared > 100  # the lists were not empty


def test_columns_of_every_kind(registry_users):
    """Columns a big list does not have today: each is written as Django writes it."""

    @admin.display(description="flag", boolean=True)
    def flag(obj):
        return obj.pk % 2 == 0

    @admin.display(description="marked", empty_value="(none)")
    def marked(obj):
        return ["<b>&amp;</b>", "", "   ", None, dt.date(2026, 1, 2)][obj.pk % 5]

    columns = ["id", "visit", "code", "derived", flag, marked, "__str__", "shown_value", "value", "entered_unit"]
    every_seventh = [pk for pk in Result.objects.values_list("pk", flat=True) if pk % 7 == 0]
    Result.objects.filter(pk__in=every_seventh).update(entered_unit="<i>")
    for links in ([], ["code"], ["code", "value"]):
        with (
            mock.patch.object(admin.site._registry[Result], "list_display", columns),
            mock.patch.object(admin.site._registry[Result], "list_display_links", links),
        ):
            for user in registry_users:
                cl = changelist(Result, user, "o=-1")
                django_rows, ours = both(cl)
                assert ours == django_rows, links
                assert any("&lt;i&gt;" in row for row in ours)


def test_a_filter_holding_the_key_marker_keeps_the_links(registry_users):
    """An ordering Django skips is still kept in each link's filters: the writer's marker typed into the
    address does not cost the rows their links."""
    cl = changelist(Visit, registry_users[0], "o=ROWKEYMARK")
    django_rows, ours = both(cl)
    assert all("_changelist_filters=o%3DROWKEYMARK" in row for row in django_rows)
    assert ours == django_rows


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_odd_columns_and_the_row_checkbox(registry_users, language):
    """A column raising ObjectDoesNotExist (the admin's empty mark, not the column's), blank text (the empty
    mark) and the row checkbox of a list with an action (its label translated)."""

    @admin.display(description="outcome", empty_value="(no outcome)")
    def missing(obj):
        raise ObjectDoesNotExist

    @admin.display(description="note")
    def note(obj):
        return ["", "   ", "x <y>"][obj.pk % 3]

    @admin.action(description="noop")
    def noop(modeladmin, request, queryset):
        return None

    model_admin = admin.site._registry[Visit]
    with (
        translation.override(language),
        mock.patch.object(model_admin, "list_display", [*model_admin.list_display, missing, note]),
        mock.patch.object(model_admin, "actions", [noop]),
    ):
        for user in registry_users:
            cl = changelist(Visit, user, "o=-2")
            assert cl.list_display[0] == "action_checkbox"
            django_rows, ours = both(cl)
            assert ours == django_rows
            assert 'class="action-select"' in ours[0]
            assert '<td class="field-note">-</td>' in "".join(ours)
            assert "(no outcome)" not in "".join(ours)


def test_editable_rows_are_written_by_django_with_their_forms(registry_users):
    model_admin = admin.site._registry[Visit]
    with mock.patch.object(model_admin, "list_editable", ["code"]):
        cl = changelist(Visit, registry_users[0], "")
        cl.formset = model_admin.get_changelist_formset(cl.request)(queryset=cl.result_list)
        django_rows, ours = both(cl)
    assert 'name="form-0-code"' in django_rows[0]
    assert ours == django_rows


def test_a_popup_is_written_by_django(registry_users):
    cl = changelist(Visit, registry_users[0], "_popup=1&_to_field=id")
    django_rows, ours = both(cl)
    assert ours == django_rows
    assert 'data-popup-opener="' in ours[0]


def test_the_big_lists_use_the_row_writer(client, registry_users):
    client.force_login(registry_users[1])
    for path in ["/admin/followup/visit/", "/admin/followup/result/", "/admin/followup/computedoutcome/"]:
        response = client.get(path)
        assert response.status_code == 200
        assert "admin/big_change_list.html" in [t.name for t in response.templates], path
        assert response.content.count(b'<th class="field-') == len(response.context["cl"].result_list) > 0
