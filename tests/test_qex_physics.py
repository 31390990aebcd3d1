"""qex physics: known states, the three noise channels' exact rates, and numpy == Cirq."""

from __future__ import annotations

import math

import cirq
import numpy as np
import pytest
import sympy

from alexandria.errors import InvalidInputError
from alexandria.qex.backends import (
    Backend,
    CirqBackend,
    Noise,
    NumpyDensityMatrix,
    make_backend,
)
from alexandria.qex.circuit import GATES, Circuit, Gate
from alexandria.qex.errors import BackendError, QubitLimitError
from alexandria.qex.experiments import EXPERIMENTS, get_experiment
from alexandria.qex.states import (
    bloch_vector,
    purity,
    reduced_state,
    validate_density_matrix,
    von_neumann_entropy,
)

ATOL = 1e-9
BACKENDS = [NumpyDensityMatrix, CirqBackend]
THETAS = [0.0, 0.3, math.pi / 4, 1.0, math.pi / 2, 2.0, math.pi, 4.0, -0.7]


def run(backend: Backend, circuit: object) -> np.ndarray:
    """Every state a backend returns must be a valid density matrix of the right size."""
    rho = backend.run(circuit)
    assert rho.dtype == np.complex128
    validate_density_matrix(rho)
    return rho


def bloch(backend: Backend, circuit: Circuit, qubit: int = 0) -> np.ndarray:
    return bloch_vector(reduced_state(run(backend, circuit), qubit))


@pytest.fixture(params=BACKENDS, ids=["numpy", "cirq"])
def make(request: pytest.FixtureRequest) -> type:
    return request.param  # type: ignore[no-any-return]


# ---------------------------------------------------------------- noiseless states


@pytest.mark.parametrize("theta", THETAS)
def test_ry_bloch_vector(make: type, theta: float) -> None:
    r = bloch(make(), Circuit(1).ry(0, theta))
    np.testing.assert_allclose(r, [math.sin(theta), 0, math.cos(theta)], atol=ATOL)


@pytest.mark.parametrize(
    ("circuit", "expected"),
    [
        (Circuit(1), [0, 0, 1]),
        (Circuit(1).x(0), [0, 0, -1]),
        (Circuit(1).h(0), [1, 0, 0]),
        (Circuit(1).h(0).s(0), [0, 1, 0]),
        (Circuit(1).h(0).z(0), [-1, 0, 0]),
        (Circuit(1).y(0), [0, 0, -1]),
        (Circuit(1).h(0).t(0), [math.sqrt(0.5), math.sqrt(0.5), 0]),
        (Circuit(1).rx(0, 0.8), [0, -math.sin(0.8), math.cos(0.8)]),
        (Circuit(1).h(0).rz(0, 0.8), [math.cos(0.8), math.sin(0.8), 0]),
        (Circuit(1).i(0), [0, 0, 1]),
    ],
    ids=["zero", "x", "h", "sh", "zh", "y", "th", "rx", "rz", "i"],
)
def test_named_states(make: type, circuit: Circuit, expected: list[float]) -> None:
    np.testing.assert_allclose(bloch(make(), circuit), expected, atol=ATOL)


def test_qubit_order_is_big_endian(make: type) -> None:
    """Qubit 0 is the most significant bit; CNOT's first qubit is the control."""
    b = make()
    cases = [
        (Circuit(2).x(0), 0b10),
        (Circuit(2).x(1), 0b01),
        (Circuit(2).x(0).cnot(0, 1), 0b11),
        (Circuit(2).x(1).cnot(0, 1), 0b01),
        (Circuit(2).x(1).cnot(1, 0), 0b11),
        (Circuit(2).x(0).swap(0, 1), 0b01),
        (Circuit(3).x(2), 0b001),
    ]
    for c, index in cases:
        rho = run(b, c)
        assert abs(rho[index, index] - 1) < ATOL, c
    rho = run(b, Circuit(2).x(0).x(1).h(0).cz(0, 1).h(0))  # CZ on |11> flips the phase: H Z H = X
    assert abs(rho[0b01, 0b01] - 1) < ATOL


