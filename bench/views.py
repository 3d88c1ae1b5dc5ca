"""Baselines: the same rows as the API reads and writes, with no authentication, scoping, validation,
idempotency or audit. Mounted only by `bench.urls` (config.settings.bench)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.template import Context, Template
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


# Workload 8: bare pages of the rows each coordinator page shows ----------------------------------------

BARE_PAGE = Template(
    "<!doctype html><html><body>{% for name, rows in tables %}<h2>{{ name }}</h2><table>"
    "{% for row in rows %}<tr>{% for value in row.values %}<td>{{ value }}</td>{% endfor %}</tr>{% endfor %}"
    "</table>{% endfor %}</body></html>"
)
PER_PAGE = 100  # the admin lists' page


def _bare_rows(name: str, site_ids: list[int], params) -> list[tuple[str, list[dict]]]:
    """The rows of each bare page, read with `.values()`.

    Long because it holds one branch per page of the workload, the worklist's mirroring each of its sections."""
    from followup.models import AdverseEvent, SafetySignal
    from patients.constants import INACTIVE_STATUSES
    from patients.models import ConcomitantMedication, Patient, TransplantEvent

    if name == "worklist":
        # What the worklist shows (followup/selectors.py): the first rows of each section, most urgent first,
        # and the counts per site and section. Dates in UTC (the worklist counts each site's own today).
        from django.db.models import Count, Q

        from followup.selectors import WORKLIST_ROWS

        today = dt.datetime.now(dt.UTC).date()
        horizon = today + dt.timedelta(days=14)
        open_visits = Visit.objects.filter(patient__site_id__in=site_ids).exclude(patient__status__in=INACTIVE_STATUSES)
        sections = {
            "in progress": Visit.objects.filter(patient__site_id__in=site_ids, outcome="in_progress"),
            "overdue": open_visits.filter(outcome="open", window_end__lt=today),
            "due": open_visits.filter(outcome="open", window_start__lte=today, window_end__gte=today),
            "coming": open_visits.filter(outcome="open", window_start__gt=today, window_start__lte=horizon),
        }
        fields = ("id", "code", "label", "window_start", "window_end", "patient__subject_code")
        tables = []
        for section, visits in sections.items():
            counts = visits.order_by().values("patient__site_id").annotate(n=Count("pk"))
            tables.append((f"{section}: counts", list(counts)))
            tables.append(
                (
                    section,
                    list(visits.order_by("window_end", "patient__subject_code", "pk").values(*fields)[:WORKLIST_ROWS]),
                )
            )
        signals = SafetySignal.objects.filter(patient__site_id__in=site_ids, status="open")
        tables.append(("signals: counts", list(signals.order_by().values("patient__site_id").annotate(n=Count("pk")))))
        tables.append(
            (
                "signals",
                list(
                    signals.order_by("-severity", "created_at", "pk").values(
                        "id", "kind", "severity", "patient__subject_code"
                    )[:WORKLIST_ROWS]
                ),
            )
        )
        pending = Q(initial_report_due__isnull=False, initial_report_submitted_on__isnull=True)
        reports = AdverseEvent.objects.filter(pending, patient__site_id__in=site_ids)
        tables.append(("reports: counts", list(reports.order_by().values("patient__site_id").annotate(n=Count("pk")))))
        tables.append(
            (
                "reports",
                list(
                    reports.order_by("initial_report_due", "pk").values("id", "term", "initial_report_due")[
                        :WORKLIST_ROWS
                    ]
                ),
            )
        )
        return tables
    if name == "patient":
        pk = int(params["patient"])
        return [
            ("patient", list(Patient.objects.filter(pk=pk, site_id__in=site_ids).values())),
            ("visits", list(Visit.objects.filter(patient_id=pk).order_by("target_date").values())),
            ("results", list(Result.objects.filter(visit__patient_id=pk).order_by().values())),
            ("infusions", list(TransplantEvent.objects.filter(patient_id=pk).values())),
            ("adverse events", list(AdverseEvent.objects.filter(patient_id=pk).values())),
            ("medications", list(ConcomitantMedication.objects.filter(patient_id=pk).values())),
        ]
    if name == "visits":
        fields = ("id", "patient__subject_code", "code", "label", "target_date", "window_start", "window_end")
        rows = Visit.objects.filter(patient__site_id__in=site_ids).order_by("-pk").values(*fields, "actual_date")
        return [("visits", list(rows[:PER_PAGE]))]
    if name == "results":
        fields = ("id", "visit__patient__subject_code", "visit__code", "code", "value", "entered_value")
        rows = Result.objects.filter(visit__patient__site_id__in=site_ids).order_by("-pk").values(*fields)
        return [("results", list(rows.values(*fields, "entered_unit", "derived")[:PER_PAGE]))]
    if name == "report":
        from registry.models import Study

        return [("study", list(Study.objects.filter(pk=int(params["study"])).values()))]
    raise Http404(name)


def bare_page(request, name: str):
    """The rows a coordinator page shows (workload 8), read with `.values()` for the signed-in user's sites
    and written into a plain HTML table: no admin, no permissions beyond the session, no forms."""
    from registry.models import Site

    site_ids = list(Site.objects.for_user(request.user).values_list("pk", flat=True))
    tables = _bare_rows(name, site_ids, request.GET)
    return HttpResponse(BARE_PAGE.render(Context({"tables": tables})))
