"""qex's experiment model as upstream qex has it: builders on the user's qubits, their names shown, idle qubits
padded (and, as an option, noisy every moment), Cirq's depolarizing convention, metadata per run."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path
from typing import Any

import cirq
import numpy as np
import pytest

from alexandria.errors import InvalidInputError
from alexandria.qex import states
from alexandria.qex.backends import CirqBackend, Noise, NumpyDensityMatrix
from alexandria.qex.circuit import Circuit, gate_unitary
from alexandria.qex.errors import BackendError
from alexandria.qex.experiments import Experiment
from alexandria.qex.runner import load_density_matrix, open_store, rerun, run_circuit, run_experiment, sweep
from tests.test_qex import qex, seed_rows
from tests.test_qex_bloch import page_figure

GRID = [cirq.GridQubit(0, 0), cirq.GridQubit(0, 1), cirq.GridQubit(1, 0)]


def metadata(root: Path, run_id: str) -> dict[str, Any]:
    [row] = seed_rows(root, f"SELECT metadata FROM runs WHERE run_id = '{run_id}'")
    return json.loads(row["metadata"])  # type: ignore[no-any-return]


def sphere_titles(page: Path) -> list[str]:
    """The subplot titles of a Bloch page, as the browser gets them (plotly annotations)."""
    _, layout = page_figure(page)
    return [a["text"] for a in layout.get("annotations", [])]


def z_of(rho: np.ndarray, k: int) -> float:
    return float(states.bloch_vector(states.reduced_state(rho, k))[2])


# ---------------------------------------------------------------- the builder and its qubits


def test_the_builder_receives_the_qubits_and_params_of_each_run(tmp_path: Path) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def builder(qubits: Any, params: dict[str, Any]) -> cirq.Circuit:
        calls.append((qubits, params))
        return cirq.Circuit(cirq.ry(params["theta"])(qubits[0]), cirq.CNOT(qubits[0], qubits[1]))

    exp = Experiment(name="entangle", builder=builder)  # as upstream qex users write it
    line = cirq.LineQubit.range(2)
    a = run_experiment(exp, {"theta": 0.4}, qubits=line, store=tmp_path / "q")
    b = run_experiment(exp, {"theta": 1.3}, qubits=GRID[:2], store=tmp_path / "q")
    assert calls == [(tuple(line), {"theta": 0.4}), (tuple(GRID[:2]), {"theta": 1.3})]
    assert a.backend == "cirq_dm"  # a cirq circuit goes to the Cirq backend unless told otherwise
    for result, theta in ((a, 0.4), (b, 1.3)):
        expected = cirq.final_density_matrix(builder((cirq.LineQubit.range(2)), {"theta": theta}))
        np.testing.assert_allclose(result.rho, expected, atol=1e-7)
    # positional, as upstream's Experiment(name, builder) is called: a two-parameter function is a builder
    positional = Experiment("flip", lambda qubits, params: cirq.Circuit(cirq.X(qubits[-1])))
    c = run_experiment(positional, qubits=GRID, store=tmp_path / "q")
    assert [round(z_of(c.rho, k)) for k in range(3)] == [1, 1, -1]
    # with no qubits given, upstream's default: one GridQubit(0, 0)
    d = run_experiment(Experiment("h", builder=lambda qs, p: cirq.Circuit(cirq.H(qs[0]))), store=tmp_path / "q")
    assert d.metadata["qubit_names"] == ["q(0, 0)"]


def test_a_qex_circuit_built_on_named_qubits(tmp_path: Path) -> None:
    def builder(qubits: Any, params: dict[str, Any]) -> Circuit:
        return Circuit(qubits).h(qubits[0]).cnot("alice", qubits[1]).rz("bob", params["phi"])

    exp = Experiment("pair", builder=builder, defaults={"phi": 0.25})
    result = run_experiment(exp, qubits=["alice", "bob"], store=tmp_path / "q")
    assert result.backend == "numpy_dm" and result.params == {"phi": 0.25}
    plain = NumpyDensityMatrix().run(Circuit(2).h(0).cnot(0, 1).rz(1, 0.25))
    np.testing.assert_allclose(result.rho, plain, atol=1e-12)
    assert result.metadata["qubit_names"] == ["alice", "bob"]
    assert "the qubits as the qex Circuit was given them" in result.metadata["qubit_order"]
    with pytest.raises(InvalidInputError, match="unknown: theta"):  # declared defaults are checked, as ever
        run_experiment(exp, {"theta": 1}, qubits=["alice", "bob"], store=tmp_path / "q")
    with pytest.raises(InvalidInputError, match="'carol' is not one of the circuit's qubits"):
        Circuit(["alice", "bob"]).x("carol")
    with pytest.raises(InvalidInputError, match="distinct"):
        Circuit(["a", "a"])


def test_grid_qubit_names_reach_metadata_show_and_the_bloch_page(tmp_path: Path) -> None:
    root = tmp_path / "q"
    # given in an order of the user's, not the sorted one: the state follows it
    order = [GRID[2], GRID[0], GRID[1]]
    exp = Experiment("grid", builder=lambda qs, p: cirq.Circuit(cirq.X(cirq.GridQubit(1, 0)), cirq.H(qs[2])))
    result = run_experiment(exp, qubits=order, store=root)
    names = ["q(1, 0)", "q(0, 0)", "q(0, 1)"]
    meta = metadata(root, result.run_id)
    assert meta["qubit_names"] == names
    assert "the qubits in the order given" in meta["qubit_order"] and "LineQubit" not in meta["qubit_order"]
    assert [q["name"] for q in meta["qubits"]] == names
    assert [round(q["bloch"][2]) for q in meta["qubits"]] == [-1, 1, 0]  # X on q(1, 0), the first given
    assert sphere_titles(root / result.bloch_path) == names
    data, _ = page_figure(root / result.bloch_path)
    tips = {t["name"]: t for t in data if t.get("name", "").endswith(" state")}
    assert tips["qubit 0 state"]["hovertemplate"].startswith("qubit 0: q(1, 0)<br>")

    shown = qex(root, "show", result.run_id)
    assert shown.returncode == 0, shown.stderr
    assert "qubits q(1, 0), q(0, 0), q(0, 1)" in shown.stdout and "0 q(1, 0)" in shown.stdout
    table = qex(root, "show", result.run_id, "--format", "csv")
    header, *rows = list(csv.reader(io.StringIO(table.stdout)))
    assert [r[header.index("name")] for r in rows] == names

    # a native circuit with no qubits given: its qubits sorted, and said so
    native = run_circuit("native", cirq.Circuit(cirq.X(GRID[1]), cirq.H(GRID[2])), store=root)
    assert native.metadata["qubit_names"] == ["q(0, 1)", "q(1, 0)"]
    assert "sorted(circuit.all_qubits())" in native.metadata["qubit_order"]
    assert [round(z_of(native.rho, k)) for k in range(2)] == [-1, 0]


def test_named_qubits_of_cirq_and_a_numbered_circuit_keep_their_labels(tmp_path: Path) -> None:
    root = tmp_path / "q"
    named = [cirq.NamedQubit("control"), cirq.NamedQubit("target")]
    exp = Experiment("cnot", builder=lambda qs, p: cirq.Circuit(cirq.X(qs[0]), cirq.CNOT(qs[0], qs[1])))
    result = run_experiment(exp, qubits=named, store=root)
    assert result.metadata["qubit_names"] == ["control", "target"]
    assert sphere_titles(root / result.bloch_path) == ["control", "target"]
    # a ready experiment numbers its qubits: "qubit k" on its spheres, LineQubit names in its metadata
    ghz = run_experiment("ghz", {"n": 3}, store=root)
    assert sphere_titles(root / ghz.bloch_path) == ["qubit 0", "qubit 1", "qubit 2"]
    assert ghz.metadata["qubit_names"] == ["q(0)", "q(1)", "q(2)"]
    assert "cirq.LineQubit.range(n)" in ghz.metadata["qubit_order"]
    with pytest.raises(InvalidInputError, match="numbers its own qubits"):
        run_experiment("ghz", qubits=GRID, store=root)


# ---------------------------------------------------------------- idle qubits


def test_idle_qubits_are_padded_in_zero(tmp_path: Path) -> None:
    root = tmp_path / "q"
    # a cirq builder that touches one of the three qubits given
    exp = Experiment("one", builder=lambda qs, p: cirq.Circuit(cirq.ry(1.1)(qs[1])))
    result = run_experiment(exp, qubits=GRID, store=root)
    assert result.rho.shape == (8, 8) and result.metadata["num_qubits"] == 3
    expected = np.kron(np.kron(np.diag([1, 0]), states.reduced_state(result.rho, 1)), np.diag([1, 0]))
    np.testing.assert_allclose(result.rho, expected, atol=1e-12)
    np.testing.assert_allclose(
        states.bloch_vector(states.reduced_state(result.rho, 1)), [math.sin(1.1), 0, math.cos(1.1)]
    )
    # a qex circuit on fewer of the qubits given is rewritten onto all of them
    ours = Experiment("ours", builder=lambda qs, p: Circuit([qs[2]]).ry(qs[2], 1.1))
    padded = run_experiment(ours, qubits=["a", "b", "c"], store=root)
    assert padded.metadata["qubit_names"] == ["a", "b", "c"]
    np.testing.assert_allclose(padded.rho, NumpyDensityMatrix().run(Circuit(3).ry(2, 1.1)), atol=1e-12)
    # and the circuit acting on a qubit the user did not give is refused, naming it
    stray = Experiment("stray", builder=lambda qs, p: cirq.Circuit(cirq.X(cirq.GridQubit(5, 5))))
    before = len(seed_rows(root, "SELECT id FROM run"))
    with pytest.raises(InvalidInputError, match=r"acts on q\(5, 5\), not among the qubits given"):
        run_experiment(stray, qubits=GRID, store=root)
    with pytest.raises(BackendError, match="runs on the cirq_dm backend, not numpy_dm"):
        run_experiment(exp, qubits=GRID, backend=NumpyDensityMatrix(), store=root)
    assert len(seed_rows(root, "SELECT id FROM run")) == before  # refused before a run was started


def random_circuit(rng: random.Random, n: int, gates: int) -> Circuit:
    c = Circuit(n)
    for _ in range(gates):
        kind = rng.choice(["RX", "RY", "RZ", "H", "CNOT", "CZ", "CP", "CCX"] if n >= 3 else ["RY", "H", "CNOT"])
        arity = {"CNOT": 2, "CZ": 2, "CP": 2, "CCX": 3}.get(kind, 1)
        qubits = rng.sample(range(n), arity)
        params = [rng.uniform(-math.pi, math.pi)] if kind in ("RX", "RY", "RZ", "CP") else []
        c.add(kind, *qubits, params=params)
    return c


def embed(u: np.ndarray, qubits: tuple[int, ...], n: int) -> np.ndarray:
    """`u` (big-endian over `qubits`) as a 2**n x 2**n matrix, entry by entry: no tensor tricks shared with qex."""
    dim = 2**n
    out = np.zeros((dim, dim), dtype=np.complex128)
    bit = [lambda i, q=q: (i >> (n - 1 - q)) & 1 for q in range(n)]
    for row in range(dim):
        for col in range(dim):
            if any(bit[q](row) != bit[q](col) for q in range(n) if q not in qubits):
                continue
            r = sum(bit[q](row) << (len(qubits) - 1 - k) for k, q in enumerate(qubits))
            c = sum(bit[q](col) << (len(qubits) - 1 - k) for k, q in enumerate(qubits))
            out[row, col] = u[r, c]
    return out


def reference_idle_noise(circuit: Circuit, p: float, gamma: float, lam: float) -> np.ndarray:
    """Upstream's noise model computed plainly: the moments (each gate in the first layer after its qubits'
    last), each moment's unitary, then depolarizing (ours), amplitude and phase damping on every qubit."""
    n = circuit.num_qubits
    layers: list[list[Any]] = []
    free = [0] * n
    for g in circuit:
        at = max(free[q] for q in g.qubits)
        while len(layers) <= at:
            layers.append([])
        layers[at].append(g)
        for q in g.qubits:
            free[q] = at + 1
    rho = np.zeros((2**n, 2**n), dtype=np.complex128)
    rho[0, 0] = 1
    paulis = [np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1, -1])]
    damp = [np.array([[1, 0], [0, math.sqrt(1 - gamma)]]), np.array([[0, math.sqrt(gamma)], [0, 0]])]
    dephase = [np.array([[1, 0], [0, math.sqrt(1 - lam)]]), np.array([[0, 0], [0, math.sqrt(lam)]])]
    for layer in layers:
        for g in layer:
            u = embed(gate_unitary(g), g.qubits, n)
            rho = u @ rho @ u.conj().T
        for q in range(n):
            # depolarizing, ours: (1 - p) rho + p * (rho traced over q) (x) I/2 on q, as Paulis: the same map
            rho = (1 - 3 * p / 4) * rho + sum(
                p / 4 * (e @ rho @ e.conj().T) for e in (embed(s, (q,), n) for s in paulis)
            )
            for kraus in (damp, dephase):
                rho = sum(embed(k, (q,), n) @ rho @ embed(k, (q,), n).conj().T for k in kraus)
    return rho


