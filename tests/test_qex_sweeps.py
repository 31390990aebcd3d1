"""qex sweep pictures a physicist can read: heatmaps over two parameters that are the runs' logged metrics,
integer parameters kept integers, purity / fidelity ranges that fit the data, rounded numbers on the page,
arrow heads and pole labels that stay out of each other's way, and the 2-D page drawn in a real browser."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandria.qex import bloch, sweep_figures
from alexandria.qex.backends import Noise, NumpyDensityMatrix
from alexandria.qex.runner import open_store, run_experiment, sweep
from alexandria.qex.sweep_figures import MIN_SPAN, fit_range, grid_figure, number_text, sweep_figure
from tests.test_qex import qex, seed_rows, seed_rows_tuples
from tests.test_qex_bloch import KET0, KET1, PLUS, dm, page_figure, ry0, trace
from tests.test_ui import _save_artifact, chromium_context

HALF_PI = math.pi / 2


def sweep_page(root: Path) -> Path:
    """The page of the one sweep in the store `root`."""
    [(parent,)] = seed_rows_tuples(root, "SELECT DISTINCT parent_id FROM run WHERE parent_id IS NOT NULL")
    [(path,)] = seed_rows_tuples(root, f"SELECT path FROM artifact WHERE run_id = '{parent}' AND name = 'sweep_plot'")
    return root / path


def logged_metrics(root: Path) -> dict[tuple[Any, ...], dict[str, float]]:
    """Each child run's metrics as the store holds them, by its (theta, n) as the run received them."""
    rows = seed_rows(root, "SELECT run_id, params FROM runs")
    metrics = seed_rows(root, "SELECT run_id, key, value FROM metric")
    by_run: dict[str, dict[str, float]] = {}
    for m in metrics:
        by_run.setdefault(m["run_id"], {})[m["key"]] = m["value"]
    out = {}
    for r in rows:
        params = json.loads(r["params"])
        out[params["theta"], params["n"]] = by_run[r["run_id"]]
    return out


def heatmaps(data: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in data if t.get("type") == "heatmap"}


# ---------------------------------------------------------------- heatmaps are the runs' metrics


def test_a_two_parameter_sweep_draws_heatmaps_of_the_logged_metrics(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "sweep", "ry", "--over", "theta=0:pi:3", "--over", "n=1,2", "--noise", "depol=0.02")
    assert out.returncode == 0, out.stderr
    data, layout = page_figure(sweep_page(root))
    maps = heatmaps(data)
    names = ["purity", "fidelity to reference"] + [f"qubit {k} bloch {a}" for k in (0, 1) for a in "xyz"]
    assert sorted(maps) == sorted(names)
    assert not [t for t in data if t.get("type") == "scatter3d"]  # no zig-zag path: no sphere on a 2-D page
    logged = logged_metrics(root)
    thetas = [0.0, HALF_PI, math.pi]
    for name, t in maps.items():
        # the first parameter across, the second up; the values are the swept ones, the integers integers
        assert t["x"] == pytest.approx(thetas)
        assert t["y"] == [1, 2] and all(type(v) is int for v in t["y"])
        key = {"fidelity to reference": "fidelity_to_ideal"}.get(name, name)
        if name.startswith("qubit "):
            _, k, _, axis = name.split()
            key = f"q{k}/bloch_{axis}"
        for iy, n in enumerate([1, 2]):
            for ix, theta in enumerate(thetas):
                got = t["z"][iy][ix]
                [run] = [v for (th, nn), v in logged.items() if nn == n and th == pytest.approx(theta)]
                if key in run:
                    assert got == pytest.approx(run[key], abs=1e-12), (name, theta, n)
                else:  # qubit 1 does not exist in the runs with n = 1
                    assert got is None and name.startswith("qubit 1"), (name, theta, n)
    # physics, as a check on the wiring: RY(theta) then depolarising 0.02, Bloch z = 0.98 cos(theta)
    assert maps["qubit 0 bloch z"]["z"][0] == pytest.approx([0.98, 0.0, -0.98], abs=1e-9)
    # the axes say which parameter is which, with the values as tick labels
    assert layout["xaxis"]["title"]["text"] == "theta" and layout["yaxis"]["title"]["text"] == "n"
    assert layout["xaxis"]["ticktext"] == ["0", "1.571", "3.142"]
    assert layout["yaxis"]["tickvals"] == [1, 2] and layout["yaxis"]["ticktext"] == ["1", "2"]
    # Bloch components on one fixed scale, purity and fidelity on one that fits them
    assert (layout["coloraxis2"]["cmin"], layout["coloraxis2"]["cmax"]) == (-1.0, 1.0)
    quality = [v for n in ("purity", "fidelity to reference") for line in maps[n]["z"] for v in line]
    lo, hi = layout["coloraxis"]["cmin"], layout["coloraxis"]["cmax"]
    assert lo <= min(quality) and max(quality) <= hi <= 1.0 and lo > 0.9


