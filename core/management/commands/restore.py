"""`manage.py restore FILE`: put a backup archive back (core/backup.py; docs/operations.md)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore an archive written by `manage.py backup` into an empty database and EXPORT_DIR. Every part's "
        "SHA-256 is checked first; afterwards every table's row count is compared with the manifest."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", help="The registry-backup-*.tar file.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace a database that already has tables, and export files that already exist.",
        )
        parser.add_argument("--database", default="default", help="Which database alias to restore into.")

    def handle(self, *args, archive, force, database, **options):
        connection = connections[database]
        connection.close()  # the restore works on its own connections; this one must not hold a lock
        try:
            result = backup_restore(
                archive=Path(archive),
                db=connection.settings_dict,
                export_dir=Path(settings.EXPORT_DIR),
                force=force,
            )
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"restored {archive} (made {result.manifest['created_at']}): {result.tables} tables, {result.rows} rows "
            f"as in the manifest, {result.export_files} export file(s)"
        )
