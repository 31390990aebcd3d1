"""The dashboard's charts in a real browser (Debian's Chromium through Playwright) over a real `alex ui`: the
toolbar shared by the run and the compare page (smoothing as `figures.smooth`, log y, the x axis, linked zoom,
metric search, the legend), its state in the URL, the min/max band that shows a one-point spike among two
million, metrics with one point shown as values, and a metric's last value against a sweep's parameter."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from alexandria.figures import smooth
from tests.conftest import run_python, wait_until
from tests.test_ui import Server, _save_artifact, chromium_context, start_ui, stop_ui

# One run: three curves (one crossing zero, for log y), a value logged once, a metric logged twice without a step.
RUN = """
import json, math, sys, alexandria
with alexandria.start_run(experiment="charts", name="curves", store=sys.argv[1], capture=False) as r:
    for step in range(200):
        r.log_metrics({"train/loss": math.exp(-step / 50) + 0.01 * math.sin(step),
                       "val/acc": 1 - math.exp(-step / 50), "val/delta": math.sin(step / 10)}, step=step)
    r.log_metric("final/score", 0.93)
    r.log_metric("eval/f1", 0.5)
    r.log_metric("eval/f1", 0.7)
print(json.dumps({"run": r.id}))
"""

# A sweep of 30 runs over theta (lr is the same in all: not an x choice; opt is text: not one either).
SWEEP = """
import json, math, sys, alexandria
ids = []
for i in range(30):
    theta = round(0.1 * (i + 1), 3)
    with alexandria.start_run(experiment="sweep", name=f"theta-{theta}", store=sys.argv[1], capture=False) as r:
        r.log_params({"theta": theta, "lr": 0.01, "opt": "adam" if i % 2 else "sgd"})
        for step in range(50):
            r.log_metric("loss", math.exp(-theta * step / 10), step=step)
        r.log_metric("final/acc", math.cos(theta))
        ids.append(r.id)
print(json.dumps({"ids": ids}))
"""

# Two million points of a flat metric, one spike at one step.
SPIKE = """
import json, sys, alexandria
with alexandria.start_run(experiment="spike", store=sys.argv[1], capture=False) as r:
    log = r.log_metric
    for step in range(2_000_000):
        log("flat", 100.0 if step == 1_234_567 else 1.0, step)
print(json.dumps({"run": r.id}))
"""

CHART = "document.querySelector('#charts .chart[data-key=\"{}\"]')"


def chart(key: str) -> str:
    return CHART.format(key)


def _seed(code: str, store: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(run_python(code, str(store), timeout=900).strip().splitlines()[-1])
    return out


def _serve(store: Path, runs: int) -> Server:
    server = start_ui(store, "--interval", "0.3")
    wait_until(lambda: server.json("/api/runs")["count"] == runs, timeout=120, what=f"{runs} runs in /api/runs")
    return server


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium context; every page of it fails the test on a script error."""
    with chromium_context(tmp_path, width=1400) as (context, problems):
        yield context
        assert not problems, problems


def _drawn(page: Any, key: str, traces: int | None = None, after: int = 0) -> None:
    """Wait until the chart of `key` has drawn more than `after` times (with `traces` traces)."""
    want = "true" if traces is None else f"d.data.length === {traces}"
    page.wait_for_function(
        f"n => {{ const d = {chart(key)}; return d && d.data && Number(d.dataset.drawn || 0) > n && {want}; }}",
        arg=after,
    )


def _drawn_count(page: Any, key: str) -> int:
    return int(page.evaluate(f"() => Number({chart(key)}.dataset.drawn || 0)"))


def _trace(page: Any, key: str, role: str) -> dict[str, Any]:
    found: dict[str, Any] = page.evaluate(
        f"role => {{ const t = {chart(key)}.data.find(t => t.meta.role === role); return {{x: t.x, y: t.y}}; }}", role
    )
    return found