def test_integer_parameters_stay_integers_from_the_command_line_to_the_axes(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "sweep", "ry", "--over", "n=1:3:3", "--over", "theta=0,pi/2")
    assert out.returncode == 0, out.stderr
    listed = json.loads(qex(root, "runs", "--format", "json").stdout)
    ns = sorted(r["params"]["n"] for r in listed)
    assert ns == [1, 1, 2, 2, 3, 3] and all(type(n) is int for n in ns)
    assert sorted(r["metadata"]["num_qubits"] for r in listed) == ns  # the runs received ints, and built n qubits
    data, layout = page_figure(sweep_page(root))
    maps = heatmaps(data)
    assert maps["purity"]["x"] == [1, 2, 3] and all(type(v) is int for v in maps["purity"]["x"])
    assert layout["xaxis"]["ticktext"] == ["1", "2", "3"]
    # qubit 2 exists only at n = 3: the other cells are gaps, with no text
    assert maps["qubit 2 bloch z"]["z"] == [[None, None, 1.0], [None, None, pytest.approx(0.0, abs=1e-12)]]
    assert maps["qubit 2 bloch z"]["text"] == [["", "", "1"], ["", "", "0"]]


def test_a_one_parameter_integer_sweep_keeps_its_integers() -> None:
    sts = [dm(KET0), np.kron(dm(KET0), dm(KET1)), np.kron(np.kron(dm(PLUS), dm(KET0)), dm(KET1))]
    fig = sweep_figure("n", [1, 2, 3], sts)
    pur = trace(fig, "purity")
    assert list(pur.x) == [1, 2, 3] and all(type(v) is int for v in pur.x)
    assert [c[0] for c in trace(fig, "qubit 0 trajectory").customdata] == [1, 2, 3]
    assert list(fig.layout.xaxis.ticktext) == ["1", "2", "3"] and list(fig.layout.xaxis.tickvals) == [1, 2, 3]


def test_more_than_two_parameters_one_set_of_heatmaps_per_combination_picked_from_a_menu() -> None:
    grid = {"a": [0.0, 0.5], "b": [1, 2, 3], "c": [0.25, 0.75]}
    combos = list(itertools.product(*grid.values()))
    sts = [dm(ry0(a + b + c)) for a, b, c in combos]  # every point a different state
    fig = grid_figure(grid, sts)
    for c_index, c in enumerate(grid["c"]):
        t = trace(fig, f"qubit 0 bloch z @ c={number_text(c)}")
        assert t.visible is (c_index == 0)
        want = [[math.cos(a + b + c) for a in grid["a"]] for b in grid["b"]]
        assert [list(line) for line in t.z] == [pytest.approx(line) for line in want]
    [menu] = fig.layout.updatemenus
    assert [b.label for b in menu.buttons] == ["c=0.25", "c=0.75"]
    for button, c in zip(menu.buttons, grid["c"], strict=True):
        shown = [t.name for t, on in zip(fig.data, button.args[0]["visible"], strict=True) if on]
        assert shown == [
            f"{n} @ c={number_text(c)}" for n in ("purity", "qubit 0 bloch x", "qubit 0 bloch y", "qubit 0 bloch z")
        ]
    assert "c: pick a combination in the menu" in fig.layout.title.text


