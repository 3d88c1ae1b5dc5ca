"""Who may do what through the partner API, route by route.

A key of site A never gets a 2xx for anything of site B: lists leave B's rows out, B's objects answer 404,
payloads naming B's patients, lots or studies are refused with a field error and write nothing. Revoked,
expired and malformed credentials get 401 everywhere; a read-only key reads and never writes; only a
manufacturing site's key writes lots. Every route of the router is in the table (`tests.api.routes`).
"""

from __future__ import annotations

import pytest

from core.api.etags import etag_of
from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.models import ConcomitantMedication, Patient, TransplantEvent
from quality.models import Query
from registry.models import CellProduct, Site, Study
from reporting.models import ExportJob
from tests.api.conftest import (
    B_ONLY_STUDY,
    LOT_A,
    LOT_B_ONLY,
    SHARED_STUDY,
    SUBJECT_A,
    SUBJECT_B,
    SUBJECT_B_ONLY,
    World,
    adverse_event_payload,
    assert_problem,
    call,
    changed_tables,
    client_for,
    client_with_header,
    field_errors,
    lot_payload,
    medication_payload,
    patient_payload,
    row_snapshot,
    transplant_payload,
    visit_batch_payload,
    visit_record_by_key_payload,
)
from tests.api.routes import LISTS, OBJECT_ROUTES, READS, ROUTES, WRITES, Route, router_routes

pytestmark = pytest.mark.django_db


def writer(world: World, route: Route) -> str:
    """Site A's key that may make this request (the lot writer's key for lot writes)."""
    return world.keys["a_lots"] if route.lots else world.keys["a_rw"]


def send(world: World, route: Route, raw_key: str, side: str, client=None):
    client = client or client_for(raw_key)
    payload = route.payload(world, side) if route.payload else None
    return call(client, route.method, route.url(world, side), payload, **route.headers(world, side))


# The table covers the router ---------------------------------------------------------------------------


def test_every_router_route_is_in_the_table():
    table = {(route.name, route.method) for route in ROUTES}
    served = router_routes()
    assert served - table == set(), f"routes the table does not cover: {sorted(served - table)}"
    assert table - served == set(), f"table rows for routes that do not exist: {sorted(table - served)}"


# The owner's requests succeed (so a refusal below is about the caller, not the payload) ----------------


@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
def test_owner_request_succeeds(world, route):
    response = send(world, route, writer(world, route), "a")
    assert response.status_code == route.success, (response.status_code, response.content[:2000])


# Site A against site B --------------------------------------------------------------------------------


def _own_and_foreign_ids(world: World, name: str) -> tuple[set[int], set[int]]:
    """(ids site A must see, ids of site B's rows it must not) for a list route, decided without the API."""
    a, b = world.a.site, world.b.site
    by_patient_site = {
        "patient-list": (Patient.objects, "site"),
        "transplant-list": (TransplantEvent.objects, "patient__site"),
        "medication-list": (ConcomitantMedication.objects, "patient__site"),
        "visit-list": (Visit.objects, "patient__site"),
        "result-list": (Result.objects, "visit__patient__site"),
        "outcome-list": (ComputedOutcome.objects, "visit__patient__site"),
        "adverse-event-list": (AdverseEvent.objects, "patient__site"),
        "query-list": (Query.objects, "patient__site"),
    }
    if name in by_patient_site:
        manager, lookup = by_patient_site[name]
        own = set(manager.filter(**{lookup: a}).values_list("pk", flat=True))
        foreign = set(manager.filter(**{lookup: b}).values_list("pk", flat=True))
    elif name == "export-list":
        own = set(ExportJob.objects.filter(requested_by_key__site=a).values_list("pk", flat=True))
        foreign = set(ExportJob.objects.filter(requested_by_key__site=b).values_list("pk", flat=True))
    elif name == "site-list":
        own, foreign = {a.pk}, set(Site.objects.exclude(pk=a.pk).values_list("pk", flat=True))
    elif name in ("study-list", "report-list"):  # a report per study
        own = set(Study.objects.filter(study_sites__site=a).values_list("pk", flat=True))
        foreign = set(Study.objects.exclude(study_sites__site=a).values_list("pk", flat=True))
    elif name == "lot-list":
        # A sees its own lots and every lot of its studies (its patients may receive them).
        own = set(CellProduct.objects.filter(site=a).values_list("pk", flat=True)) | set(
            CellProduct.objects.filter(study__study_sites__site=a).values_list("pk", flat=True)
        )
        foreign = set(CellProduct.objects.values_list("pk", flat=True)) - own
    else:
        raise AssertionError(f"no ownership rule for {name}")
    return own, foreign


