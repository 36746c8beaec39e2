// Sends a DICOM upload with each file's folder path (browsers drop it from file names), so that
// a CD/USB folder with a DICOMDIR keeps its tree. Without this script the form still works
// (folders arrive flattened).
(function () {
  "use strict";
  function wire(form) {
    if (form.dataset.wired) return;
    form.dataset.wired = "1";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData();
      data.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      var loose = form.querySelector("input[name=files]").files;
      for (var i = 0; i < loose.length; i++) { data.append("files", loose[i]); data.append("paths", ""); }
      var folder = form.querySelector("input[name=folder]").files;
      for (var j = 0; j < folder.length; j++) {
        data.append("files", folder[j]);
        data.append("paths", folder[j].webkitRelativePath || "");
      }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      fetch(form.action, { method: "POST", body: data, headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) {
          var section = document.getElementById("imaging");
          section.outerHTML = html;
          document.querySelectorAll("form[data-dicom-upload]").forEach(wire);
        })
        .catch(function () { button.disabled = false; form.submit(); });
    });
  }
  function init() { document.querySelectorAll("form[data-dicom-upload]").forEach(wire); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
