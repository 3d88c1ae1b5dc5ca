"""Assertions shared by the test modules."""

from __future__ import annotations

import contextlib

import pytest
from django.core.exceptions import ValidationError


def row_counts(*models) -> dict[str, int]:
    return {model._meta.label: model._base_manager.count() for model in models}


@contextlib.contextmanager
def refused(field: str, fragment: str, *models):
    """Expect a ValidationError on `field` whose message contains `fragment` (in any case), and no new rows in `models`.

    Usage: `with refused("lot", "expired on", TransplantEvent, Visit): transplant_record(...)`.
    """
    before = row_counts(*models)
    with pytest.raises(ValidationError) as excinfo:
        yield excinfo
    messages = excinfo.value.message_dict if hasattr(excinfo.value, "error_dict") else {}
    assert field in messages, f"expected an error on {field!r}, got {excinfo.value!r}"
    assert any(fragment.lower() in message.lower() for message in messages[field]), (
        f"no message on {field!r} contains {fragment!r}: {messages[field]}"
    )
    assert row_counts(*models) == before, "a refused write must not save anything"
