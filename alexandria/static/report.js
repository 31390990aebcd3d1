(function () {
  function ema(ys, w) {
    var last = 0, n = 0;
    return ys.map(function (y) {
      if (typeof y !== "number" || !Number.isFinite(y)) return y;
      last = last * w + (1 - w) * y; n += 1;
      return last / (1 - Math.pow(w, n));
    });
  }
  var range = document.getElementById("smoothing"), number = document.getElementById("smoothing-value");
  function apply(w) {
    document.querySelectorAll(".curves").forEach(function (gd) {
      var idx = [], ys = [];
      (gd.data || []).forEach(function (t, i) {
        if (t.meta && t.meta.role === "line") {
          idx.push(i);
          ys.push(ema(t.customdata.map(function (c) { return c[0]; }), w));
        }
      });
      if (idx.length) Plotly.restyle(gd, {y: ys}, idx);
    });
  }
  function set(v) {
    var w = Math.min(0.999, Math.max(0, Number(v) || 0));
    range.value = w; number.value = w; apply(w);
  }
  range.addEventListener("input", function () { set(range.value); });
  number.addEventListener("change", function () { set(number.value); });
})();
