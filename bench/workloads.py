"""The Django side of the benchmark: `python -m bench.workloads NAME` prints one JSON object.

Run by `bench/__main__.py` with DJANGO_SETTINGS_MODULE=config.settings.bench and DATABASE_URL naming a
seeded database. Each workload runs in its own process, so that its peak memory is its own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import statistics
import sys
import time
from decimal import Decimal

WRITE_RESULTS = {
    "SLEDAI2K": 4,  # the total (no items): the default template requires SLEDAI-2K to complete M3 and later visits
    "PGA": 1.0,
    "PROT24H": 0.8,
    "ALB": 38,
    "CREAT": 70,
    "C3": 0.9,
    "C4": 0.2,
    "ADSDNA": 25,
    "WBC": 5.5,
    "PLT": 210,
    "HGB": 125,
}


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def best_of(n: int, fn) -> float:
    return min(timed(fn)[0] for _ in range(n))


def synthetic_study():
    from devdata.synthetic import STUDY_CODE
    from registry.models import Study

    return Study.objects.get(code=STUDY_CODE)


# 3. Reminder sweep -------------------------------------------------------------------------------------


def table_names() -> dict[str, str]:
    """The tables the baseline SQL reads, from the models (a moved model keeps its table, `Meta.db_table`)."""
    from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
    from patients.models import Patient, TransplantEvent
    from registry.models import ReminderPolicy

    models = {
        "visit": Visit,
        "result": Result,
        "outcome": ComputedOutcome,
        "ae": AdverseEvent,
        "patient": Patient,
        "transplant": TransplantEvent,
        "policy": ReminderPolicy,
    }
    return {name: model._meta.db_table for name, model in models.items()}


def due_set_sql(now: dt.datetime) -> int:
    """The visits that get a reminder today and their stage, in one query (the baseline of the sweep)."""
    from django.db import connection

    from notifications.ledger import _site_today
    from patients.constants import INACTIVE_STATUSES
    from registry.models import ReminderPolicy, Site

    sites = list(Site.objects.all())
    tables = table_names()
    values = ", ".join(["(%s, %s::date)"] * len(sites))
    params: list = []
    for site in sites:
        params += [site.pk, _site_today(site, now)]
    sql = f"""
        WITH site_today(site_id, today) AS (VALUES {values})
        SELECT v.id,
               CASE WHEN s.today < v.window_start THEN 'upcoming'
                    WHEN s.today <= v.window_end THEN
                         CASE WHEN s.today >= v.window_end - COALESCE(rp.closing_days, 3) AND s.today > v.window_start
                              THEN 'closing' ELSE 'due' END
                    WHEN (s.today - v.window_end - 1) / COALESCE(rp.overdue_repeat_days, 7) + 1
                         > COALESCE(rp.overdue_max_reminders, 4) THEN 'escalated'
                    ELSE 'overdue-' || ((s.today - v.window_end - 1) / COALESCE(rp.overdue_repeat_days, 7) + 1)
               END AS stage
        FROM {tables["visit"]} v
        JOIN {tables["patient"]} p ON p.id = v.patient_id
        JOIN site_today s ON s.site_id = p.site_id
        LEFT JOIN {tables["policy"]} rp ON rp.study_id = p.study_id
        WHERE v.outcome = 'open' AND NOT (p.status = ANY(%s))
          AND v.window_start <= s.today + COALESCE(rp.upcoming_days, 7) AND v.window_start <= %s
    """
    upcoming = max([p.upcoming_days for p in ReminderPolicy.objects.all()] + [ReminderPolicy().upcoming_days])
    bound = max(params[1::2]) + dt.timedelta(days=upcoming)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, sorted(INACTIVE_STATUSES), bound])
        return len(cursor.fetchall())


def workload_sweep() -> dict:
    from django.utils import timezone

    from notifications.ledger import reminders_sweep
    from notifications.models import Notification

    now = timezone.now()
    rss_before = peak_mb()
    due = due_set_sql(now)  # warms the cache for both
    baseline = best_of(3, lambda: due_set_sql(now))
    first_s, first = timed(reminders_sweep, now=now - dt.timedelta(days=3))
    # The steady state: the sweeps of the next three days, each after the day before's; their median (one
    # sweep of tens of milliseconds at 10,000 patients is at the mercy of the machine).
    days = [timed(reminders_sweep, now=now - dt.timedelta(days=back)) for back in (2, 1, 0)]
    daily_s = statistics.median(seconds for seconds, _ in days)
    daily = days[-1][1]
    again_s, _ = timed(reminders_sweep, now=now)
    return {
        "due_set": due,
        "baseline_sql_s": round(baseline, 3),
        "first_sweep_s": round(first_s, 3),
        "first_sweep_inserted": first.inserted,
        "daily_sweep_s": round(daily_s, 3),
        "daily_sweeps_s": [round(seconds, 3) for seconds, _ in days],
        "daily_sweep_considered": daily.considered,
        "daily_sweeps_inserted": [report.inserted for _, report in days],
        "repeat_sweep_s": round(again_s, 3),
        "ledger_rows": Notification.objects.count(),
        "ratio": round(daily_s / baseline, 2),
        "peak_memory_mb": peak_mb(),
        "memory_before_sweep_mb": rss_before,
    }


# 7. Safety checks -------------------------------------------------------------------------------------

SAFETY_SQL = [
    # Creatinine >= 1.5 x baseline, from the outcomes' changes.
    """
    SELECT o.visit_id, v.patient_id, v.code, o.changes -> 'CREAT'
    FROM {outcome} o JOIN {visit} v ON v.id = o.visit_id
    WHERE (o.changes -> 'CREAT' ->> 'baseline')::numeric > 0
      AND (o.changes -> 'CREAT' ->> 'value')::numeric >= 1.5 * (o.changes -> 'CREAT' ->> 'baseline')::numeric
    """,
    # SLEDAI-2K flares.
    """
    SELECT o.visit_id, v.patient_id, v.code, o.flare, o.sledai
    FROM {outcome} o JOIN {visit} v ON v.id = o.visit_id
    WHERE o.flare IN ('mild_moderate', 'severe')
    """,
    # Platelets < 100, white cells < 3 at visits entered.
    """
    SELECT r.visit_id, v.patient_id, v.code, r.code, r.value, r.comparator
    FROM {result} r JOIN {visit} v ON v.id = r.visit_id
    WHERE v.outcome IN ('in_progress', 'completed')
      AND (r.code = 'PLT' AND r.value < 100 OR r.code = 'WBC' AND r.value < 3)
    """,
    # Proteinuria at least twice the previous measurement (the latest at an earlier date).
    """
    SELECT * FROM (
        SELECT r.visit_id, v.patient_id, v.code, r.value, r.comparator,
               last_value(r.value) OVER w AS previous, last_value(r.comparator) OVER w AS previous_comparator
        FROM {result} r JOIN {visit} v ON v.id = r.visit_id
        WHERE r.code = 'PROT24H' AND v.outcome IN ('in_progress', 'completed')
        WINDOW w AS (PARTITION BY v.patient_id ORDER BY v.actual_date
                     RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE GROUP)
    ) x WHERE previous > 0 AND value >= 2 * previous
    """,
    # The yearly malignancy question: whole years since day 0 in the site's calendar.
    """
    SELECT * FROM (
        SELECT t.patient_id,
               date_part('year', age((%(now)s AT TIME ZONE s.time_zone)::date,
                                     (t.infused_at AT TIME ZONE s.time_zone)::date)) AS years
        FROM {transplant} t JOIN {patient} p ON p.id = t.patient_id JOIN {site} s ON s.id = p.site_id
        WHERE t.infusion_number = 1 AND NOT (p.status = ANY(%(inactive)s))
    ) x WHERE years >= 1
    """,
]


def safety_sql(now: dt.datetime) -> int:
    """The findings of every safety rule, one raw SQL statement per rule (the baseline of the checks)."""
    from django.db import connection

    from patients.constants import INACTIVE_STATUSES
    from registry.models import Site

    tables = {**table_names(), "site": Site._meta.db_table}
    found = 0
    with connection.cursor() as cursor:
        for statement in SAFETY_SQL:
            cursor.execute(statement.format(**tables), {"now": now, "inactive": sorted(INACTIVE_STATUSES)})
            found += len(cursor.fetchall())
    return found


def workload_safety_checks() -> dict:
    """`run_safety_checks --dry-run` over the whole registry beside the raw SQL of the same rules."""
    import io

    from django.core.management import call_command
    from django.utils import timezone

    from followup.safety import safety_sweep

    now = timezone.now()
    baseline_found = safety_sql(now)  # warms the cache for both
    baseline = best_of(3, lambda: safety_sql(now))
    out = io.StringIO()
    command_s, _ = timed(call_command, "run_safety_checks", dry_run=True, stdout=out)
    report = safety_sweep(now=now, dry_run=True)
    return {
        "findings": report.findings,
        "baseline_findings": baseline_found,
        "would_raise": report.raised,
        "would_record_as_imported": report.imported,
        "baseline_sql_s": round(baseline, 3),
        "dry_run_s": round(command_s, 3),
        "ratio": round(command_s / baseline, 2),
        "peak_memory_mb": peak_mb(),
        "output": out.getvalue().splitlines()[:2],
    }


# 5. Cohort report --------------------------------------------------------------------------------------

REPORT_SQL = [
    # Each result at each time point: n, mean, SD, quartiles.
    """
    SELECT v.code, r.code, count(*), avg(r.value), stddev_samp(r.value),
           percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY r.value)
    FROM {result} r JOIN {visit} v ON v.id = r.visit_id JOIN cohort c ON c.id = v.patient_id
    WHERE v.outcome = 'completed' AND r.code = ANY(%(codes)s)
    GROUP BY 1, 2
    """,
    # Change from baseline among patients with both values: n, mean and SD of the change.
    """
    SELECT v.code, r.code, count(*), avg(r.value - b.value), stddev_samp(r.value - b.value)
    FROM {result} r JOIN {visit} v ON v.id = r.visit_id JOIN cohort c ON c.id = v.patient_id
    JOIN (SELECT bv.patient_id, br.code, br.value FROM {result} br
          JOIN {visit} bv ON bv.id = br.visit_id
          WHERE bv.code = 'BL' AND bv.outcome = 'completed') b ON b.patient_id = v.patient_id AND b.code = r.code
    WHERE v.outcome = 'completed' AND v.code <> 'BL' AND r.code = ANY(%(codes)s)
    GROUP BY 1, 2
    """,
    # Table 1: age, sex, disease duration.
    """
    SELECT count(*), avg(c.age), stddev_samp(c.age), count(*) FILTER (WHERE c.sex = 'F'),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY c.disease_days)
    FROM cohort c
    """,
    # Response rates per time point.
    """
    SELECT v.code, count(*) FILTER (WHERE o.sri4), count(*) FILTER (WHERE o.sri4 IS NOT NULL),
           count(*) FILTER (WHERE o.remission = 'complete'), count(*) FILTER (WHERE o.remission = 'partial'),
           count(*) FILTER (WHERE o.remission <> ''), count(*) FILTER (WHERE o.renal_response = 'complete'),
           count(*) FILTER (WHERE o.flare IN ('mild_moderate', 'severe'))
    FROM {outcome} o JOIN {visit} v ON v.id = o.visit_id JOIN cohort c ON c.id = v.patient_id
    GROUP BY 1
    """,
    # Survival: deaths and patients at risk at each landmark (last contact from the completed visits).
    """
    SELECT count(*) FILTER (WHERE c.status = 'deceased'),
           count(*) FILTER (WHERE l.last_contact - c.day_zero >= 182),
           count(*) FILTER (WHERE l.last_contact - c.day_zero >= 365),
           count(*) FILTER (WHERE l.last_contact - c.day_zero >= 730)
    FROM cohort c JOIN (SELECT patient_id, max(actual_date) AS last_contact FROM {visit}
                        WHERE outcome = 'completed' GROUP BY patient_id) l ON l.patient_id = c.id
    """,
    # Adverse events by category, grade and relatedness.
    """
    SELECT a.category, a.grade, a.relatedness, count(*), count(DISTINCT a.patient_id)
    FROM {ae} a JOIN cohort c ON c.id = a.patient_id
    GROUP BY GROUPING SETS ((a.category), (a.grade), (a.relatedness))
    """,
]

COHORT_CTE = """
    WITH cohort AS MATERIALIZED (
        SELECT p.id, p.sex, p.status, t.infused_at::date AS day_zero,
               extract(year FROM t.infused_at) - p.birth_year AS age, t.infused_at::date - p.diagnosis_date AS disease_days
        FROM {patient} p JOIN {transplant} t ON t.patient_id = p.id AND t.infusion_number = 1
        WHERE p.study_id = %(study)s
    )
