"""Running qex experiments as Alexandria runs, and the qex store they go to.

A qex store is an Alexandria store whose database is named `qex.db`:

    qex_data/qex.db                        the projection, with the seed's `runs` and `artifacts` views
    qex_data/results/{run_id}_rho.npy      the final density matrix of each run
    qex_data/artifacts/{run_id}_bloch.html the run's page: its numbers, a Bloch sphere per qubit, the density
                                           matrix as heatmaps and a city plot (plotly, offline)
    qex_data/artifacts/{run_id}_sweep.html a sweep's pictures (`sweep_figures`: trajectories or heatmaps)
    qex_data/artifacts/plotly.min.js       the plotting library, written once for every page
    qex_data/runs/{run_id}/*.jsonl         the event logs (the truth, as for any run)

Paths in the database are relative to the database's directory. Every `alex`
command works on a qex store too (`alex --store qex_data runs`).

What a run records: its parameters (each one, plus `qex.params`, the exact
JSON), `qex.backend`, metrics (`purity`, `entropy_bits`, per qubit
`q{k}/bloch_x|y|z`, `q{k}/purity`, `q{k}/entropy_bits`, and for a noisy
backend `fidelity_to_ideal` / `trace_distance_to_ideal` against the same
circuit without noise), the tag `qex.metadata` (JSON: qubit count, names
(`qubit_names`) and order, noise (its convention and whether idle qubits
get it), shots, wall time, simulator version, the circuit, the numbers
above, and the caller's own `metadata=` as `user`) and artifacts: `circuit`
and its Cirq and QASM exports (`recipe.py`: what `rerun` runs
again), `density_matrix` (written atomically: temporary
file, fsync, rename; the event carrying its SHA-256 is logged only after the
rename, so no row ever points to a partial or missing file, even after
kill -9) and `bloch_sphere`. Reading a density matrix back (`load_density_matrix`) checks the file
against that record: inside the store, a regular file, the logged size and SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import tracking
from ..db import open_database
from ..errors import InvalidInputError, RunNotFoundError
from ..files import write_atomically
from ..store import Store, make_dirs, refuse_links
from . import bloch, recipe, state_figures, states, sweep_figures
from .backends import Backend, CirqBackend, NumpyDensityMatrix
from .circuit import Circuit, check_qubit_count
from .errors import BackendError
from .experiments import Experiment, fit_to, get_experiment
from .plugin import QEX_DB_NAME

STORE_ENV = "QEX_STORE"
DEFAULT_STORE = "qex_data"
_BIG_ENDIAN = "big-endian over qubit_names: the first is qubit 0, the leftmost tensor factor (most significant bit)"
#: `metadata["qubit_order"]`, by where the order came from
QUBIT_ORDERS = {
    "numbered": f"{_BIG_ENDIAN}; a numbered qex Circuit's qubits 0..n-1 (cirq.LineQubit.range(n))",
    "named": f"{_BIG_ENDIAN}; the qubits as the qex Circuit was given them",
    "given": f"{_BIG_ENDIAN}; the qubits in the order given (those no gate touches padded, in |0>)",
    "sorted": f"{_BIG_ENDIAN}; the cirq circuit's qubits in sorted order (sorted(circuit.all_qubits()))",
}


def circuit_qubits(circuit: Any, qubits: Sequence[Any] | None = None) -> tuple[list[str], str]:
    """The names of the state's qubits in its order, and which `QUBIT_ORDERS` entry says how it was chosen."""
    if isinstance(circuit, Circuit):
        return list(circuit.qubit_names), "numbered" if circuit.names is None else "named"
    if qubits is not None:
        return [str(q) for q in qubits], "given"
    return [str(q) for q in sorted(circuit.all_qubits())], "sorted"


def open_store(path: str | os.PathLike[str] | Store | None = None) -> Store:
    """The qex store (default $QEX_STORE, else ./qex_data), its layout and database created on first use."""
    if isinstance(path, Store):
        store = path
    else:
        store = Store.open(path or os.environ.get(STORE_ENV) or DEFAULT_STORE, db_name=QEX_DB_NAME)
    make_dirs(store.root / "results")  # as every directory in a store: a link in its place is refused
    make_dirs(store.root / "artifacts")
    open_database(store, catch_up=False).dispose()
    return store


