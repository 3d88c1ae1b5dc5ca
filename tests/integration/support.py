"""The machinery of the reminder fault tests: an SMTP server that counts ledger keys, a private Redis,
Celery worker processes, and a small registry (site, study, lot, patients, coordinators) built through
the services.

Every e-mail the registry sends carries the header `X-Registry-Keys: key1, key2, ...` naming the ledger
rows it says; the tests count deliveries per key. A message counts as delivered only when the server
answered 250 to a client still connected: a worker killed while the server is reading its message never
saw the message accepted, so the message is dropped, as a real mail server would drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.parser
import email.policy
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WAIT = 60.0  # the longest any single wait of these tests may last, in seconds


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float = WAIT, interval: float = 0.05, what: str = ""):
    """Poll `predicate` until it returns something true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def services_required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "").strip() == "1"


def need(condition: bool, problem: str) -> None:
    """Skip (or, under REQUIRE_SERVICES=1, fail) when something the test needs is missing."""
    if condition:
        return
    if services_required():
        pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
    pytest.skip(problem)


# SMTP --------------------------------------------------------------------------------------------------


@dataclass
class Delivered:
    to: tuple[str, ...]
    keys: tuple[str, ...]
    subject: str
    at: float
    message_id: str = ""
    accepted_at: float = 0.0  # wall-clock time (time.time()) of the 250, to compare with the ledger's sent_at


class Mailbox:
    """An aiosmtpd handler that keeps every accepted message and the ledger keys it carries.

    `delay` seconds pass between the end of the client's DATA and the server's 250, which makes a
    batch slow enough to kill a worker in the middle of it.
    """

    def __init__(self, delay: float = 0.0, replies: dict[int, str] | None = None, hold: Iterable[int] = ()):
        self.delay = delay
        # The n-th message (counting from 1) gets this reply instead of a 250 (e.g. "451 4.3.0 Try later").
        self.replies = dict(replies or {})
        # The n-th message waits, before its reply, until the test calls `release(n)`.
        self.holds = {n: (threading.Event(), threading.Event()) for n in hold}  # n -> (arrived, released)
        self.held_keys: dict[int, tuple[str, ...]] = {}
        self.held_servers: dict[int, object] = {}
        self.arrivals = 0
        self.refused: list[tuple[int, str, tuple[str, ...]]] = []  # (n, reply, keys) of the messages refused
        self.messages: list[Delivered] = []
        self._reading: dict[int, float] = {}  # messages received but not yet answered -> when they arrived
        self.dropped = 0  # messages whose client went away before the 250
        self._lock = threading.Lock()
        self._parser = email.parser.BytesParser(policy=email.policy.default)

    async def handle_DATA(self, server, session, envelope):
        began = time.monotonic()
        with self._lock:
            self._reading[id(envelope)] = began
            self.arrivals += 1
            n = self.arrivals
        try:
            message = self._parser.parsebytes(envelope.original_content or envelope.content)
            header = str(message.get("X-Registry-Keys", "") or "")
            keys = tuple(key.strip() for key in header.split(",") if key.strip())
            if self.delay:
                await asyncio.sleep(self.delay)
            if n in self.holds:
                arrived, released = self.holds[n]
                self.held_keys[n] = keys
                self.held_servers[n] = server
                arrived.set()
                await asyncio.get_running_loop().run_in_executor(None, released.wait, WAIT)
            if n in self.replies:
                with self._lock:
                    self.refused.append((n, self.replies[n], keys))
                return self.replies[n]
            if server.transport is None or server.transport.is_closing():
                # The client went away while we were reading: it never saw a 250, nothing was delivered.
                with self._lock:
                    self.dropped += 1
                return "421 Client gone"
            delivered = Delivered(
                to=tuple(envelope.rcpt_tos),
                keys=keys,
                subject=str(message.get("Subject", "")),
                at=time.monotonic(),
                message_id=str(message.get("Message-ID", "") or ""),
                accepted_at=time.time(),
            )
            with self._lock:
                self.messages.append(delivered)
            return "250 Message accepted for delivery"
        except asyncio.CancelledError:
            with self._lock:
                self.dropped += 1
            raise
        finally:
            with self._lock:
                self._reading.pop(id(envelope), None)

    # Holding a message before its reply (from the test's thread) ----------------------------------------

    def wait_held(self, n: int, timeout: float = WAIT) -> tuple[str, ...]:
        """Wait until the n-th message arrived and is held before its reply; return the keys it carries."""
        if not self.holds[n][0].wait(timeout):
            pytest.fail(f"timed out after {timeout:.0f} s waiting for message {n} to arrive")
        return self.held_keys[n]

    def client_gone(self, n: int) -> bool:
        """The client of the held n-th message has hung up (the server saw its connection close)."""
        transport = getattr(self.held_servers.get(n), "transport", None)
        return transport is None or transport.is_closing()

    def release(self, n: int) -> None:
        self.holds[n][1].set()

    def release_all(self) -> None:
        for _, released in self.holds.values():
            released.set()

    # Reading (from the test's thread) ------------------------------------------------------------------

    def snapshot(self) -> list[Delivered]:
        with self._lock:
            return list(self.messages)

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._reading)

    def reading_fresh(self) -> bool:
        """A message is being read and its 250 is at least half the delay away: a safe moment to kill
        the client (it cannot be between our 250 and its own bookkeeping)."""
        now = time.monotonic()
        with self._lock:
            return any(now - began < self.delay / 2 for began in self._reading.values())

    def key_counts(self) -> Counter:
        return Counter(key for message in self.snapshot() for key in message.keys)

    def received_keys(self) -> set[str]:
        return set(self.key_counts())


