// The cohort report page while a worker computes the report (reporting/report_page.py): the status view named
// by the message's data-status-url (reporting/admin.py CohortReportAdmin.status_view) is read every 2 seconds;
// once it answers anything but "computing" or "busy" (the report is ready, it is no longer claimed, or it failed) the page
// reloads and shows what there is. As reporting/static/reporting/export_progress.js does for the exports.
"use strict";
(function () {
  const INTERVAL_MS = 2000;

  function poll(element) {
    fetch(element.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        // Not JSON: the session ended and the sign-in page answered; reloading shows it.
        if (!(response.headers.get("Content-Type") || "").includes("application/json")) return { state: "signed-out" };
        return response.json();
      })
      .then(function (status) {
        if (status.state === "computing" || status.state === "busy") {
          window.setTimeout(function () { poll(element); }, INTERVAL_MS);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        window.setTimeout(function () { poll(element); }, INTERVAL_MS * 5);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const element = document.querySelector(".report-status[data-status-url]");
    if (element) window.setTimeout(function () { poll(element); }, INTERVAL_MS);
  });
})();
