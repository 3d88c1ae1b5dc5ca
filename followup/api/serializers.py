import operator
from collections.abc import Mapping
from decimal import Decimal

from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.fields import SkipField, empty
from rest_framework.settings import api_settings

from core.api.serializers import DataQualityField, ModelSerializer, OffsetDateTimeField
from followup import constants as c
from followup.catalogue import ANALYTES, SLEDAI_ITEMS
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit


class ResultSerializer(ModelSerializer):
    unit = serializers.SerializerMethodField()
    visit_code = serializers.CharField(source="visit.code", read_only=True)
    subject_code = serializers.CharField(source="visit.patient.subject_code", read_only=True)

    class Meta:
        model = Result
        fields = [
            "id",
            "subject_code",
            "visit_code",
            "code",
            "comparator",
            "value",
            "unit",
            "entered_value",
            "entered_unit",
            "derived",
            "updated_at",
        ]
        extra_kwargs = {"comparator": {"help_text": c.COMPARATOR_HELP}}

    def get_unit(self, obj) -> str:
        return ANALYTES[obj.code].unit


class VisitResultListSerializer(serializers.ListSerializer):
    """A visit's results: the rows the visit list attached (`result_rows`, dicts), else its prefetched results."""

    def get_attribute(self, instance):
        rows = getattr(instance, "result_rows", None)
        return rows if rows is not None else super().get_attribute(instance)


def _decimal(field: serializers.DecimalField, value):
    """`field.to_representation(value)`. A Decimal as the database returns it already has the field's decimal
    places, and when the field neither coerces to a string nor normalises, quantizing it gives it back
    unchanged: it is returned as it is (DRF's quantize copies a decimal context for every value)."""
    if (
        type(value) is Decimal
        and value.as_tuple().exponent == -field.decimal_places
        and not getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
        and not field.normalize_output
    ):
        return value
    return field.to_representation(value)


RESULT_ROW_FIELDS = ("code", "value", "entered_value", "entered_unit", "derived", "comparator")


class VisitResultSerializer(ModelSerializer):
    unit = serializers.SerializerMethodField()

    class Meta:
        model = Result
        fields = ["code", "comparator", "value", "unit", "entered_value", "entered_unit", "derived"]
        extra_kwargs = {"comparator": {"help_text": c.COMPARATOR_HELP}}
        list_serializer_class = VisitResultListSerializer

    def get_unit(self, obj) -> str:
        return ANALYTES[obj.code].unit

    def to_representation(self, instance):
        """The fields above without DRF's per-field lookups (a page of 100 visits has about 1,100 results).
        `instance` is a Result or a dict of RESULT_ROW_FIELDS."""
        row = instance if isinstance(instance, dict) else {name: getattr(instance, name) for name in RESULT_ROW_FIELDS}
        fields = self.fields
        value, entered = row["value"], row["entered_value"]
        return {
            "code": row["code"],
            "comparator": row["comparator"],
            "value": None if value is None else _decimal(fields["value"], value),
            "unit": ANALYTES[row["code"]].unit,
            "entered_value": None if entered is None else _decimal(fields["entered_value"], entered),
            "entered_unit": row["entered_unit"],
            "derived": row["derived"],
        }


class OutcomeSerializer(ModelSerializer):
    visit_code = serializers.CharField(source="visit.code", read_only=True)
    subject_code = serializers.CharField(source="visit.patient.subject_code", read_only=True)

    class Meta:
        model = ComputedOutcome
        fields = ["id", "subject_code", "visit_code", *ComputedOutcome.COMPUTED_FIELDS, "computed_at"]


