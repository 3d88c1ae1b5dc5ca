"""What the export formats share: the zip member writer that hashes and counts the bytes as it streams
them, the `Column`, `Context` and `Table` every builder works with, the value formatting of the CSV files, and
the few codes more than one format maps (cell type, seriousness criteria, the statuses that end follow-up)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from core.i18n import english
from followup import constants as c
from followup.computations import plain
from patients import constants as pc
from registry import constants as rc
from registry.models import Site, Study
from reporting.models import ExportJob

# Bump `updated_at` (the heartbeat) at least every this many rows inside a long member.
HEARTBEAT_ROWS = 20_000

CELL_TYPE = {
    rc.TissueSource.UMBILICAL_CORD: "UC-MSC",
    rc.TissueSource.BONE_MARROW: "BM-MSC",
    rc.TissueSource.ADIPOSE: "AD-MSC",
    rc.TissueSource.OTHER: "MSC",
}
SERIOUS_FIELDS = [name for name, _ in c.SERIOUSNESS_CRITERIA]
ENDED_STATUSES = {pc.PatientStatus.COMPLETED, *pc.INACTIVE_STATUSES}


# Writing members ---------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Passes bytes to the zip entry while hashing and counting them."""

    def __init__(self, target):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


@dataclass
class _Member:
    name: str
    zf: zipfile.ZipFile
    rows: int = 0

    def __enter__(self):
        self._entry = self.zf.open(self.name, "w", force_zip64=True)
        self._hasher = _HashingWriter(self._entry)
        self.text = io.TextIOWrapper(io.BufferedWriter(self._hasher, 64 * 1024), encoding="utf-8", newline="")
        return self

    def __exit__(self, *exc_info):
        self.text.flush()
        self.text.detach().detach()  # leave the zip entry to close below
        self._entry.close()
        return False

    @property
    def record(self) -> dict:
        return {
            "name": self.name,
            "rows": self.rows,
            "bytes": self._hasher.size,
            "sha256": self._hasher.sha256.hexdigest(),
        }


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # string, integer, decimal, date, datetime, flag (1/0)
    description: str
    unit: str = ""
    values: str = ""


@dataclass
class Context:
    """What every builder needs: the study, the sites it may include, and lookups of small tables."""

    job: ExportJob
    study: Study
    site_ids: list[int]
    sites: dict[int, Site]
    generated_at: dt.datetime
    heartbeat: Callable[[], None] = lambda: None

    def site_code(self, site_id: int) -> str:
        return self.sites[site_id].code

    def zone(self, site_id: int) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.sites[site_id].time_zone)

    def local_date(self, moment: dt.datetime | None, site_id: int) -> dt.date | None:
        return moment.astimezone(self.zone(site_id)).date() if moment else None

    def usubjid(self, subject: str) -> str:
        return f"{self.study.code}-{subject}"


@dataclass
class Table:
    name: str
    description: str
    columns: list[Column]
    rows: Callable[[Context], Iterable[tuple]]


# Value formatting --------------------------------------------------------------------------------------


def _s(value) -> str:
    return "" if value is None else str(value)


def _num(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value)
    return str(value)


def _date(value) -> str:
    return value.isoformat() if value else ""


def _choices(choices) -> str:
    # Exports are in English whatever the requester's language (a choice's label may be a lazy translation).
    return "; ".join(f"{value}={english(label)}" for value, label in choices)


def _sequence() -> Callable[[str], int]:
    """A per-subject sequence number (rows arrive ordered by subject)."""
    state = {"subject": None, "n": 0}

    def next_for(subject: str) -> int:
        if subject != state["subject"]:
            state["subject"], state["n"] = subject, 0
        state["n"] += 1
        return state["n"]

    return next_for
