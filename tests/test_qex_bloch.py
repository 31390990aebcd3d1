"""qex Bloch pictures: the right numbers in the figure, and pages that open offline and are written atomically."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandria.qex import bloch, sweep_figures
from alexandria.qex.errors import InvalidStateError

# States built by hand (kron of single-qubit vectors): these tests must not lean on any simulator.
KET0 = np.array([1, 0], dtype=complex)
KET1 = np.array([0, 1], dtype=complex)
PLUS = np.array([1, 1], dtype=complex) / math.sqrt(2)
PLUS_I = np.array([1, 1j], dtype=complex) / math.sqrt(2)


def dm(psi: np.ndarray) -> np.ndarray:
    return np.outer(psi, psi.conj())


def ry0(theta: float) -> np.ndarray:
    """RY(theta)|0> = cos(theta/2)|0> + sin(theta/2)|1>: Bloch vector (sin theta, 0, cos theta)."""
    return np.array([math.cos(theta / 2), math.sin(theta / 2)], dtype=complex)


def kron(*kets: np.ndarray) -> np.ndarray:
    out = np.array([1], dtype=complex)
    for k in kets:
        out = np.kron(out, k)
    return out


def trace(fig: Any, name: str) -> Any:
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, f"{len(found)} traces named {name!r}"
    return found[0]


def tip(fig: Any, k: int) -> tuple[list[float], list[float]]:
    """(x, y, z) and [purity, entropy] of qubit k's tip."""
    t = trace(fig, f"qubit {k} state")
    assert len(t.x) == len(t.y) == len(t.z) == 1
    return [t.x[0], t.y[0], t.z[0]], list(t.customdata[0])


def scenes(fig: Any) -> list[str]:
    return sorted(k for k in fig.layout.to_plotly_json() if k.startswith("scene"))


