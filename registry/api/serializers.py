import copy

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from registry.constants import RELEASE_TEST_FIELDS
from registry.models import CellProduct, OutcomeSettings, Site, Study, VisitDefinition


class ModelSerializer(serializers.ModelSerializer):
    """REST framework's ModelSerializer, with its fields worked out from the model once per class: DRF maps every
    model field afresh for each serializer it makes (about 1.5 ms for a visit, on every answer). Each serializer
    gets its own copies, as DRF gives it copies of the declared fields."""

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
            parsed = parse_datetime(value.strip())
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


class VisitDefinitionSerializer(ModelSerializer):
    class Meta:
        model = VisitDefinition
        fields = ["code", "label", "offset_days", "window_before_days", "window_after_days"]


class OutcomeSettingsSerializer(ModelSerializer):
    class Meta:
        model = OutcomeSettings
        exclude = ["id", "study"]


class StudySerializer(ModelSerializer):
    visit_definitions = VisitDefinitionSerializer(many=True, read_only=True)
    outcome_definitions = OutcomeSettingsSerializer(source="outcome_settings", read_only=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "code",
            "registration_id",
            "title",
            "phase",
            "status",
            "sponsor",
            "target_enrolment",
            "visit_definitions",
            "outcome_definitions",
            "updated_at",
        ]


class SiteSerializer(ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "code", "name", "country", "time_zone", "updated_at"]


class LotSerializer(ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="code", read_only=True)
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    donor = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = CellProduct
        fields = [
            "id",
            "lot_number",
            "study",
            "site",
            "donor",
            "tissue_source",
            "origin",
            "passage_number",
            "cryopreserved_on",
            "expires_on",
            "cells_per_unit",
            "units",
            *RELEASE_TEST_FIELDS,
            "release_status",
            "release_failures",
            "updated_at",
        ]


class LotWriteSerializer(ModelSerializer):
    """A lot recorded by its manufacturing site: the site is the key's, the study and donor by code."""

    study = serializers.CharField(help_text="Study code.")
    donor = serializers.CharField(help_text="Donor code within the study.")

    class Meta:
        model = CellProduct
        fields = [
            "lot_number",
            "study",
            "donor",
            "tissue_source",
            "origin",
            "passage_number",
            "cryopreserved_on",
            "expires_on",
            "cells_per_unit",
            "units",
            *RELEASE_TEST_FIELDS,
        ]
        extra_kwargs = {"lot_number": {"validators": []}}


class LotUpdateSerializer(LotWriteSerializer):
    reason = serializers.CharField(help_text="Why the lot record changes (kept in the audit trail).")

    class Meta(LotWriteSerializer.Meta):
        fields = [f for f in LotWriteSerializer.Meta.fields if f not in ("lot_number", "study", "donor")] + ["reason"]
