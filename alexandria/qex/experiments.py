"""Ready-made experiments: a name, default parameters, and a function building the circuit.

The registry is what the CLI offers by name; parameters arrive from the command line as
strings as often as numbers, so the checks here accept '3' for n and '0.5' for theta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .circuit import Circuit


@dataclass(frozen=True)
class Experiment:
    """`build(params)` makes the circuit; `circuit(overrides)` fills in the defaults first."""

    name: str
    build: Callable[[dict[str, Any]], Circuit]
    defaults: dict[str, Any]
    description: str

    def resolve(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults overridden by `params`; a name the experiment does not take is an error."""
        extra = sorted(set(params or {}) - set(self.defaults))
        if extra:
            takes = ", ".join(self.defaults) or "no parameters"
            raise InvalidInputError(f"experiment {self.name!r} takes {takes}; unknown: {', '.join(extra)}")
        return {**self.defaults, **(params or {})}

    def circuit(self, params: dict[str, Any] | None = None) -> Circuit:
        return self.build(self.resolve(params))


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