@pytest.mark.parametrize("seed", [3, 17, 29])
def test_idle_noise_agrees_between_backends_and_with_a_plain_computation(seed: int) -> None:
    rng = random.Random(seed)
    circuit = random_circuit(rng, 4, 14)
    noise = Noise(depolarizing=0.03, amplitude_damping=0.02, phase_damping=0.04, idle_noise=True)
    ours, theirs = NumpyDensityMatrix(noise).run(circuit), CirqBackend(noise).run(circuit)
    np.testing.assert_allclose(ours, theirs, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ours, reference_idle_noise(circuit, 0.03, 0.02, 0.04), atol=1e-12, rtol=0)
    per_gate = NumpyDensityMatrix(Noise(depolarizing=0.03, amplitude_damping=0.02, phase_damping=0.04)).run(circuit)
    assert np.abs(per_gate - ours).max() > 1e-4  # the option changes the state: the test above can fail


@pytest.mark.parametrize("make", [NumpyDensityMatrix, CirqBackend], ids=["numpy", "cirq"])
def test_an_idle_qubit_decays_once_a_moment(make: type) -> None:
    p = 0.1
    circuit = Circuit(2)
    for _ in range(5):
        circuit.x(0)  # five moments; qubit 1 idles through all of them
    idle = make(Noise(depolarizing=p, idle_noise=True)).run(circuit)
    assert z_of(idle, 1) == pytest.approx((1 - p) ** 5, abs=1e-12)
    assert z_of(idle, 0) == pytest.approx(-((1 - p) ** 5), abs=1e-12)  # each gate's own noise, once a moment
    assert z_of(make(Noise(depolarizing=p)).run(circuit), 1) == pytest.approx(1.0, abs=1e-12)  # our default


