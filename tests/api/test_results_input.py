"""`ResultsInputField` checks each result entry with `ResultInputSerializer`'s own fields, without running the
serializer per entry: what it accepts, and every error it gives, are what DRF's nested serializer gives."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from followup.api.serializers import ResultInputSerializer, ResultsInputField

CASES = [
    {"CREAT": {"value": 70}},
    {"CREAT": {"value": "0.9", "unit": "mg/dL"}, "PLT": {"value": 210.5}},
    {"CREAT": {"value": 70, "unit": "umol/L", "other": "ignored"}},
    {},
    {"CREAT": {}},
    {"CREAT": {"value": None}},
    {"CREAT": {"value": "seventy"}},
    {"CREAT": {"value": 1e20}},
    {"CREAT": {"value": "0.123456"}},
    {"CREAT": {"value": 70, "unit": None}},
    {"CREAT": {"value": 70, "unit": ""}},
    {"CREAT": {"value": 70, "unit": "x" * 21}},
    {"CREAT": {"value": 70, "unit": 5}},
    {"CREAT": None},
    {"CREAT": "70"},
    {"CREAT": [70]},
    {"CREAT": {"value": "bad"}, "PLT": {"value": 210}, "C3": None},
    "not an object",
    [{"value": 1}],
]


def outcome(field, data):
    try:
        return "valid", field.run_validation(data)
    except serializers.ValidationError as exc:
        return "invalid", exc.detail


@pytest.mark.parametrize("data", CASES, ids=[str(i) for i in range(len(CASES))])
def test_results_are_checked_as_the_nested_serializer_checks_them(data):
    drf = serializers.DictField(child=ResultInputSerializer(), required=False)
    flat = ResultsInputField(required=False)
    expected, got = outcome(drf, data), outcome(flat, data)
    assert got == expected
    if expected[0] == "invalid":  # the same error codes too (the detail compares by message only)
        assert repr(got[1]) == repr(expected[1])
