"""What the sweeps of the notification ledger share: the people an item goes to (a site's members with a
role, their e-mail preferences), each site's today and sending hour, and the set-wise insert of ledger rows
that ignores rows already there."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection

from notifications.models import Notification, NotificationPreference
from registry.models import Membership, Site

BATCH = 500


@dataclass(frozen=True)
class Recipient:
    email: str
    user_id: int | None
    language: str = "en"
    digest: bool = True


def _preferences(user_ids: Iterable[int]) -> dict[int, NotificationPreference]:
    return {p.user_id: p for p in NotificationPreference.objects.filter(user_id__in=set(user_ids))}


def members(site_id: int, role: str, today: dt.date) -> list[Recipient]:
    """Active members of a site with the role and an e-mail address who have not paused or unsubscribed."""
    return members_of_sites({site_id: today}, role).get(site_id, [])


def members_of_sites(today_by_site: dict[int, dt.date], role: str) -> dict[int, list[Recipient]]:
    """`members` of several sites at once (two queries), by site id."""
    rows = list(
        Membership.objects.filter(site_id__in=list(today_by_site), role=role, user__is_active=True)
        .exclude(user__email="")
        .order_by("site_id", "pk")
        .values_list("site_id", "user_id", "user__email")
    )
    prefs = _preferences(uid for _, uid, _ in rows)
    recipients: dict[int, list[Recipient]] = {}
    for site_id, user_id, email in rows:
        pref = prefs.get(user_id)
        if pref and (pref.unsubscribed or (pref.paused_until and pref.paused_until >= today_by_site[site_id])):
            continue
        recipients.setdefault(site_id, []).append(
            Recipient(
                email=email,
                user_id=user_id,
                language=pref.language if pref else "en",
                digest=pref.digest if pref else True,
            )
        )
    return recipients


def send_after(site: Site, today: dt.date, hour: int) -> dt.datetime:
    """The site's local sending hour on `today`, as a UTC instant (DST-safe)."""
    local = dt.datetime.combine(today, dt.time(hour), tzinfo=zoneinfo.ZoneInfo(site.time_zone))
    return local.astimezone(dt.UTC)


@dataclass
class SweepReport:
    considered: int = 0
    inserted: int = 0
    rows: list[Notification] = field(default_factory=list)


def _insert(rows: list[Notification], report: SweepReport, dry_run: bool) -> None:
    if not rows:
        return
    if dry_run:  # report only the rows that a real sweep would add
        keys = {(r.kind, r.object_id, r.stage, r.recipient_email) for r in rows}
        existing = set(
            Notification.objects.filter(object_id__in={r.object_id for r in rows}).values_list(
                "kind", "object_id", "stage", "recipient_email"
            )
        )
        new = [r for r in rows if (r.kind, r.object_id, r.stage, r.recipient_email) not in existing]
        report.rows.extend(new)
        report.inserted += len({(r.kind, r.object_id, r.stage, r.recipient_email) for r in new} & keys)
        return
    report.inserted += _insert_new(rows)


def _insert_new(rows: list[Notification]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING, in batches: the database says how many rows were new (exact even
    when another sweep inserts the same keys at the same moment)."""
    fields = [f for f in Notification._meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(Notification._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    inserted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            values, params = [], []
            for row in batch:
                values.append("(" + ", ".join(["%s"] * len(fields)) + ")")
                params.extend(f.get_db_prep_save(f.pre_save(row, add=True), connection) for f in fields)
            cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {', '.join(values)} ON CONFLICT DO NOTHING", params)
            inserted += cursor.rowcount
    return inserted


def _site_today(site: Site, now: dt.datetime) -> dt.date:
    return now.astimezone(zoneinfo.ZoneInfo(site.time_zone)).date()


def _recipient_still_applies(row: Notification, role: str, today: dt.date) -> bool:
    if row.recipient_user_id is None:
        site = row.site
        study_emails = set(site.studies.values_list("safety_contact_email", flat=True))
        return row.recipient_email in {site.safety_email, *study_emails}
    return any(r.user_id == row.recipient_user_id for r in members(row.site_id, role, today))
