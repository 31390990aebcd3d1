"""Reports: curves from buckets that keep spikes, parameters side by side, parallel coordinates, offline
pages with nothing unescaped, `alex compare`, and exports that equal the database."""

from __future__ import annotations

import csv
import html
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import alexandria
from alexandria import export, figures, pages, report
from alexandria.cli import cli
from alexandria.errors import InvalidInputError, QueryError, RunNotFoundError
from alexandria.query import Reader, metric_by_run, select_runs
from tests.conftest import alex

XSS = "<script>alert(1)</script>"
A_NAME, B_NAME = "a-curves", f"b {XSS}"
SPIKE_STEP, SPIKE = 123_457, 50.0
N = 200_000


@dataclass
class World:
    root: Path
    reader: Reader
    a: str  # 200,000 smooth loss points and one spike; acc; grad_norm with a NaN
    b: str  # loss and acc; an experiment name with markup in it
    parent: str  # a sweep of 4 child runs
    children: list[str]

    @property
    def engine(self) -> Any:
        return self.reader.engine


def smooth_loss(step: int) -> float:
    return math.exp(-step / 50_000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("report") / "store"
    with alexandria.start_run(experiment="curves", name=A_NAME, store=root, capture=False) as a:
        a.log_params({"lr": 0.1, "layers": 3, "note": XSS})
        for step in range(N):
            a.log_metric("loss", SPIKE if step == SPIKE_STEP else smooth_loss(step), step=step)
        for step in range(10):
            a.log_metrics({"acc": step / 10, "grad_norm": math.nan if step == 5 else 1.0 + step}, step=step)
    with alexandria.start_run(experiment=f"curves {XSS}", name=B_NAME, store=root, capture=False) as b:
        b.log_params({"lr": 0.01, "layers": 3, "note": XSS})
        for step in range(1000):
            b.log_metric("loss", 2.0 - step / 1000, step=step)
        for step, value in enumerate([0.5, 0.95, 0.7]):
            b.log_metric("acc", value, step=step)
    children = []
    with alexandria.start_run(experiment="sweep", store=root, capture=False) as parent:
        for i, (lr, batch, opt) in enumerate(
            [(0.1, 32, "adam"), (0.03, 64, "sgd"), (0.01, 32, "adam"), (0.003, 64, "sgd")]
        ):
            with alexandria.start_run(experiment="sweep-child", store=root, capture=False, parent=parent) as child:
                child.log_params({"lr": lr, "batch": batch, "opt": opt, "seed": 0})
                for step in range(5):
                    child.log_metric("val/acc", 0.5 + step * 0.05 + i * 0.01, step=step)
            children.append(child.id)
    reader = Reader(root)
    yield World(root, reader, a.id, b.id, parent.id, children)
    reader.close()


def invoke(w: World, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(w.root), *args])
    return result.exit_code, result.stdout, result.stderr


