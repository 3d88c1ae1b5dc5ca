import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.http import QueryDict

from registry.models import Site, Study
from reporting.cohort import cohort_report
from reporting.rendering import parse_filter, render_csv, render_html


class Command(BaseCommand):
    help = "The cohort report of a study: baseline table, outcomes over time, responses, survival, AEs."

    def add_arguments(self, parser):
        parser.add_argument("study", help="Study code.")
        parser.add_argument("--format", choices=["html", "json", "csv"], default="html")
        parser.add_argument("--site", action="append", default=[], help="Site code (repeatable); default all.")
        parser.add_argument("--cell-source", default="")
        parser.add_argument("--infusions", default="", choices=["", "single", "double"])
        parser.add_argument("--enrolled-from", default="")
        parser.add_argument("--enrolled-to", default="")
        parser.add_argument("--compare", default="cell_source", choices=["cell_source", "infusions"])
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output.")

    def handle(self, *args, **options):
        study = Study.objects.filter(code=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with code {options['study']}.")
        params = QueryDict(mutable=True)
        for name in ("cell_source", "infusions", "enrolled_from", "enrolled_to", "compare"):
            if options[name]:
                params[name] = options[name]
        params.setlist("site", options["site"])
        try:
            flt = parse_filter(params)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        site_ids = list(Site.objects.values_list("pk", flat=True))
        if options["format"] == "html":
            text = render_html(study=study, site_ids=site_ids, flt=flt)
        else:
            report = cohort_report(study=study, site_ids=site_ids, flt=flt)
            text = json.dumps(report, indent=1, default=str) if options["format"] == "json" else render_csv(report)
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
            self.stderr.write(f"written to {options['output']}")
        else:
            sys.stdout.write(text)