"""


def report_sql(study_id: int) -> None:
    from django.db import connection

    from reporting.cohort import TIME_POINT_CODES

    with connection.cursor() as cursor:
        for statement in REPORT_SQL:
            sql = (COHORT_CTE + statement).format(**table_names())
            cursor.execute(sql, {"study": study_id, "codes": TIME_POINT_CODES})
            cursor.fetchall()


def workload_report() -> dict:
    from registry.models import Site
    from reporting.cohort import cohort_report

    study = synthetic_study()
    site_ids = list(Site.objects.values_list("pk", flat=True))
    report_sql(study.pk)  # warm the cache
    baseline = best_of(1, lambda: report_sql(study.pk))  # after the warm-up run: one is steady (about 40 s)
    report_s, report = timed(cohort_report, study=study, site_ids=site_ids)
    return {
        "patients": report["n_patients"],
        "baseline_sql_s": round(baseline, 3),
        "report_s": round(report_s, 3),
        "ratio": round(report_s / baseline, 2),
        "peak_memory_mb": peak_mb(),
    }


# 4. Reads: query counts (latency is measured over HTTP by the runner) ------------------------------------


def workload_read_queries(key: str) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Api-Key {key}", HTTP_HOST="127.0.0.1")
    counts = {}
    client.get("/api/v1/visits/?page_size=1")  # the first use of a key also stamps its last use
    for size in (1, 50, 100):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(f"/api/v1/visits/?page_size={size}")
        assert response.status_code == 200, response.content[:500]
        assert len(response.json()["results"]) == size
        counts[str(size)] = len(ctx.captured_queries)
    return {"queries_by_page_size": counts, "constant": len(set(counts.values())) == 1}


# Setup for the HTTP workloads --------------------------------------------------------------------------


def workload_prepare(count: int) -> dict:
    """An API key for the largest site, and open visits of its active patients to record: half through the
    API, half through the bare view."""
    from followup.models import Visit
    from patients.constants import INACTIVE_STATUSES
    from registry.api_keys import api_key_issue
    from registry.models import ApiKeyScope, Site

    study = synthetic_study()
    site = Site.objects.filter(patients__study=study).order_by("code").first()
    _, key = api_key_issue(site=site, name="benchmark", scope=ApiKeyScope.READ_WRITE)
    today = site.today()
    visits = list(
        Visit.objects.filter(patient__site=site, outcome="open", window_start__lte=today)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .order_by("id")
        .values_list("id", "patient__subject_code", "code", "window_end")[: 2 * count]
    )
    if len(visits) < 2 * count:
        raise SystemExit(f"only {len(visits)} open visits at {site.code}; seed more patients")
    rows = [
        {
            "id": pk,
            "subject_code": subject,
            "visit_code": code,
            "actual_date": min(today, window_end).isoformat(),
        }
        for pk, subject, code, window_end in visits
    ]
    return {"key": key, "site": site.pk, "study": study.code, "api": rows[:count], "bare": rows[count:]}


# 2. Bulk ingest ------------------------------------------------------------------------------------------


def workload_ingest_prepare(count: int, batch: int) -> dict:
    """Open visits whose window has opened, of active patients, split in two: `count` to send to the batch
    endpoint (the runner posts them over HTTP, one key per site, `batch` visits per request), and as many
    others copied here with psycopg COPY (the results, and the visits' new state through a copied table) as
    the baseline."""
    from django.db import connection, transaction

    from followup.models import Visit
    from patients.constants import INACTIVE_STATUSES
    from registry.api_keys import api_key_issue
    from registry.models import ApiKeyScope, Site

    study = synthetic_study()
    sites = {site.pk: site for site in Site.objects.all()}
    today = min(site.today() for site in sites.values())  # a date that has come at every site
    rows = list(
        Visit.objects.filter(patient__study=study, outcome="open", window_start__lte=today)
        .exclude(patient__status__in=INACTIVE_STATUSES)
        .order_by("patient__site_id", "patient_id", "id")
        .values_list("id", "patient__site_id", "patient__subject_code", "code", "window_end", "patient_id")
    )
    # Every other patient of each site to each side, so that both sides hold the same mix of sites and visits,
    # and no patient on both: the baseline completes visits without computing their outcomes (a state the
    # registry never leaves a visit in), which the API's recordings of the same patient would have to repair.
    order = {patient_id: n for n, patient_id in enumerate(dict.fromkeys(row[5] for row in rows))}
    api_rows = [row[:5] for row in rows if order[row[5]] % 2 == 0]
    copy_rows = [row[:5] for row in rows if order[row[5]] % 2 == 1]
    count = min(count, len(api_rows), len(copy_rows))
    api_rows, copy_rows = api_rows[:count], copy_rows[:count]

    requests = []
    results = {code: {"value": value} for code, value in WRITE_RESULTS.items()}
    by_site: dict[int, list] = {}
    for row in api_rows:
        by_site.setdefault(row[1], []).append(row)
    for site_id, site_rows in by_site.items():
        _, key = api_key_issue(site=sites[site_id], name="benchmark ingest", scope=ApiKeyScope.READ_WRITE)
        for start in range(0, len(site_rows), batch):
            visits = [
                {
                    "subject_code": subject,
                    "visit_code": code,
                    "actual_date": min(today, window_end).isoformat(),
                    "results": results,
                }
                for _, _, subject, code, window_end in site_rows[start : start + batch]
            ]
            requests.append({"key": key, "body": {"study": study.code, "visits": visits}})

    stamp = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute("CREATE TEMP TABLE bench_visit (id bigint, actual_date date) ON COMMIT DROP")
        with raw.copy("COPY bench_visit (id, actual_date) FROM STDIN") as copy:
            for visit_id, _, _, _, window_end in copy_rows:
                copy.write_row((visit_id, min(today, window_end)))
        tables = table_names()
        raw.execute(
            f"UPDATE {tables['visit']} v SET outcome = 'completed', actual_date = b.actual_date, updated_at = %s "
            "FROM bench_visit b WHERE v.id = b.id",
            [stamp],
        )
        columns = "visit_id, code, value, entered_value, entered_unit, derived, created_at, updated_at"
        with raw.copy(f"COPY {tables['result']} ({columns}) FROM STDIN") as copy:
            for visit_id, *_ in copy_rows:
                for code, value in WRITE_RESULTS.items():
                    copy.write_row((visit_id, code, value, value, "", False, stamp, stamp))
                copy.write_row((visit_id, "EGFR", 90, None, "computed", True, stamp, stamp))
    copy_s = time.perf_counter() - started
    return {
        "requests": requests,
        "visits": len(api_rows),
        "rows_per_visit": len(WRITE_RESULTS) + 2,
        "copy_visits": len(copy_rows),
        "copy_s": round(copy_s, 3),
        "copy_rows_per_s": round(len(copy_rows) * (len(WRITE_RESULTS) + 2) / copy_s, 1),
    }


# 8. Coordinator pages: the admin pages a coordinator and an all-sites data manager open, in process ------


PAGE_LOADS = 3  # each page's figure is the median of this many loads, after one warm-up load


def _median_s(fn) -> float:
    fn()  # warm-up: imports, templates, the database's cache
    return statistics.median(timed(fn)[0] for _ in range(PAGE_LOADS))


def _page_users():
    """An all-sites data manager (a member of every site, not a superuser) and the coordinator of the site
    with the most patients of the synthetic study."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count

    from registry.constants import Role
    from registry.models import Site
    from registry.services import membership_grant

    user_model = get_user_model()
    study = synthetic_study()
    sites = list(Site.objects.all())
    site = Site.objects.filter(patients__study=study).annotate(n=Count("patients")).order_by("-n", "code").first()
    manager, made = user_model.objects.get_or_create(username="bench_manager", defaults={"is_staff": True})
    if made:
        for s in sites:
            membership_grant(user=manager, site=s, role=Role.DATA_MANAGER)
    coordinator, made = user_model.objects.get_or_create(username="bench_coordinator", defaults={"is_staff": True})
    if made:
        membership_grant(user=coordinator, site=site, role=Role.COORDINATOR)
    return {"all_sites": (manager, [s.pk for s in sites]), "one_site": (coordinator, [site.pk])}, study, site


def workload_pages() -> dict:
    """Each page for each user: the median of 3 loads through the whole stack (middleware, admin, templates)
    beside the median of 3 loads of a bare page of the same rows (`bench.views.bare_page`: the same client,
    middleware and session, the rows read with `.values()` and written into a plain table), and the page's
    query count."""
    from unittest import mock

    from celery import current_app
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    from patients.models import Patient

    users, study, site = _page_users()
    # The patient shown: the site's patient with the most results (a long follow-up, every chart drawn).
    patient = Patient.objects.filter(study=study, site=site).order_by("pk").first()
    query = f"patient={patient.pk}&study={study.pk}"
    paths = {
        "worklist": "/admin/",
        "patient": f"/admin/patients/patient/{patient.pk}/change/",
        "visits": "/admin/followup/visit/",
        "results": "/admin/followup/result/",
        "report": f"/admin/reporting/cohortreport/{study.pk}/change/",
    }
    out: dict = {}
    for who, (user, _sites) in users.items():
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user)
        rows = {}
        for name, path in paths.items():

            def load(path=path, client=client):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.content[:300])

            if name == "report":
                # The first load: a cohort above REPORT_INLINE_MAX_PATIENTS answers at once and queues its
                # computation (reporting/report_page.py; the task is kept here, not sent: no worker runs in the
                # bench), a smaller one is computed in the request. Then the report is computed in process, as
                # the worker would, to fill the cache (a cache hit if the first load computed it). The figure
                # is the cached page; both loads are reported too.
                with mock.patch.object(current_app, "send_task"):
                    first_s = timed(load)[0]
                with override_settings(REPORT_INLINE_MAX_PATIENTS=10**9):
                    computed_s = timed(load)[0]
            page_s = _median_s(load)
            bare_s = _median_s(lambda name=name, client=client: load(f"/bench/bare/pages/{name}/?{query}", client))
            with CaptureQueriesContext(connection) as ctx:
                load()
            rows[name] = {
                "page_ms": round(page_s * 1000, 1),
                "bare_ms": round(bare_s * 1000, 1),
                "ratio": round(page_s / bare_s, 2) if bare_s else None,
                "queries": len(ctx.captured_queries),
            }
            if name == "report":
                rows[name]["first_load_ms"] = round(first_s * 1000, 1)
                rows[name]["computed_ms"] = round(computed_s * 1000, 1)
        out[who] = rows
    out["patients"] = Patient.objects.count()
    out["peak_memory_mb"] = peak_mb()
    return out