def page_figures(path: Path) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Every figure of a page: div id -> (data, layout), as handed to Plotly.newPlot."""
    return page_figures_text(path.read_text("utf-8"))


def page_figures_text(text: str) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    dec = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\("([^"]+)", ', text):
        data, end = dec.raw_decode(text, m.end())
        layout, _ = dec.raw_decode(text, text.index("{", end))
        out[m.group(1)] = (data, layout)
    return out


def role(data: list[Any], which: str) -> list[Any]:
    return [t for t in data if (t.get("meta") if isinstance(t, dict) else t.meta)["role"] == which]


def assert_offline(path: Path) -> None:
    text = path.read_text("utf-8")
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", text) == ["plotly.min.js"]
    assert not re.search(r"https?://[^\"']*\.js", text) and "cdn.plot.ly" not in text
    assert (path.parent / "plotly.min.js").stat().st_size > 1_000_000


def test_a_spike_among_200k_points_stays_visible(world: World, tmp_path: Path) -> None:
    fig = report.curves_figure(world.engine, [world.a], ["loss"], buckets=500)
    (line,) = role(fig.data, "line")
    (envelope,) = role(fig.data, "envelope")
    assert len(line.x) <= 500 and sum(c[3] for c in line.customdata) == N  # every point is in a bucket
    assert max(envelope.y) == SPIKE and max(line.y) < 1.01  # the bucket's last misses it; its max does not
    assert min(envelope.y) == pytest.approx(smooth_loss(N - 1))
    # the written page draws the same
    page = report.write_plot(tmp_path / "p" / "plot.html", world.engine, [world.a], ["loss"], buckets=500)
    ((data, layout),) = page_figures(page).values()
    (line_json,) = role(data, "line")
    (envelope_json,) = role(data, "envelope")
    assert len(line_json["x"]) == len(line_json["y"]) <= 500
    assert SPIKE in envelope_json["y"]
    assert layout["xaxis"]["title"]["text"] == "step"
    assert_offline(page)
    assert sorted(p.name for p in page.parent.iterdir()) == ["plot.html", "plotly.min.js"]


def test_two_runs_overlaid_with_their_names(world: World) -> None:
    fig = report.curves_figure(world.engine, [world.a[:8], world.b], ["loss", "acc"], buckets=100)
    shown = [t.name for t in fig.data if t.showlegend is not False]
    b_exp, b_name = html.escape(f"curves {XSS}", quote=False), html.escape(B_NAME, quote=False)
    assert shown == [
        f"{A_NAME} loss (curves)",
        f"{b_name} loss ({b_exp})",
        f"{A_NAME} acc (curves)",
        f"{b_name} acc ({b_exp})",
    ]
    hovers = [t.hovertemplate for t in role(fig.data, "line")]
    assert [h.split("<br>")[1] for h in hovers] == [f"run {rid[:8]}" for rid in (world.a, world.b) * 2]
    acc_b = next(t for t in role(fig.data, "line") if t.meta["run_id"] == world.b and t.meta["metric"] == "acc")
    assert list(acc_b.x) == [0, 1, 2] and list(acc_b.y) == [0.5, 0.95, 0.7]  # few points: exact
    assert [a.text for a in fig.layout.annotations] == ["loss", "acc"]  # one subplot per metric


def test_x_as_seconds_since_the_run_start(world: World) -> None:
    fig = report.curves_figure(world.engine, [world.b], ["loss"], x="time")
    (line,) = role(fig.data, "line")
    start, last = world.reader.sql(
        f"SELECT r.timestamp_start, max(m.timestamp) FROM run r JOIN metric m ON m.run_id = r.id "
        f"WHERE r.id = '{world.b}' AND m.key = 'loss'"
    )[1][0]
    assert min(line.x) >= 0 and max(line.x) == pytest.approx(last - start)
    assert fig.layout.xaxis.title.text == "seconds since the run's start"
    with pytest.raises(InvalidInputError, match="x must be 'step' or 'time'"):
        report.curves_figure(world.engine, [world.b], ["loss"], x="wall")


def test_smoothing_and_log_controls(world: World, tmp_path: Path) -> None:
    ys = [1.0, 0.0, math.nan, 1.0]
    w = 0.6  # TensorBoard: last = last*w + (1-w)*y, shown as last / (1 - w**n); NaN passes through
    first, second = 1.0, (w * 0.4 * 1.0 + 0.4 * 0.0) / (1 - w**2)
    third = (w * (w * 0.4) + 0.4 * 1.0) / (1 - w**3)
    out = figures.smooth(ys, w)
    assert out[0] == pytest.approx(first) and out[1] == pytest.approx(second)
    assert math.isnan(out[2]) and out[3] == pytest.approx(third)
    assert figures.smooth(ys[:2], 0.0) == ys[:2]
    with pytest.raises(InvalidInputError, match=r"smoothing must be a number in \[0, 1\)"):
        figures.smooth(ys, 1.0)

    fig = report.curves_figure(world.engine, [world.b], ["acc"], smoothing=w, log_y=True)
    (line,) = role(fig.data, "line")
    assert list(line.y) == pytest.approx(figures.smooth([c[0] for c in line.customdata], w))
    assert fig.layout.yaxis.type == "log"
    (menu,) = fig.layout.updatemenus
    assert menu.active == 1 and [b.label for b in menu.buttons] == ["linear y", "log y"]
    assert menu.buttons[1].args == ({"yaxis.type": "log"},) or menu.buttons[1].args[0] == {"yaxis.type": "log"}

    code, out, err = invoke(
        world, "plot", world.b, "-m", "acc", "--smoothing", "0.6", "--log", "-o", str(tmp_path / "s.html")
    )
    assert code == 0, err
    page = Path(out.strip())
    text = page.read_text("utf-8")
    assert re.search(r'<input type="range" id="smoothing"[^>]*value="0.6"', text)
    assert 'id="smoothing-value"' in text and "Plotly.restyle(gd, {y: ys}, idx)" in text
    ((data, layout),) = page_figures(page).values()
    assert layout["yaxis"]["type"] == "log"
    assert [b["label"] for b in layout["updatemenus"][0]["buttons"]] == ["linear y", "log y"]
    assert role(data, "line")[0]["y"] == pytest.approx(figures.smooth([0.5, 0.95, 0.7], 0.6))
    assert invoke(world, "plot", world.b, "-m", "acc", "--smoothing", "1")[0] == 2


def test_parameters_side_by_side(world: World) -> None:
    table = report.params_table_html(world.engine, [world.a, world.b])
    body = table.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr( class=\"differs\")?><th>(.*?)</th>(.*?)</tr>", body)
    by_key = {
        re.sub(r"<.*", "", key).strip(): (bool(mark), re.findall(r"<td[^>]*>(.*?)</td>", cells))
        for mark, key, cells in rows
    }
    assert by_key["lr"] == (True, ["0.1", "0.01"])
    assert by_key["layers"] == (False, ["3", "3"])
    assert by_key["note"] == (False, [html.escape(XSS)] * 2)
    assert list(by_key)[0] == "lr"  # what differs comes first
    assert XSS not in table


def test_parallel_coordinates_of_a_sweep(world: World) -> None:
    fig = report.parallel_coordinates_figure(world.engine, world.parent, "val/acc")  # a parent id: its children
    (pc,) = fig.data
    assert pc.type == "parcoords" and pc.meta["run_ids"] == world.children
    dims = {d.label: d for d in pc.dimensions}
    assert list(dims) == ["batch", "lr", "opt", "val/acc (last)"]  # seed is 0 in every run: left out
    assert list(dims["lr"].values) == [0.1, 0.03, 0.01, 0.003] and list(dims["batch"].values) == [32, 64, 32, 64]
    assert list(dims["opt"].ticktext) == ["adam", "sgd"] and list(dims["opt"].values) == [0, 1, 0, 1]
    last = [0.5 + 4 * 0.05 + i * 0.01 for i in range(4)]
    assert list(dims["val/acc (last)"].values) == pytest.approx(last)
    assert list(pc.line.color) == pytest.approx(last)
    best = report.parallel_coordinates_figure(world.engine, world.children, "val/acc", agg="min").data[0]
    assert list(best.dimensions[-1].values) == pytest.approx([0.5 + i * 0.01 for i in range(4)])


def test_sweep_report_page(world: World, tmp_path: Path) -> None:
    code, out, err = invoke(world, "report", "--sweep", world.parent[:10], "-o", str(tmp_path / "sweep.html"))
    assert code == 0, err
    page = Path(out.strip())
    figs = page_figures(page)
    assert list(figs) == ["curves-1", "parallel"]
    (pc,) = figs["parallel"][0]
    assert pc["type"] == "parcoords" and all(len(d["values"]) == 4 for d in pc["dimensions"])
    assert len(role(figs["curves-1"][0], "line")) == 4
    text = page.read_text("utf-8")
    parent_name = world.reader.run(world.parent)["run"]["name"]
    assert f"sweep {parent_name} {world.parent[:8]} (sweep): 4 runs" in text
    assert all(c in text for c in world.children)
    assert_offline(page)


def test_report_escapes_everything_and_is_offline(world: World, tmp_path: Path) -> None:
    page = report.write_report(tmp_path / "r" / "report.html", world.engine, [world.a, world.b], buckets=200)
    text = page.read_text("utf-8")
    assert XSS not in text and "<script>alert" not in text
    assert html.escape(XSS) in text  # shown as text in the parameters and runs tables
    assert "alert(1)" in text
    figs = page_figures(page)
    assert list(figs) == ["curves-1", "curves-2", "curves-3", "parallel"]  # acc, grad_norm, loss
    names = [t["name"] for t in figs["curves-1"][0] if t.get("showlegend") is not False]
    assert names[1] == f"{html.escape(B_NAME, quote=False)} acc (curves {html.escape(XSS, quote=False)})"
    assert "not logged by " + html.escape(f"{B_NAME} {world.b[:8]}") in text  # grad_norm
    assert_offline(page)
    assert re.search(r"<td>\d+(\.\d)?s</td>", text)  # durations

    # parcoords tick labels are plain text to plotly: given as logged, and still no raw markup in the page
    fig = report.parallel_coordinates_figure(world.engine, [world.a, world.b], "loss", varying_only=False)
    block = pages.figure_html(fig, "pc", "parallel")
    assert XSS not in block
    note = next(d for d in page_figures_text(block)["pc"][0][0]["dimensions"] if d["label"] == "note")
    assert note["ticktext"] == [XSS] and note["values"] == [0, 0]

    shared = report.write_report(tmp_path / "share" / "one.html", world.engine, [world.b], embed=True)
    assert sorted(p.name for p in shared.parent.iterdir()) == ["one.html"]
    body = shared.read_text("utf-8")
    assert "<script src=" not in body and "plotly.js v" in body and len(body) > 1_000_000


def test_compare_in_the_terminal(world: World) -> None:
    c = report.compare_runs(world.engine, [world.a, world.b])
    assert c["params_differ"] == {"lr": ["0.1", "0.01"]}
    assert c["params_equal"] == {"layers": "3", "note": XSS}
    loss = c["metrics"]["loss"]
    assert loss["best_rule"] == "min" and loss["runs"][0]["points"] == N
    assert loss["runs"][0]["final"] == pytest.approx(smooth_loss(N - 1)) and loss["runs"][1]["best"] == 1.001
    assert c["metrics"]["acc"]["best_rule"] == "max" and c["metrics"]["grad_norm"]["runs"][1] is None
    grad = c["metrics"]["grad_norm"]["runs"][0]
    assert grad["final"] == 10.0 and grad["best"] == 10.0 and grad["points"] == 10  # the NaN is not best

    code, out, err = invoke(world, "compare", world.a[:8], world.b[:8])
    assert code == 0, err
    assert re.search(r"lr\s+│\s+0\.1\s+│\s+0\.01\s+│", out)
    assert "2 parameter(s) equal in every run: layers=3, note=" + XSS in out
    assert re.search(r"loss\s+│ final\s+│\s+0\.018316 @199999 │\s+1\.001 @999 │", out)
    assert re.search(r"│ best \(min\)\s+│\s+0\.018316 \* │\s+1\.001 │", out)
    assert re.search(r"acc\s+│ final\s+│\s+0\.9 @9 │\s+0\.7 @2 │", out)
    assert re.search(r"│ best \(max\)\s+│\s+0\.9 │\s+0\.95 \* │", out)
    assert re.search(r"│ points\s+│\s+200000 │\s+1000 │", out)
    code, out, _ = invoke(world, "compare", world.a, world.b, "--best", "min")
    assert re.search(r"acc\s+│ final.*\n.*│ best \(min\)\s+│\s+0 \* │\s+0\.5 │", out)


def _sql_rows(world: World, sql: str) -> list[tuple[Any, ...]]:
    return world.reader.sql(sql)[1]


def test_export_csv_equals_the_database(world: World, tmp_path: Path) -> None:
    code, out, err = invoke(world, "export", "--format", "csv", "-o", str(tmp_path / "csv"))
    assert code == 0, err
    assert out.split() == [str(tmp_path / "csv" / f"{n}.csv") for n in ("runs", "params", "metrics")]
    read = {
        n: list(csv.DictReader((tmp_path / "csv" / f"{n}.csv").open(newline=""))) for n in ("runs", "params", "metrics")
    }
    for name, table in (("runs", "run"), ("params", "parameter"), ("metrics", "metric")):
        assert len(read[name]) == _sql_rows(world, f"SELECT count(*) FROM {table}")[0][0]
    assert len(read["runs"]) == 7 and len(read["metrics"]) == N + 20 + 1003 + 20
    nan = [r for r in read["metrics"] if r["key"] == "grad_norm" and r["step"] == "5"]
    assert nan == [
        {
            "run_id": world.a,
            "key": "grad_norm",
            "step": "5",
            "value": "",
            "timestamp": nan[0]["timestamp"],
            "attempt": "0",
        }
    ]
    spike = next(r for r in read["metrics"] if r["run_id"] == world.a and r["step"] == str(SPIKE_STEP))
    assert float(spike["value"]) == SPIKE
    child = next(r for r in read["runs"] if r["id"] == world.children[0])
    assert child["parent_id"] == world.parent and child["status"] == "finished" and json.loads(child["tags"]) == {}
    assert {"run_id": world.a, "key": "note", "value": XSS} in read["params"]

    code, out, _ = invoke(world, "export", world.b[:8], "-o", str(tmp_path / "b"))
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open(newline="")))
    assert len(rows) == 1003 and {r["run_id"] for r in rows} == {world.b}


def test_export_parquet_reads_back_equal(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(export, "FETCH_ROWS", 7_000)
    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 50_000)
    paths = report.export_runs(world.engine, None, tmp_path / "pq", "parquet")
    assert [p.name for p in paths] == ["runs.parquet", "params.parquet", "metrics.parquet"]
    metrics = pq.ParquetFile(paths[2])
    assert metrics.metadata.num_row_groups > 1
    assert all(metrics.metadata.row_group(i).num_rows <= 50_000 for i in range(metrics.metadata.num_row_groups))
    got = sorted(tuple(r.values()) for r in metrics.read().to_pylist())
    want = sorted(_sql_rows(world, "SELECT run_id, key, step, value, timestamp, attempt FROM metric"))
    assert got == want  # NaN (NULL) read back as None
    assert (world.a, "grad_norm", 5, None) == got[[g[:3] for g in got].index((world.a, "grad_norm", 5))][:4]
    params = sorted(tuple(r.values()) for r in pq.read_table(paths[1]).to_pylist())
    assert params == sorted(_sql_rows(world, "SELECT run_id, key, value FROM parameter"))
    runs = pq.read_table(paths[0]).to_pylist()
    assert [r["id"] for r in runs] == [
        r[0] for r in _sql_rows(world, "SELECT id FROM run ORDER BY timestamp_start, id")
    ]
    assert runs[0]["start"] == _sql_rows(world, f"SELECT timestamp_start FROM run WHERE id = '{runs[0]['id']}'")[0][0]


def test_parquet_without_pyarrow_says_what_to_install(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(InvalidInputError, match=r"pip install 'alexandria\[data\]'"):
        report.export_runs(world.engine, None, tmp_path, "parquet")


def test_clear_errors(world: World, tmp_path: Path) -> None:
    a, b = world.a, world.b
    assert invoke(world, "plot", "0" * 8, "-m", "loss") == (
        1,
        "",
        "Error: no run with id or name '00000000'; `alex runs` lists the runs\n",
    )
    code, _, err = invoke(world, "plot", a, b, "-m", "loss", "-m", "grad_norm")
    assert (code, err) == (1, f"Error: metric 'grad_norm' is missing from run {b[:8]} (it has: acc, loss)\n")
    code, _, err = invoke(world, "report", *world.children[:2], "-m", "loss", "-o", str(tmp_path / "x.html"))
    c0, c1 = world.children[0][:8], world.children[1][:8]
    assert (code, err) == (
        1,
        f"Error: metric 'loss' is missing from 2 runs: {c0} (it has: val/acc); {c1} (it has: val/acc)\n",
    )
    assert invoke(world, "report") == (
        1,
        "",
        "Error: no runs selected: give run ids, or --sweep PARENT_ID for a sweep's child runs\n",
    )
    assert invoke(world, "report", "--sweep", b)[2] == (
        f"Error: run {b} has no child runs: --sweep takes the parent run of a sweep\n"
    )
    assert invoke(world, "compare", a)[::2] == (1, "Error: compare needs at least two runs\n")
    assert not list(tmp_path.iterdir())  # nothing written on an error
    with pytest.raises(RunNotFoundError):
        report.compare_runs(world.engine, ["abc", "zzz"])
    with pytest.raises(QueryError):
        report.parallel_coordinates_figure(world.engine, [a, b], "grad_norm")
    # as a user meets it: a real process, one line on stderr, exit code 1
    proc = alex("--store", str(world.root), "plot", a[:8], "-m", "nope")
    assert (
        proc.returncode == 1
        and proc.stderr == f"Error: metric 'nope' is missing from run {a[:8]} (it has: acc, grad_norm, loss)\n"
    )


def test_plot_writes_to_the_current_directory_by_default(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(world, "plot", world.b[:8], "-m", "loss", "--embed")
    assert code == 0, err
    assert out == f"plot-{world.b[:8]}.html\n" and (tmp_path / f"plot-{world.b[:8]}.html").is_file()
    assert not (tmp_path / "plotly.min.js").exists()  # embedded


def test_names_and_deleted_runs_in_reports_and_exports(tmp_path: Path) -> None:
    """Names in a report's runs table, headers and legend (the id prefix in the hover text; a run logged
    before names existed shows its id prefix) and in the export's `name` column; a deleted run (and a
    deleted parent's children) is gone from reports and exports at once, refused by name, and back when
    restored."""
    root = tmp_path / "store"
    names = {"small": "<i>small</i>", "big": "big", "old": None}
    ids: dict[str, str] = {}
    with alexandria.start_run(experiment="tidy", name="sweep-parent", store=root, capture=False) as parent:
        for i, (key, name) in enumerate(names.items()):
            with alexandria.start_run(experiment="tidy", name=name, parent=parent, store=root, capture=False) as c:
                c.log_params({"lr": 0.1 / (i + 1)})
                c.log_metric("loss", 1.0 / (i + 1), step=0)
            ids[key] = c.id
    # The last child as a version from before run names wrote it: no name in its run_started line.
    (segment,) = (root / "runs" / ids["old"]).glob("*.jsonl")
    lines = segment.read_text().splitlines(keepends=True)
    started = json.loads(lines[1])
    assert started.pop("name") and started["event"] == "run_started"
    lines[1] = json.dumps(started) + "\n"
    segment.write_text("".join(lines))

    with Reader(root) as reader:
        engine = reader.engine
        text = report.write_report(tmp_path / "sweep.html", engine, parent.id).read_text("utf-8")
        assert f"sweep sweep-parent {parent.id[:8]} (tidy): 3 runs" in text
        cells = re.findall(r'<td class="name">([^<]*)</td>', text)
        assert cells == ["&lt;i&gt;small&lt;/i&gt;", "big", ids["old"][:8]]
        headers = re.findall(r'<span class="name" title="([0-9a-f]{32})">([^<]*)</span>', text)
        assert headers == [
            (ids["small"], "&lt;i&gt;small&lt;/i&gt;"),
            (ids["big"], "big"),
            (ids["old"], ids["old"][:8]),
        ]
        lines_ = role(page_figures_text(text)["curves-1"][0], "line")
        assert [t["name"] for t in lines_] == [
            pages.plotly_text("<i>small</i> loss (tidy)"),
            "big loss (tidy)",
            f"{ids['old'][:8]} loss (tidy)",
        ]
        assert [t["hovertemplate"].split("<br>")[1] for t in lines_] == [f"run {ids[k][:8]}" for k in names]

        def exported(out: Path) -> dict[str, list[dict[str, str]]]:
            report.export_runs(engine, None, out)
            return {n: list(csv.DictReader((out / f"{n}.csv").open(newline=""))) for n in ("runs", "params", "metrics")}

        runs = exported(tmp_path / "all")["runs"]
        assert {r["id"]: r["name"] for r in runs} == {
            parent.id: "sweep-parent",
            ids["small"]: "<i>small</i>",
            ids["big"]: "big",
            ids["old"]: "",
        }
        assert list(runs[0]) == ["id", "name", "experiment", "status", "start", "end", "parent_id", "tags"]

        alexandria.delete_runs([ids["big"]], store=root)
        reader.refresh()
        text = report.write_report(tmp_path / "sweep2.html", engine, parent.id).read_text("utf-8")
        assert "(tidy): 2 runs" in text and ids["big"] not in text
        tables = exported(tmp_path / "live")
        for name, column in (("runs", "id"), ("params", "run_id"), ("metrics", "run_id")):
            assert ids["big"] not in {r[column] for r in tables[name]}, name
            assert ids["small"] in {r[column] for r in tables[name]}, name
        with pytest.raises(InvalidInputError, match=f"run {ids['big']} is deleted: `alex restore {ids['big'][:8]}`"):
            report.write_report(tmp_path / "x.html", engine, [ids["big"]])
        code, _, err = invoke_store(root, "report", "big", "-o", str(tmp_path / "y.html"))  # by its name
        assert (code, err) == (
            1,
            f"Error: run {ids['big']} is deleted: `alex restore {ids['big'][:8]}` brings it back\n",
        )

        alexandria.delete_runs([parent.id], store=root)  # a parent takes its children with it
        reader.refresh()
        with pytest.raises(InvalidInputError, match="no runs in the store"):
            report.export_runs(engine, None, tmp_path / "none")
        with pytest.raises(InvalidInputError, match="has no child runs"):
            report.write_report(tmp_path / "z.html", engine, parent.id)

        alexandria.restore_runs([parent.id], store=root)
        reader.refresh()
        text = report.write_report(tmp_path / "sweep3.html", engine, parent.id).read_text("utf-8")
        assert "(tidy): 3 runs" in text and re.findall(r'<td class="name">([^<]*)</td>', text) == cells
        assert {r["id"]: r["name"] for r in exported(tmp_path / "back")["runs"]}[ids["big"]] == "big"


def invoke_store(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


# -- a sweep of many runs: a page bounded in points, width and legend ------------------------------------------

SWEEP_RUNS, SWEEP_STEPS = 25, 2000


@pytest.fixture(scope="module")
def wide_sweep(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """25 child runs (seeded) of 2,000 steps of loss, val/acc and train/acc, lr and opt differing."""
    import random

    rng = random.Random(4)
    root = tmp_path_factory.mktemp("sweep") / "store"
    with alexandria.start_run(experiment="wide", name="wide-parent", store=root, capture=False) as parent:
        for i in range(SWEEP_RUNS):
            with alexandria.start_run(experiment="wide", store=root, capture=False, parent=parent) as child:
                child.log_params({"lr": 10 ** rng.uniform(-4, -1), "opt": rng.choice(["adam", "sgd"]), "seed": 0})
                for step in range(SWEEP_STEPS):
                    v = rng.random()
                    child.log_metrics({"loss": 2 - v, "val/acc": v * (1 + i), "train/acc": v}, step=step)
    reader = Reader(root)
    yield root, reader, parent.id
    reader.close()


def band_shapes(envelope: dict[str, Any]) -> list[tuple[list[Any], list[Any]]]:
    """The shapes of a many-run envelope trace: its (x, y) between the gaps (None) that end each run's band."""
    shapes, xs, ys = [], [], []
    for x, y in zip(envelope["x"], envelope["y"], strict=True):
        if x is None:
            shapes.append((xs, ys))
            xs, ys = [], []
        else:
            xs.append(x)
            ys.append(y)
    return shapes


