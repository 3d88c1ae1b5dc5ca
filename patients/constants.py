"""Choices of the patients app."""

from django.db import models


class ClassificationCriteria(models.TextChoices):
    ACR_1997 = "acr1997", "ACR 1997"
    SLICC_2012 = "slicc2012", "SLICC 2012"
    EULAR_ACR_2019 = "eular_acr2019", "EULAR/ACR 2019"


class PatientStatus(models.TextChoices):
    SCREENING = "screening", "Screening"
    ENROLLED = "enrolled", "Enrolled"
    COMPLETED = "completed", "Completed"
    WITHDRAWN = "withdrawn", "Withdrawn"
    LOST = "lost", "Lost to follow-up"
    DECEASED = "deceased", "Deceased"


# A patient in one of these states has left follow-up: no infusions, no future visits, no reminders.
INACTIVE_STATUSES = frozenset({PatientStatus.WITHDRAWN, PatientStatus.LOST, PatientStatus.DECEASED})
# Statuses whose date (and reason) must be recorded.
DATED_STATUSES = frozenset({PatientStatus.COMPLETED, *INACTIVE_STATUSES})


class Drug(models.TextChoices):
    PREDNISONE = "prednisone", "Prednisone (or equivalent)"
    CYCLOPHOSPHAMIDE = "cyclophosphamide", "Cyclophosphamide"
    MYCOPHENOLATE = "mycophenolate", "Mycophenolate"
    HYDROXYCHLOROQUINE = "hydroxychloroquine", "Hydroxychloroquine"
    LEFLUNOMIDE = "leflunomide", "Leflunomide"
    AZATHIOPRINE = "azathioprine", "Azathioprine"
    METHOTREXATE = "methotrexate", "Methotrexate"
    RITUXIMAB = "rituximab", "Rituximab"
    BELIMUMAB = "belimumab", "Belimumab"
    TACROLIMUS = "tacrolimus", "Tacrolimus"
    CICLOSPORIN = "ciclosporin", "Ciclosporin"
    OTHER = "other", "Other"


class DoseUnit(models.TextChoices):
    MG = "mg", "mg"
    G = "g", "g"
    MG_PER_KG = "mg/kg", "mg/kg"
    MG_PER_M2 = "mg/m2", "mg/m²"
    UG = "ug", "µg"
    IU = "IU", "IU"


class Frequency(models.TextChoices):
    ONCE = "once", "Once"
    DAILY = "daily", "Once daily"
    BID = "bid", "Twice daily"
    TID = "tid", "Three times daily"
    WEEKLY = "weekly", "Weekly"
    EVERY_2_WEEKS = "q2w", "Every 2 weeks"
    MONTHLY = "monthly", "Monthly"
    OTHER = "other", "Other"


class Route(models.TextChoices):
    IV = "iv", "Intravenous"


# Plausible ranges for an infusion (refused outside, never clipped).
WEIGHT_KG_RANGE = (2, 300)
DOSE_CELLS_PER_KG_RANGE = (100_000, 20_000_000)
