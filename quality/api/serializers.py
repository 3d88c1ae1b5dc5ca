from django.utils import timezone
from rest_framework import serializers

from core.api.serializers import ModelSerializer
from quality.checks.rules import question
from quality.models import Query, QueryMessage
from quality.services.queries import RECORD_TYPE_OF_MODEL


class QueryMessageSerializer(ModelSerializer):
    class Meta:
        model = QueryMessage
        fields = ["kind", "actor", "door", "text", "value", "created_at"]


class QuerySerializer(ModelSerializer):
    study = serializers.CharField(source="study.code", read_only=True)
    subject_code = serializers.CharField(source="patient.subject_code", read_only=True)
    record_type = serializers.SerializerMethodField(
        help_text="visit, result, adverse_event, medication, transplant or patient."
    )
    record_id = serializers.IntegerField(source="object_id", read_only=True)
    question = serializers.SerializerMethodField(help_text="The question, in the request's language.")
    age_days = serializers.SerializerMethodField(help_text="Whole days since the query was raised.")
    messages = QueryMessageSerializer(many=True, read_only=True)

    class Meta:
        model = Query
        fields = [
            "id",
            "study",
            "subject_code",
            "record_type",
            "record_id",
            "field",
            "rule",
            "state",
            "question",
            "created_at",
            "age_days",
            "answered_at",
            "closed_at",
            "messages",
            "updated_at",
        ]

    def get_record_type(self, obj) -> str:
        return RECORD_TYPE_OF_MODEL.get(obj.content_type.model, obj.content_type.model)

    def get_question(self, obj) -> str:
        return question(obj.rule, obj.detail) if obj.rule else obj.text

    def get_age_days(self, obj) -> int:
        return (timezone.now() - obj.created_at).days


class QueryAnswerSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=2000, help_text="The site's answer.")
