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
    v = _param(params, key)
    if isinstance(v, str):
        try:
            v = int(v.strip())
        except ValueError:
            raise InvalidInputError(f"{key} must be a positive integer, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise InvalidInputError(f"{key} must be a positive integer, got {v!r}")
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


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("x", _x, {"n": 1}, "X on qubit 0 of n qubits: |1>, Bloch vector -z"),
        Experiment("h", _h, {"n": 1}, "H on every qubit: |+>^n, Bloch vectors +x"),
        Experiment("ry", _ry, {"theta": 0.5, "n": 1}, "RY(theta) on every qubit: Bloch vectors (sin t, 0, cos t)"),
        Experiment("bell", _bell, {}, "H(0), CNOT(0,1): (|00> + |11>)/sqrt2, each half maximally mixed"),
        Experiment("ghz", _ghz, {"n": 3}, "H(0) then a CNOT chain: (|0..0> + |1..1>)/sqrt2 on n qubits"),
    )
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except (KeyError, TypeError):
        raise InvalidInputError(f"unknown experiment {name!r}; choose one of: {', '.join(EXPERIMENTS)}") from None
