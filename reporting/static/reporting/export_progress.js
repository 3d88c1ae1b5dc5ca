// Study exports in the admin: while the page is open, each unfinished job's progress (a span with
// data-progress-url, reporting/admin.py ExportJobAdmin.progress_percent) is read again every few seconds from
// its JSON view, with its state (the list's column, or the job page's field); when a job finishes the page
// reloads to show its state and download link.
"use strict";
(function () {
  const INTERVAL_MS = 3000;

  function poll(span) {
    fetch(span.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (job) {
        span.textContent = job.progress + "%";
        span.dataset.state = job.state;
        const row = span.closest("tr");
        const state = row ? row.querySelector("td.field-state") : document.querySelector(".field-state .readonly");
        if (state && job.state_label) state.textContent = job.state_label;
        if (job.finished) {
          window.location.reload();
        } else {
          window.setTimeout(function () { poll(span); }, INTERVAL_MS);
        }
      })
      .catch(function () {
        window.setTimeout(function () { poll(span); }, INTERVAL_MS * 5);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("span.export-progress[data-progress-url]").forEach(function (span) {
      window.setTimeout(function () { poll(span); }, INTERVAL_MS);
    });
  });
})();