def test_bell_pair(make: type) -> None:
    rho = run(make(), get_experiment("bell").circuit())
    assert abs(purity(rho) - 1) < ATOL
    assert von_neumann_entropy(rho) < 1e-6
    for q in (0, 1):
        r1 = reduced_state(rho, q)
        np.testing.assert_allclose(r1, np.eye(2) / 2, atol=ATOL)
        np.testing.assert_allclose(bloch_vector(r1), [0, 0, 0], atol=ATOL)
        assert abs(purity(r1) - 0.5) < ATOL
        assert abs(von_neumann_entropy(r1) - 1) < 1e-9
    expected = np.zeros((4, 4))
    expected[np.ix_([0, 3], [0, 3])] = 0.5
    np.testing.assert_allclose(rho, expected, atol=ATOL)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_ghz_states(make: type, n: int) -> None:
    rho = run(make(), get_experiment("ghz").circuit({"n": n}))
    expected = np.zeros((2**n, 2**n))
    expected[np.ix_([0, -1], [0, -1])] = 0.5
    np.testing.assert_allclose(rho, expected, atol=ATOL)
    assert abs(purity(rho) - 1) < ATOL
    for q in range(n):
        r1 = reduced_state(rho, q)
        if n == 1:
            np.testing.assert_allclose(bloch_vector(r1), [1, 0, 0], atol=ATOL)
        else:  # every qubit of a GHZ state is maximally mixed, though the whole is pure
            np.testing.assert_allclose(r1, np.eye(2) / 2, atol=ATOL)
            assert abs(von_neumann_entropy(r1) - 1) < 1e-9


# ---------------------------------------------------------------- noise channels, exact rates


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_depolarizing_shrinks_by_one_minus_p_per_gate(make: type, p: float) -> None:
    b, theta = make(Noise(depolarizing=p)), 0.9
    ideal = np.array([math.sin(theta), 0, math.cos(theta)])
    after_ry = bloch(b, Circuit(1).ry(0, theta))
    np.testing.assert_allclose(after_ry, (1 - p) * ideal, atol=ATOL)  # the RY gate itself is noisy too
    for k in (1, 2, 5):
        c = Circuit(1).ry(0, theta)
        for _ in range(k):
            c.i(0)
        np.testing.assert_allclose(bloch(b, c), (1 - p) ** k * after_ry, atol=ATOL)


@pytest.mark.parametrize("gamma", [0.05, 0.3])
def test_amplitude_damping_decays_excited_population(make: type, gamma: float) -> None:
    b = make(Noise(amplitude_damping=gamma))
    excited_after_x = run(b, Circuit(1).x(0))[1, 1].real
    assert abs(excited_after_x - (1 - gamma)) < ATOL
    for k in (1, 3, 6):
        c = Circuit(1).x(0)
        for _ in range(k):
            c.i(0)
        rho = run(b, c)
        assert abs(rho[1, 1].real - (1 - gamma) ** k * excited_after_x) < ATOL
        assert abs(rho[0, 0].real - (1 - (1 - gamma) ** (k + 1))) < ATOL  # towards |0>
    # the full Bloch map, on a state with x and z: (x, y, z) -> (sqrt(1-g) x, sqrt(1-g) y, g + (1-g) z)
    before = bloch(b, Circuit(1).ry(0, 2.0))
    after = bloch(b, Circuit(1).ry(0, 2.0).i(0))
    s = math.sqrt(1 - gamma)
    np.testing.assert_allclose(after, [s * before[0], s * before[1], gamma + (1 - gamma) * before[2]], atol=ATOL)


@pytest.mark.parametrize("lam", [0.05, 0.4])
def test_phase_damping_shrinks_xy_keeps_z(make: type, lam: float) -> None:
    b = make(Noise(phase_damping=lam))
    start = bloch(b, Circuit(1).ry(0, 1.1).rz(0, 0.6))  # x, y and z all nonzero
    assert min(abs(start)) > 0.1
    for k in (1, 2, 7):
        c = Circuit(1).ry(0, 1.1).rz(0, 0.6)
        for _ in range(k):
            c.i(0)
        r = bloch(b, c)
        shrink = math.sqrt(1 - lam) ** k
        np.testing.assert_allclose(r, [shrink * start[0], shrink * start[1], start[2]], atol=ATOL)


def test_noise_acts_on_every_qubit_of_a_gate_and_only_those(make: type) -> None:
    p = 0.2
    b = make(Noise(depolarizing=p))
    rho = run(b, Circuit(3).h(0).h(1).h(2).cz(0, 1))
    # qubit 2 saw one noisy gate (the CZ on 0 and 1 must not touch it); after a SWAP, 0 and 1 saw two each
    np.testing.assert_allclose(bloch_vector(reduced_state(rho, 2)), [1 - p, 0, 0], atol=ATOL)
    rho = run(b, Circuit(3).h(0).h(1).h(2).swap(0, 1))
    for q in (0, 1):
        np.testing.assert_allclose(bloch_vector(reduced_state(rho, q)), [(1 - p) ** 2, 0, 0], atol=ATOL)


