"""Empty templates for an import: one CSV per kind (or one XLSX sheet per kind) with the header row and an
example row (starting with '#', so that the import skips it), and a description of every column in English
and Chinese (columns.csv, or the workbook's "description" sheet)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from followup.catalogue import ANALYTES
from intake.constants import COLUMNS, ORDER, Kind

EXAMPLE_RESULTS = {"SLEDAI2K": "12", "PROT24H": "2.5", "CREAT": "88", "C3": "0.6", "ADSDNA": "<10", "PRED": "20"}
DESCRIPTION_HEADER = ["file", "column", "required", "description", "说明"]


def _header_and_example(kind: str) -> tuple[list[str], list[str]]:
    columns = [c for c in COLUMNS[kind] if not c.name.startswith("<")]
    header, example = [c.name for c in columns], [c.example for c in columns]
    if kind == Kind.VISITS:
        for code, analyte in ANALYTES.items():
            if analyte.computed:
                continue
            header.append(code if code == "SLEDAI2K" else f"{code} [{analyte.unit}]")
            example.append(EXAMPLE_RESULTS.get(code, ""))
        example[header.index("sledai_items")] = ""  # the example gives the total only
    example[0] = f"#{example[0]}"
    return header, example


def _descriptions() -> list[list[str]]:
    rows = []
    for kind in ORDER:
        for column in COLUMNS[kind]:
            rows.append([f"{kind}.csv", column.name, "Y" if column.required else "", column.english, column.chinese])
    rows.append(["*", "#", "", "A row whose first cell starts with # is skipped.", "首格以 # 开头的行将被跳过。"])
    return rows


def templates_write(directory: Path) -> list[Path]:
    """Write the CSV templates and columns.csv into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ORDER:
        path = directory / f"{kind}.csv"
        with path.open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerows(_header_and_example(kind))
        written.append(path)
    path = directory / "columns.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(DESCRIPTION_HEADER)
        writer.writerows(_descriptions())
    written.append(path)
    return written


def workbook_template() -> bytes:
    """The same templates as one XLSX workbook: a sheet per kind and a "description" sheet."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for kind in ORDER:
        sheet = book.create_sheet(kind)
        for row in _header_and_example(kind):
            sheet.append(row)
    sheet = book.create_sheet("description")
    sheet.append(DESCRIPTION_HEADER)
    for row in _descriptions():
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
