"""The embedded default (`make run`: SQLite, the web server, the Celery worker and beat in one file): writers
that read first and then write, at once, all commit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

# Four threads, each 30 transactions that read a counter and write it back, as the registry's services do (a
# visit read, then written). Prints the failures and the counter.
SCRIPT = """
import threading, time
import django
django.setup()
from django.db import OperationalError, connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE counter (id integer PRIMARY KEY, n integer)")
    cursor.execute("INSERT INTO counter (id, n) VALUES (1, 0)")
connection.close()
failures = []

def writer():
    for _ in range(30):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT n FROM counter WHERE id = 1")
                n = cursor.fetchone()[0]
                time.sleep(0.002)
                cursor.execute("UPDATE counter SET n = %s WHERE id = 1", [n + 1])
        except OperationalError as exc:
            failures.append(str(exc))
    connection.close()

threads = [threading.Thread(target=writer) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT n FROM counter WHERE id = 1")
    print(len(failures), cursor.fetchone()[0], failures[:1])
"""


def test_concurrent_writers_on_the_embedded_database_all_commit(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'registry.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    failures, counter, example = done.stdout.split(maxsplit=2)
    assert (int(failures), int(counter)) == (0, 120), example
