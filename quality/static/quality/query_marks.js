// Marks each field of a record's page that has an open query: a badge after the field's label, with the
// number of open queries (from the "query-marks" JSON the page carries).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = document.getElementById("query-marks");
    if (!data) { return; }
    var marks = JSON.parse(data.textContent);
    var title = document.getElementById("query-panel").dataset.markTitle || "";
    var marked = new Set();
    Object.keys(marks).forEach(function (name) {
      document.querySelectorAll(".field-" + CSS.escape(name)).forEach(function (box) {
        // A row holding several fields carries each field's class too: mark the field's own label once.
        var label = box.querySelector("label[for='id_" + name + "']") || box.querySelector("label") || box;
        if (marked.has(label)) { return; }
        marked.add(label);
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
