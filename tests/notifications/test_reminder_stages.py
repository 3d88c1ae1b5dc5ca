"""The reminder stage of an open visit on a given day (`notifications.ledger.visit_stage`), under the default
and a study's own reminder policy."""

from __future__ import annotations

import datetime as dt

import pytest

from notifications.ledger import (
    visit_stage,
)
from registry.models import ReminderPolicy

pytestmark = pytest.mark.django_db

D = dt.date


# Stages ------------------------------------------------------------------------------------------------

M3_WINDOW = {"window_start": D(2026, 4, 2), "window_end": D(2026, 4, 30)}


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 3, 25), None),  # 8 days before the window opens: nothing yet
        (D(2026, 3, 26), "upcoming"),  # 7 days before
        (D(2026, 4, 1), "upcoming"),
        (D(2026, 4, 2), "due"),  # the opening day
        (D(2026, 4, 26), "due"),  # 4 days before the end
        (D(2026, 4, 27), "closing"),  # 3 days before the end
        (D(2026, 4, 30), "closing"),  # the last day of the window
        (D(2026, 5, 1), "overdue-1"),  # the day after the window closed
        (D(2026, 5, 7), "overdue-1"),
        (D(2026, 5, 8), "overdue-2"),  # a week later
        (D(2026, 5, 15), "overdue-3"),
        (D(2026, 5, 22), "overdue-4"),
        (D(2026, 5, 28), "overdue-4"),
        (D(2026, 5, 29), "escalated"),  # after the fourth (overdue_max_reminders) weekly reminder
        (D(2026, 8, 1), "escalated"),
    ],
)
def test_visit_stage_follows_the_default_policy(today, expected):
    assert visit_stage(**M3_WINDOW, today=today, policy=ReminderPolicy()) == expected


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 1, 12), None),
        (D(2026, 1, 13), "upcoming"),
        (D(2026, 1, 20), "due"),  # a 2/2 window is still announced as open on its first day
        (D(2026, 1, 21), "closing"),
        (D(2026, 1, 24), "closing"),
        (D(2026, 1, 25), "overdue-1"),
    ],
)
def test_visit_stage_of_a_short_day_7_window(today, expected):
    stage = visit_stage(window_start=D(2026, 1, 20), window_end=D(2026, 1, 24), today=today, policy=ReminderPolicy())

    assert stage == expected


def test_visit_stage_of_a_one_day_window_is_due_on_that_day():
    one_day = {"window_start": D(2026, 3, 3), "window_end": D(2026, 3, 3), "policy": ReminderPolicy()}

    assert visit_stage(**one_day, today=D(2026, 3, 2)) == "upcoming"
    assert visit_stage(**one_day, today=D(2026, 3, 3)) == "due"
    assert visit_stage(**one_day, today=D(2026, 3, 4)) == "overdue-1"


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 3, 29), None),
        (D(2026, 3, 30), "upcoming"),  # upcoming_days=3
        (D(2026, 4, 28), "due"),
        (D(2026, 4, 29), "closing"),  # closing_days=1
        (D(2026, 5, 1), "overdue-1"),
        (D(2026, 5, 3), "overdue-1"),
        (D(2026, 5, 4), "overdue-2"),  # overdue_repeat_days=3
        (D(2026, 5, 7), "escalated"),  # overdue_max_reminders=2
    ],
)
def test_visit_stage_follows_the_study_policy(today, expected):
    policy = ReminderPolicy(upcoming_days=3, closing_days=1, overdue_repeat_days=3, overdue_max_reminders=2)

    assert visit_stage(**M3_WINDOW, today=today, policy=policy) == expected