def test_a_sweep_page_holds_no_more_points_than_its_buckets(wide_sweep: Any, tmp_path: Path) -> None:
    root, reader, parent = wide_sweep
    out = tmp_path / "sweep.html"
    result = CliRunner().invoke(
        cli, ["--store", str(root), "report", "--sweep", parent, "--buckets", "300", "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    figs = page_figures(out)
    assert list(figs) == ["curves-1", "curves-2", "curves-3", "parallel"]  # one figure per metric, runs overlaid
    for n in (1, 2, 3):
        data, layout = figs[f"curves-{n}"]
        lines, envelopes = role(data, "line"), role(data, "envelope")
        assert len(lines) == SWEEP_RUNS
        assert all(len(t["x"]) == len(t["y"]) <= 300 for t in lines)  # never the 2,000 raw points
        # the runs' bands are one trace, a shape per run between gaps, in the order of the lines
        (envelope,) = envelopes
        assert envelope["meta"]["runs"] == [t["meta"]["run_id"] for t in lines]
        shapes = band_shapes(envelope)
        assert len(shapes) == SWEEP_RUNS and all(len(xs) <= 2 * 300 for xs, _ in shapes)
        # 25 runs: no legend of 25 names; each line's hover names its run
        assert all(t["showlegend"] is False for t in data)
        assert all(t["hovertemplate"].startswith("%{fullData.name}<br>run ") for t in lines)
        assert "customdata" not in lines[0]
    # the default budget: every curve's share of figures.PAGE_POINTS, none over the bucket default
    text = report.write_report(tmp_path / "default.html", reader.engine, parent).read_text("utf-8")
    share = figures.page_buckets(figures.DEFAULT_BUCKETS, 3 * SWEEP_RUNS)
    assert share == figures.PAGE_POINTS // (3 * SWEEP_RUNS) < SWEEP_STEPS
    lines = [t for n in (1, 2, 3) for t in role(page_figures_text(text)[f"curves-{n}"][0], "line")]
    assert max(len(t["x"]) for t in lines) <= share and sum(len(t["x"]) for t in lines) <= figures.PAGE_POINTS
    # a spike still shows: each envelope holds its bucket's true extremes
    (loss,) = role(page_figures_text(text)["curves-1"][0], "envelope")
    for run_id, (_, ys) in zip(loss["meta"]["runs"], band_shapes(loss), strict=True):
        ds = reader.downsample(run_id, "loss", share)
        assert max(ys) == pytest.approx(float(ds.max.max()), rel=1e-6)


def test_a_sweep_page_is_bounded_in_width(wide_sweep: Any, tmp_path: Path) -> None:
    root, reader, parent = wide_sweep
    text = report.write_report(tmp_path / "w.html", reader.engine, parent).read_text("utf-8")
    box = re.search(r'<div class="scroll-box"><table class="params">.*?</table></div>', text, re.S)
    assert box is not None and box.group(0).count('<th><span class="name"') == SWEEP_RUNS  # the 25 columns, boxed
    css = re.search(r"\.scroll-box\{([^}]*)\}", text)
    assert css is not None and "max-width:100%" in css.group(1) and "overflow-x:auto" in css.group(1)
    assert re.search(r"table\.params th:first-child\{position:sticky;left:0", text)
    # the parallel view (WebGL) is drawn once scrolled near, the curves as the page loads
    parallel = text[text.index('<div id="parallel"') :]
    assert "new IntersectionObserver" in parallel.split("</script>", 1)[0]
    assert "IntersectionObserver" not in text[: text.index('<div id="parallel"')]


def test_the_parallel_view_uses_the_metric_asked_for(wide_sweep: Any, tmp_path: Path) -> None:
    root, reader, parent = wide_sweep
    ids = select_runs(reader.engine, parent)

    def parallel(*args: str) -> dict[str, Any]:
        out = tmp_path / "p.html"
        result = CliRunner().invoke(cli, ["--store", str(root), "report", "--sweep", parent, *args, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        ((pc,), _layout) = page_figures(out)["parallel"]
        return pc

    pc = parallel()  # the default: a held-out accuracy, before loss (first by name) and train/acc
    assert pc["meta"]["metric"] == "val/acc" and pc["meta"]["agg"] == "last"
    assert pc["line"]["color"] == metric_by_run(reader.engine, ids, "val/acc", "last")
    pc = parallel("--parallel-metric", "loss", "--parallel-agg", "min")
    assert (pc["meta"]["metric"], pc["meta"]["agg"]) == ("loss", "min")
    assert pc["dimensions"][-1]["label"] == "loss (min)"
    assert pc["line"]["color"] == metric_by_run(reader.engine, ids, "loss", "min")
    assert [d["label"] for d in pc["dimensions"][:-1]] == ["lr", "opt"]  # seed is the same everywhere
    result = CliRunner().invoke(cli, ["--store", str(root), "report", "--sweep", parent, "--parallel-metric", "nope"])
    assert result.exit_code == 1 and "metric 'nope' is missing from 25 runs:" in result.stderr


def test_the_default_colouring_metric(wide_sweep: Any) -> None:
    from alexandria.compare import pick_metric
    from alexandria.summaries import MetricSummary

    def runs(*keys: str, nan: str = "") -> dict[str, dict[str, MetricSummary]]:
        one = {k: MetricSummary(k, 1, math.nan if k == nan else 1.0, 0, 1.0, 1.0) for k in keys}
        return {"a": one, "b": dict(one)}

    ids = ["a", "b"]
    assert pick_metric(runs("acc", "loss", "val/acc", "val/loss"), ids) == "val/acc"
    assert pick_metric(runs("acc", "loss", "eval_loss"), ids) == "eval_loss"  # a held-out loss before accuracy
    assert pick_metric(runs("loss", "train_accuracy"), ids) == "train_accuracy"
    assert pick_metric(runs("reward", "loss"), ids) == "loss"
    assert pick_metric(runs("system/cpu", "reward"), ids) == "reward"
    assert pick_metric(runs("val/acc", "loss", nan="val/acc"), ids) == "loss"  # NaN last: not a colour
    only_a = runs("val/acc", "loss")
    del only_a["b"]["val/acc"]
    assert pick_metric(only_a, ids) == "loss"  # not in every run
    assert pick_metric(runs(), ids) is None


def test_long_and_short_ranges_bucket_alike(world: World) -> None:
    """SQLite reads a long step range a bucket at a time, a short one in one GROUP BY: the same buckets."""
    from alexandria.backends import backend_of
    from alexandria.backends.base import Backend
    from alexandria.backends.sqlite import RANGE_READS_FROM

    backend = backend_of(world.engine)
    if backend.dialect != "sqlite":
        pytest.skip("SQLite's own bucket reader")
    where, args = backend.metric_filter(world.a, "loss", "step", None, None)
    with world.engine.connect() as conn:
        db = conn.connection.driver_connection
        for buckets in (N // RANGE_READS_FROM // 2, N // RANGE_READS_FROM + 7):  # long, then short per bucket
            ranged = backend.buckets(db, world.a, "loss", "step", where, args, buckets)
            grouped = Backend.buckets(backend, db, world.a, "loss", "step", where, args, buckets)
            assert ranged == grouped and sum(r[3] for r in grouped) == N
