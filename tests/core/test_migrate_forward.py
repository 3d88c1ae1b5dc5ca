"""A database created before notifications and reporting had apps of their own migrates to the new layout
with every row kept: the models moved, their tables did not."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.factories import make_clinical, make_user

BEFORE = [
    ("registry", "0008_history_updated_at_not_indexed"),
    ("patients", "0004_history_updated_at_not_indexed"),
    ("followup", "0008_notification_key_visit_first"),
    ("notifications", None),
    ("reporting", None),
]
MOVED = {
    "notification": ("notifications", "followup_notification"),
    "notificationpreference": ("notifications", "followup_notificationpreference"),
    "exportjob": ("reporting", "followup_exportjob"),
    "cohortreport": ("reporting", None),
}


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def _latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


def _row_counts() -> dict[str, int]:
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if t != "django_migrations"]
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def _seed_with_the_old_models(apps, clinical, user, m1_pk: int) -> dict[str, int]:
    """Rows written through the followup app's models as they were before the move (`m1_pk`: the patient's
    visit M1, read before the schema went back)."""
    now = timezone.now()
    notification = apps.get_model("followup", "Notification").objects.create(
        kind="visit_reminder",
        object_id=m1_pk,
        stage="due",
        recipient_email="coordinator@example.org",
        recipient_user_id=user.pk,
        site_id=clinical.site.pk,
        language="zh-hans",
        send_after=now,
    )
    apps.get_model("followup", "Notification").objects.create(
        kind="visit_escalation",
        object_id=m1_pk,
        stage="escalated",
        recipient_email="investigator@example.org",
        site_id=clinical.site.pk,
        state="sent",
        send_after=now - dt.timedelta(days=1),
        sent_at=now,
    )
    preference = apps.get_model("followup", "NotificationPreference").objects.create(
        user_id=user.pk, language="zh-hans", digest=False
    )
    job = apps.get_model("followup", "ExportJob").objects.create(
        study_id=clinical.study.pk, site_ids=[clinical.site.pk], requested_by_id=user.pk, state="done", progress=100
    )
    content_types = apps.get_model("contenttypes", "ContentType").objects
    for model in MOVED:
        content_types.filter(app_label=MOVED[model][0], model=model).delete()
        content_types.get_or_create(app_label="followup", model=model)
    followup_notification = content_types.get(app_label="followup", model="notification")
    apps.get_model("admin", "LogEntry").objects.create(
        action_time=now,
        user_id=user.pk,
        content_type_id=followup_notification.pk,
        object_id=str(notification.pk),
        object_repr="reminder",
        action_flag=2,
    )
    return {
        "notification": notification.pk,
        "preference": preference.pk,
        "job": job.pk,
        "content_type": followup_notification.pk,
    }


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_old_layout_migrates_forward_with_every_row_kept():
    clinical = make_clinical()
    user = make_user("migrating-coordinator", clinical.site)
    latest = _latest()
    m1_pk = clinical.visit("M1").pk
    try:
        old = _migrate(BEFORE)
        untouched = [node for node in latest if node[0] not in {app for app, _ in BEFORE}]
        apps = old.loader.project_state([*untouched, *(node for node in BEFORE if node[1])]).apps
        ids = _seed_with_the_old_models(apps, clinical, user, m1_pk)
        before = _row_counts()
        assert before["followup_notification"] == 2
        assert before["followup_exportjob"] == 1

        _migrate(latest)
        after = _row_counts()
    finally:
        _migrate(latest)

    # Every table of the old layout keeps its rows; a table added since starts empty.
    assert {t: n for t, n in after.items() if t in before} == before
    assert {t: n for t, n in after.items() if t not in before and n} == {}

    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    from notifications.models import Notification, NotificationPreference
    from reporting.models import ExportJob

    ContentType.objects.clear_cache()
    row = Notification.objects.get(pk=ids["notification"])
    assert (row.kind, row.stage, row.language, row.site_id) == ("visit_reminder", "due", "zh-hans", clinical.site.pk)
    assert Notification.objects.count() == 2
    assert NotificationPreference.objects.get(pk=ids["preference"]).language == "zh-hans"
    job = ExportJob.objects.get(pk=ids["job"])
    assert (job.state, job.site_ids, job.requested_by_id) == ("done", [clinical.site.pk], user.pk)

    relabelled = ContentType.objects.get(pk=ids["content_type"])
    assert (relabelled.app_label, relabelled.model) == ("notifications", "notification")
    assert relabelled.model_class() is Notification
    entry = LogEntry.objects.get(object_id=str(ids["notification"]))
    assert entry.get_edited_object() == row
    moved = ContentType.objects.filter(model__in=list(MOVED))
    assert sorted((ct.app_label, ct.model) for ct in moved) == sorted((app, model) for model, (app, _) in MOVED.items())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_existing_templates_get_the_default_required_items_and_existing_events_their_pre_treatment_flag():
    from followup.models import AdverseEvent
    from followup.services import ae_record
    from registry.models import VisitDefinition

    clinical = make_clinical()  # its template without required items (tests.factories)
    day_zero = dt.date(2025, 3, 3)
    for onset in (day_zero - dt.timedelta(days=2), day_zero + dt.timedelta(days=2)):
        ae_record(
            patient=clinical.patient,
            term="Fever",
            category="other",
            onset_date=onset,
            grade=1,
            relatedness="unlikely",
            expected=True,
            aware_date=onset,
        )
    latest = _latest()
    try:
        _migrate(
            [
                ("registry", "0008_history_updated_at_not_indexed"),
                ("followup", "0009_models_moved_to_notifications_and_reporting"),
            ]
        )
        _migrate(latest)
    finally:
        _migrate(latest)
    required = dict(VisitDefinition.objects.filter(study=clinical.study).values_list("code", "required_items"))
    assert {code for code, items in required.items() if items} == {"BL", "M3", "M6", "M12"}
    assert required["M6"] == ["SLEDAI2K", "PROT24H", "CREAT", "C3", "C4", "ADSDNA"]
    flags = sorted(AdverseEvent.objects.filter(patient=clinical.patient).values_list("onset_date", "pre_treatment"))
    assert [flag for _, flag in flags] == [True, False]
