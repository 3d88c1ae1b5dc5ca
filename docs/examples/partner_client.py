#!/usr/bin/env python3
"""A partner hospital's client of the MSCT registry API (v1), end to end, with safe retries.

It registers a patient, records their first infusion about 100 days ago (so that the month-3 visit has
come), reads the follow-up schedule, records the baseline and month-3 visits with SLEDAI-2K items and
laboratory results in the units the laboratory reports (creatinine in mg/dL, 24-hour urine protein in
mg/24h, C3 and C4 in mg/dL, ...), and reads the outcome the registry computed at month 3.

    export MSCT_API_KEY=msct_...          # a read-write key of your site (admin: Registry > API keys)
    python docs/examples/partner_client.py --study MSCT-SLE-DEMO --subject DEMO-0042

Every write carries an Idempotency-Key derived from the study, the subject code and the step, so the
script can be run again (after a crash, a timeout, or just to see) without creating anything twice: the
registry replays the first answer. Network errors, 409 (the same key still being processed), 429
(throttled) and 502/503/504 are retried with the same key, after Retry-After when the server sends it,
else with exponential backoff.

Only httpx is needed (`pip install httpx`). The exit status is 0 when every step succeeded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import sys
import time
from typing import Any

import httpx

RETRY_STATUSES = {409, 429, 502, 503, 504}
MAX_ATTEMPTS = 6


class ApiError(Exception):
    """A response the client does not retry: the problem details say why."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {"title": response.text[:200] or response.reason_phrase}
        super().__init__(self.describe())

    @property
    def errors(self) -> list[dict]:
        return (self.problem.get("errors") or []) if isinstance(self.problem, dict) else []

    def describe(self) -> str:
        request = self.response.request
        lines = [f"{request.method} {request.url.path} -> {self.status}: {self.problem.get('title', '')}"]
        detail = self.problem.get("detail")
        if detail and detail != self.problem.get("title"):
            lines.append(f"  {detail}")
        lines += [f"  - {e.get('field') or '(request)'}: {e.get('message')} [{e.get('code')}]" for e in self.errors]
        return "\n".join(lines)


