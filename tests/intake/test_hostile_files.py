"""Files built to exhaust the importer (intake/reading.py): an XLSX whose sheet inflates to gigabytes, one that
claims or holds millions of rows or columns, and CSV files with a huge line, a huge field or too many columns.
Each is refused with an error naming the file and the limit, without inflating it into memory."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile

import pytest
from openpyxl import Workbook

from intake import reading
from intake.reading import FileError, read_files

SHEET = "xl/worksheets/sheet1.xml"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def workbook_with_sheet(sheet_xml_parts, *, title: str = "patients") -> bytes:
    """A real workbook (one sheet named `title`) whose sheet XML is replaced by `sheet_xml_parts` (strings,
    written one at a time, so a part repeated a million times is never whole in memory)."""
    book = Workbook()
    book.active.title = title
    book.active.append(["subject_code", "sex"])
    plain = io.BytesIO()
    book.save(plain)
    out = io.BytesIO()
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != SHEET:
                target.writestr(info, source.read(info))
                continue
            sheet = zipfile.ZipInfo(SHEET)
            sheet.compress_type = zipfile.ZIP_DEFLATED
            with target.open(sheet, "w", force_zip64=True) as member:
                for part in sheet_xml_parts:
                    member.write(part.encode())
    return out.getvalue()


def rows_xml(count: int, *, cells: int = 2) -> str:
    row = "<row>" + '<c t="inlineStr"><is><t>x</t></is></c>' * cells + "</row>"
    return row * count


def peak_memory(read) -> tuple[Exception | None, int]:
    """(the exception `read()` raised, peak bytes allocated while it ran)."""
    tracemalloc.start()
    try:
        read()
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return None, peak


@pytest.mark.slow
def test_an_xlsx_whose_sheet_inflates_to_gigabytes_is_refused_before_it_is_opened():
    blank = " " * 1024**2  # whitespace between rows, squeezed a thousand times over
    content = workbook_with_sheet(
        [HEAD, "<sheetData>", rows_xml(2), *([blank] * 2 * 1024), rows_xml(2), "</sheetData></worksheet>"]
    )
    assert len(content) < 5 * 1024**2  # a few megabytes on the wire
    assert sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(content)).infolist()) > 2 * 1024**3

    started = time.monotonic()
    refused, peak = peak_memory(lambda: read_files([("bomb.xlsx", content)]))
    assert isinstance(refused, FileError)
    message = str(refused)
    assert message.startswith("bomb.xlsx: ")
    assert f"{reading.MAX_XLSX_INFLATED_BYTES:,}" in message
    assert peak < 20 * 1024**2 and time.monotonic() - started < 5


def test_a_sheet_declaring_the_whole_grid_is_read_as_the_cells_it_holds():
    """`<dimension ref="A1:XFD1048576"/>` made openpyxl pad every row to 16,384 cells and add a million rows."""
    sheet = (
        HEAD + '<dimension ref="A1:XFD1048576"/><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>subject_code</t></is></c>'
        '<c r="B1" t="inlineStr"><is><t>sex</t></is></c></row>'
        '<row r="2"><c r="A2" t="inlineStr"><is><t>NJ-001</t></is></c>'
        '<c r="B2" t="inlineStr"><is><t>F</t></is></c></row>'
        "</sheetData></worksheet>"
    )
    content = workbook_with_sheet([sheet])
    result: list = []
    refused, peak = peak_memory(lambda: result.extend(read_files([("grid.xlsx", content)])))
    assert refused is None
    [read] = result
    assert read.header == ["subject_code", "sex"]
    assert read.rows == [(2, {"subject_code": "NJ-001", "sex": "F"})]
    assert peak < 20 * 1024**2


def test_a_cell_in_the_last_column_is_refused_naming_the_column_limit():
    sheet = (
        HEAD + "<sheetData>" + rows_xml(1) + '<row><c r="XFD2" t="inlineStr"><is><t>far</t></is></c></row>'
        "</sheetData></worksheet>"
    )
    with pytest.raises(FileError) as refused:
        read_files([("wide.xlsx", workbook_with_sheet([sheet]))])
    message = str(refused.value)
    assert message.startswith("wide.xlsx:patients: ")
    assert "row 2" in message and f"{reading.MAX_COLUMNS:,} columns" in message


@pytest.mark.slow
def test_a_row_a_million_rows_down_is_refused_naming_the_row_limit():
    sheet = (
        HEAD + "<sheetData>" + rows_xml(1) + '<row r="1048576"><c r="A1048576"><v>1</v></c></row>'
        "</sheetData></worksheet>"
    )
    refused, peak = peak_memory(lambda: read_files([("deep.xlsx", workbook_with_sheet([sheet]))]))
    assert isinstance(refused, FileError)
    assert str(refused).startswith("deep.xlsx:patients: ")
    assert f"{reading.MAX_ROWS:,} rows" in str(refused)
    assert peak < 200 * 1024**2


def test_more_rows_than_the_limit_are_refused(monkeypatch):
    monkeypatch.setattr(reading, "MAX_ROWS", 1_000)
    content = workbook_with_sheet([HEAD, "<sheetData>", rows_xml(1_001), "</sheetData></worksheet>"])
    with pytest.raises(FileError, match=r"^many\.xlsx:patients: .*1,000 rows"):
        read_files([("many.xlsx", content)])
    csv = ("subject_code,sex\n" + "NJ,F\n" * 1_000).encode()
    with pytest.raises(FileError, match=r"^patients\.csv: .*1,000 rows"):
        read_files([("patients.csv", csv)])
    assert len(read_files([("patients.csv", csv[: -len(b"NJ,F\n")])])[0].rows) == 999


def test_a_corrupt_sheet_stream_is_a_file_error_not_a_crash():
    dimension = '<dimension ref="A1:B50000"/>'  # openpyxl reads the sheet's start as it opens the workbook
    sheet = [HEAD, dimension, "<sheetData>", rows_xml(50_000), "</sheetData></worksheet>"]
    content = bytearray(workbook_with_sheet(sheet))
    # Damage the end of the compressed sheet: openpyxl opens the workbook and fails while reading rows.
    with zipfile.ZipFile(io.BytesIO(bytes(content))) as archive:
        info = archive.getinfo(SHEET)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 200
    content[start : start + 64] = bytes(64)
    with pytest.raises(FileError, match=r"^broken\.xlsx: "):
        read_files([("broken.xlsx", bytes(content))])


def test_a_csv_with_one_huge_line_is_refused_without_splitting_it():
    content = b"subject_code,sex\n" + b"x," * (8 * 1024**2) + b"\n"
    refused, peak = peak_memory(lambda: read_files([("patients.csv", content)]))
    assert isinstance(refused, FileError)
    message = str(refused)
    assert message.startswith("patients.csv: ") and "line 2" in message
    assert f"{reading.MAX_LINE_CHARS:,} characters" in message
    assert peak < 3 * len(content)  # the decoded text, not sixteen million cells


def test_a_csv_field_longer_than_the_reader_allows_is_a_file_error():
    content = b'subject_code,sex\n"' + b"x\n" * 100_000 + b'",F\n'  # one quoted field over many short lines
    with pytest.raises(FileError) as refused:
        read_files([("patients.csv", content)])
    assert str(refused.value).startswith("patients.csv: ") and "row 2" in str(refused.value)


def test_a_csv_with_too_many_columns_is_refused_naming_the_limit():
    content = ("subject_code,sex," + ",".join(f"c{i}" for i in range(5_000)) + "\nNJ-001,F\n").encode()
    with pytest.raises(FileError) as refused:
        read_files([("patients.csv", content)])
    message = str(refused.value)
    assert message.startswith("patients.csv: ") and "row 1" in message
    assert f"{reading.MAX_COLUMNS:,} columns" in message


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_a_csv_holding_a_nul_character_is_refused_naming_its_line(encoding):
    content = "subject_code,refractory_notes\nNJ-001,ok\nNJ-002,a\x00b\n".encode(encoding)

    with pytest.raises(FileError, match=r"^patients.csv: line 3 holds a NUL character"):
        read_files([("patients.csv", content)])
