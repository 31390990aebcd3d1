"""qex's textbook experiments against their closed forms (never the code's own output), on both backends."""

from __future__ import annotations

import math
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

from alexandria.errors import InvalidInputError
from alexandria.qex.backends import Backend, CirqBackend, NumpyDensityMatrix
from alexandria.qex.circuit import Circuit
from alexandria.qex.experiments import get_experiment, vqe_angles
from alexandria.qex.states import reduced_state, validate_density_matrix
from tests.test_qex import qex

BACKENDS = [NumpyDensityMatrix, CirqBackend]


@pytest.fixture(params=BACKENDS, ids=["numpy", "cirq"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param()  # type: ignore[no-any-return]


def run(backend: Backend, name: str, **params: object) -> np.ndarray:
    return validate_density_matrix(backend.run(get_experiment(name).circuit(dict(params))))


def probabilities(rho: np.ndarray) -> np.ndarray:
    return np.real(np.diag(rho))


# ---------------------------------------------------------------- teleportation


def test_teleportation_hands_bob_the_input_state(backend: Backend) -> None:
    rng = np.random.default_rng(1616)
    for theta, phi in rng.uniform([0, -math.pi], [math.pi, math.pi], size=(6, 2)):
        rho = run(backend, "teleport", theta=float(theta), phi=float(phi))
        # RZ(phi) RY(theta)|0> written out: cos(t/2) e^{-i phi/2} |0> + sin(t/2) e^{i phi/2} |1>
        psi = np.array([math.cos(theta / 2) * np.exp(-0.5j * phi), math.sin(theta / 2) * np.exp(0.5j * phi)])
        assert np.allclose(reduced_state(rho, 2), np.outer(psi, psi.conj()), atol=1e-9), (theta, phi)
        # with the measurement deferred, Alice's qubits end as |+>|+>, holding nothing of the input:
        # the whole state is |+>|+>|psi> (1/2 sum_m |m0 m1> Z^m0 X^m1 X^m1 Z^m0 |psi>)
        plus = np.full((2, 2), 0.5, dtype=complex)
        assert np.allclose(rho, np.kron(np.kron(plus, plus), np.outer(psi, psi.conj())), atol=1e-9)


# ---------------------------------------------------------------- QFT


@pytest.mark.parametrize(("n", "j"), [(1, 1), (2, 1), (2, 3), (3, 1), (3, 5), (4, 6), (4, 11)])
def test_qft_of_a_basis_state(backend: Backend, n: int, j: int) -> None:
    rho = run(backend, "qft", n=n, j=j)
    size = 2**n
    phi = np.array([np.exp(2j * math.pi * j * k / size) for k in range(size)]) / math.sqrt(size)
    assert np.allclose(rho, np.outer(phi, phi.conj()), atol=1e-9)
    assert np.allclose(np.abs(np.diag(rho)), 1 / size, atol=1e-12)  # uniform magnitudes


# ---------------------------------------------------------------- Grover


@pytest.mark.parametrize("n", [2, 3])
def test_grover_finds_the_marked_state_with_the_textbook_probability(n: int) -> None:
    backend = NumpyDensityMatrix()
    theta = math.asin(1 / math.sqrt(2**n))
    for marked in range(2**n):
        for k in range(4):
            p = probabilities(run(backend, "grover", n=n, marked=marked, iterations=k))
            expected = math.sin((2 * k + 1) * theta) ** 2
            assert p[marked] == pytest.approx(expected, abs=1e-9), (marked, k)
            others = np.delete(p, marked)
            assert np.allclose(others, (1 - expected) / (2**n - 1), atol=1e-9)  # the rest share what is left


def test_grover_on_cirq_matches_the_closed_form() -> None:
    p = probabilities(run(CirqBackend(), "grover", n=3, marked=5, iterations=2))
    assert p[5] == pytest.approx(math.sin(5 * math.asin(1 / math.sqrt(8))) ** 2, abs=1e-7)  # 0.9453


# ---------------------------------------------------------------- QAOA


def expected_cut(rho: np.ndarray, edges: list[tuple[int, int]], n: int) -> float:
    """<C>, C = the number of cut edges, read from the state's basis probabilities."""
    p = probabilities(rho)
    bits = [[(k >> (n - 1 - q)) & 1 for q in range(n)] for k in range(2**n)]
    return float(sum(p[k] * sum(bits[k][u] != bits[k][v] for u, v in edges) for k in range(2**n)))


ANGLES = [(0.4, 0.3), (1.1, -0.7), (2.0, 0.9), (-0.6, 1.3)]


@pytest.mark.parametrize(("gamma", "beta"), ANGLES)
def test_qaoa_p1_on_an_edge(backend: Backend, gamma: float, beta: float) -> None:
    rho = run(backend, "qaoa", edges="0-1", gamma=gamma, beta=beta)
    # p = 1 on one edge (both degrees 1, no triangle): 1/2 + sin(4 beta) sin(gamma) / 2
    assert expected_cut(rho, [(0, 1)], 2) == pytest.approx(0.5 + 0.5 * math.sin(4 * beta) * math.sin(gamma), abs=1e-9)


@pytest.mark.parametrize(("gamma", "beta"), ANGLES)
def test_qaoa_p1_on_a_triangle(backend: Backend, gamma: float, beta: float) -> None:
    rho = run(backend, "qaoa", edges=[[0, 1], [1, 2], [0, 2]], gamma=gamma, beta=beta)
    # p = 1, each edge of degrees 2, 2 in one triangle (Wang, Hadfield et al. 2018):
    # 1/2 + sin(4b) sin(g) cos(g) / 2 - sin(2b)^2 (1 - cos(2g)) / 4, three times
    per_edge = (
        0.5
        + 0.5 * math.sin(4 * beta) * math.sin(gamma) * math.cos(gamma)
        - 0.25 * math.sin(2 * beta) ** 2 * (1 - math.cos(2 * gamma))
    )
    assert expected_cut(rho, [(0, 1), (1, 2), (0, 2)], 3) == pytest.approx(3 * per_edge, abs=1e-9)


# ---------------------------------------------------------------- VQE ansatz


def ry(t: float) -> np.ndarray:
    return np.array([[math.cos(t / 2), -math.sin(t / 2)], [math.sin(t / 2), math.cos(t / 2)]], dtype=complex)


def rz(t: float) -> np.ndarray:
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def cnot_matrix(n: int, control: int, target: int) -> np.ndarray:
    """CNOT on n qubits as the permutation of basis states it is (qubit 0 the most significant bit)."""
    size = 2**n
    m = np.zeros((size, size), dtype=complex)
    for k in range(size):
        flipped = k ^ (1 << (n - 1 - target)) if k >> (n - 1 - control) & 1 else k
        m[flipped, k] = 1
    return m


@pytest.mark.parametrize(("n", "layers", "seed"), [(1, 0, 3), (2, 1, 0), (3, 2, 0), (4, 3, 42)])
def test_vqe_ansatz_is_its_rotations_and_cnot_ladder(backend: Backend, n: int, layers: int, seed: int) -> None:
    angles = vqe_angles(n, layers, seed)
    assert angles.shape == (layers + 1, n, 2)
    assert np.array_equal(angles, np.random.default_rng(seed).uniform(-math.pi, math.pi, size=(layers + 1, n, 2)))
    psi = np.zeros(2**n, dtype=complex)
    psi[0] = 1
    ladder = reduce(np.matmul, [cnot_matrix(n, q, q + 1) for q in reversed(range(n - 1))], np.eye(2**n))
    for layer in range(layers + 1):
        rotations = reduce(np.kron, [rz(angles[layer, q, 1]) @ ry(angles[layer, q, 0]) for q in range(n)])
        psi = rotations @ psi
        if layer < layers:
            psi = ladder @ psi
    rho = run(backend, "vqe", n=n, layers=layers, seed=seed)
    assert np.allclose(rho, np.outer(psi, psi.conj()), atol=1e-9)


# ---------------------------------------------------------------- new gates, bad parameters, the command line


def test_new_gates_are_the_textbook_matrices() -> None:
    b = NumpyDensityMatrix()
    # CCX flips the target only on |11x>; CCZ puts -1 on |111> only (seen through H on the last qubit)
    for k in range(8):
        c = Circuit(3)
        for q in range(3):
            if k >> (2 - q) & 1:
                c.x(q)
        out = k ^ 1 if k >> 1 == 3 else k
        assert probabilities(b.run(c.ccx(0, 1, 2)))[out] == pytest.approx(1.0)
    rho = b.run(Circuit(3).x(0).x(1).h(2).ccz(0, 1, 2).h(2))
    assert probabilities(rho)[7] == pytest.approx(1.0)
    # CP(phi) on |+>|1>: the first qubit turns by phi about z
    r0 = reduced_state(b.run(Circuit(2).h(0).x(1).cp(0, 1, 0.7)), 0)
    assert 2 * r0[1, 0] == pytest.approx(np.exp(0.7j))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("grover", {"n": 4}, "n must be an integer from 2 to 3"),
        ("grover", {"marked": 4}, "marked must be an integer from 0 to 3"),
        ("qft", {"n": 2, "j": 4}, "j must be an integer from 0 to 3"),
        ("qft", {"n": 40}, "more than qex's limit"),
        ("qaoa", {"edges": "0-0"}, "two different qubits"),
        ("qaoa", {"edges": "0-1,1-0"}, "given twice"),
        ("qaoa", {"edges": "01"}, "write them as 0-1"),
        ("qaoa", {"edges": "a-b"}, "not a pair of qubit indices"),
        ("vqe", {"layers": -1}, "layers must be an integer"),
        ("teleport", {"theta": "nan"}, "theta must be a finite number"),
    ],
)
def test_bad_parameters_say_what_is_wrong(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(Exception, match=message) as info:
        get_experiment(name).circuit(params)
    assert isinstance(info.value, InvalidInputError | ValueError)


def test_the_command_line_runs_and_lists_them(tmp_path: Path) -> None:
    store = tmp_path / "q"
    listed = qex(store, "experiments")
    assert listed.returncode == 0, listed.stderr
    for name in ("teleport", "qft", "grover", "qaoa", "vqe"):
        assert name in listed.stdout
    out = qex(store, "run", "grover", "-p", "n=3", "-p", "marked=6", "-p", "iterations=2")
    assert out.returncode == 0, out.stderr
    shown = qex(store, "runs", "--format", "json")
    assert '"experiment_name": "grover"' in shown.stdout
    bad = qex(store, "run", "qaoa", "-p", "edges=0-0")
    said = bad.stderr + bad.stdout
    assert bad.returncode != 0 and "Error:" in said and "two different qubits" in said
