"""The study page's follow-up template (a read-only table): seen by the coordinators of the study's sites
through their memberships, not by a site outside the study, and edited by nobody from there."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from registry.admin import VisitDefinitionInline
from registry.models import Study
from tests.factories import make_site, make_study, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return make_study(make_site())


def study_url(study) -> str:
    return f"/admin/registry/study/{study.pk}/change/"


def test_coordinator_of_a_study_site_sees_the_follow_up_template(client, study):
    client.force_login(make_user("template_coord", study.sites.get()))
    response = client.get(study_url(study))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="visit_definitions-group"' in html
    table = html[html.index('id="visit_definitions-group"') :]
    for code in study.visit_definitions.values_list("code", flat=True):
        assert f"<p>{code}</p>" in table, code


def test_the_template_table_follows_the_study_page(study):
    inline = VisitDefinitionInline(Study, admin.site)
    request = RequestFactory().get("/admin/")

    request.user = make_user("template_member", study.sites.get())
    assert inline.has_view_permission(request, study) is True
    assert inline.has_change_permission(request, study) is False
    assert inline.has_add_permission(request, study) is False

    request = RequestFactory().get("/admin/")
    request.user = make_user("template_outsider", make_site())
    assert inline.has_view_permission(request, study) is False
