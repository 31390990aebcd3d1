"""The read model: one definition of a metric's last value that every view agrees on, and reads of many runs
in a fixed number of queries."""

from __future__ import annotations

import csv
import http.client
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event

import alexandria
from alexandria import summaries
from alexandria.store import Store
from alexandria.ui import BackgroundServer
from alexandria.ui import data as ui_data
from tests.conftest import alex, run_python

# A real writer process with a controlled clock (the logging API takes no timestamps): the points of a
# metric are logged out of step order, and two points share a step, the one folded last logged earlier.
WRITER = """
import json, sys, alexandria, alexandria.tracking as tracking
now = [1000.0]
tracking._time = lambda: now[0]
def at(t, key, value, step=None):
    now[0] = t
    run.log_metric(key, value, step=step)
with alexandria.start_run(experiment="order", store=sys.argv[1], capture=False) as run:
    at(1001.0, "loss", 0.5, 5)
    at(1002.0, "loss", 0.2, 2)       # a lower step logged later: still not the last value
    at(1004.0, "tie", 1.0, 3)
    at(1003.0, "tie", 2.0, 3)        # the same step, folded later but logged earlier
    at(1005.0, "mixed", 1.5, 1)
    at(1006.0, "mixed", 9.0)         # no step: lower than any step
    at(1008.0, "nostep", 7.0)
    at(1007.0, "nostep", 8.0)        # no point has a step: the latest time decides
    a = run.id
with alexandria.start_run(experiment="order", store=sys.argv[1], capture=False) as run:
    at(1010.0, "loss", 1.0, 0)
    at(1011.0, "loss", 0.9, 1)
    b = run.id
print(json.dumps([a, b]))
"""

#: What the last value of each metric of run A must be, everywhere: (value, step).
LAST = {"loss": (0.5, 5), "tie": (1.0, 3), "mixed": (1.5, 1), "nostep": (7.0, None)}


def _log(store: Store) -> tuple[str, str]:
    a, b = json.loads(run_python(WRITER, str(store.root)).strip().splitlines()[-1])
    return a, b


def test_the_reader_and_compare_agree_on_the_last_value_on_both_backends(backend_store: Store) -> None:
    a, b = _log(backend_store)
    with alexandria.Reader(backend_store, fold=True) as r:
        got = {m.key: (m.last_value, m.last_step) for m in r.run(a)["metrics"]}
        assert got == LAST
        table = r.table([a, b], metrics=list(LAST))
        assert [table[f"{k}.last"].tolist()[0] for k in LAST] == [v for v, _ in LAST.values()]
        assert table["loss.last"].tolist()[1] == 0.9
        assert {row["id"] for row in r.runs(metric_filter=("loss", "=", 0.5))} == {a}
        assert {row["id"] for row in r.runs(metric_filter=("tie", "=", 1.0))} == {a}
        assert {row["id"] for row in r.runs(metric_filter=("nostep", "=", 7.0))} == {a}
        c = r.compare([a, b])
        finals = {k: (m["runs"][0]["final"], m["runs"][0]["final_step"]) for k, m in c["metrics"].items()}
        assert finals == LAST
        assert c["metrics"]["loss"]["runs"][1]["final"] == 0.9


def _get(url: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_every_view_agrees_on_the_last_value(store: Store, tmp_path: Path) -> None:
    """Steps out of order and a tie on step: `alex show`, `alex compare`, the dashboard's run page, its JSON
    and its compare page's charts, and an export file all give the point with the highest step, then the
    latest time."""
    a, b = _log(store)

    show = alex("--store", str(store.root), "show", a)
    assert show.returncode == 0, show.stderr
    for key, (value, step) in LAST.items():
        shown = "-" if step is None else str(step)
        assert re.search(rf"│ {key}\s+│\s+2 │\s+{shown} │\s+{value:g} │", show.stdout), (key, show.stdout)

    compare = alex("--store", str(store.root), "compare", a, b)
    assert compare.returncode == 0, compare.stderr
    assert re.search(r"loss\s+│ final\s+│\s+0\.5 @5 │\s+0\.9 @1 │", compare.stdout), compare.stdout
    assert re.search(r"tie\s+│ final\s+│\s+1 @3 │\s+- │", compare.stdout), compare.stdout
    assert re.search(r"nostep\s+│ final\s+│\s+7 │\s+- │", compare.stdout), compare.stdout

    with BackgroundServer(store, fold=False) as server:  # the CLI above folded everything
        status, body = _get(server.url, f"/api/run/{a}/status")
        assert status == 200
        got = {k: (m["last_value"], m["last_step"]) for k, m in json.loads(body)["metrics"].items()}
        assert got == LAST
        status, page = _get(server.url, f"/run/{a}")
        assert status == 200
        for key, (value, step) in LAST.items():
            shown = "-" if step is None else str(step)
            row = rf'<tr data-key="{key}">.*?last-step">{shown}</td><td class="num last-value">{value:g}</td>'
            assert re.search(row, page), key
        status, page = _get(server.url, f"/compare?run={a}&run={b}")
        assert status == 200 and 'data-key="loss"' in page
        status, body = _get(server.url, f"/api/run/{a}/metric/loss?buckets=100")  # what the compare chart draws
        chart = json.loads(body)
        assert status == 200 and (chart["last"][-1], chart["x"][-1]) == (0.5, 5)
        status, body = _get(server.url, f"/api/run/{a}/metric/tie?buckets=100")  # a tie on step: the latest time
        chart = json.loads(body)
        assert status == 200 and (chart["last"][-1], chart["x"][-1]) == (1.0, 3)

    export = alex("--store", str(store.root), "export", a, "-o", str(tmp_path / "out"))
    assert export.returncode == 0, export.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "metrics.csv").open(newline="")))

    def rank(r: dict[str, Any]) -> tuple[Any, ...]:  # the documented rule, over the exported columns
        return (r["step"] != "", int(r["step"] or 0), float(r["timestamp"]), int(r["attempt"]))

    for key, (value, step) in LAST.items():
        last = max((r for r in rows if r["key"] == key), key=rank)
        assert (float(last["value"]), int(last["step"]) if last["step"] else None) == (value, step)


def _statements(engine: Any, read: Any) -> tuple[Any, list[str]]:
    """What `read()` returns, and the SQL statements it sent."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        return read(), seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_many_runs_are_read_in_a_fixed_number_of_queries(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = []
    for i in range(7):
        with alexandria.start_run(experiment="many", store=store, capture=False) as run:
            run.log_params({"lr": 0.1 * (i + 1), "seed": i})
            for step in (3, 1, 2):
                run.log_metrics({"loss": 1.0 / (step + i), "acc": step * 0.1}, step=step)
        ids.append(run.id)
    with alexandria.Reader(store) as r:

        def reads(n: int) -> tuple[Any, list[str]]:
            return _statements(
                r.engine,
                lambda: (
                    r.table(ids[:n], metrics=["loss", "acc"]).to_dict("list"),
                    r.compare(ids[:n]),
                    ui_data.compare_page(r.engine, ids[:n], [], 1.0)["page_data"],
                ),
            )

        _, few = reads(2)
        whole, many = reads(7)
        assert len(many) == len(few)  # N runs: the same queries, however many
        monkeypatch.setattr(summaries, "IN_CHUNK", 3)  # 7 ids: 3 chunks per batched read
        chunked, chunked_queries = reads(7)
        assert chunked == whole
        assert len(chunked_queries) > len(many)
        loss = r.table(ids, metrics=["loss"])
        assert loss["loss.last"].tolist() == [1.0 / (3 + i) for i in range(7)]  # step 3, logged first
