"""Reading the files of an import: CSV (UTF-8, or GB18030 as Chinese spreadsheets save it) or XLSX (one sheet
per kind), into sheets of rows named by file and row number as the user sees them (the header is row 1)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
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

# What one file may hold, so that a small hostile file cannot fill the memory (the rows are kept whole until
# the import ends). A workbook is refused by the sizes its zip directory declares, before anything is inflated
# (Python's zipfile stops inflating a member at its declared size); 500 MB is ten times the admin's 50 MB upload
# limit (intake/admin.py), more than any real workbook of that size unpacks to.
MAX_XLSX_INFLATED_BYTES = 500_000_000
MAX_ROWS = 1_000_000  # per file or sheet, the header included
MAX_COLUMNS = 1_000  # the widest import file, the visits, has one column per result code and unit
MAX_CELLS = 20_000_000  # rows times the header's width: what the rows take in memory
MAX_LINE_CHARS = 1_000_000  # one line of a CSV file


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


def _csv_rows(name: str, content: bytes) -> list[Sequence[object]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError:
            continue
        _check_line_lengths(name, text)
        if "\x00" in text:  # valid text, but no database column stores it (PostgreSQL refuses it in text)
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise FileError(f"{name}: line {line} holds a NUL character, which the registry cannot store; remove it.")
        return _bounded_rows(
            name,
            csv.reader(io.StringIO(text, newline="")),
            unreadable=lambda exc, number: f"{name}: row {number} cannot be read as CSV ({exc}).",
        )
    raise FileError(f"{name}: the file is neither UTF-8 nor GB18030 text; save it as CSV UTF-8.")


def _check_line_lengths(name: str, text: str) -> None:
    """Refuse a line longer than MAX_LINE_CHARS before the CSV reader splits it into cells."""
    end_of_line = "\n" if "\n" in text or "\r" not in text else "\r"  # old Mac files end lines with CR alone
    start, number = 0, 1
    while start < len(text):
        end = text.find(end_of_line, start)
        end = len(text) if end < 0 else end
        if end - start > MAX_LINE_CHARS:
            raise FileError(
                f"{name}: line {number} is longer than {MAX_LINE_CHARS:,} characters; "
                "a line of an import file holds one row."
            )
        start, number = end + 1, number + 1


def _bounded_rows(
    name: str, rows: Iterable[Sequence[object]], *, unreadable: Callable[[Exception, int], str]
) -> list[Sequence[object]]:
    """The rows (empty cells at their ends dropped), refused past MAX_ROWS, MAX_COLUMNS or MAX_CELLS."""
    kept: list[Sequence[object]] = []
    width = cells = 0
    iterator = iter(rows)
    while True:
        number = len(kept) + 1
        try:
            row = next(iterator)
        except StopIteration:
            return kept
        except Exception as exc:  # a damaged workbook's stream, or a CSV field over the reader's limit
            raise FileError(unreadable(exc, number)) from None
        end = len(row)
        while end and row[end - 1] is None:
            end -= 1
        row = row[:end]
        if number > MAX_ROWS:
            raise FileError(f"{name}: more than {MAX_ROWS:,} rows; split the file (at most {MAX_ROWS:,} rows each).")
        if len(row) > MAX_COLUMNS:
            raise FileError(f"{name}: row {number} has {len(row):,} columns; at most {MAX_COLUMNS:,} columns are read.")
        width = width or len(row)
        cells += max(width, len(row))
        if cells > MAX_CELLS:
            raise FileError(
                f"{name}: more than {MAX_CELLS:,} cells (rows times columns) by row {number:,}; split the file."
            )
        kept.append(row)


def _check_inflated_size(name: str, content: bytes) -> None:
    """Refuse a workbook whose parts would unpack to more than MAX_XLSX_INFLATED_BYTES (a zip bomb), by the
    sizes in its zip directory, before openpyxl inflates anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise FileError(f"{name}: not a readable XLSX workbook ({exc.__class__.__name__}).") from None
    if inflated > MAX_XLSX_INFLATED_BYTES:
        raise FileError(
            f"{name}: the workbook unpacks to {inflated:,} bytes, more than the {MAX_XLSX_INFLATED_BYTES:,} "
            "bytes read from one workbook; split it, or save its sheets as CSV files."
        )


def _read_workbook(name: str, content: bytes, digest: str) -> list[Sheet]:
    from openpyxl import load_workbook

    _check_inflated_size(name, content)
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
            # The size the sheet declares (<dimension>) is not trusted: openpyxl would pad every row to it.
            worksheet.reset_dimensions()
            rows = _bounded_rows(
                f"{name}:{worksheet.title}",
                worksheet.iter_rows(values_only=True),
                unreadable=lambda exc, number, title=worksheet.title: (
                    f"{name}: not a readable XLSX workbook ({exc.__class__.__name__} in sheet {title}, row {number})."
                ),
            )
            sheets.append(_sheet(f"{name}:{worksheet.title}", kind, digest, rows))
    finally:
        book.close()
    if not sheets:
        raise FileError(f"{name}: no sheet named after one of {', '.join(Kind.values)}.")
    return sheets


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _sheet(name: str, kind: str, digest: str, rows: list[Sequence[object]]) -> Sheet:
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
