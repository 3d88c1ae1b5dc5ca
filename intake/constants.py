"""What an import reads: the kinds of sheet, their columns (described in English and Chinese, with an example),
and the order in which the kinds are imported (a patient before their infusions, an infusion before the
visits it schedules)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models
from django.utils.translation import gettext_lazy as _


class Kind(models.TextChoices):
    PATIENTS = "patients", _("Patients")
    INFUSIONS = "infusions", _("Infusions")
    VISITS = "visits", _("Visits and results")
    MEDICATIONS = "medications", _("Concomitant medications")
    ADVERSE_EVENTS = "adverse_events", _("Adverse events")


# The order of the import, whatever the order of the files given.
ORDER = [Kind.PATIENTS, Kind.INFUSIONS, Kind.VISITS, Kind.MEDICATIONS, Kind.ADVERSE_EVENTS]


@dataclass(frozen=True)
class Column:
    name: str
    required: bool
    english: str
    chinese: str
    example: str = ""


SUBJECT = Column(
    "subject_code", True, "Pseudonymous subject code, unique in the study.", "受试者编号（研究内唯一）。", "SLE-0001"
)
DATE_RULE = "ISO (2010-03-04) or year first (2010/3/4)"
DATE_RULE_ZH = "ISO 格式（2010-03-04）或年份在前（2010/3/4）"

COLUMNS: dict[str, list[Column]] = {
    Kind.PATIENTS: [
        SUBJECT,
        Column(
            "site",
            False,
            "Site code (may be given once for the file with --site).",
            "中心代码（可用 --site 统一指定）。",
            "NJDT",
        ),
        Column("sex", True, "F or M.", "性别：F 或 M。", "F"),
        Column("birth_year", True, "Year of birth (only the year is kept).", "出生年份（仅保留年份）。", "1985"),
        Column(
            "diagnosis_date",
            True,
            f"Date of SLE diagnosis, {DATE_RULE}.",
            f"SLE 诊断日期，{DATE_RULE_ZH}。",
            "2005-06-01",
        ),
        Column(
            "classification_criteria",
            True,
            "acr1997, slicc2012 or eular_acr2019.",
            "分类标准：acr1997、slicc2012 或 eular_acr2019。",
            "acr1997",
        ),
        Column(
            "consent_date",
            False,
            f"Date of informed consent, {DATE_RULE}.",
            f"知情同意日期，{DATE_RULE_ZH}。",
            "2008-01-10",
        ),
        Column(
            "refractory_to",
            False,
            "Drug codes the disease was refractory to, separated by ';'.",
            "难治所针对的药物代码，以“;”分隔。",
            "cyclophosphamide;prednisone",
        ),
        Column("refractory_notes", False, "Notes on the refractory basis.", "难治依据备注。", ""),
        Column(
            "status",
            False,
            "screening, enrolled, completed, withdrawn, lost or deceased (applied after the other sheets).",
            "状态：screening、enrolled、completed、withdrawn、lost 或 deceased（在其他表之后应用）。",
            "enrolled",
        ),
        Column("status_date", False, f"Date the status began, {DATE_RULE}.", f"状态开始日期，{DATE_RULE_ZH}。", ""),
        Column("status_reason", False, "Reason for withdrawn, lost or deceased.", "退出、失访或死亡的原因。", ""),
    ],
    Kind.INFUSIONS: [
        SUBJECT,
        Column(
            "infusion_number",
            True,
            "1 = first infusion of the course, 2 = second.",
            "输注序号：1 为首次，2 为第二次。",
            "1",
        ),
        Column(
            "infused_at",
            True,
            "Date and time of the infusion, local to the site unless an offset is given (2008-01-15 10:00).",
            "输注日期和时间，除非注明时区偏移，否则为中心当地时间（2008-01-15 10:00）。",
            "2008-01-15 10:00",
        ),
        Column("lot", True, "Lot number of a cell product of the study.", "研究中细胞产品的批号。", "UC-2008-001"),
        Column("weight_kg", True, "Body weight at infusion, kg.", "输注时体重（kg）。", "58.5"),
        Column("dose_cells_per_kg", True, "Dose in cells per kg.", "剂量（细胞数/kg）。", "1000000"),
        Column("route", False, "Route: iv (intravenous, the default).", "给药途径：iv（静脉，默认）。", "iv"),
        Column("duration_minutes", False, "Duration of the infusion in minutes.", "输注时长（分钟）。", "30"),
        Column("premedication", False, "Premedication given.", "预处理用药。", ""),
        Column("conditioning", False, "Conditioning regimen.", "预处理方案。", ""),
    ],
    Kind.VISITS: [
        SUBJECT,
        Column(
            "visit_code",
            False,
            "Visit code or label of the study's schedule (BL, M3, 'Month 3'); without it the visit is the one whose "
            "window is nearest to the day after transplant.",
            "随访代码或名称（BL、M3、“Month 3”）；留空时按移植后天数匹配最近的时间窗。",
            "M3",
        ),
        Column(
            "visit_date",
            True,
            f"Date the visit took place, {DATE_RULE}.",
            f"随访实际日期，{DATE_RULE_ZH}。",
            "2008-04-15",
        ),
        Column(
            "visit_label",
            False,
            "An unscheduled visit's label (its code is U01, U02, ... in the order of its visits).",
            "计划外随访的名称（其代码依次为 U01、U02……）。",
            "",
        ),
        Column("deviation_reason", False, "Why the visit is outside its window.", "超出时间窗的原因。", ""),
        Column("status", False, "complete (default) or in_progress.", "complete（默认）或 in_progress。", "complete"),
        Column(
            "not_done",
            False,
            "Required results not done, separated by ';' (CODE or CODE=not_available).",
            "未做的必需项目，以“;”分隔（代码或 代码=not_available）。",
            "",
        ),
        Column(
            "sledai_items",
            False,
            "SLEDAI-2K items present, separated by ';' (or one column SLEDAI:<item> per item with 1/0).",
            "SLEDAI-2K 阳性条目，以“;”分隔（或每个条目一列 SLEDAI:<条目>，填 1/0）。",
            "arthritis;rash",
        ),
        Column(
            "<CODE> [unit]",
            False,
            "One column per result code of the catalogue (SLEDAI2K, PROT24H, CREAT, C3, ...), the unit in brackets "
            "or in a column <CODE>_unit; censored values as <10; ND = not done, NA = not available.",
            "每个检验代码一列（SLEDAI2K、PROT24H、CREAT、C3 等），单位写在方括号内或单独一列 <代码>_unit；"
            "删失值写作 <10；ND 表示未做，NA 表示不可得。",
            "CREAT [mg/dL]",
        ),
    ],
    Kind.MEDICATIONS: [
        SUBJECT,
        Column(
            "drug",
            True,
            "Drug code (prednisone, cyclophosphamide, ... or other).",
            "药物代码（prednisone、cyclophosphamide 等，或 other）。",
            "prednisone",
        ),
        Column("drug_other", False, "Name when the drug is 'other'.", "药物为 other 时的名称。", ""),
        Column("dose", True, "Dose.", "剂量。", "20"),
        Column("unit", True, "Dose unit (mg, g, mg/kg, ...).", "剂量单位（mg、g、mg/kg 等）。", "mg"),
        Column("frequency", True, "Frequency (daily, bid, ...).", "频次（daily、bid 等）。", "daily"),
        Column("start_date", True, f"Start date, {DATE_RULE}.", f"开始日期，{DATE_RULE_ZH}。", "2008-01-01"),
        Column(
            "stop_date",
            False,
            f"Stop date (empty: ongoing), {DATE_RULE}.",
            f"停止日期（空：持续），{DATE_RULE_ZH}。",
            "",
        ),
    ],
    Kind.ADVERSE_EVENTS: [
        SUBJECT,
        Column("term", True, "Event term as reported.", "不良事件名称。", "Herpes zoster"),
        Column(
            "category",
            True,
            "Category code (infection, infusion_reaction, ...).",
            "类别代码（infection、infusion_reaction 等）。",
            "infection",
        ),
        Column("onset_date", True, f"Onset date, {DATE_RULE}.", f"发生日期，{DATE_RULE_ZH}。", "2008-11-02"),
        Column(
            "aware_date",
            True,
            f"Date the site became aware, {DATE_RULE}.",
            f"中心获知日期，{DATE_RULE_ZH}。",
            "2008-11-03",
        ),
        Column(
            "resolution_date",
            False,
            f"Resolution date (of death for grade 5), {DATE_RULE}.",
            f"缓解日期（5 级为死亡日期），{DATE_RULE_ZH}。",
            "",
        ),
        Column("grade", True, "CTCAE grade 1-5.", "CTCAE 分级 1-5。", "2"),
        Column(
            "serious",
            False,
            "Seriousness criteria met, separated by ';' (death, life_threatening, hospitalisation, disability, "
            "congenital_anomaly, other_important).",
            "符合的严重性标准，以“;”分隔（death、life_threatening、hospitalisation、disability、congenital_anomaly、"
            "other_important）。",
            "",
        ),
        Column(
            "relatedness",
            True,
            "unrelated, unlikely, possible, probable or definite.",
            "与 MSCT 的相关性。",
            "unrelated",
        ),
        Column("expected", True, "Y or N.", "是否预期：Y 或 N。", "N"),
        Column("action_taken", False, "Action taken code.", "采取措施代码。", ""),
        Column("outcome", False, "Outcome code.", "转归代码。", "recovered"),
        Column("infusion_number", False, "The infusion the event is linked to.", "关联的输注序号。", ""),
        Column("description", False, "Description.", "描述。", ""),
    ],
}

SERIOUS = {
    "death": "serious_death",
    "life_threatening": "serious_life_threatening",
    "hospitalisation": "serious_hospitalisation",
    "disability": "serious_disability",
    "congenital_anomaly": "serious_congenital_anomaly",
    "other_important": "serious_other_important",
}

# A service's field named in its error -> the column of the sheet that holds it.
FIELD_COLUMNS: dict[str, dict[str, str]] = {
    Kind.PATIENTS: {"site": "site"},
    Kind.INFUSIONS: {"patient": "subject_code", "infused_at": "infused_at", "total_cells": "dose_cells_per_kg"},
    Kind.VISITS: {"actual_date": "visit_date", "visit": "visit_code"},
    Kind.MEDICATIONS: {"patient": "subject_code"},
    Kind.ADVERSE_EVENTS: {"patient": "subject_code", "transplant": "infusion_number"},
}

NOT_DONE_CELLS = {"nd": "not_done", "not done": "not_done", "na": "not_available", "not available": "not_available"}
# A result cell that asks for the stored result to be removed (a correction: the import's reason is needed). An
# empty cell keeps what is stored: nothing is removed unless asked for.
REMOVE_CELLS = {"remove", "删除"}
# Visits recorded per batch (below followup.constants.MAX_BATCH_VISITS); the progress is reported after each.
CHUNK_VISITS = 100


class ImportState(models.TextChoices):
    QUEUED = "queued", _("Waiting for a worker")
    RUNNING = "running", _("Running")
    DONE = "done", _("Finished")
    FAILED = "failed", _("Failed")


# The files of one import, together (the admin page; the command reads files of any size).
MAX_IMPORT_BYTES = 50 * 1024 * 1024
