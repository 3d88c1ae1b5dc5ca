// An import's page while the import waits or runs (intake/admin.py CohortImportAdmin.job_view): its progress
// is read again every few seconds from the job's JSON view; when the import ends the page reloads to show
// the report.
"use strict";
(function () {
  const INTERVAL_MS = 2000;

  function show(box, job) {
    box.dataset.state = job.state;
    box.querySelector(".import-state").textContent = job.state_label;
    const bar = box.querySelector("progress");
    bar.max = job.total || 1;
    bar.value = job.done;
    box.querySelector(".import-rows").textContent = job.total
      ? box.dataset.rowsText.replace("{file}", job.file).replace("{done}", job.done).replace("{total}", job.total)
      : "";
  }

  function poll(box) {
    fetch(box.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (job) {
        if (job.finished) {
          window.location.reload();
          return;
        }
        show(box, job);
        window.setTimeout(function () { poll(box); }, INTERVAL_MS);
      })
      .catch(function () {
        window.setTimeout(function () { poll(box); }, INTERVAL_MS * 5);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("div.import-progress[data-progress-url]").forEach(function (box) {
      window.setTimeout(function () { poll(box); }, INTERVAL_MS);
    });
  });
})();
