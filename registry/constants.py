"""Choices and catalogues of the registry app."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class StudyPhase(models.TextChoices):
    EARLY_1 = "early1", "Early phase 1"
    PHASE_1 = "1", "Phase 1"
    PHASE_1_2 = "1/2", "Phase 1/2"
    PHASE_2 = "2", "Phase 2"
    PHASE_2_3 = "2/3", "Phase 2/3"
    PHASE_3 = "3", "Phase 3"
    PHASE_4 = "4", "Phase 4"
    OBSERVATIONAL = "obs", "Observational / registry"


class StudyStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    RECRUITING = "recruiting", "Recruiting"
    ACTIVE = "active", "Active, not recruiting"
    COMPLETED = "completed", "Completed"
    SUSPENDED = "suspended", "Suspended"
    TERMINATED = "terminated", "Terminated"


class Role(models.TextChoices):
    COORDINATOR = "coordinator", "Study coordinator"
    INVESTIGATOR = "investigator", "Investigator"
    DATA_MANAGER = "data_manager", "Data manager"
    MONITOR = "monitor", "Monitor (read only)"


# What a study's status allows (docs/clinical-rules.md, "Study status and site participation"): new
# patients only while recruiting; no new infusion once suspended, completed or terminated. The follow-up of
# the patients already in (visits, medications, adverse events, status) goes on in every status.
ENROLLING_STATUSES = frozenset({StudyStatus.RECRUITING})
NO_INFUSION_STATUSES = frozenset({StudyStatus.SUSPENDED, StudyStatus.COMPLETED, StudyStatus.TERMINATED})


# No date the registry stores may lie further ahead of the site's today than this (a lot "expiring
# 9999-12-31" is a placeholder, not a date): docs/clinical-rules.md, "Dates".
DATE_HORIZON_YEARS = 30


# Roles that may write clinical data for their site; monitors only read.
WRITE_ROLES = frozenset({Role.COORDINATOR, Role.INVESTIGATOR, Role.DATA_MANAGER})


class Sex(models.TextChoices):
    FEMALE = "F", "Female"
    MALE = "M", "Male"


class DonorRelation(models.TextChoices):
    AUTOLOGOUS = "autologous", "Autologous (the recipient)"
    RELATED = "related", "Related"
    UNRELATED = "unrelated", "Unrelated"


class ScreeningResult(models.TextChoices):
    NEGATIVE = "negative", "Negative"
    POSITIVE = "positive", "Positive"
    NOT_DONE = "not_done", "Not done"


DONOR_SCREENING_TESTS = ("hbv", "hcv", "hiv", "syphilis", "cmv", "htlv")


class TissueSource(models.TextChoices):
    BONE_MARROW = "bone_marrow", "Bone marrow"
    UMBILICAL_CORD = "umbilical_cord", "Umbilical cord"
    ADIPOSE = "adipose", "Adipose tissue"
    OTHER = "other", "Other"


class ProductOrigin(models.TextChoices):
    ALLOGENEIC = "allogeneic", "Allogeneic"
    AUTOLOGOUS = "autologous", "Autologous"


class TestOutcome(models.TextChoices):
    NEGATIVE = "negative", "Negative"
    POSITIVE = "positive", "Positive"


class Karyotype(models.TextChoices):
    NORMAL = "normal", "Normal"
    ABNORMAL = "abnormal", "Abnormal"


class ReleaseStatus(models.TextChoices):
    PENDING = "pending", "Pending (tests missing)"
    RELEASED = "released", "Released"
    FAILED = "failed", "Failed release"


# ISCT minimal criteria (Dominici 2006) plus common lot tests. Each criterion: field on CellProduct,
# the rule, and how it reads in an error. A missing value is reported as "not tested" and keeps the lot pending.
RELEASE_CRITERIA: tuple[tuple[str, str, object, str], ...] = (
    ("plastic_adherent", "eq", True, "plastic adherence must be shown"),
    ("cd105_pct", "ge", 95, "CD105 must be >= 95%"),
    ("cd73_pct", "ge", 95, "CD73 must be >= 95%"),
    ("cd90_pct", "ge", 95, "CD90 must be >= 95%"),
    ("cd45_pct", "le", 2, "CD45 must be <= 2%"),
    ("cd34_pct", "le", 2, "CD34 must be <= 2%"),
    ("cd14_or_cd11b_pct", "le", 2, "CD14 or CD11b must be <= 2%"),
    ("cd79a_or_cd19_pct", "le", 2, "CD79a or CD19 must be <= 2%"),
    ("hla_dr_pct", "le", 2, "HLA-DR must be <= 2%"),
    ("trilineage_shown", "eq", True, "trilineage differentiation must be shown"),
    ("viability_pct", "ge", 80, "viability must be >= 80%"),
    ("sterility", "eq", "negative", "sterility must be negative"),
    ("mycoplasma", "eq", "negative", "mycoplasma must be negative"),
    ("endotoxin_eu_per_ml", "lt", 0.5, "endotoxin must be < 0.5 EU/mL"),
    ("karyotype", "eq", "normal", "karyotype must be normal"),
)


# The release tests by group, in the order of the criteria above (admin fieldsets, API fields).
ISCT_TEST_FIELDS = tuple(field for field, *_ in RELEASE_CRITERIA[:10])
LOT_TEST_FIELDS = tuple(field for field, *_ in RELEASE_CRITERIA[10:])
RELEASE_TEST_FIELDS = ISCT_TEST_FIELDS + LOT_TEST_FIELDS


# Default follow-up template (docs/clinical-rules.md, "Follow-up schedule"): code, label, offset from day 0,
# window before, window after.
DEFAULT_VISIT_TEMPLATE: tuple[tuple[str, str, int, int, int], ...] = (
    ("BL", "Baseline (before the first infusion)", 0, 14, 0),
    ("D7", "Day 7 (second infusion / early safety)", 7, 2, 2),
    ("M1", "Month 1", 30, 7, 7),
    ("M3", "Month 3", 91, 14, 14),
    ("M6", "Month 6", 182, 14, 14),
    ("M9", "Month 9", 274, 14, 14),
    ("M12", "Month 12", 365, 30, 30),
    ("M18", "Month 18", 547, 30, 30),
    ("M24", "Year 2", 730, 30, 30),
    ("M36", "Year 3", 1095, 30, 30),
    ("M48", "Year 4", 1460, 30, 30),
    ("M60", "Year 5", 1825, 30, 30),
)

# The default template's labels in Simplified Chinese, by code (shown to users reading Chinese; exports keep
# the English label).
DEFAULT_VISIT_LABELS_ZH: dict[str, str] = {
    "BL": "基线（首次输注前）",
    "D7": "第7天（第二次输注/早期安全性）",
    "M1": "第1个月",
    "M3": "第3个月",
    "M6": "第6个月",
    "M9": "第9个月",
    "M12": "第12个月",
    "M18": "第18个月",
    "M24": "第2年",
    "M36": "第3年",
    "M48": "第4年",
    "M60": "第5年",
}

# The items a visit of the default template needs before it can be completed (each recorded, or said not
# done with a reason): result codes of the catalogue (followup/catalogue.py), at these visits.
DEFAULT_REQUIRED_ITEMS: tuple[str, ...] = ("SLEDAI2K", "PROT24H", "CREAT", "C3", "C4", "ADSDNA")
DEFAULT_REQUIRED_AT: tuple[str, ...] = ("BL", "M3", "M6", "M12")


class SecondFactorAction(models.TextChoices):
    ENROLLED = "enrolled", _("Enrolled an authenticator app")
    BACKUP_CODES = "backup_codes", _("Issued new backup codes")
    RESET = "reset", _("Two-factor sign-in reset")


# Who must sign in with a second factor when REGISTRY_REQUIRE_2FA is on (superusers too): docs/sign-in.md.
SECOND_FACTOR_ROLES = frozenset({Role.INVESTIGATOR, Role.DATA_MANAGER})
BACKUP_CODE_COUNT = 10
