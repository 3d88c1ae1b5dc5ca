"""Reading a MedDRA release from its standard ASCII distribution (the `MedAscii` folder): '$'-separated files,
one record a line, each line ending with '$'. Only the columns the registry uses are read; the others (WHO-ART,
HARTS, COSTART, ICD, J-ART codes) are ignored. The registry ships no MedDRA: a centre loads its own release
(`load_meddra`, followup/services/coding.py).

Columns, as the distribution lays them out:

- llt.asc: llt_code, llt_name, pt_code, 6 legacy codes, llt_currency (Y/N), llt_jart_code
- pt.asc: pt_code, pt_name, null field, pt_soc_code (primary SOC), legacy codes
- hlt.asc, hlgt.asc: code, name, legacy codes
- soc.asc: soc_code, soc_name, soc_abbrev, legacy codes
- hlt_pt.asc: hlt_code, pt_code; hlgt_hlt.asc: hlgt_code, hlt_code; soc_hlgt.asc: soc_code, hlgt_code
- mdhier.asc: pt_code, hlt_code, hlgt_code, soc_code, pt_name, hlt_name, hlgt_name, soc_name, soc_abbrev,
  null field, pt_soc_code, primary_soc_fg (Y on the PT's primary path)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.utils.translation import gettext

MEDDRA_FILES = (
    "llt.asc",
    "pt.asc",
    "hlt.asc",
    "hlgt.asc",
    "soc.asc",
    "hlt_pt.asc",
    "hlgt_hlt.asc",
    "soc_hlgt.asc",
    "mdhier.asc",
)
# The fewest columns each file must have (its trailing '$' aside).
MIN_COLUMNS = {
    "llt.asc": 10,
    "pt.asc": 4,
    "hlt.asc": 2,
    "hlgt.asc": 2,
    "soc.asc": 3,
    "hlt_pt.asc": 2,
    "hlgt_hlt.asc": 2,
    "soc_hlgt.asc": 2,
    "mdhier.asc": 12,
}


@dataclass(frozen=True)
class LowestLevelTerm:
    llt_code: int
    llt_name: str
    current: bool
    pt_code: int
    pt_name: str
    hlt_code: int
    hlt_name: str
    hlgt_code: int
    hlgt_name: str
    soc_code: int
    soc_name: str


def _error(name: str, line: int, rule: str) -> ValidationError:
    return ValidationError(
        {"directory": gettext("%(file)s, line %(line)s: %(rule)s") % {"file": name, "line": line, "rule": rule}}
    )


def _rows(directory: Path, name: str, encoding: str) -> list[tuple[int, list[str]]]:
    path = directory / name
    if not path.is_file():
        raise ValidationError(
            {
                "directory": gettext("%(dir)s has no %(file)s: give the MedAscii folder of the release.")
                % {"dir": directory, "file": name}
            }
        )
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            {
                "encoding": gettext("%(file)s is not %(encoding)s text (byte %(position)s); give its encoding.")
                % {"file": name, "encoding": encoding, "position": exc.start}
            }
        ) from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("$")
        if fields and fields[-1] == "":
            fields.pop()
        if len(fields) < MIN_COLUMNS[name]:
            raise _error(
                name,
                number,
                gettext("%(found)s '$'-separated columns where the file has at least %(needed)s.")
                % {"found": len(fields), "needed": MIN_COLUMNS[name]},
            )
        rows.append((number, [f.strip() for f in fields]))
    return rows


def _code(name: str, line: int, value: str) -> int:
    if not value.isdigit():
        raise _error(name, line, gettext("%(value)r is not a MedDRA code (digits only).") % {"value": value})
    return int(value)


def read_release(directory: Path, *, encoding: str = "utf-8") -> list[LowestLevelTerm]:
    """Every LLT of the release in `directory` with its PT and the PT's primary path; the files checked
    against each other (every reference resolves, one primary path per PT, the same primary SOC in pt.asc
    and mdhier.asc). A ValidationError names the file, the line and the rule broken."""
    directory = Path(directory)
    rows = {name: _rows(directory, name, encoding) for name in MEDDRA_FILES}
    names = {}
    for level in ("pt", "hlt", "hlgt", "soc"):
        file = f"{level}.asc"
        names[level] = {_code(file, n, f[0]): f[1] for n, f in rows[file]}
    pt_soc = {_code("pt.asc", n, f[0]): _code("pt.asc", n, f[3]) for n, f in rows["pt.asc"]}
    links = {
        file: {(_code(file, n, f[0]), _code(file, n, f[1])) for n, f in rows[file]}
        for file in ("hlt_pt.asc", "hlgt_hlt.asc", "soc_hlgt.asc")
    }
    primary: dict[int, tuple[int, int, int]] = {}
    for n, f in rows["mdhier.asc"]:
        pt, hlt, hlgt, soc = (_code("mdhier.asc", n, value) for value in f[:4])
        for level, code in (("pt", pt), ("hlt", hlt), ("hlgt", hlgt), ("soc", soc)):
            if code not in names[level]:
                raise _error(
                    "mdhier.asc",
                    n,
                    gettext("%(level)s %(code)s is not in %(level)s.asc.") % {"level": level, "code": code},
                )
        for file, pair in (("hlt_pt.asc", (hlt, pt)), ("hlgt_hlt.asc", (hlgt, hlt)), ("soc_hlgt.asc", (soc, hlgt))):
            if pair not in links[file]:
                raise _error(
                    "mdhier.asc",
                    n,
                    gettext("the link %(a)s-%(b)s is not in %(file)s.") % {"a": pair[0], "b": pair[1], "file": file},
                )
        if f[11].upper() != "Y":
            continue
        if pt in primary:
            raise _error("mdhier.asc", n, gettext("PT %(code)s has a second primary path.") % {"code": pt})
        if pt_soc.get(pt) != soc:
            raise _error(
                "mdhier.asc",
                n,
                gettext("the primary SOC of PT %(code)s is %(soc)s here but %(other)s in pt.asc.")
                % {"code": pt, "soc": soc, "other": pt_soc.get(pt)},
            )
        primary[pt] = (hlt, hlgt, soc)
    terms = []
    for n, f in rows["llt.asc"]:
        llt, pt = _code("llt.asc", n, f[0]), _code("llt.asc", n, f[2])
        if pt not in primary:
            raise _error("llt.asc", n, gettext("PT %(code)s has no primary path in mdhier.asc.") % {"code": pt})
        hlt, hlgt, soc = primary[pt]
        terms.append(
            LowestLevelTerm(
                llt_code=llt,
                llt_name=f[1],
                current=f[9].upper() == "Y",
                pt_code=pt,
                pt_name=names["pt"][pt],
                hlt_code=hlt,
                hlt_name=names["hlt"][hlt],
                hlgt_code=hlgt,
                hlgt_name=names["hlgt"][hlgt],
                soc_code=soc,
                soc_name=names["soc"][soc],
            )
        )
    if not terms:
        raise _error("llt.asc", 0, gettext("the release has no lowest level terms."))
    return terms
