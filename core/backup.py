"""Backup and restore of the whole registry: the database and the export files, in one archive.

An archive is `registry-backup-<UTC time>.tar` holding
- `manifest.json`: the format, the database engine, when it was made, each part's SHA-256 and size, and the row
  count of every table;
- `database.pgdump` (PostgreSQL, `pg_dump -Fc`) or `database.sqlite3` (SQLite, copied with SQLite's online backup
  API, so `make run` may keep running);
- `exports/...`: every file under EXPORT_DIR.

On PostgreSQL the row counts and the dump read the same snapshot (`pg_export_snapshot()` handed to
`pg_dump --snapshot`); on SQLite the counts are read from the copy. A restore checks every part against the
manifest before it touches anything, refuses a database that already has tables (unless forced), and after
restoring compares every table's row count with the manifest.

Both functions take a Django DATABASES entry, so the same code backs up and restores any database
(`manage.py backup` / `manage.py restore`, docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

FORMAT = 1
MANIFEST = "manifest.json"
PG_PART = "database.pgdump"
SQLITE_PART = "database.sqlite3"
EXPORTS = "exports"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict
    tables: int
    rows: int
    export_files: int


def engine_of(db: Mapping) -> str:
    engine = db["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return "sqlite"
    if "postgresql" in engine or "postgis" in engine:
        return "postgresql"
    raise BackupError(f"database engine {engine} is not supported (PostgreSQL or SQLite)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# Connections ---------------------------------------------------------------------------------------------


def _sqlite_path(db: Mapping) -> str:
    name = str(db["NAME"])
    if not name or name == ":memory:" or name.startswith("file:"):
        raise BackupError(f"the SQLite database must be a file to back up or restore (NAME is {name!r})")
    return name


def _pg_connect_kwargs(db: Mapping) -> dict:
    kwargs = {"dbname": db["NAME"]}
    for key, setting in (("user", "USER"), ("password", "PASSWORD"), ("host", "HOST"), ("port", "PORT")):
        if db.get(setting):
            kwargs[key] = str(db[setting])
    if (db.get("OPTIONS") or {}).get("sslmode"):
        kwargs["sslmode"] = db["OPTIONS"]["sslmode"]
    return kwargs


def _pg_tool(program: str, db: Mapping, *args: str) -> list[str]:
    command = [program, "--dbname", str(db["NAME"]), "--no-password"]
    if db.get("USER"):
        command += ["--username", str(db["USER"])]
    if db.get("HOST"):
        command += ["--host", str(db["HOST"])]
    if db.get("PORT"):
        command += ["--port", str(db["PORT"])]
    return command + list(args)


def _pg_env(db: Mapping) -> dict:
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    if (db.get("OPTIONS") or {}).get("sslmode"):
        env["PGSSLMODE"] = db["OPTIONS"]["sslmode"]
    return env


def _run(command: list[str], env: dict) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (PostgreSQL's client programs are needed)")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed (exit code {done.returncode}): {done.stderr.strip()[-2000:]}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return [name for (name,) in rows]


def _pg_tables(cursor) -> list[str]:
    cursor.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' ORDER BY table_name"
    )
    return [name for (name,) in cursor.fetchall()]


def _counts(execute, tables: list[str]) -> dict[str, int]:
    return {table: int(execute(f"SELECT COUNT(*) FROM {_quote(table)}")) for table in tables}


def row_counts(db: Mapping) -> dict[str, int]:
    """Every table of the database and its number of rows."""
    if engine_of(db) == "sqlite":
        path = _sqlite_path(db)
        if not Path(path).exists():
            return {}
        with closing(sqlite3.connect(path)) as conn:
            return _counts(lambda sql: conn.execute(sql).fetchone()[0], _sqlite_tables(conn))
    import psycopg

    with psycopg.connect(**_pg_connect_kwargs(db)) as conn, conn.cursor() as cursor:
        tables = _pg_tables(cursor)

        def one(sql):
            cursor.execute(sql)
            return cursor.fetchone()[0]

        return _counts(one, tables)


# Backup --------------------------------------------------------------------------------------------------


def _export_files(export_dir: Path) -> list[Path]:
    if not export_dir.is_dir():
        return []
    return sorted(p for p in export_dir.rglob("*") if p.is_file() and not p.is_symlink())


def _dump_sqlite(db: Mapping, target: Path) -> dict[str, int]:
    path = Path(_sqlite_path(db))
    if not path.is_file():
        raise BackupError(f"the database {path} does not exist (run `manage.py migrate` first)")
    source = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            # One step (pages=-1): the copy is the database as of one moment, whatever the web and the worker write.
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            return _counts(lambda sql: copy.execute(sql).fetchone()[0], _sqlite_tables(copy))
        finally:
            copy.close()
    finally:
        source.close()


def _dump_postgresql(db: Mapping, target: Path) -> dict[str, int]:
    import psycopg

    with psycopg.connect(**_pg_connect_kwargs(db), autocommit=False) as conn, conn.cursor() as cursor:
        # The counts and pg_dump see the same snapshot, held as long as this transaction stays open.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]

        def one(sql):
            cursor.execute(sql)
            return cursor.fetchone()[0]

        counts = _counts(one, _pg_tables(cursor))
        _run(_pg_tool("pg_dump", db, "--format=custom", f"--snapshot={snapshot}", f"--file={target}"), _pg_env(db))
        conn.rollback()
    return counts


def backup_create(*, db: Mapping, export_dir: Path, output_dir: Path, now: dt.datetime | None = None) -> BackupResult:
    """Write one archive of the database and the export files into `output_dir`; return its path and manifest."""
    engine = engine_of(db)
    now = now or dt.datetime.now(dt.UTC)
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"registry-backup-{now:%Y%m%dT%H%M%SZ}.tar"
    if final.exists():
        raise BackupError(f"{final} already exists")
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=output_dir) as work:
        work_dir = Path(work)
        part = PG_PART if engine == "postgresql" else SQLITE_PART
        dump = work_dir / part
        counts = _dump_postgresql(db, dump) if engine == "postgresql" else _dump_sqlite(db, dump)
        files: list[tuple[str, Path]] = [(part, dump)]
        files += [(str(PurePosixPath(EXPORTS, *p.relative_to(export_dir).parts)), p) for p in _export_files(export_dir)]
        manifest = {
            "format": FORMAT,
            "engine": engine,
            "created_at": now.isoformat(),
            "parts": {name: {"sha256": sha256_of(path), "bytes": path.stat().st_size} for name, path in files},
            "row_counts": counts,
        }
        partial = work_dir / "archive.tar"
        with tarfile.open(partial, "w") as tar:
            body = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(body)
            info.mtime = int(now.timestamp())
            tar.addfile(info, io.BytesIO(body))
            for name, path in files:
                tar.add(path, arcname=name, recursive=False)
        os.replace(partial, final)
    return BackupResult(path=final, manifest=manifest)


# Restore -------------------------------------------------------------------------------------------------


def _safe_member_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name == str(path)


def backup_verify(*, archive: Path, into: Path) -> dict:
    """Check every part of `archive` against its manifest, extracting them into `into`; return the manifest.

    Refused (BackupError naming the part): no manifest, a part missing, an extra file, a checksum or size that
    differs, a name outside the archive's folder, anything but regular files.
    """
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    try:
        with tarfile.open(archive, "r") as tar:
            return _verify_members(tar, into)
    except tarfile.TarError as exc:
        raise BackupError(f"{archive} is not a readable backup archive ({exc})") from None


def _verify_members(tar: tarfile.TarFile, into: Path) -> dict:
    members = tar.getmembers()
    by_name = {m.name: m for m in members}
    if MANIFEST not in by_name:
        raise BackupError(f"the archive has no {MANIFEST}")
    try:
        manifest = json.load(tar.extractfile(by_name[MANIFEST]))
    except ValueError:
        raise BackupError(f"{MANIFEST} is not valid JSON") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{MANIFEST}: format {manifest.get('format')!r} is not {FORMAT}")
    parts = manifest.get("parts") or {}
    expected = set(parts) | {MANIFEST}
    extra = sorted(set(by_name) - expected)
    if extra:
        raise BackupError(f"{extra[0]}: not listed in {MANIFEST}")
    missing = sorted(expected - set(by_name))
    if missing:
        raise BackupError(f"{missing[0]}: listed in {MANIFEST} but missing from the archive")
    for name, meta in sorted(parts.items()):
        member = by_name[name]
        if not member.isfile() or not _safe_member_name(name):
            raise BackupError(f"{name}: not a regular file inside the archive")
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tar.extractfile(member) as source, target.open("wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != meta.get("sha256") or target.stat().st_size != meta.get("bytes"):
            raise BackupError(f"{name}: SHA-256 does not match {MANIFEST} (the archive is damaged or altered)")
    return manifest


def _has_tables(db: Mapping) -> bool:
    if engine_of(db) == "sqlite":
        path = Path(_sqlite_path(db))
        if not path.exists():
            return False
        with closing(sqlite3.connect(path)) as conn:
            return bool(_sqlite_tables(conn))
    import psycopg

    with psycopg.connect(**_pg_connect_kwargs(db)) as conn, conn.cursor() as cursor:
        return bool(_pg_tables(cursor))


def backup_restore(*, archive: Path, db: Mapping, export_dir: Path, force: bool = False) -> RestoreResult:
    """Restore `archive` into the database `db` and `export_dir`.

    Checks the archive first (backup_verify); refuses a database that already has tables, or export files that
    already exist, unless `force` (then they are replaced). Afterwards every table must hold the manifest's
    number of rows.
    """
    engine = engine_of(db)
    with tempfile.TemporaryDirectory(prefix="registry-restore-") as work:
        work_dir = Path(work)
        manifest = backup_verify(archive=archive, into=work_dir)
        if manifest.get("engine") != engine:
            raise BackupError(f"the archive holds a {manifest.get('engine')} database; this database is {engine}")
        exports = sorted(name for name in manifest["parts"] if name.startswith(EXPORTS + "/"))
        if not force:
            if _has_tables(db):
                raise BackupError(
                    f"the database {db['NAME']} is not empty: restore into a new database, or pass --force to replace it"
                )
            clashes = [name for name in exports if (export_dir / PurePosixPath(name).relative_to(EXPORTS)).exists()]
            if clashes:
                raise BackupError(f"{clashes[0]} already exists under {export_dir}: pass --force to replace it")
        if engine == "postgresql":
            _run(
                _pg_tool(
                    "pg_restore", db, "--no-owner", "--clean", "--if-exists", "--single-transaction", "--exit-on-error"
                )
                + [str(work_dir / PG_PART)],
                _pg_env(db),
            )
        else:
            target = Path(_sqlite_path(db))
            target.parent.mkdir(parents=True, exist_ok=True)
            source = closing(sqlite3.connect(work_dir / SQLITE_PART))
            with source as source_conn, closing(sqlite3.connect(target)) as dest:
                source_conn.backup(dest)
        for name in exports:
            destination = export_dir / PurePosixPath(name).relative_to(EXPORTS)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(work_dir / name, destination)
    counts = row_counts(db)
    expected = manifest["row_counts"]
    for table, rows in sorted(expected.items()):
        if counts.get(table) != rows:
            raise BackupError(f"after the restore {table} holds {counts.get(table)} rows; the manifest says {rows}")
    return RestoreResult(
        manifest=manifest, tables=len(expected), rows=sum(expected.values()), export_files=len(exports)
    )