class RegistryClient:
    """Thin wrapper over httpx: the key header, retries that are safe to repeat, and cursor pagination."""

    def __init__(self, base_url: str, key: str, *, timeout: float = 20.0, verbose: bool = True, transport=None):
        self.http = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1/",
            headers={"Authorization": f"Api-Key {key}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self.verbose = verbose

    def close(self) -> None:
        self.http.close()

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        idempotency_key: str | None = None,
        if_match: str | None = None,
    ) -> httpx.Response:
        """Send one request, repeating it only when that is safe.

        A GET is always safe to repeat; a POST only with its Idempotency-Key (the same key on every
        attempt, so that the registry runs it once and replays the answer).
        """
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if if_match:
            headers["If-Match"] = if_match
        repeatable = method == "GET" or idempotency_key is not None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            last_try = attempt == MAX_ATTEMPTS or not repeatable
            try:
                response = self.http.request(method, path, json=json, params=params, headers=headers)
            except httpx.TransportError as exc:  # connection refused or reset, timeout, ...
                if last_try:
                    raise
                wait = self._backoff(attempt)
                self.log(f"    {type(exc).__name__} on {method} {path}; retrying in {wait:.1f}s with the same key")
                time.sleep(wait)
                continue
            if response.status_code in RETRY_STATUSES and not last_try:
                wait = self._retry_after(response) or self._backoff(attempt)
                self.log(f"    {response.status_code} on {method} {path}; retrying in {wait:.1f}s")
                time.sleep(wait)
                continue
            if response.status_code >= 400:
                raise ApiError(response)
            return response
        raise AssertionError("unreachable")

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:  # an HTTP date
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, (parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
            except (TypeError, ValueError):
                return None

    def get(self, path: str, **params) -> dict:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def list(self, path: str, **params) -> list[dict]:
        """Every item of a list, following the `next` links of the cursor pagination."""
        items: list[dict] = []
        page = self.get(path, **params)
        while True:
            items += page["results"]
            if not page.get("next"):
                return items
            page = self.request("GET", page["next"]).json()  # an absolute URL; httpx keeps it as it is

    def post(self, path: str, body: dict, *, key: str, if_match: str | None = None) -> httpx.Response:
        return self.request("POST", path, json=body, idempotency_key=key, if_match=if_match)


# The steps -------------------------------------------------------------------------------------------


def idempotency_key(study: str, subject: str, step: str) -> str:
    """One key per logical write: running the script again for the same subject sends the same keys."""
    return f"partner-example:{study}:{subject}:{step}"


def find_patient(api: RegistryClient, study: str, subject: str) -> dict | None:
    found = api.list("patients/", study=study, subject_code=subject)
    return found[0] if found else None


def register_patient(api: RegistryClient, study: str, subject: str, consent: dt.date) -> dict:
    body = {
        "study": study,
        "subject_code": subject,
        "sex": "F",
        "birth_year": 1991,
        "diagnosis_date": "2019-05-14",
        "classification_criteria": "slicc2012",
        "consent_date": consent.isoformat(),
        "refractory_to": ["cyclophosphamide", "mycophenolate"],
        "refractory_notes": "Active nephritis despite 6 months of mycophenolate.",
    }
    try:
        response = api.post("patients/", body, key=idempotency_key(study, subject, "register"))
    except ApiError as error:
        # 422: this key went with another body (an earlier run on another day); 400 on subject_code: the
        # patient is registered already. Either way the patient is there: carry on with it.
        existing = find_patient(api, study, subject)
        if existing is None or not (error.status == 422 or any(e["field"] == "subject_code" for e in error.errors)):
            raise
        api.log(f"  patient {subject} was registered already (id {existing['id']})")
        return existing
    replayed = " (replayed)" if response.headers.get("Idempotent-Replayed") else ""
    patient = response.json()
    api.log(f"  registered patient {subject}: id {patient['id']}, status {patient['status']}{replayed}")
    return patient


# A refusal on these fields is about the lot (not released, expired, too few cells left): try another one.
LOT_FIELDS = {"lot", "lot_number", "dose_cells_per_kg"}


def usable_lots(api: RegistryClient, study: str, on_date: dt.date) -> list[str]:
    lots = api.list("lots/", release_status="released")
    usable = [
        lot
        for lot in lots
        if lot["study"] == study
        and dt.date.fromisoformat(lot["cryopreserved_on"]) <= on_date <= dt.date.fromisoformat(lot["expires_on"])
    ]
    usable.sort(key=lambda lot: lot["expires_on"], reverse=True)
    return [lot["lot_number"] for lot in usable]


def record_transplant(
    api: RegistryClient, study: str, subject: str, lots: list[str], infused_at: dt.datetime, weight_kg: float
) -> dict:
    existing = api.list("transplants/", study=study, subject_code=subject)
    for lot_number in lots:
        body = {
            "study": study,
            "subject_code": subject,
            "lot_number": lot_number,
            "infused_at": infused_at.isoformat(),
            "infusion_number": 1,
            "weight_kg": weight_kg,
            "dose_cells_per_kg": 1_000_000,
            "route": "iv",
            "duration_minutes": 30,
            "premedication": "Promethazine 25 mg IM",
        }
        try:
            response = api.post("transplants/", body, key=idempotency_key(study, subject, f"infusion-1:{lot_number}"))
        except ApiError as error:
            if existing and (error.status == 422 or any(e["field"] == "infusion_number" for e in error.errors)):
                api.log(f"  infusion 1 of {subject} was recorded already (lot {existing[0]['lot_number']})")
                return existing[0]
            lot_refused = any(e["field"] in LOT_FIELDS or e["code"] == "lot_exhausted" for e in error.errors)
            if error.status == 400 and lot_refused and lot_number != lots[-1]:
                api.log(f"  lot {lot_number} cannot be used ({error.errors[0]['message']}); trying the next lot")
                continue
            raise
        event = response.json()
        replayed = " (replayed)" if response.headers.get("Idempotent-Replayed") else ""
        api.log(
            f"  recorded infusion {event['infusion_number']} of lot {event['lot_number']} at {event['infused_at']}: "
            f"{event['total_cells']:,} cells{replayed}"
        )
        return event
    raise SystemExit(f"No released lot of {study} could be used for {subject}; tried {', '.join(lots) or 'none'}.")


def schedule(api: RegistryClient, study: str, subject: str) -> dict[str, dict]:
    visits = api.list("visits/", study=study, subject_code=subject)
    api.log("  schedule:")
    for visit in sorted(visits, key=lambda v: v["target_date"]):
        api.log(
            f"    {visit['code']:<4} {visit['target_date']}  window {visit['window_start']} .. "
            f"{visit['window_end']}  {visit['state']}"
        )
    return {visit["code"]: visit for visit in visits}


# Baseline: active lupus nephritis. Values as the hospital laboratory reports them; the registry converts
# each to its canonical unit (creatinine to umol/L, protein to g/24h, C3/C4 to g/L, ...).
BASELINE = {
    "sledai_items": ["proteinuria", "haematuria", "low_complement", "increased_dna_binding", "arthritis", "rash"],
    "results": {
        "CREAT": {"value": 0.92, "unit": "mg/dL"},
        "PROT24H": {"value": 2450, "unit": "mg/24h"},
        "ALB": {"value": 2.9, "unit": "g/dL"},
        "C3": {"value": 52, "unit": "mg/dL"},
        "C4": {"value": 7, "unit": "mg/dL"},
        "ADSDNA": {"value": 212, "unit": "IU/mL"},
        "HGB": {"value": 10.8, "unit": "g/dL"},
        "WBC": {"value": 4100, "unit": "/uL"},
        "PLT": {"value": 168000, "unit": "/uL"},
        "PGA": {"value": 2.2},
        "PRED": {"value": 30, "unit": "mg/day"},
    },
}
# Month 3: proteinuria below 0.5 g/24h, complement back, arthritis gone; the rash persists. Anti-dsDNA is below
# the laboratory's limit of detection: the limit goes in `value` with a `comparator` ("<", "<=", ">=" or ">"),
# which the API accepts for laboratory results (not for scores, doses, weights or eGFR).
MONTH_3 = {
    "sledai_items": ["rash"],
    "results": {
        "CREAT": {"value": 0.85, "unit": "mg/dL"},
        "PROT24H": {"value": 420, "unit": "mg/24h"},
        "ALB": {"value": 3.8, "unit": "g/dL"},
        "C3": {"value": 91, "unit": "mg/dL"},
        "C4": {"value": 16, "unit": "mg/dL"},
        "ADSDNA": {"value": 10, "comparator": "<", "unit": "IU/mL"},
        "HGB": {"value": 12.1, "unit": "g/dL"},
        "WBC": {"value": 5600, "unit": "/uL"},
        "PLT": {"value": 201000, "unit": "/uL"},
        "PGA": {"value": 0.8},
        "PRED": {"value": 10, "unit": "mg/day"},
    },
}


def record_visit(api: RegistryClient, study: str, subject: str, visit: dict, on_date: dt.date, data: dict) -> dict:
    body = {"actual_date": on_date.isoformat(), **data}
    try:
        response = api.post(f"visits/{visit['id']}/record/", body, key=idempotency_key(study, subject, visit["code"]))
    except ApiError as error:
        # 422: the visit was recorded by an earlier run with another body (another day's dates). Leave it;
        # correcting it would need If-Match with the visit's ETag and a reason.
        if error.status != 422 or visit["outcome"] == "open":
            raise
        recorded = api.get(f"visits/{visit['id']}/")
        api.log(f"  {recorded['code']} was recorded already, on {recorded['actual_date']}")
        return recorded
    recorded = response.json()
    replayed = " (replayed)" if response.headers.get("Idempotent-Replayed") else ""
    results = ", ".join(f"{r['code']} {r.get('comparator', '')}{r['value']} {r['unit']}" for r in recorded["results"])
    api.log(f"  recorded {recorded['code']} on {recorded['actual_date']}{replayed}: {results}")
    return recorded


def read_outcome(api: RegistryClient, study: str, subject: str, visit_code: str) -> dict:
    outcomes = [o for o in api.list("outcomes/", study=study, subject_code=subject) if o["visit_code"] == visit_code]
    if not outcomes:
        raise SystemExit(f"The registry computed no outcome at {visit_code} for {subject}.")
    outcome = outcomes[0]
    api.log(
        f"  outcome at {visit_code}: SLEDAI-2K {outcome['sledai']} (change {outcome['sledai_change']}), "
        f"SRI-4 {outcome['sri4']}, remission {outcome['remission'] or '-'}, "
        f"renal response {outcome['renal_response'] or '-'}, flare {outcome['flare'] or '-'}"
    )
    return outcome


def run(
    base_url: str, key: str, study: str, lot: str | None, subject: str, *, verbose: bool = True, today=None
) -> dict:
    """Every step; returns what was written and read (the tests use it)."""
    api = RegistryClient(base_url, key, verbose=verbose)
    try:
        api.log(f"Study {study} at {base_url}, subject {subject}")
        study_info = api.get(f"studies/{study}/")
        offsets = {d["code"]: d["offset_days"] for d in study_info["visit_definitions"]}
        m3_offset = offsets.get("M3", 91)

        # Dates from the UTC calendar: infusion 100 days ago (09:30 UTC), consent a fortnight before. The
        # registry dates visits by the site's local calendar, and the month-3 visit is seen on its target day.
        today = today or dt.datetime.now(dt.UTC).date()
        infusion_day = today - dt.timedelta(days=m3_offset + 9)
        infused_at = dt.datetime.combine(infusion_day, dt.time(1, 30), tzinfo=dt.UTC)
        consent = infusion_day - dt.timedelta(days=14)

        patient = register_patient(api, study, subject, consent)
        lots = [lot] if lot else usable_lots(api, study, infusion_day)
        transplant = record_transplant(api, study, subject, lots, infused_at, weight_kg=58.5)

        visits = schedule(api, study, subject)
        baseline = record_visit(
            api, study, subject, visits["BL"], dt.date.fromisoformat(visits["BL"]["window_end"]), BASELINE
        )
        m3_date = min(dt.date.fromisoformat(visits["M3"]["target_date"]), today)
        month_3 = record_visit(api, study, subject, visits["M3"], m3_date, MONTH_3)
        outcome = read_outcome(api, study, subject, "M3")
        return {
            "patient": patient,
            "transplant": transplant,
            "baseline": baseline,
            "month_3": month_3,
            "outcome": outcome,
        }
    finally:
        api.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="default: %(default)s")
    parser.add_argument("--key", default=os.environ.get("MSCT_API_KEY"), help="API key (default: $MSCT_API_KEY)")
    parser.add_argument("--study", default="MSCT-SLE-DEMO", help="study code (default: %(default)s)")
    parser.add_argument(
        "--lot",
        default=None,
        help="lot number to infuse (default: the released lots of the study, latest expiry first)",
    )
    parser.add_argument(
        "--subject",
        default=None,
        help="subject code (default: a random PX-XXXXXX); give the same code again to re-run safely",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set MSCT_API_KEY")
    subject = args.subject or f"PX-{secrets.token_hex(3).upper()}"
    try:
        run(args.base_url, args.key, args.study, args.lot, subject, verbose=not args.quiet)
    except ApiError as error:
        print(error.describe(), file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"Could not reach the registry at {args.base_url}: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"Done. Run again with --subject {subject} to see the idempotent replay.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