def test_moments_are_cirqs_earliest_layering() -> None:
    circuit = random_circuit(random.Random(5), 5, 30)
    cirq_circuit, qs = CirqBackend().to_cirq(circuit)
    ours = [sorted(tuple(g.qubits) for g in m) for m in circuit.moments()]
    theirs = [sorted(tuple(qs.index(q) for q in op.qubits) for op in m) for m in cirq_circuit]
    assert ours == theirs


# ---------------------------------------------------------------- Cirq's depolarizing convention


def test_cirqs_p_is_ours_with_four_thirds_p() -> None:
    circuit = random_circuit(random.Random(11), 3, 12)
    q = 0.05
    for make in (NumpyDensityMatrix, CirqBackend):
        theirs = make(Noise(depolarizing=q, convention="cirq")).run(circuit)
        ours = make(Noise(depolarizing=4 * q / 3)).run(circuit)
        np.testing.assert_allclose(theirs, ours, atol=1e-12, rtol=0)
        back = make(Noise(depolarizing=3 * q / 4, convention="cirq")).run(circuit)
        np.testing.assert_allclose(back, make(Noise(depolarizing=q)).run(circuit), atol=1e-12, rtol=0)
        same_number = make(Noise(depolarizing=q)).run(circuit)
        assert np.abs(same_number - theirs).max() > 1e-3  # the same number is not the same noise
    one = NumpyDensityMatrix(Noise(depolarizing=q, convention="cirq")).run(Circuit(1).i(0))
    assert z_of(one, 0) == pytest.approx(1 - 4 * q / 3, abs=1e-15)  # Cirq's shrink factor


