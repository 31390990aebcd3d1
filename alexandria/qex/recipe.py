"""What a qex run stores so that it can be run again: its circuit, backend and noise, exactly.

A run records the artifact `circuit` (`artifacts/{run_id}_circuit.json`), our own description, which
`load_recipe` rebuilds bit for bit (floats as JSON's shortest exact text):

    {"format": "alexandria.qex.circuit/1", "experiment": name, "params": {...},
     "backend": "numpy_dm" | "cirq_dm" | null, "max_qubits": 10,
     "noise": {"depolarizing": p, "amplitude_damping": g, "phase_damping": l,
               "convention": "ours" | "cirq", "idle_noise": false | true} | null,
     "num_qubits": n, "gates": [[name, [qubits], [params]], ...],
     "qubit_names": [name, ...] | null}                                    (a qex Circuit; null: numbered)
     ... "cirq": "<cirq.to_json text>", "qubits": "<cirq.to_json of the qubits given>" | null
                                                                            (a cirq.Circuit run as is)

A recipe written before `convention`, `idle_noise`, `qubit_names` or `qubits` existed reads as ours, per gate,
numbered, and sorted: what those runs did.

`backend` is null for a backend qex does not know (such a run cannot be rerun); `noise` is null when the
backend does not say. When cirq is installed (`alexandria[qex]`), beside it, for other tools:
`circuit_cirq` (`{run_id}_circuit.cirq.json`: `cirq.to_json` of the circuit as the Cirq backend runs it,
noise channels included: `cirq.read_json` gives it back; a `cirq.Circuit` run natively is stored as given,
its backend's noise being in `circuit`, and one Cirq cannot write as JSON is recorded as `"cirq": null`,
not rerunnable), `circuit_qasm` / `circuit_qasm3` (OpenQASM 2.0
and 3.0 of the noiseless circuit, as `cirq.qasm` writes it: QASM has no noise channels, and angles are
written to 16 digits) and `circuit_diagram` (Cirq's text diagram). An export Cirq cannot write is left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from .backends import BACKENDS, Backend, CirqBackend, Noise, NumpyDensityMatrix
from .circuit import HARD_MAX_QUBITS, Circuit
from .errors import BackendError

RECIPE_FORMAT = "alexandria.qex.circuit/1"
RECIPE_ARTIFACT = "circuit"
_NOISE_FIELDS = ("depolarizing", "amplitude_damping", "phase_damping", "convention", "idle_noise")


def backend_kind(backend: Backend) -> str | None:
    """'numpy_dm' or 'cirq_dm' for qex's own backends (whatever their noise), else None."""
    if isinstance(backend, NumpyDensityMatrix):
        return "numpy_dm"
    if isinstance(backend, CirqBackend):
        return "cirq_dm"
    return None


def describe(
    circuit: Any, backend: Backend, experiment: str, params: dict[str, Any], qubits: Any = None
) -> dict[str, Any]:
    """The `circuit` artifact's document for a run of `circuit` on `backend` (a cirq circuit on `qubits`, if
    given: see the module docstring); the experiment's name and parameters come along, so a rerun is
    recorded as the same experiment."""
    noise = getattr(backend, "noise", None)
    doc: dict[str, Any] = {
        "format": RECIPE_FORMAT,
        "experiment": experiment,
        "params": params,
        "backend": backend_kind(backend),
        "max_qubits": int(backend.max_qubits),
        "noise": noise.to_json() if isinstance(noise, Noise) else None,
    }
    if isinstance(circuit, Circuit):
        names = list(circuit.names) if circuit.names is not None else None
        doc.update(num_qubits=circuit.num_qubits, gates=circuit.to_json(), qubit_names=names)
    else:  # a cirq.Circuit, run natively by the Cirq backend
        import cirq

        try:
            text = cirq.to_json(circuit, indent=None)
        except (TypeError, ValueError):  # a custom gate Cirq cannot serialise: recorded, not rerunnable
            text = None
        try:
            order = None if qubits is None else cirq.to_json(list(qubits), indent=None)
        except (TypeError, ValueError):  # a custom qubit type: recorded, not rerunnable
            text = order = None
        width = len(circuit.all_qubits()) if qubits is None else len(list(qubits))
        doc.update(num_qubits=width, cirq=text, qubits=order)
    return doc


