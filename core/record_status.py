"""Where an app higher up (data quality) adds the status of a clinical record to what the API shows, without
the record's app importing it: it registers, per model, a function that annotates a queryset and one that
reads the status of an object. The API's base viewset annotates every queryset it serves; the serializers
of visits, adverse events and patients show `data_quality` from `status_of`."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Model, QuerySet

_annotators: dict[str, Callable[[QuerySet], QuerySet]] = {}
_readers: dict[str, Callable[[Model], dict]] = {}


def register(model_label: str, *, annotate: Callable[[QuerySet], QuerySet], read: Callable[[Model], dict]) -> None:
    _annotators[model_label] = annotate
    _readers[model_label] = read


def annotate(queryset: QuerySet) -> QuerySet:
    annotator = _annotators.get(queryset.model._meta.label)
    return annotator(queryset) if annotator else queryset


def status_of(obj: Model) -> dict | None:
    reader = _readers.get(type(obj)._meta.label)
    return reader(obj) if reader else None
