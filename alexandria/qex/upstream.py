"""`qex import DIR`: the runs of an upstream qex store (the `qex` package, github.com/AndreaPallotta/qex)
brought into ours, each recorded as our own runs are (`runner.record_state`).

An upstream store is what its `ResultStore(DIR / "qex.db")` and `Runner(backend, base_dir=DIR)` write:

    DIR/qex.db                          SQLite: tables `runs` (run_id, experiment_name, params JSON,
                                        backend_name, timestamp, density_matrix_path, metadata JSON)
                                        and `artifacts` (run_id, artifact_name, artifact_path, artifact_type)
    DIR/results/{run_id}_rho.npy        each run's density matrix, as `np.save` wrote it
    DIR/artifacts/{run_id}_bloch*.html  its Bloch sphere page

What becomes of an upstream run:

* Its id: upstream's are uuid4 text (`217906f7-889a-...`), kept as the same UUID in our spelling (32 hex
  digits, `uuid.UUID(id).hex`); any other id becomes `stable_run_id("qex", <DIR/qex.db absolute>, id)`.
  The text as upstream wrote it is the tag `qex.upstream_run_id`.
* Its experiment name, params (each one, and `qex.params`, the exact JSON), backend name (`qex.backend`),
  and time: upstream records one time per run, when it started; the run starts and ends at it (its
  duration is not known). Its metadata (qubit names, the user's own keys) is kept whole in `qex.metadata`
  under `upstream_metadata`, its qubit names also as `qubit_names`.
* Its state, checked by the one rule (`states.py`), recorded with the measures every run logs (purity,
  entropy, Bloch vectors per qubit) and our Bloch spheres page. A double-precision matrix is kept exactly.
  Upstream's Cirq backend returns complex64, whose rounding alone breaks the rule's 1e-8 (a trace off by
  2e-8), so a single-precision matrix is checked at its own precision (`single_precision_atol`), then
  rounded to a double-precision state at that precision: its Hermitian part, whose eigenvalues within
  float32's rounding of 0 (`SINGLE_EIGENVALUE_GRAIN`, 1e-6) are 0 (Cirq's pure states stay pure) and the rest
  normalised to trace 1; the largest entry it changed is metadata `upstream_rounding`.
* Its HTML pages, copied as artifacts `upstream_<name>`.

A run whose state cannot be validated (missing, unreadable, not a density matrix) or whose row is not one
upstream writes is not imported: it is listed in the summary with the reason, and an import after the file
is fixed brings it (the runs already there are skipped). A page that cannot be copied is listed too; its run
is imported without it. DIR is only read: the database is opened read-only (a `mode=ro` URI), files are
opened without following links and only inside DIR, and the store written must be outside DIR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImportSourceError, InvalidInputError
from ..files import open_regular, write_atomically
from ..importers import ImportSummary, already_imported, stable_run_id, start_imported_run
from ..rebuild import ProgressFactory
from ..store import Store, refuse_links
from ..values import check_key, check_text
from . import states
from .errors import InvalidStateError

_log = logging.getLogger(__name__)

TRACKER = "qex"
UPSTREAM_DB = "qex.db"
RUN_COLUMNS = ("run_id", "experiment_name", "params", "backend_name", "timestamp", "density_matrix_path", "metadata")
ARTIFACT_COLUMNS = ("run_id", "artifact_name", "artifact_path", "artifact_type")
#: Why a run is not imported, printed once after the counts.
NOT_IMPORTED = "their state or row cannot be read (listed below); fix it and import again to bring them"


@dataclass
class UpstreamRun:
    """One row of upstream's `runs` table, with its rows of `artifacts`."""

    run_id: Any
    experiment_name: Any
    params: Any
    backend_name: Any
    timestamp: Any
    density_matrix_path: Any
    metadata: Any
    artifacts: list[tuple[Any, Any, Any]] = field(default_factory=list)  # name, path, type


def our_run_id(db: Path, upstream_id: str) -> str:
    """The id an upstream run gets here: its UUID in our spelling, else one derived from the store and id."""
    try:
        parsed = uuid.UUID(upstream_id)
    except ValueError:
        parsed = None
    if parsed is not None and upstream_id.lower() in (str(parsed), parsed.hex):
        return parsed.hex
    return stable_run_id(TRACKER, str(db), upstream_id)


