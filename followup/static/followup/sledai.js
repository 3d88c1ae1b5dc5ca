// Live SLEDAI-2K total on the visit page: the sum of the weights of the ticked items.
(function () {
  "use strict";
  function setup() {
    var boxes = document.querySelectorAll('input[name="sledai_items"]');
    if (!boxes.length) { return; }
    var weights = JSON.parse(boxes[0].getAttribute("data-sledai-weights") || "{}");
    var template = boxes[0].getAttribute("data-sledai-total-text") || "SLEDAI-2K total: %(total)s / %(max)s";
    var assessed = document.querySelector('input[name="sledai_assessed"]');
    var total = document.createElement("p");
    total.id = "sledai-live-total";
    total.setAttribute("aria-live", "polite");
    total.style.fontWeight = "bold";
    var anchor = boxes[boxes.length - 1].closest("div.form-row, div.fieldBox, fieldset") || boxes[0].parentNode;
    anchor.parentNode.insertBefore(total, anchor.nextSibling);
    function update() {
      var sum = 0, ticked = 0;
      boxes.forEach(function (box) { if (box.checked) { sum += weights[box.value] || 0; ticked += 1; } });
      if (ticked && assessed && !assessed.checked) { assessed.checked = true; }
      total.textContent = template.replace("%(total)s", String(sum)).replace("%(max)s", "105");
      total.setAttribute("data-total", String(sum));
    }
    boxes.forEach(function (box) { box.addEventListener("change", update); });
    update();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setup); } else { setup(); }
})();
