(function () {
  var ema = window.AlexandriaSmoothing.smooth; // static/smoothing.js, inlined before this script
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
