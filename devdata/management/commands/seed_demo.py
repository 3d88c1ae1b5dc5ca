"""`manage.py seed_demo`: a demonstration MSCT study (sites, staff, lots, patients, visits, adverse events).

The data are made through the services (see `devdata.demo`), attributed to this command in the audit
trail, deterministic for a given --seed, and dated relative to today. Running it again adds nothing.
"""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from core.audit import audit_context
from devdata import demo


class _BarStream:
    """Lets tqdm draw on the command's stdout (which would otherwise end every write with a new line)."""

    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.write(text, ending="")

    def flush(self):
        self.out.flush()

    def isatty(self):
        return self.out.isatty()


class Command(BaseCommand):
    help = "Seed the demonstration study MSCT-SLE-DEMO (idempotent: existing objects are left as they are)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--patients", type=int, default=demo.DEFAULT_PATIENTS, help="Number of patients (default 40)."
        )
        parser.add_argument(
            "--seed", type=int, default=demo.DEFAULT_SEED, help=f"Random seed (default {demo.DEFAULT_SEED})."
        )
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args, patients: int, seed: int, quiet: bool, **options):
        if not 1 <= patients <= 999:
            raise CommandError("--patients must be between 1 and 999.")
        now = timezone.now()
        counts: Counter = Counter()
        with audit_context(door="command", actor="seed_demo"):
            reference, added = demo.seed_reference(seed=seed, patients=patients, now=now)
            counts.update(added)
            with tqdm(
                total=patients, desc="Patients", unit="patient", file=_BarStream(self.stdout), disable=quiet
            ) as bar:
                for number in range(1, patients + 1):
                    counts.update(demo.seed_patient(reference=reference, number=number, seed=seed, now=now))
                    bar.update(1)

        if not counts:
            self.stdout.write(f"Nothing added: study {demo.STUDY_CODE} already holds every demo object.")
            return
        summary = "; ".join(f"{name}: {value}" for name, value in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Study {demo.STUDY_CODE}, added: {summary}."))
