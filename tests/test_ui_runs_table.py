"""The runs table you analyse in (runs_table.py, the dashboard's runs page): columns chosen by name, sorted in SQL
with missing values last, paged, children under their parent, groups with their counts and aggregates; the read
model checked against Python computing the same from the values a real writer process logged (on SQLite and
PostgreSQL), then the page in Debian's Chromium: the picker, a header click, a group, a shared URL."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import alexandria
from alexandria.runs_table import View, parse_column, parse_sort, runs_table
from alexandria.store import Store
from alexandria.ui.data import RunFilter
from tests.conftest import run_python, wait_until
from tests.test_ui import _save_artifact, chromium_context, start_ui, stop_ui

# Nine top-level runs with seeded random losses (one without the metric, one without lr), lr as numbers except in
# `odd`, where one value is text; a sweep parent with two children. Prints the ids and what each run logged.
SEED = """
import json, random, sys, alexandria
store = sys.argv[1]
rng = random.Random(15)
out = {"runs": {}, "sweep": {}}
lrs = [0.1, 0.02, 0.3, 0.001, 10, 2, 0.5, None, 0.05]
for i, lr in enumerate(lrs):
    with alexandria.start_run(experiment="grid", store=store, capture=False, tags={"split": "ab"[i % 2]}) as r:
        params = {"opt": ["sgd", "adam", "rmsprop"][i % 3], "odd": "auto" if i == 4 else 3 * i}
        if lr is not None:
            params["lr"] = lr
        r.log_params(params)
        points = []
        if i != 6:
            for step in rng.sample(range(40), 12):  # steps out of order: the last value is the highest step's
                v = round(rng.uniform(0, 5), 6)
                r.log_metric("loss", v, step=step)
                points.append((step, v))
        out["runs"][r.id] = {"params": params, "points": points}
with alexandria.start_run(experiment="sweep", store=store, capture=False) as parent:
    out["sweep"]["parent"] = parent.id
    for j in range(2):
        with alexandria.start_run(experiment="sweep", store=store, parent=parent, capture=False) as c:
            c.log_params({"lr": 0.1 * (j + 1)})
            c.log_metric("loss", 3.0 - j, step=0)
            out["sweep"][f"child{j}"] = c.id
print(json.dumps(out))
"""


def _seed(store: Store) -> dict[str, Any]:
    return json.loads(run_python(SEED, str(store.root)).strip().splitlines()[-1])


def _expected(points: list[tuple[int, float]], agg: str) -> float | None:
    if not points:
        return None
    if agg == "last":
        return max(points)[1]
    return (min if agg == "min" else max)(v for _, v in points)


def _top_order(values: dict[str, Any], desc: bool) -> list[str]:
    """Run ids by value, missing last either way, ties by id: what the table's ORDER BY must give."""
    known = [rid for rid, v in values.items() if v is not None]
    known.sort(key=lambda rid: rid)  # ties by id, ascending, whichever way the values go
    known.sort(key=lambda rid: values[rid], reverse=desc)
    return known + sorted(rid for rid, v in values.items() if v is None)


def _table(store: Store, sort: str, desc: bool, cols: tuple[str, ...] = (), **kw: Any) -> Any:
    with alexandria.Reader(store) as reader:
        conditions = RunFilter(experiment="grid").conditions()
        view = View([parse_column(c) for c in cols], parse_sort(sort), desc, **kw)
        return runs_table(reader.engine, conditions, view)


@pytest.fixture
def seeded(store: Store) -> tuple[Store, dict[str, Any]]:
    return store, _seed(store)


@pytest.mark.every_backend
def test_sort_by_a_metrics_last_min_and_max_missing_last(seeded: tuple[Store, dict[str, Any]]) -> None:
    store, logged = seeded
    runs = logged["runs"]
    for agg in ("last", "min", "max"):
        name = f"metrics.loss.{agg}"
        expected = {rid: _expected(r["points"], agg) for rid, r in runs.items()}
        for desc in (False, True):
            table = _table(store, name, desc, (name,))
            got = [r["id"] for _, r in table.rows]
            assert got == _top_order(expected, desc), (agg, desc)
            assert {r["id"]: r["values"][name] for _, r in table.rows} == pytest.approx(expected)
    assert parse_column("metrics.loss").name == "metrics.loss.last"  # a metric alone is its last value