# 9. Cohort import: a centre's historical workbook, into an empty registry --------------------------------


def imported_rows(study) -> dict[str, int]:
    """The rows of `study` in the four tables both sides of workload 9 write."""
    from followup.models import Result, Visit
    from patients.models import Patient, TransplantEvent

    return {
        "patients": Patient.objects.filter(study=study).count(),
        "infusions": TransplantEvent.objects.filter(patient__study=study).count(),
        "visits_completed": Visit.objects.filter(patient__study=study, outcome="completed").count(),
        "results": Result.objects.filter(visit__patient__study=study).count(),
    }


def _historical_workbook(patients: int):
    from devdata.historical import LOT, as_workbook, historical_reference, large_cohort

    study, site = historical_reference()
    return study, site, as_workbook(large_cohort(patients, site=site.code, lot=LOT))


def workload_import(patients: int) -> dict:
    """`cohort_import` of the historical workbook (`devdata/historical.py`) into an empty registry: every row
    through the services (all the rules, the visits scheduled by the first infusion, eGFR, outcomes, history),
    then the same workbook again (nothing changes)."""
    from django.db import connection

    from intake.services import cohort_import

    study, _site, workbook = _historical_workbook(patients)
    files = [("historical.xlsx", workbook)]
    import_s, report = timed(cohort_import, study=study, files=files)
    if report.problems or not report.written:
        raise SystemExit(f"the import wrote nothing: {report.problems[:3]}")
    again_s, again = timed(cohort_import, study=study, files=files)
    if again.problems or again.changes:
        raise SystemExit(f"the second import changed {again.changes} rows: {again.problems[:3]}")
    return {
        "database": connection.vendor,
        "workbook_kb": round(len(workbook) / 1024),
        "rows": imported_rows(study),
        "import_s": round(import_s, 2),
        "second_import_s": round(again_s, 2),
        "peak_memory_mb": peak_mb(),
    }


