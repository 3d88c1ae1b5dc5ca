"""`manage.py check_data [--study S]`: every stored record that breaks a time rule (`followup.integrity`), one
line each, for a data manager to correct through its page with a reason. Exit status 1 when any is found."""

from django.core.management.base import BaseCommand, CommandError

from followup.integrity import time_rule_breaches
from registry.models import Study


class Command(BaseCommand):
    help = "List stored visits, adverse events and medications that break a time rule."

    def add_arguments(self, parser):
        parser.add_argument("--study", help="Only this study (its code).")

    def handle(self, *args, study=None, **options):
        if study and not Study.objects.filter(code=study).exists():
            raise CommandError(f"No study {study}.")
        breaches = time_rule_breaches(study_code=study)
        for b in breaches:
            self.stdout.write(f"{b.site}\t{b.subject}\t{b.record}\t{b.on_date.isoformat()}\t{b.rule}")
        self.stdout.write(f"{len(breaches)} record(s) break a time rule.")
        if breaches:
            raise SystemExit(1)
