"""A tiny circuit model: a qubit count and a list of named gates, checked when added.

Small on purpose: it is what qex records with a run (`to_json`), and what both
backends take, so a circuit logged today can be rebuilt and rerun later.

Gate set and matrices (Cirq's conventions, so a circuit means the same on both backends):

* I, X, Y, Z: the Paulis; H: Hadamard; S = diag(1, i); T = diag(1, e^{i pi/4}).
* RX(theta) = exp(-i theta X / 2), RY(theta) = exp(-i theta Y / 2), RZ(theta) = exp(-i theta Z / 2),
  as `cirq.rx`, `cirq.ry`, `cirq.rz` (so RY(theta)|0> = cos(theta/2)|0> + sin(theta/2)|1>,
  Bloch vector (sin theta, 0, cos theta)). Angles are in radians.
* CNOT(control, target), CZ(a, b), SWAP(a, b), CP(control, target; phi) = diag(1, 1, 1, e^{i phi})
  (`cirq.cphase(phi)`: the QFT's controlled phase), CCZ(a, b, c) = diag(1, ..., 1, -1) (`cirq.CCZ`) and
  CCX(control1, control2, target), the Toffoli (`cirq.CCX`). A multi-qubit gate's matrix is written in the
  big-endian order of its own qubits: the first qubit listed is the most significant bit.

Qubits: `Circuit(3)` has qubits 0, 1, 2; `Circuit(["a", "b"])` or `Circuit(cirq.GridQubit.rect(1, 2))` has one
qubit per item, named `str(item)` (what upstream qex stores), and its gates name them by index or by the
item itself (`c.h("a")`, `c.cnot(qubits[0], qubits[1])`). The state's order is the list's: the first item is
qubit 0, the most significant bit. Qubits no gate touches are still in the state, in |0>.

Moments (`moments`): gates are layered as `cirq.Circuit(ops)` places them (InsertStrategy.EARLIEST): each
in the first layer after the last one holding any of its qubits. Only idle noise (`backends`) reads them.

Size: an n-qubit density matrix holds 4**n complex128 entries (16 MiB at 10 qubits, 4 GiB at 14), so a
circuit has at most `HARD_MAX_QUBITS` qubits, the most any qex backend simulates: a larger count is a
`QubitLimitError` when the circuit is made, before any gate list or state is built for it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .errors import QubitLimitError

#: The most qubits any qex backend simulates (a 14-qubit density matrix is 4 GiB); backends may take fewer.
HARD_MAX_QUBITS = 14

# name -> (number of qubits, number of params)
GATES: dict[str, tuple[int, int]] = {
    "I": (1, 0),
    "X": (1, 0),
    "Y": (1, 0),
    "Z": (1, 0),
    "H": (1, 0),
    "S": (1, 0),
    "T": (1, 0),
    "RX": (1, 1),
    "RY": (1, 1),
    "RZ": (1, 1),
    "CNOT": (2, 0),
    "CZ": (2, 0),
    "SWAP": (2, 0),
    "CP": (2, 1),
    "CCZ": (3, 0),
    "CCX": (3, 0),
}

_S2 = 1 / math.sqrt(2)
_FIXED: dict[str, np.ndarray] = {
    "I": np.eye(2, dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.array([[1, 0], [0, -1]], dtype=np.complex128),
    "H": np.array([[_S2, _S2], [_S2, -_S2]], dtype=np.complex128),
    "S": np.array([[1, 0], [0, 1j]], dtype=np.complex128),
    "T": np.array([[1, 0], [0, np.exp(1j * math.pi / 4)]], dtype=np.complex128),
    "CNOT": np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.complex128),
    "CZ": np.diag([1, 1, 1, -1]).astype(np.complex128),
    "SWAP": np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.complex128),
    "CCZ": np.diag([1, 1, 1, 1, 1, 1, 1, -1]).astype(np.complex128),
    "CCX": np.eye(8, dtype=np.complex128)[[0, 1, 2, 3, 4, 5, 7, 6]],
}


@dataclass(frozen=True)
class Gate:
    """One gate: an upper-case name from GATES, the qubits it acts on (in order), its angles."""

    name: str
    qubits: tuple[int, ...]
    params: tuple[float, ...] = ()


def state_size(num_qubits: int) -> str:
    """How much memory an n-qubit density matrix (4**n complex128 entries) takes, as text; exact for any n."""
    size = 16 << (2 * num_qubits)
    if size >= 2**70:
        return f"2**{2 * num_qubits + 4} bytes"
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def check_qubit_count(num_qubits: int, limit: int, who: str) -> None:
    """QubitLimitError naming the limit and the count asked for, before anything of that size is made."""
    if num_qubits > limit:
        raise QubitLimitError(
            f"the circuit has {num_qubits} qubits, more than {who} limit of {limit} "
            f"(a {num_qubits}-qubit density matrix takes {state_size(num_qubits)}; "
            f"{limit} qubits take {state_size(limit)})"
        )


def gate_unitary(gate: Gate) -> np.ndarray:
    """The gate's 2**k x 2**k matrix, big-endian over `gate.qubits` (see the module docstring)."""
    if gate.name in _FIXED:
        return _FIXED[gate.name].copy()
    (theta,) = gate.params
    c, s = math.cos(theta / 2), math.sin(theta / 2)
    if gate.name == "RX":
        return np.array([[c, -1j * s], [-1j * s, c]], dtype=np.complex128)
    if gate.name == "RY":
        return np.array([[c, -s], [s, c]], dtype=np.complex128)
    if gate.name == "RZ":
        return np.diag([np.exp(-0.5j * theta), np.exp(0.5j * theta)]).astype(np.complex128)
    if gate.name == "CP":
        return np.diag([1, 1, 1, np.exp(1j * theta)]).astype(np.complex128)
    raise InvalidInputError(f"unknown gate {gate.name!r}; known gates: {', '.join(GATES)}")