def test_noise_channels_compose_in_order(make: type) -> None:
    """depolarizing, then amplitude damping, then phase damping, on one |+> after H."""
    p, g, lam = 0.1, 0.2, 0.3
    r = bloch(make(Noise(p, g, lam)), Circuit(1).h(0))
    x = (1 - p) * math.sqrt(1 - g) * math.sqrt(1 - lam)
    np.testing.assert_allclose(r, [x, 0, g], atol=ATOL)


# ---------------------------------------------------------------- numpy == Cirq

NOISES = [
    Noise(),
    Noise(depolarizing=0.07),
    Noise(amplitude_damping=0.11),
    Noise(phase_damping=0.13),
    Noise(0.05, 0.06, 0.08),
]


def random_circuit(rng: np.random.Generator, n: int, length: int) -> Circuit:
    names = [g for g, (arity, _) in GATES.items() if arity <= n]
    c = Circuit(n)
    for _ in range(length):
        name = names[rng.integers(len(names))]
        arity, nparams = GATES[name]
        qubits = [int(q) for q in rng.choice(n, size=arity, replace=False)]
        params = [float(a) for a in rng.uniform(-2 * math.pi, 2 * math.pi, size=nparams)]
        c.add(name, *qubits, params=params)
    return c


@pytest.mark.parametrize("noise", NOISES, ids=lambda nz: nz.describe() or "noiseless")
def test_numpy_and_cirq_agree_on_random_circuits(noise: Noise) -> None:
    rng = np.random.default_rng(20240611)
    npb, cqb = NumpyDensityMatrix(noise), CirqBackend(noise)
    used: set[str] = set()
    for n in (1, 2, 3, 4):
        for _ in range(4):
            c = random_circuit(rng, n, length=15)
            used |= {g.name for g in c}
            diff = np.max(np.abs(run(npb, c) - run(cqb, c)))
            assert diff < 1e-7, (n, c.to_json(), diff)
    assert used == set(GATES)


def test_cirq_depolarize_convention_is_three_quarters_of_ours() -> None:
    p = 0.3
    q = cirq.LineQubit(0)
    native = cirq.Circuit(cirq.ry(0.7)(q), cirq.depolarize(3 * p / 4)(q))
    ours = Circuit(1).ry(0, 0.7)
    rho_cirq = run(CirqBackend(), native)
    rho_ours = run(NumpyDensityMatrix(Noise(depolarizing=p)), ours)
    assert np.max(np.abs(rho_cirq - rho_ours)) < 1e-10
    r = bloch_vector(rho_ours)
    np.testing.assert_allclose(r, (1 - p) * np.array([math.sin(0.7), 0, math.cos(0.7)]), atol=ATOL)


def native_and_ours() -> tuple[object, Circuit]:
    q = cirq.LineQubit.range(3)
    sub = cirq.FrozenCircuit(cirq.rx(0.3)(q[2]), cirq.CZ(q[1], q[2]))
    native = cirq.Circuit(
        cirq.H(q[0]),
        cirq.CNOT(q[0], q[1]),
        cirq.CircuitOperation(sub),
        cirq.S(q[1]),
        cirq.SWAP(q[0], q[2]),
        cirq.measure(*q, key="m"),
    )
    ours = Circuit(3).h(0).cnot(0, 1).rx(2, 0.3).cz(1, 2).s(1).swap(0, 2)
    return native, ours


@pytest.mark.parametrize("noise", NOISES, ids=lambda nz: nz.describe() or "noiseless")
def test_native_cirq_circuit_runs_unchanged(noise: Noise) -> None:
    native, ours = native_and_ours()
    rho_native = run(CirqBackend(noise), native)
    rho_ours = run(NumpyDensityMatrix(noise), ours)
    assert np.max(np.abs(rho_native - rho_ours)) < 1e-7


def test_native_cirq_qubits_are_sorted() -> None:
    a, b = cirq.GridQubit(0, 0), cirq.GridQubit(3, 1)
    rho = run(CirqBackend(), cirq.Circuit(cirq.X(b), cirq.I(a)))  # only the second (sorted) qubit flipped
    assert abs(rho[0b01, 0b01] - 1) < ATOL