@pytest.mark.every_backend
def test_params_sort_as_numbers_when_all_are_and_as_text_otherwise(seeded: tuple[Store, dict[str, Any]]) -> None:
    store, logged = seeded
    runs = logged["runs"]
    lr = {rid: r["params"].get("lr") for rid, r in runs.items()}
    for desc in (False, True):
        got = [r["id"] for _, r in _table(store, "params.lr", desc, ("params.lr",)).rows]
        assert got == _top_order({k: None if v is None else float(v) for k, v in lr.items()}, desc)  # 10 after 2
    odd = {rid: str(r["params"]["odd"]) for rid, r in runs.items()}  # "auto" among them: all compare as text
    got = [r["id"] for _, r in _table(store, "params.odd", False, ("params.odd",)).rows]
    assert got == _top_order(odd, False)
    assert [odd[rid] for rid in got][:3] == ["0", "15", "18"]  # as text: "15" before "3"


def test_children_stay_under_their_parent_sorted_the_same_way(seeded: tuple[Store, dict[str, Any]]) -> None:
    store, logged = seeded
    sweep = logged["sweep"]
    with alexandria.Reader(store) as reader:
        conditions = RunFilter(experiment="sweep").conditions()
        for desc, children in ((False, ["child1", "child0"]), (True, ["child0", "child1"])):
            view = View([parse_column("metrics.loss.last")], parse_sort("metrics.loss.last"), desc)
            table = runs_table(reader.engine, conditions, view)
            assert [(d, r["id"]) for d, r in table.rows] == [(0, sweep["parent"])] + [(1, sweep[c]) for c in children]
            assert (table.runs, table.top, table.pages) == (3, 1, 1)


@pytest.mark.every_backend
def test_groups_count_and_aggregate_as_python_does(seeded: tuple[Store, dict[str, Any]]) -> None:
    store, logged = seeded
    runs = logged["runs"]
    cols = ("metrics.loss.last", "metrics.loss.max", "params.lr")
    table = _table(store, "metrics.loss.max", True, cols, group=parse_column("params.opt"))
    assert table.rows == [] and table.runs == len(runs) and table.top == 3
    by_opt: dict[str, list[str]] = {}
    for rid, r in runs.items():
        by_opt.setdefault(r["params"]["opt"], []).append(rid)
    assert [g["value"] for g in table.groups] == sorted(by_opt)  # groups by value
    for g in table.groups:
        members = by_opt[g["value"]]
        assert g["count"] == len(members)
        for agg in ("last", "max"):
            values = [v for v in (_expected(runs[rid]["points"], agg) for rid in members) if v is not None]
            stats = g["stats"][f"metrics.loss.{agg}"]
            assert stats["count"] == len(values)
            assert (stats["min"], stats["max"]) == pytest.approx((min(values), max(values)))
            assert stats["mean"] == pytest.approx(statistics.fmean(values))
        assert "params.lr" not in g["stats"]  # text: not aggregated
        maxima = {rid: _expected(runs[rid]["points"], "max") for rid in members}
        assert [r["id"] for r in g["rows"]] == _top_order(maxima, True)  # each group's runs by the sort
    numeric = _table(store, "start", True, ("metrics.loss.last",), group=parse_column("params.lr"))
    values = [g["value"] for g in numeric.groups]
    assert values == ["0.001", "0.02", "0.05", "0.1", "0.3", "0.5", "2", "10", None]  # as numbers, missing last


@pytest.mark.every_backend
def test_pages_split_the_order_without_overlap(seeded: tuple[Store, dict[str, Any]]) -> None:
    store, logged = seeded
    whole = [r["id"] for _, r in _table(store, "metrics.loss.min", False, page_size=100).rows]
    pages = [_table(store, "metrics.loss.min", False, page=p, page_size=4) for p in (1, 2, 3)]
    assert [t.pages for t in pages] == [3, 3, 3] and [len(t.rows) for t in pages] == [4, 4, 1]
    assert [r["id"] for t in pages for _, r in t.rows] == whole and len(whole) == len(logged["runs"])
    assert _table(store, "metrics.loss.min", False, page=4, page_size=4).rows == []


