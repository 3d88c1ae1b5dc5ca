from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from intake.selectors import report_lines
from intake.services import cohort_import, templates_write
from registry.models import Site, Study


class Command(BaseCommand):
    help = (
        "Import a centre's cohort from CSV or XLSX files (patients, infusions, visits with results, medications, "
        "adverse events): every row checked by the registry's services, then all or nothing (docs/import.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="*", help="CSV or XLSX files, named after what they hold.")
        parser.add_argument("--study", help="Study code.")
        parser.add_argument("--site", default="", help="Site code of every patient (else the site column).")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and write nothing.")
        parser.add_argument("--reason", default="", help="Reason for the corrections a re-import makes.")
        parser.add_argument(
            "--chunk", type=int, default=0, help="Write N patients per transaction (after checking the whole import)."
        )
        parser.add_argument("--template", metavar="DIR", help="Write empty templates into DIR and stop.")

    def handle(self, *args, **options):
        if options["template"]:
            for path in templates_write(Path(options["template"])):
                self.stdout.write(str(path))
            return
        if not options["files"] or not options["study"]:
            raise CommandError("Give the files to import and --study (or --template DIR).")
        study = Study.objects.filter(code=options["study"]).first()
        if study is None:
            raise CommandError(f"No study with code {options['study']}.")
        site = None
        if options["site"]:
            site = Site.objects.filter(code=options["site"]).first()
            if site is None:
                raise CommandError(f"No site with code {options['site']}.")
        files = []
        for name in options["files"]:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"No file {name}.")
            files.append((path.name, path.read_bytes()))
        bars: dict[str, tqdm] = {}

        def progress(file: str, done: int, total: int) -> None:
            bar = bars.get(file) or bars.setdefault(file, tqdm(total=total, desc=file, unit="row", file=self.stderr))
            bar.total = total
            bar.update(done - bar.n)

        report = cohort_import(
            study=study,
            files=files,
            site=site,
            reason=options["reason"],
            dry_run=options["dry_run"],
            progress=progress,
            chunk_patients=options["chunk"] or None,
        )
        for bar in bars.values():
            bar.close()
        for line in report_lines(report):
            self.stdout.write(line)
        if report.problems:
            written = "" if report.committed_through is None else f" after patient {report.committed_through}"
            raise CommandError(f"{len(report.problems)} problem(s); nothing was written{written}.")
