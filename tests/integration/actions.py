"""What another registry process does during a fault, run as `python -m tests.integration.actions ...`.

`record-visits ID...` records each visit through `followup.services.visit_record` on the site's today,
the way a web process would, and prints one JSON line: the visits recorded and any write that failed.
The process uses the settings and services named by its environment (DJANGO_SETTINGS_MODULE,
DATABASE_URL, REDIS_URL): the fault tests point it at a broker that is down.
"""

from __future__ import annotations

import argparse
import json
import sys


def record_visits(visit_ids: list[int]) -> dict:
    from followup.models import Visit
    from followup.services import visit_record
    from followup.states import site_today

    outcome = {"recorded": [], "failed": {}}
    for visit_id in visit_ids:
        try:
            visit = Visit.objects.select_related("patient__site").get(pk=visit_id)
            visit_record(visit=visit, actual_date=site_today(visit.patient.site))
        except Exception as exc:  # every failure is reported to the test, which fails on any
            outcome["failed"][str(visit_id)] = f"{exc.__class__.__name__}: {exc}"
        else:
            outcome["recorded"].append(visit_id)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.actions")
    sub = parser.add_subparsers(dest="action", required=True)
    record = sub.add_parser("record-visits")
    record.add_argument("visit_ids", nargs="+", type=int)
    args = parser.parse_args(argv)

    import django

    django.setup()
    if args.action == "record-visits":
        result = record_visits(args.visit_ids)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
