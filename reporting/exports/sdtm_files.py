"""The SDTM datasets as a sponsor or regulator takes them, beside their CSV files: a SAS V5 transport file
(`sdtm/dm.xpt`, written with pyreadstat) and a CDISC Dataset-JSON v1.1 file (`sdtm/dm.json`) per dataset,
both with the SDTMIG variable labels, and `sdtm/define.xml` (Define-XML v2.1) describing every dataset,
variable and codelist. Each is written into the zip through the same hashing member as the CSV files, so the
manifest lists its SHA-256, bytes and rows."""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from decimal import Decimal

import pandas as pd
import pyreadstat

from reporting.exports.common import Column, Context, Table, _Member
from reporting.exports.sdtm_terms import (
    CT_VERSION,
    DATASET_CLASS,
    DATASET_LABELS,
    DATASET_STRUCTURE,
    EPOCHS,
    EX_DOSE_UNIT,
    IMMUNOGENICITY_TESTS,
    LAB_TESTS,
    SDTMIG_VERSION,
    UNITS,
    variable_meta,
)

XPT_MAX_CHARS = 200  # SAS V5 transport: a character variable holds at most 200 bytes
DATASET_JSON_VERSION = "1.1.0"
DEFINE_PATH = "sdtm/define.xml"
NUMERIC = {"integer", "decimal"}
# The keys of each dataset (define.xml KeySequence; Dataset-JSON keySequence).
KEYS = {
    "DM": ["STUDYID", "USUBJID"],
    "EX": ["STUDYID", "USUBJID", "EXTRT", "EXSTDTC"],
    "CM": ["STUDYID", "USUBJID", "CMTRT", "CMSTDTC"],
    "LB": ["STUDYID", "USUBJID", "LBTESTCD", "VISITNUM", "LBDTC"],
    "IS": ["STUDYID", "USUBJID", "ISTESTCD", "ISBDAGNT", "VISITNUM", "ISDTC"],
    "QS": ["STUDYID", "USUBJID", "QSCAT", "QSTESTCD", "VISITNUM", "QSDTC"],
    "AE": ["STUDYID", "USUBJID", "AETERM", "AESTDTC"],
    "CO": ["STUDYID", "USUBJID", "COSEQ"],
}


def domain_of(table: Table) -> str:
    return table.name.rsplit("/", 1)[1].split(".")[0].upper()


def _member_name(table: Table, extension: str) -> str:
    return table.name.rsplit(".", 1)[0] + extension


def _number(value) -> float | None:
    if value in ("", None):
        return None
    return float(Decimal(str(value)))


def _check_length(domain: str, col: Column, value: str, row_number: int) -> str:
    if len(value.encode("ascii")) > XPT_MAX_CHARS:
        raise ValueError(
            f"{domain}.{col.name}: row {row_number} holds {len(value)} characters; "
            f"SAS V5 transport allows at most {XPT_MAX_CHARS}"
        )
    return value


# SAS V5 transport ---------------------------------------------------------------------------------------


def _frame(table: Table, rows: list[tuple]) -> pd.DataFrame:
    domain = domain_of(table)
    data = {}
    for i, col in enumerate(table.columns):
        if col.kind in NUMERIC:
            data[col.name] = pd.Series([_number(r[i]) for r in rows], dtype="float64")
        else:
            values = [_check_length(domain, col, "" if r[i] is None else str(r[i]), n) for n, r in enumerate(rows, 1)]
            data[col.name] = pd.Series(values, dtype="object")
    return pd.DataFrame(data, columns=[c.name for c in table.columns])


