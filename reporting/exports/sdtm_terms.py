"""What the SDTM datasets say in CDISC terms: the controlled terms the registry's result codes, units,
specimens and dose units map to (CDISC CT, SDTM package), the variable labels and core designations of
SDTMIG 3.4, the epoch a date falls in, and the ASCII transliteration every character value goes through
(SAS V5 transport files hold ASCII only).

The registry's own codes stay in the tidy export (`tidy/results.csv` keeps the result code and the unit as
entered; `tidy/adverse_events.csv` keeps the verbatim term); the data dictionary and define.xml name the
mapping."""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass

CT_VERSION = "2024-03-29"
SDTMIG_VERSION = "3.4"


@dataclass(frozen=True)
class LabTest:
    testcd: str
    test: str
    specimen: str
    category: str
    standard: bool = True  # False: a sponsor-defined term (no CDISC CT term exists)


# Registry result code -> LBTESTCD, LBTEST (CDISC CT "Laboratory Test Code/Name"), LBSPEC, LBCAT.
LAB_TESTS: dict[str, LabTest] = {
    "PROT24H": LabTest("PROTEXR", "Protein Excretion Rate", "URINE", "URINALYSIS"),
    "UPCR": LabTest("PROTCRT", "Protein/Creatinine", "URINE", "URINALYSIS"),
    "ALB": LabTest("ALB", "Albumin", "SERUM", "CHEMISTRY"),
    "CREAT": LabTest("CREAT", "Creatinine", "SERUM", "CHEMISTRY"),
    "EGFR": LabTest("GFRE", "Glomerular Filtration Rate, Estimated", "SERUM", "CHEMISTRY"),
    "BUN": LabTest("UREAN", "Urea Nitrogen", "SERUM", "CHEMISTRY"),
    "C3": LabTest("C3", "Complement C3", "SERUM", "IMMUNOLOGY"),
    "C4": LabTest("C4", "Complement C4", "SERUM", "IMMUNOLOGY"),
    "WBC": LabTest("WBC", "Leukocytes", "BLOOD", "HEMATOLOGY"),
    "PLT": LabTest("PLAT", "Platelets", "BLOOD", "HEMATOLOGY"),
    "HGB": LabTest("HGB", "Hemoglobin", "BLOOD", "HEMATOLOGY"),
    "TREG": LabTest("TREG", "Regulatory T Cells/CD4 T Cells", "BLOOD", "IMMUNOLOGY", standard=False),
}


@dataclass(frozen=True)
class ImmunogenicityTest:
    testcd: str
    test: str
    binding_agent: str
    specimen: str


# Registry result code -> ISTESTCD, ISTEST (CDISC CT C120525/C120526), ISBDAGNT (C181169), ISSPEC. CT
# 2024-03-29 has an LB test for anti-dsDNA IgG only (DDNAIGAB) and none for antinuclear antibodies; it
# represents an autoantibody of unstated isotype in IS as ATAB "Autoantibody" with the antigen it binds as
# the binding agent (docs/exports.md).
IMMUNOGENICITY_TESTS: dict[str, ImmunogenicityTest] = {
    "ADSDNA": ImmunogenicityTest("ATAB", "Autoantibody", "DOUBLE STRANDED DNA", "SERUM"),
    "ANA": ImmunogenicityTest("ATAB", "Autoantibody", "NUCLEAR AUTOANTIGENS", "SERUM"),
}

# Registry unit (catalogue unit or unit as entered) -> CDISC CT UNIT submission value (CT 2024-03-29; where
# the registry's unit is only a synonym there, the term's submission value: the same quantity, so the value
# is unchanged).
UNITS: dict[str, str] = {
    "g/24h": "g/day",
    "mg/24h": "mg/day",
    "g/g": "g/g",
    "mg/mmol": "g/mol",
    "g/L": "g/L",
    "g/dL": "g/dL",
    "umol/L": "umol/L",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "mL/min/1.73m2": "mL/min/1.73 m2",
    "IU/mL": "IU/mL",
    "1:N": "titer",
    "10^9/L": "10^9/L",
    "/uL": "10^6/L",
    "% of CD4+": "%",
}

# EXDOSU: the dose in millions of cells per kilogram of body weight.
EX_DOSE_UNIT = "10^6/kg"
EX_DOSE_SCALE = 1_000_000

