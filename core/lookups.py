"""`field__any=[...]`: `__in` with the list sent as one array parameter on PostgreSQL.

`__in` sends one parameter per value: a batch's thousands of ids cost psycopg a placeholder each to
format and PostgreSQL an expression each to parse. `= ANY(%s)` is one parameter whatever the length;
other databases get the `IN (...)` of `__in`.
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import CharField, ForeignObject, IntegerField, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self):
        return [self.lhs.output_field.get_prep_value(value) for value in self.rhs]

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = list(dict.fromkeys(self.rhs))
        if not values:
            raise EmptyResultSet
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*params, values]
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*params, *values]


# Keys and codes: integers (every AutoField among them), text, and relations, which keep their own lookups
# (`visit_id__any`, `visit__any`). Not on every field: a JSON field's `__any` stays the key "any".
for field_class in (IntegerField, CharField, ForeignObject):
    field_class.register_lookup(AnyOf)