@contextlib.contextmanager
def smtp_server(delay: float = 0.0, replies: dict[int, str] | None = None, hold: Iterable[int] = ()):
    """An SMTP server on a free loopback port; yields (mailbox, port)."""
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # one INFO line per SMTP command otherwise
    mailbox = Mailbox(delay=delay, replies=replies, hold=hold)
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield mailbox, port
    finally:
        mailbox.release_all()
        controller.stop()


@contextlib.contextmanager
def stalled_smtp_server():
    """A server that accepts connections and never says a word (not even the greeting); yields its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


@contextlib.contextmanager
def smtp_settings(port: int, timeout: float = 30):
    """Make this process send through the SMTP server on `port` (the test settings use locmem)."""
    from django.test import override_settings

    with override_settings(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=port,
        EMAIL_HOST_USER="",
        EMAIL_HOST_PASSWORD="",
        EMAIL_USE_TLS=False,
        EMAIL_USE_SSL=False,
        EMAIL_TIMEOUT=timeout,
    ):
        yield


@dataclass
class Tally:
    """E-mails sent, ledger keys expected, duplicated, missing and unexpected: the figures of a scenario."""

    emails: int
    expected: int
    received: int
    duplicates: dict[str, int]
    missing: set[str]
    unexpected: set[str]

    def line(self, scenario: str, **extra) -> str:
        parts = [
            f"emails={self.emails}",
            f"keys_expected={self.expected}",
            f"keys_received={self.received}",
            f"duplicates={len(self.duplicates)}",
            f"missing={len(self.missing)}",
            f"unexpected={len(self.unexpected)}",
        ] + [f"{name}={value}" for name, value in extra.items()]
        return f"[{scenario}] " + " ".join(parts)

    def assert_exactly_once(self) -> None:
        assert not self.duplicates, f"{len(self.duplicates)} key(s) e-mailed more than once: {self.duplicates}"
        assert not self.missing, f"{len(self.missing)} key(s) never e-mailed: {sorted(self.missing)}"
        assert not self.unexpected, (
            f"{len(self.unexpected)} key(s) e-mailed but not expected: {sorted(self.unexpected)}"
        )


def tally(mailbox: Mailbox, expected: Iterable[str]) -> Tally:
    expected = set(expected)
    counts = mailbox.key_counts()
    return Tally(
        emails=mailbox.count(),
        expected=len(expected),
        received=len(counts),
        duplicates={key: n for key, n in counts.items() if n > 1},
        missing=expected - set(counts),
        unexpected=set(counts) - expected,
    )


def report(line: str) -> None:
    """Print a scenario's figures (shown with `-s` or `-rA`, and with the output of a failure)."""
    print(line, flush=True)


def wait_for_keys(mailbox: Mailbox, expected: set[str], *, settle: float = 1.0, timeout: float = WAIT) -> None:
    """Wait until every expected key arrived, then a little longer so that a late duplicate is seen too."""
    deadline = time.monotonic() + timeout
    while not expected <= mailbox.received_keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)


# Redis -------------------------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own, on a free port, without persistence: stopping it loses the queue."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self.ping, timeout=20, what=f"the private redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        wait_until(lambda: not self.listening(), timeout=10, what="the private redis-server to stop")