def write_xpt(zf: zipfile.ZipFile, table: Table, rows: list[tuple]) -> dict:
    domain = domain_of(table)
    labels = [variable_meta(domain, col.name)[0] for col in table.columns]
    handle, path = tempfile.mkstemp(suffix=".xpt")
    os.close(handle)
    try:
        pyreadstat.write_xport(
            _frame(table, rows),
            path,
            file_label=DATASET_LABELS[domain],
            column_labels=labels,
            table_name=domain,
            file_format_version=5,
        )
        with _Member(_member_name(table, ".xpt"), zf) as member, open(path, "rb") as source:
            member.text.flush()
            member.text.buffer.write(source.read())
            member.rows = len(rows)
    finally:
        os.unlink(path)
    return member.record


# Dataset-JSON -------------------------------------------------------------------------------------------


def _json_type(col: Column) -> str:
    return {"integer": "integer", "decimal": "decimal", "date": "date", "datetime": "datetime"}.get(col.kind, "string")


def _json_value(col: Column, value):
    if value in ("", None):
        return None
    if col.kind == "integer":
        return int(value)
    return str(value)  # Dataset-JSON 1.1 carries decimals as strings


def write_dataset_json(zf: zipfile.ZipFile, table: Table, rows: list[tuple], ctx: Context) -> dict:
    domain = domain_of(table)
    keys = KEYS[domain]
    columns = []
    for col in table.columns:
        entry = {
            "itemOID": f"IT.{domain}.{col.name}",
            "name": col.name,
            "label": variable_meta(domain, col.name)[0],
            "dataType": _json_type(col),
        }
        if col.name in keys:
            entry["keySequence"] = keys.index(col.name) + 1
        columns.append(entry)
    document = {
        "datasetJSONCreationDateTime": ctx.generated_at.replace(microsecond=0).isoformat(),
        "datasetJSONVersion": DATASET_JSON_VERSION,
        "fileOID": f"{ctx.study.code}.{domain}",
        "originator": "MSCT registry",
        "sourceSystem": {"name": "msct-registry", "version": "1.0"},
        "studyOID": ctx.study.code,
        "metaDataVersionOID": f"MDV.{ctx.study.code}",
        "metaDataRef": "define.xml",
        "itemGroupOID": f"IG.{domain}",
        "records": len(rows),
        "name": domain,
        "label": DATASET_LABELS[domain],
        "columns": columns,
        "rows": [[_json_value(col, r[i]) for i, col in enumerate(table.columns)] for r in rows],
    }
    with _Member(_member_name(table, ".json"), zf) as member:
        member.text.write(json.dumps(document, ensure_ascii=True))
        member.rows = len(rows)
    return member.record


# define.xml ---------------------------------------------------------------------------------------------

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"
XLINK = "http://www.w3.org/1999/xlink"
ET.register_namespace("", ODM)
ET.register_namespace("def", DEF)
ET.register_namespace("xlink", XLINK)


def _q(name: str, ns: str = ODM) -> str:
    return f"{{{ns}}}{name}"


def _described(parent: ET.Element, text: str) -> None:
    description = ET.SubElement(parent, _q("Description"))
    ET.SubElement(description, _q("TranslatedText"), {"xml:lang": "en"}).text = text