@pytest.mark.parametrize("route", LISTS, ids=[r.id for r in LISTS])
def test_list_shows_own_rows_and_none_of_the_other_sites(world, route):
    own, foreign = _own_and_foreign_ids(world, route.name)
    assert own and foreign, "the world must hold rows of both sites for this test to mean anything"
    response = call(client_for(world.keys["a_rw"]), "GET", route.url(world, "a"), {"page_size": 200})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["next"] is None
    listed = {row["id"] for row in body["results"]}
    assert listed & foreign == set(), f"site B's rows in site A's list: {sorted(listed & foreign)}"
    assert listed == own


def test_lot_of_site_b_in_a_shared_study_is_visible_to_a_but_not_changeable(world):
    """By design a study's lots are seen by every site of the study; only the maker may change one."""
    lot_b = world.b.lot
    client = client_for(world.keys["a_lots"])
    assert call(client, "GET", f"/api/v1/lots/{lot_b.lot_number}/").status_code == 200
    before, stamp = row_snapshot(), lot_b.updated_at
    response = call(
        client,
        "PATCH",
        f"/api/v1/lots/{lot_b.lot_number}/",
        {"units": 1, "reason": "Not ours to change"},
        **{"If-Match": etag_of(lot_b)},
    )
    assert_problem(response, 403)
    lot_b.refresh_from_db()
    assert (lot_b.units, lot_b.updated_at) == (10, stamp)
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=[r.id for r in OBJECT_ROUTES])
def test_other_sites_object_answers_404_and_is_left_alone(world, route):
    """Even with B's current ETag and a valid body, A's request on B's object is 'not found'."""
    target = route.target(world, "b") if route.target else None
    stamp = getattr(target, "updated_at", None)
    before = row_snapshot()
    response = send(world, route, writer(world, route), "b")
    assert_problem(response, 404)
    assert changed_tables(before, row_snapshot()) == {}
    if target is not None and stamp is not None:
        target.refresh_from_db()
        assert target.updated_at == stamp


# Payloads naming another site's objects ----------------------------------------------------------------

FOREIGN_PAYLOADS = [
    # (id, url, payload builder, key name, field the error names)
    (
        "patient in B's-only study",
        "/api/v1/patients/",
        lambda w: patient_payload(B_ONLY_STUDY, "A-NEW"),
        "a_rw",
        "study",
    ),
    (
        "patient reusing B's subject code",
        "/api/v1/patients/",
        lambda w: patient_payload(SHARED_STUDY, SUBJECT_B),
        "a_rw",
        "subject_code",
    ),
    (
        "transplant for B's patient",
        "/api/v1/transplants/",
        lambda w: transplant_payload(SHARED_STUDY, SUBJECT_B, LOT_A),
        "a_rw",
        "subject_code",
    ),
    (
        "transplant for B's-only study patient",
        "/api/v1/transplants/",
        lambda w: transplant_payload(B_ONLY_STUDY, SUBJECT_B_ONLY, LOT_A),
        "a_rw",
        "subject_code",
    ),
    (
        "transplant of B's lot",
        "/api/v1/transplants/",
        lambda w: transplant_payload(SHARED_STUDY, SUBJECT_A, LOT_B_ONLY),
        "a_rw",
        "lot_number",
    ),
    (
        "medication for B's patient",
        "/api/v1/medications/",
        lambda w: medication_payload(SHARED_STUDY, SUBJECT_B),
        "a_rw",
        "subject_code",
    ),
    (
        "medication for B's-only study patient",
        "/api/v1/medications/",
        lambda w: medication_payload(B_ONLY_STUDY, SUBJECT_B_ONLY),
        "a_rw",
        "subject_code",
    ),
    (
        "adverse event of B's patient",
        "/api/v1/adverse-events/",
        lambda w: adverse_event_payload(SHARED_STUDY, SUBJECT_B),
        "a_rw",
        "subject_code",
    ),
    (
        "adverse event of B's-only study patient",
        "/api/v1/adverse-events/",
        lambda w: adverse_event_payload(B_ONLY_STUDY, SUBJECT_B_ONLY),
        "a_rw",
        "subject_code",
    ),
    (
        "visit of B's patient",
        "/api/v1/visits/record/",
        lambda w: visit_record_by_key_payload(SHARED_STUDY, SUBJECT_B),
        "a_rw",
        "subject_code",
    ),
    (
        "visit of B's-only study patient",
        "/api/v1/visits/record/",
        lambda w: visit_record_by_key_payload(B_ONLY_STUDY, SUBJECT_B_ONLY, visit_code="M1"),
        "a_rw",
        "subject_code",
    ),
    (
        "batch with a visit of B's patient",
        "/api/v1/visits/record-batch/",
        lambda w: visit_batch_payload(SHARED_STUDY, SUBJECT_A, SUBJECT_B),
        "a_rw",
        "visits.1.subject_code",
    ),
    (
        "lot in B's-only study",
        "/api/v1/lots/",
        lambda w: lot_payload(B_ONLY_STUDY, w.lot_b_only.donor.code),
        "a_lots",
        "study",
    ),
    (
        "lot from B's donor",
        "/api/v1/lots/",
        lambda w: lot_payload(SHARED_STUDY, w.b.lot.donor.code),
        "a_lots",
        "donor",
    ),
    (
        "lot reusing B's lot number",
        "/api/v1/lots/",
        lambda w: lot_payload(SHARED_STUDY, w.a.lot.donor.code, lot_number=LOT_B_ONLY),
        "a_lots",
        "lot_number",
    ),
]


