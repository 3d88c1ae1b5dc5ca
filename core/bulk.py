"""Set-based writes of many model instances: a fixed number of statements whatever their number.

On PostgreSQL, from `COPY_FROM` rows up, the rows travel by COPY (psycopg 3), several times faster than
Django's bulk statements for thousands of rows (those quote every array element of `INSERT ... SELECT *
FROM UNNEST` in Python); below that, and on other databases, Django's `bulk_create` and `bulk_update` (or,
for rows given as tuples, a plain `INSERT ... VALUES`) do the same work. No signal is sent: the callers write
the audit-history rows themselves (`core.audit.history_of_rows`, `history_bulk_create`).
"""

from __future__ import annotations

import itertools

from django.db import connection, transaction

_names = itertools.count(1)

# Below this many rows Django's bulk statements are as quick as COPY and need no temporary table.
COPY_FROM = 50
_INSERT_CHUNK = 500  # rows per INSERT where COPY is not used (SQLite allows 32,766 parameters a statement)


def _copy_pays(objs) -> bool:
    return connection.vendor == "postgresql" and len(objs) >= COPY_FROM


def without_jit() -> None:
    """For the rest of the transaction, no JIT compilation on PostgreSQL. A bulk write's lookups of thousands
    of ids are estimated above `jit_above_cost` and compiling them takes longer than running them (a
    400-visit batch at 100,000 patients: 366 ms of JIT for a 45 ms read of its patients' results)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _preparers(fields) -> list:
    """Per field, the function that makes a value ready for psycopg: the field's own where the value needs one
    (JSON), none where psycopg adapts the Python value as it is (numbers, text, dates, booleans)."""
    native = _NATIVE if connection.vendor == "postgresql" else set()  # SQLite: dates and decimals as text
    return [
        None if field.get_internal_type() in native else (lambda v, f=field: f.get_db_prep_save(v, connection))
        for field in fields
    ]


_NATIVE = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "DateField",
    "DateTimeField",
    "DecimalField",
    "ForeignKey",
    "IntegerField",
    "OneToOneField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
}


def _fields_named(meta, names) -> list:
    """The model's fields by name or attribute name (`visit` or `visit_id`)."""
    by_name = {f.attname: f for f in meta.concrete_fields} | {f.name: f for f in meta.concrete_fields}
    return [by_name[name] for name in names]


def _prepared(rows: list[tuple], fields) -> list[tuple]:
    """Tuples of Python values made ready for the database, field by field (`_preparers`)."""
    preparers = _preparers(fields)
    if not any(preparers):
        return rows
    return [tuple(p(v) if p else v for p, v in zip(preparers, row, strict=True)) for row in rows]


def _rows(objs, fields, *, add: bool, with_pk: bool = False):
    """Rows of the instances' values for COPY: for new rows (`add`) as `save` would write them (auto_now
    fields stamped), for existing rows as the instances hold them."""
    preparers = list(zip(fields, _preparers(fields), strict=True))
    for obj in objs:
        values = [field.pre_save(obj, add) if add else getattr(obj, field.attname) for field, _ in preparers]
        row = [prepare(v) if prepare else v for (_, prepare), v in zip(preparers, values, strict=True)]
        yield (obj.pk, *row) if with_pk else tuple(row)


def _copy(cursor, table: str, columns: list[str], rows) -> None:
    names = ", ".join(_quote(c) for c in columns)
    with cursor.cursor.copy(f"COPY {_quote(table)} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _scratch_table(cursor, model, columns: list[str]) -> str:
    """A temporary table with these columns of the model's table (same types), dropped at commit."""
    name = f"bulk_{model._meta.db_table}_{next(_names)}"
    selected = ", ".join(_quote(c) for c in columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {_quote(name)} ON COMMIT DROP AS "
        f"SELECT {selected} FROM {_quote(model._meta.db_table)} WITH NO DATA"
    )
    return name


def insert_rows(model, objs: list) -> list:
    """Insert new instances and set their primary keys (auto_now fields are stamped, as by `save`)."""
    if not objs:
        return objs
    if not _copy_pays(objs):
        return model._default_manager.bulk_create(objs)
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f is not meta.pk]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        for obj, pk in zip(objs, _draw_keys(cursor, meta, len(objs)), strict=True):
            obj.pk = pk
        _copy(
            cursor,
            meta.db_table,
            [meta.pk.column, *(f.column for f in fields)],
            _rows(objs, fields, add=True, with_pk=True),
        )
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias
    return objs


def insert_values(model, field_names: list[str], rows: list[tuple], *, keys: bool = False) -> list | None:
    """Insert rows given as tuples of these fields' Python values (in that order; fields named by name or
    attribute name, `visit` or `visit_id`), as given (no auto_now stamp replaces one) and with no instance
    built. With `keys`, return the rows' new primary keys, in order; without, none is drawn beforehand."""
    if not rows:
        return [] if keys else None
    meta = model._meta
    fields = _fields_named(meta, field_names)
    rows = _prepared(rows, fields)
    columns = [f.column for f in fields]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if not _copy_pays(rows):
            inserted = _insert_statements(cursor, meta, columns, rows, keys=keys)
            return inserted if keys else None
        pks = None
        if keys:
            pks = _draw_keys(cursor, meta, len(rows))
            rows, columns = ((pk, *row) for pk, row in zip(pks, rows, strict=True)), [meta.pk.column, *columns]
        _copy(cursor, meta.db_table, columns, rows)
    return pks


