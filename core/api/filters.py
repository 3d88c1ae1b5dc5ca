"""Filters the API's lists share."""

import datetime as dt

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField


class InstantField(IsoDateTimeField):
    """An ISO 8601 instant, held in UTC: offsets beyond the real ones (-12:00 to +14:00) are refused, and so is
    an instant that falls outside the calendar once in UTC."""

    def to_python(self, value):
        instant = super().to_python(value)
        if instant is None:
            return None
        offset = instant.utcoffset()
        if offset is not None and abs(offset) > dt.timedelta(hours=14):
            raise forms.ValidationError("A UTC offset lies between -12:00 and +14:00.", code="invalid")
        try:
            return instant.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError("The instant is out of range.", code="invalid") from None


class InstantFilter(filters.IsoDateTimeFilter):
    field_class = InstantField


class UpdatedSinceFilter(filters.FilterSet):
    updated_since = InstantFilter(
        field_name="updated_at", lookup_expr="gte", help_text="Only objects changed at or after this instant."
    )