def test_native_cirq_circuits_it_cannot_take() -> None:
    q = cirq.LineQubit.range(2)
    mid = cirq.Circuit(cirq.H(q[0]), cirq.measure(q[0], key="a"), cirq.CNOT(q[0], q[1]))
    with pytest.raises(BackendError, match="mid-circuit"):
        CirqBackend().run(mid)
    with pytest.raises(BackendError, match="symbols"):
        CirqBackend().run(cirq.Circuit(cirq.rx(sympy.Symbol("t"))(q[0])))
    with pytest.raises(BackendError):
        NumpyDensityMatrix().run(cirq.Circuit(cirq.H(q[0])))
    with pytest.raises(BackendError):
        CirqBackend().run("H 0")


# ---------------------------------------------------------------- limits and bad inputs


def test_qubit_limit(make: type) -> None:
    with pytest.raises(QubitLimitError) as err:
        make().run(Circuit(11).h(0))
    assert "11" in str(err.value) and "10" in str(err.value) and "max_qubits" in str(err.value)
    with pytest.raises(QubitLimitError):
        make(max_qubits=14).run(Circuit(40))  # refused before allocating 2**80 entries
    with pytest.raises(InvalidInputError, match="14"):
        make(max_qubits=15)


def test_cirq_native_qubit_limit() -> None:
    qs = cirq.LineQubit.range(11)
    with pytest.raises(QubitLimitError, match="11"):
        CirqBackend().run(cirq.Circuit(cirq.H.on_each(*qs)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda c: c.add("FOO", 0), "unknown gate 'FOO'"),
        (lambda c: c.add("CNOT", 0), "CNOT acts on 2 qubits, got 1"),
        (lambda c: c.add("H", 0, 1), "H acts on 1 qubit, got 2"),
        (lambda c: c.h(3), "qubit 3 out of range for a 3-qubit circuit"),
        (lambda c: c.h(-1), "qubit -1 out of range"),
        (lambda c: c.cnot(1, 1), "CNOT needs distinct qubits, got \\[1, 1\\]"),
        (lambda c: c.swap(2, 2), "SWAP needs distinct qubits"),
        (lambda c: c.rx(0, float("nan")), "RX: angle must be finite"),
        (lambda c: c.ry(0, float("inf")), "RY: angle must be finite"),
        (lambda c: c.rz(0, "0.5"), "RZ: angle must be a real number"),  # type: ignore[arg-type]
        (lambda c: c.add("RX", 0), "RX takes 1 parameter, got 0"),
        (lambda c: c.add("X", 0, params=(1.0,)), "X takes 0 parameters, got 1"),
        (lambda c: c.h(1.5), "qubit must be an integer index"),  # type: ignore[arg-type]
        (lambda c: c.h(True), "qubit must be an integer index"),
    ],
)
def test_bad_gates(build: object, message: str) -> None:
    c = Circuit(3)
    with pytest.raises(InvalidInputError, match=message):
        build(c)  # type: ignore[operator]
    assert len(c) == 0


def test_bad_circuits() -> None:
    for n in (0, -1, 1.0, True, "2"):
        with pytest.raises(InvalidInputError, match="num_qubits"):
            Circuit(n)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="out of range"):
        Circuit(2, [Gate("CNOT", (0, 2))])
    with pytest.raises(InvalidInputError, match="gate #1"):
        Circuit.from_json(2, [["H", [0], []], "CNOT 0 1"])
    with pytest.raises(InvalidInputError, match="list of gates"):
        Circuit.from_json(2, {"H": 0})


def test_circuit_json_round_trip_and_equality() -> None:
    c = Circuit(2).ry(0, 0.5).cnot(0, 1)
    assert c.to_json() == [["RY", [0], [0.5]], ["CNOT", [0, 1], []]]
    back = Circuit.from_json(2, c.to_json())
    assert back == c and len(back) == 2
    assert back.gates == (Gate("RY", (0,), (0.5,)), Gate("CNOT", (0, 1)))
    assert Circuit(2, list(c.gates)) == c
    assert Circuit(3).ry(0, 0.5).cnot(0, 1) != c
    assert Circuit(2).ry(0, 0.5) != c
    assert Circuit(1).add("ry", 0, params=[1]).gates[0] == Gate("RY", (0,), (1.0,))  # names case-insensitive