class VisitSerializer(ModelSerializer):
    study = serializers.CharField(source="patient.study.code", read_only=True)
    subject_code = serializers.CharField(source="patient.subject_code", read_only=True)
    state = serializers.ChoiceField(choices=c.VisitState.choices, read_only=True)
    results = VisitResultSerializer(many=True, read_only=True)
    not_done = serializers.DictField(
        child=serializers.ChoiceField(choices=c.NotDoneReason.choices),
        read_only=True,
        help_text="Required items without a value, by result code, with the reason.",
    )
    missing_items = serializers.SerializerMethodField(
        help_text="Required items of the visit with neither a value nor a reason they were not done: what "
        "completing the visit still needs."
    )

    data_quality = DataQualityField()

    class Meta:
        model = Visit
        fields = [
            "id",
            "study",
            "subject_code",
            "code",
            "label",
            "target_date",
            "window_start",
            "window_end",
            "state",
            "outcome",
            "actual_date",
            "outcome_reason",
            "deviation_reason",
            "sledai_items",
            "results",
            "not_done",
            "missing_items",
            "updated_at",
            "data_quality",
        ]

    def get_missing_items(self, obj) -> list[str]:
        if obj.outcome not in c.ENTERED_OUTCOMES:
            return []
        if hasattr(obj, "missing_items"):  # as the recording left it
            return obj.missing_items
        rows = getattr(obj, "result_rows", None)
        codes = {row["code"] for row in rows} if rows is not None else {r.code for r in obj.results.all()}
        return obj.required_missing(codes)

    def to_representation(self, instance):
        """DRF's loop over the readable fields, each attribute read by a plain getter (DRF walks each source
        step by step, checking for mappings and callables); nested serializers keep their own lookup."""
        ret = {}
        for name, getter, field in self._plan:
            attribute = getter(instance) if getter else field.get_attribute(instance)
            ret[name] = None if attribute is None else field.to_representation(attribute)
        return ret

    @cached_property
    def _plan(self) -> list:
        plan = []
        for field in self._readable_fields:
            plain = not isinstance(field, serializers.BaseSerializer) and field.source != "*"
            plan.append((field.field_name, operator.attrgetter(field.source) if plain else None, field))
        return plan


class ResultInputSerializer(serializers.Serializer):
    value = serializers.DecimalField(max_digits=14, decimal_places=4)
    unit = serializers.CharField(required=False, max_length=20, help_text="Defaults to the canonical unit.")
    comparator = serializers.ChoiceField(
        choices=c.Comparator.choices,
        required=False,
        allow_blank=True,  # "" (as read back) or null: an exact value
        allow_null=True,
        help_text="Only for a laboratory result the laboratory reports censored (below its limit of detection, "
        "above its range): '<', '<=', '>=' or '>' (as FHIR's Quantity.comparator), and `value` is the limit. "
        'Omit it (or send "" or null) for an exact value. E.g. {"value": 10, "comparator": "<", "unit": "IU/mL"}.',
    )


class ResultsInputField(serializers.DictField):
    """Results by code, each as `ResultInputSerializer` takes it: each entry's fields are checked directly by
    that serializer's fields (the same rules and messages), without a serializer's run per entry (a batch of
    500 visits has 5,000 of them)."""

    def __init__(self, **kwargs):
        super().__init__(child=ResultInputSerializer(), **kwargs)

    def run_child_validation(self, data):
        fields = [field for field in self.child.fields.values() if not field.read_only]
        result, errors = {}, {}
        for key, entry in data.items():
            key = str(key)
            if not isinstance(entry, Mapping):  # null or not an object: the serializer's own error
                try:
                    result[key] = self.child.run_validation(entry)
                except serializers.ValidationError as exc:
                    errors[key] = exc.detail
                continue
            item, item_errors = {}, {}
            for field in fields:
                try:
                    item[field.field_name] = field.run_validation(entry.get(field.field_name, empty))
                except serializers.ValidationError as exc:
                    item_errors[field.field_name] = exc.detail
                except SkipField:
                    pass
            if item_errors:
                errors[key] = item_errors
            else:
                result[key] = item
        if errors:
            raise serializers.ValidationError(errors)
        return result


class VisitRecordSerializer(serializers.Serializer):
    actual_date = serializers.DateField()
    results = ResultsInputField(
        required=False,
        help_text=f'By result code: {", ".join(ANALYTES)}. E.g. {{"CREAT": {{"value": 0.9, "unit": "mg/dL"}}}}.',
    )
    sledai_items = serializers.ListField(
        child=serializers.ChoiceField(choices=list(SLEDAI_ITEMS)),
        required=False,
        allow_null=True,
        help_text="SLEDAI-2K items present; [] when assessed with none present; omit when not assessed.",
    )
    deviation_reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=2000, help_text="Required when correcting a recorded visit."
    )
    remove = serializers.ListField(child=serializers.ChoiceField(choices=list(ANALYTES)), required=False)
    status = serializers.ChoiceField(
        choices=c.RecordStatus.choices,
        default=c.RecordStatus.COMPLETE,
        help_text='"complete" (the default) completes the visit: each of its required items (the study\'s visit '
        'definitions, `required_items`) recorded, or given in `not_done`. "in_progress" stores what is sent and '
        "keeps the visit open for more; the answer's `missing_items` lists what completing still needs.",
    )
    not_done = serializers.DictField(
        child=serializers.ChoiceField(choices=c.NotDoneReason.choices),
        required=False,
        allow_empty=True,
        help_text='Why required items have no value, by result code, e.g. {"C4": "not_available"}. Replaces '
        "what is stored; omit to keep it.",
    )


