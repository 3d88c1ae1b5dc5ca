"""Queries open longer than their study's limit in the reminder digest: the sweep (one row per overdue query
and coordinator of its site, idempotent), the digest item (English and Chinese, with the query's link), and
the re-check that drops it once the query is answered or closed."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail

from notifications.constants import NotificationKind, NotificationState
from notifications.ledger import notifications_send_due, reminders_sweep
from notifications.models import Notification, NotificationPreference
from quality.services.edit_checks import edit_check_settings_save
from quality.services.queries import query_answer, query_close, query_raise
from registry.constants import Role
from tests.factories import make_clinical, make_superuser, make_user

pytestmark = pytest.mark.django_db

RAISED = dt.datetime(2026, 3, 2, 2, 0, tzinfo=dt.UTC)  # 10:00 in Nanjing
KIND = NotificationKind.QUERY_OVERDUE


def member(username: str, site, role: str = Role.COORDINATOR, **preferences):
    user = make_user(username, site, role=role, email=f"{username}@registry.example")
    if preferences:
        NotificationPreference.objects.create(user=user, **preferences)
    return user


def raise_at(when: dt.datetime, **kwargs):
    with time_machine.travel(when, tick=False):
        return query_raise(**kwargs)


def sweep(now: dt.datetime):
    with time_machine.travel(now, tick=False):
        return reminders_sweep(now=now)


def query_messages(to: str) -> list:
    """The e-mails to `to` about an overdue query (the coordinators get one e-mail per item here)."""
    return [m for m in mail.outbox if m.to == [to] and f"{KIND}:" in m.extra_headers["X-Registry-Keys"]]


def overdue_rows() -> list[tuple]:
    return sorted(Notification.objects.filter(kind=KIND).values_list("object_id", "stage", "recipient_email"))


@pytest.fixture
def world(site_a, site_b, study):
    a = make_clinical(site=site_a, study=study)
    b = make_clinical(site=site_b, study=study)
    monitor_a = member("mon_a", site_a, Role.MONITOR)
    monitor_b = member("mon_b", site_b, Role.MONITOR)
    member("coord_a", site_a, digest=False)
    member("coord_b", site_b, digest=False)
    member("inv_a", site_a, Role.INVESTIGATOR)
    old_a = raise_at(RAISED, target=a.patient, text="Consent date before diagnosis?", actor=monitor_a)
    young_a = raise_at(RAISED + dt.timedelta(days=5), target=a.patient, text="Birth year?", actor=monitor_a)
    old_b = raise_at(RAISED, target=b.patient, text="Sex as in the source?", actor=monitor_b)
    return a, b, monitor_a, old_a, young_a, old_b


def test_the_sweep_lists_each_overdue_query_once_per_coordinator_of_its_site(world):
    _, _, _, old_a, young_a, old_b = world
    report = sweep(RAISED + dt.timedelta(days=9))
    assert overdue_rows() == [
        (old_a.pk, "overdue", "coord_a@registry.example"),
        (old_b.pk, "overdue", "coord_b@registry.example"),
    ]
    assert report.inserted == 2 + Notification.objects.exclude(kind=KIND).count()  # and the visit reminders
    assert young_a.pk not in {row[0] for row in overdue_rows()}


def test_a_second_sweep_inserts_nothing(world):
    sweep(RAISED + dt.timedelta(days=9))
    first = overdue_rows()
    again = sweep(RAISED + dt.timedelta(days=9, hours=1))
    assert again.inserted == 0
    sweep(RAISED + dt.timedelta(days=12))  # days later: still the one row per query and coordinator
    assert overdue_rows() == first and len(first) == 2


def test_a_query_is_overdue_only_after_the_studys_limit(world, study):
    _, _, _, old_a, young_a, old_b = world
    sweep(RAISED + dt.timedelta(days=7, hours=23))  # 7 days old: not yet over the default limit of 7
    assert overdue_rows() == []
    edit_check_settings_save(study=study, rules={}, query_age_limit_days=2, actor=make_superuser("admin"))
    sweep(RAISED + dt.timedelta(days=8))  # the young one is 3 days old: over a limit of 2
    assert {row[0] for row in overdue_rows()} == {old_a.pk, young_a.pk, old_b.pk}


def test_answered_and_closed_queries_are_not_overdue(world):
    a, _, monitor_a, old_a, _, old_b = world
    query_answer(query=old_a, text="As in the source.", actor=member("coord_a2", a.site))
    query_close(query=old_b, actor=member("mon_b2", old_b.patient.site, Role.MONITOR))
    sweep(RAISED + dt.timedelta(days=9))
    assert overdue_rows() == []


def test_the_digest_names_the_query_and_links_to_it(world, settings):
    settings.REGISTRY_BASE_URL = "https://registry.example"
    _, _, _, old_a, _, _ = world
    now = RAISED + dt.timedelta(days=9, hours=4)  # 14:00 in Nanjing, after the sending hour
    sweep(now)
    with time_machine.travel(now, tick=False):
        notifications_send_due(now=now)
    (message,) = query_messages("coord_a@registry.example")
    assert f"https://registry.example/admin/quality/query/{old_a.pk}/change/" in message.body
    assert "Consent date before diagnosis?" in message.body
    assert "query open since 2026-03-02 (9 days)" in message.body
    assert old_a.patient.subject_code in message.subject
    assert "9 days" in message.alternatives[0][0]


def test_the_digest_in_chinese(world):
    _, _, _, old_a, _, _ = world
    NotificationPreference.objects.filter(user__username="coord_a").update(language="zh-hans")
    now = RAISED + dt.timedelta(days=9, hours=4)
    sweep(now)
    with time_machine.travel(now, tick=False):
        notifications_send_due(now=now)
    (message,) = query_messages("coord_a@registry.example")
    assert "患者：质疑自 2026-03-02 起未答复（已 9 天）" in message.body
    assert "质疑已 9 天未答复" in message.subject


def test_an_item_answered_before_sending_is_cancelled_not_sent(world):
    a, _, _, old_a, _, _ = world
    now = RAISED + dt.timedelta(days=9, hours=8)  # after the sending hour in Nanjing and in London
    sweep(now)
    with time_machine.travel(now, tick=False):
        query_answer(query=old_a, text="Corrected.", actor=member("coord_a3", a.site))
        notifications_send_due(now=now)
    row = Notification.objects.get(kind=KIND, object_id=old_a.pk)
    assert row.state == NotificationState.CANCELLED
    assert "answered or closed" in row.last_error
    assert query_messages("coord_a@registry.example") == []
    assert query_messages("coord_b@registry.example")  # the other site's query is still open
