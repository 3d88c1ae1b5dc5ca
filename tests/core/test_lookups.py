"""`__any` (registry.lookups) selects what `__in` selects, whatever the list: ids, text, duplicates, empty."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from followup.models import Visit
from tests.factories import make_clinical

pytestmark = pytest.mark.django_db


def test_any_selects_what_in_selects():
    make_clinical()
    make_clinical()
    ids = list(Visit.objects.order_by("pk").values_list("pk", flat=True))
    picks = [ids[0], ids[5], ids[5], ids[-1], 10**12]
    patients = list(Visit.objects.values_list("patient_id", flat=True).distinct())[:1]
    cases = [("pk", picks), ("code", ["BL", "M6", "BL", "nope"]), ("pk", []), ("patient_id", patients)]
    cases += [("patient", patients), ("patient__study_id", [Visit.objects.first().patient.study_id])]
    for lookup, values in cases:
        expected = set(Visit.objects.filter(**{f"{lookup}__in": values}).values_list("pk", flat=True))
        got = set(Visit.objects.filter(**{f"{lookup}__any": values}).values_list("pk", flat=True))
        assert got == expected
    assert Visit.objects.filter(pk__any=picks).count() == 3


@pytest.mark.postgres
def test_any_sends_one_parameter_on_postgresql():
    with CaptureQueriesContext(connection) as ctx:
        list(Visit.objects.filter(pk__any=list(range(1, 3001))))
    assert "= ANY(" in ctx.captured_queries[0]["sql"]
    assert len(ctx.captured_queries[0]["sql"]) < 20000  # 3,000 ids in one array literal, not 3,000 placeholders