#: How far rounding to float32 moves a state's eigenvalue (Weyl: at most the norm of the rounding, a few float32
#: epsilons for a matrix of norm <= 1, whatever its size): one below it is taken as 0.
SINGLE_EIGENVALUE_GRAIN = 8 * float(np.finfo(np.float32).eps)


def single_precision_atol(size: int) -> float:
    """The tolerance a single-precision 2**n-wide matrix is checked at: 8 float32 roundings per row and
    column summed (a trace of `size` rounded entries), never stricter than the rule's own."""
    return max(states.DEFAULT_ATOL, 8 * size * float(np.finfo(np.float32).eps))


def read_state(data: bytes, label: str) -> tuple[states.ValidState, float]:
    """An upstream `.npy` file's bytes as a valid state, and how far it was rounded (0.0 when kept exactly);
    a `StateFileError` / `InvalidStateError` naming `label` when it is no state."""
    header = _npy_header(data)
    single = header is not None and header[1].kind in "fc" and header[1].itemsize <= (4 if header[1].kind == "f" else 8)
    if not single:
        return states.check_state(states.decode_density_matrix(data, name=label), name=label), 0.0
    assert header is not None
    size = int(header[0][0]) if header[0] else 0
    atol = single_precision_atol(size)
    m = states.decode_density_matrix(data, atol, name=label)
    # eigenvalues within the file's rounding of 0 are 0 (a pure state stays pure), the rest sum to 1
    w, v = np.linalg.eigh((m + m.conj().T) / 2)
    w = np.where(w > SINGLE_EIGENVALUE_GRAIN, w, 0.0)
    rounded = (v * (w / w.sum())) @ v.conj().T
    return states.check_state(rounded, name=label), float(np.max(np.abs(rounded - m)))


def _npy_header(data: bytes) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """(shape, dtype) from a `.npy` header, or None when there is none (`decode_density_matrix` says why)."""
    import io

    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(f)
    except (ValueError, TypeError, SyntaxError):
        return None
    return tuple(shape), dtype


def check_outside(source: str | os.PathLike[str], store_root: str | os.PathLike[str]) -> None:
    """InvalidInputError unless the store written is outside the upstream folder read: nothing is ever
    written into it."""
    src = Path(source).expanduser().resolve()
    dest = Path(store_root).expanduser().resolve()
    if dest == src or src in dest.parents:
        raise InvalidInputError(
            f"the qex store {str(dest)!r} is inside the upstream store {str(src)!r}, which an import only "
            "reads: give another store with `qex --store DIR import ...`"
        )


