"""Backup and restore (core/backup.py, `manage.py backup` / `manage.py restore`, `make backup` / `make restore`).

The round trip runs the commands as an operator would, in processes of their own: a database is migrated and
seeded with the demo study, backed up, restored into a database freshly created, and the two are compared table by
table (row counts), the audit history row by row, and the clinical tables by a checksum of their contents; on
SQLite always, on PostgreSQL when DATABASE_URL points to one. The other tests check the archive's defences on
small SQLite files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import threading
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.backup import BackupError, backup_create, backup_restore, backup_verify, row_counts

ROOT = Path(__file__).resolve().parents[2]
CLINICAL_PREFIXES = ("patients_", "followup_")


def _sqlite_db(path: Path) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}


def _small_database(path: Path, rows: int = 3) -> dict:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE patients_patient (id INTEGER PRIMARY KEY, code TEXT)")
        conn.execute("CREATE TABLE followup_visit (id INTEGER PRIMARY KEY, patient_id INTEGER)")
        conn.executemany("INSERT INTO patients_patient (code) VALUES (?)", [(f"P-{i}",) for i in range(rows)])
        conn.executemany("INSERT INTO followup_visit (patient_id) VALUES (?)", [(1,), (2,)])
        conn.commit()
    return _sqlite_db(path)


@pytest.fixture
def small(tmp_path):
    exports = tmp_path / "exports"
    (exports / "2026").mkdir(parents=True)
    (exports / "2026" / "export-1.zip").write_bytes(b"zip bytes")
    db = _small_database(tmp_path / "source.sqlite3")
    result = backup_create(db=db, export_dir=exports, output_dir=tmp_path / "backups")
    return tmp_path, db, result


def _rewrite(archive: Path, target: Path, change) -> None:
    """Copy `archive` to `target`, passing each member's (name, bytes) through `change` (None drops it)."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as out:
        for member in source.getmembers():
            changed = change(member.name, source.extractfile(member).read())
            if changed is None:
                continue
            name, data = changed
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def test_archive_holds_database_exports_and_a_manifest(small):
    _, db, result = small
    assert result.path.name.startswith("registry-backup-") and result.path.suffix == ".tar"
    manifest = result.manifest
    assert manifest["engine"] == "sqlite"
    assert manifest["row_counts"] == {"followup_visit": 2, "patients_patient": 3}
    assert set(manifest["parts"]) == {"database.sqlite3", "exports/2026/export-1.zip"}
    assert manifest["parts"]["exports/2026/export-1.zip"] == {
        "sha256": hashlib.sha256(b"zip bytes").hexdigest(),
        "bytes": 9,
    }
    with tarfile.open(result.path) as tar:
        assert json.load(tar.extractfile("manifest.json")) == manifest
        dump = tar.extractfile("database.sqlite3").read()
    assert hashlib.sha256(dump).hexdigest() == manifest["parts"]["database.sqlite3"]["sha256"]


def test_restore_into_a_new_database_gives_the_same_rows_and_files(small):
    tmp_path, db, result = small
    target = _sqlite_db(tmp_path / "restored.sqlite3")
    restored = backup_restore(archive=result.path, db=target, export_dir=tmp_path / "restored-exports")
    assert (restored.tables, restored.rows, restored.export_files) == (2, 5, 1)
    assert row_counts(target) == row_counts(db)
    assert (tmp_path / "restored-exports" / "2026" / "export-1.zip").read_bytes() == b"zip bytes"


def test_restore_refuses_a_database_with_tables_unless_forced(small):
    tmp_path, db, result = small
    target = _small_database(tmp_path / "busy.sqlite3", rows=7)
    with pytest.raises(BackupError, match="is not empty: restore into a new database, or pass --force"):
        backup_restore(archive=result.path, db=target, export_dir=tmp_path / "other-exports")
    assert row_counts(target)["patients_patient"] == 7
    backup_restore(archive=result.path, db=target, export_dir=tmp_path / "other-exports", force=True)
    assert row_counts(target) == {"followup_visit": 2, "patients_patient": 3}


