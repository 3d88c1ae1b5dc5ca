"""Baselines: the same rows as the API reads and writes, with no authentication, scoping, validation,
idempotency or audit. Mounted only by `bench.urls` (config.settings.bench)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from django.db import transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from followup.models import Result, Visit

VISIT_FIELDS = ("id", "patient__study__code", "patient__subject_code", "code", "label", "target_date")
VISIT_FIELDS += ("window_start", "window_end", "outcome", "actual_date", "outcome_reason", "deviation_reason")
VISIT_FIELDS += ("sledai_items", "updated_at")


def bare_visit_list(request):
    """A page of a site's visits with their results, from .values() (the order and page of the API)."""
    site_id = int(request.GET["site"])
    size = int(request.GET.get("page_size", 50))
    visits = list(
        Visit.objects.filter(patient__site_id=site_id).order_by("updated_at", "id").values(*VISIT_FIELDS)[:size]
    )
    by_visit: dict[int, list] = {v["id"]: [] for v in visits}
    for row in (
        Result.objects.filter(visit_id__in=list(by_visit))
        .order_by("code")
        .values("visit_id", "code", "value", "entered_value", "entered_unit", "derived")
    ):
        by_visit[row.pop("visit_id")].append(row)
    for visit in visits:
        visit["results"] = by_visit[visit["id"]]
    return JsonResponse({"results": visits}, json_dumps_params={"default": str})


@csrf_exempt
def bare_visit_record(request, visit_id: int):
    """Mark the visit completed and insert its results as given (plus eGFR), with no check of any kind."""
    body = json.loads(request.body)
    now = timezone.now()
    rows = [
        Result(
            visit_id=visit_id,
            code=code,
            value=Decimal(str(entry["value"])),
            entered_value=Decimal(str(entry["value"])),
            entered_unit=entry.get("unit", ""),
            created_at=now,
            updated_at=now,
        )
        for code, entry in body["results"].items()
    ]
    rows.append(Result(visit_id=visit_id, code="EGFR", value=Decimal("90"), entered_unit="computed", derived=True))
    with transaction.atomic():
        Visit.objects.filter(pk=visit_id).update(
            outcome="completed", actual_date=dt.date.fromisoformat(body["actual_date"]), updated_at=now
        )
        Result.objects.bulk_create(rows)
    return JsonResponse({"id": visit_id, "results": len(rows)})
