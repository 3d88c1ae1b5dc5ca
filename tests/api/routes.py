"""Every partner API route, as a table: (route name, method, URL builder, payload builder, target).

Builders take the world and a side ("a" or "b") and name that side's objects, so one row serves both the
owner's requests (which must succeed) and another site's (which must not). A test in
`test_authorization_matrix.py` fails when the router has a route this table does not cover.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from core.api.etags import etag_of
from tests.api.conftest import (
    SHARED_STUDY,
    World,
    adverse_event_payload,
    lot_payload,
    medication_payload,
    patient_payload,
    transplant_payload,
    visit_batch_payload,
    visit_record_by_key_payload,
    visit_record_payload,
)

V1 = "/api/v1"


@dataclass(frozen=True)
class Route:
    name: str  # the router's URL name, e.g. "patient-detail"
    method: str
    url: Callable[[World, str], str]
    payload: Callable[[World, str], dict] | None = None
    target: Callable[[World, str], object] | None = None  # the object a detail route names
    if_match: bool = False  # needs If-Match (updates)
    lots: bool = False  # a lot write (needs can_write_lots)
    success: int = 200  # status of the owner's valid request

    @property
    def id(self) -> str:
        return f"{self.method} {self.name}"

    @property
    def is_write(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")

    @property
    def is_list(self) -> bool:
        return self.name.endswith("-list") and self.method == "GET"

    def headers(self, world: World, side: str) -> dict:
        if not self.if_match:
            return {}
        obj = self.target(world, side)
        obj.refresh_from_db()
        return {"If-Match": etag_of(obj)}


def _lot(w: World, s: str):
    # Site B's lots of the shared study are seen by A by design (A's patients may receive them); site B's
    # own is the lot of the study A does not take part in.
    return w.a.lot if s == "a" else w.lot_b_only


def _study_code(w: World, s: str) -> str:
    return SHARED_STUDY if s == "a" else w.study_b_only.code


def _subject(w: World, s: str) -> str:
    return w.side(s).patient.subject_code


ROUTES: list[Route] = [
    # Studies and sites (read only)
    Route("study-list", "GET", lambda w, s: f"{V1}/studies/"),
    Route(
        "study-detail",
        "GET",
        lambda w, s: f"{V1}/studies/{_study_code(w, s)}/",
        target=lambda w, s: w.study if s == "a" else w.study_b_only,
    ),
    Route("site-list", "GET", lambda w, s: f"{V1}/sites/"),
    Route("site-detail", "GET", lambda w, s: f"{V1}/sites/{w.side(s).site.code}/", target=lambda w, s: w.side(s).site),
    # Lots
    Route("lot-list", "GET", lambda w, s: f"{V1}/lots/"),
    Route(
        "lot-list",
        "POST",
        lambda w, s: f"{V1}/lots/",
        payload=lambda w, s: lot_payload(SHARED_STUDY, w.side(s).lot.donor.code, lot_number=f"LOT-{s.upper()}-NEW"),
        lots=True,
        success=201,
    ),
    Route("lot-detail", "GET", lambda w, s: f"{V1}/lots/{_lot(w, s).lot_number}/", target=_lot),
    Route(
        "lot-detail",
        "PATCH",
        lambda w, s: f"{V1}/lots/{_lot(w, s).lot_number}/",
        payload=lambda w, s: {"units": 12, "reason": "Stock recounted"},
        target=_lot,
        if_match=True,
        lots=True,
    ),
    # Patients
    Route("patient-list", "GET", lambda w, s: f"{V1}/patients/"),
    Route(
        "patient-list",
        "POST",
        lambda w, s: f"{V1}/patients/",
        payload=lambda w, s: patient_payload(subject_code=f"{s.upper()}-NEW"),
        success=201,
    ),
    Route(
        "patient-detail",
        "GET",
        lambda w, s: f"{V1}/patients/{w.side(s).patient.pk}/",
        target=lambda w, s: w.side(s).patient,
    ),
    Route(
        "patient-detail",
        "PATCH",
        lambda w, s: f"{V1}/patients/{w.side(s).patient.pk}/",
        payload=lambda w, s: {"birth_year": 1991, "reason": "Year of birth corrected from the ID card"},
        target=lambda w, s: w.side(s).patient,
        if_match=True,
    ),
    Route(
        "patient-status",
        "POST",
        lambda w, s: f"{V1}/patients/{w.side(s).patient.pk}/status/",
        payload=lambda w, s: {"status": "completed", "on_date": "2026-03-10", "reason": "Follow-up completed"},
        target=lambda w, s: w.side(s).patient,
        if_match=True,
    ),
    # Transplants
    Route("transplant-list", "GET", lambda w, s: f"{V1}/transplants/"),
    Route(
        "transplant-list",
        "POST",
        lambda w, s: f"{V1}/transplants/",
        payload=lambda w, s: transplant_payload(SHARED_STUDY, _subject(w, s), w.side(s).lot.lot_number),
        success=201,
    ),
    Route(
        "transplant-detail",
        "GET",
        lambda w, s: f"{V1}/transplants/{w.side(s).transplant.pk}/",
        target=lambda w, s: w.side(s).transplant,
    ),
    # Medications
    Route("medication-list", "GET", lambda w, s: f"{V1}/medications/"),
    Route(
        "medication-list",
        "POST",
        lambda w, s: f"{V1}/medications/",
        payload=lambda w, s: medication_payload(SHARED_STUDY, _subject(w, s)),
        success=201,
    ),
    Route(
        "medication-detail",
        "GET",
        lambda w, s: f"{V1}/medications/{w.side(s).medication.pk}/",
        target=lambda w, s: w.side(s).medication,
    ),
    Route(
        "medication-detail",
        "PATCH",
        lambda w, s: f"{V1}/medications/{w.side(s).medication.pk}/",
        payload=lambda w, s: {"dose": "7.5", "reason": "Tapered"},
        target=lambda w, s: w.side(s).medication,
        if_match=True,
    ),
    # Visits
    Route("visit-list", "GET", lambda w, s: f"{V1}/visits/"),
    Route(
        "visit-record-by-key",
        "POST",
        lambda w, s: f"{V1}/visits/record/",
        payload=lambda w, s: visit_record_by_key_payload(SHARED_STUDY, _subject(w, s)),
    ),
    Route(
        "visit-record-batch",
        "POST",
        lambda w, s: f"{V1}/visits/record-batch/",
        payload=lambda w, s: visit_batch_payload(SHARED_STUDY, _subject(w, s)),
    ),
    Route(
        "visit-detail",
        "GET",
        lambda w, s: f"{V1}/visits/{w.side(s).visit('BL').pk}/",
        target=lambda w, s: w.side(s).visit("BL"),
    ),
    Route(
        "visit-record",
        "POST",
        lambda w, s: f"{V1}/visits/{w.side(s).visit('M3').pk}/record/",
        payload=lambda w, s: visit_record_payload(),
        target=lambda w, s: w.side(s).visit("M3"),
    ),
    Route(
        "visit-missed",
        "POST",
        lambda w, s: f"{V1}/visits/{w.side(s).visit('M9').pk}/missed/",
        payload=lambda w, s: {"reason": "The patient was abroad"},
        target=lambda w, s: w.side(s).visit("M9"),
    ),
    # Results and outcomes (read only)
    Route("result-list", "GET", lambda w, s: f"{V1}/results/"),
    Route(
        "result-detail",
        "GET",
        lambda w, s: f"{V1}/results/{w.side(s).result.pk}/",
        target=lambda w, s: w.side(s).result,
    ),
    Route("outcome-list", "GET", lambda w, s: f"{V1}/outcomes/"),
    Route(
        "outcome-detail",
        "GET",
        lambda w, s: f"{V1}/outcomes/{w.side(s).outcome.pk}/",
        target=lambda w, s: w.side(s).outcome,
    ),
    # Adverse events
    Route("adverse-event-list", "GET", lambda w, s: f"{V1}/adverse-events/"),
    Route(
        "adverse-event-list",
        "POST",
        lambda w, s: f"{V1}/adverse-events/",
        payload=lambda w, s: adverse_event_payload(SHARED_STUDY, _subject(w, s)),
        success=201,
    ),
    Route(
        "adverse-event-detail",
        "GET",
        lambda w, s: f"{V1}/adverse-events/{w.side(s).adverse_event.pk}/",
        target=lambda w, s: w.side(s).adverse_event,
    ),
    Route(
        "adverse-event-detail",
        "PATCH",
        lambda w, s: f"{V1}/adverse-events/{w.side(s).adverse_event.pk}/",
        payload=lambda w, s: {"outcome": "recovering", "reason": "Follow-up call"},
        target=lambda w, s: w.side(s).adverse_event,
        if_match=True,
    ),
    Route(
        "adverse-event-submissions",
        "POST",
        lambda w, s: f"{V1}/adverse-events/{w.side(s).adverse_event.pk}/submissions/",
        payload=lambda w, s: {"report": "initial", "on_date": "2025-05-10"},
        target=lambda w, s: w.side(s).adverse_event,
    ),
    # Exports of the key's site
    Route("export-list", "GET", lambda w, s: f"{V1}/exports/"),
    Route(
        "export-list",
        "POST",
        lambda w, s: f"{V1}/exports/",
        payload=lambda w, s: {"study": SHARED_STUDY},
        success=202,
    ),
    Route(
        "export-detail",
        "GET",
        lambda w, s: f"{V1}/exports/{w.side(s).export.pk}/",
        target=lambda w, s: w.side(s).export,
    ),
    Route(
        "export-download",
        "GET",
        lambda w, s: f"{V1}/exports/{w.side(s).export.pk}/download/",
        target=lambda w, s: w.side(s).export,
    ),
    # Queries of the key's site: read, answer
    Route("query-list", "GET", lambda w, s: f"{V1}/queries/"),
    Route(
        "query-detail",
        "GET",
        lambda w, s: f"{V1}/queries/{w.side(s).query.pk}/",
        target=lambda w, s: w.side(s).query,
    ),
    Route(
        "query-answer",
        "POST",
        lambda w, s: f"{V1}/queries/{w.side(s).query.pk}/answer/",
        payload=lambda w, s: {"text": "The ID card says 1990."},
        target=lambda w, s: w.side(s).query,
    ),
    # Cohort reports (read only), one per study
    Route(
        "report-detail",
        "GET",
        lambda w, s: f"{V1}/reports/{_study_code(w, s)}/",
        target=lambda w, s: w.study if s == "a" else w.study_b_only,
    ),
]

READS = [route for route in ROUTES if not route.is_write]
WRITES = [route for route in ROUTES if route.is_write]
LISTS = [route for route in ROUTES if route.is_list]
# Routes that name one object in their URL (detail, update, actions on one object).
OBJECT_ROUTES = [
    route
    for route in ROUTES
    if not route.name.endswith("-list") and route.name not in ("visit-record-by-key", "visit-record-batch")
]


def _walk(patterns, prefix: str = ""):
    """(path shape, URL name, callback) of every URL pattern, includes followed."""
    from django.urls import URLPattern, URLResolver

    for entry in patterns:
        shape = prefix + _shape(str(entry.pattern))
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, shape)
        elif isinstance(entry, URLPattern):
            yield shape, entry.name, entry.callback


def _shape(pattern: str) -> str:
    """A URL pattern with its parameters blanked: ^patients/(?P<pk>[^/.]+)/$ and patients/<int:pk>/ both
    become patients/{}/."""
    pattern = pattern.lstrip("^").rstrip("$").replace("\\Z", "")
    pattern = re.sub(r"\(\?P<[^>]+>[^)]*\)", "{}", pattern)
    return re.sub(r"<[^>]+>", "{}", pattern)


def _methods(callback) -> set[str]:
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a viewset: the methods bound to actions
        # (REST framework adds HEAD to a viewset's actions once it has served a GET: not a route of its own)
        return {method.upper() for method in actions} - {"HEAD", "OPTIONS"}
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view is None:
        return {"GET"}
    return {m.upper() for m in view.http_method_names if hasattr(view, m) and m not in ("options", "head")}


def served_routes() -> dict[tuple[str, str], str]:
    """{(URL name, method): path shape} of every partner API v1 route, from the router and any other
    pattern under /api/v1/."""
    from config import api

    routes = {}
    for shape, name, callback in _walk(api.urlpatterns, "/api/"):
        if not shape.startswith("/api/v1/"):
            continue
        for method in _methods(callback):
            routes[(name, method)] = shape
    return routes


def router_routes() -> set[tuple[str, str]]:
    """(URL name, HTTP method) of every partner API v1 route (the router's and any beside it)."""
    return set(served_routes())
