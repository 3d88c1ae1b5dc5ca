"""`make bench` (`python -m bench`): create the benchmark databases, seed them, run every workload beside its
baseline, and print one JSON object. See docs/performance.md for the method.

Environment: DATABASE_URL (a PostgreSQL server; its database name is replaced), BENCH_DB (prefix of the
databases made here, default msct_bench_run), BENCH_PATIENTS (default 100000), BENCH_SMALL_PATIENTS (default
10000), BENCH_REQUESTS (HTTP requests per write workload and side, default 200), BENCH_READS (the same for
reads, default 200), BENCH_INGEST_VISITS (visits sent to the batch endpoint, and as many copied, default
10000), BENCH_INGEST_BATCH (visits per batch request, default 500), BENCH_PORT (gunicorn, default a free port),
BENCH_ONLY=pages (seed and run workload 8, the coordinator pages, alone), BENCH_IMPORT_PATIENTS (the
historical cohort imported by workload 9, default 200), BENCH_IMPORT_ROUNDS (its rounds, default 3),
BENCH_ONLY=import (workload 9 alone, nothing seeded).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ENV = os.environ


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def database_url(name: str) -> str:
    url = ENV.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("make bench needs DATABASE_URL=postgres://... (a PostgreSQL server)")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate(name: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(name: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(db: str, **extra) -> dict:
    env = {**ENV, "DATABASE_URL": database_url(db), "DJANGO_SETTINGS_MODULE": "config.settings.bench"}
    env.setdefault("API_RATE_LIMIT", "1000000/minute")  # the throttle runs, it does not stop the benchmark
    env.update(extra)
    return env


def run(args: list[str], db: str, env: dict | None = None) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env or env_for(db), capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(args)}")
    return done.stdout


def workload(name: str, db: str, *args, env: dict | None = None) -> dict:
    output = run([PYTHON, "-m", "bench.workloads", name, *map(str, args)], db, env)
    return json.loads(output.strip().splitlines()[-1])


def seeded_database(patients: int) -> tuple[str, float]:
    db = f"{ENV.get('BENCH_DB', 'msct_bench_run')}_{patients}"
    log(f"database {db}: create, migrate, seed {patients} patients")
    recreate(db)
    run([PYTHON, "manage.py", "migrate", "-v0"], db)
    started = time.perf_counter()
    run([PYTHON, "manage.py", "seed_synthetic", "--patients", str(patients), "--quiet"], db)
    seconds = time.perf_counter() - started
    # The planner's statistics, as autovacuum would gather them a while after the load: without them it
    # took the 8 sites for 40 and a site's visits for 480, and sorted all of a user's visits to show 100.
    with psycopg.connect(database_url(db), autocommit=True) as conn:
        conn.execute("ANALYZE")
    log(f"seeded {patients} patients in {seconds:.0f} s")
    return db, seconds


# HTTP --------------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, db: str, port: int):
        self.db, self.port = db, port

    def __enter__(self):
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env_for(self.db),
            start_new_session=True,
        )
        for _ in range(120):
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/livez")
                if conn.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit("gunicorn did not start")

    def __exit__(self, *exc):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


class CpuMeter:
    """CPU seconds spent by the gunicorn workers and by the PostgreSQL server's processes (those that exited
    included: they are added to the postmaster's children's time when it reaps them), read from /proc. Only
    where PostgreSQL runs on this machine and /proc can be read; elsewhere `sample` answers None."""

    _TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, gunicorn_pid: int, db: str):
        self.gunicorn_pid = gunicorn_pid
        self.postmaster_pid = None
        with psycopg.connect(database_url(db), autocommit=True) as conn:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'").fetchone()
        if row and self._stat(row[0]) is not None:
            self.postmaster_pid = self._stat(row[0])[1]

    @staticmethod
    def _stat(pid: int) -> list[int] | None:
        # (state, ppid, ..., utime, stime, cutime, cstime) as integers from field 4 on; None when unreadable.
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return [0, *(int(f) for f in fields[1:15])]

    def _tree(self, root: int) -> float:
        """CPU ticks of `root` (its reaped children's included) and of its living children."""
        own = self._stat(root)
        ticks = sum(own[11:15]) if own else 0
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = self._stat(int(name))
                if stat and stat[1] == root:
                    ticks += stat[11] + stat[12]
        return ticks

    def sample(self) -> tuple[float, float] | None:
        if self.postmaster_pid is None:
            return None
        return self._tree(self.gunicorn_pid) / self._TICK, self._tree(self.postmaster_pid) / self._TICK


def _request(conn, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response.status, response.read()


def load(
    port: int, requests: list[tuple[str, str, dict | None, dict]], threads: int = 2, cpu: CpuMeter | None = None
) -> dict:
    """Send the requests from `threads` keep-alive connections; throughput and latency percentiles, and with a
    `cpu` meter the CPU time per request of the web server and of PostgreSQL."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(requests))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    return
                method, path, body, headers = queue.pop()
            started = time.perf_counter()
            status, content = _request(conn, method, path, body, headers)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status >= 300:
                    failures.append(f"{status} {path}: {content[:300]!r}")

    before = cpu.sample() if cpu else None
    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    ordered = sorted(latencies)
    out = {
        "requests": len(latencies),
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 1),
    }
    after = cpu.sample() if cpu else None
    if before and after:
        web, db = ((a - b) / len(latencies) * 1000 for a, b in zip(after, before, strict=True))
        out["cpu_ms_per_request"] = {"web": round(web, 1), "postgres": round(db, 1)}
    return out


def write_requests(prep: dict, side: str) -> list:
    from bench.workloads import WRITE_RESULTS

    results = {code: {"value": value} for code, value in WRITE_RESULTS.items()}
    if side == "api":
        headers = {"Authorization": f"Api-Key {prep['key']}"}
        return [
            (
                "POST",
                "/api/v1/visits/record/",
                {
                    "study": prep["study"],
                    "subject_code": row["subject_code"],
                    "visit_code": row["visit_code"],
                    "actual_date": row["actual_date"],
                    "results": results,
                },
                {**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            for row in prep["api"]
        ]
    return [
        ("POST", f"/bench/bare/visits/{row['id']}/record/", {"actual_date": row["actual_date"], "results": results}, {})
        for row in prep["bare"]
    ]


def ingest(db: str, port: int) -> dict:
    visits = int(ENV.get("BENCH_INGEST_VISITS", "10000"))
    batch = int(ENV.get("BENCH_INGEST_BATCH", "500"))
    prep = workload("ingest_prepare", db, visits, batch)
    requests = [
        (
            "POST",
            "/api/v1/visits/record-batch/",
            request["body"],
            {"Authorization": f"Api-Key {request['key']}", "Idempotency-Key": str(uuid.uuid4())},
        )
        for request in prep["requests"]
    ]
    started = time.perf_counter()
    sent = load(port, requests)
    api_s = time.perf_counter() - started
    rows = prep["visits"] * prep["rows_per_visit"]
    ratio = round(rows / api_s / prep["copy_rows_per_s"], 3)
    return {
        "visits": prep["visits"],
        "batch_size": batch,
        "requests": sent,
        "api_s": round(api_s, 2),
        "api_rows_per_s": round(rows / api_s, 1),
        "copy_visits": prep["copy_visits"],
        "copy_s": prep["copy_s"],
        "copy_rows_per_s": prep["copy_rows_per_s"],
        "ratio": ratio,
        "target": "rows/s >= 0.25 x COPY",
        "holds": ratio >= 0.25,
    }


def http_workloads(db: str) -> dict:
    port = int(ENV.get("BENCH_PORT", "0")) or free_port()
    count = int(ENV.get("BENCH_REQUESTS", "200"))
    prep = workload("prepare", db, count + 10)
    out = {}
    with Gunicorn(db, port) as server:
        api_key = {"Authorization": f"Api-Key {prep['key']}"}
        # 4. Reads: a page of 100 visits with results.
        reads = int(ENV.get("BENCH_READS", "200"))
        load(port, [("GET", "/api/v1/visits/?page_size=100", None, api_key)] * 10)  # warm up
        load(port, [("GET", f"/bench/bare/visits/?site={prep['site']}&page_size=100", None, {})] * 10)
        api = load(port, [("GET", "/api/v1/visits/?page_size=100", None, api_key)] * reads)
        bare = load(port, [("GET", f"/bench/bare/visits/?site={prep['site']}&page_size=100", None, {})] * reads)
        out["4_reads"] = {
            "api": api,
            "bare": bare,
            "p50_ratio": round(api["p50_ms"] / bare["p50_ms"], 2),
            "p95_ratio": round(api["p95_ms"] / bare["p95_ms"], 2),
            "target": "p50 ratio <= 2 and the same query count for page sizes 1, 50 and 100",
        }
        out["4_reads"].update(workload("read_queries", db, prep["key"]))
        out["4_reads"]["holds"] = out["4_reads"]["p50_ratio"] <= 2 and out["4_reads"]["constant"]
        # 1. Partner writes: a visit with 11 results (and the eGFR computed from creatinine).
        api_requests, bare_requests = write_requests(prep, "api"), write_requests(prep, "bare")
        load(port, api_requests[:5])
        load(port, bare_requests[:5])
        cpu = CpuMeter(server.process.pid, db)
        api_w = load(port, api_requests[5 : 5 + count], cpu=cpu)
        bare_w = load(port, bare_requests[5 : 5 + count], cpu=cpu)
        ratio = round(api_w["per_s"] / bare_w["per_s"], 3)
        out["1_partner_write"] = {
            "api": api_w,
            "bare": bare_w,
            "throughput_ratio": ratio,
            "target": "throughput ratio >= 0.5",
            "holds": ratio >= 0.5,
        }
        # 2. Bulk ingest: the partners' batches through POST /api/v1/visits/record-batch/, beside COPY.
        out["2_bulk_ingest"] = ingest(db, port)
    return out


PAGE_RATIO = 3  # each coordinator page within 3x of the bare read of its rows
REPORT_PAGE_S = 2.0  # the cohort report page (cached) at 10,000 patients or more


def coordinator_pages(pages: dict, large: int) -> dict:
    """Workload 8 at the large size, with the query counts of every size beside each other: the same count
    at every size is the target."""
    out = dict(pages[large])
    counts = {
        who: {name: {str(size): pages[size][who][name]["queries"] for size in pages} for name in pages[large][who]}
        for who in ("all_sites", "one_site")
    }
    constant = all(len(set(by_size.values())) == 1 for rows in counts.values() for by_size in rows.values())
    ratios_hold = all(
        row["ratio"] is not None and row["ratio"] <= PAGE_RATIO
        for who in ("all_sites", "one_site")
        for name, row in pages[large][who].items()
        if name != "report"
    )
    report_hold = all(
        pages[large][who]["report"]["page_ms"] / 1000 <= REPORT_PAGE_S for who in ("all_sites", "one_site")
    )
    out.update(
        # The smaller sizes' figures beside (the targets are read at the large size).
        smaller_sizes={str(size): pages[size] for size in sorted(pages) if size != large},
        queries_by_size=counts,
        queries_constant=constant,
        target=f"each page <= {PAGE_RATIO}x its bare read, query counts the same at every size, "
        f"the cohort report page <= {REPORT_PAGE_S} s",
        holds=ratios_hold and constant and report_hold,
    )
    return out


# 9. Cohort import ----------------------------------------------------------------------------------------

IMPORT_SQLITE_S = 60  # the target for 200 patients and 2,400 visits, on SQLite
# Regression guards: the highest ratio measured on a busy machine (9.8; docs/performance.md) and a quarter.
IMPORT_RATIO = {"sqlite": 12, "postgresql": 12}


def sqlite_env(var_dir: Path) -> dict:
    env = {k: v for k, v in ENV.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.bench", REGISTRY_VAR_DIR=str(var_dir))
    return env


def cohort_import(patients: int, rounds: int) -> dict:
    """Workload 9 on PostgreSQL and on SQLite: `rounds` times the baseline then the import, each into an empty
    registry of its own, a copy of one migrated database (PostgreSQL: `CREATE DATABASE ... TEMPLATE`; SQLite: a
    copy of the file under a temporary REGISTRY_VAR_DIR), each in its own process. The figures are the fastest
    round of each side (the machine's noise only ever adds time), the times of every round beside them."""
    import shutil
    import tempfile

    out: dict = {"patients": patients, "rounds": rounds}
    prefix = f"{ENV.get('BENCH_DB', 'msct_bench_run')}_import"
    template = f"{prefix}_template"
    recreate(template)
    run([PYTHON, "manage.py", "migrate", "-v0"], template)
    try:
        sides: dict = {"baseline": [], "import": []}
        for n in range(rounds):
            for side in sides:
                db = f"{prefix}_{side}"
                with psycopg.connect(database_url("postgres"), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                    conn.execute(f'CREATE DATABASE "{db}" TEMPLATE "{template}"')
                log(f"cohort import, PostgreSQL, round {n + 1}: {side}")
                try:
                    sides[side].append(workload(IMPORT_SIDES[side], db, patients))
                finally:
                    drop(db)
        out["postgresql"] = import_sides(sides)
    finally:
        drop(template)
    with tempfile.TemporaryDirectory(prefix="msct-bench-import-") as tmp:
        migrated = Path(tmp) / "migrated"
        migrated.mkdir()
        run([PYTHON, "manage.py", "migrate", "-v0"], "", sqlite_env(migrated))
        sides = {"baseline": [], "import": []}
        for n in range(rounds):
            for side in sides:
                var_dir = Path(tmp) / f"{side}-{n}"
                var_dir.mkdir()
                shutil.copy(migrated / "registry.sqlite3", var_dir / "registry.sqlite3")
                log(f"cohort import, SQLite, round {n + 1}: {side}")
                sides[side].append(workload(IMPORT_SIDES[side], "", patients, env=sqlite_env(var_dir)))
                shutil.rmtree(var_dir)
        out["sqlite"] = import_sides(sides)
    ratios_hold = all(out[engine]["ratio"] <= guard for engine, guard in IMPORT_RATIO.items())
    out.update(
        target=f"on SQLite under {IMPORT_SQLITE_S} s (issue 24); import / baseline <= "
        + ", ".join(f"{guard} on {engine}" for engine, guard in IMPORT_RATIO.items())
        + " (regression guards)",
        holds=out["sqlite"]["import_s"] < IMPORT_SQLITE_S and ratios_hold,
    )
    return out


IMPORT_SIDES = {"baseline": "import_baseline", "import": "import"}  # side -> workload in bench/workloads.py


def import_sides(sides: dict) -> dict:
    """The fastest round of each side, their ratio, and every round's times."""
    rows = {repr(run["rows"]) for runs in sides.values() for run in runs}
    if len(rows) != 1:
        raise SystemExit(f"the import and its baseline wrote different rows: {sorted(rows)}")
    imported = min(sides["import"], key=lambda run: run["import_s"])
    baseline = min(sides["baseline"], key=lambda run: run["baseline_s"])
    return {
        **imported,
        "baseline_s": baseline["baseline_s"],
        "baseline_peak_memory_mb": baseline["peak_memory_mb"],
        "ratio": round(imported["import_s"] / baseline["baseline_s"], 2),
        "rounds_import_s": [run["import_s"] for run in sides["import"]],
        "rounds_second_import_s": [run["second_import_s"] for run in sides["import"]],
        "rounds_baseline_s": [run["baseline_s"] for run in sides["baseline"]],
    }


def main() -> None:
    started = time.perf_counter()
    (ROOT / "var" / "static").mkdir(parents=True, exist_ok=True)  # whitenoise's folder (the production default)
    large = int(ENV.get("BENCH_PATIENTS", "100000"))
    small = int(ENV.get("BENCH_SMALL_PATIENTS", "10000"))
    sizes = sorted({small, large})
    result: dict = {"sizes": sizes, "seed_s": {}}
    growth: dict = {}
    pages: dict = {}
    only_pages = ENV.get("BENCH_ONLY") == "pages"  # seeding and workload 8 alone
    import_patients = int(ENV.get("BENCH_IMPORT_PATIENTS", "200"))
    import_rounds = int(ENV.get("BENCH_IMPORT_ROUNDS", "3"))
    if ENV.get("BENCH_ONLY") == "import":  # workload 9 alone, no seeded database
        result = {"9_cohort_import": cohort_import(import_patients, import_rounds)}
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["all_hold"] = result["9_cohort_import"]["holds"]
        print(json.dumps(result, indent=2))
        return
    for size in sizes:
        db, seconds = seeded_database(size)
        result["seed_s"][str(size)] = round(seconds, 1)
        log(f"{size}: coordinator pages")
        pages[size] = workload("pages", db)
        if only_pages:
            if size != large:
                drop(db)
            continue
        log(f"{size}: reminder sweep")
        sweep = workload("sweep", db)
        log(f"{size}: cohort report")
        report = workload("report", db)
        log(f"{size}: safety checks (dry run)")
        checks = workload("safety_checks", db)
        growth[size] = {"sweep": sweep, "report": report, "safety_checks": checks}
        if size == large:
            sweep.update(
                target="daily sweep <= 3x the due-set query, peak memory < 200 MB",
                holds=sweep["ratio"] <= 3 and sweep["peak_memory_mb"] < 200,
            )
            report.update(target="<= 3x the SQL aggregate", holds=report["ratio"] <= 3)
            result["3_reminder_sweep"] = sweep
            result["5_cohort_report"] = report
            checks.update(
                target="dry run <= 3x the raw SQL of the same rules, and under 60 s",
                holds=checks["ratio"] <= 3 and checks["dry_run_s"] < 60,
            )
            result["7_safety_checks"] = checks
            log(f"{size}: HTTP reads, writes and bulk ingest against gunicorn")
            result.update(http_workloads(db))
        else:
            drop(db)
    result["8_coordinator_pages"] = coordinator_pages(pages, large)
    if not only_pages:
        log("cohort import")
        result["9_cohort_import"] = cohort_import(import_patients, import_rounds)
    if len(sizes) == 2 and not only_pages:
        a, b = sizes
        data = b / a
        result["6_growth"] = {
            "data_ratio": data,
            "sweep_cost_ratio": round(growth[b]["sweep"]["daily_sweep_s"] / growth[a]["sweep"]["daily_sweep_s"], 2),
            "report_cost_ratio": round(growth[b]["report"]["report_s"] / growth[a]["report"]["report_s"], 2),
            "safety_checks_cost_ratio": round(
                growth[b]["safety_checks"]["dry_run_s"] / growth[a]["safety_checks"]["dry_run_s"], 2
            ),
            "small": growth[a],
            "target": "cost ratio <= data ratio",
        }
        g = result["6_growth"]
        g["holds"] = all(g[f"{name}_cost_ratio"] <= data for name in ("sweep", "report", "safety_checks"))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["all_hold"] = all(
        v.get("holds") for k, v in result.items() if k[:2] in {"1_", "2_", "3_", "4_", "5_", "6_", "7_", "8_", "9_"}
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