# Codelists the define.xml names: (OID, name, variables using it, [(coded value, decode)]).
CODELISTS = [
    ("CL.LBTESTCD", "Laboratory Test Code", ["LB.LBTESTCD"], [(t.testcd, t.test) for t in LAB_TESTS.values()]),
    ("CL.LBTEST", "Laboratory Test Name", ["LB.LBTEST"], [(t.test, t.test) for t in LAB_TESTS.values()]),
    (
        "CL.ISTESTCD",
        "Immunogenicity Specimen Assessments Test Code",
        ["IS.ISTESTCD"],
        sorted({(t.testcd, t.test) for t in IMMUNOGENICITY_TESTS.values()}),
    ),
    (
        "CL.ISTEST",
        "Immunogenicity Specimen Assessments Test Name",
        ["IS.ISTEST"],
        sorted({(t.test, t.test) for t in IMMUNOGENICITY_TESTS.values()}),
    ),
    (
        "CL.BDAGNT",
        "Binding Agent",
        ["IS.ISBDAGNT"],
        [(t.binding_agent, t.binding_agent) for t in IMMUNOGENICITY_TESTS.values()],
    ),
    (
        "CL.UNIT",
        "Unit",
        ["LB.LBORRESU", "LB.LBSTRESU", "IS.ISORRESU", "IS.ISSTRESU", "EX.EXDOSU"],
        [(u, u) for u in sorted({*UNITS.values(), EX_DOSE_UNIT})],
    ),
    ("CL.SPECTYPE", "Specimen Type", ["LB.LBSPEC", "IS.ISSPEC"], [(s, s) for s in ("BLOOD", "SERUM", "URINE")]),
    ("CL.EPOCH", "Epoch", [f"{d}.EPOCH" for d in ("EX", "CM", "LB", "IS", "QS", "AE")], [(e, e) for e in EPOCHS]),
    (
        "CL.NY",
        "No Yes Response",
        [f"AE.{v}" for v in ("AESER", "AESCONG", "AESDISAB", "AESDTH", "AESHOSP", "AESLIFE", "AESMIE")],
        [("N", "No"), ("Y", "Yes")],
    ),
    ("CL.SEX", "Sex", ["DM.SEX"], [("F", "Female"), ("M", "Male"), ("U", "Unknown")]),
    ("CL.AGEU", "Age Unit", ["DM.AGEU"], [("YEARS", "Years")]),
    ("CL.ROUTE", "Route of Administration", ["EX.EXROUTE"], [("INTRAVENOUS", "Intravenous")]),
]


# Sponsor-defined terms (no CDISC CT term): marked as extended values of their codelist.
SPONSOR_TERMS = {v for t in LAB_TESTS.values() if not t.standard for v in (t.testcd, t.test)}


def _define_type(col: Column) -> str:
    return {"integer": "integer", "decimal": "float", "date": "date", "datetime": "datetime"}.get(col.kind, "text")


def build_define(ctx: Context, tables: list[Table]) -> bytes:
    root = ET.Element(
        _q("ODM"),
        {
            "FileType": "Snapshot",
            "FileOID": f"DEFINE.{ctx.study.code}",
            "ODMVersion": "1.3.2",
            "CreationDateTime": ctx.generated_at.replace(microsecond=0, tzinfo=None).isoformat(),
            "Originator": "MSCT registry",
            _q("Context", DEF): "Other",
        },
    )
    study = ET.SubElement(root, _q("Study"), {"OID": ctx.study.code})
    glob = ET.SubElement(study, _q("GlobalVariables"))
    ET.SubElement(glob, _q("StudyName")).text = ctx.study.code
    ET.SubElement(glob, _q("StudyDescription")).text = ctx.study.title
    ET.SubElement(glob, _q("ProtocolName")).text = ctx.study.registration_id or ctx.study.code
    mdv = ET.SubElement(
        study,
        _q("MetaDataVersion"),
        {"OID": f"MDV.{ctx.study.code}", "Name": "SDTM", _q("DefineVersion", DEF): "2.1.0"},
    )
    standards = ET.SubElement(mdv, _q("Standards", DEF))
    ET.SubElement(
        standards,
        _q("Standard", DEF),
        {"OID": "STD.SDTMIG", "Name": "SDTMIG", "Type": "IG", "Version": SDTMIG_VERSION, "Status": "Final"},
    )
    ET.SubElement(
        standards,
        _q("Standard", DEF),
        {
            "OID": "STD.CT",
            "Name": "CDISC/NCI",
            "Type": "CT",
            "PublishingSet": "SDTM",
            "Version": CT_VERSION,
            "Status": "Final",
        },
    )
    item_defs = [item for table in tables for item in _item_group(mdv, table)]
    _item_defs(mdv, item_defs)
    _codelists(mdv)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _item_group(mdv: ET.Element, table: Table) -> list[tuple[str, Column, str]]:
    """The ItemGroupDef of one dataset, its ItemRefs in file order; returns the variables for the ItemDefs."""
    domain = domain_of(table)
    group = ET.SubElement(
        mdv,
        _q("ItemGroupDef"),
        {
            "OID": f"IG.{domain}",
            "Name": domain,
            "Repeating": "No" if domain == "DM" else "Yes",
            "IsReferenceData": "No",
            "SASDatasetName": domain,
            "Domain": domain,
            "Purpose": "Tabulation",
            _q("Structure", DEF): DATASET_STRUCTURE[domain],
            _q("StandardOID", DEF): "STD.SDTMIG",
            _q("ArchiveLocationID", DEF): f"LF.{domain}",
        },
    )
    _described(group, DATASET_LABELS[domain])
    items = []
    for order, col in enumerate(table.columns, start=1):
        label, core = variable_meta(domain, col.name)
        ref = {"ItemOID": f"IT.{domain}.{col.name}", "OrderNumber": str(order), "Mandatory": _yes(core == "Req")}
        if col.name in KEYS[domain]:
            ref["KeySequence"] = str(KEYS[domain].index(col.name) + 1)
        ET.SubElement(group, _q("ItemRef"), ref)
        items.append((domain, col, label))
    ET.SubElement(group, _q("Class", DEF), {"Name": DATASET_CLASS[domain]})
    leaf = ET.SubElement(group, _q("leaf", DEF), {"ID": f"LF.{domain}", _q("href", XLINK): f"{domain.lower()}.xpt"})
    ET.SubElement(leaf, _q("title", DEF)).text = f"{domain.lower()}.xpt"
    return items


