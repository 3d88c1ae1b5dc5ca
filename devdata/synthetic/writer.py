"""Where the synthetic rows go: each table's model and columns, and the bulk writer (COPY on PostgreSQL,
batched INSERTs elsewhere), with the ids reserved in blocks and the secondary constraints set aside."""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

from followup.models import AdverseEvent, ComputedOutcome, Result, Visit
from patients.models import Patient, TransplantEvent

# Where rows go -----------------------------------------------------------------------------------------


def _columns(model) -> tuple[str, ...]:
    """Every column of a model's table (by attribute name: `site_id`), in the model's order."""
    return tuple(f.attname for f in model._meta.concrete_fields)


# Each table's model and the columns of its rows, in order. The results (most of the rows) are built as tuples
# in this order; the other rows by column name, every column of the model given (`CohortGenerator._add`).
TABLES = {
    "patient": (Patient, _columns(Patient)),
    "transplant": (TransplantEvent, _columns(TransplantEvent)),
    "visit": (Visit, _columns(Visit)),
    "result": (
        Result,
        ("id", "visit_id", "code", "value", "entered_value", "entered_unit", "derived", "created_at", "updated_at"),
    ),
    "outcome": (ComputedOutcome, _columns(ComputedOutcome)),
    "ae": (AdverseEvent, _columns(AdverseEvent)),
}
WRITE_ORDER = ("patient", "transplant", "visit", "result", "outcome", "ae")


class BulkWriter:
    """Writes rows (tuples in the column order of TABLES) with COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self):
        self.postgres = connection.vendor == "postgresql"

    def timestamp(self, moment: dt.datetime) -> str:
        text = moment.strftime("%Y-%m-%d %H:%M:%S")
        return text + "+00" if self.postgres else text

    def boolean(self, value: bool | None):
        if value is None:
            return None
        if self.postgres:
            return "t" if value else "f"
        return 1 if value else 0

    def reserve_ids(self, bounds: dict[str, int]) -> dict[str, int]:
        """The first id of a block of `bound` ids per table, taken from its sequence (safe beside other writers)."""
        starts = {}
        with transaction.atomic(), connection.cursor() as cursor:
            for name, bound in bounds.items():
                table = TABLES[name][0]._meta.db_table
                if self.postgres:
                    cursor.execute(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE')
                    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
                    sequence = cursor.fetchone()[0]
                    cursor.execute(
                        f'SELECT setval(%s, GREATEST((SELECT COALESCE(MAX(id), 0) FROM "{table}"), '
                        f"(SELECT last_value FROM {sequence})) + %s)",
                        [sequence, bound],
                    )
                    starts[name] = cursor.fetchone()[0] - bound + 1
                else:
                    cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')
                    starts[name] = cursor.fetchone()[0] + 1
        return starts

    def drop_secondary_constraints(self, names) -> list[str]:
        """On PostgreSQL, drop the secondary indexes, unique and foreign-key constraints of the tables that are
        empty, and return the statements that put them back: building an index once over a loaded table is
        several times faster than maintaining it row by row (check constraints stay, they cost little)."""
        if not self.postgres:
            return []
        restore: list[str] = []
        with transaction.atomic(), connection.cursor() as cursor:
            for name in names:
                table = TABLES[name][0]._meta.db_table
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")')
                if cursor.fetchone()[0]:
                    continue
                cursor.execute(
                    "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
                    [table],
                )
                constraints = cursor.fetchall()
                cursor.execute(
                    "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
                    "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) ORDER BY i.relname",
                    [table],
                )
                indexes = cursor.fetchall()
                for conname, _, definition in constraints:
                    cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{conname}"')
                    restore.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{conname}" {definition}')
                for index_name, definition in indexes:
                    cursor.execute(f'DROP INDEX "{index_name}"')
                    restore.append(definition)
        return restore

    def restore(self, statements: list[str]) -> None:
        if not statements:
            return
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for statement in statements:
                cursor.execute(statement)

    def write(self, name: str, rows: list[tuple]) -> None:
        if not rows:
            return
        model, columns = TABLES[name]
        table = connection.ops.quote_name(model._meta.db_table)
        names = ", ".join(connection.ops.quote_name(col) for col in columns)
        with connection.cursor() as cursor:
            if self.postgres:
                with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                marks = ", ".join(["%s"] * len(columns))
                for start in range(0, len(rows), 5000):
                    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows[start : start + 5000])