def read_upstream(directory: str | os.PathLike[str]) -> tuple[Path, list[UpstreamRun]]:
    """The upstream store's database path and its runs, oldest first, read through a read-only connection."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise ImportSourceError(f"{str(directory)!r} is not a folder; give the folder holding upstream's qex.db")
    db = root.resolve() / UPSTREAM_DB
    if not db.is_file():
        raise ImportSourceError(
            f"no {UPSTREAM_DB} in {str(root)!r}: an upstream qex store is the folder of the database its "
            "ResultStore(...) was given"
        )
    try:
        # mode=ro: SQLite opens the file for reading only and never creates or replays a journal in DIR
        conn = sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportSourceError(f"cannot open {db} read-only: {exc}") from exc
    try:
        _check_schema(conn, db)
        runs = {
            row[0]: UpstreamRun(*row)
            for row in conn.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY timestamp, run_id")
        }
        for run_id, *artifact in conn.execute(
            f"SELECT {', '.join(ARTIFACT_COLUMNS)} FROM artifacts ORDER BY artifact_id"
        ):
            if run_id in runs:
                runs[run_id].artifacts.append(tuple(artifact))  # type: ignore[arg-type]
    except sqlite3.Error as exc:
        raise ImportSourceError(f"cannot read {db}: {exc}") from exc
    finally:
        conn.close()
    return db, list(runs.values())


def _check_schema(conn: sqlite3.Connection, db: Path) -> None:
    kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name IN ('runs', 'artifacts')").fetchall())
    if kinds.get("runs") == "view":
        raise ImportSourceError(
            f"{db} is an Alexandria qex store (its `runs` is a view), not an upstream one: open it with "
            "`qex --store` (or `alex --store`) as it is"
        )
    for table, columns in (("runs", RUN_COLUMNS), ("artifacts", ("artifact_id", *ARTIFACT_COLUMNS))):
        if kinds.get(table) != "table":
            raise ImportSourceError(f"{db} has no `{table}` table: it is not a store upstream qex wrote")
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = [c for c in columns if c not in have]
        if missing:
            raise ImportSourceError(f"{db}: its `{table}` table lacks {', '.join(missing)}: not upstream qex's schema")


def import_upstream(
    directory: str | os.PathLike[str], store: Store, progress: ProgressFactory | None = None
) -> ImportSummary:
    """Import every run of the upstream qex store in `directory` into our qex store (see the module's
    docstring); runs an earlier import wrote are skipped whole."""
    check_outside(directory, store.root)
    db, runs = read_upstream(directory)
    root = db.parent
    summary = ImportSummary()
    advance = progress(len(runs)) if progress else None
    for upstream in runs:
        try:
            _import_run(root, db, store, upstream, summary)
        except _Unreadable as exc:
            summary.skip("run(s) not imported", 1, NOT_IMPORTED)
            summary.warnings.append(f"  {exc}")
            _log.info("qex import: %s", exc)
        if advance:
            advance(1)
    if summary.imported:
        from ..db import open_database

        open_database(store).dispose()  # fold them: qex.db answers for the runs as soon as this returns
    return summary


class _Unreadable(Exception):
    """One upstream run that cannot be imported, and why (listed in the summary)."""


def _import_run(root: Path, db: Path, store: Store, up: UpstreamRun, summary: ImportSummary) -> None:
    from .runner import _metric_values, _params_json, record_state

    label = f"run {up.run_id!r}"
    if not isinstance(up.run_id, str) or not up.run_id:
        raise _Unreadable(f"{label}: its run_id is not text")
    run_id = our_run_id(db, up.run_id)
    name = f"{up.experiment_name}/{up.run_id}"
    status = already_imported(store, run_id)
    if status is not None:
        summary.already_there[name] = status
        return
    experiment, params, metadata, when = _fields(up, label)
    if not isinstance(up.density_matrix_path, str):
        raise _Unreadable(f"{label}: its density_matrix_path is not text")
    state_file = _inside(root, up.density_matrix_path, label)
    try:
        state, rounding = read_state(_read(state_file, up.density_matrix_path), up.density_matrix_path)
    except InvalidStateError as exc:  # StateFileError too: missing, unreadable, not a state
        raise _Unreadable(f"{label}: {exc}") from None
    pages, problems = _pages(root, up, label)
    simple = {}
    for key, value in params.items():
        try:
            simple[check_key(key, "parameter")] = value
        except InvalidInputError:
            problems.append(f"{label}: parameter {key[:60]!r} is no parameter key; kept in qex.params only")
    params_json = _params_json(params)
    tags = {"qex": "run", "imported_from": f"qex:{db}", "qex.upstream_run_id": up.run_id}
    run = start_imported_run(store, run_id, experiment, name=None, start_time=when, tags=tags)
    if run is None:  # another import of the same run, under way
        summary.already_there[name] = "running"
        return
    try:
        run.log_params({k: v for k, v in simple.items() if not k.startswith("qex.")})
        run.log_params({"qex.backend": up.backend_name, "qex.params": params_json})
        title = f"{experiment} {params_json} on {up.backend_name} (imported)"
        measures, _, _ = record_state(run, store, state, title, timestamp=when)
        for page_name, suffix, data, kind in pages:
            dest = refuse_links(store.root / "artifacts" / f"{run_id}_upstream_{page_name}{suffix}")
            write_atomically(dest, data)
            digest = hashlib.sha256(data).hexdigest()
            run.record_artifact(dest, type=kind, name=f"upstream_{page_name}", size=len(data), sha256=digest)
        qubit_names = metadata.get("qubits")
        record = {
            "num_qubits": state.num_qubits,
            "qubit_order": "big-endian, in the order of qubit_names (upstream's Cirq order)",
            "qubit_names": qubit_names if isinstance(qubit_names, list) else None,
            "noise": "unknown",
            "shots": None,
            "simulator": up.backend_name,
            "upstream_run_id": up.run_id,
            "upstream_metadata": metadata,
            "upstream_rounding": rounding,
            **measures,
        }
        run.set_tag("qex.metadata", json.dumps(record, sort_keys=True))
    except BaseException:
        run.end("failed", error="the import stopped", end_time=when)
        raise
    run.end("finished", end_time=when)
    summary.imported.append(name)
    summary.params += len(simple) + 2
    summary.tags += len(tags) + 1
    summary.points += len(_metric_values(measures))
    summary.artifacts += 2 + len(pages)  # the matrix, our Bloch spheres, upstream's pages
    summary.warnings += [f"  {p}" for p in problems]


def _fields(up: UpstreamRun, label: str) -> tuple[str, dict[str, Any], dict[str, Any], float]:
    """The experiment, params, metadata and time of a row, or _Unreadable saying which is not upstream's."""
    try:
        experiment = check_text(up.experiment_name, "experiment") if isinstance(up.experiment_name, str) else ""
    except InvalidInputError:
        experiment = ""
    if not experiment.strip():
        raise _Unreadable(f"{label}: its experiment_name {up.experiment_name!r} is no experiment name")
    if not isinstance(up.backend_name, str) or not up.backend_name:
        raise _Unreadable(f"{label}: its backend_name {up.backend_name!r} is not text")
    try:
        params = json.loads(up.params) if isinstance(up.params, str | bytes) else None
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise _Unreadable(f"{label}: its params are not a JSON object ({str(up.params)[:60]!r})")
    try:
        metadata = json.loads(up.metadata) if up.metadata else {}
    except (TypeError, ValueError):
        raise _Unreadable(f"{label}: its metadata is not JSON ({str(up.metadata)[:60]!r})") from None
    if not isinstance(metadata, dict):
        metadata = {"value": metadata}
    when = up.timestamp
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when) or when <= 0:
        raise _Unreadable(f"{label}: its timestamp {when!r} is no unix time")
    return experiment, params, metadata, float(when)