def _read_workbook(content: bytes) -> dict[str, list[tuple]]:
    import io

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    sheets = {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}
    book.close()
    return sheets


def _day(value) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else dt.date.fromisoformat(str(value))


def workload_import_baseline(patients: int) -> dict:
    """The baseline of workload 9: the same workbook read with openpyxl and the same rows written with bare
    `bulk_create` into an empty registry (patients, first infusions, the twelve visits completed on their
    dates, each visit's results in the canonical unit and an eGFR row): no rules, no outcomes, no history."""
    from zoneinfo import ZoneInfo

    from django.db import transaction

    from followup.catalogue import ANALYTES
    from followup.models import Result, Visit
    from patients.models import Patient, TransplantEvent
    from registry.models import CellProduct

    study, site, workbook = _historical_workbook(patients)
    definitions = {d.code: d for d in study.visit_definitions.all()}
    lots = {lot.lot_number: lot for lot in CellProduct.objects.filter(study=study)}
    zone = ZoneInfo(site.time_zone)
    started = time.perf_counter()
    sheets = _read_workbook(workbook)
    with transaction.atomic():
        header, *rows = sheets["patients"]
        made = Patient.objects.bulk_create(
            Patient(study=study, site=site, subject_code=row[0], sex=row[2], birth_year=row[3],
                    diagnosis_date=_day(row[4]), classification_criteria=row[5], consent_date=_day(row[6]),
                    status="enrolled", status_date=_day(row[6]))
            for row in rows
        )  # fmt: skip
        by_code = {patient.subject_code: patient for patient in made}
        day_zero = {}
        infusions = []
        for code, number, infused_at, lot, weight, dose in sheets["infusions"][1:]:
            infused = dt.datetime.fromisoformat(str(infused_at)).replace(tzinfo=zone)
            day_zero[code] = infused.date()
            infusions.append(
                TransplantEvent(patient=by_code[code], lot=lots[lot], infused_at=infused, infusion_number=number,
                                weight_kg=weight, dose_cells_per_kg=dose, total_cells=int(weight * dose))
            )  # fmt: skip
        TransplantEvent.objects.bulk_create(infusions)
        header, *rows = sheets["visits"]
        columns = [(n, *(name.rstrip("]").split(" [") + [""])[:2]) for n, name in enumerate(header) if n > 2]
        visits, values = [], []
        for row in rows:
            code, definition = row[0], definitions[row[1]]
            target = day_zero[code] + dt.timedelta(days=definition.offset_days)
            visits.append(
                Visit(patient=by_code[code], definition=definition, code=definition.code, label=definition.label,
                      label_zh=definition.label_zh, target_date=target,
                      window_start=target - dt.timedelta(days=definition.window_before_days),
                      window_end=target + dt.timedelta(days=definition.window_after_days),
                      outcome="completed", actual_date=_day(row[2]))
            )  # fmt: skip
            values.append(row)
        Visit.objects.bulk_create(visits)
        results = []
        for visit, row in zip(visits, values, strict=True):
            for n, code, unit in columns:
                text = str(row[n])
                comparator = text[0] if text[0] in "<>" else ""
                entered = Decimal(text.lstrip("<>"))
                analyte = ANALYTES[code]
                unit = unit or analyte.unit
                results.append(
                    Result(visit=visit, code=code, value=entered * analyte.factor(unit), comparator=comparator,
                           entered_value=entered, entered_unit=unit)
                )  # fmt: skip
            results.append(Result(visit=visit, code="EGFR", value=90, entered_unit="computed", derived=True))
        Result.objects.bulk_create(results, batch_size=2000)
    baseline_s = time.perf_counter() - started
    return {
        "rows": imported_rows(study),
        "baseline_s": round(baseline_s, 2),
        "peak_memory_mb": peak_mb(),
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.bench")
    import django

    django.setup()
    name, *args = argv
    result = {
        "sweep": workload_sweep,
        "report": workload_report,
        "safety_checks": workload_safety_checks,
        "pages": workload_pages,
        "import": lambda: workload_import(int(args[0])),
        "import_baseline": lambda: workload_import_baseline(int(args[0])),
        "read_queries": lambda: workload_read_queries(args[0]),
        "prepare": lambda: workload_prepare(int(args[0])),
        "ingest_prepare": lambda: workload_ingest_prepare(int(args[0]), int(args[1])),
    }[name]()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
