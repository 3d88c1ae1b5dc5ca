"""Reads of the intake app: an import's report as lines of text (the command, the admin page)."""

from __future__ import annotations

from django.utils.translation import gettext as _

from intake.constants import ORDER


def report_lines(report) -> list[str]:
    lines = [f"{name}  sha256:{digest}" for name, digest in report.files.items()]
    for problem in report.problems:
        where = f"{problem.file}, row {problem.row}" if problem.row else problem.file
        column = f", column {problem.column}" if problem.column else ""
        lines.append(f"{where}{column} [{problem.rule}]: {problem.message}")
    for note in report.notes:
        where = f"{note.file}, row {note.row}" if note.row else note.file
        column = f", column {note.column}" if note.column else ""
        lines.append(f"{where}{column} [{note.rule}]: {note.message}")
    for kind in ORDER:
        counts = report.counts.get(kind)
        if counts:
            lines.append(f"{kind}: " + ", ".join(f"{what} {n}" for what, n in sorted(counts.items())))
    if report.committed_through:
        lines.append(_("Written up to patient %(code)s.") % {"code": report.committed_through})
    if report.resume_from:
        lines.append(
            _("Stopped at patient %(code)s: correct the rows above and run the same import again to resume there.")
            % {"code": report.resume_from}
        )
    if report.written:
        lines.append(_("Imported: %(n)s change(s) written.") % {"n": report.changes})
    elif not report.problems:
        lines.append(_("Checked: no problem found; nothing was written (preview)."))
    return lines