def exports(circuit: Any, backend: Backend) -> dict[str, tuple[str, str, str]]:
    """artifact name -> (file suffix, MIME type, text) of the Cirq JSON, QASM 2/3 and diagram; {} without cirq."""
    try:
        import cirq
    except ImportError:
        return {}
    noise = getattr(backend, "noise", None)
    if isinstance(circuit, Circuit):
        noisy, _ = CirqBackend(noise if isinstance(noise, Noise) else Noise(), HARD_MAX_QUBITS).to_cirq(circuit)
        plain, _ = CirqBackend(Noise(), HARD_MAX_QUBITS).to_cirq(circuit)
    else:
        noisy = plain = circuit
    out: dict[str, tuple[str, str, str]] = {}
    try:
        out["circuit_cirq"] = (".cirq.json", "application/json", str(cirq.to_json(noisy)))
    except (TypeError, ValueError):  # an operation Cirq cannot serialise
        pass
    for name, suffix, version in (("circuit_qasm", ".qasm", "2.0"), ("circuit_qasm3", ".qasm3", "3.0")):
        try:
            out[name] = (suffix, "text/plain", plain.to_qasm(precision=16, version=version))
        except (TypeError, ValueError):  # a gate with no QASM form, or measurements Cirq cannot name
            pass
    out["circuit_diagram"] = (".txt", "text/plain", str(plain) + "\n")
    return out


@dataclass(frozen=True)
class Recipe:
    """A stored run's circuit and the backend to run it on again, as it was."""

    circuit: Any  # a qex Circuit or a cirq.Circuit
    backend: Backend
    experiment: str
    params: dict[str, Any]
    qubits: list[Any] | None = None  # a cirq circuit's qubits in the order given; None: sorted


def load_recipe(data: bytes, label: str) -> Recipe:
    """The circuit and backend a `circuit` artifact describes; an InvalidInputError naming `label` if it
    is not one qex wrote, a BackendError if its backend is unknown or missing here."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{label} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != RECIPE_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise InvalidInputError(f"{label} is not a qex circuit description ({RECIPE_FORMAT}); found {found!r}")
    experiment, params = doc.get("experiment"), doc.get("params")
    if not isinstance(experiment, str) or not isinstance(params, dict):
        raise InvalidInputError(f"{label}: it names no experiment (text) and parameters (an object)")
    kind = doc.get("backend")
    if kind not in BACKENDS:
        raise BackendError(f"{label}: the run used a backend qex does not know ({kind!r}), so it cannot be rerun")
    noise_doc = doc.get("noise") or {}
    if not isinstance(noise_doc, dict) or set(noise_doc) - set(_NOISE_FIELDS):
        raise InvalidInputError(f"{label}: noise must be an object of {', '.join(_NOISE_FIELDS)}, got {noise_doc!r}")
    noise = Noise(**noise_doc)
    max_qubits = doc.get("max_qubits")
    if isinstance(max_qubits, bool) or not isinstance(max_qubits, int) or not 1 <= max_qubits <= HARD_MAX_QUBITS:
        raise InvalidInputError(
            f"{label}: max_qubits must be an integer from 1 to {HARD_MAX_QUBITS}, got {max_qubits!r}"
        )
    backend: Backend = NumpyDensityMatrix(noise, max_qubits) if kind == "numpy_dm" else CirqBackend(noise, max_qubits)
    if "cirq" in doc:
        if kind != "cirq_dm":
            raise InvalidInputError(f"{label}: a cirq circuit is run by the cirq_dm backend, not {kind}")
        import cirq

        if not isinstance(doc["cirq"], str):
            raise BackendError(f"{label}: Cirq could not write this run's circuit as JSON, so it cannot be rerun")
        circuit = cirq.read_json(json_text=doc["cirq"])
        if not isinstance(circuit, cirq.AbstractCircuit):
            raise InvalidInputError(f"{label}: its cirq JSON holds a {type(circuit).__name__}, not a circuit")
        qubits = None
        if doc.get("qubits") is not None:
            qubits = cirq.read_json(json_text=doc["qubits"]) if isinstance(doc["qubits"], str) else None
            if not isinstance(qubits, list) or not all(isinstance(q, cirq.Qid) for q in qubits):
                raise InvalidInputError(f"{label}: its qubits are not a cirq JSON list of qubits")
        return Recipe(circuit, backend, experiment, params, qubits)
    circuit = Circuit.from_json(doc["num_qubits"], doc.get("gates"), doc.get("qubit_names"))
    return Recipe(circuit, backend, experiment, params)
