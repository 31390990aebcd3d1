"""qex end to end: real `qex` commands on a real store; the seed's relations answered from the projection."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandria.db import open_database
from alexandria.qex import states
from alexandria.qex.backends import Noise, NumpyDensityMatrix
from alexandria.qex.runner import open_store, run_experiment, sweep
from alexandria.rebuild import rebuild
from alexandria.store import Store
from tests.conftest import REPO, child_env, make_seed, python, wait_until


def qex(store: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real `qex` command line (as `python -m alexandria.qex`), on the given store."""
    return subprocess.run(
        [sys.executable, "-m", "alexandria.qex", "--store", str(store), *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def seed_rows(store: Path, sql: str) -> list[dict[str, Any]]:
    """Query qex.db with plain sqlite3, as a user of the seed's schema would."""
    conn = sqlite3.connect(store / "qex.db")
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_a_run_is_recorded_as_the_seed_describes(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "run", "ry", "-p", "theta=0.7", "-p", "n=2")
    assert out.returncode == 0, out.stderr
    [row] = seed_rows(
        root, "SELECT run_id, experiment_name, params, backend_name, timestamp, density_matrix_path, metadata FROM runs"
    )
    assert row["experiment_name"] == "ry" and row["backend_name"] == "numpy_dm"
    assert json.loads(row["params"]) == {"n": 2, "theta": 0.7}
    assert row["density_matrix_path"] == f"results/{row['run_id']}_rho.npy"  # relative to the database's directory
    assert abs(row["timestamp"] - time.time()) < 300
    # the matrix on disk is the state RY(0.7) x RY(0.7) |00>, and it is what the metrics describe
    rho = np.load(root / row["density_matrix_path"], allow_pickle=False)
    psi = np.array([math.cos(0.35), math.sin(0.35)])
    assert np.allclose(rho, np.outer(np.kron(psi, psi), np.kron(psi, psi)), atol=1e-12)
    meta = json.loads(row["metadata"])
    assert meta["num_qubits"] == 2 and meta["noise"] == "none" and meta["simulator"].startswith("numpy ")
    assert np.allclose(meta["qubits"][1]["bloch"], [math.sin(0.7), 0, math.cos(0.7)])
    assert meta["purity"] == pytest.approx(1.0)
    metrics = dict(
        (k, v) for k, v in seed_rows_tuples(root, f"SELECT key, value FROM metric WHERE run_id = '{row['run_id']}'")
    )
    assert metrics["q0/bloch_x"] == pytest.approx(math.sin(0.7)) and metrics["purity"] == pytest.approx(1.0)
    # the artifacts relation: the Bloch page, beside the one plotly library it loads offline
    # (a dirty work tree adds its diff as an artifact of the run too: see capture in the README)
    [art] = seed_rows(
        root,
        "SELECT artifact_id, run_id, artifact_name, artifact_path, artifact_type FROM artifacts "
        "WHERE artifact_name = 'bloch_sphere'",
    )
    assert isinstance(art["artifact_id"], int) and art["artifact_id"] >= 1
    del art["artifact_id"]
    assert art == {
        "run_id": row["run_id"],
        "artifact_name": "bloch_sphere",
        "artifact_path": f"artifacts/{row['run_id']}_bloch.html",
        "artifact_type": "text/html",
    }
    page = (root / art["artifact_path"]).read_text()
    assert 'src="plotly.min.js"' in page and "qubit 1 state" in page
    assert (root / "artifacts" / "plotly.min.js").stat().st_size > 1_000_000
    # the seed's indexes, or their equivalent, serve the views' filters
    plan = seed_rows_tuples(root, "EXPLAIN QUERY PLAN SELECT * FROM runs WHERE experiment_name = 'ry'")
    assert any("ix_run_experiment_start" in str(step) for step in plan)
    # every alex command works on the qex store too
    alex = subprocess.run(
        [sys.executable, "-m", "alexandria.cli", "--store", str(root), "show", row["run_id"][:8]],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert alex.returncode == 0 and "qex.backend" in alex.stdout and "density_matrix" in alex.stdout
    assert not (root / "alexandria.db").exists()


def seed_rows_tuples(store: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(store / "qex.db")
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def test_a_noisy_sweep_on_two_qubits_from_one_command_and_the_highest_purity_in_one_query(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    out = qex(root, "sweep", "ry", "--over", "theta=0:pi:5", "-p", "n=2", "--noise", "depol=0.05")
    assert out.returncode == 0, out.stderr
    assert "sweep plot:" in out.stdout
    rows = seed_rows(root, "SELECT run_id, params, backend_name, metadata FROM runs ORDER BY timestamp")
    assert len(rows) == 5 and {r["backend_name"] for r in rows} == {"numpy_dm+depol(0.05)"}
    thetas = [json.loads(r["params"])["theta"] for r in rows]
    assert thetas == pytest.approx([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4, math.pi])
    # physics: one RY gate per qubit, then depolarizing p: each qubit's vector shrinks by exactly (1 - p)
    for r, theta in zip(rows, thetas, strict=True):
        meta = json.loads(r["metadata"])
        for q in meta["qubits"]:
            assert q["bloch"] == pytest.approx([0.95 * math.sin(theta), 0, 0.95 * math.cos(theta)], abs=1e-9)
        assert meta["fidelity_to_ideal"] < 1.0 and meta["noise"] == "depol(0.05)"
    # the README's query, against the seed's schema
    best = seed_rows(
        root,
        "SELECT run_id, json_extract(metadata, '$.purity') AS purity FROM runs ORDER BY purity DESC LIMIT 1",
    )
    purities = [json.loads(r["metadata"])["purity"] for r in rows]
    assert best[0]["purity"] == pytest.approx(max(purities))
    # the five are children of one parent run, which holds the sweep plot
    parents = seed_rows_tuples(root, "SELECT DISTINCT parent_id FROM run WHERE parent_id IS NOT NULL")
    assert len(parents) == 1
    [(plot,)] = seed_rows_tuples(
        root, f"SELECT path FROM artifact WHERE run_id = '{parents[0][0]}' AND name = 'sweep_plot'"
    )
    page = (root / plot).read_text()
    assert "qubit 0 trajectory" in page and "fidelity to reference" in page


def test_rebuild_reproduces_the_seed_relations_row_for_row(tmp_path: Path) -> None:
    store = open_store(tmp_path / "qex_data")
    sweep("ry", {"theta": [0.1, 0.2, 0.3]}, {"n": 1}, NumpyDensityMatrix(Noise(amplitude_damping=0.1)), store=store)
    run_experiment("bell", store=store)
    before = {v: seed_rows(store.root, f"SELECT * FROM {v} ORDER BY 1") for v in ("runs", "artifacts")}
    assert len(before["runs"]) == 4
    assert sum(a["artifact_name"] == "bloch_sphere" for a in before["artifacts"]) == 4
    assert {a["run_id"] for a in before["artifacts"]} <= {r["run_id"] for r in before["runs"]}  # the seed's key
    rebuild(store)
    assert {v: seed_rows(store.root, f"SELECT * FROM {v} ORDER BY 1") for v in ("runs", "artifacts")} == before
    # np.load of every density_matrix_path returns the matrix that was logged, and its hash is the logged one
    for row in before["runs"]:
        data = (store.root / row["density_matrix_path"]).read_bytes()
        [(sha,)] = seed_rows_tuples(
            store.root, f"SELECT sha256 FROM artifact WHERE run_id = '{row['run_id']}' AND name = 'density_matrix'"
        )
        assert hashlib.sha256(data).hexdigest() == sha
        states.validate_density_matrix(np.load(store.root / row["density_matrix_path"], allow_pickle=False))


SAVER = """
import sys
from alexandria.qex.runner import run_experiment
run_experiment("ghz", {"n": 9}, store=sys.argv[1])
print("saved", flush=True)
while True:
    run_experiment("ghz", {"n": 9}, store=sys.argv[1])
"""


def test_kill_9_during_saves_never_leaves_a_row_pointing_at_a_partial_or_missing_file(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    open_store(root)
    rng = random.Random(make_seed())

    def runs_started() -> int:
        return sum(1 for _ in (root / "runs").iterdir())

    for _ in range(6):
        before = runs_started()
        proc = python(SAVER, str(root))
        assert proc.stdout is not None and proc.stderr is not None
        # the first run is saved and recorded (however long that takes on a busy machine); the kill lands
        # during a later one: once the next run has started, at a random point of its work
        assert proc.stdout.readline() == b"saved\n", proc.stderr.read().decode()
        wait_until(lambda saved=before + 1: runs_started() > saved, what="the next run to start")
        time.sleep(rng.uniform(0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    store = open_store(Store.open(root))
    open_database(store).dispose()  # fold everything the killed processes wrote
    rows = seed_rows(store.root, "SELECT run_id, density_matrix_path FROM runs")
    assert len(rows) >= 6, "every round saved one run before its kill"
    for row in rows:
        rho = np.load(root / row["density_matrix_path"], allow_pickle=False)
        states.validate_density_matrix(rho)
        assert rho.shape == (512, 512)
    # runs whose file never landed have no row; their run is there (crashed), with no density_matrix
    crashed = seed_rows_tuples(store.root, "SELECT count(*) FROM run WHERE status = 'crashed'")[0][0]
    assert crashed >= 1


def test_show_compare_export_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    store = open_store(root)
    a = run_experiment("x", store=store)
    b = run_experiment("h", store=store)
    shown = qex(root, "show", a.run_id[:10])
    assert shown.returncode == 0 and "(+0.0000, +0.0000, -1.0000)" in shown.stdout
    compared = qex(root, "compare", a.run_id, b.run_id)
    assert compared.returncode == 0, compared.stderr
    assert "fidelity (Uhlmann-Jozsa, squared): 0.500000" in compared.stdout
    assert "trace distance: 0.707107" in compared.stdout
    for suffix in ("npy", "json", "csv"):
        out = qex(root, "export", b.run_id, str(tmp_path / f"state.{suffix}"))
        assert out.returncode == 0, out.stderr
    assert np.array_equal(np.load(tmp_path / "state.npy"), b.rho)
    exported = json.loads((tmp_path / "state.json").read_text())
    assert np.allclose(np.array(exported["real"]) + 1j * np.array(exported["imag"]), b.rho)
    listed = qex(root, "runs")
    assert a.run_id in listed.stdout and b.run_id in listed.stdout

    bad = qex(root, "run", "nope")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ") and "ghz" in bad.stderr
    big = qex(root, "run", "ghz", "-p", "n=11")
    assert big.returncode == 1 and "11" in big.stderr and "10" in big.stderr and "Traceback" not in big.stderr
    noise = qex(root, "run", "x", "--noise", "depol=2")
    assert noise.returncode == 1 and "Error: " in noise.stderr
    assert qex(root, "show", "f" * 32).stderr.startswith("Error: no run with id or name")
    assert (REPO / "README.md").read_text().count("qex sweep") >= 1


def test_runs_and_show_in_csv_and_json(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from alexandria.qex.cli import LIST_COLUMNS
    from alexandria.qex.cli import qex as qex_group

    root = tmp_path / "qex_data"
    store = open_store(root)
    a = run_experiment("x", store=store)
    b = run_experiment("ry", {"theta": 0.5, "n": 2}, store=store)

    def out(*args: str) -> str:
        result = CliRunner().invoke(qex_group, ["--store", str(root), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = out("runs", "--format", "csv")
    header, *rows = list(csv.reader(io.StringIO(listed)))
    assert "\r" not in listed and header == list(LIST_COLUMNS)
    assert [r[0] for r in rows] == [b.run_id, a.run_id]
    assert json.loads(rows[0][header.index("params")]) == {"n": 2, "theta": 0.5}
    [row_b, row_a] = json.loads(out("runs", "--format", "json"))
    assert row_b["params"] == {"n": 2, "theta": 0.5} and row_b["metadata"]["num_qubits"] == 2
    assert row_a["run_id"] == a.run_id and row_a["density_matrix_path"] == f"results/{a.run_id}_rho.npy"
    assert json.loads(out("show", b.run_id[:10], "--format", "json")) == row_b
    header, *qubits = list(csv.reader(io.StringIO(out("show", a.run_id, "--format", "csv"))))
    assert header == ["qubit", "bloch_x", "bloch_y", "bloch_z", "purity", "entropy_bits", "name"]
    [(qubit, x, y, z, purity, _, name)] = qubits
    assert qubit == "0" and name == "q(0)" and [float(v) for v in (x, y, z)] == pytest.approx([0, 0, -1], abs=1e-12)
    assert float(purity) == pytest.approx(1.0)


def test_a_deleted_qex_run_leaves_the_seed_tables_until_restored(tmp_path: Path) -> None:
    """`runs` and `artifacts` list live runs only: a deleted run (and its sweep plot) is back once restored."""
    import alexandria

    root = tmp_path / "qex_data"
    kept, dropped = (run_experiment("ry", {"theta": t, "n": 1}, store=root).run_id for t in (0.1, 0.2))
    store = open_store(root)
    listed = "SELECT run_id FROM runs ORDER BY timestamp"
    assert [r["run_id"] for r in seed_rows(root, listed)] == [kept, dropped]
    alexandria.delete_runs([dropped], store=store)
    open_database(store).dispose()  # qex.db brought up to date, as every qex command does
    assert [r["run_id"] for r in seed_rows(root, listed)] == [kept]
    assert {r["run_id"] for r in seed_rows(root, "SELECT run_id FROM artifacts")} == {kept}
    out = qex(root, "runs")
    assert out.returncode == 0 and kept[:8] in out.stdout and dropped[:8] not in out.stdout, out.stdout
    alexandria.restore_runs([dropped], store=store)
    open_database(store).dispose()
    assert [r["run_id"] for r in seed_rows(root, listed)] == [kept, dropped]
