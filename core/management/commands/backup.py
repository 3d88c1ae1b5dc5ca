"""`manage.py backup`: one archive of the database and the export files (core/backup.py; docs/operations.md)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.backup import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Write registry-backup-<UTC time>.tar: the database (pg_dump -Fc, or SQLite's online backup), the files "
        "under EXPORT_DIR and a manifest with each part's SHA-256 and every table's row count."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output-dir",
            default=str(Path(settings.VAR_DIR) / "backups"),
            help="Folder the archive is written to (default: var/backups).",
        )
        parser.add_argument("--database", default="default", help="Which database alias to back up.")

    def handle(self, *args, output_dir, database, **options):
        try:
            result = backup_create(
                db=connections[database].settings_dict,
                export_dir=Path(settings.EXPORT_DIR),
                output_dir=Path(output_dir),
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        manifest = result.manifest
        self.stdout.write(
            f"{result.path}: {manifest['engine']} database, {len(manifest['row_counts'])} tables, "
            f"{sum(manifest['row_counts'].values())} rows, {len(manifest['parts']) - 1} export file(s)"
        )
