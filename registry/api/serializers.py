from rest_framework import serializers

from core.api.serializers import ModelSerializer
from registry.constants import RELEASE_TEST_FIELDS
from registry.models import CellProduct, OutcomeSettings, Site, Study, VisitDefinition


class VisitDefinitionSerializer(ModelSerializer):
    class Meta:
        model = VisitDefinition
        fields = ["code", "label", "offset_days", "window_before_days", "window_after_days", "required_items"]


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