def test_too_many_combinations_are_cut_and_the_page_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_figures, "MAX_SLICES", 2)
    grid = {"a": [0.0], "b": [0.0], "c": [0.1, 0.2, 0.3]}
    fig = grid_figure(grid, [dm(ry0(c)) for c in grid["c"]])
    assert len(fig.layout.updatemenus[0].buttons) == 2
    assert "the first 2 of 3 are drawn" in fig.layout.title.text


def test_a_grid_figure_refuses_what_is_not_a_grid() -> None:
    with pytest.raises(ValueError, match="two parameters"):
        grid_figure({"a": [1, 2]}, [dm(KET0), dm(KET1)])
    with pytest.raises(ValueError, match="2 x 2 points but 3 states"):
        grid_figure({"a": [1, 2], "b": [1, 2]}, [dm(KET0)] * 3)
    with pytest.raises(ValueError, match="fidelities"):
        grid_figure({"a": [1, 2], "b": [1]}, [dm(KET0)] * 2, fidelities=[1.0])


# ---------------------------------------------------------------- ranges that fit the data


def test_the_purity_range_fits_the_data_inside_its_physical_bounds() -> None:
    lo, hi = fit_range([0.9990, 0.9999])
    assert 0.998 < lo < 0.9990 and 0.9999 < hi <= 1.0  # the two are told apart: they span most of the axis
    assert (0.9999 - 0.9990) / (hi - lo) > 0.8
    lo, hi = fit_range([1.0, 1.0])  # flat at the bound: a span of MIN_SPAN below it, never above 1
    assert hi == 1.0 and lo == pytest.approx(1.0 - MIN_SPAN * (1 + sweep_figures.PAD))
    lo, hi = fit_range([1.0, 1.0 - 1e-15])  # float noise is not drawn as a drop
    assert hi - lo >= MIN_SPAN
    lo, hi = fit_range([0.0, 0.02, None, float("nan")])  # None and NaN skipped, never below 0
    assert lo == 0.0 and 0.02 < hi < 0.03
    assert fit_range([0.25, 0.75]) == pytest.approx([0.21, 0.79])
    assert fit_range([]) == [0.0, 1.0]


def test_a_sweep_near_purity_one_is_drawn_on_an_axis_that_tells_its_points_apart(tmp_path: Path) -> None:
    store = open_store(tmp_path / "qex_data")
    _, results = sweep(
        "ry", {"theta": [0.0, 1.0, 2.0]}, {"n": 2}, NumpyDensityMatrix(Noise(depolarizing=0.0005)), store=store
    )
    purities = [r.metadata["purity"] for r in results]
    fids = [r.metadata["fidelity_to_ideal"] for r in results]
    assert all(0.998 < p < 0.9991 for p in purities) and all(0.9994 < f < 0.9996 for f in fids)
    _, layout = page_figure(sweep_page(store.root))
    lo, hi = layout["yaxis"]["range"]
    assert lo <= min(purities) and max(fids) <= hi <= 1.0
    # purity (~0.9990) and fidelity (~0.9995) are apart by most of the axis, not a pixel of a 0..1 axis
    assert (min(fids) - max(purities)) / (hi - lo) > 0.5
    assert layout["yaxis"]["title"]["text"] == "purity / fidelity"


# ---------------------------------------------------------------- numbers on the page, rounded


def test_numbers_are_written_with_four_significant_digits() -> None:
    assert number_text(0.1 + 0.2) == "0.3"
    assert number_text(1.2124003311558795e-16) == "0"
    assert number_text(-0.98) == "-0.98"
    assert number_text(math.pi) == "3.142" and number_text(0.99990123) == "0.9999"
    assert number_text(3) == "3" and number_text(np.int64(3)) == "3" and number_text(True) == "True"


