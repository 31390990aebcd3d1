"""qex's views of whole states: the density matrix as heatmaps and a city plot, the run's page, `qex show --html`,
`qex compare --html` and `qex view`, checked against the stored matrices and the text commands' numbers."""

from __future__ import annotations

import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandria.qex import state_figures
from alexandria.qex.backends import Noise, NumpyDensityMatrix
from alexandria.qex.circuit import Circuit
from alexandria.qex.runner import describe_state, open_store, run_circuit, run_experiment
from tests.conftest import child_env, make_seed, wait_until
from tests.test_qex_bloch import json_numbers
from tests.test_report import page_figures
from tests.test_ui import _save_artifact, chromium_context


def qex(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `qex` command line, on the given store."""
    return subprocess.run(
        [sys.executable, "-m", "alexandria.qex", "--store", str(store), *args],
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def random_state(n: int, rng: np.random.Generator) -> np.ndarray:
    """A full-rank mixed state with complex entries everywhere: G G^dagger / Tr."""
    g = rng.normal(size=(2**n, 2**n)) + 1j * rng.normal(size=(2**n, 2**n))
    rho = g @ g.conj().T
    return rho / np.trace(rho).real


def trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, f"{len(found)} traces named {name!r}"
    return found[0]


def array(v: Any) -> np.ndarray:
    """A figure JSON array (a list, or plotly's base64 typed array with its shape) as numpy."""
    if isinstance(v, dict):
        flat = np.array(json_numbers(v))
        if "shape" in v:
            return flat.reshape([int(s) for s in str(v["shape"]).split(",")])
        return flat
    return np.array(v, dtype=float)


def traces_named(data: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [t for t in data if t.get("name") == name]


def test_heatmaps_are_the_matrix_exactly_on_a_symmetric_diverging_scale() -> None:
    rho = random_state(2, np.random.default_rng(make_seed()))
    fig = state_figures.heatmap_figure(rho)
    re, im = trace(fig, "Re rho"), trace(fig, "Im rho")
    assert np.array_equal(array(re["z"]), rho.real) and np.array_equal(array(im["z"]), rho.imag)
    labels = ["|00⟩", "|01⟩", "|10⟩", "|11⟩"]
    for t in (re, im):
        assert t["x"] == labels and t["y"] == labels
        assert t["coloraxis"] == "coloraxis"  # one scale for both parts
    layout = fig["layout"]
    axis = layout["coloraxis"]
    limit = max(np.abs(rho.real).max(), np.abs(rho.imag).max())
    assert axis["cmax"] == pytest.approx(limit) and axis["cmin"] == -axis["cmax"]
    from plotly.colors import sample_colorscale

    assert sample_colorscale(axis["colorscale"], [0.5]) == ["rgb(247, 247, 247)"]  # 0 is white
    assert sample_colorscale(axis["colorscale"], [0.0])[0].startswith("rgb(5, 48")  # blue below
    assert layout["yaxis"]["autorange"] == layout["yaxis2"]["autorange"] == "reversed"  # row 0 on top
    assert [a["text"] for a in layout["annotations"]] == ["real part Re ρ", "imaginary part Im ρ"]
    # a given limit (two states on one scale) is the range
    assert state_figures.heatmap_figure(rho, limit=0.9)["layout"]["coloraxis"]["cmin"] == -0.9


def test_a_basis_state_lights_the_cell_its_label_names() -> None:
    """Qubit 0 is the leftmost bit: |0>|1> on two qubits is the entry at row and column |01>."""
    ket = np.kron([1, 0], [0, 1]).astype(complex)
    fig = state_figures.heatmap_figure(np.outer(ket, ket.conj()))
    re = trace(fig, "Re rho")
    z = array(re["z"])
    (r,), (c,) = np.nonzero(z)
    assert re["y"][r] == "|01⟩" and re["x"][c] == "|01⟩" and z[r, c] == 1.0
    assert state_figures.basis_labels(3) == ["|000⟩", "|001⟩", "|010⟩", "|011⟩", "|100⟩", "|101⟩", "|110⟩", "|111⟩"]


def test_city_bars_stand_on_their_entries_at_their_heights() -> None:
    rho = random_state(3, np.random.default_rng(make_seed()))
    fig = state_figures.city_figure(rho)
    size = 8
    for part, values in (("Re", rho.real), ("Im", rho.imag)):
        mesh = trace(fig, f"{part} rho bars")
        x, y, z = (array(mesh[a]).reshape(size * size, 8) for a in "xyz")
        faces = np.stack([array(mesh[a]) for a in "ijk"], axis=1)
        assert faces.shape == (size * size * 12, 3) and faces.max() == size * size * 8 - 1
        for r in range(size):
            for c in range(size):
                bar = r * size + c
                assert np.all(z[bar, 4:] == values[r, c]) and np.all(z[bar, :4] == 0)  # height: the entry
                assert x[bar].mean() == pytest.approx(c, abs=1e-6)  # column c, row r
                assert y[bar].mean() == pytest.approx(r, abs=1e-6)
        # each bar one colour, its value, on the heatmaps' symmetric scale
        assert np.allclose(array(mesh["intensity"]).reshape(size * size, 8), values.reshape(-1, 1), atol=1e-6)
        assert mesh["cmin"] == -mesh["cmax"]
    # a named hover for every bar of a small state
    assert "row |010⟩, column |111⟩: Re ρ" in trace(fig, "Re rho bars")["text"][(2 * size + 7) * 8]
    assert fig["data"][0]["scene"] == "scene" and fig["data"][1]["scene"] == "scene2"


def test_a_big_state_keeps_its_heatmaps_and_leaves_out_the_city_with_a_note(tmp_path: Path) -> None:
    n = state_figures.CITY_MAX_QUBITS + 1
    ghz = np.zeros(2**n, dtype=complex)
    ghz[0] = ghz[-1] = 1 / math.sqrt(2)
    rho = np.outer(ghz, ghz)
    page = tmp_path / "big.html"
    state_figures.write_run_page(page, rho, title="big", about=[("run", "r")], measures=describe_state(rho))
    figures = page_figures(page)
    assert set(figures) == {"bloch", "rho-heatmap"}
    data, _ = figures["rho-heatmap"]
    assert np.array_equal(array(traces_named(data, "Re rho")[0]["z"]), rho.real)
    text = page.read_text("utf-8")
    assert f"The city plot is drawn up to {state_figures.CITY_MAX_QUBITS} qubits" in text

    n = state_figures.HEATMAP_MAX_QUBITS + 1
    pure = np.zeros((2**n, 2**n), dtype=complex)
    pure[0, 0] = 1
    html = state_figures.run_page_html(pure, title="huge", about=[], measures=describe_state(pure))
    assert "heatmaps are drawn up to" in html and "rho-heatmap" not in html and "qex export RUN out.csv" in html


def test_the_run_page_holds_the_stored_matrix_and_show_html_writes_it_too(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    store = open_store(root)
    circuit = Circuit(2).h(0).add("CNOT", 0, 1).ry(1, 0.7).add("RZ", 0, params=[0.4])
    result = run_circuit("phases", circuit, {"theta": 0.7}, NumpyDensityMatrix(Noise(depolarizing=0.05)), store=store)
    stored = np.load(root / result.density_matrix_path)
    assert np.abs(stored.imag).max() > 0.01  # the imaginary part has something to show

    shown = qex(root, "show", result.run_id[:10], "--html", str(tmp_path / "pages" / "run.html"))
    assert shown.returncode == 0, shown.stderr
    out = Path(shown.stdout.strip())
    assert out == tmp_path / "pages" / "run.html" and (out.parent / "plotly.min.js").is_file()
    default = qex(root, "show", result.run_id, "--html", "--embed")  # default name, in the current directory
    assert default.returncode == 0, default.stderr
    assert Path(default.stdout.strip()).name == f"qex-{result.run_id[:8]}.html"
    Path(default.stdout.strip()).unlink()

    for page in (root / result.bloch_path, out):  # the page written at run time, and show's
        figures = page_figures(page)
        assert {"bloch", "rho-heatmap", "rho-city"} <= set(figures)
        data, layout = figures["rho-heatmap"]
        assert np.array_equal(array(traces_named(data, "Re rho")[0]["z"]), stored.real)
        assert np.array_equal(array(traces_named(data, "Im rho")[0]["z"]), stored.imag)
        assert traces_named(data, "Re rho")[0]["x"] == ["|00⟩", "|01⟩", "|10⟩", "|11⟩"]
        city, _ = figures["rho-city"]
        top = array(traces_named(city, "Im rho bars")[0]["z"]).reshape(16, 8)[:, 4]
        assert np.array_equal(top, stored.imag.ravel())
        bloch_data, _ = figures["bloch"]
        for q in result.metadata["qubits"]:
            tip = traces_named(bloch_data, f"qubit {q['qubit']} state")[0]
            assert [tip["x"][0], tip["y"][0], tip["z"][0]] == pytest.approx(q["bloch"], abs=1e-12)
        text = page.read_text("utf-8")
        assert f"<td>{result.metadata['purity']:.6f}</td>" in text
        assert f"<td>{result.metadata['fidelity_to_ideal']:.6f}</td>" in text
        assert f"<td>{result.run_id}</td>" in text and "depol(0.05)" in text


def test_compare_page_has_the_numbers_qex_compare_prints(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    store = open_store(root)
    a = run_experiment("ry", {"theta": 0.9, "n": 2}, store=store)
    b = run_experiment("ry", {"theta": 0.9, "n": 2}, NumpyDensityMatrix(Noise(depolarizing=0.1)), store=store)
    text = qex(root, "compare", a.run_id, b.run_id)
    assert text.returncode == 0, text.stderr
    compared = qex(root, "compare", a.run_id, b.run_id, "--html", str(tmp_path / "cmp.html"))
    assert compared.returncode == 0, compared.stderr
    assert compared.stdout.startswith(text.stdout)  # the text output stays, the page's path follows
    assert compared.stdout.rstrip().endswith(f"page: {tmp_path / 'cmp.html'}")
    fid = re.search(r"fidelity \(Uhlmann-Jozsa, squared\): ([0-9.]+)", text.stdout)
    dist = re.search(r"trace distance: ([0-9.]+)", text.stdout)
    assert fid and dist
    page = (tmp_path / "cmp.html").read_text("utf-8")
    assert f"<th>fidelity (Uhlmann-Jozsa, squared)</th><td>{fid.group(1)}</td>" in page
    assert f"<th>trace distance</th><td>{dist.group(1)}</td>" in page
    assert float(fid.group(1)) < 0.99  # noise made them differ: the numbers say something

    figures = page_figures(tmp_path / "cmp.html")
    assert {"bloch-compare", "a-rho-heatmap", "b-rho-heatmap", "a-rho-city", "b-rho-city"} <= set(figures)
    spheres, _ = figures["bloch-compare"]
    for label, result in (("A", a), ("B", b)):
        for q in result.metadata["qubits"]:
            tip = traces_named(spheres, f"qubit {q['qubit']} {label} state")
            assert [tip[0]["x"][0], tip[0]["y"][0], tip[0]["z"][0]] == pytest.approx(q["bloch"], abs=1e-12)
            shown = "(" + ", ".join(f"{v:+.4f}" for v in q["bloch"]) + ")"
            assert shown in text.stdout and shown in page  # the same rounded vector in the table and on the page
        stored = np.load(root / result.density_matrix_path)
        data, _ = figures[f"{label.lower()}-rho-heatmap"]
        assert np.array_equal(array(traces_named(data, "Re rho")[0]["z"]), stored.real)


def test_user_text_on_the_pages_is_escaped(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    store = open_store(root)
    evil = "<img src=x onerror=alert(1)></script>"
    result = run_circuit(evil, Circuit(1).h(0), {"note": evil}, store=store)
    other = run_circuit("plain", Circuit(1).x(0), store=store)
    assert qex(root, "compare", result.run_id, other.run_id, "--html", str(tmp_path / "c.html")).returncode == 0
    for page in (root / result.bloch_path, tmp_path / "c.html"):
        text = page.read_text("utf-8")
        assert "<img" not in text
        assert text.count("</script>") == text.count("<script")  # no user text closes a script
        assert "&lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;" in text  # shown, as text


def browser_script(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in browser: a real program that writes the URL it was given to a file."""
    record = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{record}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_view_opens_the_runs_page_in_the_browser(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    result = run_experiment("bell", store=open_store(root))
    script, record = browser_script(tmp_path)
    viewed = qex(root, "view", result.run_id[:8], env=child_env(BROWSER=str(script)))
    assert viewed.returncode == 0, viewed.stderr
    url = (root / result.bloch_path).resolve().as_uri()
    assert record.read_text() == url and f"opened {url}" in viewed.stdout

    missing = tmp_path / "no-such-browser"
    blind = qex(root, "view", result.run_id, env=child_env(BROWSER=str(missing)))
    assert blind.returncode == 1 and blind.stderr.startswith("Error: no web browser")
    assert url in blind.stderr  # the page, to open by hand
    assert "Traceback" not in blind.stderr


def test_show_and_compare_pages_draw_in_a_real_browser(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    store = open_store(root)
    circuit = Circuit(3).h(0).add("CNOT", 0, 1).ry(2, 0.9).add("RZ", 0, params=[0.6])
    a = run_circuit("phases", circuit, store=store)
    b = run_circuit("phases", circuit, backend=NumpyDensityMatrix(Noise(depolarizing=0.05)), store=store)
    show = tmp_path / "pages" / f"qex-show-{a.run_id[:8]}.html"
    compare = tmp_path / "pages" / f"qex-compare-{a.run_id[:8]}.html"
    assert qex(root, "show", b.run_id, "--html", str(show)).returncode == 0
    assert qex(root, "compare", a.run_id, b.run_id, "--html", str(compare)).returncode == 0
    with chromium_context(tmp_path, width=1300, height=900, console=True) as (context, problems):
        for path, ids in (
            (show, ["bloch", "rho-heatmap", "rho-city"]),
            (compare, ["bloch-compare", "a-rho-heatmap", "a-rho-city", "b-rho-heatmap", "b-rho-city"]),
        ):
            page = context.new_page()
            page.goto(path.as_uri())
            for div in ids:
                page.locator(f"#{div}").scroll_into_view_if_needed()  # the city is drawn when it comes in view
                wait_until(
                    lambda div=div, page=page: page.evaluate(
                        f"() => {{ const g = document.getElementById('{div}'); "
                        "return !!(g && g._fullData && g._fullData.length && g.querySelector('.main-svg')); }"
                    ),
                    timeout=60,
                    what=f"plotly drew #{div}",
                )
            # each heatmap figure paints its two parts as images
            drawn = page.evaluate("() => document.querySelectorAll('.heatmaplayer image').length")
            assert drawn == 2 * sum(i.endswith("heatmap") for i in ids)
            page.evaluate("() => window.scrollTo(0, 0)")
            shot = tmp_path / f"{path.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            _save_artifact(shot)
            page.close()
    assert problems == []
    assert os.path.getsize(tmp_path / f"{show.stem}.png") > 10_000


def test_view_writes_a_page_for_a_run_whose_page_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    result = run_experiment("h", store=open_store(root))
    (root / result.bloch_path).unlink()  # a run page removed by hand: the state is still there
    script, record = browser_script(tmp_path)
    work = tmp_path / "here"
    work.mkdir()
    viewed = subprocess.run(
        [sys.executable, "-m", "alexandria.qex", "--store", str(root), "view", result.run_id],
        env=child_env(BROWSER=str(script)),
        cwd=work,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert viewed.returncode == 0, viewed.stderr
    page = work / f"qex-{result.run_id[:8]}.html"
    assert "recorded no page" in viewed.stdout and record.read_text() == page.resolve().as_uri()
    data, _ = page_figures(page)["rho-heatmap"]
    assert np.array_equal(array(traces_named(data, "Re rho")[0]["z"]), result.rho.real)


def test_the_dashboard_shows_the_run_page_with_its_density_matrix(tmp_path: Path) -> None:
    from tests.test_ui import start_ui, stop_ui

    root = tmp_path / "qex_data"
    result = run_circuit("phases", Circuit(2).h(0).add("CNOT", 0, 1).add("RZ", 1, params=[0.8]), store=open_store(root))
    server = start_ui(root)
    try:
        with chromium_context(tmp_path, width=1300, height=900) as (context, problems):
            page = context.new_page()
            page.goto(f"{server.url}run/{result.run_id}")
            frame = page.frame_locator('iframe.embedded[title="bloch_sphere"]:not(.artifact-html)')
            frame.locator("#bloch .main-svg").first.wait_for()
            heatmap = frame.locator("#rho-heatmap .heatmaplayer image")
            wait_until(lambda: heatmap.count() == 2, timeout=60, what="the frame's two heatmaps drawn")
            panel = page.locator('iframe.embedded[title="bloch_sphere"]:not(.artifact-html)')
            panel.scroll_into_view_if_needed()
            shot = tmp_path / "qex-dashboard-run-panel.png"
            panel.screenshot(path=str(shot))  # the frame itself: a full-page shot leaves WebGL frames blank
            _save_artifact(shot)
            inner = next(f for f in page.frames if f.url.endswith("/bloch_sphere") and f.query_selector("#rho-heatmap"))
            inner.evaluate("() => document.getElementById('rho-heatmap').scrollIntoView()")
            shot = tmp_path / "qex-dashboard-run-panel-matrix.png"
            panel.screenshot(path=str(shot))
            _save_artifact(shot)
        assert problems == []
    finally:
        stop_ui(server)