def test_what_upstreams_noisy_cirq_backend_computed() -> None:
    """Upstream's NoisyCirqBackend(p): `circuit.with_noise(cirq.depolarize(p))` on Cirq's density-matrix
    simulator. `Noise(depolarizing=p, convention="cirq", idle_noise=True)` gives that state on both backends."""
    a, b, c = GRID
    native = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.ry(0.7)(c), cirq.X(b), cirq.CZ(b, c), cirq.H(a))
    upstream = cirq.DensityMatrixSimulator(dtype=np.complex128).simulate(native.with_noise(cirq.depolarize(0.05)))
    noise = Noise(depolarizing=0.05, convention="cirq", idle_noise=True)
    np.testing.assert_allclose(CirqBackend(noise).run(native), upstream.final_density_matrix, atol=1e-12, rtol=0)
    ours = Circuit(3).h(0).cnot(0, 1).ry(2, 0.7).x(1).cz(1, 2).h(0)
    assert len(ours.moments()) == len(native)
    np.testing.assert_allclose(NumpyDensityMatrix(noise).run(ours), upstream.final_density_matrix, atol=1e-12)
    per_gate = CirqBackend(Noise(depolarizing=0.05, convention="cirq")).run(native)
    assert np.abs(per_gate - upstream.final_density_matrix).max() > 1e-4
    # upstream's Runner padded a qubit given but untouched with cirq.I (so the noise reached it every moment)
    spare = cirq.GridQubit(1, 1)
    padded = native + cirq.Circuit()
    padded.append(cirq.I(spare))
    upstream4 = cirq.DensityMatrixSimulator(dtype=np.complex128).simulate(padded.with_noise(cirq.depolarize(0.05)))
    on_four = CirqBackend(noise).run(native, [*GRID, spare])
    np.testing.assert_allclose(on_four, upstream4.final_density_matrix, atol=1e-12, rtol=0)
    # terminal measurements are left out with their moment: no noise after them, the state before them
    measured = native + cirq.Circuit(cirq.measure(*GRID, key="m"))
    np.testing.assert_allclose(CirqBackend(noise).run(measured), upstream.final_density_matrix, atol=1e-12)