EPOCHS = ("SCREENING", "TREATMENT", "FOLLOW-UP")


def ct_unit(unit: str, *, field: str) -> str:
    """The CT unit for a registry unit; a unit without one is an error naming the field and the unit."""
    try:
        return UNITS[unit]
    except KeyError:
        raise ValueError(
            f"{field}: the unit {unit!r} has no CDISC CT term in reporting/exports/sdtm_terms.py"
        ) from None


def epoch(on: dt.date | None, first: dt.date | None, last: dt.date | None) -> str:
    """SCREENING before the first infusion's date, TREATMENT from the first to the last infusion's date,
    FOLLOW-UP after it; blank without a date. A patient never infused is in SCREENING."""
    if on is None:
        return ""
    if first is None or on < first:
        return "SCREENING"
    if on <= (last or first):
        return "TREATMENT"
    return "FOLLOW-UP"


# ASCII --------------------------------------------------------------------------------------------------

_ASCII = {
    "°": " deg ",
    "µ": "u",
    "μ": "u",
    "×": "x",
    "–": "-",
    "—": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "≥": ">=",
    "≤": "<=",
    "²": "2",
    "³": "3",
    "\u00a0": " ",
}


def ascii_text(value: str) -> str:
    """`value` in printable ASCII: known symbols spelled out ("°" -> "deg"), accents dropped, and any other
    character written as <U+XXXX> so that nothing is lost without a trace; runs of spaces collapse."""
    if value.isascii():
        return value
    out = []
    for char in value:
        if char.isascii():
            out.append(char)
        elif char in _ASCII:
            out.append(_ASCII[char])
        else:
            base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(base if base else f"<U+{ord(char):04X}>")
    return " ".join("".join(out).split())


# Variable labels and core (SDTMIG 3.4) ------------------------------------------------------------------

_COMMON = {
    "STUDYID": ("Study Identifier", "Req"),
    "DOMAIN": ("Domain Abbreviation", "Req"),
    "USUBJID": ("Unique Subject Identifier", "Req"),
    "VISITNUM": ("Visit Number", "Exp"),
    "VISIT": ("Visit Name", "Perm"),
    "EPOCH": ("Epoch", "Perm"),
}