@dataclass
class QexResult:
    """What one qex run produced."""

    run_id: str
    experiment: str
    params: dict[str, Any]
    backend: str
    rho: np.ndarray
    metadata: dict[str, Any]
    density_matrix_path: str  # relative to the store
    bloch_path: str
    state: states.ValidState  # rho, checked once (its eigenvalues kept for any further measure)
    ideal: states.ValidState | None = None  # the same circuit without noise, when the backend is noisy


def run_experiment(
    experiment: Experiment | str,
    params: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    parent: tracking.Run | str | None = None,
    capture: bool | None = None,
    qubits: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> QexResult:
    """Build the experiment's circuit from its defaults overridden by `params` (a builder experiment's on
    `qubits`, see `Experiment.run_qubits`), run it, record the run with the caller's `metadata`."""
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    merged = exp.resolve(dict(params or {}))
    qs = exp.run_qubits(qubits)
    return run_circuit(
        exp.name,
        exp.make(merged, qs),
        merged,
        backend,
        store=store,
        parent=parent,
        capture=capture,
        qubits=qs,
        metadata=metadata,
    )


def run_circuit(
    name: str,
    circuit: Any,
    params: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    parent: tracking.Run | str | None = None,
    capture: bool | None = None,
    tags: Mapping[str, str] | None = None,
    qubits: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> QexResult:
    """Run one circuit (a qex `Circuit`, or a `cirq.Circuit` on the Cirq backend, the default for one) and
    record it as a run, with what it takes to run it again (`recipe.py`; `rerun`). `qubits` are the state's
    qubits in order (a qex Circuit is padded to them; a cirq circuit runs on them, idle ones in |0>);
    `metadata` (JSON-able) is kept in the run's `qex.metadata` as `user`."""
    if qubits is not None:
        qubits = tuple(qubits)
        if isinstance(circuit, Circuit):
            circuit = fit_to(circuit, qubits, name)
    if backend is None:
        backend = NumpyDensityMatrix() if isinstance(circuit, Circuit) else CirqBackend()
    native = qubits is not None and not isinstance(circuit, Circuit)
    if native and not isinstance(backend, CirqBackend):
        raise BackendError(f"a cirq circuit on given qubits runs on the cirq_dm backend, not {backend.name}")
    if native and isinstance(backend, CirqBackend):
        backend.native_qubits(circuit, qubits)  # checked before the run starts: a stray qubit records nothing
    user = _user_metadata(metadata)
    st = open_store(store)
    params = dict(params or {})
    params_json = _params_json(params)
    run_tags = {**(tags or {}), "qex": "run"}
    run = tracking.start_run(experiment=name, store=st, parent=parent, tags=run_tags, capture=capture)
    with run:
        run.log_params({k: v for k, v in params.items() if not k.startswith("qex.")})
        run.log_params({"qex.backend": backend.name, "qex.params": params_json})
        started = time.perf_counter()
        # checked once: every measure, the picture and the file below reuse the check and its eigenvalues
        raw = backend.run(circuit, qubits) if isinstance(backend, CirqBackend) else backend.run(circuit)
        state = states.check_state(raw)
        wall = time.perf_counter() - started
        rho = state.matrix
        names, order = circuit_qubits(circuit, qubits if native else None)
        noise = getattr(backend, "noise", None)
        ideal: states.ValidState | None = None
        extra: dict[str, float] = {}
        if noise is not None and not noise.is_noiseless and isinstance(circuit, Circuit):
            ideal = states.check_state(NumpyDensityMatrix().run(circuit))
            extra["fidelity_to_ideal"] = states.fidelity(state, ideal)
            extra["trace_distance_to_ideal"] = states.trace_distance(state, ideal)
        heading = f"{name} {_params_text(params)} on {backend.name}"  # rounded: the exact values are in qex.params
        shown = names if order != "numbered" else None  # a numbered circuit's spheres stay "qubit k"
        noise_text = (noise.describe() or "none") if noise is not None else "unknown"
        about = run_about(run.id, run.name, name, params_json, backend.name, noise_text)
        measures, rho_path, bloch_path = record_state(
            run, st, state, heading, extra=extra, qubit_names=shown, about=about, qubit_labels=names
        )
        _record_recipe(run, st, circuit, backend, name, params, qubits if native else None)
        metadata = {
            "num_qubits": states.num_qubits(rho),
            "qubit_names": names,
            "qubit_order": QUBIT_ORDERS[order],
            "noise": noise_text,
            "noise_convention": getattr(noise, "convention", None),
            "idle_noise": getattr(noise, "idle_noise", None),
            "user": user,
            "shots": None,  # exact density matrices: no sampling
            "wall_time_s": wall,
            "simulator": backend.version,
            "circuit": circuit.to_json() if isinstance(circuit, Circuit) else str(circuit),
            **measures,
        }
        run.set_tag("qex.metadata", json.dumps(metadata, sort_keys=True))
    open_database(st).dispose()  # fold it: qex.db answers for the run as soon as this returns
    return QexResult(run.id, name, params, backend.name, rho, metadata, rho_path, bloch_path, state, ideal)


def sweep(
    experiment: Experiment | str,
    grid: Mapping[str, Sequence[Any]],
    params: Mapping[str, Any] | None = None,
    backend: Backend | None = None,
    *,
    store: str | os.PathLike[str] | Store | None = None,
    qubits: Sequence[Any] | None = None,
) -> tuple[str, list[QexResult]]:
    """Run the experiment over every combination of `grid` values, as child runs of one parent run.

    The parent (tag `qex=sweep`) gets the sweep plot (`sweep_plot`, from `sweep_figures.sweep_plot`: over one
    parameter the Bloch trajectories, purity and, on a noisy backend, fidelity to the noiseless state against
    it; over two or more, heatmaps of those and of each Bloch component over the first two) and the children's
    purity as its metric `purity` (step = index of the child); code and environment are captured once, for
    the parent. Returns the parent's id and the results.
    """
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise InvalidInputError("a sweep needs at least one parameter with at least one value, e.g. theta=0:3.14:9")
    keys = list(grid)
    qs = exp.run_qubits(qubits)
    # every point's parameters and circuit are checked (qubit counts against the backend's limit
    # included) before the first run: a bad point fails the sweep before it records anything
    points = [
        exp.resolve({**(params or {}), **dict(zip(keys, combo, strict=True))})
        for combo in itertools.product(*grid.values())
    ]
    circuits = [exp.make(point, qs) for point in points]
    if backend is None:
        backend = NumpyDensityMatrix() if all(isinstance(c, Circuit) for c in circuits) else CirqBackend()
    for circuit in circuits:
        width = circuit.num_qubits if isinstance(circuit, Circuit) else len(qs or circuit.all_qubits())
        check_qubit_count(width, backend.max_qubits, f"the {backend.name} backend's")
    st = open_store(store)
    results: list[QexResult] = []
    parent = tracking.start_run(experiment=exp.name, store=st, tags={"qex": "sweep"})
    with parent:
        parent.log_params({"qex.backend": backend.name, "qex.grid": _params_json(dict(grid))})
        for i, (point, circuit) in enumerate(zip(points, circuits, strict=True)):
            # capture=False: code and environment are the parent's
            result = run_circuit(exp.name, circuit, point, backend, store=st, parent=parent, capture=False, qubits=qs)
            results.append(result)
            parent.log_metric("purity", result.metadata["purity"], step=i)
        # each noisy child logged its fidelity to the noiseless state: plotted as it is, not computed again
        fids = [r.metadata["fidelity_to_ideal"] for r in results if "fidelity_to_ideal" in r.metadata]
        figure = sweep_figures.sweep_plot(
            grid,
            [r.state for r in results],
            title=f"{exp.name} sweep",
            fidelities=fids if len(fids) == len(results) else None,
        )
        plot = st.root / "artifacts" / f"{parent.id}_sweep.html"
        bloch.write_html(figure, plot)
        _record(parent, plot, "sweep_plot", "text/html")
    open_database(st).dispose()
    return parent.id, results


def record_state(
    run: tracking.Run,
    store: Store,
    state: states.ValidState,
    title: str,
    *,
    extra: Mapping[str, float] | None = None,
    timestamp: float | None = None,
    qubit_names: Sequence[str] | None = None,
    qubit_labels: Sequence[str] | None = None,
    about: Sequence[tuple[str, str]] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """What every qex run records of its final state, whoever computed it (`run_circuit`, `qex import`):
    the measures (`describe_state`, plus `extra`) as metrics at step 0 (measured at `timestamp`, default
    now), the matrix as results/{run_id}_rho.npy (written atomically, its event after) and the run's page
    (`state_figures.write_run_page`: what ran (`about`), the Bloch spheres titled by `qubit_names`, the numbers,
    the density matrix). `qubit_labels` name the qubits in the measures (metadata). Returns (the measures, the
    matrix's path, the page's path), paths relative to the store."""
    measures = describe_state(state)
    measures.update(extra or {})
    run.log_metrics(_metric_values(measures), step=0, timestamp=timestamp)
    if qubit_labels is not None:
        for q in measures["qubits"]:
            q["name"] = qubit_labels[q["qubit"]]
    rho_path = _save_density_matrix(run, store, state.matrix)
    page = store.root / "artifacts" / f"{run.id}_bloch.html"
    rows = about if about is not None else [("run", run.id), ("name", run.name or "-")]
    state_figures.write_run_page(page, state, title=title, about=rows, measures=measures, qubit_names=qubit_names)
    return measures, rho_path, _record(run, page, "bloch_sphere", "text/html")


def run_about(
    run_id: str, name: str | None, experiment: str, params_json: str, backend: str, noise: str
) -> list[tuple[str, str]]:
    """What ran, as the first rows of a run's page (`state_figures.run_page_html`)."""
    return [
        ("run", run_id),
        ("name", name or "-"),
        ("experiment", experiment),
        ("params", params_json),
        ("backend", backend),
        ("noise", noise),
    ]


def describe_state(rho: np.ndarray | states.ValidState) -> dict[str, Any]:
    """The numbers a run logs about its final state (see states.py for the conventions); checked once."""
    rho = states.check_state(rho)
    per_qubit = states.qubit_summary(rho)
    return {
        "purity": states.purity(rho),
        "entropy_bits": states.von_neumann_entropy(rho),
        "qubits": per_qubit,
    }


def stored_density_matrix(store: Store, run_id: str) -> tuple[bytes, np.ndarray]:
    """The .npy bytes of the density matrix run `run_id` (a full id) logged, read once and checked against
    its record (inside the store, a regular file, of the logged size and SHA-256: `verify.read_recorded`,
    else the `RecordedFileError` that says why, e.g. `ChangedFileError` for a file replaced since), and the
    valid state they hold (`states.decode_density_matrix`, else a `StateFileError` naming the file)."""
    from ..query import Reader, artifact_record
    from ..verify import read_recorded

    with Reader(store, fold=False) as reader:
        record = artifact_record(reader.engine, run_id, "density_matrix")
    if record is None:
        raise RunNotFoundError(f"run {run_id} has no density matrix in {store.root}; `qex runs` lists the qex runs")
    data = read_recorded(store, run_id, "density_matrix", record)
    return data, states.decode_density_matrix(data, name=str(store.root / record["path"]))


def load_density_matrix(store: Store, run_id: str) -> np.ndarray:
    """The valid state run `run_id` logged, from its file checked against the log (`stored_density_matrix`)."""
    return stored_density_matrix(store, run_id)[1]


def _metric_values(measures: dict[str, Any]) -> dict[str, float]:
    values = {k: float(v) for k, v in measures.items() if isinstance(v, float)}
    for q in measures["qubits"]:
        k = q["qubit"]
        for axis, v in zip("xyz", q["bloch"], strict=True):
            values[f"q{k}/bloch_{axis}"] = v
        values[f"q{k}/purity"] = q["purity"]
        values[f"q{k}/entropy_bits"] = q["entropy_bits"]
    return values


def _user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The caller's metadata as a JSON object, checked before the run starts."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a mapping of names to JSON-able values, got {metadata!r}")
    try:
        return dict(json.loads(json.dumps(dict(metadata), sort_keys=True, default=_json_default)))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"qex metadata must be JSON-able (numbers, text, lists, objects): {exc}") from exc


def _params_json(params: Mapping[str, Any]) -> str:
    try:
        return json.dumps(params, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"qex parameters must be JSON-able (numbers, text, lists): {exc}") from exc


def _params_text(params: Mapping[str, Any]) -> str:
    """Parameters as a page's title writes them: `theta=1.571, n=2` (4 significant digits)."""
    return ", ".join(f"{k}={sweep_figures.number_text(v)}" for k, v in sorted(params.items()))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _save_density_matrix(run: tracking.Run, store: Store, rho: np.ndarray) -> str:
    """results/{run_id}_rho.npy, atomically: no reader and no row ever sees a partial file."""
    buffer = io.BytesIO()
    np.save(buffer, rho.astype(np.complex128), allow_pickle=False)
    data = buffer.getvalue()
    dest = refuse_links(store.root / "results" / f"{run.id}_rho.npy")
    write_atomically(dest, data)
    digest = hashlib.sha256(data).hexdigest()  # the bytes just written: no second read of the file
    return run.record_artifact(dest, type="application/x-npy", name="density_matrix", size=len(data), sha256=digest)


def _record_recipe(
    run: tracking.Run,
    store: Store,
    circuit: Any,
    backend: Backend,
    name: str,
    params: dict[str, Any],
    qubits: Sequence[Any] | None,
) -> None:
    """artifacts/{run_id}_circuit.json (what `rerun` rebuilds) and its Cirq/QASM/diagram exports, atomically."""
    doc = recipe.describe(circuit, backend, name, json.loads(_params_json(params)), qubits)
    files = {recipe.RECIPE_ARTIFACT: (".json", "application/json", json.dumps(doc))}
    files.update(recipe.exports(circuit, backend))
    for artifact, (suffix, kind, text) in files.items():
        data = text.encode()
        dest = refuse_links(store.root / "artifacts" / f"{run.id}_circuit{suffix}")
        write_atomically(dest, data)
        run.record_artifact(dest, type=kind, name=artifact, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@dataclass
class Rerun:
    """A run run again: the new run, the one it reproduces, and how close the two states are."""

    result: QexResult
    original_id: str
    fidelity: float
    trace_distance: float


def rerun(store: str | os.PathLike[str] | Store | None, run_id: str) -> Rerun:
    """Run `run_id` (a full id) again from its stored circuit, on the same backend and noise, as a new run
    tagged `rerun_of=<run_id>`, and compare its state with the original's (fidelity, trace distance).

    A run logged before qex stored circuits, or whose circuit or backend qex cannot rebuild, is a
    `NotRerunnableError` saying so; a stored file changed since it was logged, the `RecordedFileError`."""
    from ..query import Reader, artifact_record
    from ..verify import read_recorded
    from .errors import NotRerunnableError

    st = open_store(store)
    with Reader(st, fold=False) as reader:
        record = artifact_record(reader.engine, run_id, recipe.RECIPE_ARTIFACT)
    if record is None:
        raise NotRerunnableError(
            f"run {run_id} stored no circuit description (it was logged before qex stored circuits), so it "
            "cannot be rerun exactly; run its experiment again with `qex run` and the parameters `qex show` lists"
        )
    data = read_recorded(st, run_id, recipe.RECIPE_ARTIFACT, record)
    try:
        stored = recipe.load_recipe(data, str(st.root / record["path"]))
    except BackendError as exc:
        raise NotRerunnableError(str(exc)) from None
    original = states.check_state(load_density_matrix(st, run_id))
    circuit = stored.circuit
    width = circuit.num_qubits if isinstance(circuit, Circuit) else len(stored.qubits or circuit.all_qubits())
    if width != original.num_qubits:
        raise NotRerunnableError(
            f"run {run_id}'s stored circuit has {width} qubits but its state {original.num_qubits}: "
            "the two do not belong together, so it cannot be rerun"
        )
    result = run_circuit(
        stored.experiment,
        stored.circuit,
        stored.params,
        stored.backend,
        store=st,
        tags={"rerun_of": run_id},
        qubits=stored.qubits,
    )
    return Rerun(
        result,
        run_id,
        states.fidelity(result.state, original),
        states.trace_distance(result.state, original),
    )


def _record(run: tracking.Run, path: Path, name: str, kind: str) -> str:
    return run.record_artifact(path, type=kind, name=name)
