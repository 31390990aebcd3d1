/* Alexandria dashboard: draws the charts and keeps the pages current without reloading them.
 *
 * The pages' Content-Security-Policy allows no inline script: what a page needs comes as JSON in
 * <script type="application/json" id="page-data">. Text from the server is always set with
 * textContent, never as HTML. Charts re-fetch a metric, downsampled by the server, and redraw with
 * Plotly.react (uirevision keeps the user's zoom); a zoomed chart fetches only the range it shows. */
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

  /* One metric of one run: the min..max envelope of each bucket, and the last value in it. */
  function envelopeTraces(d, name) {
    const x = xValues(d);
    const few = d.x.length <= 100;
    const custom = d.x.map((_, i) => [fmtNum(d.min[i]), fmtNum(d.max[i]), d.count[i]]);
    return [
      { x, y: d.max, name: "max", mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      {
        x,
        y: d.min,
        name: "min–max",
        mode: "lines",
        line: { width: 0 },
        fill: "tonexty",
        fillcolor: "rgba(37, 99, 235, 0.18)",
        hoverinfo: "skip",
      },
      {
        x,
        y: d.last,
        name: plotlyText(name),
        mode: few ? "lines+markers" : "lines",
        marker: { size: 5 },
        line: { color: "#2563eb", width: 1.5 },
        customdata: custom,
        hovertemplate: "%{y}<br>min %{customdata[0]}, max %{customdata[1]}<br>%{customdata[2]} point(s)<extra></extra>",
      },
    ];
  }

  class Chart {
    /* fetchTraces(range, xKind) resolves to {traces, xKind, total, legend}. */
    constructor(div, fetchTraces) {
      this.div = div;
      this.fetchTraces = fetchTraces;
      this.range = null;
      this.xKind = "step";
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
        const { traces, xKind, total, legend } = await this.fetchTraces(this.range, this.xKind);
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
        if (!this.bound) {
          this.bound = true;
          this.div.on("plotly_relayout", (event) => this.zoomed(event));
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

    zoomed(event) {
      if (event["xaxis.autorange"]) {
        this.range = null;
        this.draw();
        return;
      }
      const range = event["xaxis.range"] || [event["xaxis.range[0]"], event["xaxis.range[1]"]];
      if (range[0] === undefined || range[1] === undefined) return;
      this.range = [fromAxis(range[0], this.xKind), fromAxis(range[1], this.xKind)];
      this.draw();
    }

    /* Redraw now if on screen, else as soon as it scrolls into view. */
    refresh() {
      this.stale = true;
      if (this.visible) this.draw();
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

  function runPage() {
    const runId = page.run_id;
    const charts = new Map();
    const counts = new Map();
    const table = document.querySelector("#metrics-table tbody");
    const grid = document.getElementById("charts");

    function addChart(key, div) {
      const chart = new Chart(div, async (range, xKind) => {
        const d = await getJSON(metricURL(runId, key, range, xKind));
        if (!range) showRange(key, d);
        return { traces: envelopeTraces(d, key), xKind: d.x_kind, total: d.total };
      });
      charts.set(key, chart);
      watchChart(chart);
    }

    for (const div of document.querySelectorAll("#charts .chart")) addChart(div.dataset.key, div);
    for (const m of page.metrics || []) counts.set(m.key, m.count);

    function cell(row, cls) {
      const td = document.createElement("td");
      td.className = cls;
      row.appendChild(td);
      return td;
    }

    /* A metric that appeared since the page was rendered gets its row and chart. */
    function addMetric(key) {
      const dom = `m-live-${charts.size}`;
      const row = document.createElement("tr");
      row.dataset.key = key;
      const link = document.createElement("a");
      link.href = `#${dom}`;
      link.textContent = key;
      cell(row, "").appendChild(link);
      for (const cls of ["num count", "num last-step", "num last-value", "num min", "num max"]) cell(row, cls);
      table.appendChild(row);
      const box = document.createElement("section");
      box.className = "chart-box";
      box.id = dom;
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
    }

    function metricRow(key) {
      for (const row of table.querySelectorAll("tr")) if (row.dataset.key === key) return row;
      return null;
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
      if (!charts.has(key)) addMetric(key);
      const row = metricRow(key);
      row.querySelector(".count").textContent = String(m.count);
      row.querySelector(".last-step").textContent = m.last_step === null ? "-" : String(m.last_step);
      row.querySelector(".last-value").textContent = fmtNum(m.last_value);
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

  function comparePage() {
    const runs = page.runs || [];
    const charts = [];
    for (const m of page.metrics || []) {
      const div = document.querySelector(`#${m.dom} .chart`);
      const chart = new Chart(div, async (range, xKind) => {
        const having = runs.filter((r) => r.keys.includes(m.key));
        const data = await Promise.all(having.map((r) => getJSON(metricURL(r.id, m.key, range, xKind, 500))));
        /* The legend is short of room: a run's name there (names are not unique), its id prefix and
         * experiment in the hover text. */
        const traces = data.map((d, i) => ({
          x: xValues(d),
          y: d.last,
          name: plotlyText(having[i].label),
          meta: [plotlyText(having[i].hover)],
          hovertemplate: "%{fullData.name}<br>%{meta[0]}<br>%{x}: %{y}<extra></extra>",
          mode: d.x.length <= 100 ? "lines+markers" : "lines",
          marker: { size: 5 },
        }));
        const kinds = new Set(data.map((d) => d.x_kind));
        return {
          traces,
          legend: true,
          xKind: kinds.size === 1 ? data[0].x_kind : "step",
          total: data.reduce((n, d) => n + d.total, 0),
        };
      });
      charts.push(chart);
      watchChart(chart);
    }
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
      for (const chart of charts) chart.refresh();
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
  window.Alexandria = { page, getJSON, fmtNum, plotlyText, localTime, metricURL, xValues, Chart, watchChart, setStatus };

  if (page.page === "run") runPage();
  else if (page.page === "compare") comparePage();
  else if (page.page === "runs") runsPage();
})();