def test_noise_validation_parse_describe() -> None:
    nz = Noise(depolarizing=0.01, amplitude_damping=0.02, phase_damping=0.03)
    assert nz.describe() == "depol(0.01)+ad(0.02)+pd(0.03)"
    assert Noise.parse("depol=0.01,ad=0.02,pd=0.03") == nz
    assert Noise.parse("depolarizing=0.01, amplitude_damping=0.02, phase_damping=0.03") == nz
    assert Noise.parse(nz.describe()) == nz
    assert Noise(phase_damping=0.5).describe() == "pd(0.5)"
    assert Noise().describe() == "" and Noise().is_noiseless and not nz.is_noiseless
    assert Noise.parse("") == Noise() == Noise.parse("none")
    for nz2 in (Noise(0.123456789), Noise(0, 1e-5, 1), Noise(0.25, 0, 0.75)):
        assert Noise.parse(nz2.describe()) == nz2
    for bad in ("depol=2", "ad=-0.1", "pd=nan", "foo=0.1", "depol", "depol=x", "depol=0.1,depol=0.2"):
        with pytest.raises(InvalidInputError):
            Noise.parse(bad)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        Noise(depolarizing=1.5)


def test_backend_names_and_versions() -> None:
    assert NumpyDensityMatrix().name == "numpy_dm"
    assert NumpyDensityMatrix(Noise(depolarizing=0.01)).name == "numpy_dm+depol(0.01)"
    assert CirqBackend().name == "cirq_dm"
    assert CirqBackend(Noise(0.01, 0.02, 0.03)).name == "cirq_dm+depol(0.01)+ad(0.02)+pd(0.03)"
    assert NumpyDensityMatrix().version == f"numpy {np.__version__}"
    assert CirqBackend().version == f"cirq {cirq.__version__}"
    assert NumpyDensityMatrix().max_qubits == CirqBackend().max_qubits == 10
    b = make_backend("cirq_dm", Noise(phase_damping=0.1))
    assert isinstance(b, CirqBackend) and isinstance(b, Backend) and b.name == "cirq_dm+pd(0.1)"
    assert isinstance(make_backend("numpy_dm", Noise()), NumpyDensityMatrix)
    with pytest.raises(InvalidInputError, match="numpy_dm, cirq_dm"):
        make_backend("qiskit", Noise())


def test_experiments_registry() -> None:
    assert set(EXPERIMENTS) == {"x", "h", "ry", "bell", "ghz", "teleport", "qft", "grover", "qaoa", "vqe"}
    b = NumpyDensityMatrix()
    np.testing.assert_allclose(bloch(b, get_experiment("x").circuit()), [0, 0, -1], atol=ATOL)
    np.testing.assert_allclose(bloch(b, get_experiment("h").circuit({"n": 2}), 1), [1, 0, 0], atol=ATOL)
    r = bloch(b, get_experiment("ry").circuit())
    np.testing.assert_allclose(r, [math.sin(0.5), 0, math.cos(0.5)], atol=ATOL)
    c = get_experiment("ry").circuit({"theta": "1.5", "n": "3"})  # as the CLI hands them over
    assert c == Circuit(3).ry(0, 1.5).ry(1, 1.5).ry(2, 1.5)
    assert get_experiment("ghz").circuit() == Circuit(3).h(0).cnot(0, 1).cnot(1, 2)
    assert get_experiment("ghz").build({"n": 2}) == Circuit(2).h(0).cnot(0, 1)
    for name, params in [("ghz", {"n": 0}), ("ghz", {"n": 2.5}), ("h", {"n": True}), ("ry", {"theta": "pi"})]:
        with pytest.raises(InvalidInputError):
            get_experiment(name).circuit(params)
    with pytest.raises(InvalidInputError, match="finite"):
        get_experiment("ry").circuit({"theta": float("inf")})
    with pytest.raises(InvalidInputError, match="unknown: m"):
        get_experiment("ghz").circuit({"m": 3})
    with pytest.raises(InvalidInputError, match="x, h, ry, bell, ghz, teleport, qft, grover, qaoa, vqe"):
        get_experiment("teleportation")


def test_ten_qubit_noisy_ghz_runs(make: type) -> None:
    rho = run(make(Noise(0.01, 0.01, 0.01)), get_experiment("ghz").circuit({"n": 10}))
    assert rho.shape == (1024, 1024)
    assert 0.3 < rho[0, -1].real < 0.5  # coherence survives, reduced by the noise