def digits(text: str) -> int:
    """Significant digits of a number's text ("0.9802" -> 4, "-0.98" -> 2, "3.142" -> 4)."""
    return len(text.lstrip("-").replace(".", "").lstrip("0")) or 1


def test_the_page_writes_rounded_numbers_in_cells_ticks_and_titles(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "sweep", "ry", "--over", "theta=0:pi:5", "--over", "n=1,2", "--noise", "depol=0.013")
    assert out.returncode == 0, out.stderr
    page = sweep_page(root)
    data, layout = page_figure(page)
    for t in heatmaps(data).values():
        for zs, texts in zip(t["z"], t["text"], strict=True):
            for z, text in zip(zs, texts, strict=True):
                if z is None:
                    assert text == ""
                    continue
                assert digits(text) <= 4, text
                assert float(text) == pytest.approx(z, rel=5e-4, abs=1e-12)
        assert t["texttemplate"] == "%{text}"  # written in the cells, not only on hover
    assert layout["xaxis"]["ticktext"] == ["0", "0.7854", "1.571", "2.356", "3.142"]
    # a run's own page: its title has the parameters rounded (the exact ones are in qex.params)
    result = run_experiment("ry", {"theta": 0.1 + 0.2, "n": 1}, store=root)
    _, run_layout = page_figure(root / result.bloch_path)
    assert run_layout["title"]["text"] == "ry n=1, theta=0.3 on numpy_dm"


# ---------------------------------------------------------------- arrow heads and labels