def _inside(root: Path, relative: str, label: str) -> Path:
    """`relative` (a path upstream recorded) inside DIR, else _Unreadable: nothing outside DIR is read."""
    path = root / relative
    if Path(relative).is_absolute() or root not in path.resolve().parents:
        raise _Unreadable(f"{label}: its file {relative!r} is outside {root}; only files inside the store are read")
    return path


def _read(path: Path, label: str) -> bytes:
    """The bytes of a regular file (a link or a folder is refused), else a StateFileError naming `label`."""
    from .errors import StateFileError

    if not os.path.lexists(path):
        raise StateFileError(f"{label} is missing")
    fd = open_regular(path)
    if fd is None:
        raise StateFileError(f"{label} is not a regular file (a link, a folder or a device); it is not read")
    try:
        with os.fdopen(fd, "rb") as f:
            return f.read()
    except OSError as exc:
        raise StateFileError(f"{label} cannot be read: {exc.strerror or exc}") from exc


def _pages(root: Path, up: UpstreamRun, label: str) -> tuple[list[tuple[str, str, bytes, str]], list[str]]:
    """Upstream's artifacts of a run, read ((name, suffix, bytes, type), ...), and those that could not be."""
    pages: list[tuple[str, str, bytes, str]] = []
    problems: list[str] = []
    for artifact_name, path, kind in up.artifacts:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(artifact_name))[:100] or "artifact"
        try:
            if not isinstance(path, str):
                raise _Unreadable(f"{label}: artifact {artifact_name!r} has no path")
            suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(path).suffix)[:16]
            data = _read(_inside(root, path, label), path)
            pages.append((name, suffix, data, str(kind or "application/octet-stream")))
        except (_Unreadable, InvalidStateError) as exc:
            problems.append(f"{label}: artifact {artifact_name!r} not copied: {exc}")
    return pages, problems