_DOMAIN_LABELS = {
    "DM": {
        "SUBJID": ("Subject Identifier for the Study", "Req"),
        "RFSTDTC": ("Subject Reference Start Date/Time", "Exp"),
        "RFENDTC": ("Subject Reference End Date/Time", "Exp"),
        "RFXSTDTC": ("Date/Time of First Study Treatment", "Exp"),
        "RFXENDTC": ("Date/Time of Last Study Treatment", "Exp"),
        "RFICDTC": ("Date/Time of Informed Consent", "Exp"),
        "RFPENDTC": ("Date/Time of End of Participation", "Exp"),
        "DTHDTC": ("Date/Time of Death", "Exp"),
        "DTHFL": ("Subject Death Flag", "Exp"),
        "SITEID": ("Study Site Identifier", "Req"),
        "BRTHDTC": ("Date/Time of Birth", "Perm"),
        "AGE": ("Age", "Exp"),
        "AGEU": ("Age Units", "Exp"),
        "SEX": ("Sex", "Req"),
        "ARMCD": ("Planned Arm Code", "Exp"),
        "ARM": ("Description of Planned Arm", "Exp"),
        "ACTARMCD": ("Actual Arm Code", "Exp"),
        "ACTARM": ("Description of Actual Arm", "Exp"),
        "ARMNRS": ("Reason Arm and/or Actual Arm is Null", "Exp"),
        "ACTARMUD": ("Description of Unplanned Actual Arm", "Exp"),
        "COUNTRY": ("Country", "Req"),
    },
    "EX": {
        "EXSEQ": ("Sequence Number", "Req"),
        "EXTRT": ("Name of Treatment", "Req"),
        "EXDOSE": ("Dose", "Exp"),
        "EXDOSU": ("Dose Units", "Exp"),
        "EXDOSFRM": ("Dose Form", "Exp"),
        "EXDOSFRQ": ("Dosing Frequency per Interval", "Perm"),
        "EXROUTE": ("Route of Administration", "Perm"),
        "EXLOT": ("Lot Number", "Perm"),
        "EXSTDTC": ("Start Date/Time of Treatment", "Exp"),
        "EXENDTC": ("End Date/Time of Treatment", "Exp"),
        "EXSTDY": ("Study Day of Start of Treatment", "Perm"),
        "EXENDY": ("Study Day of End of Treatment", "Perm"),
    },
    "CM": {
        "CMSEQ": ("Sequence Number", "Req"),
        "CMTRT": ("Reported Name of Drug, Med, or Therapy", "Req"),
        "CMDECOD": ("Standardized Medication Name", "Perm"),
        "CMDOSE": ("Dose per Administration", "Perm"),
        "CMDOSU": ("Dose Units", "Perm"),
        "CMDOSFRQ": ("Dosing Frequency per Interval", "Perm"),
        "CMSTDTC": ("Start Date/Time of Medication", "Perm"),
        "CMENDTC": ("End Date/Time of Medication", "Perm"),
        "CMSTDY": ("Study Day of Start of Medication", "Perm"),
        "CMENDY": ("Study Day of End of Medication", "Perm"),
        "CMENRTPT": ("End Relative to Reference Time Point", "Perm"),
        "CMENTPT": ("End Reference Time Point", "Perm"),
    },
    "LB": {
        "LBSEQ": ("Sequence Number", "Req"),
        "LBTESTCD": ("Lab Test or Examination Short Name.", "Req"),
        "LBTEST": ("Lab Test or Examination Name", "Req"),
        "LBCAT": ("Category for Lab Test", "Exp"),
        "LBORRES": ("Result or Finding in Original Units", "Exp"),
        "LBORRESU": ("Original Units", "Exp"),
        "LBSTRESC": ("Character Result/Finding in Std Format", "Exp"),
        "LBSTRESN": ("Numeric Result/Finding in Standard Units", "Exp"),
        "LBSTRESU": ("Standard Units", "Exp"),
        "LBLOINC": ("LOINC Code", "Perm"),
        "LBSPEC": ("Specimen Type", "Perm"),
        "LBLOBXFL": ("Last Observation Before Exposure Flag", "Exp"),
        "LBBLFL": ("Baseline Flag", "Perm"),
        "LBDRVFL": ("Derived Flag", "Perm"),
        "LBDTC": ("Date/Time of Specimen Collection", "Exp"),
        "LBDY": ("Study Day of Specimen Collection", "Perm"),
    },
    "IS": {
        "ISSEQ": ("Sequence Number", "Req"),
        "ISTESTCD": ("Immunogenicity Test/Exam Short Name", "Req"),
        "ISTEST": ("Immunogenicity Test or Examination Name", "Req"),
        "ISBDAGNT": ("Binding Agent", "Perm"),
        "ISORRES": ("Results or Findings in Original Units", "Exp"),
        "ISORRESU": ("Original Units", "Exp"),
        "ISSTRESC": ("Character Result/Finding in Std Format", "Exp"),
        "ISSTRESN": ("Numeric Results/Findings in Std. Units", "Exp"),
        "ISSTRESU": ("Standard Units", "Exp"),
        "ISSPEC": ("Specimen Type", "Perm"),
        "ISLOBXFL": ("Last Observation Before Exposure Flag", "Perm"),
        "ISBLFL": ("Baseline Flag", "Perm"),
        "ISDTC": ("Date/Time of Collection", "Exp"),
        "ISDY": ("Study Day of Visit/Collection/Exam", "Perm"),
    },
    "QS": {
        "QSSEQ": ("Sequence Number", "Req"),
        "QSTESTCD": ("Question Short Name", "Req"),
        "QSTEST": ("Question Name", "Req"),
        "QSCAT": ("Category of Question", "Req"),
        "QSORRES": ("Finding in Original Units", "Exp"),
        "QSSTRESC": ("Character Result/Finding in Std Format", "Exp"),
        "QSSTRESN": ("Numeric Finding in Standard Units", "Perm"),
        "QSLOBXFL": ("Last Observation Before Exposure Flag", "Exp"),
        "QSBLFL": ("Baseline Flag", "Perm"),
        "QSDRVFL": ("Derived Flag", "Perm"),
        "QSDTC": ("Date/Time of Finding", "Exp"),
        "QSDY": ("Study Day of Finding", "Perm"),
    },
    "AE": {
        "AESEQ": ("Sequence Number", "Req"),
        "AETERM": ("Reported Term for the Adverse Event", "Req"),
        "AELLT": ("Lowest Level Term", "Exp"),
        "AELLTCD": ("Lowest Level Term Code", "Exp"),
        "AEDECOD": ("Dictionary-Derived Term", "Req"),
        "AEPTCD": ("Preferred Term Code", "Exp"),
        "AEHLT": ("High Level Term", "Exp"),
        "AEHLTCD": ("High Level Term Code", "Exp"),
        "AEHLGT": ("High Level Group Term", "Exp"),
        "AEHLGTCD": ("High Level Group Term Code", "Exp"),
        "AECAT": ("Category for Adverse Event", "Perm"),
        "AEBODSYS": ("Body System or Organ Class", "Exp"),
        "AEBDSYCD": ("Body System or Organ Class Code", "Exp"),
        "AESOC": ("Primary System Organ Class", "Exp"),
        "AESOCCD": ("Primary System Organ Class Code", "Exp"),
        "AESEV": ("Severity/Intensity", "Perm"),
        "AESER": ("Serious Event", "Exp"),
        "AEACN": ("Action Taken with Study Treatment", "Exp"),
        "AEACNOTH": ("Other Action Taken", "Perm"),
        "AEREL": ("Causality", "Exp"),
        "AEOUT": ("Outcome of Adverse Event", "Perm"),
        "AESCONG": ("Congenital Anomaly or Birth Defect", "Perm"),
        "AESDISAB": ("Persist or Signif Disability/Incapacity", "Perm"),
        "AESDTH": ("Results in Death", "Perm"),
        "AESHOSP": ("Requires or Prolongs Hospitalization", "Perm"),
        "AESLIFE": ("Is Life Threatening", "Perm"),
        "AESMIE": ("Other Medically Important Serious Event", "Perm"),
        "AETOXGR": ("Standard Toxicity Grade", "Perm"),
        "AESTDTC": ("Start Date/Time of Adverse Event", "Exp"),
        "AEENDTC": ("End Date/Time of Adverse Event", "Exp"),
        "AESTDY": ("Study Day of Start of Adverse Event", "Perm"),
        "AEENDY": ("Study Day of End of Adverse Event", "Perm"),
    },
    "CO": {
        "RDOMAIN": ("Related Domain Abbreviation", "Perm"),
        "COSEQ": ("Sequence Number", "Req"),
        "IDVAR": ("Identifying Variable", "Perm"),
        "IDVARVAL": ("Identifying Variable Value", "Perm"),
        "COREF": ("Comment Reference", "Perm"),
        "COVAL": ("Comment", "Req"),
        "COVAL1": ("Comment", "Perm"),
        "COVAL2": ("Comment", "Perm"),
        "CODTC": ("Date/Time of Comment", "Perm"),
        "CODY": ("Study Day of Comment", "Perm"),
    },
}