def _query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def test_run_page_toolbar(browser: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    rid = _seed(RUN, store)["run"]
    server = _serve(store, 1)
    try:
        page = browser.new_page()
        page.goto(f"{server.url}run/{rid}")
        _drawn(page, "train/loss", 3)
        _drawn(page, "val/delta", 3)

        # A metric of one point, and one of two points without a step, are values, not charts.
        cards = page.locator("#values .value-card")
        assert {cards.nth(i).get_attribute("data-key") for i in range(cards.count())} == {"final/score", "eval/f1"}
        assert page.locator('#values .value-card[data-key="final/score"] .value').inner_text() == "0.93"
        assert page.locator('#values .value-card[data-key="eval/f1"] .value').inner_text() == "0.7"
        assert page.locator('#charts .chart[data-key="final/score"]').count() == 0
        assert page.locator("#charts .chart-box").count() == 3

        # Smoothing: the line drawn is figures.smooth of the bucket values; the raw line stays behind it.
        buckets = server.json(f"/api/run/{rid}/metric/{quote('train/loss', safe='')}?buckets=1000&x=auto")
        drawn = _drawn_count(page, "train/loss")
        page.fill("#ct-smooth-value", "0.6")
        page.press("#ct-smooth-value", "Enter")
        _drawn(page, "train/loss", 4, after=drawn)
        assert page.input_value("#ct-smooth") == "0.6"
        line, raw = _trace(page, "train/loss", "line"), _trace(page, "train/loss", "raw")
        assert raw["y"] == buckets["last"]
        expected = smooth(buckets["last"], 0.6)
        assert len(line["y"]) == len(expected) == 200
        assert max(abs(a - b) for a, b in zip(line["y"], expected, strict=True)) < 1e-9
        assert max(abs(a - b) for a, b in zip(line["y"], raw["y"], strict=True)) > 1e-3  # it did change the line
        assert _query(page)["smooth"] == ["0.6"]

        # Log y: the axis is logarithmic, and a chart with values <= 0 says it does not draw them.
        page.check("#ct-logy")
        page.wait_for_function(f"() => {chart('val/delta')}._fullLayout.yaxis.type === 'log'")
        page.wait_for_function(f"() => {chart('train/loss')}._fullLayout.yaxis.type === 'log'")
        note = page.locator('#charts .chart[data-key="val/delta"] .annotation-text')
        assert "with values ≤ 0 are not drawn" in (note.text_content() or "")
        assert page.locator('#charts .chart[data-key="train/loss"] .annotation-text').count() == 0
        page.uncheck("#ct-logy")
        page.wait_for_function(f"() => {chart('val/delta')}._fullLayout.yaxis.type === 'linear'")

        # x: wall time is a date axis; relative time is seconds since the run started.
        page.select_option("#ct-x", "time")
        page.wait_for_function(f"() => {chart('train/loss')}._fullLayout.xaxis.type === 'date'")
        page.select_option("#ct-x", "relative")
        page.wait_for_function(f"() => {chart('train/loss')}._fullLayout.xaxis.type === 'linear'")
        page.wait_for_function(
            f"() => {chart('train/loss')}._fullLayout.xaxis.title.text === 'seconds since the run started'"
        )
        xs = _trace(page, "train/loss", "line")["x"]
        assert 0 <= xs[0] < xs[-1] < 600, xs[:3]
        page.select_option("#ct-x", "step")
        page.wait_for_function(f"() => {chart('train/loss')}._fullLayout.xaxis.title.text === 'step'")
        _drawn(page, "val/acc")

        # Linked zoom: one chart's x range is every chart's, each fetching only that range.
        page.evaluate(f"() => Plotly.relayout({chart('train/loss')}, {{'xaxis.range': [50, 80]}})")
        for key in ("val/acc", "val/delta"):
            page.wait_for_function(
                f"() => {{ const d = {chart(key)}; const r = d._fullLayout.xaxis.range;"
                " return r[0] === 50 && r[1] === 80 && d.data[0].x.length === 31 && d.data[0].x[0] === 50; }"
            )
        assert _query(page)["xrange"] == ["50,80"]
        shot = tmp_path / "ui-charts-run-zoomed.png"
        page.screenshot(path=str(shot), full_page=True)
        _save_artifact(shot)

        # Metric search: a glob keeps the matching charts (and values), with the count.
        page.fill("#ct-metrics", "val/*")
        assert page.locator("#ct-count").inner_text() == "2 of 5 metrics"
        assert page.locator('.chart-box[data-key="train/loss"]').is_hidden()
        assert page.locator('.chart-box[data-key="val/acc"]').is_visible()
        assert page.locator('.value-card[data-key="final/score"]').is_hidden()
        page.fill("#ct-metrics", "score")
        assert page.locator("#ct-count").inner_text() == "1 of 5 metrics"
        assert page.locator('.value-card[data-key="final/score"]').is_visible()
        page.fill("#ct-metrics", "val/*")

        # The URL alone reproduces the view in a new page.
        page.fill("#ct-smooth-value", "0.8")
        page.press("#ct-smooth-value", "Enter")
        page.check("#ct-logy")
        wait_until(lambda: _query(page).get("logy") == ["1"], timeout=10, what="logy in the URL")
        shared = browser.new_page()
        shared.goto(page.url)
        _drawn(shared, "val/acc", 4)
        assert shared.input_value("#ct-smooth-value") == "0.8" and shared.is_checked("#ct-logy")
        assert shared.input_value("#ct-metrics") == "val/*" and shared.locator(".chart-box:visible").count() == 2
        got = shared.evaluate(
            f"() => {{ const d = {chart('val/acc')}; return [d._fullLayout.yaxis.type, d._fullLayout.xaxis.range]; }}"
        )
        assert got == ["log", [50, 80]]
        buckets = server.json(f"/api/run/{rid}/metric/{quote('val/acc', safe='')}?buckets=1000&x=step&start=50&end=80")
        line = _trace(shared, "val/acc", "line")
        assert max(abs(a - b) for a, b in zip(line["y"], smooth(buckets["last"], 0.8), strict=True)) < 1e-9

        # Double-clicking a chart resets the zoom of every chart.
        page.bring_to_front()
        page.dblclick('#charts .chart[data-key="val/acc"] .nsewdrag')
        page.wait_for_function(f"() => {chart('val/delta')}.data[0].x.length === 200")
        wait_until(lambda: "xrange" not in _query(page), timeout=10, what="no xrange in the URL")
        page.fill("#ct-metrics", "")  # a chart the search hid redraws, unzoomed, once shown
        page.wait_for_function(f"() => {chart('train/loss')}.data[0].x.length === 200")

        # A bad value in the URL is said on the page, and the rest of the view still applies.
        bad = browser.new_page()
        bad.goto(f"{server.url}run/{rid}?smooth=lots&x=sideways&logy=1")
        assert bad.locator(".chart-error").all_inner_texts() == [
            "smooth='lots': smoothing is a number from 0 to 0.999; not applied",
            "x='sideways': one of step, time, relative; the x axis is the step",
        ]
        bad.wait_for_function(
            f"() => {chart('val/acc')} && {chart('val/acc')}._fullLayout && "
            f"{chart('val/acc')}._fullLayout.yaxis.type === 'log'"
        )
    finally:
        stop_ui(server)


def test_a_spike_among_two_million_points_is_seen(browser: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    rid = _seed(SPIKE, store)["run"]
    server = _serve(store, 1)
    try:
        wait_until(
            lambda: server.json(f"/api/run/{rid}/status")["metrics"].get("flat", {}).get("count") == 2_000_000,
            timeout=600,
            what="2,000,000 points folded",
        )
        page = browser.new_page()
        page.goto(f"{server.url}run/{rid}")
        _drawn(page, "flat", 3)
        top = page.evaluate(f"() => {chart('flat')}._fullLayout.yaxis.range[1]")
        band = page.evaluate(f"() => Math.max(...{chart('flat')}.data.find(t => t.meta.role === 'max').y)")
        assert band == 100.0 and top >= 100.0, (band, top)
        # the line (each bucket's last value) is flat: the band is what shows the spike
        assert max(_trace(page, "flat", "line")["y"]) == 1.0
        shot = tmp_path / "ui-charts-spike.png"
        page.locator('.chart-box[data-key="flat"]').screenshot(path=str(shot))
        _save_artifact(shot)
    finally:
        stop_ui(server)


def test_compare_legend_values_and_a_parameter_as_x(browser: Any, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ids = _seed(SWEEP, store)["ids"]
    server = _serve(store, 30)
    try:
        page = browser.new_page()
        page.goto(f"{server.url}compare?run={','.join(ids)}")
        loss = "document.querySelector('#charts .chart[data-key=\"loss\"]')"
        page.wait_for_function(f"() => {{ const d = {loss}; return d && d.data && d.data.length === 30; }}")

        # The value metric is a row of the values table, a column per run; its chart shows only against a parameter.
        cells = page.locator('#compare-values tr[data-key="final/acc"] td')
        assert cells.count() == 30
        assert float(cells.nth(0).inner_text()) == pytest.approx(math.cos(0.1), rel=1e-5)
        assert page.locator('.chart-box[data-key="final/acc"]').is_hidden()

        # The legend beside the chart, one entry per run; the toggle hides it (the chart keeps its room).
        page.wait_for_selector('.chart[data-key="loss"] .legend .traces')
        assert page.locator('.chart[data-key="loss"] .legend .traces').count() == 30
        plot_width = page.evaluate(f"() => {loss}._fullLayout._size.w")
        assert plot_width > 300, plot_width
        colors = page.evaluate(f"() => {loss}.data.map(t => t.line.color)")
        assert len(set(colors)) >= 20  # a colour per run (the palette has 20)

        # Hovering a legend entry brings its run forward, the others fade; leaving restores them.
        page.hover('.chart[data-key="loss"] .legend .traces >> nth=3')
        page.wait_for_function(f"() => {loss}.data.filter(t => t.opacity === 1).length === 1")
        picked = page.evaluate(f"() => {loss}.data.find(t => t.opacity === 1).meta[2]")
        assert picked == ids[3]
        assert page.evaluate(f"() => {loss}.data.filter(t => t.opacity < 0.5).length") == 29
        page.mouse.move(5, 5)
        page.wait_for_function(f"() => {loss}.data.every(t => t.opacity === 1)")
        # ... and so does hovering its line.
        x, y = page.evaluate(
            f"""() => {{ const d = {loss}, fl = d._fullLayout, t = d.data[7], box = d.getBoundingClientRect();
            return [box.left + fl._size.l + fl.xaxis.l2p(t.x[10]), box.top + fl._size.t + fl.yaxis.l2p(t.y[10])]; }}"""
        )
        page.mouse.move(x, y)
        page.wait_for_function(f"() => {loss}.data.filter(t => t.opacity === 1).length === 1")
        assert page.evaluate(f"() => {loss}.data.find(t => t.opacity === 1).meta[2]") == page.evaluate(
            f"() => {loss}.data[7].meta[2]"
        )
        page.mouse.move(5, 5)
        page.wait_for_function(f"() => {loss}.data.every(t => t.opacity === 1)")

        page.uncheck("#ct-legend")
        page.wait_for_function(f"() => {loss}._fullLayout.showlegend === false")
        assert page.locator('.chart[data-key="loss"] .legend .traces').count() == 0
        assert page.evaluate(f"() => {loss}._fullLayout._size.w") > plot_width
        assert _query(page)["legend"] == ["0"]
        page.check("#ct-legend")
        page.wait_for_function(f"() => {loss}._fullLayout.showlegend === true")
        shot = tmp_path / "ui-charts-compare-30.png"
        page.screenshot(path=str(shot), full_page=True)
        _save_artifact(shot)

        # x = a parameter: only the numeric one that differs is offered; one point per run at its theta.
        options = page.locator("#ct-x option").all_inner_texts()
        assert options == ["step", "wall time", "relative time (s)", "theta (last values)"]
        page.select_option("#ct-x", "param:theta")
        acc = "document.querySelector('#charts .chart[data-key=\"final/acc\"]')"
        page.wait_for_selector('.chart-box[data-key="final/acc"]', state="visible")
        page.wait_for_function(f"() => {{ const d = {acc}; return d && d.data && d.data.length === 30; }}")
        points = page.evaluate(f"() => {acc}.data.map(t => [t.meta[2], t.x, t.y, t.marker.color])")
        thetas = {rid: round(0.1 * (i + 1), 3) for i, rid in enumerate(ids)}
        assert sorted(p[0] for p in points) == sorted(ids)
        for rid, x, y, _color in points:
            assert x == [thetas[rid]] and y == [pytest.approx(math.cos(thetas[rid]), rel=1e-9)]
        assert page.evaluate(f"() => {acc}._fullLayout.xaxis.title.text") == "theta"
        # the same colour for a run in every chart of the page
        page.wait_for_function(f"() => {loss}.data.length === 30 && {loss}.data[0].mode === 'markers'")
        loss_colors = dict(page.evaluate(f"() => {loss}.data.map(t => [t.meta[2], t.marker.color])"))
        assert loss_colors == {p[0]: p[3] for p in points}
        assert _query(page)["x"] == ["param:theta"]
        shot = tmp_path / "ui-charts-compare-theta.png"
        page.screenshot(path=str(shot), full_page=True)
        _save_artifact(shot)

        shared = browser.new_page()  # the URL gives the same view
        shared.goto(page.url)
        shared.wait_for_function(f"() => {{ const d = {acc}; return d && d.data && d.data.length === 30; }}")
        assert shared.input_value("#ct-x") == "param:theta"
    finally:
        stop_ui(server)


# -- what the pages are given (no browser) ----------------------------------------------------------------------


def test_the_view_in_the_query_string() -> None:
    from starlette.datastructures import QueryParams

    from alexandria.ui.data import ChartView

    v = ChartView.from_query(
        QueryParams("smooth=0.6&logy=1&x=param:theta&metrics=val/*&legend=0&xrange=5,50"), ["theta"]
    )
    assert v.as_dict() == {
        "smooth": 0.6,
        "logy": True,
        "x": "param:theta",
        "metrics": "val/*",
        "legend": False,
        "xrange": [5.0, 50.0],
    }
    assert v.errors == []
    assert ChartView.from_query(QueryParams("smooth=0.9999")).smooth == 0.999  # the slider's end
    bad = ChartView.from_query(QueryParams("smooth=1&logy=yes&x=param:theta&xrange=9,1"))  # no parameter on a run page
    assert bad.as_dict() == ChartView().as_dict()
    assert bad.errors == [
        "smooth='1': smoothing is a number from 0 to 0.999; not applied",
        "logy='yes': 1 (on) or 0 (off); not applied",
        "x='param:theta': one of step, time, relative; the x axis is the step",
        "xrange='9,1': two numbers low,high (low < high); the whole x range is shown",
    ]


def test_values_colours_and_numeric_parameters_for_the_compare_page(store: Any) -> None:
    import alexandria
    from alexandria.figures import PALETTE
    from alexandria.query import Reader
    from alexandria.ui.data import compare_charts, is_value_metric

    assert is_value_metric(1, 0) and is_value_metric(3, None)
    assert not is_value_metric(2, 1) and not is_value_metric(4, None)
    ids = []
    for i, theta in enumerate((0.5, 1.5, 1.0)):
        with alexandria.start_run(experiment="s", store=store, capture=False) as r:
            r.log_params({"theta": theta, "same": 1, "opt": "adam", "seed": i if i < 2 else "x"})
            for step in range(5):
                r.log_metric("loss", theta * step, step=step)
            r.log_metric("acc", theta / 2)
            if i == 0:
                r.log_metric("only-one", float("nan"))
            ids.append(r.id)
    with Reader(store) as reader:
        got = compare_charts(reader.engine, ids)
    assert got["colors"] == {rid: PALETTE[i] for i, rid in enumerate(ids)}
    assert got["value_keys"] == ["acc", "only-one"]
    assert got["last"] == {
        "acc": dict(zip(ids, (0.25, 0.75, 0.5), strict=True)),
        "loss": dict(zip(ids, (2.0, 6.0, 4.0), strict=True)),
        "only-one": {ids[0]: None},  # NaN: nothing to draw
    }
    # theta only: `same` does not differ, `opt` is text, `seed` is not a number in every run
    assert got["numeric_params"] == [{"key": "theta", "values": dict(zip(ids, (0.5, 1.5, 1.0), strict=True))}]


def test_reports_and_the_dashboard_share_one_smoothing() -> None:
    from alexandria.pages import STATIC, page_html

    shared = (STATIC / "smoothing.js").read_text("utf-8")
    page = page_html("t", [], embed=False, smoothing_js=True)
    assert shared in page and page.index(shared) < page.index("window.AlexandriaSmoothing.smooth")
    assert "Math.pow" not in (STATIC / "report.js").read_text("utf-8")  # no second copy of the average
    for template in ("run.html", "compare.html"):
        text = (STATIC.parent / "templates" / template).read_text("utf-8")
        assert '<script src="/static/smoothing.js"></script>' in text
