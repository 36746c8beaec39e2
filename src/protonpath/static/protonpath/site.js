// Behaviour that the pages would otherwise write inline (the Content-Security-Policy forbids
// inline scripts): a <select data-autosubmit> sends its form when it changes.
document.addEventListener("change", function (event) {
  var target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
    target.form.requestSubmit ? target.form.requestSubmit() : target.form.submit();
  }
});
