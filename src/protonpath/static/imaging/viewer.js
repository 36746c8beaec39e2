// DICOM slice viewer: plain script, no build step. The server renders each slice as a PNG with
// the chosen window (centre/width in modality units: HU for CT) and gives RTSTRUCT contours in
// each slice's pixel coordinates; this draws the image on a canvas and the contours over it.
// Scroll: mouse wheel, slider, arrow keys / PageUp / PageDown / Home / End; drag to set the window.
(function () {
  "use strict";

  function Viewer(root) {
    this.root = root;
    this.canvas = root.querySelector("#slice-canvas");
    this.context = this.canvas.getContext("2d");
    this.slider = root.querySelector("#slice-slider");
    this.label = root.querySelector("#slice-label");
    this.centerInput = root.querySelector("#wl-center");
    this.widthInput = root.querySelector("#wl-width");
    this.showContours = root.querySelector("#show-contours");
    this.error = root.querySelector("#viewer-error");
    this.slices = [];
    this.contours = {};
    this.index = 0;
    this.window = null; // null: the window stored in the file
    this.cache = {};
    this.requested = 0;
  }

  Viewer.prototype.start = function () {
    var self = this;
    fetch(this.root.dataset.slices, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        self.slices = data.slices;
        self.slider.max = Math.max(0, data.slices.length - 1);
        var first = data.presets["soft tissue"];
        if (first) self.setWindow(first.center, first.width, "soft tissue");
        self.index = Math.floor(data.slices.length / 2);
        self.show(self.index);
        return fetch(data.contours, { credentials: "same-origin" });
      })
      .then(function (r) { return r.ok ? r.json() : { slices: {}, structures: [] }; })
      .then(function (data) {
        self.contours = data.slices || {};
        self.listStructures(data.structures || []);
        self.root.dataset.contoursLoaded = "1";
        self.draw();
      })
      .catch(function (e) { self.fail("Could not load the series (" + e.message + ")"); });
    this.bind();
  };

  Viewer.prototype.fail = function (message) {
    this.error.hidden = false;
    this.error.textContent = message;
  };

  Viewer.prototype.bind = function () {
    var self = this;
    this.canvas.addEventListener("wheel", function (event) {
      event.preventDefault();
      self.show(self.index + (event.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    this.slider.addEventListener("input", function () { self.show(parseInt(self.slider.value, 10)); });
    this.root.addEventListener("keydown", function (event) {
      var steps = { ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10 };
      if (event.target.tagName === "INPUT" && event.target.type === "number") return;
      if (event.key in steps) { event.preventDefault(); self.show(self.index + steps[event.key]); }
      else if (event.key === "Home") { event.preventDefault(); self.show(0); }
      else if (event.key === "End") { event.preventDefault(); self.show(self.slices.length - 1); }
    });
    this.root.querySelectorAll(".preset").forEach(function (button) {
      button.addEventListener("click", function () {
        if (button.dataset.preset === "default") self.setWindow(null, null, "default");
        else self.setWindow(parseFloat(button.dataset.center), parseFloat(button.dataset.width), button.dataset.preset);
        self.show(self.index);
      });
    });
    [this.centerInput, this.widthInput].forEach(function (input) {
      input.addEventListener("change", function () {
        var c = parseFloat(self.centerInput.value), w = parseFloat(self.widthInput.value);
        if (!isNaN(c) && !isNaN(w) && w >= 1) { self.setWindow(c, w, "custom"); self.show(self.index); }
      });
    });
    this.showContours.addEventListener("change", function () { self.draw(); });
    // Drag on the image to set the window: right/left changes the width, up/down the centre.
    var drag = null;
    this.canvas.addEventListener("mousedown", function (event) {
      if (event.button !== 0) return;
      event.preventDefault();
      var c = parseFloat(self.centerInput.value), w = parseFloat(self.widthInput.value);
      drag = { x: event.clientX, y: event.clientY, center: isNaN(c) ? 40 : c, width: isNaN(w) ? 400 : w };
    });
    window.addEventListener("mousemove", function (event) {
      if (!drag) return;
      var width = Math.max(1, Math.round(drag.width + (event.clientX - drag.x) * 4));
      var center = Math.round(drag.center - (event.clientY - drag.y) * 2);
      self.centerInput.value = center;
      self.widthInput.value = width;
    });
    window.addEventListener("mouseup", function () {
      if (!drag) return;
      drag = null;
      var c = parseFloat(self.centerInput.value), w = parseFloat(self.widthInput.value);
      self.setWindow(c, w, "custom");
      self.show(self.index);
    });
  };

  Viewer.prototype.setWindow = function (center, width, preset) {
    this.window = center === null ? null : { center: center, width: width };
    this.centerInput.value = center === null ? "" : center;
    this.widthInput.value = width === null ? "" : width;
    this.root.dataset.preset = preset;
    this.root.querySelectorAll(".preset").forEach(function (b) { b.classList.toggle("active", b.dataset.preset === preset); });
  };

  Viewer.prototype.imageUrl = function (slice) {
    if (!this.window) return slice.image;
    return slice.image + "?center=" + encodeURIComponent(this.window.center) + "&width=" + encodeURIComponent(this.window.width);
  };

  Viewer.prototype.show = function (index) {
    if (!this.slices.length) return;
    var self = this;
    this.index = Math.max(0, Math.min(this.slices.length - 1, index));
    this.slider.value = this.index;
    var slice = this.slices[this.index];
    var position = slice.position_mm === null ? "" : " · " + slice.position_mm.toFixed(1) + " mm";
    this.label.textContent = (this.index + 1) + " / " + this.slices.length + position;
    this.root.dataset.index = this.index;
    var url = this.imageUrl(slice);
    var ticket = ++this.requested;
    var image = this.cache[url];
    if (image && image.complete) { this.image = image; this.draw(); return; }
    image = new Image();
    image.onload = function () {
      if (ticket !== self.requested) return;
      self.image = image;
      self.root.dataset.loadedUrl = url;
      self.draw();
    };
    image.onerror = function () { self.fail("This slice could not be shown."); };
    image.src = url;
    this.cache[url] = image;
  };

  Viewer.prototype.draw = function () {
    if (!this.image) return;
    var ctx = this.context, image = this.image;
    if (this.canvas.width !== image.naturalWidth || this.canvas.height !== image.naturalHeight) {
      this.canvas.width = image.naturalWidth;
      this.canvas.height = image.naturalHeight;
    }
    ctx.drawImage(image, 0, 0);
    var slice = this.slices[this.index];
    var drawn = this.showContours.checked ? (this.contours[String(slice.instance)] || []) : [];
    ctx.lineWidth = Math.max(1, image.naturalWidth / 400);
    drawn.forEach(function (structure) {
      ctx.strokeStyle = "rgb(" + structure.colour.join(",") + ")";
      structure.polygons.forEach(function (polygon) {
        ctx.beginPath();
        polygon.forEach(function (point, i) {
          // Pixel centres are at integer coordinates; canvas pixels span [i, i+1).
          if (i === 0) ctx.moveTo(point[0] + 0.5, point[1] + 0.5); else ctx.lineTo(point[0] + 0.5, point[1] + 0.5);
        });
        ctx.closePath();
        ctx.stroke();
      });
    });
    this.root.dataset.contoursDrawn = drawn.reduce(function (n, s) { return n + s.polygons.length; }, 0);
  };

  Viewer.prototype.listStructures = function (structures) {
    var list = this.root.querySelector("#structures");
    list.textContent = "";
    structures.forEach(function (s) {
      var item = document.createElement("li");
      var swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = "rgb(" + s.colour.join(",") + ")";
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      list.appendChild(item);
    });
  };

  function init() {
    var root = document.getElementById("viewer");
    if (root) new Viewer(root).start();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
