from django.core.exceptions import ValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.exceptions import PermissionDenied

from core.api.etags import IF_MATCH_HEADER, check_if_match
from core.api.idempotency import IDEMPOTENCY_HEADER, idempotent
from registry import services
from registry.api.base import PartnerViewSet
from registry.api.serializers import (
    LotSerializer,
    LotUpdateSerializer,
    LotWriteSerializer,
    SiteSerializer,
    StudySerializer,
)
from registry.models import CellProduct, Donor, Site, Study


class StudyViewSet(PartnerViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """The studies the key's site takes part in, with their follow-up template and outcome definitions."""

    serializer_class = StudySerializer
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may hold dots

    def base_queryset(self):
        return Study.objects.select_related("outcome_settings").prefetch_related("visit_definitions")


class SiteViewSet(PartnerViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """The key's own site."""

    serializer_class = SiteSerializer
    lookup_field = "code"
    lookup_value_regex = "[^/]+"  # codes may hold dots

    def base_queryset(self):
        return Site.objects.all()


class LotViewSet(PartnerViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Cell product lots of the key's studies; a manufacturing site's key may record and update its own lots."""

    serializer_class = LotSerializer
    lookup_field = "lot_number"
    lookup_value_regex = "[^/]+"  # lot numbers may hold dots
    filterset_fields = ["tissue_source", "release_status"]

    def base_queryset(self):
        return CellProduct.objects.select_related("study", "site", "donor")

    def _require_lot_writer(self):
        if not self.request.auth.can_write_lots:
            raise PermissionDenied("This key's site does not record cell product lots.")

    @extend_schema(request=LotWriteSerializer, responses={201: LotSerializer}, parameters=[IDEMPOTENCY_HEADER])
    @idempotent
    def create(self, request, *args, **kwargs):
        self._require_lot_writer()
        data = LotWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        study = Study.objects.for_sites([self.site_id]).filter(code=fields.pop("study")).first()
        if study is None:
            raise ValidationError({"study": "No study with this code takes part at your site."})
        donor = Donor.objects.filter(study=study, code=fields.pop("donor"), site_id=self.site_id).first()
        if donor is None:
            raise ValidationError({"donor": "No donor with this code at your site in this study."})
        with transaction.atomic():
            lot = services.lot_save(lot=CellProduct(study=study, donor=donor, site_id=self.site_id, **fields))
        return self.respond(lot, LotSerializer, status.HTTP_201_CREATED)

    @extend_schema(request=LotUpdateSerializer, responses={200: LotSerializer}, parameters=[IF_MATCH_HEADER])
    def partial_update(self, request, *args, **kwargs):
        self._require_lot_writer()
        lot = self.get_object()
        if lot.site_id != self.site_id:
            raise PermissionDenied("Only the manufacturing site may change this lot.")
        refused = check_if_match(request, lot)
        if refused:
            return refused
        data = LotUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        reason = fields.pop("reason", "")
        if not reason:
            raise ValidationError({"reason": "Give a reason for changing the lot."})
        for name, value in fields.items():
            setattr(lot, name, value)
        lot = services.lot_save(lot=lot, reason=reason)
        return self.respond(lot, LotSerializer)
