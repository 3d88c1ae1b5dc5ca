"""The cohort report page's rule: what a request shows, what it computes itself and what it leaves to a worker.

A report is kept in the cache by study, sites, filter, language, whether it stands alone, day and
`data_version()` (reporting/rendering.py), so it is computed again only when the data change or the next day.
On a miss, a cohort of at most REPORT_INLINE_MAX_PATIENTS patients in the user's scope (one count) is computed
in the request, as before. A larger one would outlast the web server's timeout (61-85 s at 100,000 patients,
docs/performance.md): the request claims the computation with a marker in the cache (`cache.add`, so a burst
of loads queues one task), queues `reporting.tasks.render_cohort_report` by name (the web process does not
register worker tasks; reporting/exports/jobs.py `_queue` does the same) and the page says the report is being
computed and polls `report_status`. A report of the same question over older data, if the cache holds one, is
shown meanwhile with the time its figures were taken; never silently. The marker is the question's, whatever
the data version, so one question is computed by one task at a time; it expires after REPORT_COMPUTE_SECONDS,
so a task the broker lost is queued again by a later load; a computation that failed leaves a "failed" marker
for FAILED_SECONDS, so the page says so instead of queueing it again at every load. A question whose report
was taken less than REPORT_REFRESH_SECONDS ago is not computed again: on a registry whose data change every
minute, the page shows that report, says when its figures were taken and when newer ones may be asked for
(RECENT), instead of keeping a worker computing it. A worker whose heartbeat (config/heartbeats.py) is older
than WORKER_STALE_SECONDS (core/liveness.py, as /healthz) is said to be unreachable, and nothing is queued for it. One user
has at most USER_COMPUTATIONS computations queued at once (a slot in the cache each, given back by the worker
or expiring with the claim): asking question after question (dates varied in the address) waits (BUSY).

The sites are resolved in the request; the worker renders for exactly the site ids it is given. The status
view computes its key from the requesting user's own sites and study, never from the client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass, replace

from celery import current_app
from django.conf import settings
from django.core.cache import caches
from django.utils import timezone, translation
from django.utils.translation import gettext

from core.liveness import worker_silent
from patients.models import Patient
from registry.models import Study
from reporting import rendering
from reporting.cohort import CohortFilter, cohort_report

logger = logging.getLogger(__name__)

RENDER_REPORT_TASK = "reporting.tasks.render_cohort_report"
FAILED_SECONDS = 300

READY, COMPUTING, UNREACHABLE, FAILED, MISSING = "ready", "computing", "unreachable", "failed", "missing"
RECENT = "recent"  # a report of older data taken less than REPORT_REFRESH_SECONDS ago: shown, not computed again
BUSY = "busy"  # the user's own computations fill their slots: this one is asked for once one of them is done
USER_COMPUTATIONS = 2  # computations one user may have queued at once (each a minute or more at 100,000 patients)


@dataclass(frozen=True)
class ReportQuestion:
    """What a report answers: the study, the sites (resolved in the request), the filter, and the language and
    time zone it is written in (the zone of the user's sites, config/language.py)."""

    study_id: int
    site_ids: tuple[int, ...]
    filter: dict  # CohortFilter.describe()
    language: str
    time_zone: str
    standalone: bool = False

    @classmethod
    def of(cls, *, study: Study, sites, flt: CohortFilter, standalone: bool = False) -> ReportQuestion:
        """The question for the user's `sites`. The filter's site codes are kept only where they name one of
        them, once each, in order (another site's code, or the same code twice, asks nothing new); a filter
        that names none of them asks for no site."""
        language = translation.get_language() or settings.LANGUAGE_CODE
        zone = timezone.get_current_timezone_name()
        site_ids = [site.pk for site in sites]
        if flt.site_codes:
            asked = set(flt.site_codes)
            site_ids = [site.pk for site in sites if site.code in asked]
            flt = replace(flt, site_codes=sorted(asked & {site.code for site in sites}))
        return cls(study.pk, tuple(sorted(site_ids)), flt.describe(), language, zone, standalone)

    def _digest(self, *extra) -> str:
        identity = [self.study_id, list(self.site_ids), self.filter, self.language, self.time_zone, self.standalone]
        identity.extend(extra)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def key(self, *, day: str, version: str) -> str:
        """The cached report of this question over the data of `version`, computed on `day`."""
        return "cohort-report:" + self._digest(day, version)

    def marker_key(self) -> str:
        """The claim on computing this question, whatever the data version: one task at a time."""
        return "cohort-report-computing:" + self._digest()

    def latest_key(self) -> str:
        """Where the key of the newest report of this question (any day, any data version) is kept."""
        return "cohort-report-latest:" + self._digest()

    def cohort_filter(self) -> CohortFilter:
        values = dict(self.filter)
        for name in ("enrolled_from", "enrolled_to"):
            values[name] = dt.date.fromisoformat(values[name]) if values.get(name) else None
        return CohortFilter(**values)


@dataclass
class ReportPage:
    """What the page shows: the report's HTML (current, or of older data with `taken_at`), and a message."""

    state: str
    html: str = ""
    report: dict | None = None
    taken_at: dt.datetime | None = None  # set only when the report shown is of older data
    message: str = ""

    since: float = 0.0  # when the page was drawn (epoch seconds): the status answers "ready" for a newer report

    @property
    def polls(self) -> bool:
        return self.state in (COMPUTING, BUSY)


def _cache():
    return caches["default"]


def _now_key() -> tuple[str, str]:
    return timezone.localdate().isoformat(), rendering.data_version()


def _patients_in_scope(question: ReportQuestion) -> int:
    """An upper bound of the cohort's size, in one count: the study's patients at the sites asked for."""
    patients = Patient.objects.filter(study_id=question.study_id).for_sites(question.site_ids)
    if question.filter.get("site_codes"):
        patients = patients.filter(site__code__in=question.filter["site_codes"])
    return patients.count()


def _inline(question: ReportQuestion) -> bool:
    return _patients_in_scope(question) <= settings.REPORT_INLINE_MAX_PATIENTS


def _store(question: ReportQuestion, *, day: str, version: str, html: str, report: dict | None, taken_at) -> None:
    cache, key = _cache(), question.key(day=day, version=version)
    cache.set(key, {"html": html, "report": report, "taken_at": taken_at}, rendering.REPORT_CACHE_SECONDS)
    latest = cache.get(question.latest_key())
    if latest is None or latest["taken_at"] <= taken_at:
        cache.set(question.latest_key(), {"key": key, "taken_at": taken_at}, rendering.REPORT_CACHE_SECONDS)
        if latest is not None and latest["key"] != key:
            cache.delete(latest["key"])  # the report it replaces: one report of older data per question is kept


def _older(question: ReportQuestion, current_key: str) -> dict | None:
    """The newest report of the same question over older data (or of an earlier day), if still cached."""
    latest = _cache().get(question.latest_key())
    if latest is None or latest["key"] == current_key:
        return None
    return _cache().get(latest["key"])


def _recent(question: ReportQuestion) -> bool:
    latest = _cache().get(question.latest_key())
    age = (timezone.now() - latest["taken_at"]).total_seconds() if latest else None
    return age is not None and age < settings.REPORT_REFRESH_SECONDS


def _slot_keys(requester) -> list[str]:
    return [f"cohort-report-user:{requester}:{number}" for number in range(USER_COMPUTATIONS)]


def _claim_slot(requester) -> str | None | bool:
    """One of `requester`'s slots, claimed: its key; None when nobody asks (a command); False when all are taken."""
    if requester is None:
        return None
    for slot in _slot_keys(requester):
        if _cache().add(slot, 1, timeout=settings.REPORT_COMPUTE_SECONDS):
            return slot
    return False


def _user_busy(requester) -> bool:
    """Whether every one of `requester`'s slots is taken."""
    return requester is not None and len(_cache().get_many(_slot_keys(requester))) == USER_COMPUTATIONS


def _claim_and_queue(question: ReportQuestion, *, day: str, version: str, requester=None) -> str:
    """Queue the computation unless someone has: COMPUTING, FAILED (a recent attempt failed), RECENT (its report
    was taken a short while ago), UNREACHABLE (the broker refused the task, or no worker is alive) or BUSY
    (`requester`, the user's id, has USER_COMPUTATIONS computations queued already)."""
    if _recent(question):
        return RECENT
    if worker_silent():
        return UNREACHABLE
    cache, marker = _cache(), question.marker_key()
    held = cache.get(marker)
    if held is not None:
        return FAILED if held == FAILED else COMPUTING
    slot = _claim_slot(requester)
    if slot is False:
        return BUSY
    if not cache.add(marker, COMPUTING, timeout=settings.REPORT_COMPUTE_SECONDS):
        if slot:
            cache.delete(slot)
        return FAILED if cache.get(marker) == FAILED else COMPUTING
    payload = {
        "study_id": question.study_id,
        "site_ids": list(question.site_ids),
        "filter": question.filter,
        "language": question.language,
        "time_zone": question.time_zone,
        "standalone": question.standalone,
        "day": day,
        "version": version,
        "slot": slot,
    }
    try:
        current_app.send_task(RENDER_REPORT_TASK, kwargs=payload)
    except Exception:  # the broker cannot be reached: give the claim back, so a later load tries again
        cache.delete_many([marker, *([slot] if slot else [])])
        logger.warning("The cohort report of study %s could not be queued", question.study_id, exc_info=True)
        return UNREACHABLE
    return COMPUTING


def _message(state: str, *, sites: str, taken_at: dt.datetime | None) -> str:
    if taken_at is not None:
        local = timezone.localtime(taken_at)  # in the zone of the user's sites, as the report's own times
        taken = {"date": local.date().isoformat(), "time": f"{local:%H:%M}", "zone": local.tzname()}
        intro = gettext("The figures below were taken on %(date)s at %(time)s %(zone)s.") % taken
        if state == RECENT:
            after = timezone.localtime(taken_at + dt.timedelta(seconds=settings.REPORT_REFRESH_SECONDS))
            return (
                intro
                + " "
                + gettext(
                    "The registry has changed since. A report is computed again at most every %(minutes)s "
                    "minutes: reload this page after %(time)s for newer figures."
                )
                % {"minutes": settings.REPORT_REFRESH_SECONDS // 60, "time": f"{after:%H:%M}"}
            )
        rest = {
            COMPUTING: gettext("Newer data are being computed; this page will update itself when they are ready."),
            UNREACHABLE: gettext("Newer data exist, but the background worker cannot be reached to compute them."),
            FAILED: gettext("The report of newer data could not be computed; reload this page in a few minutes."),
            BUSY: gettext(
                "Newer data will be computed once a report you asked for is ready; this page will update itself."
            ),
        }[state]
        return f"{intro} {rest}"
    return {
        COMPUTING: gettext(
            "The cohort report of your sites (%(sites)s) is being computed. This page will update itself when it "
            "is ready."
        ),
        UNREACHABLE: gettext(
            "The cohort report of your sites (%(sites)s) cannot be computed now: the background worker cannot be "
            "reached. Try again in a few minutes."
        ),
        FAILED: gettext(
            "The cohort report of your sites (%(sites)s) could not be computed. Reload this page in a few minutes "
            "to try again."
        ),
        BUSY: gettext(
            "Other cohort reports you asked for are being computed; the report of your sites (%(sites)s) will be "
            "computed once one of them is ready. This page will update itself."
        ),
    }[state] % {"sites": sites}


def _site_codes(sites, question: ReportQuestion) -> str:
    return ", ".join(site.code for site in sites if site.pk in question.site_ids) or "—"


def report_page(*, study: Study, sites, flt: CohortFilter, standalone: bool = False, requester=None) -> ReportPage:
    """The cohort report page of `sites` (the user's, resolved by the caller): from the cache, computed here for
    a small cohort, or queued for a worker, with a report of older data meanwhile if there is one."""
    question = ReportQuestion.of(study=study, sites=sites, flt=flt, standalone=standalone)
    flt = question.cohort_filter()
    day, version = _now_key()
    key = question.key(day=day, version=version)
    entry = _cache().get(key)
    if entry is not None:
        return ReportPage(READY, html=entry["html"], report=entry["report"])
    if _inline(question):
        taken_at = timezone.now()
        html = rendering.render_html(study=study, site_ids=list(question.site_ids), flt=flt, standalone=standalone)
        _store(question, day=day, version=version, html=html, report=None, taken_at=taken_at)
        return ReportPage(READY, html=html)
    since = timezone.now().timestamp()
    state = _claim_and_queue(question, day=day, version=version, requester=requester)
    older = _older(question, key)
    taken_at = older["taken_at"] if older else None
    if state == RECENT and older is None:  # the recent report has left the cache: compute it again
        _cache().delete(question.latest_key())
        state = _claim_and_queue(question, day=day, version=version, requester=requester)
    message = _message(state, sites=_site_codes(sites, question), taken_at=taken_at)
    html = older["html"] if older else ""
    return ReportPage(state, html=html, taken_at=taken_at, message=message, since=since)


def report_download(*, study: Study, sites, flt: CohortFilter, requester=None) -> ReportPage:
    """The report for `?format=json|csv`: computed here for a small cohort (as the page is), otherwise the
    worker's report of the current data, or a page without a report saying it is being computed."""
    question = ReportQuestion.of(study=study, sites=sites, flt=flt)
    flt = question.cohort_filter()
    if _inline(question):
        return ReportPage(READY, report=cohort_report(study=study, site_ids=list(question.site_ids), flt=flt))
    day, version = _now_key()
    entry = _cache().get(question.key(day=day, version=version))
    if entry is not None and entry["report"] is not None:
        return ReportPage(READY, report=entry["report"])
    state = _claim_and_queue(question, day=day, version=version, requester=requester)
    if state == RECENT:  # a download is always of the current data: it is computed, whenever it was last
        _cache().delete(question.latest_key())
        state = _claim_and_queue(question, day=day, version=version, requester=requester)
    return ReportPage(state, message=_message(state, sites=_site_codes(sites, question), taken_at=None))


def report_status(*, study: Study, sites, flt: CohortFilter, since: float | None = None, requester=None) -> str:
    """READY, COMPUTING, FAILED, BUSY (the requester's slots are all taken) or MISSING (nobody computes it: the
    page, loaded again, queues it) for the
    report these sites' page waits for: of the current data, or (`since`, when the page was drawn) any report
    of the question taken after the page was drawn, so that data changed meanwhile do not send it round."""
    question = ReportQuestion.of(study=study, sites=sites, flt=flt)
    day, version = _now_key()
    cache = _cache()
    if cache.get(question.key(day=day, version=version)) is not None:
        return READY
    latest = cache.get(question.latest_key())
    if since is not None and latest is not None and latest["taken_at"].timestamp() >= since:
        return READY
    marker = cache.get(question.marker_key())
    if marker is None:
        return BUSY if _user_busy(requester) else MISSING
    return FAILED if marker == FAILED else COMPUTING


def report_compute(
    *,
    study_id: int,
    site_ids,
    filter: dict,
    language: str,
    time_zone: str,
    standalone: bool,
    day: str,
    version: str,
    slot: str | None = None,
) -> None:
    """The worker's part: render the report of exactly `site_ids` in `language` and `time_zone` and keep it (HTML
    and report) under the key the request computed. The figures are taken now, from data at least as new as
    `version`. `slot`, the requester's claim, is given back whatever happens."""
    question = ReportQuestion(study_id, tuple(sorted(site_ids)), filter, language, time_zone, standalone)
    marker = question.marker_key()
    taken_at = timezone.now()
    try:
        study = Study.objects.get(pk=study_id)
        with translation.override(language), timezone.override(time_zone):
            html, report = rendering.render_report(
                study=study, site_ids=list(question.site_ids), flt=question.cohort_filter(), standalone=standalone
            )
    except Exception:
        _cache().set(marker, FAILED, FAILED_SECONDS)
        raise
    finally:
        if slot:
            _cache().delete(slot)
    _store(question, day=day, version=version, html=html, report=report, taken_at=taken_at)
    _cache().delete(marker)
