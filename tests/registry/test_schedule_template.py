"""Follow-up templates: the default (docs/clinical-rules.md, "Follow-up schedule") and windows that must not overlap."""

from __future__ import annotations

import pytest

from registry.models import VisitDefinition
from registry.services import schedule_install_default, visit_definition_save
from tests.helpers import refused

pytestmark = pytest.mark.django_db

# docs/clinical-rules.md, "Follow-up schedule", transcribed: code, offset (days), window before, window after.
DOMAIN_DEFAULT_TEMPLATE = [
    ("BL", 0, 14, 0),
    ("D7", 7, 2, 2),
    ("M1", 30, 7, 7),
    ("M3", 91, 14, 14),
    ("M6", 182, 14, 14),
    ("M9", 274, 14, 14),
    ("M12", 365, 30, 30),
    ("M18", 547, 30, 30),
    ("M24", 730, 30, 30),
    ("M36", 1095, 30, 30),
    ("M48", 1460, 30, 30),
    ("M60", 1825, 30, 30),
]


def test_new_study_gets_the_default_template_with_twelve_time_points(study):
    installed = list(
        study.visit_definitions.order_by("offset_days").values_list(
            "code", "offset_days", "window_before_days", "window_after_days"
        )
    )

    assert installed == DOMAIN_DEFAULT_TEMPLATE


def test_installing_the_default_template_twice_adds_nothing(study):
    schedule_install_default(study=study)

    assert study.visit_definitions.count() == 12


def test_definition_overlapping_another_window_is_refused_and_names_both_visits(study):
    # Day 14 with a week before: days 7-14, which overlaps D7's window (days 5-9).
    definition = VisitDefinition(
        study=study, code="W2", label="Week 2", offset_days=14, window_before_days=7, window_after_days=0
    )

    with refused("window_before_days", "overlaps", VisitDefinition) as excinfo:
        visit_definition_save(definition=definition)

    message = " ".join(excinfo.value.message_dict["window_before_days"])
    assert "W2" in message
    assert "D7" in message
    assert not study.visit_definitions.filter(code="W2").exists()


def test_widening_an_existing_window_into_its_neighbour_is_refused_and_not_saved(study):
    m1 = study.visit_definitions.get(code="M1")
    m1.window_before_days = 21  # day 9, the last day of D7's window

    with refused("window_before_days", "overlaps", VisitDefinition) as excinfo:
        visit_definition_save(definition=m1)

    message = " ".join(excinfo.value.message_dict["window_before_days"])
    assert "M1" in message and "D7" in message
    m1.refresh_from_db()
    assert m1.window_before_days == 7


def test_definition_between_two_windows_is_saved(study):
    # Day 14 +/- 2: days 12-16, clear of D7 (5-9) and M1 (23-37).
    definition = visit_definition_save(
        definition=VisitDefinition(
            study=study, code="D14", label="Day 14", offset_days=14, window_before_days=2, window_after_days=2
        )
    )

    assert definition.pk is not None
    assert study.visit_definitions.count() == 13
