// A filter box above each list of countries (select[data-country-filter]): typing any part of a
// name, in the reader's language, or an ISO code narrows the list, without case or accents; one
// match left is chosen. Without this script the select works as it is (type the first letters).
(function () {
  "use strict";
  function fold(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }
  function wire(select) {
    if (select.dataset.filterWired) return;
    select.dataset.filterWired = "1";
    var box = document.createElement("input");
    box.type = "search";
    box.className = "country-filter";
    box.placeholder = select.dataset.filterLabel || "";
    box.setAttribute("aria-label", select.dataset.filterLabel || "");
    box.setAttribute("aria-controls", select.id);
    box.autocomplete = "off";
    select.parentNode.insertBefore(box, select);
    box.addEventListener("input", function () {
      var wanted = fold(box.value.trim());
      var matches = [];
      for (var i = 0; i < select.options.length; i++) {
        var option = select.options[i];
        var hit = !wanted || (option.value &&
          (fold(option.text).indexOf(wanted) !== -1 || option.value.toLowerCase() === wanted));
        option.hidden = !hit;
        if (hit && option.value) matches.push(option);
      }
      if (wanted && matches.length === 1) {
        select.value = matches[0].value;
        select.dispatchEvent(new Event("change", { bubbles: true }));
      } else if (wanted && matches.length && select.selectedOptions.length && select.selectedOptions[0].hidden) {
        select.value = matches[0].value;
      }
      select.size = wanted && matches.length > 1 ? Math.min(matches.length + 1, 8) : 0;
    });
    select.addEventListener("change", function () { select.size = 0; });
  }
  function init() { document.querySelectorAll("select[data-country-filter]").forEach(wire); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
  document.addEventListener("htmx:afterSwap", init);
})();