def test_bad_columns_are_said_on_the_page_and_the_rest_is_shown(seeded: tuple[Store, dict[str, Any]]) -> None:
    from starlette.testclient import TestClient

    from alexandria.ui.app import create_app

    store, logged = seeded
    alexandria.Reader(store).close()  # folded
    with TestClient(create_app(store.root, fold=False), base_url="http://127.0.0.1") as client:
        page = client.get("/?col=params.lr&col=metrics.<b>&col=nope&sort=tags&group=duration&page=0")
        assert page.status_code == 200
        text = page.text
        assert "column &#39;nope&#39;: &#39;nope&#39; at position 0 is not a field" in text
        assert "column &#39;metrics.&lt;b&gt;&#39;" in text and "<b>" not in text
        assert "cannot sort by tags (every tag): sort by one, tags.&lt;key&gt; (sorted by start instead)" in text
        assert "cannot group by &#39;duration&#39;" in text and "page &#39;0&#39; is not a page number" in text
        assert text.count('<td class="value" data-col="params.lr">') == len(logged["runs"]) + 3  # every run's cell
        api = client.get("/api/runs?col=params.lr,metrics.loss.max&sort=metrics.loss.max&desc=1&experiment=grid")
        d = api.json()
        assert d["columns"] == ["params.lr", "metrics.loss.max"] and d["errors"] == []
        maxima = {rid: _expected(r["points"], "max") for rid, r in logged["runs"].items()}
        assert [r["id"] for r in d["runs"]] == _top_order(maxima, True)
        assert all(r["values"]["metrics.loss.max"] == pytest.approx(maxima[r["id"]]) for r in d["runs"])
        bad = client.get("/api/runs?col=nope").json()
        assert bad["errors"] and bad["columns"][:2] == ["name", "experiment"]  # the defaults, and the error said


def test_the_runs_table_in_a_real_browser(store: Store, tmp_path: Path) -> None:
    logged = _seed(store)
    runs = logged["runs"]
    server = start_ui(store.root, "--interval", "0.3")
    try:
        wait_until(lambda: server.json("/api/runs")["count"] == 12, timeout=60, what="12 runs in /api/runs")
        with chromium_context(tmp_path, width=1400, console=True) as (context, problems):
            _drive(context, server.url, runs, tmp_path)
            assert not problems, problems
    finally:
        stop_ui(server)


def _ids(page: Any) -> list[str]:
    return page.eval_on_selector_all("#runs-table tbody tr[data-run-id]", "trs => trs.map(t => t.dataset.runId)")


def _drive(context: Any, url: str, runs: dict[str, Any], tmp_path: Path) -> None:
    page = context.new_page()
    page.goto(url + "?experiment=grid")
    # The defaults show values: the params that differ and the metric's last value, not counts.
    heads = page.eval_on_selector_all("#runs-table thead th[data-col]", "ths => ths.map(t => t.dataset.col)")
    assert heads[:6] == ["id", "name", "experiment", "status", "start", "duration"]
    assert {"params.lr", "params.odd", "params.opt", "metrics.loss.last"} <= set(heads), heads

    # Pick a column in the picker: searched for, ticked, applied; it appears with every run's value.
    page.click("#col-picker summary")
    page.fill("#col-search", "loss.m")
    visible = page.eval_on_selector_all("#col-list label:not([hidden])", "ls => ls.map(l => l.dataset.col)")
    assert visible == ["metrics.loss.min", "metrics.loss.max"]
    page.check('#col-list input[value="metrics.loss.max"]')
    page.click("#col-apply")
    page.wait_for_url("**col=metrics.loss.max**")
    maxima = {rid: _expected(r["points"], "max") for rid, r in runs.items()}
    for rid, v in maxima.items():
        cell = page.locator(f'tr[data-run-id="{rid}"] td[data-col="metrics.loss.max"]').inner_text()
        assert cell == ("" if v is None else f"{v:.6g}"), (rid, cell)

    # Click its header: rows reorder by it, ascending, then descending; the run without the metric stays last.
    page.click('th[data-col="metrics.loss.max"] a.sort')
    page.wait_for_url("**sort=metrics.loss.max**")
    assert _ids(page) == _top_order(maxima, False)
    page.click('th[data-col="metrics.loss.max"] a.sort')
    page.wait_for_url("**desc=1**")
    assert _ids(page) == _top_order(maxima, True)
    shot = tmp_path / "ui-runs-table-sorted.png"
    page.screenshot(path=str(shot), full_page=True)
    _save_artifact(shot)

    # Group by a param: group rows with their counts; a click shows the group's runs, another hides them.
    page.select_option("#f-group", "params.opt")
    page.click("#f-apply")
    page.wait_for_url("**group=params.opt**")
    groups = page.locator("#runs-table tr.group")
    counts = {
        groups.nth(i).get_attribute("data-value"): int(groups.nth(i).locator(".count").inner_text())
        for i in range(groups.count())
    }
    expected_counts: dict[str, int] = {}
    for r in runs.values():
        expected_counts[r["params"]["opt"]] = expected_counts.get(r["params"]["opt"], 0) + 1
    assert counts == expected_counts
    adam = page.locator('tr.group[data-value="adam"]')
    members = [rid for rid, r in runs.items() if r["params"]["opt"] == "adam"]
    stats = adam.locator('td[data-col="metrics.loss.max"]')
    highs = [maxima[rid] for rid in members if maxima[rid] is not None]
    assert stats.locator(".max").inner_text() == f"{max(highs):.6g}"
    assert stats.locator(".mean").inner_text() == f"{statistics.fmean(highs):.6g}"
    group_id = adam.get_attribute("data-group-row")
    rows = page.locator(f'#runs-table tr[data-group="{group_id}"]')
    assert rows.count() == len(members) and not any(rows.nth(i).is_visible() for i in range(rows.count()))
    adam.locator(".group-toggle").click()
    page.wait_for_selector(f'#runs-table tr[data-group="{group_id}"]:not([hidden])')
    shown = [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count()) if rows.nth(i).is_visible()]
    assert shown == _top_order({rid: maxima[rid] for rid in members}, True)
    shot = tmp_path / "ui-runs-table-grouped.png"
    page.screenshot(path=str(shot), full_page=True)
    _save_artifact(shot)
    adam.locator(".group-toggle").click()
    page.wait_for_selector(f'#runs-table tr[data-group="{group_id}"]:not([hidden])', state="detached")

    # The URL is the view: a new page at it shows the same columns, sort and groups.
    query = parse_qs(urlsplit(page.url).query)
    assert query["group"] == ["params.opt"] and query["sort"] == ["metrics.loss.max"] and query["desc"] == ["1"]
    shared = context.new_page()
    shared.goto(page.url)
    same = shared.locator("#runs-table tr.group")
    assert [same.nth(i).get_attribute("data-value") for i in range(same.count())] == list(counts)
    ungrouped = page.url.replace("group=params.opt", "group=")
    shared.goto(ungrouped)
    assert _ids(shared) == _top_order(maxima, True)