@pytest.mark.parametrize("length", [0.06, 0.1, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("direction", [(0, 0, 1), (0, 0, -1), (1, 0, 0), (0.6, -0.48, 0.64)])
def test_an_arrow_head_never_crosses_the_origin(length: float, direction: tuple[float, float, float]) -> None:
    d = np.array(direction, dtype=float)
    d /= np.linalg.norm(d)
    tip = tuple(length * d)
    head = bloch.arrow_head(tip)  # type: ignore[arg-type]
    assert head is not None
    (xs, ys, zs), (i, j, k) = head
    points = np.array([xs, ys, zs]).T
    assert points[0] == pytest.approx(np.array(tip))  # the apex is the vector's tip
    head_length = float(np.linalg.norm(points[0] - points[1]))
    assert 0 < head_length < length and head_length <= bloch.HEAD_LENGTH + 1e-12
    # every vertex lies on the tip's side of the origin, within the vector's length
    along = points @ d
    assert along.min() > 0 and along.max() == pytest.approx(length)
    assert max(i + j + k) == len(points) - 1 and min(i + j + k) == 0


def test_no_head_on_a_vector_too_short_to_carry_one() -> None:
    assert bloch.arrow_head((0.0, 0.0, 0.01)) is None
    fig = bloch.bloch_figure(0.5 * np.eye(2) + 0.005 * np.diag([1.0, -1.0]))  # Bloch vector (0, 0, 0.01)
    assert not [t for t in fig.data if t.name == "qubit 0 arrow head"]
    short = bloch.bloch_figure(0.5 * np.eye(2) + 0.05 * np.diag([1.0, -1.0]))  # (0, 0, 0.1)
    head = trace(short, "qubit 0 arrow head")
    assert min(head.z) > 0 and max(head.z) == pytest.approx(0.1)


def test_a_vector_to_one_leaves_the_one_label_visible() -> None:
    fig = bloch.bloch_figure(dm(KET1))
    head = trace(fig, "qubit 0 arrow head")
    labels = trace(fig, "qubit 0 axis labels")
    at = {text: (z, pos) for text, z, pos in zip(labels.text, labels.z, labels.textposition, strict=True)}
    z_one, pos_one = at["|1⟩"]
    z_zero, pos_zero = at["|0⟩"]
    # the label sits beyond the tip and the head, and its text is written further out still
    assert z_one < min(head.z) and z_one < -1.0 and pos_one.startswith("bottom")
    assert z_zero > 1.0 and pos_zero.startswith("top")
    assert min(head.z) >= -1.0 - 1e-12
    assert abs(z_one) <= bloch.AXIS_RANGE[1]  # inside the scene: a 3-D scene clips what is outside


# ---------------------------------------------------------------- in a real browser


def test_a_two_parameter_sweep_page_renders_its_heatmaps_in_chromium(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "sweep", "ry", "--over", "theta=0:pi:7", "--over", "n=1,2", "--noise", "depol=0.02")
    assert out.returncode == 0, out.stderr
    page_file = sweep_page(root)
    with chromium_context(tmp_path, width=1280, height=1000) as (context, problems):
        page = context.new_page()
        page.goto(page_file.as_uri())
        gd = "document.querySelector('.plotly-graph-div')"
        page.wait_for_function(f"() => {{ const d = {gd}; return d && d._fullLayout && d._fullData; }}")
        # the traces plotly drew as heatmaps, and the heatmap images in the DOM
        drawn = page.evaluate(f"() => {gd}._fullData.filter(t => t.type === 'heatmap' && t.visible === true).length")
        assert drawn == 2 + 3 * 2  # purity, fidelity, and x, y, z of each of the 2 qubits
        page.wait_for_function("n => document.querySelectorAll('.heatmaplayer image').length === n", arg=drawn)
        # the axes are titled with the parameter names and ticked with their (rounded) values
        titles = page.evaluate(
            "() => [...document.querySelectorAll('.infolayer text')]"
            ".filter(e => /^[xy]\\d*title$/.test(e.getAttribute('class'))).map(e => e.textContent)"
        )
        assert titles.count("theta") == drawn and titles.count("n") == drawn
        ticks = page.evaluate("() => [...document.querySelectorAll('.xaxislayer-above text')].map(e => e.textContent)")
        assert {"0", "0.5236", "1.571", "3.142"} <= set(ticks)
        # the cells carry their values as text, rounded
        cells = page.evaluate("() => [...document.querySelectorAll('.heatmaplayer text')].map(e => e.textContent)")
        numbers = [c for c in cells if c]
        assert numbers and all(digits(c) <= 4 for c in numbers), numbers[:20]
        assert "0.98" in numbers  # Bloch z of qubit 0 at theta = 0: 0.98, written as such
        shot = tmp_path / "qex-sweep-2d.png"
        page.screenshot(path=str(shot), full_page=True)
        _save_artifact(shot)
        assert shot.stat().st_size > 10_000
        assert not problems, problems


def test_the_menu_of_a_three_parameter_page_switches_the_heatmaps_in_chromium(tmp_path: Path) -> None:
    grid = {"a": [0.0, 0.5, 1.0], "b": [0.0, 1.0], "c": [0.0, 2.0]}
    states = [dm(ry0(a + b + c)) for a, b, c in itertools.product(*grid.values())]
    page_file = tmp_path / "pages" / "sweep.html"
    bloch.write_html(grid_figure(grid, states, title="three parameters"), page_file)
    with chromium_context(tmp_path) as (context, problems):
        page = context.new_page()
        page.goto(page_file.as_uri())
        gd = "document.querySelector('.plotly-graph-div')"
        shown = f"() => {gd}._fullData.filter(t => t.visible === true).map(t => t.name)"
        page.wait_for_function(f"() => {{ const d = {gd}; return d && d._fullData; }}")
        assert page.evaluate(shown) == [
            f"{n} @ c=0" for n in ("purity", "qubit 0 bloch x", "qubit 0 bloch y", "qubit 0 bloch z")
        ]
        # the menu's button for c=2: the other combination's heatmaps, and only them, are drawn
        page.locator(".updatemenu-header-group").click()
        page.locator(".updatemenu-dropdown-button", has_text="c=2").click()
        page.wait_for_function(f"() => ({shown})().every(n => n.endsWith('@ c=2'))")
        z = page.evaluate(
            f"() => {gd}._fullData.find(t => t.visible === true && t.name.startsWith('qubit 0 bloch z')).z"
        )
        assert z[1] == pytest.approx([math.cos(a + 1.0 + 2.0) for a in grid["a"]])
        assert not problems, problems
