"""Serializer building blocks the API's apps share, and reading a request body through a serializer."""

import copy

from django.db import models
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.spreadsheets import strip_keeping_formula_start


def valid(serializer_class, request, **kwargs) -> dict:
    """The request body, validated by `serializer_class` (a 400 naming each field otherwise)."""
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class TextField(serializers.CharField):
    """REST framework's CharField, trimming white space as it does, except a tab or a carriage return at the
    start: text starting so is one a spreadsheet would run, which the services refuse where no real text
    starts so (`core.spreadsheets`); trimmed, "\\t=cmd" would reach them as something else."""

    def to_internal_value(self, data):
        trim, self.trim_whitespace = self.trim_whitespace, False
        try:
            value = super().to_internal_value(data)
        finally:
            self.trim_whitespace = trim
        return strip_keeping_formula_start(value) if trim else value


class ModelSerializer(serializers.ModelSerializer):
    """REST framework's ModelSerializer, with its fields worked out from the model once per class: DRF maps every
    model field afresh for each serializer it makes (about 1.5 ms for a visit, on every answer). Each serializer
    gets its own copies, as DRF gives it copies of the declared fields. Text of the model is read by
    `TextField`."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: TextField,
        models.TextField: TextField,
    }

    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()
            cls._fields_built = built
        return copy.deepcopy(built)


class OffsetDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date-time that must carry its UTC offset: a bare local time is ambiguous across sites, so it
    is refused rather than read in some default zone."""

    default_error_messages = {
        "naive": "A date-time without a time zone is ambiguous: give its UTC offset (e.g. 2026-03-01T09:30:00+08:00).",
    }

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:  # well formed, but no instant (minute 60, June 31): REST framework's "invalid"
                self.fail("invalid", format="YYYY-MM-DDThh:mm[:ss[.uuuuuu]]+HH:MM")
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


class DataQualitySerializer(serializers.Serializer):
    source_verified = serializers.BooleanField(help_text="Verified against source by a monitor, unchanged since.")
    verified_at = serializers.DateTimeField(allow_null=True)
    signed = serializers.BooleanField(help_text="Signed by an investigator (the record itself).")
    signed_at = serializers.DateTimeField(allow_null=True)
    locked = serializers.BooleanField(help_text="Writes are refused (423): locked, or signed (itself or its casebook).")
    lock_reason = serializers.CharField(allow_blank=True)


@extend_schema_field(DataQualitySerializer)
class DataQualityField(serializers.Field):
    """The record's source verification, signature and lock (`core.record_status`), read only."""

    def __init__(self, **kwargs):
        kwargs.update(source="*", read_only=True)
        kwargs.setdefault("help_text", "Source verification, investigator signature and lock of the record.")
        super().__init__(**kwargs)

    def to_representation(self, value):
        from core import record_status

        status = record_status.status_of(value)
        return None if status is None else DataQualitySerializer(status).data
