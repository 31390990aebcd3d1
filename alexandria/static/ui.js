/* Alexandria dashboard: draws the charts and keeps the pages current without reloading them.
 *
 * The pages' Content-Security-Policy allows no inline script: what a page needs comes as JSON in
 * <script type="application/json" id="page-data">. Text from the server is always set with
 * textContent, never as HTML. Charts re-fetch a metric, downsampled by the server, and redraw with
 * Plotly.react; a zoomed chart fetches only the range it shows. The run and compare pages' charts share one
 * toolbar (ChartToolbar: smoothing, log y, the x axis, linked zoom, metric search, the legend), whose state
 * is in the page's query string. */
"use strict";

(function () {
  const source = document.getElementById("page-data");
  const page = source ? JSON.parse(source.textContent || "{}") : {};
  const BUCKETS = 1000;
  const enc = encodeURIComponent;

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  function fmtNum(v) {
    if (v === null || v === undefined) return "nan";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  }

  /* User text as a plotly trace name: plotly renders names as pseudo-HTML (<a href> becomes a link), so
   * &, < and > are escaped, as pages.plotly_text does on the server (not quotes: plotly does not decode them). */
  function plotlyText(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function pad(n, width = 2) {
    return String(n).padStart(width, "0");
  }

  /* Wall-clock x (unix seconds) as plotly date strings in the browser's time zone. */
  function localTime(seconds) {
    if (seconds === null) return null;
    const d = new Date(seconds * 1000);
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
    );
  }

  function fromAxis(value, kind) {
    if (kind === "time") return Date.parse(String(value).replace(" ", "T")) / 1000;
    return Number(value);
  }

  function metricURL(runId, key, range, xKind, buckets) {
    let url = `/api/run/${enc(runId)}/metric/${enc(key)}?buckets=${buckets || BUCKETS}`;
    if (range) url += `&x=${xKind}&start=${range[0]}&end=${range[1]}`;
    return url;
  }

  function xValues(d) {
    return d.x_kind === "time" ? d.x.map(localTime) : d.x;
  }

  /* A colour with an alpha: "#rrggbb" to rgba(). */
  function rgba(color, alpha) {
    const c = String(color).replace("#", "");
    const [r, g, b] = [0, 2, 4].map((i) => parseInt(c.slice(i, i + 2), 16));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  /* The line as drawn: smoothed (static/smoothing.js, THE definition, as figures.smooth) when asked. */
  function smoothed(ys, weight) {
    return weight > 0 ? window.AlexandriaSmoothing.smooth(ys, weight) : ys;
  }

  /* A bucket response's x in the toolbar's kind: steps, wall-clock dates, or seconds since `origin`. */
  function xAxisValues(d, xMode, origin) {
    if (xMode === "relative" && d.x_kind === "time") return d.x.map((t) => (t === null ? null : t - origin));
    return xValues(d);
  }

  /* One metric of one run: the min..max envelope of each bucket, drawn as thin max and min lines with the band
   * filled between them (so a one-point spike among millions, and a bucket where min == max, is seen), and
   * the last value in it; with smoothing, the raw line stays faint behind the smoothed one. Traces carry
   * meta.role: max, band, raw, line. */
  function envelopeTraces(d, name, view = {}, origin = 0, color = "#2563eb") {
    const x = xAxisValues(d, view.x, origin);
    const few = d.x.length <= 100;
    const weight = view.smooth || 0;
    const custom = d.x.map((_, i) => [fmtNum(d.min[i]), fmtNum(d.max[i]), d.count[i], fmtNum(d.last[i])]);
    const edge = { width: 1, color: rgba(color, 0.6) };
    const traces = [
      {
        x,
        y: d.max,
        name: "max",
        mode: "lines",
        line: edge,
        hoverinfo: "skip",
        showlegend: false,
        meta: { role: "max" },
      },
      {
        x,
        y: d.min,
        name: "min–max",
        mode: "lines",
        line: edge,
        fill: "tonexty",
        fillcolor: rgba(color, 0.28),
        hoverinfo: "skip",
        showlegend: false,
        meta: { role: "band" },
      },
    ];
    if (weight > 0) {
      traces.push({
        x,
        y: d.last,
        name: "raw",
        mode: "lines",
        line: { color: rgba(color, 0.35), width: 1 },
        hoverinfo: "skip",
        showlegend: false,
        meta: { role: "raw" },
      });
    }
    traces.push({
      x,
      y: smoothed(d.last, weight),
      name: plotlyText(name),
      mode: few ? "lines+markers" : "lines",
      marker: { size: 5 },
      line: { color, width: 1.5 },
      customdata: custom,
      meta: { role: "line" },
      hovertemplate:
        "%{y}" + (weight > 0 ? " (raw %{customdata[3]})" : "") +
        "<br>min %{customdata[0]}, max %{customdata[1]}<br>%{customdata[2]} point(s)<extra></extra>",
    });
    return traces;
  }

  /* A y that a log axis cannot draw: the chart says how many there are rather than dropping them silently. */
  function nonPositive(values) {
    return values.filter((v) => v !== null && v !== undefined && v <= 0).length;
  }

  class Chart {
    /* `source` is either {fetch(range, view) -> data, build(data, view) -> {traces, xTitle, xType, legend,
     * notes, total}} (the toolbar's charts: a style change redraws from the data fetched, a new x range
     * fetches) or, as before the toolbar, fetchTraces(range, xKind) resolving to {traces, xKind, total, legend}.
     * `view` is the toolbar's state (shared by every chart of the page); `onZoom(range)` links the zoom. */
    constructor(div, source, view = null, onZoom = null) {
      this.div = div;
      this.source = source;
      this.view = view;
      this.onZoom = onZoom;
      this.range = view && view.xrange ? view.xrange : null;
      this.xKind = "step";
      this.data = null;
      this.stale = true;
      this.visible = false;
      this.busy = false;
      this.again = false;
      this.bound = false;
    }

    async draw() {
      if (this.busy) {
        this.again = true;
        return;
      }
      this.busy = true;
      this.stale = false;
      try {
        if (typeof this.source === "function") await this.drawTraces();
        else {
          this.data = await this.source.fetch(this.range, this.view);
          await this.render();
        }
      } catch (err) {
        this.div.dataset.error = String(err);
        console.error(err);
      } finally {
        this.busy = false;
        if (this.again) {
          this.again = false;
          this.draw();
        }
      }
    }

    async drawTraces() {
      const { traces, xKind, total, legend } = await this.source(this.range, this.xKind);
      this.xKind = xKind;
      const layout = {
        uirevision: "keep",
        margin: { l: 60, r: 15, t: legend ? 30 : 10, b: 40 },
        xaxis: { title: { text: xKind }, type: xKind === "time" ? "date" : "linear" },
        hovermode: "closest",
        showlegend: Boolean(legend),
        legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      };
      await Plotly.react(this.div, traces, layout, { responsive: true, displaylogo: false });
      this.div.dataset.total = String(total);
      this.div.dataset.drawn = String(Number(this.div.dataset.drawn || 0) + 1);
      this.bind();
    }

    /* Draw the data fetched last with the toolbar's current style (smoothing, log y, legend): no fetch. */
    async render() {
      if (!this.data) return;
      const v = this.view;
      const built = this.source.build(this.data, v);
      this.xKind = built.xKind || "step";
      const range = this.range && built.xType === "date" ? this.range.map(localTime) : this.range;
      const notes = built.notes || [];
      const legend = Boolean(built.legend) && v.legend;
      const layout = {
        uirevision: JSON.stringify([v.x, v.logy, this.range]), // a new x, y or range applies; else the user zoom stays
        margin: { l: 60, r: 15, t: notes.length ? 28 : 10, b: 40 },
        xaxis: { title: { text: built.xTitle }, type: built.xType, ...(range ? { range } : { autorange: true }) },
        yaxis: { type: v.logy ? "log" : "linear", autorange: true },
        hovermode: "closest",
        showlegend: legend,
        legend: { orientation: "v", x: 1.02, xanchor: "left", y: 1, font: { size: 11 } },
        annotations: notes.map((text, i) => ({
          text: plotlyText(text),
          xref: "paper",
          yref: "paper",
          x: 0,
          y: 1,
          yshift: 14 * i,
          xanchor: "left",
          yanchor: "bottom",
          showarrow: false,
          font: { size: 11, color: "#b45309" },
        })),
      };
      if (legend) layout.margin.r = 10;
      const config = { responsive: true, displaylogo: false, doubleClick: "autosize" }; // double-click: all of x
      await Plotly.react(this.div, built.traces, layout, config);
      this.div.dataset.total = String(built.total);
      this.div.dataset.notes = notes.join("\n");
      this.div.dataset.drawn = String(Number(this.div.dataset.drawn || 0) + 1); // tests wait on it
      this.bind();
      if (this.afterRender) this.afterRender(this);
    }

    bind() {
      if (this.bound) return;
      this.bound = true;
      this.div.on("plotly_relayout", (event) => this.zoomed(event));
      if (this.onHover) {
        this.div.on("plotly_hover", (event) => this.onHover(event.points[0]));
        this.div.on("plotly_unhover", () => this.onHover(null));
      }
    }

    zoomed(event) {
      let range = null;
      if (!event["xaxis.autorange"]) {
        const r = event["xaxis.range"] || [event["xaxis.range[0]"], event["xaxis.range[1]"]];
        if (r[0] === undefined || r[1] === undefined) return;
        range = [fromAxis(r[0], this.xKind), fromAxis(r[1], this.xKind)];
      }
      if (this.onZoom) {
        this.onZoom(range);
        return;
      }
      this.range = range;
      this.draw();
    }

    /* Redraw now if on screen, else as soon as it scrolls into view. */
    refresh() {
      this.stale = true;
      if (this.visible) this.draw();
    }

    /* Restyle without fetching: now if drawn and on screen, else at its next draw. */
    restyle() {
      if (this.data && this.visible) this.render();
      else this.stale = true;
    }
  }

  /* Whether a metric key matches the toolbar's search: a glob when it has * or ?, else a substring (both
   * ignoring case). */
  function keyMatcher(text) {
    const q = String(text || "").trim().toLowerCase();
    if (!q) return () => true;
    if (!/[*?]/.test(q)) return (key) => key.toLowerCase().includes(q);
    const pattern = q.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
    const re = new RegExp(`^${pattern}$`);
    return (key) => re.test(key.toLowerCase());
  }

  const VIEW_DEFAULTS = { smooth: 0, logy: false, x: "step", metrics: "", legend: true, xrange: null };

  /* The chart toolbar of the run and the compare page: its state starts from the server's reading of the
   * query string (page.view, ui/data.py ChartView) and is written back into it as it changes (a view to share,
   * that survives a reload); every chart of the page shares it. Zooming one chart zooms them all. */
  class ChartToolbar {
    constructor(view) {
      this.view = { ...VIEW_DEFAULTS, ...(view || {}) };
      this.charts = [];
      this.el = (id) => document.getElementById(id);
      const on = (id, type, fn) => {
        const el = this.el(id);
        if (el) el.addEventListener(type, fn);
      };
      on("ct-metrics", "input", () => this.set({ metrics: this.el("ct-metrics").value }, "metrics"));
      on("ct-smooth", "input", () => this.setSmooth(this.el("ct-smooth").value));
      on("ct-smooth-value", "change", () => this.setSmooth(this.el("ct-smooth-value").value));
      on("ct-logy", "change", () => this.set({ logy: this.el("ct-logy").checked }, "style"));
      on("ct-legend", "change", () => this.set({ legend: this.el("ct-legend").checked }, "style"));
      on("ct-x", "change", () => this.set({ x: this.el("ct-x").value, xrange: null }, "fetch"));
    }

    setSmooth(text) {
      const w = Math.min(0.999, Math.max(0, Number(text) || 0));
      this.el("ct-smooth").value = String(w);
      this.el("ct-smooth-value").value = String(w);
      this.set({ smooth: w }, "style");
    }

    add(chart) {
      this.charts.push(chart);
      chart.view = this.view;
      chart.range = this.view.xrange;
      chart.onZoom = (range) => this.zoom(range);
      return chart;
    }

    /* One chart's x range (null: the whole range) for every chart of the page, each fetching its buckets. */
    zoom(range) {
      this.set({ xrange: range }, "fetch");
    }

    set(changes, what) {
      Object.assign(this.view, changes);
      this.writeURL();
      if (what === "metrics") this.filter();
      for (const chart of this.charts) {
        chart.range = this.view.xrange;
        if (what === "fetch") chart.refresh();
        else if (what === "style") chart.restyle();
      }
      if (what === "fetch" && this.onX) this.onX();
    }

    writeURL() {
      const q = new URLSearchParams(window.location.search);
      const v = this.view;
      const put = (name, value, byDefault) => (value === byDefault ? q.delete(name) : q.set(name, value));
      put("smooth", v.smooth ? String(v.smooth) : "", "");
      put("logy", v.logy ? "1" : "", "");
      put("x", v.x, "step");
      put("metrics", v.metrics, "");
      put("legend", v.legend ? "" : "0", "");
      put("xrange", v.xrange ? v.xrange.map((n) => String(Number(n.toPrecision(12)))).join(",") : "", "");
      const text = q.toString();
      const { pathname, hash } = window.location;
      window.history.replaceState(null, "", `${pathname}${text ? "?" : ""}${text}${hash}`);
    }

    /* Show only the metrics the search matches (charts, value cards and value rows), and say how many. */
    filter() {
      const match = keyMatcher(this.view.metrics);
      const items = document.querySelectorAll("#charts .chart-box, #values .value-card, #compare-values tbody tr");
      const keys = new Set();
      const shown = new Set();
      for (const item of items) {
        const key = item.dataset.key;
        keys.add(key);
        const ok = match(key);
        item.classList.toggle("filtered-out", !ok);
        if (ok) shown.add(key);
      }
      const count = this.el("ct-count");
      if (!count) return;
      count.textContent = this.view.metrics ? `${shown.size} of ${keys.size} metrics` : `${keys.size} metrics`;
    }
  }

  /* Charts are drawn when they come near the screen, and only those are redrawn while a run logs. */
  const byDiv = new Map();
  const observer =
    "IntersectionObserver" in window
      ? new IntersectionObserver(
          (entries) => {
            for (const entry of entries) {
              const chart = byDiv.get(entry.target);
              if (!chart) continue;
              chart.visible = entry.isIntersecting;
              if (chart.visible && chart.stale) chart.draw();
            }
          },
          { rootMargin: "400px" },
        )
      : null;

  function watchChart(chart) {
    byDiv.set(chart.div, chart);
    if (observer) observer.observe(chart.div);
    else {
      chart.visible = true;
      chart.draw();
    }
  }

  function setStatus(badge, status) {
    if (!badge || !status) return;
    badge.textContent = status;
    badge.className = `badge ${status}`;
  }

  /* A bucket request in the toolbar's x: by step (the server falls back to time for a metric without
   * steps), or by time, a relative range shifted by the run's start (`origin`). */
  function bucketURL(runId, key, range, view, kind, origin, buckets) {
    const byTime = view.x === "time" || view.x === "relative" || kind === "time";
    let url = `/api/run/${enc(runId)}/metric/${enc(key)}?buckets=${buckets || BUCKETS}`;
    url += `&x=${byTime ? "time" : range ? "step" : "auto"}`;
    if (range) {
      const shift = view.x === "relative" ? origin : 0;
      url += `&start=${range[0] + shift}&end=${range[1] + shift}`;
    }
    return url;
  }

  function xAxis(view, kind) {
    if (view.x === "relative" && kind === "time") {
      return { xTitle: "seconds since the run started", xType: "linear", xKind: "relative" };
    }
    if (kind === "time") return { xTitle: "time", xType: "date", xKind: "time" };
    return { xTitle: "step", xType: "linear", xKind: "step" };
  }

  function runPage() {
    const runId = page.run_id;
    const toolbar = new ChartToolbar(page.view);
    const charts = new Map();
    const counts = new Map();
    const table = document.querySelector("#metrics-table tbody");
    const grid = document.getElementById("charts");
    const cards = document.getElementById("values");

    function addChart(key, div) {
      let kind = "step"; // what the server answered for this metric: by step, or by time (no point has a step)
      let origin = page.start;
      const chart = new Chart(div, {
        fetch: async (range, view) => {
          const d = await getJSON(bucketURL(runId, key, range, view, kind, origin));
          if (view.x === "step") kind = d.x_kind;
          if (origin === null || origin === undefined) origin = d.x_kind === "time" && d.x.length ? d.x[0] : 0;
          if (!range) showRange(key, d);
          return d;
        },
        build: (d, view) => {
          const traces = envelopeTraces(d, key, view, origin);
          const low = view.logy ? nonPositive(d.min) : 0;
          const notes = low ? [`log y: ${low} bucket(s) with values ≤ 0 are not drawn`] : [];
          return { traces, total: d.total, notes, ...xAxis(view, d.x_kind) };
        },
      });
      charts.set(key, toolbar.add(chart));
      watchChart(chart);
    }

    for (const div of document.querySelectorAll("#charts .chart")) addChart(div.dataset.key, div);
    for (const m of page.metrics || []) counts.set(m.key, m.count);
    toolbar.filter();

    function cell(row, cls) {
      const td = document.createElement("td");
      td.className = cls;
      row.appendChild(td);
      return td;
    }

    function metricRow(key) {
      for (const row of table.querySelectorAll("tr")) if (row.dataset.key === key) return row;
      return null;
    }

    function domId(key) {
      const row = metricRow(key);
      const link = row && row.querySelector("a");
      return link ? link.getAttribute("href").slice(1) : null;
    }

    /* A metric that appeared since the page was rendered gets its row. */
    function addRow(key) {
      const row = document.createElement("tr");
      row.dataset.key = key;
      const link = document.createElement("a");
      link.href = `#m-live-${table.rows.length}`;
      link.textContent = key;
      cell(row, "").appendChild(link);
      for (const cls of ["num count", "num last-step", "num last-value", "num min", "num max"]) cell(row, cls);
      table.appendChild(row);
      return row;
    }

    /* A metric with more points than a value gets its chart (a value card it had goes). */
    function addMetricChart(key) {
      const card = valueCard(key);
      if (card) card.remove();
      cards.hidden = !cards.querySelector(".value-card");
      const box = document.createElement("section");
      box.className = "chart-box";
      box.id = domId(key);
      box.dataset.key = key;
      const title = document.createElement("h3");
      title.textContent = `${key} `;
      const points = document.createElement("span");
      points.className = "muted points";
      points.dataset.key = key;
      title.appendChild(points);
      const div = document.createElement("div");
      div.className = "chart";
      div.dataset.key = key;
      box.append(title, div);
      grid.appendChild(box);
      addChart(key, div);
      toolbar.filter();
    }

    function valueCard(key) {
      for (const card of cards.querySelectorAll(".value-card")) if (card.dataset.key === key) return card;
      return null;
    }

    function showValue(key, m) {
      let card = valueCard(key);
      if (!card) {
        card = document.createElement("div");
        card.className = "value-card";
        card.id = domId(key);
        card.dataset.key = key;
        for (const cls of ["key", "value", "muted where"]) {
          const part = document.createElement("div");
          part.className = cls;
          card.appendChild(part);
        }
        card.querySelector(".key").textContent = key;
        cards.appendChild(card);
        cards.hidden = false;
        toolbar.filter();
      }
      card.querySelector(".value").textContent = fmtNum(m.last_value);
      card.querySelector(".where").textContent =
        m.last_step === null ? `${m.count} point${m.count === 1 ? "" : "s"}` : `step ${m.last_step}`;
    }

    /* Min and max over the whole metric: the extremes of its buckets (a poll does not scan the values). */
    function showRange(key, d) {
      const row = metricRow(key);
      const lows = d.min.filter((v) => v !== null);
      const highs = d.max.filter((v) => v !== null);
      if (!row || !lows.length || !highs.length) return;
      row.querySelector(".min").textContent = fmtNum(Math.min(...lows));
      row.querySelector(".max").textContent = fmtNum(Math.max(...highs));
    }

    function updateMetric(key, m) {
      if (!metricRow(key)) addRow(key);
      const row = metricRow(key);
      row.querySelector(".count").textContent = String(m.count);
      row.querySelector(".last-step").textContent = m.last_step === null ? "-" : String(m.last_step);
      row.querySelector(".last-value").textContent = fmtNum(m.last_value);
      if (m.value && !charts.has(key)) {
        showValue(key, m);
        counts.set(key, m.count);
        return;
      }
      if (!charts.has(key)) addMetricChart(key);
      for (const span of document.querySelectorAll(".points")) {
        if (span.dataset.key === key) span.textContent = `${m.count} points`;
      }
      if (counts.get(key) !== m.count) {
        counts.set(key, m.count);
        charts.get(key).refresh();
      }
    }

    const interval = Math.max(250, (page.interval || 1) * 1000);
    async function poll() {
      if (document.hidden) {
        setTimeout(poll, interval);
        return;
      }
      let s;
      try {
        s = await getJSON(`/api/run/${enc(runId)}/status`);
      } catch (err) {
        console.error(err);
        setTimeout(poll, interval * 2);
        return;
      }
      setStatus(document.getElementById("run-status"), s.status);
      document.getElementById("run-end").textContent = s.end;
      document.getElementById("run-duration").textContent = s.duration;
      if (s.error) {
        document.getElementById("run-error").textContent = s.error;
        document.getElementById("run-error-row").hidden = false;
      }
      for (const [key, m] of Object.entries(s.metrics)) updateMetric(key, m);
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
      if (s.status === "running") setTimeout(poll, interval);
      else document.body.dataset.live = "done";
    }
    if (page.status === "running") {
      document.body.dataset.live = "polling";
      setTimeout(poll, interval);
    }
  }

  /* A legend entry is short of room: a long run name keeps its start and its end (where sweeps differ); the
   * whole name is in the hover text. */
  function shortName(s, limit = 32) {
    const text = String(s);
    if (text.length <= limit) return text;
    const head = Math.ceil((limit - 1) / 2);
    return `${text.slice(0, head)}…${text.slice(text.length - (limit - 1 - head))}`;
  }

  function comparePage() {
    const runs = page.runs || [];
    const info = page.charts || { colors: {}, last: {}, numeric_params: [] };
    const color = (id) => info.colors[id] || "#2563eb";
    const toolbar = new ChartToolbar(page.view);
    const charts = [];
    let highlighted = null;

    /* Hovering a run's line or legend entry brings it forward in every chart of the page; the others fade. */
    function highlight(id) {
      if (id === highlighted) return;
      highlighted = id;
      document.body.dataset.highlighted = id || "";
      for (const chart of charts) {
        const data = chart.div.data;
        if (!data || !data.length) continue;
        const opacity = data.map((t) => (id === null || t.meta[2] === id ? 1 : 0.15));
        Plotly.restyle(chart.div, { opacity }, data.map((_, i) => i));
      }
    }

    function bindLegend(chart) {
      for (const item of chart.div.querySelectorAll(".legend .traces")) {
        if (item.alexandriaBound) continue;
        item.alexandriaBound = true;
        const d = item.__data__;
        const trace = d && d[0] && d[0].trace;
        if (!trace) continue;
        item.addEventListener("mouseenter", () => highlight(trace.legendgroup || null));
        item.addEventListener("mouseleave", () => highlight(null));
      }
    }

    const paramKey = (view) => (view.x.startsWith("param:") ? view.x.slice(6) : null);

    function hoverText(r) {
      return [plotlyText(r.hover), plotlyText(r.label)];
    }

    /* The metric's last value (summaries.py) against a numeric parameter: one point per run. */
    function paramTraces(key, param) {
      const p = info.numeric_params.find((n) => n.key === param);
      const last = info.last[key] || {};
      const traces = [];
      for (const r of runs) {
        if (!p || !(r.id in p.values) || last[r.id] === undefined || last[r.id] === null) continue;
        const [hover, full] = hoverText(r);
        traces.push({
          x: [p.values[r.id]],
          y: [last[r.id]],
          name: plotlyText(shortName(r.label)),
          legendgroup: r.id,
          meta: [hover, "point", r.id, full, plotlyText(param)], // user text only through meta, never the template
          mode: "markers",
          marker: { size: 10, color: color(r.id) },
          hovertemplate: "%{meta[3]}<br>%{meta[0]}<br>%{meta[4]} = %{x}<br>last %{y}<extra></extra>",
        });
      }
      return traces;
    }

    for (const m of page.metrics || []) {
      const div = document.querySelector(`#${m.dom} .chart`);
      const having = runs.filter((r) => r.keys.includes(m.key));
      const chart = new Chart(div, {
        fetch: async (range, view) => {
          if (paramKey(view)) return { param: true };
          const data = await Promise.all(
            having.map((r) => getJSON(bucketURL(r.id, m.key, range, view, "step", r.start, 500))),
          );
          return { data };
        },
        build: (got, view) => {
          const param = paramKey(view);
          if (param) {
            const traces = paramTraces(m.key, param);
            const low = view.logy ? nonPositive(traces.map((t) => t.y[0])) : 0;
            const notes = low ? [`log y: ${low} run(s) with a last value ≤ 0 are not drawn`] : [];
            const total = traces.length;
            return { traces, legend: true, notes, total, xTitle: param, xType: "linear", xKind: "param" };
          }
          if (got.param) return { traces: [], legend: false, total: 0, ...xAxis(view, "step") };
          const raws = [];
          const lines = [];
          let low = 0;
          got.data.forEach((d, i) => {
            const r = having[i];
            const c = color(r.id);
            const x = xAxisValues(d, view.x, r.start || (d.x.length ? d.x[0] : 0));
            const [hover, full] = hoverText(r);
            if (view.logy && nonPositive(d.last)) low += 1;
            if (view.smooth > 0) {
              raws.push({
                x,
                y: d.last,
                name: plotlyText(shortName(r.label)),
                legendgroup: r.id,
                showlegend: false,
                meta: [hover, "raw", r.id, full],
                mode: "lines",
                line: { color: rgba(c, 0.3), width: 1 },
                hoverinfo: "skip",
              });
            }
            lines.push({
              x,
              y: smoothed(d.last, view.smooth),
              name: plotlyText(shortName(r.label)),
              legendgroup: r.id,
              meta: [hover, "line", r.id, full],
              hovertemplate: "%{meta[3]}<br>%{meta[0]}<br>%{x}: %{y}<extra></extra>",
              mode: d.x.length <= 100 ? "lines+markers" : "lines",
              marker: { size: 5, color: c },
              line: { color: c, width: 1.5 },
            });
          });
          const kinds = new Set(got.data.map((d) => d.x_kind));
          const kind = kinds.size === 1 && got.data.length ? got.data[0].x_kind : "step";
          const notes = low ? [`log y: values ≤ 0 in ${low} run(s) are not drawn`] : [];
          const total = got.data.reduce((n, d) => n + d.total, 0);
          return { traces: raws.concat(lines), legend: true, notes, total, ...xAxis(view, kind) };
        },
      });
      chart.onHover = (point) => highlight(point ? point.data.meta[2] : null);
      chart.afterRender = bindLegend;
      charts.push(toolbar.add(chart));
      watchChart(chart);
    }

    /* The values' charts (one value per run) are shown only against a parameter. */
    function showBoxes() {
      const param = Boolean(paramKey(toolbar.view));
      for (const box of document.querySelectorAll("#charts .chart-box")) if (box.dataset.value) box.hidden = !param;
    }
    toolbar.onX = showBoxes;
    showBoxes();
    toolbar.filter();
    for (const swatch of document.querySelectorAll(".swatch")) swatch.style.background = color(swatch.dataset.runId);

    const interval = Math.max(500, (page.interval || 2) * 1000);
    const running = new Set(runs.filter((r) => r.status === "running").map((r) => r.id));
    async function poll() {
      for (const id of [...running]) {
        try {
          const s = await getJSON(`/api/run/${enc(id)}/status?metrics=0`);
          for (const badge of document.querySelectorAll("#compare-params .badge")) {
            if (badge.dataset.runId === id) setStatus(badge, s.status);
          }
          if (s.status !== "running") running.delete(id);
        } catch (err) {
          console.error(err);
        }
      }
      if (!paramKey(toolbar.view)) for (const chart of charts) chart.refresh();
      if (running.size) setTimeout(poll, interval);
    }
    if (running.size) setTimeout(poll, interval);
  }

  function runsPage() {
    const rows = new Map();
    for (const tr of document.querySelectorAll("#runs-table tbody tr")) {
      if (tr.dataset.runId) rows.set(tr.dataset.runId, tr);
    }
    const notice = document.getElementById("runs-changed");
    const count = document.getElementById("run-count");
    // Listing runs counts every run's metric keys: poll often only while some run is running.
    const interval = Math.max(1000, (page.interval || 2) * 1000);
    let anyRunning = document.querySelector("#runs-table .badge.running") !== null;
    async function poll() {
      if (document.hidden) {
        setTimeout(poll, interval);
        return;
      }
      try {
        /* The same view (columns, sort, page) as the page: a run on it changed status or a run came or went. */
        const d = await getJSON(page.api);
        const now = new Set(d.runs.map((r) => r.id));
        const changed = d.count !== page.count || now.size !== rows.size || [...now].some((id) => !rows.has(id));
        for (const r of d.runs) {
          const tr = rows.get(r.id);
          if (!tr) continue;
          setStatus(tr.querySelector(".status .badge"), r.status);
          const duration = tr.querySelector(".duration");
          if (duration) duration.textContent = r.duration;
        }
        notice.hidden = !changed;
        const more = d.count - page.count;
        if (changed) count.textContent = `${d.count} (${more >= 0 ? "+" : ""}${more})`;
        anyRunning = d.runs.some((r) => r.status === "running");
      } catch (err) {
        console.error(err);
      }
      setTimeout(poll, anyRunning ? interval : interval * 5);
    }
    setTimeout(poll, anyRunning ? interval : interval * 5);
  }

  /* What the pages' other scripts (loaded after this one, in the templates' `scripts` block) share. */
  window.Alexandria = {
    page,
    getJSON,
    fmtNum,
    plotlyText,
    localTime,
    metricURL,
    xValues,
    Chart,
    ChartToolbar,
    envelopeTraces,
    watchChart,
    setStatus,
  };

  if (page.page === "run") runPage();
  else if (page.page === "compare") comparePage();
  else if (page.page === "runs") runsPage();
})();
