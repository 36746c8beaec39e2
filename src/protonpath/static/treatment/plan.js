// The plan page's slice slider: shows the dose over the chosen CT slice (no inline script: the
// Content-Security-Policy allows scripts from the site's own files only).
document.addEventListener("DOMContentLoaded", () => {
  const range = document.getElementById("slice-range");
  const image = document.getElementById("dose-slice");
  const number = document.getElementById("slice-no");
  if (!range || !image) return;
  const template = range.dataset.sliceUrl; // ends in /0.png
  range.addEventListener("input", () => {
    image.src = template.replace(/\/0\.png$/, "/" + range.value + ".png");
    if (number) number.textContent = String(Number(range.value) + 1);
  });
});
