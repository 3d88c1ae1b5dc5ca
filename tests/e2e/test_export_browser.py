"""A study export in a real browser, in English and Chinese: the coordinator asks for one, the job's page shows
its progress moving while it is built (reporting/static/reporting/export_progress.js, without reloading), then
reloads itself once the job is done and offers the zip. And the data-quality dashboard on the worklist in
Chinese. Screenshots go to test-artifacts/export-<language>-<step>.png and worklist-quality-zh-hans.png.

The worker is the test itself: it runs reporting.exports.jobs.export_job_run in a thread once the page is open,
each step of the zip held back a little (reporting/exports/archive.py, _Progress.step) so that the page's
polls, every 3 seconds, see the steps go by.
"""

from __future__ import annotations

import io
import threading
import time
import zipfile

import pytest
from django.db import connection
from playwright.sync_api import Error as PlaywrightError

from followup.services import visit_record
from quality.services.edit_checks import run_edit_checks
from quality.services.queries import query_raise
from registry import constants as rc
from reporting.constants import ExportState
from reporting.exports import archive
from reporting.exports import jobs as export_jobs
from reporting.models import ExportJob
from tests.factories import DAY_ZERO, make_clinical, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-export-2026"
STEP_SECONDS = 1.2
WORDS = {
    "en": {
        "title": "Export a study",
        "queued": "Queued",
        "running": "Running",
        "done": "Ready to download",
        "download": "Download zip",
        "heading": "Export of",
    },
    "zh-hans": {
        "title": "导出研究",
        "queued": "排队中",
        "running": "运行中",
        "done": "可下载",
        "download": "下载 zip 文件",
        "heading": "的导出",
    },
}


@pytest.fixture
def clinical():
    clinical = make_clinical()
    visit_record(visit=clinical.visit("BL"), actual_date=DAY_ZERO, sledai_items=["rash"], results={"CREAT": "70"})
    return clinical


@pytest.fixture
def coordinator(clinical):
    return make_user("browser.export", clinical.site, role=rc.Role.COORDINATOR, password=PASSWORD)


@pytest.fixture
def worker(monkeypatch):
    """No broker: the job waits queued until the test builds it, each step of the zip 1.2 s apart."""
    monkeypatch.setattr(export_jobs, "_queue", lambda job_id: None)
    step = archive._Progress.step

    def slow_step(progress):
        step(progress)
        time.sleep(STEP_SECONDS)

    monkeypatch.setattr(archive._Progress, "step", slow_step)


def sign_in(page, base: str, username: str, language: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("#login-form input[type=submit]")
    assert page.url == f"{base}/admin/", page.url
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)


def build_in_background(job_id: int) -> threading.Thread:
    def run():
        try:
            export_jobs.export_job_run(job_id=job_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_the_export_page_follows_the_job_then_offers_the_zip(
    page, live, clinical, coordinator, worker, artifacts, language
):
    words = WORDS[language]
    sign_in(page, live, coordinator.username, language)

    def shot(name):
        page.screenshot(path=str(artifacts / f"export-{language}-{name}.png"), full_page=True)

    # Ask for an export of the study: the job is queued and its page shows 0%.
    page.goto(f"{live}/admin/reporting/exportjob/add/")
    assert words["title"] in page.locator("h1").inner_text()
    page.select_option("#id_study", str(clinical.study.pk))
    with page.expect_navigation():
        page.click('input[name="_save"]')
    job = ExportJob.objects.get()
    assert job.state == ExportState.QUEUED and job.requested_by == coordinator
    page.goto(f"{live}/admin/reporting/exportjob/{job.pk}/change/")
    progress = page.locator("span.export-progress")
    assert progress.inner_text() == "0%"
    assert words["heading"] in page.locator("#content h2").first.inner_text()
    assert words["queued"] in page.locator(".field-state").inner_text()
    shot("1-queued")

    # The worker builds it: the page, never reloaded, shows the steps as they go by.
    page.evaluate("() => { window.notReloaded = true; }")
    thread = build_in_background(job.pk)
    seen, states = [], set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            text = page.evaluate(
                "() => window.notReloaded ? document.querySelector('span.export-progress').textContent : null"
            )
            states.add(page.locator(".field-state .readonly").inner_text())
        except PlaywrightError:  # reloading as we asked
            text = None
        if text is None:  # the page reloaded: the job is finished
            break
        if text not in seen:
            seen.append(text)
            if len(seen) == 2:
                shot("2-running")
        page.wait_for_timeout(250)
    thread.join(timeout=60)
    middle = [int(text.rstrip("%")) for text in seen if text not in ("0%", "100%")]
    assert len(middle) >= 2 and middle == sorted(middle) and 0 < middle[0] < middle[-1] < 100, seen
    assert words["running"] in states, states  # the state follows too

    # Done: the page reloaded itself, shows the state and the link, and the zip downloads.
    page.wait_for_load_state()
    page.locator(".field-state", has_text=words["done"]).wait_for()
    assert page.locator("span.export-progress").count() == 0
    assert "100%" in page.locator(".field-progress_percent").inner_text()
    link = page.locator(".field-download a")
    assert link.inner_text() == words["download"]
    shot("3-done")
    response = page.request.get(f"{live}{link.get_attribute('href')}")
    assert response.status == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.body())) as zipped:
        assert "manifest.json" in zipped.namelist()

    # The list of exports links the same zip, in the same words.
    page.goto(f"{live}/admin/reporting/exportjob/")
    assert page.locator("td.field-download a").inner_text() == words["download"]


def test_the_data_quality_dashboard_on_the_worklist_in_chinese(page, live, clinical, coordinator, artifacts):
    monitor = make_user("browser.export.monitor", clinical.site, role=rc.Role.MONITOR, password=PASSWORD)
    query_raise(target=clinical.visit("BL"), field="actual_date", text="Please check the date.", actor=monitor)
    run_edit_checks()
    sign_in(page, live, coordinator.username, "zh-hans")
    heading = page.locator("h2#quality")
    assert heading.inner_text() == "您所在中心的数据质量"
    headers = page.locator("#quality-dashboard thead th").all_inner_texts()
    assert headers == [
        "中心",
        "研究",
        "已完成访视",
        "进行中",
        "逾期",
        "已源数据核查",
        "待签名",
        "待处理的质疑",
        "不足 7 天",
        "7 至 30 天",
        "超过 30 天",
    ]
    [row] = page.locator("#quality-dashboard tbody tr").all()
    cells = row.locator("td").all_inner_texts()
    assert cells[:2] == [clinical.site.code, clinical.study.code]
    assert cells[2] == "1" and cells[7] == "1" and cells[8] == "1"  # BL complete; the query raised today
    heading.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "worklist-quality-zh-hans.png"), full_page=True)
    page.locator("#quality-dashboard").screenshot(path=str(artifacts / "worklist-quality-table-zh-hans.png"))