def test_noise_text_reads_back() -> None:
    noise = Noise(depolarizing=0.05, amplitude_damping=0.01, convention="cirq", idle_noise=True)
    assert noise.describe() == "depol_cirq(0.05)+ad(0.01)+idle"
    assert Noise.parse(noise.describe()) == noise
    assert Noise.parse("depol=0.05,ad=0.01", convention="cirq", idle_noise=True) == noise
    assert Noise(**noise.to_json()) == noise
    # upstream's `qex run --noise 0.05`: a bare number is the depolarizing strength
    assert Noise.parse("0.05", convention="cirq", idle_noise=True) == Noise(0.05, convention="cirq", idle_noise=True)
    with pytest.raises(InvalidInputError, match="cannot read noise item"):
        Noise.parse("0.05.1")
    with pytest.raises(InvalidInputError, match="convention must be one of ours, cirq"):
        Noise(depolarizing=0.1, convention="qiskit")


# ---------------------------------------------------------------- the command line, the record, the rerun


@pytest.mark.parametrize("backend", ["numpy_dm", "cirq_dm"])
def test_convention_and_idle_noise_are_recorded_and_rerun(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "q"
    flags = ["-b", backend, "--noise", "depol=0.05", "--noise-convention", "cirq", "--idle-noise"]
    first = qex(root, "run", "ghz", "-p", "n=3", *flags)
    assert first.returncode == 0, first.stderr
    [row] = seed_rows(root, "SELECT run_id, backend_name, metadata FROM runs")
    assert row["backend_name"] == f"{backend}+depol_cirq(0.05)+idle"
    meta = json.loads(row["metadata"])
    assert meta["noise_convention"] == "cirq" and meta["idle_noise"] is True
    [recipe_path] = [
        r["artifact_path"] for r in seed_rows(root, "SELECT * FROM artifacts") if r["artifact_name"] == "circuit"
    ]
    stored = json.loads((root / recipe_path).read_text())["noise"]
    assert stored == {
        "depolarizing": 0.05,
        "amplitude_damping": 0.0,
        "phase_damping": 0.0,
        "convention": "cirq",
        "idle_noise": True,
    }
    state = load_density_matrix(open_store(root), row["run_id"])
    expected = NumpyDensityMatrix(Noise(depolarizing=4 * 0.05 / 3, idle_noise=True)).run(
        Circuit(3).h(0).cnot(0, 1).cnot(1, 2)
    )
    np.testing.assert_allclose(state, expected, atol=1e-12)
    again = qex(root, "rerun", row["run_id"])
    assert again.returncode == 0, again.stderr
    rows = seed_rows(root, "SELECT run_id, backend_name, metadata FROM runs")
    [new] = [r for r in rows if r["run_id"] != row["run_id"]]
    assert new["backend_name"] == row["backend_name"]
    np.testing.assert_allclose(load_density_matrix(open_store(root), new["run_id"]), state, atol=1e-12)
    fid = json.loads(new["metadata"])["fidelity_to_ideal"]
    assert fid == pytest.approx(meta["fidelity_to_ideal"], abs=1e-12) and fid < 0.95


def test_a_native_circuit_on_given_qubits_is_rerun_on_them(tmp_path: Path) -> None:
    root = tmp_path / "q"
    exp = Experiment("two of three", builder=lambda qs, p: cirq.Circuit(cirq.H(qs[2]), cirq.CNOT(qs[2], qs[0])))
    noise = Noise(depolarizing=0.02, idle_noise=True)
    first = run_experiment(exp, qubits=GRID, backend=CirqBackend(noise), store=root)
    again = rerun(root, first.run_id)
    assert again.result.metadata["qubit_names"] == first.metadata["qubit_names"] == ["q(0, 0)", "q(0, 1)", "q(1, 0)"]
    assert again.result.rho.shape == (8, 8) and again.fidelity >= 1 - 1e-12
    np.testing.assert_allclose(again.result.rho, first.rho, atol=1e-12)


def test_user_metadata_is_kept_per_run(tmp_path: Path) -> None:
    root = tmp_path / "q"
    exp = Experiment("h", builder=lambda qs, p: Circuit(qs).h(qs[0]))
    a = run_experiment(exp, qubits=["a"], metadata={"sample": "A", "temperature_mK": 12.5}, store=root)
    b = run_experiment(exp, qubits=["a"], metadata={"sample": "B"}, store=root)
    c = run_experiment(exp, qubits=["a"], store=root)
    assert metadata(root, a.run_id)["user"] == {"sample": "A", "temperature_mK": 12.5}
    assert metadata(root, b.run_id)["user"] == {"sample": "B"}
    assert metadata(root, c.run_id)["user"] == {}
    shown = qex(root, "show", a.run_id)
    assert '"sample": "A"' in shown.stdout, shown.stdout
    ran = qex(root, "run", "x", "--meta", "sample=C", "-m", "cooldown=3")
    assert ran.returncode == 0, ran.stderr
    [latest] = seed_rows(root, "SELECT metadata FROM runs ORDER BY timestamp DESC LIMIT 1")
    assert json.loads(latest["metadata"])["user"] == {"sample": "C", "cooldown": 3}
    before = len(seed_rows(root, "SELECT run_id FROM runs"))
    with pytest.raises(InvalidInputError, match="JSON-able"):
        run_experiment(exp, qubits=["a"], metadata={"when": object()}, store=root)
    assert len(seed_rows(root, "SELECT run_id FROM runs")) == before  # refused before anything was recorded


def test_a_builder_experiment_sweeps_on_its_qubits(tmp_path: Path) -> None:
    exp = Experiment("turn", builder=lambda qs, p: cirq.Circuit(cirq.ry(p["theta"])(qs[1])))
    parent, results = sweep(exp, {"theta": [0.0, math.pi]}, qubits=GRID[:2], store=tmp_path / "q")
    assert [r.metadata["qubit_names"] for r in results] == [["q(0, 0)", "q(0, 1)"]] * 2
    assert [round(z_of(r.rho, 1)) for r in results] == [1, -1]
    assert all(round(z_of(r.rho, 0)) == 1 for r in results)
