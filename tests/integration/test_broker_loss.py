"""The worker survives losing Redis in the middle of a task.

A real `celery -A config worker` process on a private redis-server runs a task that takes a few seconds;
Redis is stopped while the task runs and started again on the same port. The worker must still be alive,
consume a new task once Redis is back, and have done the interrupted task's work exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import yaml

from tests.integration.support import (
    PYTHON,
    ROOT,
    Worker,
    private_redis,
    process_env,
    queue_task,
    report,
    wait_until,
    workers_cleanup,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db]

PROBE = "tests.integration.probe_tasks.probe_work"
TASK_SECONDS = 12  # long enough for Redis to go and come back while the task runs


def compose_command(service: str) -> list[str]:
    """The command docker-compose.yml gives `service`, with `celery` run by this test's Python."""
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][service]["command"]
    assert command[0] == "celery", command
    return [PYTHON, "-m", "celery", *command[1:]]


class ComposeWorker(Worker):
    """A worker started with docker-compose.yml's command: the prefork pool, with mingle and heartbeats."""

    def start(self) -> Worker:
        handle = self.log.open("ab")
        try:
            self.process = subprocess.Popen(
                compose_command("worker"),
                cwd=ROOT,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        return self


def kill(redis) -> None:
    """SIGKILL the private redis-server: it vanishes at once, as a crashed or rebooted host's would."""
    os.killpg(redis.process.pid, signal.SIGKILL)
    redis.process.wait(timeout=10)
    wait_until(lambda: not redis.listening(), timeout=10, what="the private redis-server to die")


def ran(worker: Worker, task_id: str, probe_file) -> bool:
    if worker.process.poll() is not None:
        pytest.fail(f"the worker exited with {worker.process.returncode}:\n{worker.text()[-3000:]}")
    return task_id in done(probe_file)


def done(probe_file) -> list[str]:
    return probe_file.read_text().split() if probe_file.exists() else []


def test_worker_consumes_again_after_redis_is_lost_mid_task(tmp_path):
    probe_file = tmp_path / "probe.txt"
    started = time.monotonic()
    with private_redis(tmp_path) as redis, workers_cleanup() as workers:
        env = process_env(
            redis_url=redis.url,
            smtp_port=1,
            var_dir=tmp_path,
            DJANGO_SETTINGS_MODULE="tests.integration.worker_settings",
            INTEGRATION_PROBE_FILE=str(probe_file),
        )
        worker = ComposeWorker("survivor", env, tmp_path).start()
        workers.append(worker)
        worker.wait_ready()

        interrupted = queue_task(redis.url, PROBE, TASK_SECONDS, True)
        wait_until(lambda: f"[{interrupted}] received" in worker.text(), what="the worker to take the long task")
        kill(redis)
        stopped_at = time.monotonic()
        time.sleep(2)
        redis.start()
        outage = time.monotonic() - stopped_at
        # Redis is back while the task still runs: its acknowledgement comes after the broker returned.
        assert interrupted not in done(probe_file), "the task ended before Redis returned; lengthen it"
        wait_until(lambda: interrupted in done(probe_file), what="the interrupted task to finish its work")
        fresh = wait_until(
            lambda: _try_queue_task(redis.url), what="a new task to be accepted by the restarted Redis", timeout=20
        )
        wait_until(lambda: ran(worker, fresh, probe_file), what="the worker to run a new task after Redis returned")
        time.sleep(2)  # a late redelivery of the interrupted task would show here
        alive = worker.process.poll() is None
        log = worker.text()

    report(
        f"[broker loss] alive={alive} interrupted_runs={done(probe_file).count(interrupted)} "
        f"new_runs={done(probe_file).count(fresh)} outage_s={round(outage, 1)} "
        f"seconds={round(time.monotonic() - started, 1)}"
    )
    assert alive, f"the worker exited after Redis returned:\n{log[-3000:]}"
    for error in ("Unrecoverable error", "Error on restarting", "AttributeError"):
        assert error not in log, f"{error!r} in the worker's log:\n{log[-3000:]}"
    runs = done(probe_file)
    assert runs.count(interrupted) == 1, runs
    assert runs.count(fresh) == 1, runs
    # The interrupted task queued a follow-up after the broker returned: it ran too, once.
    assert len(runs) == 3, runs


def _try_queue_task(url: str) -> str | None:
    try:
        return queue_task(url, PROBE, 0)
    except Exception:  # the broker is still coming back
        return None
