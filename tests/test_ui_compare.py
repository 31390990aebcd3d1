"""The compare page at scale, in a real `alex ui` and Debian's Chromium (through Playwright): of 30 runs it shows
the parameters and tags that differ until "show all" is ticked, its table scrolls sideways in its own box
while the page stays as wide as the window, and its parallel coordinates are coloured by the metric the user
picks, with the values the read model gives. 100 runs cost the same number of queries as 10."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event

import alexandria
from alexandria.query import Reader, metric_by_run
from alexandria.store import Store
from alexandria.ui import data
from tests.conftest import wait_until
from tests.test_ui import _save_artifact, chromium_context, start_ui, stop_ui

DIFFER = ["batch", "lr", "opt"]  # the parameters that differ between the runs; "layers" and "seed" do not
MARKUP = "<b>bold</b>"


def seed_runs(store: Store, n: int, *, steps: int = 12) -> list[str]:
    """`n` runs of one sweep (seeded): lr, batch and opt differ, layers and seed do not; tags team (the
    same) and shard (differs); metrics val/acc and loss in every run, extra in every third only."""
    rng = random.Random(15)
    ids = []
    with alexandria.start_run(experiment="cmp", name="parent", store=store, capture=False) as parent:
        for i in range(n):
            with alexandria.start_run(experiment="cmp", store=store, capture=False, parent=parent) as run:
                opt = MARKUP if i == 3 else rng.choice(["adam", "sgd"])
                run.log_params({"lr": round(10 ** rng.uniform(-4, -1), 6), "batch": 16 * (1 + i % 4), "opt": opt})
                run.log_params({"layers": 4, "seed": 0})
                run.set_tags({"team": "vision", "shard": str(i % 3)})
                for step in range(steps):
                    run.log_metrics({"val/acc": rng.random(), "loss": rng.random() * 2}, step=step)
                    if i % 3 == 0:
                        run.log_metric("extra", float(step), step=step)
            ids.append(run.id)
    return ids


def _colours(page: Any) -> dict[str, Any]:
    """The parallel view as plotly holds it: the colour trace's meta and marker.color, each run's line colour."""
    return page.evaluate(
        """() => {
            const gd = document.getElementById("parallel");
            const colour = gd.data.find((t) => t.meta && t.meta.role === "colour");
            const lines = gd.data.filter((t) => t.meta && t.meta.role === "run");
            return {
                metric: colour.meta.metric, agg: colour.meta.agg, run_ids: colour.meta.run_ids,
                values: colour.marker.color,
                lines: Object.fromEntries(lines.map((t) => [t.meta.run_id, t.line.color])),
                names: lines.map((t) => t.name),
                ticks: gd.layout.annotations.map((a) => a.text),
            };
        }"""
    )


def test_compare_30_runs_in_a_real_browser(store: Store, tmp_path: Path) -> None:
    ids = seed_runs(store, 30)
    server = start_ui(store.root, "--interval", "0.3")
    reader = Reader(store, fold=False)
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 31, timeout=60, what="31 runs in /api/runs")
        with chromium_context(tmp_path, console=True) as (context, problems):
            page = context.new_page()
            page.goto(f"{server.url}compare?run={','.join(ids)}")
            params = page.locator("#compare-params tr.param-row")
            assert params.count() == 5

            def shown(rows: Any) -> list[str]:
                return [rows.nth(i).get_attribute("data-key") for i in range(rows.count()) if rows.nth(i).is_visible()]

            assert shown(params) == DIFFER  # only what differs, until asked
            assert page.inner_text("#params-count") == "3 of 5 parameters differ"
            tags = page.locator("#compare-params tr.tag-row")
            assert shown(tags) == ["shard"] and page.inner_text("#tags-count") == "1 of 2 tags differ"
            page.check("#show-all-params")
            assert shown(params) == ["batch", "layers", "lr", "opt", "seed"]
            assert shown(tags) == ["shard"]
            page.check("#show-all-tags")
            assert shown(tags) == ["shard", "team"]
            page.uncheck("#show-all-params")
            assert shown(params) == DIFFER

            # 30 columns: the page keeps the window's width, the table's own box scrolls, its first column stays
            width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], width
            box = page.evaluate(
                "() => { const b = document.getElementById('compare-scroll'); return [b.scrollWidth, b.clientWidth]; }"
            )
            assert box[0] > 2 * box[1], box
            key_cell = page.locator('#compare-params tr[data-key="lr"] th')
            before = key_cell.bounding_box()
            page.evaluate("() => { document.getElementById('compare-scroll').scrollLeft = 1500; }")
            wait_until(
                lambda: page.evaluate("() => document.getElementById('compare-scroll').scrollLeft") > 0,
                timeout=10,
                what="the box scrolled",
            )
            assert page.evaluate("() => window.scrollX") == 0
            assert key_cell.bounding_box()["x"] == before["x"]  # sticky: the keys stay in view
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width[1]

            # parallel coordinates: by default coloured by the held-out accuracy, its last value per run
            page.wait_for_selector("#parallel[data-drawn]")
            drawn = _colours(page)
            assert (drawn["metric"], drawn["agg"], drawn["run_ids"]) == ("val/acc", "last", ids)
            assert drawn["values"] == metric_by_run(reader.engine, ids, "val/acc", "last")
            assert page.input_value("#pc-metric") == "val/acc"
            options = page.locator("#pc-metric option")
            assert [options.nth(i).inner_text() for i in range(options.count())] == ["loss", "val/acc"]  # shared
            assert "<b>opt</b>" in drawn["ticks"] and "&lt;b&gt;bold&lt;/b&gt;" in drawn["ticks"]  # escaped
            page.locator("#parallel").scroll_into_view_if_needed()
            shot = tmp_path / "ui-compare-30.png"
            page.screenshot(path=str(shot), full_page=True)
            _save_artifact(shot)

            # the user picks loss, then its min: the colours follow, as the read model says
            page.select_option("#pc-metric", "loss")
            page.wait_for_function("() => document.getElementById('parallel').dataset.metric === 'loss'")
            drawn = _colours(page)
            assert drawn["agg"] == "last"
            assert drawn["values"] == metric_by_run(reader.engine, ids, "loss", "last")
            page.select_option("#pc-agg", "min")
            page.wait_for_function("() => document.getElementById('parallel').dataset.agg === 'min'")
            drawn = _colours(page)
            lows = metric_by_run(reader.engine, ids, "loss", "min")
            assert drawn["metric"] == "loss" and drawn["values"] == lows
            assert lows != metric_by_run(reader.engine, ids, "loss", "last")
            best, worst = ids[lows.index(max(lows))], ids[lows.index(min(lows))]  # Viridis' two ends
            assert drawn["lines"][best] == "rgb(253,231,37)" and drawn["lines"][worst] == "rgb(68,1,84)"
            shot = tmp_path / "ui-compare-30-loss-min.png"
            page.locator("#parallel").screenshot(path=str(shot))
            _save_artifact(shot)
            assert not problems, problems
    finally:
        reader.close()
        stop_ui(server)


def test_the_colour_endpoint_says_what_is_wrong(store: Store) -> None:
    ids = seed_runs(store, 3, steps=3)
    server = start_ui(store.root, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 4, timeout=60, what="4 runs in /api/runs")
        run = ",".join(ids)
        got = server.json(f"/api/compare/metric?run={run}&key=val/acc&agg=max")
        assert got["run_ids"] == ids and len(got["values"]) == 3 and all(v is not None for v in got["values"])
        assert server.json(f"/api/compare/metric?run={run}&key=extra&agg=last")["values"][1:] == [None, None]
        status, body = server.get(f"/api/compare/metric?run={run}&key=loss&agg=median")
        assert status == 400 and b"agg must be one of last, min, max, got 'median'" in body
        status, body = server.get(f"/api/compare/metric?run={run}")
        assert status == 400 and b"key is missing" in body
        status, body = server.get("/api/compare/metric?run=ffffffff&key=loss")
        assert status == 404 and b"ffffffff" in body
    finally:
        stop_ui(server)


def test_100_runs_cost_the_queries_of_10(store: Store) -> None:
    ids = seed_runs(store, 100, steps=3)
    reader = Reader(store)
    try:
        statements: list[str] = []
        event.listen(reader.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        small = data.compare_page(reader.engine, ids[:10], [], 1.0)
        ten = len(statements)
        statements.clear()
        big = data.compare_page(reader.engine, ids, [], 1.0)
        assert len(statements) == ten
        assert [p["key"] for p in big["params"] if p["differs"]] == DIFFER
        assert big["params_differ"] == 3 and small["params_differ"] == 3
        assert big["parallel"]["metric"] == "val/acc" and len(big["parallel"]["values"]) == 100
        assert [d["label"] for d in big["parallel"]["dims"]] == DIFFER
    finally:
        reader.close()
    server = start_ui(store.root, "--interval", "0.3")
    try:
        status, body = server.get("/compare?" + "&".join(f"run={rid}" for rid in ids))
        assert status == 200
        page = body.decode()
        assert len(re.findall(r'<a class="run-name"', page)) == 100
        assert len(body) < 400_000, len(body)  # 100 columns of 5 parameters, 2 tags and the page data
    finally:
        stop_ui(server)