def test_restore_refuses_to_overwrite_export_files_unless_forced(small):
    tmp_path, db, result = small
    exports = tmp_path / "busy-exports"
    (exports / "2026").mkdir(parents=True)
    (exports / "2026" / "export-1.zip").write_bytes(b"newer")
    target = _sqlite_db(tmp_path / "fresh.sqlite3")
    with pytest.raises(BackupError, match="exports/2026/export-1.zip already exists"):
        backup_restore(archive=result.path, db=target, export_dir=exports)
    assert row_counts(target) == {}, "nothing is restored when the restore is refused"
    backup_restore(archive=result.path, db=target, export_dir=exports, force=True)
    assert (exports / "2026" / "export-1.zip").read_bytes() == b"zip bytes"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda n, d: (n, d + b"x") if n == "database.sqlite3" else (n, d), "database.sqlite3: SHA-256 does not match"),
        (lambda n, d: (n, b"ZIP") if n.startswith("exports/") else (n, d), "export-1.zip: SHA-256 does not match"),
        (
            lambda n, d: None if n.startswith("exports/") else (n, d),
            "export-1.zip: listed in manifest.json but missing",
        ),
        (lambda n, d: None if n == "manifest.json" else (n, d), "has no manifest.json"),
        (lambda n, d: (n.replace("exports/2026", "exports/../../evil"), d), "not listed in manifest.json"),
    ],
    ids=["database-altered", "export-altered", "export-missing", "no-manifest", "unlisted-file"],
)
def test_restore_checks_the_manifest_before_touching_anything(small, change, message):
    tmp_path, db, result = small
    damaged = tmp_path / "damaged.tar"
    _rewrite(result.path, damaged, change)
    target = _small_database(tmp_path / "keep.sqlite3", rows=4)
    with pytest.raises(BackupError, match=message):
        backup_restore(archive=damaged, db=target, export_dir=tmp_path / "keep-exports", force=True)
    assert row_counts(target)["patients_patient"] == 4
    assert not (tmp_path / "keep-exports").exists()
    assert not (tmp_path / "evil").exists()


def test_a_manifest_naming_a_path_outside_the_archive_is_refused(small, tmp_path):
    _, _, result = small

    def escape(name, data):
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["parts"]["../escaped"] = manifest["parts"].pop("exports/2026/export-1.zip")
            return name, json.dumps(manifest).encode()
        return ("../escaped", data) if name.startswith("exports/") else (name, data)

    damaged = tmp_path / "escape.tar"
    _rewrite(result.path, damaged, escape)
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(BackupError, match="../escaped: not a regular file inside the archive"):
        backup_verify(archive=damaged, into=into)
    assert not (tmp_path / "escaped").exists()


def test_an_archive_of_another_engine_is_refused(small):
    tmp_path, _, result = small
    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "unused"}
    with pytest.raises(BackupError, match="the archive holds a sqlite database; this database is postgresql"):
        backup_restore(archive=result.path, db=postgres, export_dir=tmp_path / "x")


