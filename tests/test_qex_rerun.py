"""qex runs store their circuit so that `qex rerun` reproduces the state; the exports read back in Cirq."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cirq
import numpy as np
import pytest

from alexandria.errors import InvalidInputError
from alexandria.qex import recipe, runner, states
from alexandria.qex.backends import CirqBackend, Noise, NumpyDensityMatrix
from alexandria.qex.circuit import Circuit
from alexandria.qex.errors import NotRerunnableError
from alexandria.qex.runner import load_density_matrix, open_store, rerun, run_circuit, run_experiment
from tests.test_qex import qex, seed_rows


def rerun_fidelity(stdout: str) -> float:
    found = re.search(r"fidelity with the original state: ([0-9.]+)", stdout)
    assert found, stdout
    return float(found.group(1))


def tag(root: Path, run_id: str, key: str) -> str | None:
    rows = seed_rows(root, f"SELECT value FROM tag WHERE run_id = '{run_id}' AND key = '{key}'")
    return rows[0]["value"] if rows else None


def new_run_id(stdout: str) -> str:
    found = re.search(r"run ([0-9a-f]{32}): rerun of", stdout)
    assert found, stdout
    return found.group(1)


@pytest.mark.parametrize(
    ("experiment", "params"),
    [
        ("qft", ["-p", "n=3", "-p", "j=5"]),
        ("vqe", ["-p", "n=3", "-p", "layers=2", "-p", "seed=11"]),
        ("teleport", ["-p", "theta=0.91", "-p", "phi=-2.2"]),
        ("qaoa", ["-p", "edges=0-1,1-2,2-3,0-3", "-p", "gamma=0.37", "-p", "beta=1.1"]),
    ],
)
def test_qex_rerun_reproduces_a_noiseless_run(tmp_path: Path, experiment: str, params: list[str]) -> None:
    root = tmp_path / "q"
    first = qex(root, "run", experiment, *params)
    assert first.returncode == 0, first.stderr
    [row] = seed_rows(root, "SELECT run_id, params FROM runs")
    original = row["run_id"]
    again = qex(root, "rerun", original[:10])  # any way of naming a run
    assert again.returncode == 0, again.stderr
    assert rerun_fidelity(again.stdout) >= 1 - 1e-12
    new = new_run_id(again.stdout)
    assert tag(root, new, "rerun_of") == original
    rows = {r["run_id"]: r for r in seed_rows(root, "SELECT run_id, experiment_name, params, backend_name FROM runs")}
    assert rows[new]["experiment_name"] == experiment and rows[new]["params"] == row["params"]
    store = open_store(root)
    a, b = load_density_matrix(store, original), load_density_matrix(store, new)
    assert states.fidelity(a, b) >= 1 - 1e-12 and np.allclose(a, b, atol=1e-12)


def test_a_noisy_run_is_rerun_with_the_same_noise_model(tmp_path: Path) -> None:
    root = tmp_path / "q"
    first = qex(
        root, "run", "grover", "-p", "n=3", "-p", "marked=2", "-p", "iterations=2", "--noise", "ad=0.03,pd=0.02"
    )
    assert first.returncode == 0, first.stderr
    [original] = [r["run_id"] for r in seed_rows(root, "SELECT run_id FROM runs")]
    again = qex(root, "rerun", original)
    assert again.returncode == 0, again.stderr
    new = new_run_id(again.stdout)
    rows = {r["run_id"]: r for r in seed_rows(root, "SELECT run_id, backend_name, metadata FROM runs")}
    assert rows[new]["backend_name"] == rows[original]["backend_name"] == "numpy_dm+ad(0.03)+pd(0.02)"
    fid = {k: json.loads(r["metadata"])["fidelity_to_ideal"] for k, r in rows.items()}
    assert fid[new] == pytest.approx(fid[original], abs=1e-12) and fid[new] < 0.99  # the noise acted, again
    assert rerun_fidelity(again.stdout) >= 1 - 1e-9


def test_cirq_backend_and_native_cirq_circuits_rerun(tmp_path: Path) -> None:
    store = open_store(tmp_path / "q")
    noise = Noise(depolarizing=0.02)
    ours = run_experiment("qft", {"n": 2, "j": 3}, CirqBackend(noise), store=store, capture=False)
    a, b = cirq.LineQubit.range(2)
    native = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.rz(0.3).on(b), cirq.measure(a, b))
    theirs = run_circuit("native", native, {}, CirqBackend(), store=store, capture=False)
    for result in (ours, theirs):
        again = rerun(store, result.run_id)
        assert again.result.backend == result.backend
        assert again.fidelity >= 1 - 1e-9 and again.trace_distance < 1e-7
        assert np.allclose(again.result.rho, result.rho, atol=1e-9)


def test_the_cirq_json_export_is_the_circuit_as_cirq_runs_it(tmp_path: Path) -> None:
    store = open_store(tmp_path / "q")
    noise = Noise(depolarizing=0.03, amplitude_damping=0.01)
    result = run_experiment("vqe", {"n": 3, "layers": 1, "seed": 4}, NumpyDensityMatrix(noise), store=store)
    base = store.root / "artifacts" / f"{result.run_id}_circuit"
    program = cirq.read_json(f"{base}.cirq.json")
    simulated = cirq.DensityMatrixSimulator(dtype=np.complex128).simulate(program, qubit_order=cirq.LineQubit.range(3))
    # the noise channels are in it: Cirq alone gives the noisy state qex stored
    assert np.allclose(simulated.final_density_matrix, load_density_matrix(store, result.run_id), atol=1e-7)
    qasm2, qasm3 = Path(f"{base}.qasm").read_text(), Path(f"{base}.qasm3").read_text()
    assert "OPENQASM 2.0;" in qasm2 and "qreg q[3];" in qasm2 and "cx q[0],q[1];" in qasm2
    assert "OPENQASM 3.0;" in qasm3 and "qubit[3] q;" in qasm3
    diagram = Path(f"{base}.txt").read_text()  # Cirq's text diagram: a wire per qubit, @-X for each CNOT
    assert [line[:3] for line in diagram.splitlines() if line[:1].isdigit()] == ["0: ", "1: ", "2: "]
    assert "@" in diagram and "Ry(" in diagram
    names = {a["artifact_name"] for a in seed_rows(store.root, "SELECT artifact_name FROM artifacts")}
    assert {"circuit", "circuit_cirq", "circuit_qasm", "circuit_qasm3", "circuit_diagram"} <= names


def test_the_description_rebuilds_the_circuit_exactly() -> None:
    c = Circuit(3).ry(0, 0.1 + 0.2).cp(1, 0, np.pi / 7).ccx(0, 1, 2).rz(2, -1e-300)
    backend = NumpyDensityMatrix(Noise(0.1, 0.2, 0.3), max_qubits=5)
    doc = json.loads(json.dumps(recipe.describe(c, backend, "mine", {"angle": 0.3})))
    back = recipe.load_recipe(json.dumps(doc).encode(), "x.json")
    assert back.circuit == c and back.experiment == "mine" and back.params == {"angle": 0.3}
    assert isinstance(back.backend, NumpyDensityMatrix) and back.backend.noise == backend.noise
    assert back.backend.max_qubits == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "is not JSON"),
        (b"[]", "not a qex circuit description"),
        (b'{"format": "other/9"}', "not a qex circuit description"),
        (
            b'{"format": "alexandria.qex.circuit/1", "experiment": "e", "params": {}, "backend": "numpy_dm",'
            b' "max_qubits": 10, "noise": null, "num_qubits": 2, "gates": [["CNOT", [0, 5], []]]}',
            "qubit 5 out of range",
        ),
        (
            b'{"format": "alexandria.qex.circuit/1", "experiment": "e", "params": {}, "backend": "numpy_dm",'
            b' "max_qubits": 10, "noise": {"depolarizing": 2}, "num_qubits": 1, "gates": []}',
            "must be in \\[0, 1\\]",
        ),
    ],
)
def test_a_damaged_description_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        recipe.load_recipe(data, "run X's circuit.json")


def test_a_run_from_before_circuits_were_stored_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "q"
    with monkeypatch.context() as m:
        m.setattr(runner, "_record_recipe", lambda *args: None)  # what a run recorded before
        old = run_experiment("bell", store=root, capture=False)
    with pytest.raises(NotRerunnableError, match="logged before qex stored circuits"):
        rerun(root, old.run_id)
    out = qex(root, "rerun", old.run_id)
    assert out.returncode != 0
    assert "Error:" in out.stderr + out.stdout and "cannot be rerun" in out.stderr + out.stdout
    assert len(seed_rows(root, "SELECT run_id FROM runs")) == 1  # nothing was recorded


class Wrapped:
    """A backend qex does not know (it only forwards to numpy's)."""

    name = "wrapped"
    version = "1"
    max_qubits = 10

    def run(self, circuit: object) -> np.ndarray:
        return NumpyDensityMatrix().run(circuit)


def test_a_run_on_a_backend_qex_does_not_know_cannot_be_rerun(tmp_path: Path) -> None:
    store = open_store(tmp_path / "q")
    result = run_experiment("ghz", {"n": 2}, Wrapped(), store=store, capture=False)
    doc = json.loads((store.root / "artifacts" / f"{result.run_id}_circuit.json").read_text())
    assert doc["backend"] is None and doc["gates"] == [["H", [0], []], ["CNOT", [0, 1], []]]
    with pytest.raises(NotRerunnableError, match="backend qex does not know"):
        rerun(store, result.run_id)


def test_a_changed_circuit_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "q"
    result = run_experiment("bell", store=root, capture=False)
    path = root / "artifacts" / f"{result.run_id}_circuit.json"
    doc = json.loads(path.read_text())
    doc["gates"] = doc["gates"][:1]
    path.write_text(json.dumps(doc))
    out = qex(root, "rerun", result.run_id)
    assert out.returncode != 0 and "Error:" in out.stderr + out.stdout, out.stdout
    assert "changed" in (out.stderr + out.stdout).lower() or "sha-256" in (out.stderr + out.stdout).lower()
    assert len(seed_rows(root, "SELECT run_id FROM runs")) == 1
