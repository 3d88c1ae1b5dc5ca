"""`manage.py seed_synthetic --patients N`: a synthetic cohort of any size for load tests and the benchmark.

Reference data through the services, then patients, infusions, visits, results, outcomes and adverse events
in bulk (COPY on PostgreSQL); see `devdata.synthetic`. Deterministic for a given --seed and --today.
"""

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.audit import audit_context
from devdata import synthetic
from devdata.management.commands.seed_demo import _BarStream


class Command(BaseCommand):
    help = "Generate a synthetic study (default MSCT-SLE-SYN) with N patients, written in bulk."

    def add_arguments(self, parser):
        parser.add_argument("--patients", type=int, required=True, help="Number of patients.")
        parser.add_argument(
            "--seed", type=int, default=synthetic.DEFAULT_SEED, help=f"Random seed (default {synthetic.DEFAULT_SEED})."
        )
        parser.add_argument("--today", type=dt.date.fromisoformat, help="Date the data are relative to (YYYY-MM-DD).")
        parser.add_argument("--sites", type=int, help="Number of sites (default: 2 to 8 by size).")
        parser.add_argument(
            "--study", default=synthetic.STUDY_CODE, help=f"Study code (default {synthetic.STUDY_CODE})."
        )
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args, patients, seed, today, sites, study, quiet, **options):
        if patients < 1:
            raise CommandError("--patients must be at least 1.")
        if sites is not None and not 1 <= sites <= 99:
            raise CommandError("--sites must be between 1 and 99.")
        started = time.monotonic()
        with (
            audit_context(door="command", actor="seed_synthetic"),
            tqdm(total=patients, desc="Patients", unit="patient", file=_BarStream(self.stdout), disable=quiet) as bar,
        ):
            try:
                counts = synthetic.seed_synthetic(
                    patients=patients, seed=seed, today=today, sites=sites, study_code=study, progress=bar.update
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        summary = "; ".join(f"{name}: {value}" for name, value in sorted(counts.items()))
        self.stdout.write(
            self.style.SUCCESS(f"Study {study}, {patients} patients in {time.monotonic() - started:.1f} s. {summary}.")
        )
