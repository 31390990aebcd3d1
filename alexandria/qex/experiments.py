"""Experiments: a name, default parameters, and a function building the circuit; the ready ones.

Two kinds of builder. The ready experiments' `build(params) -> Circuit` number their own qubits.
Upstream qex's model, `Experiment(name, builder=builder)` with `builder(qubits, params) -> circuit`,
builds on qubits the user chooses per run (`make(params, qubits)`): cirq qubits (`LineQubit`,
`GridQubit`, `NamedQubit`) for a `cirq.Circuit`, or names (or cirq qubits) for a qex `Circuit`
(`Circuit(qubits)`); with none given, upstream's default, `[cirq.GridQubit(0, 0)]`. The qubits given
are the state's, in their order: a qubit the circuit leaves alone is padded (in |0>).

The registry is what the CLI offers by name; parameters arrive from the command line as
strings as often as numbers, so the checks here accept '3' for n and '0.5' for theta.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .circuit import Circuit
from .errors import BackendError


def _takes_qubits(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is upstream's `builder(qubits, params)` (two positional parameters) rather than `build(params)`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) == 2


@dataclass(frozen=True)
class Experiment:
    """`build(params)` makes the circuit, or `builder(qubits, params)` on the qubits chosen (upstream's model,
    `Experiment(name, builder=...)`; a positional builder of two parameters is taken as one too);
    `circuit(overrides)` fills in the defaults first. A builder experiment with no `defaults` takes any
    parameters, as upstream's does; `qubits` are its qubits when a run gives none."""

    name: str
    build: Callable[..., Any] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    builder: Callable[[tuple[Any, ...], dict[str, Any]], Any] | None = None
    qubits: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidInputError(f"an experiment needs a name (text), got {self.name!r}")
        if self.builder is None and self.build is not None and _takes_qubits(self.build):
            object.__setattr__(self, "builder", self.build)
            object.__setattr__(self, "build", None)
        if (self.build is None) == (self.builder is None):
            raise InvalidInputError(
                f"experiment {self.name!r} needs one builder: build(params) or builder(qubits, params)"
            )
        if self.qubits is not None:
            object.__setattr__(self, "qubits", _qubit_tuple(self.qubits))

    def resolve(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults overridden by `params`; a name the experiment does not take is an error."""
        if self.builder is not None and not self.defaults:
            return dict(params or {})
        extra = sorted(set(params or {}) - set(self.defaults))
        if extra:
            takes = ", ".join(self.defaults) or "no parameters"
            raise InvalidInputError(f"experiment {self.name!r} takes {takes}; unknown: {', '.join(extra)}")
        return {**self.defaults, **(params or {})}

    def circuit(self, params: dict[str, Any] | None = None, qubits: Sequence[Any] | None = None) -> Any:
        return self.make(self.resolve(params), qubits)

    def run_qubits(self, qubits: Sequence[Any] | None = None) -> tuple[Any, ...] | None:
        """The qubits a run of a builder experiment is on: those given, else the experiment's, else upstream's
        default `[cirq.GridQubit(0, 0)]`; None for a ready experiment (it numbers its own)."""
        if self.builder is None:
            if qubits is not None:
                raise InvalidInputError(
                    f"experiment {self.name!r} numbers its own qubits; qubits= is for an experiment "
                    "with a builder(qubits, params)"
                )
            return None
        if qubits is not None:
            return _qubit_tuple(qubits)
        if self.qubits is not None:
            return self.qubits
        try:
            import cirq
        except ImportError:
            raise BackendError(
                f"experiment {self.name!r}: give its qubits (qubits=['a', 'b']), or install cirq for "
                "upstream's default [cirq.GridQubit(0, 0)]: pip install 'alexandria[qex]'"
            ) from None
        return (cirq.GridQubit(0, 0),)

    def make(self, params: dict[str, Any], qubits: Sequence[Any] | None = None) -> Any:
        """The circuit for these (resolved) parameters: `build(params)`, or `builder(qubits, params)` on
        `run_qubits(qubits)`, a qex Circuit padded to those qubits (`fit_to`)."""
        if self.builder is None:
            self.run_qubits(qubits)  # refuses qubits given to an experiment that numbers its own
            assert self.build is not None
            return self.build(params)
        qs = self.run_qubits(qubits)
        assert qs is not None
        return fit_to(self.builder(qs, dict(params)), qs, self.name)


def _qubit_tuple(qubits: Any) -> tuple[Any, ...]:
    if isinstance(qubits, str | bytes) or not isinstance(qubits, Sequence | set | frozenset | tuple):
        if hasattr(qubits, "dimension"):  # one cirq qubit, as upstream takes it
            return (qubits,)
        raise InvalidInputError(f"qubits must be a list of qubits (cirq qubits or names), got {qubits!r}")
    items = tuple(qubits)
    if not items:
        raise InvalidInputError("qubits: the list is empty; an experiment needs at least one qubit")
    return items


def fit_to(circuit: Any, qubits: tuple[Any, ...], name: str) -> Any:
    """A builder's circuit on the qubits it was given: a qex Circuit of those names as it is, one of fewer of
    them (or numbered, of as many) rewritten onto all of them; a cirq.Circuit as it is (the backend runs it
    on `qubits`, padding the idle ones); anything else an InvalidInputError."""
    if not isinstance(circuit, Circuit):
        if type(circuit).__module__.startswith("cirq"):
            return circuit
        raise InvalidInputError(
            f"experiment {name!r}: the builder returned {type(circuit).__name__}, not a qex Circuit or a cirq.Circuit"
        )
    wanted = Circuit(qubits)  # checks the names
    names = wanted.qubit_names
    if circuit.names == names:
        return circuit
    if circuit.names is None:
        if circuit.num_qubits != len(names):
            raise InvalidInputError(
                f"experiment {name!r}: the builder's circuit has {circuit.num_qubits} numbered qubits for "
                f"{len(names)} qubits given; build it as Circuit(qubits)"
            )
        position = list(range(len(names)))
    else:
        unknown = [n for n in circuit.names if n not in names]
        if unknown:
            raise InvalidInputError(
                f"experiment {name!r}: the circuit's qubits {', '.join(unknown)} are not among those given "
                f"({', '.join(names)})"
            )
        position = [names.index(n) for n in circuit.names]
    for g in circuit:
        wanted.add(g.name, *(position[q] for q in g.qubits), params=g.params)
    return wanted


def _param(params: dict[str, Any], key: str) -> Any:
    if key not in params:
        raise InvalidInputError(f"missing parameter {key!r}")
    return params[key]


def _positive_int(params: dict[str, Any], key: str = "n") -> int:
    return _integer(params, key, lambda v: v >= 1, "a positive integer")


def _integer(params: dict[str, Any], key: str, ok: Callable[[int], bool], what: str) -> int:
    """The parameter as an int (a string of one too: the command line's `-p n=3`) that `ok` accepts; else an
    InvalidInputError saying it must be `what`."""
    v = _param(params, key)
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise InvalidInputError(f"{key} must be {what}, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not ok(int(v)):
        raise InvalidInputError(f"{key} must be {what}, got {v!r}")
    return int(v)


def _finite_float(params: dict[str, Any], key: str) -> float:
    v = _param(params, key)
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise InvalidInputError(f"{key} must be a finite number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) or not math.isfinite(v):
        raise InvalidInputError(f"{key} must be a finite number, got {v!r}")
    return float(v)


def _x(params: dict[str, Any]) -> Circuit:
    return Circuit(_positive_int(params)).x(0)


def _h(params: dict[str, Any]) -> Circuit:
    c = Circuit(_positive_int(params))
    for q in range(c.num_qubits):
        c.h(q)
    return c


def _ry(params: dict[str, Any]) -> Circuit:
    theta = _finite_float(params, "theta")
    c = Circuit(_positive_int(params))
    for q in range(c.num_qubits):
        c.ry(q, theta)
    return c


def _bell(params: dict[str, Any]) -> Circuit:
    return Circuit(2).h(0).cnot(0, 1)


def _ghz(params: dict[str, Any]) -> Circuit:
    c = Circuit(_positive_int(params)).h(0)
    for q in range(c.num_qubits - 1):
        c.cnot(q, q + 1)
    return c


def _int_in(params: dict[str, Any], key: str, low: int, high: int) -> int:
    return _integer(params, key, lambda v: low <= v <= high, f"an integer from {low} to {high}")


def _basis(c: Circuit, index: int) -> None:
    """X where `index`'s bit is 1: prepares |index> from |0..0>, qubit 0 the most significant bit."""
    for q in range(c.num_qubits):
        if index >> (c.num_qubits - 1 - q) & 1:
            c.x(q)


def _teleport(params: dict[str, Any]) -> Circuit:
    """Qubit 0 holds RZ(phi) RY(theta)|0>; 1 and 2 a Bell pair; the Bell measurement of 0 and 1 and Bob's
    corrections are deferred (CNOT 1->2, CZ 0-2), so qubit 2 ends holding the input state exactly."""
    theta, phi = _finite_float(params, "theta"), _finite_float(params, "phi")
    c = Circuit(3).ry(0, theta).rz(0, phi)
    c.h(1).cnot(1, 2)  # the shared pair
    c.cnot(0, 1).h(0)  # Alice's Bell-basis rotation
    return c.cnot(1, 2).cz(0, 2)  # Bob's X and Z corrections, controlled by what Alice would measure


def _qft(params: dict[str, Any]) -> Circuit:
    """|j> then the quantum Fourier transform: amplitudes e^{2 pi i j k / N} / sqrt(N), N = 2**n."""
    c = Circuit(_positive_int(params))  # refuses too many qubits before 2**n is reckoned with
    n = c.num_qubits
    _basis(c, _int_in(params, "j", 0, 2**n - 1))
    for q in range(n):
        c.h(q)
        for k in range(q + 1, n):
            c.cp(k, q, math.pi / 2 ** (k - q))
    for q in range(n // 2):
        c.swap(q, n - 1 - q)
    return c


def _grover(params: dict[str, Any]) -> Circuit:
    """Grover search for |marked> on n = 2 or 3 qubits: H on all, then `iterations` rounds of the phase
    oracle and the diffusion (inversion about the mean), each a CZ (n = 2) or CCZ (n = 3) between X and H."""
    n = _int_in(params, "n", 2, 3)
    marked = _int_in(params, "marked", 0, 2**n - 1)
    rounds = _int_in(params, "iterations", 0, 100)
    c = Circuit(n)

    def flip_all_ones() -> None:
        if n == 2:
            c.cz(0, 1)
        else:
            c.ccz(0, 1, 2)

    for q in range(n):
        c.h(q)
    for _ in range(rounds):
        zeros = [q for q in range(n) if not marked >> (n - 1 - q) & 1]
        for q in zeros:  # the oracle: -1 on |marked> only
            c.x(q)
        flip_all_ones()
        for q in zeros:
            c.x(q)
        for q in range(n):  # the diffusion: -1 on |0..0> in the H basis
            c.h(q).x(q)
        flip_all_ones()
        for q in range(n):
            c.x(q).h(q)
    return c


def parse_edges(value: Any) -> list[tuple[int, int]]:
    """A graph's edges, as text '0-1,1-2' or a list of pairs [[0, 1], [1, 2]]: distinct, no loops."""
    if isinstance(value, str):
        items: list[Any] = []
        for part in value.split(","):
            a, sep, b = part.strip().partition("-")
            if not sep:
                raise InvalidInputError(f"edges: {part.strip()!r} is not an edge; write them as 0-1,1-2,0-2")
            items.append((a.strip(), b.strip()))  # read as integers below
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidInputError(f"edges must be text like '0-1,1-2' or a list of pairs, got {value!r}")
    edges: list[tuple[int, int]] = []
    for item in items:
        try:
            u, v = (int(x) for x in item)
        except (TypeError, ValueError):
            raise InvalidInputError(f"edges: {item!r} is not a pair of qubit indices, as in 0-1") from None
        if u < 0 or v < 0 or u == v:
            raise InvalidInputError(f"edges: {u}-{v} must join two different qubits, each >= 0")
        if (u, v) in edges or (v, u) in edges:
            raise InvalidInputError(f"edges: {u}-{v} is given twice")
        edges.append((u, v))
    if not edges:
        raise InvalidInputError("edges: a graph needs at least one edge, e.g. 0-1")
    return edges


def _qaoa(params: dict[str, Any]) -> Circuit:
    """One QAOA layer (p = 1) for MaxCut on the graph `edges`: H on all, exp(-i gamma C) with
    C = sum over edges of (1 - Z_u Z_v) / 2 (each edge a CNOT, RZ(-gamma), CNOT, up to a global phase),
    then the mixer exp(-i beta sum X) as RX(2 beta) on every qubit."""
    edges = parse_edges(_param(params, "edges"))
    gamma, beta = _finite_float(params, "gamma"), _finite_float(params, "beta")
    c = Circuit(max(max(e) for e in edges) + 1)
    for q in range(c.num_qubits):
        c.h(q)
    for u, v in edges:
        c.cnot(u, v).rz(v, -gamma).cnot(u, v)
    for q in range(c.num_qubits):
        c.rx(q, 2 * beta)
    return c


def vqe_angles(n: int, layers: int, seed: int) -> np.ndarray:
    """The ansatz's angles: (layers + 1, n, 2) = (RY, RZ) per qubit per rotation layer, uniform in
    [-pi, pi) from numpy's default_rng(seed): a seed names one point of the ansatz, reproducibly."""
    return np.random.default_rng(seed).uniform(-math.pi, math.pi, size=(layers + 1, n, 2))


def _vqe(params: dict[str, Any]) -> Circuit:
    """A hardware-efficient ansatz: `layers` times (RY then RZ on every qubit, a CNOT ladder 0->1->..->n-1),
    then a last RY, RZ layer; angles from `vqe_angles(n, layers, seed)`."""
    n = _positive_int(params)
    layers = _int_in(params, "layers", 0, 100)
    seed = _int_in(params, "seed", 0, 2**63 - 1)
    c = Circuit(n)
    angles = vqe_angles(n, layers, seed)
    for layer in range(layers + 1):
        for q in range(n):
            c.ry(q, float(angles[layer, q, 0])).rz(q, float(angles[layer, q, 1]))
        if layer < layers:
            for q in range(n - 1):
                c.cnot(q, q + 1)
    return c


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("x", _x, {"n": 1}, "X on qubit 0 of n qubits: |1>, Bloch vector -z"),
        Experiment("h", _h, {"n": 1}, "H on every qubit: |+>^n, Bloch vectors +x"),
        Experiment("ry", _ry, {"theta": 0.5, "n": 1}, "RY(theta) on every qubit: Bloch vectors (sin t, 0, cos t)"),
        Experiment("bell", _bell, {}, "H(0), CNOT(0,1): (|00> + |11>)/sqrt2, each half maximally mixed"),
        Experiment("ghz", _ghz, {"n": 3}, "H(0) then a CNOT chain: (|0..0> + |1..1>)/sqrt2 on n qubits"),
        Experiment(
            "teleport",
            _teleport,
            {"theta": 1.0, "phi": 0.5},
            "teleports RZ(phi)RY(theta)|0> from qubit 0 to 2 (measurement deferred): q2 ends in the input state",
        ),
        Experiment("qft", _qft, {"n": 3, "j": 1}, "QFT of |j> on n qubits: amplitudes e^{2 pi i jk/2^n}/sqrt(2^n)"),
        Experiment(
            "grover",
            _grover,
            {"n": 2, "marked": 3, "iterations": 1},
            "Grover search for |marked> on 2 or 3 qubits: P(marked) = sin^2((2k+1) asin(2^(-n/2))) after k rounds",
        ),
        Experiment(
            "qaoa",
            _qaoa,
            {"edges": "0-1,1-2,0-2", "gamma": 0.4, "beta": 0.3},
            "one QAOA MaxCut layer (p=1) on a graph of edges 0-1,1-2,...: exp(-i beta X) exp(-i gamma C) |+..+>",
        ),
        Experiment(
            "vqe",
            _vqe,
            {"n": 3, "layers": 2, "seed": 0},
            "hardware-efficient ansatz: layers of RY, RZ on each qubit + a CNOT ladder, angles drawn from seed",
        ),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}") from None