@contextlib.contextmanager
def private_redis(workdir: Path):
    need(shutil.which("redis-server") is not None, "redis-server is not on PATH (needed for a private Redis).")
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def queue_task(broker_url: str, name: str, *args, task_id: str | None = None, kwargs: dict | None = None) -> str:
    """Publish task `name` with `args` (and `kwargs`) on `broker_url` (as beat or a web process would) and return
    its id."""
    from celery import Celery

    app = Celery("integration-probe", broker=broker_url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    app.conf.broker_connection_timeout = 2
    try:
        result = app.send_task(name, args=args, kwargs=kwargs, task_id=task_id or str(uuid.uuid4()), retry=False)
        return result.id
    finally:
        app.close()


# Workers -----------------------------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test uses (pytest-django's test database), for other processes."""
    from django.db import connection

    settings = connection.settings_dict
    user = settings.get("USER") or ""
    password = settings.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{settings['NAME']}"


def process_env(*, redis_url: str, smtp_port: int, var_dir: Path, claim_timeout: int = 3, **extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "DJANGO_", "CELERY", "EMAIL_", "REDIS_", "DATABASE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DJANGO_DEBUG="0",
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        NOTIFICATION_CLAIM_TIMEOUT=str(claim_timeout),
        REGISTRY_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Worker:
    """One `celery -A config worker -P solo` process; its output goes to a log file."""

    def __init__(self, name: str, env: dict, logdir: Path):
        self.name = name
        self.env = env
        self.log = logdir / f"worker-{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        handle = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "celery", "-A", "config", "worker", "-P", "solo", "--concurrency=1"]
                + ["-n", f"{self.name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
                + ["-l", "INFO"],
                cwd=ROOT,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = WAIT) -> Worker:
        def ready():
            if self.process.poll() is not None:
                pytest.fail(f"worker {self.name} exited with {self.process.returncode}:\n{self.text()[-3000:]}")
            return " ready." in self.text()

        wait_until(ready, timeout=timeout, what=f"worker {self.name} to be ready")
        return self

    def received(self, task_id: str) -> int:
        """How many times this worker was delivered the task with this id (one log line per delivery)."""
        return sum(1 for line in self.text().splitlines() if f"[{task_id}] received" in line)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no shutdown, no acknowledgement, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL after `grace` seconds (a worker retrying a lost broker)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def workers_cleanup():
    """Collect the workers a test starts; whatever happens, none survives the test."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()


def run_action(env: dict, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess:
    """Run `python -m tests.integration.actions ARGS` in a separate process (a web process, say)."""
    return subprocess.run(
        [PYTHON, "-m", "tests.integration.actions", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A small registry, built through the services ------------------------------------------------------------

# The stage of each visit of the default template on day `offset` after day 0, with the default reminder
# policy (upcoming 7 days before the window, closing 3 days before its end, overdue-N every 7 days after
# it, escalated after the 4th). Worked out by hand from docs/clinical-rules.md, "Follow-up schedule" (BL -14/+0
# around day 0, D7 +/-2 around day 7, M1 +/-7 around day 30, M3 from day 77): the tests' oracle, not the code's.
STAGES_ON_DAY: dict[int, dict[str, str]] = {
    4: {"BL": "overdue-1", "D7": "upcoming"},
    6: {"BL": "overdue-1", "D7": "closing"},
    16: {"BL": "overdue-3", "D7": "overdue-1", "M1": "upcoming"},
    18: {"BL": "overdue-3", "D7": "overdue-2", "M1": "upcoming"},
    30: {"BL": "escalated", "D7": "overdue-3", "M1": "due"},
    33: {"BL": "escalated", "D7": "overdue-4", "M1": "due"},
    35: {"BL": "escalated", "D7": "overdue-4", "M1": "closing"},
}


def midday_time_zone(now: dt.datetime | None = None) -> str:
    """An IANA zone where it is about noon now, so that no test run crosses the site's midnight."""
    now = now or dt.datetime.now(dt.UTC)
    offset = 12 - now.hour
    if offset > 14:
        offset -= 24
    if offset < -12:
        offset += 24
    # Etc/GMT-N is N hours *ahead* of UTC (the POSIX sign convention).
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


@dataclass
class Person:
    user: object
    email: str
    digest: bool


@dataclass
class Clinic:
    site: object
    study: object
    coordinators: list[Person]
    investigators: list[Person]
    patients: list[object] = field(default_factory=list)
    day_zero_offset: dict[int, int] = field(default_factory=dict)  # patient pk -> days from day 0 to "today"

    def visit(self, patient, code: str):
        from followup.models import Visit

        return Visit.objects.get(patient=patient, code=code)

    def expected_keys(self, today_offset_shift: int = 0, patients: Iterable | None = None) -> set[str]:
        """The ledger keys that apply on "today" (+ shift days), from the hand-made table of stages."""
        from notifications.constants import NotificationKind

        keys = set()
        for patient in patients if patients is not None else self.patients:
            day = self.day_zero_offset[patient.pk] + today_offset_shift
            for code, stage in STAGES_ON_DAY[day].items():
                visit = self.visit(patient, code)
                if stage == "escalated":
                    kind, people = NotificationKind.VISIT_ESCALATION, self.investigators
                else:
                    kind, people = NotificationKind.VISIT_REMINDER, self.coordinators
                keys.update(f"{kind}:{visit.pk}:{stage}:{person.email}" for person in people)
        return keys

    def keys_of(self, visit, stage: str) -> set[str]:
        from notifications.constants import NotificationKind

        if stage == "escalated":
            kind, people = NotificationKind.VISIT_ESCALATION, self.investigators
        else:
            kind, people = NotificationKind.VISIT_REMINDER, self.coordinators
        return {f"{kind}:{visit.pk}:{stage}:{person.email}" for person in people}


def _person(username: str, email: str, site, role: str, digest: bool) -> Person:
    from notifications.models import NotificationPreference
    from tests.factories import make_user

    user = make_user(username, site, role=role, email=email)
    if not digest:
        NotificationPreference.objects.create(user=user, digest=False)
    return Person(user=user, email=email, digest=digest)


def build_clinic(
    *,
    day_zero_offsets: list[int],
    coordinators: list[bool],
    investigators: list[bool] = (),
    time_zone: str | None = None,
    send_hour: int | None = 0,
    safety_email: str = "",
    safety_contact_email: str = "",
) -> Clinic:
    """A site, a study with the default template, a released lot, and one transplanted patient per offset.

    Each patient's first infusion is `offset` days before the site's today, so on "today" the visits
    stand at STAGES_ON_DAY[offset]. `coordinators` and `investigators` give each person's digest choice;
    people who do not want a digest get one e-mail per item. `send_hour=0` makes reminders due from the
    site's midnight (None keeps the study's default of 08:00).
    """
    from django.utils import timezone

    from patients import constants as pc
    from registry import constants as rc
    from registry.constants import Role
    from tests.factories import make_donor, make_lot, make_patient, make_site, make_study, make_transplant

    time_zone = time_zone or midday_time_zone(timezone.now())
    zone = zoneinfo.ZoneInfo(time_zone)
    today = timezone.now().astimezone(zone).date()
    site = make_site("FAULTS", name="Fault-test Hospital", country="CN", time_zone=time_zone, safety_email=safety_email)
    study = make_study(
        site,
        code="MSCT-FAULTS",
        registration_id="NCT09999999",
        title="Allogeneic MSC transplantation in refractory SLE (fault tests)",
        phase=rc.StudyPhase.PHASE_1_2,
        target_enrolment=200,
        **({"safety_contact_email": safety_contact_email} if safety_contact_email else {}),
    )
    if send_hour is not None:
        policy = study.reminder_policy
        policy.send_hour = send_hour
        policy.full_clean()
        policy.save()

    people_c = [
        _person(
            f"coord{i}", f"c{i:02d}-{'digest' if digest else 'each'}@faults.example", site, Role.COORDINATOR, digest
        )
        for i, digest in enumerate(coordinators)
    ]
    people_i = [
        _person(f"inv{i}", f"i{i:02d}-{'digest' if digest else 'each'}@faults.example", site, Role.INVESTIGATOR, digest)
        for i, digest in enumerate(investigators)
    ]

    earliest = today - dt.timedelta(days=max(day_zero_offsets) + 30)
    donor = make_donor(study, site, code="D0001", age_at_donation=28)
    lot = make_lot(
        study,
        site,
        lot_number="UC-FAULTS-0001",
        donor=donor,
        cryopreserved_on=earliest - dt.timedelta(days=30),
        expires_on=today + dt.timedelta(days=365),
        units=100,
    )
    clinic = Clinic(site=site, study=study, coordinators=people_c, investigators=people_i)
    for number, offset in enumerate(day_zero_offsets, start=1):
        day_zero = today - dt.timedelta(days=offset)
        patient = make_patient(
            study,
            site,
            subject_code=f"F-{number:03d}",
            sex=rc.Sex.FEMALE,
            birth_year=1988,
            diagnosis_date=dt.date(2019, 4, 10),
            classification_criteria=pc.ClassificationCriteria.SLICC_2012,
            consent_date=day_zero - dt.timedelta(days=20),
            refractory_to=[pc.Drug.CYCLOPHOSPHAMIDE, pc.Drug.PREDNISONE],
        )
        make_transplant(patient, lot, day=day_zero, weight_kg=Decimal("55.0"))
        clinic.patients.append(patient)
        clinic.day_zero_offset[patient.pk] = offset
    return clinic


def ledger_states() -> Counter:
    from notifications.models import Notification

    return Counter(Notification.objects.values_list("state", flat=True))
