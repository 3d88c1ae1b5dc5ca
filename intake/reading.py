"""Reading the files of an import: CSV (UTF-8, or GB18030 as Chinese spreadsheets save it) or XLSX (one sheet
per kind), into sheets of rows named by file and row number as the user sees them (the header is row 1)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from intake.constants import Kind

# Words in a file or sheet name that say what it holds (the registry's own export names included).
KIND_NAMES = [
    (Kind.ADVERSE_EVENTS, ("adverse_events", "adverse-events", "adverseevents", "ae", "不良事件")),
    (Kind.MEDICATIONS, ("medications", "medication", "cm", "用药")),
    (Kind.INFUSIONS, ("infusions", "infusion", "transplants", "ex", "输注")),
    ("results", ("results",)),  # the long results table of the registry's own export (intake/tidy.py)
    (Kind.VISITS, ("visits", "visit", "随访")),
    (Kind.PATIENTS, ("patients", "patient", "dm", "患者")),
]
DESCRIPTION_SHEETS = {"description", "descriptions", "说明", "columns"}


class FileError(Exception):
    """A file that cannot be read at all (its format, or no sheet of a known kind)."""


@dataclass
class Sheet:
    file: str  # as shown in problems: the file name, and the sheet of a workbook ("cohort.xlsx:visits")
    kind: str
    sha256: str
    header: list[str]
    rows: list[tuple[int, dict[str, object]]] = field(default_factory=list)


def kind_of(name: str) -> str | None:
    words = re.split(r"[^0-9a-z_\-\u4e00-\u9fff]+", PurePath(name).stem.lower())
    for kind, names in KIND_NAMES:
        if any(word in names or any(word.startswith(n) for n in names if len(n) > 3) for word in words if word):
            return kind
    return None


def read_files(files: list[tuple[str, bytes]]) -> list[Sheet]:
    """Every sheet of `files` ((name, content) pairs); a FileError names a file that cannot be read."""
    sheets = []
    for name, content in files:
        digest = hashlib.sha256(content).hexdigest()
        if name.lower().endswith((".xlsx", ".xlsm")):
            sheets.extend(_read_workbook(name, content, digest))
        else:
            kind = kind_of(name)
            if kind is None:
                raise FileError(_unknown_kind(name))
            sheets.append(_sheet(name, kind, digest, _csv_rows(name, content)))
    return sheets


def _unknown_kind(name: str) -> str:
    return (
        f"{name}: the name does not say what the file holds; name it after one of "
        f"{', '.join(Kind.values)} (e.g. patients.csv)."
    )


def _csv_rows(name: str, content: bytes) -> list[list[object]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError:
            continue
        return list(csv.reader(io.StringIO(text, newline="")))
    raise FileError(f"{name}: the file is neither UTF-8 nor GB18030 text; save it as CSV UTF-8.")


def _read_workbook(name: str, content: bytes, digest: str) -> list[Sheet]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged or foreign file
        raise FileError(f"{name}: not a readable XLSX workbook ({exc.__class__.__name__}).") from None
    sheets = []
    try:
        for worksheet in book.worksheets:
            if worksheet.title.strip().lower() in DESCRIPTION_SHEETS:
                continue
            kind = kind_of(worksheet.title)
            if kind is None:
                raise FileError(_unknown_kind(f"{name}:{worksheet.title}"))
            rows = [list(row) for row in worksheet.iter_rows(values_only=True)]
            sheets.append(_sheet(f"{name}:{worksheet.title}", kind, digest, rows))
    finally:
        book.close()
    if not sheets:
        raise FileError(f"{name}: no sheet named after one of {', '.join(Kind.values)}.")
    return sheets


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _sheet(name: str, kind: str, digest: str, rows: list[list[object]]) -> Sheet:
    if not rows:
        raise FileError(f"{name}: the file is empty; the first row names the columns.")
    header = [str(cell).strip() if cell is not None else "" for cell in rows[0]]
    sheet = Sheet(file=name, kind=kind, sha256=digest, header=header)
    for number, values in enumerate(rows[1:], start=2):
        if all(_blank(v) for v in values):
            continue
        first = values[0] if values else None
        if isinstance(first, str) and first.lstrip().startswith("#"):
            continue  # a comment row (the templates' example)
        cells = {column: (values[i] if i < len(values) else None) for i, column in enumerate(header) if column}
        sheet.rows.append((number, cells))
    return sheet
