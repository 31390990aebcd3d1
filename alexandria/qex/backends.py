"""Simulators that turn a Circuit into its final density matrix, with optional per-gate noise.

Two backends that must agree (the tests hold them to 1e-7): `NumpyDensityMatrix`, always
available, and `CirqBackend`, which needs `pip install 'alexandria[qex]'` and also runs a
`cirq.Circuit` as the user already has it. Both start from |0...0> and return a complex128
2**n x 2**n matrix, qubit 0 the most significant bit (see `states`).

Noise model, applied per gate: after every gate (identity gates included: an `I` is how to model
a qubit idling), each channel acts on each qubit the gate touched, in the order depolarizing,
amplitude damping, phase damping. With `Noise(idle_noise=True)` (`--idle-noise`) the channels act
instead after every moment on every qubit of the state, the idle ones too, as upstream qex's
`NoisyCirqBackend` (`circuit.with_noise(cirq.depolarize(p))`) does: a qex Circuit's moments are
`Circuit.moments()`, a cirq circuit's its own. On one qubit with Bloch vector (x, y, z):

* depolarizing(p), ours (`convention="ours"`, the default): rho -> (1 - p) rho + p I/2, so
  (x, y, z) -> (1 - p)(x, y, z).
  Cirq's (`convention="cirq"`, `--noise-convention cirq`): `cirq.depolarize(p)`,
  rho -> (1 - p) rho + p/3 (X rho X + Y rho Y + Z rho Z) = (1 - 4p/3) rho + (4p/3) I/2, since
  rho + X rho X + Y rho Y + Z rho Z = 2 I for a one-qubit rho of trace 1; it shrinks the vector by
  (1 - 4p/3). So Cirq's p is ours with 4p/3, and ours with p is Cirq's with 3p/4: `--noise depol=0.05
  --noise-convention cirq` is what `depol=0.05` meant to an upstream qex user. Both backends take
  either convention exactly (no conversion round trip).
* amplitude damping(gamma): Kraus K0 = [[1, 0], [0, sqrt(1 - gamma)]], K1 = [[0, sqrt(gamma)], [0, 0]]
  (Cirq's `cirq.amplitude_damp(gamma)`): the excited population decays by (1 - gamma) towards |0>,
  (x, y, z) -> (sqrt(1 - gamma) x, sqrt(1 - gamma) y, gamma + (1 - gamma) z).
* phase damping(lam): Kraus K0 = [[1, 0], [0, sqrt(1 - lam)]], K1 = [[0, 0], [0, sqrt(lam)]]
  (Cirq's `cirq.phase_damp(lam)`): (x, y, z) -> (sqrt(1 - lam) x, sqrt(1 - lam) y, z).
  (Cirq's `cirq.phase_flip(p)` is the same channel with lam = 1 - (1 - 2p)**2.)

Size: an n-qubit density matrix holds 4**n complex128 entries, 16 MiB at 10 qubits and 4x
more per extra qubit, so backends refuse more than `max_qubits` (default 10, at most
`circuit.HARD_MAX_QUBITS`, 14: 4 GiB) before allocating anything, whatever the count (a cirq
circuit of 1000 qubits is refused as one of 11).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidInputError
from .circuit import HARD_MAX_QUBITS, Circuit, Gate, check_qubit_count, gate_unitary
from .errors import BackendError, QubitLimitError

DEFAULT_MAX_QUBITS = 10

_NOISE_FIELDS = ("depolarizing", "amplitude_damping", "phase_damping")
#: How a depolarizing strength is read: ours, rho -> (1 - p) rho + p I/2, or Cirq's `cirq.depolarize(p)`.
CONVENTIONS = ("ours", "cirq")
_SHORT = {"depolarizing": "depol", "amplitude_damping": "ad", "phase_damping": "pd"}
_ALIASES = {
    "depol": "depolarizing",
    "depolarizing": "depolarizing",
    "depol_cirq": "depolarizing_cirq",
    "depolarizing_cirq": "depolarizing_cirq",
    "ad": "amplitude_damping",
    "amplitude_damping": "amplitude_damping",
    "pd": "phase_damping",
    "phase_damping": "phase_damping",
}


@dataclass(frozen=True)
class Noise:
    """Noise strengths, each in [0, 1]; `convention` says how `depolarizing` is read, `idle_noise` whether the
    channels follow every gate (on its qubits) or every moment (on every qubit): see the module docstring."""

    depolarizing: float = 0.0
    amplitude_damping: float = 0.0
    phase_damping: float = 0.0
    convention: str = "ours"
    idle_noise: bool = False

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise InvalidInputError(
                f"noise convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}"
            )
        if not isinstance(self.idle_noise, bool):
            raise InvalidInputError(f"idle_noise must be True or False, got {self.idle_noise!r}")
        for field in _NOISE_FIELDS:
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise InvalidInputError(f"noise {field} must be a number in [0, 1], got {v!r}")
            f = float(v)
            if not (math.isfinite(f) and 0.0 <= f <= 1.0):
                raise InvalidInputError(f"noise {field} must be in [0, 1], got {f!r}")
            object.__setattr__(self, field, f)

    @property
    def is_noiseless(self) -> bool:
        return all(getattr(self, f) == 0.0 for f in _NOISE_FIELDS)

    @property
    def depolarizing_ours(self) -> float:
        """The depolarizing strength in our convention: p, or 4p/3 for Cirq's p (see the module docstring)."""
        return self.depolarizing if self.convention == "ours" else 4 * self.depolarizing / 3

    def describe(self) -> str:
        """'' when noiseless, else e.g. 'depol(0.01)+ad(0.02)+pd(0.03)' (nonzero ones only; Cirq's depolarizing
        as 'depol_cirq(0.05)'; '+idle' when it acts every moment on every qubit): names backends."""
        if self.is_noiseless:
            return ""
        short = {**_SHORT, "depolarizing": "depol_cirq" if self.convention == "cirq" else "depol"}
        items = [f"{short[f]}({getattr(self, f)!r})" for f in _NOISE_FIELDS if getattr(self, f)]
        return "+".join(items + (["idle"] if self.idle_noise else []))

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON object (a run's recipe and metadata); `Noise(**doc)` reads it back."""
        return {f: getattr(self, f) for f in (*_NOISE_FIELDS, "convention", "idle_noise")}

    @classmethod
    def parse(cls, text: str, *, convention: str = "ours", idle_noise: bool = False) -> Noise:
        """'depol=0.01,ad=0.02,pd=0.03' (long names too; also what `describe` prints, 'depol_cirq' and 'idle'
        included), `depol` read in `convention`; a bare number is a depolarizing strength, as upstream qex's
        `--noise 0.05`; '' or 'none' is no noise."""
        if not isinstance(text, str):
            raise InvalidInputError(f"noise must be a string like 'depol=0.01,ad=0.02', got {text!r}")
        stripped = text.strip()
        if stripped.lower() in ("", "none", "0"):
            return cls(convention=convention, idle_noise=idle_noise)
        values: dict[str, float] = {}
        try:
            bare = float(stripped) if re.fullmatch(r"[0-9.eE+-]+", stripped) else None
        except ValueError:
            bare = None  # not a number after all: read as items below, which says what is wrong
        if bare is not None:
            return cls(depolarizing=bare, convention=convention, idle_noise=idle_noise)
        for item in re.split(r"[,+]", stripped):
            item = item.strip()
            if item.lower() == "idle":
                idle_noise = True
                continue
            m = re.fullmatch(r"([A-Za-z_]+)\s*(?:=\s*(\S+)|\(\s*([^()\s]+)\s*\))", item)
            if not m:
                raise InvalidInputError(f"cannot read noise item {item!r}: expected name=value, as in 'depol=0.01'")
            key = m.group(1).lower()
            if key not in _ALIASES:
                raise InvalidInputError(f"unknown noise {m.group(1)!r}; known: {', '.join(_ALIASES)}")
            field = _ALIASES[key]
            if field == "depolarizing_cirq":
                field, convention = "depolarizing", "cirq"
            if field in values:
                raise InvalidInputError(f"noise {field} given twice in {text!r}")
            raw = m.group(2) if m.group(2) is not None else m.group(3)
            try:
                values[field] = float(raw)
            except ValueError:
                raise InvalidInputError(f"noise {field}: {raw!r} is not a number") from None
        return cls(**values, convention=convention, idle_noise=idle_noise)

    def kraus(self) -> list[np.ndarray]:
        """Kraus operators of the one-qubit channel applied after each gate (all three, composed)."""
        p, g, lam = self.depolarizing, self.amplitude_damping, self.phase_damping
        paulis = [np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.diag([1.0, -1.0])]
        # ours: 1 - 3p/4 and p/4 each; Cirq's p is ours with 4p/3: 1 - p and p/3 each, written directly
        weights = [1 - 3 * p / 4, p / 4, p / 4, p / 4] if self.convention == "ours" else [1 - p, p / 3, p / 3, p / 3]
        dep = [math.sqrt(w) * P for w, P in zip(weights, paulis, strict=True) if w > 0]
        ad = [np.array([[1, 0], [0, math.sqrt(1 - g)]]), np.array([[0, math.sqrt(g)], [0, 0]])]
        pd = [np.array([[1, 0], [0, math.sqrt(1 - lam)]]), np.array([[0, 0], [0, math.sqrt(lam)]])]
        return [(c @ b @ a).astype(np.complex128) for a in dep for b in ad for c in pd]


@runtime_checkable
class Backend(Protocol):
    """What qex needs of a simulator: names to record with a run, and the final density matrix."""

    name: str
    version: str
    max_qubits: int

    def run(self, circuit: Any) -> np.ndarray: ...


def _check_max_qubits(max_qubits: Any) -> int:
    if isinstance(max_qubits, bool) or not isinstance(max_qubits, int) or not 1 <= max_qubits <= HARD_MAX_QUBITS:
        raise InvalidInputError(
            f"max_qubits must be an integer from 1 to {HARD_MAX_QUBITS} "
            f"(a {HARD_MAX_QUBITS}-qubit density matrix is 4 GiB), got {max_qubits!r}"
        )
    return max_qubits


def _check_size(n: int, limit: int, backend: str) -> None:
    try:
        check_qubit_count(n, limit, f"the {backend} backend's")
    except QubitLimitError as exc:
        raise QubitLimitError(f"{exc}; raise it with max_qubits=, up to {HARD_MAX_QUBITS}") from None


def _superop(kraus: list[np.ndarray]) -> np.ndarray:
    """sum_K K (x) conj(K): the channel acting on a one-qubit rho flattened as (row, column)."""
    out = np.zeros((4, 4), dtype=np.complex128)
    for k in kraus:
        out += np.kron(k, k.conj())
    return out


class NumpyDensityMatrix:
    """Density-matrix simulation in numpy: each gate (and its noise) is one tensor contraction.

    The state stays a (2,)*2n tensor, rows then columns; a k-qubit gate with its noise is a
    4**k x 4**k superoperator contracted over that gate's 2k axes, never a 2**n x 2**n matrix.
    """

    def __init__(self, noise: Noise = Noise(), max_qubits: int = DEFAULT_MAX_QUBITS) -> None:  # noqa: B008
        if not isinstance(noise, Noise):
            raise InvalidInputError(f"noise must be a Noise, got {noise!r}")
        self.noise = noise
        self.max_qubits = _check_max_qubits(max_qubits)
        self.name = "numpy_dm" + ("+" + noise.describe() if not noise.is_noiseless else "")
        self.version = f"numpy {np.__version__}"
        # one-qubit noise superoperator as a (r, c, r', c') tensor; a k-qubit gate's noise is its k-fold
        # product, reordered to (r1..rk, c1..ck, r1'..rk', c1'..ck') to match the gate superoperator
        self._noise_tensor1: np.ndarray | None = None
        self._noise: dict[int, np.ndarray] = {}
        if not noise.is_noiseless:
            self._noise_tensor1 = _superop(noise.kraus()).reshape(2, 2, 2, 2)

    def _noise_superop(self, k: int) -> np.ndarray | None:
        """The noise after a k-qubit gate: the one-qubit channel on each of its qubits (made once per k)."""
        n1 = self._noise_tensor1
        if n1 is None:
            return None
        if k not in self._noise:
            letters = "abcdefghijklmnopqrstuvwxyz"
            r, c, r2, c2 = (letters[i * k : (i + 1) * k] for i in range(4))
            spec = ",".join(r[i] + c[i] + r2[i] + c2[i] for i in range(k)) + "->" + r + c + r2 + c2
            self._noise[k] = np.einsum(spec, *([n1] * k)).reshape(4**k, 4**k)
        return self._noise[k]

    def _gate_superop(self, gate: Gate) -> np.ndarray:
        u = gate_unitary(gate)
        s = np.kron(u, u.conj())
        noise = self._noise_superop(len(gate.qubits))
        return s if noise is None else noise @ s

    def run(self, circuit: Any) -> np.ndarray:
        if not isinstance(circuit, Circuit):
            raise BackendError(
                f"the numpy backend runs an alexandria.qex Circuit, not {type(circuit).__name__}"
                " (use CirqBackend for a cirq.Circuit)"
            )
        n = circuit.num_qubits
        _check_size(n, self.max_qubits, "numpy")
        rho = np.zeros((2,) * (2 * n), dtype=np.complex128)
        rho[(0,) * (2 * n)] = 1.0
        if not (self.noise.idle_noise and self._noise_tensor1 is not None):
            for gate in circuit:
                rho = self._apply(rho, n, gate.qubits, self._gate_superop(gate))
        else:  # every moment: its gates (each with its noise), then the noise on every qubit no gate touched
            idle = self._noise_superop(1)
            for moment in circuit.moments():
                busy: set[int] = set()
                for gate in moment:
                    rho = self._apply(rho, n, gate.qubits, self._gate_superop(gate))
                    busy.update(gate.qubits)
                for q in range(n):
                    if q not in busy:
                        rho = self._apply(rho, n, (q,), idle)
        return np.ascontiguousarray(rho).reshape(2**n, 2**n)

    @staticmethod
    def _apply(rho: np.ndarray, n: int, qubits: tuple[int, ...], superop: Any) -> np.ndarray:
        """The 4**k x 4**k superoperator on `qubits` of the (2,)*2n state tensor, contracted over their axes."""
        k = len(qubits)
        axes = list(qubits) + [n + q for q in qubits]
        op = superop.reshape((2,) * (4 * k))
        rho = np.tensordot(op, rho, axes=(list(range(2 * k, 4 * k)), axes))
        return np.moveaxis(rho, list(range(2 * k)), axes)


def _import_cirq() -> Any:
    try:
        import cirq
    except ImportError:
        raise BackendError("the Cirq backend needs cirq: pip install 'alexandria[qex]'") from None
    return cirq


class CirqBackend:
    """Cirq's DensityMatrixSimulator (complex128), with the same noise model as the numpy backend."""

    def __init__(self, noise: Noise = Noise(), max_qubits: int = DEFAULT_MAX_QUBITS) -> None:  # noqa: B008
        if not isinstance(noise, Noise):
            raise InvalidInputError(f"noise must be a Noise, got {noise!r}")
        self._cirq = _import_cirq()
        self.noise = noise
        self.max_qubits = _check_max_qubits(max_qubits)
        self.name = "cirq_dm" + ("+" + noise.describe() if not noise.is_noiseless else "")
        self.version = f"cirq {self._cirq.__version__}"

    def _channels(self) -> list[Any]:
        cirq, nz = self._cirq, self.noise
        channels = []
        if nz.depolarizing:
            # ours with p is Cirq's with 3p/4; Cirq's convention is taken as it is
            channels.append(cirq.depolarize(3 * nz.depolarizing / 4 if nz.convention == "ours" else nz.depolarizing))
        if nz.amplitude_damping:
            channels.append(cirq.amplitude_damp(nz.amplitude_damping))
        if nz.phase_damping:
            channels.append(cirq.phase_damp(nz.phase_damping))
        return channels

    def _noise_ops(self, qubits: Any) -> list[Any]:
        return [ch.on(q) for ch in self._channels() for q in qubits]

    def _with_idle_noise(self, moments: Any, qubits: Sequence[Any]) -> Any:
        """Each moment, then one moment per channel on every qubit of the state (`Noise.idle_noise`)."""
        cirq = self._cirq
        out = []
        for moment in moments:
            out.append(cirq.Moment(moment))
            out.extend(cirq.Moment(ch.on(q) for q in qubits) for ch in self._channels())
        return cirq.Circuit(out)

    def qubits_of(self, circuit: Circuit) -> list[Any]:
        """The cirq qubits a qex Circuit runs on, in its order: those it was given if they are cirq qubits,
        else `cirq.NamedQubit`s of its names, else `cirq.LineQubit.range(n)`."""
        cirq = self._cirq
        if circuit.qubits is not None and all(isinstance(q, cirq.Qid) for q in circuit.qubits):
            return list(circuit.qubits)
        if circuit.names is not None:
            return [cirq.NamedQubit(name) for name in circuit.names]
        return list(cirq.LineQubit.range(circuit.num_qubits))

    def to_cirq(self, circuit: Circuit) -> tuple[Any, list[Any]]:
        """(cirq.Circuit with the noise inserted, its qubits in order, `qubits_of`)."""
        cirq = self._cirq
        qs = self.qubits_of(circuit)
        fixed = {"I": cirq.I, "X": cirq.X, "Y": cirq.Y, "Z": cirq.Z, "H": cirq.H, "S": cirq.S, "T": cirq.T}
        fixed.update({"CNOT": cirq.CNOT, "CZ": cirq.CZ, "SWAP": cirq.SWAP, "CCZ": cirq.CCZ, "CCX": cirq.CCX})
        rotations = {"RX": cirq.rx, "RY": cirq.ry, "RZ": cirq.rz, "CP": cirq.cphase}

        def op(g: Gate) -> Any:
            cirq_gate = fixed[g.name] if g.name in fixed else rotations[g.name](*g.params)
            return cirq_gate.on(*(qs[q] for q in g.qubits))

        if self.noise.idle_noise and not self.noise.is_noiseless:
            return self._with_idle_noise([[op(g) for g in m] for m in circuit.moments()], qs), qs
        ops: list[Any] = []
        for g in circuit:
            ops.append(op(g))
            ops.extend(self._noise_ops([qs[q] for q in g.qubits]))
        return cirq.Circuit(ops, strategy=cirq.InsertStrategy.EARLIEST), qs

    def native_qubits(self, circuit: Any, qubits: Sequence[Any] | None = None) -> list[Any]:
        """The order a cirq circuit's state is in: `qubits` as given (each a cirq qubit, none twice, every qubit
        the circuit acts on among them; the others are idle, in |0>), else the circuit's qubits sorted."""
        cirq = self._cirq
        if qubits is None:
            return sorted(circuit.all_qubits())
        given = list(qubits)
        wrong = [q for q in given if not isinstance(q, cirq.Qid)]
        if wrong:
            raise InvalidInputError(f"a cirq circuit's qubits must be cirq qubits, got {wrong[0]!r}")
        if len(set(given)) != len(given):
            raise InvalidInputError(f"qubits must be distinct, got {given!r}")
        missing = sorted(circuit.all_qubits() - set(given))
        if missing:
            raise InvalidInputError(
                f"the circuit acts on {', '.join(map(str, missing))}, not among the qubits given "
                f"({', '.join(map(str, given))})"
            )
        return given

    def _prepare_native(self, circuit: Any, qubits: list[Any]) -> Any:
        """A user's cirq circuit: terminal measurements dropped; if noise is set, subcircuits are unrolled and
        the channels follow every operation (the user's own channels included) on that operation's qubits,
        or, with idle noise, every moment on every qubit of `qubits`."""
        cirq = self._cirq
        if cirq.is_parameterized(circuit):
            raise BackendError("the cirq circuit has unresolved symbols: resolve them first (cirq.resolve_parameters)")
        if circuit.has_measurements():
            if not circuit.are_all_measurements_terminal():
                raise BackendError("the cirq circuit measures mid-circuit; the density-matrix backend cannot take it")
            # the state before the final measurements is the one their statistics come from; moments that held
            # only measurements go with them (no noise after them), the others stay as they were
            kept = [cirq.Moment(op for op in m if not cirq.is_measurement(op)) for m in circuit]
            circuit = cirq.Circuit(m for m, old in zip(kept, circuit, strict=True) if len(m) or not len(old))
        if self.noise.is_noiseless:
            return circuit
        flat = cirq.unroll_circuit_op(circuit, deep=True, tags_to_check=None)
        if self.noise.idle_noise:
            return self._with_idle_noise(flat, qubits)
        ops: list[Any] = []
        for op in flat.all_operations():
            ops.append(op)
            ops.extend(self._noise_ops(op.qubits))
        return cirq.Circuit(ops, strategy=cirq.InsertStrategy.EARLIEST)

    def run(self, circuit: Any, qubits: Sequence[Any] | None = None) -> np.ndarray:
        """Our Circuit, or a cirq.Circuit run as is on `qubits` in that order (`native_qubits`: the given qubits,
        idle ones included, else the circuit's sorted); terminal measurements are ignored."""
        cirq = self._cirq
        if isinstance(circuit, Circuit):
            _check_size(circuit.num_qubits, self.max_qubits, "cirq")
            program, order = self.to_cirq(circuit)
        elif isinstance(circuit, cirq.AbstractCircuit):
            if qubits is None and not circuit.all_qubits():
                raise InvalidInputError("the cirq circuit acts on no qubits")
            n = len(circuit.all_qubits()) if qubits is None else len(list(qubits))
            _check_size(n, self.max_qubits, "cirq")
            order = self.native_qubits(circuit, qubits)
            program = self._prepare_native(circuit, order)
        else:
            raise BackendError(f"the Cirq backend runs a Circuit or a cirq.Circuit, not {type(circuit).__name__}")
        sim = cirq.DensityMatrixSimulator(dtype=np.complex128)
        result = sim.simulate(program, qubit_order=order)
        return np.array(result.final_density_matrix, dtype=np.complex128)


BACKENDS = ("numpy_dm", "cirq_dm")


def make_backend(name: str, noise: Noise = Noise()) -> Backend:  # noqa: B008
    """The backend the CLI names: 'numpy_dm' or 'cirq_dm'."""
    if name == "numpy_dm":
        return NumpyDensityMatrix(noise)
    if name == "cirq_dm":
        return CirqBackend(noise)
    raise InvalidInputError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
