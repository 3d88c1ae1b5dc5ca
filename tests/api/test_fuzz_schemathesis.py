"""Property-based fuzzing of the partner API against its own live OpenAPI schema (Schemathesis).

The schema is loaded from the WSGI application (`/api/schema/`), every operation is exercised with data
generated from it (both conforming and deliberately non-conforming), and every response must

* not be a server error (5xx), and
* conform to the schema: a documented status code, a documented content type, a body matching the schema.

Every request carries a read-write key of a site that has data (a study, a released lot, a patient with an
infusion, recorded visits and computed outcomes, a medication, an adverse event). Generated identifiers,
codes, and If-Match values are, part of the time, swapped for real ones, so that detail, update and
create paths run the real code instead of stopping at "not found".

All failures are collected (one line per distinct failure) and reported together at the end. The run is
reproducible: the seed is fixed unless FUZZ_SEED is set. FUZZ_EXAMPLES sets the examples per operation
and generation mode.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import traceback
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
import schemathesis
import time_machine
from django.core import signals
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from tests.conftest import FROZEN_NOW
from tests.factories import (
    PASSING_RELEASE_TESTS,
    make_clinical,
    make_donor,
    make_lot,
    make_patient,
    make_site,
    make_study,
)

# Transactional, so that every request commits or fails on its own as it does in production.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MIN_REQUESTS = 2000
EXAMPLES_PER_MODE = int(os.environ.get("FUZZ_EXAMPLES", "35"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20070319"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _checks():
    from schemathesis import checks

    return [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]


# Data --------------------------------------------------------------------------------------------------


@dataclass
class World:
    """What the key can see (and a little it cannot), as pools of real values to steer generation with."""

    key: str
    ids: dict[str, list[int]]
    codes: dict[str, list[str]] = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    home: dict[str, str] = field(default_factory=dict)  # the study, the infused patient, the waiting one, a lot


def _build_world() -> World:
    from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
    from followup.services import ae_record, visit_record
    from patients.models import ConcomitantMedication, Patient, TransplantEvent
    from patients.services import medication_record
    from registry import constants as rc
    from registry.api_keys import api_key_issue
    from registry.models import ApiKeyScope, CellProduct

    home = make_clinical()
    site, study = home.site, home.study
    visit_record(
        visit=home.visit("BL"),
        actual_date=dt.date(2025, 3, 1),
        results={"PROT24H": ("2.4", "g/24h"), "C3": ("0.52", "g/L"), "CREAT": ("0.9", "mg/dL"), "ADSDNA": "210"},
        sledai_items=["proteinuria", "low_complement", "increased_dna_binding", "arthritis", "rash"],
    )
    visit_record(
        visit=home.visit("M1"),
        actual_date=dt.date(2025, 4, 2),
        results={"PROT24H": ("1200", "mg/24h"), "C3": ("71", "mg/dL"), "PRED": "20"},
        sledai_items=["proteinuria", "low_complement", "rash"],
    )
    visit_record(
        visit=home.visit("M3"),
        actual_date=dt.date(2025, 6, 2),
        results={"PROT24H": ("0.4", "g/24h"), "C3": ("0.95", "g/L"), "CREAT": ("80", "umol/L")},
        sledai_items=[],
    )
    medication_record(
        patient=home.patient,
        drug="prednisone",
        dose=Decimal("20"),
        unit="mg",
        frequency="daily",
        start_date=dt.date(2025, 1, 20),
    )
    ae_record(
        patient=home.patient,
        transplant=home.transplant,
        term="Transient fever after infusion",
        category="infusion_reaction",
        onset_date=dt.date(2025, 3, 3),
        resolution_date=dt.date(2025, 3, 4),
        grade=1,
        relatedness="possible",
        expected=True,
        action_taken="none",
        outcome="recovered",
        aware_date=dt.date(2025, 3, 3),
    )
    # A second patient, enrolled but not yet infused, and a spare released lot with a donor of its own.
    make_patient(study, site, subject_code="SLE-WAIT")
    spare = make_lot(study, site, lot_number="UC-SPARE-01")
    patchable = make_lot(study, site, lot_number="UC-PATCH-01")  # PATCHed by the fuzzer; not used for infusions
    make_donor(study, site, code="DN-FUZZ", sex=rc.Sex.MALE, age_at_donation=30)
    # Another site's patient: its objects must stay invisible to the key.
    away_site = make_site()
    away = make_clinical(site=away_site, study=make_study(away_site))

    _, raw = api_key_issue(site=site, name="fuzz", scope=ApiKeyScope.READ_WRITE, can_write_lots=True)

    def pks(model, **lookup):
        return list(model.objects.filter(**lookup).values_list("pk", flat=True))

    away_patient = away.patient
    ids = {
        "patients": pks(Patient, site=site) + [away_patient.pk],
        "transplants": pks(TransplantEvent, patient__site=site) + [away.transplant.pk],
        "medications": pks(ConcomitantMedication, patient__site=site),
        "visits": pks(Visit, patient__site=site) + [away.visit("M1").pk],
        "results": pks(Result, visit__patient__site=site),
        "outcomes": pks(ComputedOutcome, visit__patient__site=site),
        "adverse-events": pks(AdverseEvent, patient__site=site),
    }
    codes = {
        "study": [study.code, study.code, study.code, away.study.code],
        "subject_code": list(Patient.objects.filter(site=site).values_list("subject_code", flat=True)),
        "lot_number": [home.lot.lot_number, spare.lot_number, spare.lot_number, away.lot.lot_number],
        "visit_code": ["BL", "D7", "M1", "M3", "M6", "M12"],
        "donor": ["DN-FUZZ"],
        "sites": [site.code, away_site.code],
        "lots": [patchable.lot_number, home.lot.lot_number, away.lot.lot_number],
        "studies": [study.code, away.study.code],
        "code": ["CREAT", "PROT24H", "SLEDAI2K", "BL", "M3"],
    }
    models = {
        "patients": Patient,
        "medications": ConcomitantMedication,
        "adverse-events": AdverseEvent,
        "visits": Visit,
        "lots": CellProduct,
    }
    home_codes = {
        "study": study.code,
        "subject": home.patient.subject_code,
        "waiting": "SLE-WAIT",
        "lot": spare.lot_number,
        "donor": "DN-FUZZ",
    }
    return World(key=raw, ids=ids, codes=codes, models=models, home=home_codes)


# Steering ----------------------------------------------------------------------------------------------


def _resource(path: str) -> str:
    return path.split("/")[3]  # /api/v1/<resource>/...


def _current_etag(world: World, resource: str, path_parameters: dict) -> str | None:
    from core.api.etags import etag_of

    model = world.models.get(resource)
    if model is None:
        return None
    if resource == "lots":
        obj = model.objects.filter(lot_number=path_parameters.get("lot_number")).first()
    else:
        ident = path_parameters.get("id")
        obj = model.objects.filter(pk=ident).first() if isinstance(ident, int) else None
    return etag_of(obj) if obj is not None else None


# Plausible values for body fields, so that part of the writes get past validation and really happen.
PLAUSIBLE = {
    "diagnosis_date": ["2019-06-01", "2024-02-10"],
    "consent_date": ["2025-01-15", "2026-06-20", None],
    "birth_year": [1972, 1990],
    "infused_at": ["2026-07-01T10:00:00+08:00", "2026-08-15T09:30:00+00:00"],
    "weight_kg": [48.5, 60.0, 72.0],
    "dose_cells_per_kg": [1_000_000],
    "start_date": ["2025-01-20", "2026-08-01"],
    "stop_date": ["2026-08-20", None],
    "onset_date": ["2025-03-03", "2026-08-02"],
    "aware_date": ["2025-03-04", "2026-08-03"],
    "resolution_date": ["2026-08-20", None],
    "on_date": ["2026-08-25"],
    "actual_date": ["2025-03-10", "2025-06-02", "2025-09-01", "2026-08-20"],
    "deviation_reason": ["Seen outside the window: the patient was travelling."],
    "results": [
        {"CREAT": {"value": 0.9, "unit": "mg/dL"}, "PROT24H": {"value": 450, "unit": "mg/24h"}},
        {"C3": {"value": 0.82}, "PRED": {"value": 10, "unit": "mg/day"}},
    ],
    "sledai_items": [["proteinuria", "rash"], []],
    "cryopreserved_on": ["2025-01-10"],
    "expires_on": ["2027-01-10"],
    "reason": ["Transcription error corrected against the source record."],
    "dose": [20, 7.5],
    "infusion_number": [None, 1, 2],
    "grade": [1, 2, 3],
    "origin": ["allogeneic"],
    "passage_number": [4],
    "cells_per_unit": [100_000_000],
    "units": [10],
    **{name: [float(value) if isinstance(value, Decimal) else value] for name, value in PASSING_RELEASE_TESTS.items()},
}


class Choices:
    """The steering's choices: drawn by Hypothesis (`data`, so that they shrink and replay with the case) or,
    in a stateful run, where a step has no data of its own, by a seeded generator (`rng`)."""

    def __init__(self, data=None, rng: random.Random | None = None):
        self.data, self.rng = data, rng

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high)) if self.data is not None else self.rng.randint(low, high)

    def choice(self, pool):
        return self.data.draw(st.sampled_from(pool)) if self.data is not None else self.rng.choice(pool)


def _swap(container: dict, pools: dict, choices: Choices) -> None:
    for name, pool in pools.items():
        if name in container and pool and choices.integer(0, 7):
            container[name] = choices.choice(pool)


def _steer(case, world: World, choices: Choices, *, paths: bool = True) -> None:
    """Swap, in about half the cases, generated identifiers, codes, dates and ETags for real ones (`paths`
    False: the path's identifiers are left as they are, as a stateful run takes them from a link)."""
    if not choices.integer(0, 1):
        return
    resource = _resource(case.operation.path)
    if case.path_parameters and paths:
        pools = {name: world.codes.get(name) for name in case.path_parameters}
        pools["id"] = world.ids.get(resource)
        pools["code"] = world.codes.get(resource)
        pools["lot_number"] = world.codes["lots"]
        _swap(case.path_parameters, pools, choices)
    if isinstance(case.query, dict):
        _swap(case.query, world.codes, choices)
    if isinstance(case.body, dict):
        pools = {**PLAUSIBLE, **world.codes}
        if case.method.upper() == "POST" and case.operation.path in ("/api/v1/patients/", "/api/v1/lots/"):
            # A new patient or lot needs a code of its own: a fresh one most of the time, a taken one else.
            fresh = f"FZ-{choices.integer(0, 10**9)}"
            name = "subject_code" if resource == "patients" else "lot_number"
            pools[name] = [fresh, fresh, fresh, *pools[name]]
        _swap(case.body, pools, choices)
    if case.headers and "Idempotency-Key" in case.headers and choices.integer(0, 3):
        case.headers["Idempotency-Key"] = f"fuzz-{choices.integer(0, 10**12)}"
    # POST /visits/{id}/record/ takes If-Match too (to correct a recorded visit), though its schema omits it.
    takes_if_match = any(p.name == "If-Match" for p in case.operation.headers) or case.operation.path.endswith(
        "/{id}/record/"
    )
    if takes_if_match and paths and choices.integer(0, 3):
        etag = _current_etag(world, resource, case.path_parameters or {})
        if etag is not None:
            case.headers = {**(case.headers or {}), "If-Match": etag}


# The run -----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    requests: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    by_operation: dict[str, Counter] = field(default_factory=dict)
    failures: dict[tuple, str] = field(default_factory=dict)  # (operation, kind, status, title) -> an example
    server_errors: list[str] = field(default_factory=list)
    no_negative: list[str] = field(default_factory=list)

    def count(self, label: str, status: int) -> None:
        self.requests[label] += 1
        self.statuses[status] += 1
        self.by_operation.setdefault(label, Counter())[status] += 1

    def record_failures(self, label: str, response, group: FailureGroup) -> None:
        for failure in group.exceptions:
            key = (label, type(failure).__name__, response.status_code, failure.title)
            first_line = (failure.message or "").strip().splitlines()[:1]
            example = f"{response.request.method} {response.request.url}"
            self.failures.setdefault(key, " — ".join([*first_line, example]))

    def report(self, operations) -> tuple[str, list[str]]:
        total = sum(self.requests.values())
        summary = (
            f"{total} generated requests over {len(self.requests)} of {len(operations)} operations; "
            f"statuses {dict(sorted(self.statuses.items()))}; {len(self.failures)} distinct failures"
        )
        problems = [
            f"{label} [{status}] {kind}: {title}: {example}"
            for (label, kind, status, title), example in sorted(self.failures.items())
        ]
        untested = [op.label for op in operations if not self.requests[op.label]]
        if untested:
            problems.append(f"operations never called: {untested}")
        if total < MIN_REQUESTS:
            problems.append(f"only {total} requests; at least {MIN_REQUESTS} are required")
        if self.server_errors:
            problems.append("first server error:\n" + self.server_errors[0])
        return summary, problems


@pytest.fixture(autouse=True)
def api_clock():
    """The clock at FROZEN_NOW and running: the data above are dated before it, and ETags move on change."""
    with time_machine.travel(FROZEN_NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def in_process_requests():
    """Keep the database connection across requests served in-process (as Django's test client does)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def unthrottled(monkeypatch):
    """The fuzzer sends far more than the per-key rate; throttling would hide the endpoints behind 429s."""
    from registry.api.base import ApiKeyThrottle

    monkeypatch.setattr(ApiKeyThrottle, "THROTTLE_RATES", {"api_key": "1000000/minute"})


@pytest.fixture
def server_exceptions():
    """Tracebacks of the exceptions behind 5xx responses, to say why in the report."""
    caught: list[str] = []

    def remember(sender, request=None, **kwargs):
        caught.append(traceback.format_exc())

    signals.got_request_exception.connect(remember)
    yield caught
    signals.got_request_exception.disconnect(remember)


def test_partner_api_conforms_to_its_schema_under_fuzzing(in_process_requests, unthrottled, server_exceptions):
    from config.wsgi import application

    world = _build_world()
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    # Every request carries the key: the Authorization header is never generated, dropped or garbled.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 27, [op.label for op in operations]

    checks = _checks()
    headers = {"Authorization": f"Api-Key {world.key}"}
    tally = Tally()

    def fuzz(operation, mode):
        @seed(FUZZ_SEED)
        @settings(
            max_examples=EXAMPLES_PER_MODE,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # failures are collected, not shrunk
            # An operation with nothing to make invalid but the key (a path of one free-form string and
            # no query) fails the filtering health check at once in negative mode; that is noted.
            suppress_health_check=[check for check in HealthCheck if check != HealthCheck.filter_too_much],
            print_blob=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        def exercise(case, data):
            _steer(case, world, Choices(data=data))
            before = len(server_exceptions)
            response = case.call(headers=headers)
            tally.count(operation.label, response.status_code)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as group:
                tally.record_failures(operation.label, response, group)
            if response.status_code >= 500:
                cause = server_exceptions[before:] or [response.text[:500]]
                tally.server_errors.append(f"{operation.label} -> {response.status_code}\n{cause[-1]}")

        try:
            exercise()
        except (Unsatisfiable, FailedHealthCheck):
            if mode.is_positive:
                raise
            tally.no_negative.append(operation.label)

    for operation in operations:
        for mode in MODES:
            fuzz(operation, mode)

    summary, problems = tally.report(operations)
    print(summary)
    if tally.no_negative:
        print("no negative cases possible:", tally.no_negative)
    for label, statuses in sorted(tally.by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    assert not problems, summary + "\n" + "\n".join(problems)


# Stateful runs over the schema's links -----------------------------------------------------------------------

STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "60"))
STATEFUL_STEPS = 8


def _valid_bodies(world: World, choices: Choices) -> dict:
    """A valid body for each create a scenario may start with (a fresh code where one is needed), so that part
    of the scenarios create something whose links can be followed."""
    from tests.api.conftest import (
        adverse_event_payload,
        lot_payload,
        medication_payload,
        patient_payload,
        transplant_payload,
        visit_record_by_key_payload,
    )

    home = world.home
    study, subject = home["study"], home["subject"]
    return {
        "/api/v1/patients/": lambda: patient_payload(study, f"FZ-{choices.integer(0, 10**9)}"),
        "/api/v1/adverse-events/": lambda: adverse_event_payload(study, subject, onset_date="2025-05-01"),
        "/api/v1/medications/": lambda: medication_payload(study, subject),
        "/api/v1/transplants/": lambda: transplant_payload(study, home["waiting"], home["lot"]),
        "/api/v1/lots/": lambda: lot_payload(study, home["donor"], lot_number=f"FZ-{choices.integer(0, 10**9)}"),
        "/api/v1/visits/record/": lambda: visit_record_by_key_payload(
            study, subject, **dict(zip(("visit_code", "actual_date"), choices.choice(OPEN_VISITS), strict=True))
        ),
    }


# Visits of the infused patient that are open (each is recorded once; after that a recording is a correction).
OPEN_VISITS = [("M6", "2025-09-01"), ("M9", "2025-12-02"), ("M12", "2026-03-03")]


def test_stateful_runs_follow_the_links_without_a_server_error(in_process_requests, unthrottled, server_exceptions):
    """Scenarios of linked calls (core/api/schema.py LINKS): create a patient, read it, change it with the ETag
    just received, change its status; record a visit, read it, correct it; and so on. Each step's answer is
    checked as in the run above; the steps' own path identifiers come from the links."""
    from hypothesis.stateful import run_state_machine_as_test

    from config.wsgi import application

    world = _build_world()
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    schema.config.generation.update(with_security_parameters=False)
    checks = _checks()
    headers = {"Authorization": f"Api-Key {world.key}"}
    tally = Tally()
    choices = Choices(rng=random.Random(FUZZ_SEED))
    scenarios = []
    valid = _valid_bodies(world, choices)
    linked: Counter = Counter()  # (operation, status) of the steps whose parameters a link gave

    class Scenario(schema.as_state_machine()):
        # Each scenario starts from the world as built and its steering choices from the seed, and what it
        # wrote is rolled back at its end: a scenario Hypothesis runs again behaves as it did the first time.
        def setup(self):
            scenarios.append(1)
            self.linked = False
            choices.rng.seed(FUZZ_SEED)
            self.writes = transaction.atomic()
            self.writes.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self.writes.__exit__(None, None, None)

        def step(self, input):
            # A step that follows a link keeps the identifiers (and ETag) the link gave; the first step of a
            # scenario is steered as the run above steers its cases.
            self.linked = input.transition is not None and input.is_applied
            case = input.case
            if not self.linked and case.method.upper() == "POST" and case.path in valid and choices.integer(0, 1):
                case.body = valid[case.path]()
            else:
                _steer(case, world, choices, paths=not self.linked)
            return super().step(input)

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            label = case.operation.label
            before = len(server_exceptions)
            tally.count(label, response.status_code)
            if self.linked:
                linked[(label, response.status_code)] += 1
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except FailureGroup as group:
                tally.record_failures(label, response, group)
            if response.status_code >= 500:
                cause = server_exceptions[before:] or [response.text[:500]]
                tally.server_errors.append(f"{label} -> {response.status_code}\n{cause[-1]}")

    run_state_machine_as_test(
        Scenario,
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        ),
    )
    total = sum(tally.requests.values())
    server_errors = sum(n for status, n in tally.statuses.items() if status >= 500)
    print(
        f"stateful: {len(scenarios)} scenarios, {total} requests over {len(tally.requests)} operations; "
        f"{server_errors} 5xx; statuses {dict(sorted(tally.statuses.items()))}; {len(tally.failures)} distinct failures; "
        f"{sum(linked.values())} steps followed a link"
    )
    print("  linked steps:", dict(sorted(linked.items())))
    for label, statuses in sorted(tally.by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    problems = [
        f"{label} [{status}] {kind}: {title}: {example}"
        for (label, kind, status, title), example in sorted(tally.failures.items())
    ]
    if tally.server_errors:
        problems.append("first server error:\n" + tally.server_errors[0])
    assert not problems, "\n".join(problems)
    # The links were followed: objects created or recorded in a scenario were read back by the identifier their
    # answer gave, and changes sent to them reached the object (any answer but 404).
    read = {label for (label, status) in linked if status == 200 and label.startswith("GET")}
    # (Which creations the generated scenarios reach varies with the data they meet and the schema they are drawn
    # from; at least one of these does.)
    created_reads = {
        "GET /api/v1/patients/{id}/",
        "GET /api/v1/visits/{id}/",
        "GET /api/v1/adverse-events/{id}/",
        "GET /api/v1/medications/{id}/",
        "GET /api/v1/exports/{id}/",
    }
    assert created_reads & read, read
    changed = {label for (label, status) in linked if status != 404 and label.startswith(("PATCH", "POST"))}
    assert changed, changed