def page_figure(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout JSON that the page hands to Plotly.newPlot."""
    text = path.read_text("utf-8")
    start = text.index("Plotly.newPlot(")
    dec = json.JSONDecoder()
    pos = text.index(",", start) + 1  # past the div id
    pos = text.index("[", pos)
    data, end = dec.raw_decode(text, pos)
    pos = text.index("{", end)
    layout, _ = dec.raw_decode(text, pos)
    return data, layout


def json_numbers(v: Any) -> list[float]:
    """A JSON array as floats: plain lists, or plotly's base64 typed arrays ({"dtype", "bdata"})."""
    if isinstance(v, dict):
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(float).tolist()
    return [float(x) for x in v]


def assert_offline_page(path: Path) -> None:
    text = path.read_text("utf-8")
    srcs = re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", text)
    assert srcs == ["plotly.min.js"], srcs
    assert not re.search(r"<script[^>]*src=\"https?://", text)
    assert "cdn.plot.ly" not in text
    lib = path.parent / "plotly.min.js"
    assert lib.stat().st_size > 1_000_000
    assert "plotly" in lib.read_text("utf-8")[:2000].lower()


@pytest.mark.parametrize(
    ("ket", "expected"),
    [
        (KET0, (0, 0, 1)),
        (KET1, (0, 0, -1)),
        (PLUS, (1, 0, 0)),
        (PLUS_I, (0, 1, 0)),
        (ry0(0.7), (math.sin(0.7), 0, math.cos(0.7))),
    ],
    ids=["zero", "one", "plus", "plus_i", "ry0.7"],
)
def test_single_qubit_tip_is_the_bloch_vector(ket: np.ndarray, expected: tuple[float, float, float]) -> None:
    fig = bloch.bloch_figure(dm(ket))
    assert scenes(fig) == ["scene"]
    assert [a.text for a in fig.layout.annotations] == ["qubit 0"]
    xyz, (p, s) = tip(fig, 0)
    assert xyz == pytest.approx(expected, abs=1e-12)
    assert p == pytest.approx(1.0)
    assert s == pytest.approx(0.0, abs=1e-9)
    # the arrow shaft runs from the origin to the tip
    shaft = trace(fig, "qubit 0 vector")
    assert [shaft.x[0], shaft.y[0], shaft.z[0]] == [0, 0, 0]
    assert [shaft.x[-1], shaft.y[-1], shaft.z[-1]] == pytest.approx(expected, abs=1e-12)
    # the pieces of the sphere are all there, and only the tip answers hover
    for part in ("sphere", "axes", "axis labels", "equator"):
        assert trace(fig, f"qubit 0 {part}").hoverinfo == "skip"
    assert "qubit 0" in trace(fig, "qubit 0 state").hovertemplate
    labels = trace(fig, "qubit 0 axis labels")
    top = labels.text[list(labels.z).index(max(labels.z))]
    bottom = labels.text[list(labels.z).index(min(labels.z))]
    assert (top, bottom) == ("|0⟩", "|1⟩")


def test_scene_is_z_up_cube_with_fixed_ranges() -> None:
    scene = bloch.bloch_figure(dm(KET0)).layout.scene
    assert scene.aspectmode == "cube"
    assert (scene.camera.up.x, scene.camera.up.y, scene.camera.up.z) == (0, 0, 1)
    for ax in (scene.xaxis, scene.yaxis, scene.zaxis):
        assert list(ax.range) == [-1.1, 1.1]


def test_bell_state_both_tips_at_origin_maximally_mixed() -> None:
    bell = (kron(KET0, KET0) + kron(KET1, KET1)) / math.sqrt(2)
    fig = bloch.bloch_figure(dm(bell))
    assert scenes(fig) == ["scene", "scene2"]
    assert [a.text for a in fig.layout.annotations] == ["qubit 0", "qubit 1"]
    for k in (0, 1):
        xyz, (p, s) = tip(fig, k)
        assert xyz == pytest.approx([0, 0, 0], abs=1e-12)
        assert p == pytest.approx(0.5)
        assert s == pytest.approx(1.0)
        assert "|r|=0.000" in trace(fig, f"qubit {k} state").hovertemplate
    assert trace(fig, "qubit 0 state").scene == "scene"
    assert trace(fig, "qubit 1 state").scene == "scene2"


def test_three_qubit_product_state_in_qubit_order() -> None:
    # qubit 0 is the leftmost factor
    fig = bloch.bloch_figure(dm(kron(KET1, PLUS, ry0(0.7))))
    assert scenes(fig) == ["scene", "scene2", "scene3"]
    expected = [(0, 0, -1), (1, 0, 0), (math.sin(0.7), 0, math.cos(0.7))]
    for k, vec in enumerate(expected):
        xyz, (p, _) = tip(fig, k)
        assert xyz == pytest.approx(vec, abs=1e-12)
        assert p == pytest.approx(1.0)
        assert trace(fig, f"qubit {k} state").scene == ("scene" if k == 0 else f"scene{k + 1}")


def test_five_qubits_wrap_to_a_second_row() -> None:
    fig = bloch.bloch_figure(dm(kron(KET0, KET1, KET0, KET1, PLUS)))
    assert len(scenes(fig)) == 5
    assert tip(fig, 4)[0] == pytest.approx([1, 0, 0], abs=1e-12)
    top, bottom = fig.layout.scene.domain.y, fig.layout.scene5.domain.y
    assert bottom[1] < top[0]


def test_mixed_state_tip_is_inside_the_sphere() -> None:
    rho = 0.5 * dm(KET0) + 0.5 * dm(PLUS)  # Bloch vector (0.5, 0, 0.5)
    fig = bloch.bloch_figure(rho)
    xyz, (p, s) = tip(fig, 0)
    assert xyz == pytest.approx([0.5, 0, 0.5], abs=1e-12)
    r = math.sqrt(sum(c * c for c in xyz))
    assert r < 1
    assert p == pytest.approx((1 + r * r) / 2)  # Tr rho^2 for one qubit
    assert 0 < s < 1
    t = trace(fig, "qubit 0 state")
    assert f"|r|={r:.3f}" in t.hovertemplate
    assert list(t.marker.color) == pytest.approx([p])  # coloured by purity on a fixed scale
    assert (t.marker.cmin, t.marker.cmax) == (0.5, 1.0)


def test_invalid_state_is_refused() -> None:
    with pytest.raises(InvalidStateError):
        bloch.bloch_figure(np.eye(2))  # trace 2


ANGLES = [0.0, 0.4, 0.8, 1.2, 1.6]


def test_sweep_trajectory_and_purity() -> None:
    sts = [dm(ry0(a)) for a in ANGLES]
    fig = sweep_figures.sweep_figure("theta", ANGLES, sts, reference=sts, title="RY sweep")
    path = trace(fig, "qubit 0 trajectory")
    assert path.mode == "lines+markers"
    assert list(path.x) == pytest.approx([math.sin(a) for a in ANGLES], abs=1e-12)
    assert list(path.y) == pytest.approx([0] * 5, abs=1e-12)
    assert list(path.z) == pytest.approx([math.cos(a) for a in ANGLES], abs=1e-12)
    assert [c[0] for c in path.customdata] == ANGLES
    assert "theta=" in path.hovertemplate
    pur = trace(fig, "purity")
    assert list(pur.x) == ANGLES
    assert list(pur.y) == pytest.approx([1.0] * 5)
    assert list(trace(fig, "qubit 0 purity").y) == pytest.approx([1.0] * 5)
    assert list(trace(fig, "fidelity to reference").y) == pytest.approx([1.0] * 5)
    # spheres on top, the 2-D plot below spanning the row
    assert scenes(fig) == ["scene"]
    assert fig.layout.xaxis.domain[1] - fig.layout.xaxis.domain[0] > 0.9
    assert fig.layout.yaxis.domain[1] < fig.layout.scene.domain.y[0]
    assert fig.layout.title.text == "RY sweep"


def test_sweep_fidelity_drops_against_a_different_reference() -> None:
    sts = [dm(ry0(a)) for a in ANGLES]
    ref = [dm(KET0)] * len(ANGLES)
    fid = list(trace(sweep_figures.sweep_figure("theta", ANGLES, sts, ref), "fidelity to reference").y)
    # |<0|RY(a)|0>|^2 = cos^2(a/2)
    assert fid == pytest.approx([math.cos(a / 2) ** 2 for a in ANGLES])
    assert fid[0] == pytest.approx(1.0) and fid[-1] < 0.7


def test_sweep_two_qubits_with_noise() -> None:
    """Qubit 1 is depolarised by p: whole-state and qubit-1 purity fall, qubit 0 stays pure, no reference trace."""
    ps = [0.0, 0.5, 1.0]
    sts = [np.kron(dm(KET1), (1 - p) * dm(PLUS) + p * np.eye(2) / 2) for p in ps]
    fig = sweep_figures.sweep_figure("p", ps, sts)
    assert scenes(fig) == ["scene", "scene2"]
    assert not [t for t in fig.data if t.name == "fidelity to reference"]
    assert list(trace(fig, "qubit 0 purity").y) == pytest.approx([1.0] * 3)
    q1 = [(1 + (1 - p) ** 2) / 2 for p in ps]
    assert list(trace(fig, "qubit 1 purity").y) == pytest.approx(q1)
    assert list(trace(fig, "purity").y) == pytest.approx(q1)  # product with a pure qubit
    path = trace(fig, "qubit 1 trajectory")
    assert list(path.x) == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert list(trace(fig, "qubit 0 trajectory").z) == pytest.approx([-1.0] * 3)


def test_sweep_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        sweep_figures.sweep_figure("theta", [0.0, 1.0], [dm(KET0)])
    with pytest.raises(ValueError):
        sweep_figures.sweep_figure("theta", [0.0], [dm(KET0)], reference=[dm(KET0), dm(KET1)])
    with pytest.raises(ValueError):
        sweep_figures.sweep_figure("theta", [], [])


def test_page_is_offline_and_carries_the_figure(tmp_path: Path) -> None:
    fig = bloch.bloch_figure(dm(kron(PLUS, ry0(0.7))))
    page = tmp_path / "out" / "state.html"
    bloch.write_html(fig, page)
    assert_offline_page(page)
    data, layout = page_figure(page)
    by_name = {t.get("name"): t for t in data}
    for k, vec in enumerate([(1, 0, 0), (math.sin(0.7), 0, math.cos(0.7))]):
        t = by_name[f"qubit {k} state"]
        got = [json_numbers(t[a])[0] for a in "xyz"]
        assert got == pytest.approx(vec, abs=1e-12)
        assert t["customdata"][0][0] == pytest.approx(1.0)
        assert t["scene"] == ("scene" if k == 0 else "scene2")
    assert {"scene", "scene2"} <= set(layout)
    assert sorted(p.name for p in page.parent.iterdir()) == ["plotly.min.js", "state.html"]


def test_sweep_page_carries_the_curves(tmp_path: Path) -> None:
    sts = [dm(ry0(a)) for a in ANGLES]
    bloch.write_html(sweep_figures.sweep_figure("theta", ANGLES, sts, sts), tmp_path / "sweep.html")
    data, _ = page_figure(tmp_path / "sweep.html")
    by_name = {t.get("name"): t for t in data}
    assert json_numbers(by_name["qubit 0 trajectory"]["x"]) == pytest.approx([math.sin(a) for a in ANGLES])
    assert json_numbers(by_name["fidelity to reference"]["y"]) == pytest.approx([1.0] * 5)
    assert json_numbers(by_name["purity"]["y"]) == pytest.approx([1.0] * 5)


def test_library_written_once_per_folder(tmp_path: Path) -> None:
    bloch.write_html(bloch.bloch_figure(dm(KET0)), tmp_path / "a.html")
    lib = tmp_path / "plotly.min.js"
    before = lib.stat()
    bloch.write_html(bloch.bloch_figure(dm(KET1)), tmp_path / "b.html")
    after = lib.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", "plotly.min.js"]
    assert_offline_page(tmp_path / "b.html")


def test_truncated_library_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "plotly.min.js").write_text("/* half a plotly")
    bloch.write_html(bloch.bloch_figure(dm(KET0)), tmp_path / "a.html")
    assert_offline_page(tmp_path / "a.html")