def _check_qubit(q: Any, num_qubits: int, name: str, index: dict[Any, int] | None = None) -> int:
    if index is not None and not isinstance(q, int | np.integer):
        try:
            return index[q]
        except (KeyError, TypeError):
            raise InvalidInputError(
                f"{name}: {q!r} is not one of the circuit's qubits ({', '.join(map(str, index))})"
            ) from None
    if isinstance(q, bool):
        raise InvalidInputError(f"{name}: qubit must be an integer index, got {q!r}")
    try:
        i = operator.index(q)
    except TypeError:
        raise InvalidInputError(f"{name}: qubit must be an integer index, got {q!r}") from None
    if not 0 <= i < num_qubits:
        raise InvalidInputError(
            f"{name}: qubit {i} out of range for a {num_qubits}-qubit circuit (0..{num_qubits - 1})"
        )
    return i


def _check_param(p: Any, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating):
        raise InvalidInputError(f"{name}: angle must be a real number, got {p!r}")
    f = float(p)
    if not math.isfinite(f):
        raise InvalidInputError(f"{name}: angle must be finite, got {f!r}")
    return f


def make_gate(
    name: Any, qubits: Sequence[Any], params: Sequence[Any], num_qubits: int, index: dict[Any, int] | None = None
) -> Gate:
    """A checked Gate for a circuit of `num_qubits` (qubits by index, or by item of `index`: a named circuit's
    qubits), or InvalidInputError saying what is wrong."""
    if not isinstance(name, str) or name.upper() not in GATES:
        raise InvalidInputError(f"unknown gate {name!r}; known gates: {', '.join(GATES)}")
    key = name.upper()
    nq, npar = GATES[key]
    if len(qubits) != nq:
        raise InvalidInputError(f"{key} acts on {nq} qubit{'s' if nq > 1 else ''}, got {len(qubits)}: {list(qubits)}")
    if len(params) != npar:
        raise InvalidInputError(f"{key} takes {npar} parameter{'s' if npar != 1 else ''}, got {len(params)}")
    qs = tuple(_check_qubit(q, num_qubits, key, index) for q in qubits)
    if len(set(qs)) != len(qs):
        raise InvalidInputError(f"{key} needs distinct qubits, got {list(qs)}")
    return Gate(key, qs, tuple(_check_param(p, key) for p in params))