def _item_defs(mdv: ET.Element, items: list[tuple[str, Column, str]]) -> None:
    codelist_of = {var: oid for oid, _, variables, _ in CODELISTS for var in variables}
    for domain, col, label in items:
        attrs = {"OID": f"IT.{domain}.{col.name}", "Name": col.name, "DataType": _define_type(col)}
        attrs["SASFieldName"] = col.name
        if attrs["DataType"] in {"text", "integer", "float"}:
            attrs["Length"] = "200" if attrs["DataType"] == "text" else "8"
        item = ET.SubElement(mdv, _q("ItemDef"), attrs)
        _described(item, label)
        oid = codelist_of.get(f"{domain}.{col.name}")
        if oid:
            ET.SubElement(item, _q("CodeListRef"), {"CodeListOID": oid})


def _codelists(mdv: ET.Element) -> None:
    for oid, name, _, terms in CODELISTS:
        codelist = ET.SubElement(
            mdv, _q("CodeList"), {"OID": oid, "Name": name, "DataType": "text", _q("StandardOID", DEF): "STD.CT"}
        )
        for value, decode in terms:
            attributes = {"CodedValue": value}
            if value in SPONSOR_TERMS:
                attributes[_q("ExtendedValue", DEF)] = "Yes"  # a sponsor's extension of an extensible codelist
            term = ET.SubElement(codelist, _q("CodeListItem"), attributes)
            ET.SubElement(ET.SubElement(term, _q("Decode")), _q("TranslatedText"), {"xml:lang": "en"}).text = decode


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def write_define(zf: zipfile.ZipFile, ctx: Context, tables: list[Table]) -> dict:
    with _Member(DEFINE_PATH, zf) as member:
        member.text.write(build_define(ctx, tables).decode("utf-8"))
        member.rows = sum(len(t.columns) for t in tables)
    return member.record


def write_sdtm_files(zf: zipfile.ZipFile, table: Table, rows: list[tuple], ctx: Context) -> list[dict]:
    """The XPT and Dataset-JSON members of one SDTM dataset whose rows have been written to its CSV."""
    return [write_xpt(zf, table, rows), write_dataset_json(zf, table, rows, ctx)]