def test_embed_makes_one_self_contained_file(tmp_path: Path) -> None:
    page = tmp_path / "share.html"
    bloch.write_html(bloch.bloch_figure(dm(PLUS)), page, embed=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share.html"]
    text = page.read_text("utf-8")
    assert page.stat().st_size > 1_000_000
    assert "plotly.js v" in text
    assert not re.search(r"<script[^>]*\bsrc=", text)
    data, _ = page_figure(page)
    assert [json_numbers(t["x"])[0] for t in data if t.get("name") == "qubit 0 state"] == pytest.approx([1.0])


def test_failed_write_keeps_the_old_page_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "a.html"
    bloch.write_html(bloch.bloch_figure(dm(KET0)), page)
    old = page.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        bloch.write_html(bloch.bloch_figure(dm(KET1)), page)
    monkeypatch.undo()
    assert page.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "plotly.min.js"]
    # and a successful rewrite replaces it whole
    bloch.write_html(bloch.bloch_figure(dm(KET1)), page)
    data, _ = page_figure(page)
    assert [json_numbers(t["z"])[0] for t in data if t.get("name") == "qubit 0 state"] == pytest.approx([-1.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "plotly.min.js"]


def test_titles_keep_quotes_and_escape_markup() -> None:
    fig = bloch.bloch_figure(dm(KET0), title='bell {"theta": 0.5} <on> sim')
    assert fig.layout.title.text == 'bell {"theta": 0.5} &lt;on&gt; sim'


def test_page_gets_ordinary_permissions(tmp_path: Path) -> None:
    """The temporary file's mode is what the page keeps: umask-governed like any new file, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        bloch.write_html(bloch.bloch_figure(dm(KET0)), tmp_path / "a.html")
    finally:
        os.umask(old)
    assert (tmp_path / "a.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "plotly.min.js").stat().st_mode & 0o777 == 0o644
