// Marks each field of a record's page that has an open query: a badge after the field's label, with the
// number of open queries (from the "query-marks" JSON the page carries).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = document.getElementById("query-marks");
    if (!data) { return; }
    var marks = JSON.parse(data.textContent);
    var title = document.getElementById("query-panel").dataset.markTitle || "";
    Object.keys(marks).forEach(function (name) {
      document.querySelectorAll(".field-" + CSS.escape(name)).forEach(function (box) {
        var label = box.querySelector("label") || box;
        var badge = document.createElement("span");
        badge.className = "query-mark";
        badge.textContent = "? " + marks[name];
        badge.title = title;
        badge.style.cssText = "background:#ba2121;color:#fff;border-radius:8px;padding:0 6px;margin-left:4px;font-size:11px";
        label.appendChild(badge);
      });
    });
  });
})();