def _named_qubits(qubits: Any) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """The qubits a named circuit is given (names, or any hashable objects such as cirq qubits) and their
    names (`str` of each), checked: at least one, names distinct and not empty."""
    if isinstance(qubits, str | bytes) or not isinstance(qubits, Iterable):
        raise InvalidInputError(
            f"num_qubits must be a positive integer, or the qubits a list (names, or cirq qubits); got {qubits!r}"
        )
    items = tuple(qubits)
    if not items:
        raise InvalidInputError("a circuit needs at least one qubit; got an empty list of qubits")
    check_qubit_count(len(items), HARD_MAX_QUBITS, "qex's")
    names = []
    for q in items:
        if isinstance(q, bool | int | float | np.integer | np.floating):
            raise InvalidInputError(f"qubit {q!r}: a named qubit is a name or a qubit object, not a number")
        try:
            hash(q)
        except TypeError:
            raise InvalidInputError(f"qubit {q!r} cannot name a qubit (it is not hashable)") from None
        name = str(q)
        if not name.strip():
            raise InvalidInputError(f"qubit {q!r} has an empty name")
        names.append(name)
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInputError(f"qubit names must be distinct; given more than once: {', '.join(twice)}")
    return items, tuple(names)


class Circuit:
    """`num_qubits` qubits (or the named `qubits` given), all starting in |0>, and the gates applied to them."""

    def __init__(self, num_qubits: int | Iterable[Any], gates: Iterable[Gate] | None = None) -> None:
        #: the names a named circuit was given (None for `Circuit(n)`), and the objects they name
        self.names: tuple[str, ...] | None = None
        self.qubits: tuple[Any, ...] | None = None
        self._index: dict[Any, int] | None = None
        if not isinstance(num_qubits, int | np.integer) and not isinstance(num_qubits, bool | float):
            self.qubits, self.names = _named_qubits(num_qubits)
            self._index = {q: k for k, q in enumerate(self.qubits)}
            num_qubits = len(self.qubits)
        if isinstance(num_qubits, bool) or not isinstance(num_qubits, int | np.integer) or num_qubits < 1:
            raise InvalidInputError(f"num_qubits must be a positive integer, got {num_qubits!r}")
        check_qubit_count(int(num_qubits), HARD_MAX_QUBITS, "qex's")
        self.num_qubits = int(num_qubits)
        self._gates: list[Gate] = []
        for g in gates or ():
            if not isinstance(g, Gate):
                raise InvalidInputError(f"expected a Gate, got {g!r}")
            self._gates.append(make_gate(g.name, g.qubits, g.params, self.num_qubits))

    @property
    def gates(self) -> tuple[Gate, ...]:
        return tuple(self._gates)

    @property
    def qubit_names(self) -> tuple[str, ...]:
        """The names given, else those of `cirq.LineQubit.range(n)` ('q(0)', 'q(1)', ...), as the exports use."""
        return self.names if self.names is not None else tuple(f"q({k})" for k in range(self.num_qubits))

    def moments(self) -> list[list[Gate]]:
        """The gates in layers, as `cirq.Circuit(ops)` places them (see the module docstring)."""
        free = [0] * self.num_qubits  # the first layer each qubit is free in
        layers: list[list[Gate]] = []
        for g in self._gates:
            at = max(free[q] for q in g.qubits)
            if at == len(layers):
                layers.append([])
            layers[at].append(g)
            for q in g.qubits:
                free[q] = at + 1
        return layers

    def add(self, name: str, *qubits: Any, params: Sequence[float] = ()) -> Circuit:
        self._gates.append(make_gate(name, qubits, tuple(params), self.num_qubits, self._index))
        return self

    def i(self, q: Any) -> Circuit:
        """Identity: does nothing to the state, but noise still acts (how to model idling)."""
        return self.add("I", q)

    def x(self, q: Any) -> Circuit:
        return self.add("X", q)

    def y(self, q: Any) -> Circuit:
        return self.add("Y", q)

    def z(self, q: Any) -> Circuit:
        return self.add("Z", q)

    def h(self, q: Any) -> Circuit:
        return self.add("H", q)

    def s(self, q: Any) -> Circuit:
        return self.add("S", q)

    def t(self, q: Any) -> Circuit:
        return self.add("T", q)

    def rx(self, q: Any, theta: float) -> Circuit:
        return self.add("RX", q, params=(theta,))

    def ry(self, q: Any, theta: float) -> Circuit:
        return self.add("RY", q, params=(theta,))

    def rz(self, q: Any, theta: float) -> Circuit:
        return self.add("RZ", q, params=(theta,))

    def cnot(self, control: Any, target: Any) -> Circuit:
        return self.add("CNOT", control, target)

    def cz(self, a: Any, b: Any) -> Circuit:
        return self.add("CZ", a, b)

    def swap(self, a: Any, b: Any) -> Circuit:
        return self.add("SWAP", a, b)

    def cp(self, control: Any, target: Any, phi: float) -> Circuit:
        """Controlled phase: e^{i phi} on |11> (symmetric in its two qubits)."""
        return self.add("CP", control, target, params=(phi,))

    def ccz(self, a: Any, b: Any, c: Any) -> Circuit:
        return self.add("CCZ", a, b, c)

    def ccx(self, control1: Any, control2: Any, target: Any) -> Circuit:
        """Toffoli: X on `target` when both controls are 1."""
        return self.add("CCX", control1, control2, target)

    def to_json(self) -> list[list[Any]]:
        """[[name, [qubits], [params]], ...]: what a run records; `from_json` reads it back."""
        return [[g.name, list(g.qubits), list(g.params)] for g in self._gates]

    @classmethod
    def from_json(cls, num_qubits: int, data: Any, names: Sequence[str] | None = None) -> Circuit:
        """The circuit `to_json` wrote (on qubits named `names`, if it had names); every gate is checked again
        (the JSON may come from anywhere)."""
        if not isinstance(data, list | tuple):
            raise InvalidInputError(f"circuit JSON must be a list of gates, got {type(data).__name__}")
        if names is not None:
            if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
                raise InvalidInputError(f"qubit names must be a list of text, got {names!r}")
            if len(names) != num_qubits:
                raise InvalidInputError(f"{len(names)} qubit names for a {num_qubits}-qubit circuit")
        c = cls(names) if names is not None else cls(num_qubits)
        for k, item in enumerate(data):
            if (
                not isinstance(item, list | tuple)
                or len(item) not in (2, 3)
                or not isinstance(item[1], list | tuple)
                or (len(item) == 3 and not isinstance(item[2], list | tuple))
            ):
                raise InvalidInputError(f"gate #{k} must be [name, [qubits], [params]], got {item!r}")
            c._gates.append(make_gate(item[0], item[1], item[2] if len(item) == 3 else (), c.num_qubits))
        return c

    def __len__(self) -> int:
        return len(self._gates)

    def __iter__(self) -> Iterator[Gate]:
        return iter(self._gates)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Circuit):
            return NotImplemented
        return self.num_qubits == other.num_qubits and self.names == other.names and self._gates == other._gates

    __hash__ = None  # type: ignore[assignment]  # mutable: builders append in place

    def __repr__(self) -> str:
        qubits = list(self.names) if self.names is not None else self.num_qubits
        return f"Circuit({qubits!r}, {self.to_json()!r})"