def test_next_page_links_and_a_groups_list_all_link(
    seeded: tuple[Store, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import html
    import re

    from starlette.testclient import TestClient

    from alexandria import runs_table as module
    from alexandria.ui.app import create_app

    store, logged = seeded
    runs = logged["runs"]
    alexandria.Reader(store).close()  # folded
    monkeypatch.setattr(module, "GROUP_RUNS", 2)  # groups of 3 runs show 2
    minima = {rid: _expected(r["points"], "min") for rid, r in runs.items()}
    with TestClient(create_app(store.root, fold=False), base_url="http://127.0.0.1") as client:

        def link(text: str, dom_id: str) -> str | None:
            m = re.search(rf'<a href="([^"]*)" id="{dom_id}"', text)
            return html.unescape(m.group(1)) if m else None

        url: str | None = "/?experiment=grid&sort=metrics.loss.min&desc=0&per=4"
        seen: list[str] = []
        while url is not None:  # follow "next page" to the end: every run once, in the order
            text = client.get(url).text
            seen += re.findall(r'<tr data-run-id="([0-9a-f]{32})"', text)
            url = link(text, "page-next")
        assert seen == _top_order(minima, False)
        assert client.get("/?per=0").text.count("per &#39;0&#39; is not a page size from 1 to 1000") == 1

        text = client.get("/?experiment=grid&group=params.opt&sort=metrics.loss.min&desc=0").text
        links = [html.unescape(h) for h in re.findall(r'<a href="([^"]*)" class="group-all">', text)]
        assert len(links) == 3 and "q=params.opt+%3D+%27adam%27" in links[0]
        api = client.get(links[0].replace("/?", "/api/runs?")).json()
        adam = [rid for rid, r in runs.items() if r["params"]["opt"] == "adam"]
        assert api["errors"] == [] and [r["id"] for r in api["runs"]] == _top_order({k: minima[k] for k in adam}, False)


def test_column_names_are_the_filter_languages_and_read_back() -> None:
    from alexandria.runs_table import ColumnError, column_name

    for key in ("lr", "val/acc", "a.min", "my key", "<i>k</i>", "a,b", "x`y", 'x"y', "ünï"):
        for kind, agg in (("param", ""), ("metric", "max"), ("metric", "last"), ("tag", "")):
            c = parse_column(column_name(kind, key, agg))
            assert (c.kind, c.key, c.agg) == (kind, key, agg), (kind, key, agg)
    assert (
        column_name("param", "my key") == "params.`my key`" and column_name("metric", "a.min") == "metrics.a.min.last"
    )
    assert parse_column("metrics.a.min").agg == "min"  # a bare key's last part is the aggregate, as in filters
    for bad, says in (("metrics.", "cannot read"), ("params.lr > 1", "expected one field"), ("id", "not a column")):
        with pytest.raises(ColumnError, match=says):
            parse_column(bad)
    with pytest.raises(ColumnError, match="cannot sort by tags"):
        parse_sort("tags")
