"""Visit labels in both languages: the default template carries a Chinese label beside the English one, a
scheduled visit copies both, and pages and reminders show the one of the reader's language; exports keep the
English label."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import translation

from followup.models import Visit
from notifications.constants import NotificationKind
from notifications.ledger import compose
from notifications.models import Notification
from registry.constants import DEFAULT_VISIT_LABELS_ZH, DEFAULT_VISIT_TEMPLATE
from registry.models import VisitDefinition
from tests.factories import make_clinical, make_superuser

pytestmark = pytest.mark.django_db

ENGLISH = {code: label for code, label, *_ in DEFAULT_VISIT_TEMPLATE}


def test_the_default_template_has_a_chinese_label_for_every_time_point():
    clinical = make_clinical()

    labels = dict(clinical.study.visit_definitions.values_list("code", "label_zh"))

    assert labels == DEFAULT_VISIT_LABELS_ZH
    assert labels["BL"] == "基线（首次输注前）"
    assert labels["M3"] == "第3个月"


def test_a_scheduled_visit_shows_the_label_of_the_active_language():
    visit = make_clinical().visit("M3")

    assert (visit.label, visit.label_zh) == ("Month 3", "第3个月")
    with translation.override("zh-hans"):
        assert visit.label_shown == "第3个月"
    with translation.override("en"):
        assert visit.label_shown == "Month 3"


def test_a_visit_without_a_chinese_label_shows_the_english_one_in_chinese():
    visit = make_clinical().visit("M3")
    visit.label_zh = ""

    with translation.override("zh-hans"):
        assert visit.label_shown == "Month 3"


def test_the_patient_page_shows_the_chinese_labels_in_chinese(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    clinical = make_clinical()
    client.force_login(make_superuser("label-admin"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    page = client.get(f"/admin/patients/patient/{clinical.patient.pk}/change/").content.decode()
    translation.deactivate()

    assert "基线（首次输注前）" in page and "第3个月" in page
    assert "Baseline (before the first infusion)" not in page
    assert "Month 3" not in page


def test_the_visits_list_shows_the_chinese_labels_in_chinese(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    make_clinical()
    client.force_login(make_superuser("label-admin"))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    page = client.get("/admin/followup/visit/").content.decode()
    translation.deactivate()

    assert "第3个月" in page
    assert "Month 3" not in page


@pytest.mark.parametrize(("language", "label"), [("zh-hans", "第3个月"), ("en", "Month 3")])
def test_a_reminder_names_the_visit_in_the_recipients_language(language, label):
    visit = make_clinical().visit("M3")
    row = Notification(
        kind=NotificationKind.VISIT_REMINDER,
        object_id=visit.pk,
        stage="due",
        recipient_email="coordinator@example.org",
        language=language,
    )

    message = compose([row])

    assert label in message.body
    assert label in message.alternatives[0][0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_migrating_gives_the_default_labels_in_chinese_to_existing_templates_and_visits():
    clinical = make_clinical()
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    edited = clinical.study.visit_definitions.get(code="M6")
    try:
        MigrationExecutor(connection).migrate([("followup", "0014_signal_severity_and_check_runs")])
        MigrationExecutor(connection).migrate([("registry", "0010_study_site_removed_on")])
        with connection.cursor() as cursor:
            cursor.execute("UPDATE registry_visitdefinition SET label = %s WHERE id = %s", ["Half a year", edited.pk])
            cursor.execute("UPDATE followup_visit SET label = %s WHERE definition_id = %s", ["Half a year", edited.pk])
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)

    definitions = dict(VisitDefinition.objects.filter(study=clinical.study).values_list("code", "label_zh"))
    visits = dict(Visit.objects.filter(patient=clinical.patient).values_list("code", "label_zh"))
    assert definitions == {**DEFAULT_VISIT_LABELS_ZH, "M6": ""}
    assert visits == {code: definitions[code] for code in visits}
    assert visits["BL"] == "基线（首次输注前）"
    assert ENGLISH["M6"] == "Month 6"
