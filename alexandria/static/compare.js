/* The compare page's parallel coordinates: one line per run across the parameters that differ, coloured by
 * the metric the user picks (its last value, min or max per run), the metric's own axis last.
 *
 * Drawn with plotly's SVG scatter, not its parcoords trace: parcoords draws through WebGL with regl, which
 * compiles code at run time, and the pages' Content-Security-Policy allows no eval. Each axis is scaled to
 * 0..1 (numeric: its min..max; categorical: its sorted levels), its labels are annotations. The axes and
 * the default colouring come in the page data (ui/data.py parallel_data; labels already escaped for plotly,
 * tick labels plain text, escaped here); another metric's values are fetched from /api/compare/metric.
 * Where tests find the data: the trace with meta.role "colour" has marker.color = the metric per run (null:
 * none), in page.parallel.run_ids' order; a run's line has meta {role: "run", run_id} and line.color. */
"use strict";

(function () {
  const A = window.Alexandria;
  const pc = A && A.page.parallel;
  const div = document.getElementById("parallel");
  if (!pc || !div) return;
  const metricSelect = document.getElementById("pc-metric");
  const aggSelect = document.getElementById("pc-agg");
  const error = document.getElementById("pc-error");
  const enc = encodeURIComponent;
  const labels = new Map((A.page.runs || []).map((r) => [r.id, r.label]));

  /* plotly's Viridis, given to the colour bar as well: the lines and the bar use the same scale. */
  const VIRIDIS = [
    "#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
    "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725",
  ];
  const SCALE = VIRIDIS.map((c, i) => [i / (VIRIDIS.length - 1), c]);
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  function colourAt(t) {
    const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    const a = rgb(VIRIDIS[i]), b = rgb(VIRIDIS[i + 1]), f = x - i;
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(",")})`;
  }

  /* An axis: per run its position in 0..1 and its text; tick annotations for the axis at x. */
  function axis(d, x) {
    const values = d.values;
    if (d.ticktext) {
      const top = Math.max(1, d.ticktext.length - 1);
      const pos = (v) => (d.ticktext.length === 1 ? 0.5 : v / top);
      const ticks = d.ticktext.map((t, i) => ({ y: pos(i), text: A.plotlyText(t) }));
      return { label: d.label, y: values.map(pos), text: values.map((v) => A.plotlyText(d.ticktext[v])), ticks, x };
    }
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    const lo = finite.length ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
    const pos = (v) => (v === null || !Number.isFinite(v) ? null : hi === lo ? 0.5 : (v - lo) / (hi - lo));
    const ticks =
      hi === lo ? [{ y: 0.5, text: A.fmtNum(lo) }] : [0, 0.5, 1].map((t) => ({ y: t, text: A.fmtNum(lo + (hi - lo) * t) }));
    return { label: d.label, y: values.map(pos), text: values.map((v) => A.fmtNum(v)), ticks, x };
  }

  function draw(key, agg, values) {
    const axes = pc.dims.map((d, i) => axis(d, i));
    const coloured = Boolean(key && values);
    if (coloured) axes.push(axis({ label: A.plotlyText(`${key} (${agg})`), values }, axes.length));
    const finite = coloured ? values.filter((v) => v !== null) : [];
    const lo = finite.length ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
    const traces = pc.run_ids.map((id, r) => {
      const v = coloured ? values[r] : null;
      const colour = v === null ? "rgba(120,120,120,0.55)" : colourAt(hi === lo ? 0.5 : (v - lo) / (hi - lo));
      const name = A.plotlyText(labels.get(id) || id.slice(0, 8));
      return {
        type: "scatter",
        mode: "lines",
        x: axes.map((a) => a.x),
        y: axes.map((a) => a.y[r]),
        text: axes.map((a) => `${a.label}: ${a.text[r]}`),
        name,
        line: { color: colour, width: 1.6 },
        hovertemplate: `${name} ${id.slice(0, 8)}<br>%{text}<extra></extra>`,
        meta: { role: "run", run_id: id },
      };
    });
    if (coloured) {
      traces.push({
        type: "scatter",
        mode: "markers",
        x: pc.run_ids.map(() => axes.length - 1),
        y: axes[axes.length - 1].y,
        hoverinfo: "skip",
        marker: {
          color: values,
          colorscale: SCALE,
          cmin: lo,
          cmax: hi,
          size: 6,
          showscale: true,
          colorbar: { title: { text: A.plotlyText(`${key} (${agg})`) } },
        },
        meta: { role: "colour", metric: key, agg, run_ids: pc.run_ids },
      });
    }
    const shapes = axes.map((a) => ({ type: "line", x0: a.x, x1: a.x, y0: 0, y1: 1, line: { color: "#555", width: 1 } }));
    const annotations = [];
    for (const a of axes) {
      annotations.push({ x: a.x, y: 1.04, text: `<b>${a.label}</b>`, showarrow: false, yanchor: "bottom" });
      for (const t of a.ticks) annotations.push({ x: a.x, y: t.y, text: t.text, showarrow: false, xanchor: "right", xshift: -4, font: { size: 11, color: "#444" } });
    }
    const layout = {
      height: 440,
      margin: { l: 70, r: 30, t: 40, b: 20 },
      showlegend: false,
      hovermode: "closest",
      xaxis: { visible: false, range: [-0.6, Math.max(1, axes.length - 1) + 0.3], fixedrange: true },
      yaxis: { visible: false, range: [-0.06, 1.12], fixedrange: true },
      shapes,
      annotations,
    };
    return Plotly.react(div, traces, layout, { responsive: true, displaylogo: false }).then(() => {
      div.dataset.metric = key || "";
      div.dataset.agg = agg;
      div.dataset.drawn = String(Number(div.dataset.drawn || 0) + 1);
    });
  }

  const cache = new Map([[`${pc.metric}\u0000${pc.agg}`, pc.values]]);
  async function pick() {
    const key = metricSelect.value;
    const agg = aggSelect.value;
    const id = `${key}\u0000${agg}`;
    try {
      if (!cache.has(id)) {
        const url = `/api/compare/metric?run=${pc.run_ids.map(enc).join(",")}&key=${enc(key)}&agg=${enc(agg)}`;
        cache.set(id, (await A.getJSON(url)).values);
      }
      error.hidden = true;
      await draw(key, agg, cache.get(id));
    } catch (err) {
      error.textContent = `could not colour by ${key} (${agg}): ${err.message}`;
      error.hidden = false;
    }
  }

  draw(pc.metric, pc.agg, pc.values);
  if (metricSelect) metricSelect.addEventListener("change", pick);
  if (aggSelect) aggSelect.addEventListener("change", pick);
})();