class VisitRecordByKeySerializer(VisitRecordSerializer):
    study = serializers.CharField(max_length=30)
    subject_code = serializers.CharField(max_length=40)
    visit_code = serializers.CharField(max_length=10)


class VisitBatchItemSerializer(VisitRecordSerializer):
    subject_code = serializers.CharField(max_length=40)
    visit_code = serializers.CharField(max_length=10)
    version = serializers.CharField(
        required=False,
        max_length=200,
        help_text="To correct a visit already recorded (or missed): the ETag of the version you are correcting "
        "(or give its `updated_at`); without either 428, a stale one 412.",
    )
    updated_at = OffsetDateTimeField(
        required=False, help_text="To correct a recorded visit: the `updated_at` of the version you are correcting."
    )


class VisitRecordBatchSerializer(serializers.Serializer):
    study = serializers.CharField(max_length=30)
    visits = serializers.ListField(
        child=VisitBatchItemSerializer(),
        min_length=1,
        max_length=c.MAX_BATCH_VISITS,
        help_text=f"Up to {c.MAX_BATCH_VISITS} visits, each named by subject code and visit code, with what "
        "`visits/record/` takes for one visit. All are recorded, or none; an error names the visit by its index "
        "(`visits.3.actual_date`).",
    )


class VisitBatchRecordedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subject_code = serializers.CharField()
    visit_code = serializers.CharField()
    outcome = serializers.CharField()
    actual_date = serializers.DateField()
    missing_items = serializers.ListField(child=serializers.CharField())
    updated_at = serializers.DateTimeField()


class VisitBatchResultSerializer(serializers.Serializer):
    study = serializers.CharField()
    recorded = serializers.IntegerField(help_text="The number of visits recorded.")
    visits = VisitBatchRecordedSerializer(many=True, help_text="In the order of the request.")


class VisitMissedSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)


AE_FIELDS = [
    "term",
    "category",
    "onset_date",
    "resolution_date",
    "grade",
    "serious_death",
    "serious_life_threatening",
    "serious_hospitalisation",
    "serious_disability",
    "serious_congenital_anomaly",
    "serious_other_important",
    "relatedness",
    "expected",
    "action_taken",
    "outcome",
    "aware_date",
    "description",
]


class AdverseEventSerializer(ModelSerializer):
    study = serializers.CharField(source="patient.study.code", read_only=True)
    subject_code = serializers.CharField(source="patient.subject_code", read_only=True)
    infusion_number = serializers.IntegerField(source="transplant.infusion_number", read_only=True, allow_null=True)
    serious = serializers.BooleanField(read_only=True)
    is_susar = serializers.BooleanField(read_only=True)

    data_quality = DataQualityField()

    class Meta:
        model = AdverseEvent
        fields = [
            "id",
            "study",
            "subject_code",
            "infusion_number",
            *AE_FIELDS,
            "pre_treatment",
            "serious",
            "is_susar",
            "initial_report_due",
            "complete_report_due",
            "initial_report_submitted_on",
            "complete_report_submitted_on",
            "updated_at",
            "data_quality",
        ]


class AdverseEventCreateSerializer(ModelSerializer):
    study = serializers.CharField(max_length=30)
    subject_code = serializers.CharField(max_length=40)
    infusion_number = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="The infusion, for an infusion-related event."
    )

    class Meta:
        model = AdverseEvent
        fields = ["study", "subject_code", "infusion_number", *AE_FIELDS]


class AdverseEventUpdateSerializer(ModelSerializer):
    reason = serializers.CharField(max_length=2000)

    class Meta:
        model = AdverseEvent
        fields = [f for f in AE_FIELDS if f != "aware_date"] + ["reason"]
        extra_kwargs = {name: {"required": False} for name in AE_FIELDS}


class ReportSubmissionSerializer(serializers.Serializer):
    report = serializers.ChoiceField(choices=[("initial", "initial"), ("complete", "complete")])
    on_date = serializers.DateField()