@pytest.mark.parametrize(
    ("url", "payload", "key", "field"), [case[1:] for case in FOREIGN_PAYLOADS], ids=[c[0] for c in FOREIGN_PAYLOADS]
)
def test_payload_naming_another_sites_object_is_refused_and_writes_nothing(world, url, payload, key, field):
    stamps = {obj: obj.updated_at for obj in (world.b.patient, world.patient_b_only, world.lot_b_only, world.b.lot)}
    before = row_snapshot()
    response = call(client_for(world.keys[key]), "POST", url, payload(world))
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    body = assert_problem(response, response.status_code)
    assert field in field_errors(body), body
    assert changed_tables(before, row_snapshot()) == {}
    for obj, stamp in stamps.items():
        obj.refresh_from_db()
        assert obj.updated_at == stamp, obj


def test_created_patient_belongs_to_the_keys_site_whatever_the_payload_says(world):
    """`site` is not an input: unknown fields are ignored, and the patient is site A's."""
    payload = patient_payload(subject_code="A-NEW", site="LDN", site_id=world.b.site.pk, site_code="LDN")
    response = call(client_for(world.keys["a_rw"]), "POST", "/api/v1/patients/", payload)
    assert response.status_code == 201, response.content
    assert response.json()["site"] == world.a.site.code
    patient = Patient.objects.get(study=world.study, subject_code="A-NEW")
    assert patient.site_id == world.a.site.pk
    # And it is A's to see, not B's.
    assert call(client_for(world.keys["b_rw"]), "GET", f"/api/v1/patients/{patient.pk}/").status_code == 404
    assert call(client_for(world.keys["a_rw"]), "GET", f"/api/v1/patients/{patient.pk}/").status_code == 200


def test_site_b_key_sees_none_of_site_a_either(world):
    """The same isolation the other way round, on every read and object route."""
    client = client_for(world.keys["b_rw"])
    problems = []
    for route in OBJECT_ROUTES:
        if route.name.startswith(("lot-", "study-", "report-")):
            continue  # A's lot, study and report are of the shared study, which B takes part in
        response = send(world, route, world.keys["b_rw"], "a", client=client)
        if response.status_code != 404:
            problems.append((route.id, response.status_code))
    assert problems == []
    for route in LISTS:
        if route.name in ("lot-list", "study-list", "report-list"):
            continue  # the shared study and its lots are B's to see as well
        own_a, _ = _own_and_foreign_ids(world, route.name)
        response = call(client, "GET", route.url(world, "b"), {"page_size": 200})
        assert response.status_code == 200, (route.id, response.status_code)
        listed = {row["id"] for row in response.json()["results"]}
        assert listed and listed & own_a == set(), (route.id, sorted(listed & own_a))


# Credentials -------------------------------------------------------------------------------------------

BAD_CREDENTIALS = {
    "revoked key": lambda w: f"Api-Key {w.keys['a_revoked']}",
    "expired key": lambda w: f"Api-Key {w.keys['a_expired']}",
    "no header": None,
    "keyword only": lambda w: "Api-Key",
    "two tokens": lambda w: f"Api-Key {w.keys['a_rw']} extra",
    "other scheme": lambda w: f"Bearer {w.keys['a_rw']}",
    "lower-case keyword": lambda w: f"api-key {w.keys['a_rw']}",
    "unknown key": lambda w: "Api-Key msct_00000000_not-a-real-secret",
    "right prefix, wrong secret": lambda w: f"Api-Key {w.keys['a_rw'].rsplit('_', 1)[0]}_wrong-secret",
    "not our format": lambda w: "Api-Key 0123456789abcdef",
}