def test_sqlite_backup_runs_while_another_process_writes(tmp_path):
    """The online backup API copies a committed state while a writer holds its transaction open (as the web
    server or the worker of `make run` may): the backup neither waits for it nor sees its uncommitted row."""
    db = _small_database(tmp_path / "live.sqlite3")
    writer = sqlite3.connect(db["NAME"], check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO patients_patient (code) VALUES ('uncommitted')")
    done = threading.Event()
    outcome = {}

    def run():
        outcome["result"] = backup_create(db=db, export_dir=tmp_path / "none", output_dir=tmp_path / "b")
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert done.wait(20), "the backup waited for the writer"
    writer.commit()
    writer.close()
    thread.join()
    assert outcome["result"].manifest["row_counts"]["patients_patient"] == 3
    assert row_counts(db)["patients_patient"] == 4


def test_backup_of_a_database_not_yet_created_says_so(tmp_path):
    with pytest.raises(BackupError, match="does not exist \\(run `manage.py migrate` first\\)"):
        backup_create(db=_sqlite_db(tmp_path / "never.sqlite3"), export_dir=tmp_path, output_dir=tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


# The round trip through the commands ---------------------------------------------------------------------


def _table_rows(db_url: str, tables: list[str]) -> dict[str, list[tuple]]:
    rows = {}
    if db_url.startswith("sqlite"):
        with closing(sqlite3.connect(urlsplit(db_url).path)) as conn:
            for table in tables:
                rows[table] = conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
        return rows
    import psycopg

    with psycopg.connect(db_url) as conn, conn.cursor() as cursor:
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}" ORDER BY 1')
            rows[table] = cursor.fetchall()
    return rows


def _db_settings(db_url: str) -> dict:
    import environ

    return environ.Env.db_url_config(db_url)


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _databases(engine: str, tmp_path: Path):
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'source.sqlite3'}", f"sqlite:///{tmp_path / 'restored.sqlite3'}", None
    import psycopg

    base = os.environ["DATABASE_URL"]
    parts = urlsplit(base)
    name = parts.path.strip("/")
    source, target = f"test_{name}_backup_source", f"test_{name}_backup_restored"
    admin_url = urlunsplit(parts._replace(path="/postgres", query=""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for db in (source, target):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')

    def drop():
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for db in (source, target):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    make = lambda db: urlunsplit(parts._replace(path=f"/{db}", query=""))  # noqa: E731
    return make(source), make(target), drop


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_backup_of_a_seeded_registry_restores_into_a_fresh_database(engine, tmp_path):
    source_url, target_url, drop = _databases(engine, tmp_path)
    try:
        base_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "REGISTRY_VAR_DIR": str(tmp_path / "var"),
        }
        base_env.pop("REDIS_URL", None)
        (tmp_path / "var").mkdir()
        source_env = {**base_env, "DATABASE_URL": source_url, "EXPORT_DIR": str(tmp_path / "exports")}
        for command in (["migrate", "--noinput", "-v0"], ["seed_demo", "--patients", "6"]):
            done = _manage(*command, env=source_env)
            assert done.returncode == 0, done.stderr
        (tmp_path / "exports" / "1").mkdir(parents=True)
        (tmp_path / "exports" / "1" / "registry-export.zip").write_bytes(os.urandom(4096))

        done = _manage("backup", "--output-dir", str(tmp_path / "backups"), env=source_env)
        assert done.returncode == 0, done.stderr
        (archive,) = (tmp_path / "backups").glob("registry-backup-*.tar")
        assert str(archive) in done.stdout

        target_env = {**base_env, "DATABASE_URL": target_url, "EXPORT_DIR": str(tmp_path / "restored-exports")}
        done = _manage("restore", str(archive), env=target_env)
        assert done.returncode == 0, done.stderr
        assert "as in the manifest" in done.stdout

        source_counts = row_counts(_db_settings(source_url))
        assert row_counts(_db_settings(target_url)) == source_counts
        assert source_counts["patients_patient"] == 6 and source_counts["followup_result"] > 0
        history = sorted(t for t in source_counts if "historical" in t)
        assert len(history) >= 10 and sum(source_counts[t] for t in history) > 0
        assert _table_rows(target_url, history) == _table_rows(source_url, history)
        clinical = sorted(t for t in source_counts if t.startswith(CLINICAL_PREFIXES))

        def checksum(url):
            return hashlib.sha256(repr(sorted(_table_rows(url, clinical).items())).encode()).hexdigest()

        assert checksum(target_url) == checksum(source_url)
        assert (tmp_path / "restored-exports" / "1" / "registry-export.zip").read_bytes() == (
            tmp_path / "exports" / "1" / "registry-export.zip"
        ).read_bytes()

        again = _manage("restore", str(archive), env=target_env)
        assert again.returncode == 1
        assert "is not empty" in again.stderr
        forced = _manage("restore", "--force", str(archive), env=target_env)
        assert forced.returncode == 0, forced.stderr
        assert row_counts(_db_settings(target_url)) == source_counts
    finally:
        if drop:
            drop()
