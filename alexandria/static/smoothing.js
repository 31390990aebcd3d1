/* The one smoothing of every chart, the dashboard's and the offline reports': figures.smooth in JavaScript.
 * TensorBoard's exponential moving average with weight w in [0, 1), debiased (divided by 1 - w**n, so the
 * first points are not pulled towards 0); null, NaN and infinities pass through and do not enter the average.
 * Loaded as a file by the dashboard's chart pages, inlined by pages.py into each report before report.js. */
(function (root) {
  "use strict";
  function smooth(values, weight) {
    var last = 0;
    var n = 0;
    return values.map(function (v) {
      if (typeof v !== "number" || !Number.isFinite(v)) return v;
      last = last * weight + (1 - weight) * v;
      n += 1;
      return last / (1 - Math.pow(weight, n));
    });
  }
  root.AlexandriaSmoothing = { smooth: smooth };
})(window);
