(function () {
  var ema = window.AlexandriaSmoothing.smooth; // static/smoothing.js, inlined before this script
  var range = document.getElementById("smoothing"), number = document.getElementById("smoothing-value");
  /* Each line's unsmoothed values: its customdata column 0, or, in a figure of many runs (no customdata),
   * its y as written (unsmoothed), kept before the first restyle. */
  var lines = [], unsmoothedY = false;
  document.querySelectorAll(".curves").forEach(function (gd) {
    var idx = [], raw = [];
    (gd.data || []).forEach(function (t, i) {
      if (!(t.meta && t.meta.role === "line")) return;
      idx.push(i);
      if (t.customdata) raw.push(t.customdata.map(function (c) { return c[0]; }));
      else { raw.push(t.y.slice()); unsmoothedY = true; }
    });
    if (idx.length) lines.push({gd: gd, idx: idx, raw: raw});
  });
  function apply(w) {
    lines.forEach(function (f) {
      var gd = f.gd, idx = f.idx, ys = f.raw.map(function (r) { return ema(r, w); });
      Plotly.restyle(gd, {y: ys}, idx);
    });
  }
  function set(v) {
    var w = Math.min(0.999, Math.max(0, Number(v) || 0));
    range.value = w; number.value = w; apply(w);
  }
  range.addEventListener("input", function () { set(range.value); });
  number.addEventListener("change", function () { set(number.value); });
  if (unsmoothedY && Number(number.value) > 0) set(number.value);
})();
