from django.core.management.base import BaseCommand, CommandError

from core.locks import single_run
from quality.services.edit_checks import LOCK_NAME, run_edit_checks
from registry.models import Study


class Command(BaseCommand):
    help = "Run the edit checks over a whole study (or every study): open, close and re-open their queries."

    def add_arguments(self, parser):
        parser.add_argument("--study", action="append", help="Study code (repeat for several; default: every study).")

    def handle(self, *args, study=None, **options):
        studies = Study.objects.all()
        if study:
            studies = studies.filter(code__in=study)
            missing = sorted(set(study) - set(studies.values_list("code", flat=True)))
            if missing:
                raise CommandError(f"--study: no study {', '.join(missing)}.")
        with single_run(LOCK_NAME) as held:
            if not held:
                self.stdout.write("skipped: another run of the edit checks is in progress")
                return
            report = run_edit_checks(study_ids=list(studies.values_list("pk", flat=True)))
        self.stdout.write(
            f"findings: {report.findings}; queries opened: {report.opened}; closed as corrected: {report.closed}; "
            f"re-opened: {report.reopened}"
        )