def _insert_statements(cursor, meta, columns: list[str], rows: list[tuple], *, keys: bool = False, upsert: str = ""):
    """INSERT ... VALUES of prepared rows, `_INSERT_CHUNK` rows a statement. With `keys`, the rows' keys, in
    order (RETURNING); with an `upsert` clause (`ON CONFLICT ...`, the table named `t` in it), the number of rows
    written."""
    names = ", ".join(_quote(c) for c in columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    target = _quote(meta.db_table) + (" AS t" if upsert else "")
    returning = f" RETURNING {_quote(meta.pk.column)}" if keys else ""
    pks: list = []
    written = 0
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        cursor.execute(
            f"INSERT INTO {target} ({names}) VALUES {', '.join([one] * len(chunk))}{upsert}{returning}",
            [value for row in chunk for value in row],
        )
        if keys:
            pks += [pk for (pk,) in cursor.fetchall()]
        written += cursor.rowcount
    return pks if keys else written


def _draw_keys(cursor, meta, count: int) -> list:
    # The sequence is named once (materialized), not per row: `pg_get_serial_sequence` reads the catalog each
    # time it is called, six times the cost of the `nextval` itself (1,800 keys: 23 ms against 3.4 ms).
    cursor.execute(
        "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(%s, %s)::regclass AS seq) "
        "SELECT nextval(s.seq) FROM s, generate_series(1, %s)",
        [meta.db_table, meta.pk.column, count],
    )
    return [pk for (pk,) in cursor.fetchall()]


def update_rows(model, objs: list, field_names: list[str]) -> None:
    """Write these fields of existing instances (as they are: auto_now fields are not stamped)."""
    if not objs:
        return
    if len(objs) == 1:  # one plain UPDATE (bulk_update writes a CASE per field)
        (obj,) = objs
        model._default_manager.filter(pk=obj.pk).update(**{name: getattr(obj, name) for name in field_names})
        return
    if not _copy_pays(objs):
        model._default_manager.bulk_update(objs, field_names)
        return
    meta = model._meta
    fields = [meta.get_field(name) for name in field_names]
    columns = [meta.pk.column, *(f.column for f in fields)]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        scratch = _scratch_table(cursor, model, columns)
        _copy(cursor, scratch, columns, _rows(objs, fields, add=False, with_pk=True))
        assignments = ", ".join(f"{_quote(f.column)} = s.{_quote(f.column)}" for f in fields)
        cursor.execute(
            f"UPDATE {_quote(meta.db_table)} AS t SET {assignments} FROM {_quote(scratch)} AS s "
            f"WHERE t.{_quote(meta.pk.column)} = s.{_quote(meta.pk.column)}"
        )
        cursor.execute(f"DROP TABLE {_quote(scratch)}")


def upsert_rows(model, objs: list, *, unique: str, field_names: list[str], compare: list[str] | None = None) -> int:
    """Insert new instances or, where a row with the same `unique` field exists, update these fields of it
    (the row keeps its primary key). auto_now fields are stamped. With `compare`, an existing row whose
    `compare` fields already hold the new values is left as it is (its auto_now stamp too). Returns the number
    of rows inserted or updated."""
    fields = [f for f in model._meta.concrete_fields if f is not model._meta.pk]
    rows = [tuple(field.pre_save(obj, True) for field in fields) for obj in objs]
    return upsert_values(
        model, [f.attname for f in fields], rows, unique=unique, field_names=field_names, compare=compare
    )


def upsert_values(
    model, names: list[str], rows: list[tuple], *, unique: str, field_names: list[str], compare: list[str] | None = None
) -> int:
    """`upsert_rows` for rows given as tuples of the fields `names` (attribute names; every field a new row
    needs, `unique` among them), with no instance built on PostgreSQL (`COPY` from `COPY_FROM` rows up)."""
    if not rows:
        return 0
    meta = model._meta
    key = meta.get_field(unique)
    if connection.vendor != "postgresql":
        objs = [model(**dict(zip(names, row, strict=True))) for row in rows]
        if compare:
            stored = model._default_manager.filter(**{f"{unique}__in": [getattr(o, key.attname) for o in objs]})
            current = {getattr(row, key.attname): row for row in stored.order_by()}
            objs = [
                obj
                for obj in objs
                if (row := current.get(getattr(obj, key.attname))) is None
                or any(getattr(row, name) != getattr(obj, name) for name in compare)
            ]
        if objs:
            model._default_manager.bulk_create(
                objs, update_conflicts=True, unique_fields=[unique], update_fields=field_names
            )
        return len(objs)
    # A new row gets every field given; an existing one only the `field_names`, and with `compare` only where
    # they differ: one statement, no stored row read into Python. Rows are locked in the order of the unique
    # field by every writer, so two writers cannot deadlock.
    fields = _fields_named(meta, names)
    at = fields.index(key)
    rows = sorted(_prepared(rows, fields), key=lambda row: row[at])
    columns = [f.column for f in fields]
    listed = ", ".join(_quote(c) for c in columns)
    updated = [_quote(meta.get_field(name).column) for name in field_names]
    upsert = f" ON CONFLICT ({_quote(key.column)}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updated)
    if compare:
        compared = [_quote(meta.get_field(name).column) for name in compare]
        upsert += (
            f" WHERE ({', '.join(f't.{c}' for c in compared)}) "
            f"IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in compared)})"
        )
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if not _copy_pays(rows):
            return _insert_statements(cursor, meta, columns, rows, upsert=upsert)
        scratch = _scratch_table(cursor, model, columns)
        _copy(cursor, scratch, columns, rows)
        cursor.execute(
            f"INSERT INTO {_quote(meta.db_table)} AS t ({listed}) SELECT {listed} FROM {_quote(scratch)} "
            f"ORDER BY {_quote(key.column)}{upsert}"
        )
        written = cursor.rowcount
        cursor.execute(f"DROP TABLE {_quote(scratch)}")
    return written
