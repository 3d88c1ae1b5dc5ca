"""`manage.py load_meddra DIR --version X`: load a centre's own MedDRA release from its ASCII distribution
(the MedAscii folder: llt.asc, pt.asc, hlt.asc, hlgt.asc, soc.asc, hlt_pt.asc, hlgt_hlt.asc, soc_hlgt.asc,
mdhier.asc). The registry ships no MedDRA; new codings use the release loaded last."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from followup.services import meddra_release_load


class Command(BaseCommand):
    help = "Load a MedDRA release (ASCII distribution files) for coding adverse events."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # `--version` names the MedDRA version here, not Django's: let ours replace it.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("directory", help="The release's MedAscii folder.")
        parser.add_argument("--version", required=True, dest="meddra_version", help="MedDRA version, e.g. 27.1.")
        parser.add_argument("--language", default="English", help="Language of the release (default English).")
        parser.add_argument("--encoding", default="utf-8", help="Text encoding of the files (default utf-8).")

    def handle(self, *args, directory, meddra_version, language, encoding, **options):
        try:
            release = meddra_release_load(
                directory=directory, version=meddra_version, language=language, encoding=encoding
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(f"Loaded MedDRA {release.version} ({release.language}): {release.terms.count()} LLTs.")