@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS), ids=list(BAD_CREDENTIALS))
def test_bad_credentials_get_401_on_every_route_and_write_nothing(world, credential):
    header = BAD_CREDENTIALS[credential]
    client = client_for(None) if header is None else client_with_header(header(world))
    before = row_snapshot()
    problems = []
    for route in ROUTES:
        response = send(world, route, "", "a", client=client)
        if response.status_code != 401:
            problems.append((route.id, response.status_code))
            continue
        assert_problem(response, 401)
        assert response["WWW-Authenticate"] == "Api-Key"
    assert problems == [], f"{credential}: not 401 on {problems}"
    assert changed_tables(before, row_snapshot()) == {}


def test_read_only_key_reads_everything_and_writes_nothing(world):
    client = client_for(world.keys["a_ro"])
    before = row_snapshot()
    problems = []
    for route in READS:
        response = send(world, route, "", "a", client=client)
        if response.status_code != 200:
            problems.append((route.id, response.status_code))
    for route in WRITES:
        response = send(world, route, "", "a", client=client)
        if response.status_code != 403:
            problems.append((route.id, response.status_code))
            continue
        assert_problem(response, 403)
    assert problems == []
    assert changed_tables(before, row_snapshot()) == {}


@pytest.mark.parametrize("route", [r for r in WRITES if r.lots], ids=[r.id for r in WRITES if r.lots])
def test_key_without_lot_writing_gets_403_on_lot_writes(world, route):
    before = row_snapshot()
    response = send(world, route, world.keys["a_rw"], "a")
    assert_problem(response, 403)
    assert changed_tables(before, row_snapshot()) == {}


def test_lot_writer_key_is_still_bound_to_its_site(world):
    """can_write_lots does not widen what the key sees."""
    response = call(client_for(world.keys["a_lots"]), "GET", f"/api/v1/lots/{LOT_B_ONLY}/")
    assert_problem(response, 404)
    response = call(client_for(world.keys["a_lots"]), "GET", "/api/v1/lots/", {"page_size": 200})
    assert LOT_B_ONLY not in {row["lot_number"] for row in response.json()["results"]}


# Locked records: every clinical write answers 423 --------------------------------------------------------

# Answering a query writes to its thread, not to clinical data: a partner may still answer on a locked record.
CLINICAL_WRITES = [route for route in WRITES if not route.lots and route.name not in ("export-list", "query-answer")]


@pytest.mark.parametrize("route", CLINICAL_WRITES, ids=[r.id for r in CLINICAL_WRITES])
def test_every_clinical_write_to_a_locked_study_answers_423(world, route, superuser):
    from quality.services import review

    review.lock_study(study=world.study, reason="Database lock for the final analysis", actor=superuser)
    before = row_snapshot()
    response = send(world, route, writer(world, route), "a")
    body = assert_problem(response, 423)
    assert body["type"].endswith("/locked") and "Database lock for the final analysis" in body["detail"]
    assert changed_tables(before, row_snapshot()) == {}


PATIENT_WRITES = [route for route in CLINICAL_WRITES if route.name != "patient-list"]


@pytest.mark.parametrize("route", PATIENT_WRITES, ids=[r.id for r in PATIENT_WRITES])
def test_every_write_to_a_locked_patient_answers_423_naming_the_record(world, route, superuser):
    from quality.services import review

    review.lock_patient(patient=world.a.patient, reason="Source documents under review", actor=superuser)
    response = send(world, route, writer(world, route), "a")
    body = assert_problem(response, 423)
    fields = {error["field"] for error in body["errors"]}
    if route.name == "visit-record-batch":
        assert fields == {"visits.0.visit"}
    else:
        assert fields <= {"patient", "visit", "adverse_event"} and fields


@pytest.mark.parametrize("name", ["patient-detail", "visit-detail", "adverse-event-detail"])
def test_records_show_their_verification_signature_and_lock(world, name, superuser):
    from quality.services import review

    route = next(r for r in READS if r.name == name)
    review.lock_patient(patient=world.a.patient, reason="Database lock", actor=superuser)
    response = send(world, route, writer(world, route), "a")
    assert response.status_code == 200
    assert response.json()["data_quality"] == {
        "source_verified": False,
        "verified_at": None,
        "signed": False,
        "signed_at": None,
        "locked": True,
        "lock_reason": "Database lock",
    }
