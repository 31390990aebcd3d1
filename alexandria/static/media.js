/* Alexandria run page: the run's media (images, figures, tables, histograms, texts), one box per key.
 *
 * What to draw comes in page-data's `media` (one group per key, its records by step); files come from
 * /media/<run>/<id> (served under the sandbox CSP), a table's pages and a histogram's bins from the JSON API.
 * A box is drawn once it scrolls near the view. User text is set with textContent only; a plotly figure's
 * JSON is data drawn by the page's own plotly.js (nothing in it runs); an SVG is only ever an <img> or a link. */
"use strict";

(function () {
  const A = window.Alexandria;
  const page = A.page;
  const enc = encodeURIComponent;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function sizeText(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function stepText(step) {
    return step === null || step === undefined ? "no step" : `step ${step}`;
  }

  function problemNote(box, record) {
    const old = box.querySelector(".media-problem");
    if (old) old.remove();
    if (!record.problem) return false;
    const p = el("p", { class: "integrity media-problem" }, `${stepText(record.step)}: its file is ${record.problem}: run alex verify`);
    box.prepend(p);
    return record.problem.startsWith("missing") || record.problem.startsWith("refused") || record.problem.startsWith("not");
  }

  /* A step slider over a group's records (none for a single record); `show(i)` draws record i. */
  function stepper(body, group, show) {
    const records = group.records;
    const bar = el("div", { class: "media-stepper" });
    const info = el("span", { class: "media-info" });
    let slider = null;
    if (records.length > 1) {
      slider = el("input", { type: "range", class: "media-step", min: "0", max: String(records.length - 1), step: "1" });
      slider.value = String(records.length - 1);
      slider.setAttribute("aria-label", `${group.key}: step`);
      bar.append(slider);
    }
    bar.append(info);
    body.append(bar);
    const view = el("div", { class: "media-view" });
    body.append(view);
    function pick(i) {
      const r = records[i];
      const parts = [stepText(r.step)];
      if (r.caption) parts.push(r.caption);
      if (r.width && r.height) parts.push(`${r.width}×${r.height}`);
      if (r.size !== null && r.size !== undefined) parts.push(sizeText(r.size));
      if (records.length > 1) parts.push(`${i + 1} of ${records.length}`);
      info.textContent = parts.join(" · ");
      show(view, r, i);
    }
    if (slider) slider.addEventListener("input", () => pick(Number(slider.value)));
    pick(records.length - 1);
  }

  function drawImages(body, group) {
    const img = el("img", { class: "media-image", loading: "lazy", alt: group.key });
    stepper(body, group, (view, r) => {
      if (!view.contains(img)) view.append(img);
      if (problemNote(body, r)) { img.hidden = true; return; }
      img.hidden = false;
      img.src = r.url;
      img.dataset.step = r.step === null ? "" : String(r.step);
    });
  }

  async function plotlyFigure(view, r, token) {
    const fig = await A.getJSON(r.url);
    if (token.current !== r.id) return;
    const div = el("div", { class: "media-plot" });
    view.replaceChildren(div);
    await Plotly.newPlot(div, fig.data || [], fig.layout || {}, { responsive: true, displaylogo: false });
  }

  function drawFigures(body, group) {
    const token = { current: null };
    stepper(body, group, (view, r) => {
      token.current = r.id;
      if (problemNote(body, r)) { view.replaceChildren(); return; }
      if (r.format === "plotly.json") {
        plotlyFigure(view, r, token).catch((err) => view.replaceChildren(el("p", { class: "error" }, String(err))));
        return;
      }
      // a matplotlib figure: its PNG; its SVG only as a link (served sandboxed) or an image, never inline
      const img = el("img", { class: "media-image", loading: "lazy", alt: group.key, src: r.url });
      const links = el("p", { class: "muted" });
      if (r.svg_url) {
        const a = el("a", { href: r.svg_url }, "SVG");
        links.append(a);
      }
      view.replaceChildren(img, links);
    });
  }

  function drawTexts(body, group) {
    const token = { current: null };
    stepper(body, group, (view, r) => {
      token.current = r.id;
      if (problemNote(body, r)) { view.replaceChildren(); return; }
      fetch(r.url, { cache: "no-store" })
        .then((resp) => {
          if (!resp.ok) throw new Error(`${r.url}: HTTP ${resp.status}`);
          return resp.text();
        })
        .then((text) => {
          if (token.current !== r.id) return;
          view.replaceChildren(el("pre", { class: "media-text" }, text));
        })
        .catch((err) => view.replaceChildren(el("p", { class: "error" }, String(err))));
    });
  }

  function drawTables(body, group) {
    const token = { current: null };
    stepper(body, group, (view, r) => {
      token.current = r.id;
      if (problemNote(body, r)) { view.replaceChildren(); return; }
      const url = (n) => `/api/run/${enc(page.run_id)}/media/${r.id}/table?page=${n}`;
      async function load(n) {
        const d = await A.getJSON(url(n));
        if (token.current !== r.id) return;
        if (d.error) { view.replaceChildren(el("p", { class: "error media-error" }, d.error)); return; }
        const table = el("table", { class: "media-table" });
        const head = el("tr");
        head.append(el("th", {}, "#"));
        for (const c of d.columns) head.append(el("th", {}, c));
        const thead = el("thead");
        thead.append(head);
        table.append(thead);
        const tbody = el("tbody");
        d.rows.forEach((row, i) => {
          const tr = el("tr");
          tr.append(el("td", { class: "num muted" }, d.first + i));
          for (const v of row) tr.append(el("td", {}, v === null ? "" : typeof v === "number" ? A.fmtNum(v) : v));
          tbody.append(tr);
        });
        table.append(tbody);
        const pager = el("div", { class: "media-pager" });
        const prev = el("button", { type: "button", class: "media-prev" }, "‹ previous");
        const next = el("button", { type: "button", class: "media-next" }, "next ›");
        prev.disabled = d.page <= 1;
        next.disabled = d.page >= d.pages;
        prev.addEventListener("click", () => load(d.page - 1));
        next.addEventListener("click", () => load(d.page + 1));
        const last = Math.min(d.first + d.rows.length - 1, d.total);
        const where = el("span", { class: "media-page" }, `rows ${d.rows.length ? d.first : 0}–${last} of ${d.total} · page ${d.page} of ${d.pages}`);
        pager.append(prev, where, next);
        const scroll = el("div", { class: "table-scroll" });
        scroll.append(table);
        view.replaceChildren(pager, scroll);
      }
      load(1).catch((err) => view.replaceChildren(el("p", { class: "error" }, String(err))));
    });
  }

  async function drawHistogram(body, group) {
    const d = await A.getJSON(`/api/run/${enc(page.run_id)}/histogram/${enc(group.key)}`);
    const steps = d.steps.map((s, i) => (s === null ? `#${i + 1}` : s));
    const centers = d.edges.slice(0, -1).map((e, i) => (e + d.edges[i + 1]) / 2);
    const div = el("div", { class: "media-plot media-heatmap" });
    const info = el("p", { class: "muted media-info" });
    body.replaceChildren(div, info);
    info.textContent = `${d.steps.length} histograms · ${d.edges.length - 1} common bins · hover a cell to read one step`;
    await Plotly.newPlot(
      div,
      [
        {
          type: "heatmap",
          x: steps,
          y: centers,
          z: d.z,
          colorscale: "Viridis",
          hovertemplate: "step %{x}<br>value ≈ %{y:.4g}<br>count %{z:.4g}<extra></extra>",
          colorbar: { title: { text: "count" } },
        },
      ],
      {
        margin: { l: 60, r: 20, t: 10, b: 40 },
        xaxis: { title: { text: "step" }, type: d.steps.some((s) => s === null) ? "category" : "linear" },
        yaxis: { title: { text: A.plotlyText(group.key) } },
      },
      { responsive: true, displaylogo: false },
    );
  }

  const DRAW = { image: drawImages, figure: drawFigures, table: drawTables, text: drawTexts, histogram: drawHistogram };

  function draw(box, group) {
    const body = box.querySelector(".media-body");
    body.replaceChildren();
    const fn = DRAW[group.kind];
    if (!fn) { body.append(el("p", { class: "muted" }, `a ${group.kind} is not shown here`)); return; }
    Promise.resolve()
      .then(() => fn(body, group))
      .then(() => box.setAttribute("data-drawn", "1"))
      .catch((err) => body.replaceChildren(el("p", { class: "error" }, String(err))));
  }

  const groups = page.media || [];
  const boxes = groups.map((g) => [document.getElementById(g.dom), g]).filter(([box]) => box);
  if ("IntersectionObserver" in window) {
    const seen = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          if (!e.isIntersecting) continue;
          seen.unobserve(e.target);
          const found = boxes.find(([box]) => box === e.target);
          if (found) draw(found[0], found[1]);
        }
      },
      { rootMargin: "400px" },
    );
    for (const [box] of boxes) seen.observe(box);
  } else {
    for (const [box, g] of boxes) draw(box, g);
  }
})();
