"""The results catalogue and the SLEDAI-2K items in code (docs/clinical-rules.md, "Results catalogue" and
"SLEDAI-2K").

Every result is stored in its canonical unit beside the value and unit as entered. A unit not listed for
a code, or a value outside the plausible range once converted, is refused with a message that names the
code, the value, the unit and the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class Analyte:
    code: str
    label: str
    unit: str
    low: Decimal
    high: Decimal
    loinc: str | None = None
    # Accepted unit -> factor that turns a value in that unit into the canonical unit.
    conversions: dict[str, Decimal] = field(default_factory=dict)
    computed: bool = False  # derived by the registry when its inputs are present
    whole: bool = False  # only whole numbers (a score)

    @property
    def units(self) -> list[str]:
        return [self.unit, *self.conversions]

    def factor(self, unit: str) -> Decimal:
        if unit == self.unit:
            return Decimal(1)
        return self.conversions[unit]


def _d(value: str) -> Decimal:
    return Decimal(value)


ANALYTES: dict[str, Analyte] = {
    a.code: a
    for a in [
        Analyte("SLEDAI2K", "SLEDAI-2K total", "points", _d("0"), _d("105"), whole=True),
        Analyte("PGA", "Physician global assessment", "0-3", _d("0"), _d("3")),
        Analyte("PROT24H", "24-h urine protein", "g/24h", _d("0"), _d("30"), "2889-4", {"mg/24h": _d("0.001")}),
        Analyte(
            "UPCR",
            "Urine protein/creatinine ratio",
            "g/g",
            _d("0"),
            _d("30"),
            "2890-2",
            {"mg/mmol": Decimal(1) / _d("113.12")},
        ),
        Analyte("ALB", "Serum albumin", "g/L", _d("5"), _d("60"), "1751-7", {"g/dL": _d("10")}),
        Analyte("CREAT", "Serum creatinine", "umol/L", _d("10"), _d("2000"), "14682-9", {"mg/dL": _d("88.4")}),
        Analyte("EGFR", "eGFR (CKD-EPI 2021)", "mL/min/1.73m2", _d("1"), _d("200"), "98979-8", computed=True),
        Analyte("BUN", "Blood urea nitrogen", "mmol/L", _d("0.5"), _d("80"), "14937-7", {"mg/dL": _d("0.357")}),
        Analyte("C3", "Complement C3", "g/L", _d("0.05"), _d("3"), "4485-9", {"mg/dL": _d("0.01")}),
        Analyte("C4", "Complement C4", "g/L", _d("0.01"), _d("1"), "4498-2", {"mg/dL": _d("0.01")}),
        Analyte("ADSDNA", "Anti-dsDNA", "IU/mL", _d("0"), _d("10000"), "5130-0"),
        Analyte("ANA", "Antinuclear antibody titre (1:N)", "1:N", _d("0"), _d("5120"), "5048-4"),
        Analyte("WBC", "White cells", "10^9/L", _d("0.1"), _d("100"), "6690-2", {"/uL": _d("0.001")}),
        Analyte("PLT", "Platelets", "10^9/L", _d("1"), _d("2000"), "777-3", {"/uL": _d("0.001")}),
        Analyte("HGB", "Haemoglobin", "g/L", _d("20"), _d("250"), "718-7", {"g/dL": _d("10")}),
        Analyte("TREG", "CD4+CD25+FoxP3+ regulatory T cells", "% of CD4+", _d("0"), _d("100")),
        Analyte("PRED", "Prednisone (equivalent) dose", "mg/day", _d("0"), _d("1000")),
        Analyte("WEIGHT", "Body weight", "kg", _d("2"), _d("300"), "29463-7"),
    ]
}

# Laboratory measurements, which a laboratory may report censored ("<10": below its limit of detection,
# ">2000": above its range); scores, doses, weights and the computed eGFR are exact (docs/clinical-rules.md,
# "Censored results").
CENSORABLE_CODES = frozenset(
    {"PROT24H", "UPCR", "ALB", "CREAT", "BUN", "C3", "C4", "ADSDNA", "ANA", "WBC", "PLT", "HGB", "TREG"}
)

RESULT_CODE_CHOICES = [(a.code, f"{a.code} – {a.label}") for a in ANALYTES.values()]

# Stored precision of canonical values (Result.value has 4 decimal places).
CANONICAL_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class SledaiItem:
    code: str
    label: str
    weight: int


SLEDAI_ITEMS: dict[str, SledaiItem] = {
    i.code: i
    for i in [
        SledaiItem("seizure", "Seizure", 8),
        SledaiItem("psychosis", "Psychosis", 8),
        SledaiItem("organic_brain_syndrome", "Organic brain syndrome", 8),
        SledaiItem("visual_disturbance", "Visual disturbance", 8),
        SledaiItem("cranial_nerve_disorder", "Cranial nerve disorder", 8),
        SledaiItem("lupus_headache", "Lupus headache", 8),
        SledaiItem("cva", "Cerebrovascular accident", 8),
        SledaiItem("vasculitis", "Vasculitis", 8),
        SledaiItem("arthritis", "Arthritis", 4),
        SledaiItem("myositis", "Myositis", 4),
        SledaiItem("urinary_casts", "Urinary casts", 4),
        SledaiItem("haematuria", "Haematuria (>5 RBC/hpf)", 4),
        SledaiItem("proteinuria", "Proteinuria (>0.5 g/24h)", 4),
        SledaiItem("pyuria", "Pyuria (>5 WBC/hpf)", 4),
        SledaiItem("rash", "Rash", 2),
        SledaiItem("alopecia", "Alopecia", 2),
        SledaiItem("mucosal_ulcers", "Mucosal ulcers", 2),
        SledaiItem("pleurisy", "Pleurisy", 2),
        SledaiItem("pericarditis", "Pericarditis", 2),
        SledaiItem("low_complement", "Low complement", 2),
        SledaiItem("increased_dna_binding", "Increased DNA binding", 2),
        SledaiItem("fever", "Fever (>38 °C)", 1),
        SledaiItem("thrombocytopenia", "Thrombocytopenia (<100 x 10^9/L)", 1),
        SledaiItem("leukopenia", "Leukopenia (<3 x 10^9/L)", 1),
    ]
}
SLEDAI_MAX = sum(i.weight for i in SLEDAI_ITEMS.values())  # 105
