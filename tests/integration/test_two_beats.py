"""Two beats against one Redis and one PostgreSQL: reminders go out once each, and keep going when one beat stops.

Two `celery beat` processes (docker-compose.yml's beat command, each with its own schedule file, as on two hosts)
and one worker (the compose worker command) run with the production settings; beat sweeps every second
(tests/integration/fast_beat_settings.py), so both queue the sweep many times over. Then one beat is stopped and
a newly transplanted patient's reminders must still arrive, through the other. Every ledger key is e-mailed
exactly once: the ledger's unique keys and the sender's claims make a second beat harmless
(docs/architecture.md, "Background work").
"""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from decimal import Decimal

import pytest
from django.utils import timezone

from registry.models import CellProduct
from tests.factories import make_patient, make_transplant
from tests.integration import compose
from tests.integration.support import build_clinic, private_redis, report, smtp_server, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SWEEP_LINE = "Sending due task sweep-reminders"


def _transplant_new_patient(clinic, offset: int):
    today = timezone.now().astimezone(zoneinfo.ZoneInfo(clinic.site.time_zone)).date()
    day_zero = today - dt.timedelta(days=offset)
    patient = make_patient(
        clinic.study, clinic.site, subject_code="F-LATE", consent_date=day_zero - dt.timedelta(days=20)
    )
    make_transplant(patient, CellProduct.objects.get(lot_number="UC-FAULTS-0001"), day=day_zero, weight_kg=Decimal(55))
    clinic.patients.append(patient)
    clinic.day_zero_offset[patient.pk] = offset
    return patient


def _queue_length(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.llen("celery")
    finally:
        client.close()


def test_two_beats_send_each_reminder_once_and_one_keeps_them_flowing_when_the_other_stops(tmp_path):
    started = time.monotonic()
    clinic = build_clinic(day_zero_offsets=[4, 16], coordinators=[False, False])
    first = clinic.expected_keys()
    assert len(first) == 10  # (2 visits + 3 visits) x 2 coordinators, one e-mail per item

    with private_redis(tmp_path) as redis, smtp_server() as (mailbox, smtp_port):
        env = compose.environment(redis_url=redis.url, smtp_port=smtp_port, var_dir=tmp_path)
        beat_env = {**env, "DJANGO_SETTINGS_MODULE": "tests.integration.fast_beat_settings", "FAST_BEAT_SECONDS": "1"}
        (tmp_path / "host-a").mkdir()
        (tmp_path / "host-b").mkdir()
        worker = compose.Process("worker", compose.command("worker"), env, tmp_path)
        beat_a = compose.Process(
            "beat-a", compose.command("beat"), {**beat_env, "REGISTRY_VAR_DIR": str(tmp_path / "host-a")}, tmp_path
        )
        beat_b = compose.Process(
            "beat-b", compose.command("beat"), {**beat_env, "REGISTRY_VAR_DIR": str(tmp_path / "host-b")}, tmp_path
        )
        processes = [worker, beat_a, beat_b]
        codes: dict[str, int] = {}
        try:
            for process in processes:
                process.start()
            worker.wait_for(" ready.", timeout=90)
            # Both beats queue the sweep, several times each, while the first reminders go out.
            wait_until(
                lambda: (
                    worker.alive()
                    and beat_a.text().count(SWEEP_LINE) >= 3
                    and beat_b.text().count(SWEEP_LINE) >= 3
                    and mailbox.received_keys() >= first
                ),
                timeout=90,
                what="both beats to sweep and the first reminders to arrive",
            )
            time.sleep(3)  # more sweeps from both: a duplicate would show now
            both_sweeps = (beat_a.text().count(SWEEP_LINE), beat_b.text().count(SWEEP_LINE))
            first_emails = mailbox.count()

            codes["beat-a"] = beat_a.stop()
            a_sweeps = beat_a.text().count(SWEEP_LINE)
            b_sweeps_at_stop = beat_b.text().count(SWEEP_LINE)
            # Whatever beat A queued has run before the new patient exists: their reminders come through beat B.
            wait_until(
                lambda: beat_b.text().count(SWEEP_LINE) >= b_sweeps_at_stop + 2 and _queue_length(redis.url) == 0,
                timeout=30,
                what="beat B to sweep again and the queue to drain",
            )
            b_sweeps_before_patient = beat_b.text().count(SWEEP_LINE)

            _transplant_new_patient(clinic, offset=6)  # BL overdue-1 and D7 closing: 4 keys
            everything = clinic.expected_keys()
            later = everything - first
            assert len(later) == 4
            wait_until(
                lambda: worker.alive() and beat_b.alive() and mailbox.received_keys() >= everything,
                timeout=60,
                what="the new patient's reminders to arrive through the remaining beat",
            )
            wait_until(
                lambda: beat_b.text().count(SWEEP_LINE) >= b_sweeps_before_patient + 3,
                timeout=30,
                what="beat B to sweep three more times (a duplicate would show)",
            )
            time.sleep(1)
            b_sweeps = beat_b.text().count(SWEEP_LINE)
        finally:
            for process in (beat_b, worker):
                if process.process is not None and process.name not in codes:
                    codes[process.name] = process.stop()
            for process in processes:
                process.kill()

    counts = mailbox.key_counts()
    report(
        f"[two beats] sweeps_a={a_sweeps} sweeps_b={b_sweeps} sweeps_b_after_a_stopped={b_sweeps - b_sweeps_at_stop} "
        f"emails_before_stop={first_emails} emails={mailbox.count()} keys={len(counts)} "
        f"duplicates={sum(1 for n in counts.values() if n > 1)} exit_codes={codes} "
        f"seconds={round(time.monotonic() - started, 1)}"
    )
    assert min(both_sweeps) >= 3
    assert beat_a.text().count(SWEEP_LINE) == a_sweeps, "the stopped beat kept sweeping"
    assert b_sweeps - b_sweeps_at_stop >= 5
    assert first_emails == 10
    assert set(counts) == everything and all(n == 1 for n in counts.values()), counts
    assert mailbox.count() == 14
    assert codes == {"beat-a": 0, "beat-b": 0, "worker": 0}, {p.name: p.text()[-2000:] for p in processes}
