"""A data manager brings a historical cohort in through the admin, in a real browser, in English and Chinese:
a file with a wrong date is checked and its problem shown by file, row, column and rule; the right files are
checked, the job's page following the check while it runs (the progress bar and the rows read move without a
reload), then imported with "Import these files" without being given again. Screenshots go to test-artifacts/.

The job is run by this test's own thread where a worker would run it (the broker is not used): the page
cannot tell the difference, since it reads the job's state and progress from its JSON view. While the check
runs, its progress callback waits until the browser shows the rows read, so the page is seen moving.
"""

from __future__ import annotations

import shutil

import pytest

from followup.models import Visit
from intake.models import ImportJob
from intake.services import import_job_run, jobs
from patients.models import Patient
from registry import constants as rc
from tests.e2e.browser import sign_in
from tests.factories import make_lot, make_user
from tests.intake.cohort import LOT, PATIENTS, cohort_files

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "Browser-import-2026"
WORDS = {
    "en": {
        "check": "Check",
        "waiting": "Waiting for a worker",
        "rows": "patients.csv: 2 of 2 rows read",
        "problem": "problems; nothing was written.",
        "ambiguous": "is ambiguous",
        "clean": "Checked: no problem found; nothing was written (preview).",
        "import": "Import these files",
        "imported": "Imported:",
        "done": "Finished",
    },
    "zh-hans": {
        "check": "检查",
        "waiting": "等待后台任务处理",
        "rows": "patients.csv：已读取 2 / 2 行",
        "problem": "个问题；未写入任何数据。",
        "ambiguous": "有歧义",
        "clean": "已检查：未发现问题；未写入任何数据（预览）。",
        "import": "导入这些文件",
        "imported": "已导入",
        "done": "已完成",
    },
}


@pytest.fixture
def queued(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(jobs, "_queue", sent.append)
    return sent


def write_files(directory, **kwargs) -> list[str]:
    directory.mkdir()
    paths = []
    for name, content in cohort_files(**kwargs):
        (directory / name).write_bytes(content)
        paths.append(str(directory / name))
    return paths


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_cohort_checked_followed_and_imported_in_the_browser(
    chromium, live, study, site_a, queued, tmp_path, artifacts, monkeypatch, language
):
    words = WORDS[language]
    make_lot(study, site_a, lot_number=LOT)
    manager = make_user(f"import.{language}", site_a, role=rc.Role.DATA_MANAGER, password=PASSWORD)
    wrong = write_files(tmp_path / "wrong", patients=[PATIENTS[0], {**PATIENTS[1], "diagnosis_date": "03/04/2018"}])
    right = write_files(tmp_path / "right")
    import_page = f"{live}/admin/intake/cohortimport/{study.pk}/change/"

    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(20_000)
    page = context.new_page()

    def shot(name):
        path = artifacts / f"import-{language}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, f"/tmp/import-{language}-{name}.png")

    def run_queued_job():
        job_id = queued[-1]
        import_job_run(job_id=job_id)
        page.wait_for_function("() => !document.querySelector('div.import-progress')", timeout=20_000)
        return ImportJob.objects.get(pk=job_id)

    try:
        sign_in(page, live, manager.username, PASSWORD, language)

        # 1. A file with a date written day or month first: the check names the file, row, column and rule.
        page.goto(import_page)
        page.set_input_files("input[name=files]", wrong)
        with page.expect_navigation():
            page.click(f'input[name=check][value="{words["check"]}"]')
        assert words["waiting"] in page.locator(".import-state").inner_text()
        run_queued_job()
        assert words["problem"] in page.locator("p.errornote").inner_text()
        # The wrong date is the first problem; the rows of the patient it left out follow it.
        row = page.locator("table.import-problems tbody tr").first.inner_text()
        assert "patients.csv" in row and "diagnosis_date" in row and "ambiguous_date" in row, row
        assert words["ambiguous"] in row and "03/04/2018" in row
        assert page.locator(f'input[value="{words["import"]}"]').count() == 0
        shot("1-problem")

        # 2. The right files: the check's page moves while the check runs, then offers the import.
        page.goto(import_page)
        page.set_input_files("input[name=files]", right)
        with page.expect_navigation():
            page.click('input[name="check"]')
        seen = []
        run = jobs.cohort_import

        def watched(**kwargs):
            def progress(file, done, total):
                kwargs_progress(file, done, total)
                if file == "patients.csv" and done == 2 and not seen:
                    page.wait_for_function(
                        "(text) => document.querySelector('.import-rows').textContent.includes(text)",
                        arg=words["rows"],
                        timeout=15_000,
                    )
                    seen.append(page.evaluate("() => document.querySelector('progress').value"))
                    shot("2-running")

            kwargs_progress = kwargs["progress"]
            return run(**{**kwargs, "progress": progress})

        monkeypatch.setattr(jobs, "cohort_import", watched)
        check = run_queued_job()
        assert seen == [2], "the page showed the rows read while the check ran"
        assert check.dry_run and check.state == "done"
        assert words["clean"] in page.locator("p.success").inner_text()
        assert not Patient.objects.exists()
        shot("3-checked")

        # 3. Import the checked files without giving them again.
        with page.expect_navigation():
            page.click(f'input[value="{words["import"]}"]')
        imported = run_queued_job()
        assert not imported.dry_run and imported.state == "done"
        assert words["imported"] in page.locator("p.success").inner_text()
        assert Patient.objects.filter(study=study).count() == 2
        assert Visit.objects.filter(patient__study=study, outcome="completed").count() == 5
        shot("4-imported")

        # 4. The import page lists the three jobs, the newest first.
        page.goto(import_page)
        states = page.locator("table.import-jobs tbody tr").all_inner_texts()
        assert len(states) == 3 and all(words["done"] in s for s in states), states
        shot("5-jobs")
    finally:
        context.close()