DATASET_LABELS = {
    "DM": "Demographics",
    "EX": "Exposure",
    "CM": "Concomitant/Prior Medications",
    "LB": "Laboratory Test Results",
    "IS": "Immunogenicity Specimen Assessments",
    "QS": "Questionnaires",
    "AE": "Adverse Events",
    "CO": "Comments",
}
DATASET_CLASS = {
    "DM": "SPECIAL PURPOSE",
    "EX": "INTERVENTIONS",
    "CM": "INTERVENTIONS",
    "LB": "FINDINGS",
    "IS": "FINDINGS",
    "QS": "FINDINGS",
    "AE": "EVENTS",
    "CO": "SPECIAL PURPOSE",
}
DATASET_STRUCTURE = {
    "DM": "One record per subject",
    "EX": "One record per constant dosing interval per subject",
    "CM": "One record per recorded intervention occurrence per subject",
    "LB": "One record per lab test per time point per visit per subject",
    "IS": "One record per test per visit per subject",
    "QS": "One record per questionnaire per question per time point per visit per subject",
    "AE": "One record per adverse event per subject",
    "CO": "One record per comment per subject",
}


def variable_meta(domain: str, name: str) -> tuple[str, str]:
    """(label, core) of a variable of `domain`; an unknown variable is an error naming it."""
    meta = _DOMAIN_LABELS[domain].get(name) or _COMMON.get(name)
    if meta is None:
        raise KeyError(f"{domain}.{name}: no SDTMIG label in reporting/exports/sdtm_terms.py")
    return meta
