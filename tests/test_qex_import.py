"""`qex import DIR`: an upstream qex store (the `qex` package, github.com/AndreaPallotta/qex) brought into ours.

The upstream store is built the way upstream's own code builds it: the `runs` and `artifacts` tables with the
CREATE statements and inserts of its `qex/store.py` (`ResultStore`), the files where its `qex/runner.py`
(`Runner.run`) puts them, and Cirq states as its `CirqBackend` computes them (`np.outer` of the simulator's
complex64 state vector), beside random complex128 states as any other backend of its would save.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import cirq
import numpy as np
import pytest

from alexandria.errors import InvalidInputError
from alexandria.importers import stable_run_id
from alexandria.qex import states
from alexandria.qex.runner import load_density_matrix, open_store
from alexandria.qex.upstream import check_outside, import_upstream, our_run_id, read_state, single_precision_atol
from tests.conftest import make_seed
from tests.test_qex import qex, seed_rows

# -- upstream's store.py, verbatim (trailing spaces aside): its schema and its save_run --------------------------
UPSTREAM_SCHEMA = [
    """
            CREATE TABLE IF NOT EXISTS runs (
                run_id TEXT PRIMARY KEY,
                experiment_name TEXT NOT NULL,
                params TEXT NOT NULL,
                backend_name TEXT NOT NULL,
                timestamp REAL NOT NULL,
                density_matrix_path TEXT NOT NULL,
                metadata TEXT
            )
        """,
    """
            CREATE TABLE IF NOT EXISTS artifacts (
                artifact_id INTEGER PRIMARY KEY AUTOINCREMENT,
                run_id TEXT NOT NULL,
                artifact_name TEXT NOT NULL,
                artifact_path TEXT NOT NULL,
                artifact_type TEXT NOT NULL,
                FOREIGN KEY (run_id) REFERENCES runs(run_id)
            )
        """,
    """
            CREATE INDEX IF NOT EXISTS idx_runs_experiment_name
            ON runs(experiment_name)
        """,
    """
            CREATE INDEX IF NOT EXISTS idx_runs_timestamp
            ON runs(timestamp)
        """,
    """
            CREATE INDEX IF NOT EXISTS idx_artifacts_run_id
            ON artifacts(run_id)
        """,
]


def upstream_save_run(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    """ResultStore.save_run, statement for statement."""
    cursor = conn.cursor()
    cursor.execute(
        """
            INSERT INTO runs (run_id, experiment_name, params, backend_name,
                           timestamp, density_matrix_path, metadata)
            VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
        (
            record["run_id"],
            record["experiment_name"],
            json.dumps(record["params"]),
            record["backend_name"],
            record["timestamp"],
            record["density_matrix_path"],
            json.dumps(record["metadata"]) if record["metadata"] else None,
        ),
    )
    for artifact_name, artifact_path in record["artifacts"].items():
        artifact_type = "text/html" if artifact_path.endswith(".html") else "application/octet-stream"
        cursor.execute(
            """
                INSERT INTO artifacts (run_id, artifact_name, artifact_path, artifact_type)
                VALUES (?, ?, ?, ?)
            """,
            (record["run_id"], artifact_name, artifact_path, artifact_type),
        )
    conn.commit()


def cirq_backend_state(circuit: cirq.Circuit) -> np.ndarray:
    """Upstream's CirqBackend.run: the ideal simulator's state vector (complex64), as |psi><psi|."""
    statevector = cirq.Simulator().simulate(circuit).final_state_vector
    return np.outer(statevector, np.conj(statevector))


def random_state(rng: np.random.Generator, n: int, rank: int) -> np.ndarray:
    """A random n-qubit density matrix of the given rank, complex128 (a Ginibre matrix G G^H / Tr)."""
    g = rng.normal(size=(2**n, rank)) + 1j * rng.normal(size=(2**n, rank))
    rho = g @ g.conj().T
    return rho / np.trace(rho)


class Upstream:
    """An upstream store being written, as Runner.run + ResultStore.save_run write one."""

    def __init__(self, root: Path, rng: np.random.Generator) -> None:
        self.root = root
        self.rng = rng
        (root / "results").mkdir(parents=True)
        (root / "artifacts").mkdir()
        self.conn = sqlite3.connect(str(root / "qex.db"))
        for statement in UPSTREAM_SCHEMA:
            self.conn.execute(statement)
        self.conn.commit()
        self.clock = 1_760_000_000.0 + float(rng.uniform(0, 1e6))
        self.runs: dict[str, dict[str, Any]] = {}

    def add(
        self,
        experiment: str,
        params: dict[str, Any],
        rho: Any,
        *,
        run_id: str | None = None,
        qubits: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        backend: str = "cirq_ideal",
    ) -> dict[str, Any]:
        run_id = run_id or str(
            uuid.UUID(int=int(self.rng.integers(2**63)) << 64 | int(self.rng.integers(2**63)), version=4)
        )
        self.clock += float(self.rng.uniform(0.01, 5.0))
        rho_path = f"results/{run_id}_rho.npy"
        if rho is not None:
            np.save(self.root / rho_path, rho)
        html_path = f"artifacts/{run_id}_bloch.html"
        (self.root / html_path).write_text(f"<html><body>{experiment} - {run_id[:8]}</body></html>")
        record = {
            "run_id": run_id,
            "experiment_name": experiment,
            "params": params,
            "backend_name": backend,
            "timestamp": self.clock,
            "density_matrix_path": rho_path,
            "artifacts": {"bloch_sphere": html_path},
            "metadata": {**(metadata or {}), "qubits": qubits or ["q(0, 0)"]},
        }
        upstream_save_run(self.conn, record)
        self.runs[run_id] = record
        return record

    def close(self) -> None:
        self.conn.close()


def build_upstream(root: Path, seed: int) -> tuple[Upstream, dict[str, str]]:
    """Good runs of every kind, and bad files (run id -> what the summary must say of it)."""
    rng = np.random.default_rng(seed)
    up = Upstream(root, rng)
    q = cirq.GridQubit(0, 0)
    for theta in (0.0, 0.7, float(rng.uniform(0, np.pi))):
        up.add("ry_sweep", {"theta": theta}, cirq_backend_state(cirq.Circuit(cirq.ry(theta)(q))))
    line = cirq.LineQubit.range(2)
    up.add(
        "bell_state",
        {},
        cirq_backend_state(cirq.Circuit(cirq.H(line[0]), cirq.CNOT(line[0], line[1]))),
        qubits=[str(x) for x in line],
        metadata={"note": "the user's own metadata", "sample": {"id": 7}},
    )
    for n, rank in ((1, 2), (2, 3), (3, 1), (3, 8)):
        up.add(
            "random",
            {"n": n, "rank": rank, "label": f"r{n}", "angles": [0.1, 0.2]},
            random_state(rng, n, rank),
            backend="noisy_cirq",
            qubits=[f"q({k})" for k in range(n)],
        )
    up.add("custom_id", {"k": 1}, random_state(rng, 1, 1), run_id="my-run-7")
    bad: dict[str, str] = {}
    skew = random_state(rng, 1, 2)
    skew[0, 1] += 0.01
    bad[up.add("bad", {"why": "hermitian"}, skew)["run_id"]] = "not Hermitian"
    bad[up.add("bad", {"why": "trace"}, 2 * random_state(rng, 2, 2))["run_id"]] = "trace is 2"
    bad[up.add("bad", {"why": "negative"}, np.diag([1.5, -0.5]).astype(complex))["run_id"]] = (
        "not positive semidefinite"
    )
    bad[up.add("bad", {"why": "shape"}, np.eye(3) / 3)["run_id"]] = "not a power of two"
    bad[up.add("bad", {"why": "pickled"}, np.array([[{"a": 1}, 0], [0, 1]], dtype=object))["run_id"]] = "pickled array"
    bad[up.add("bad", {"why": "missing"}, None)["run_id"]] = "is missing"
    up.close()
    return up, bad


def files_of(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: size, mtime (ns) and SHA-256; what an import must leave as it was."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def listed(stdout: str, upstream_id: str) -> str:
    """What the summary says of one upstream run (its lines, rejoined where the terminal's width cut them)."""
    text = " ".join(stdout.split())
    start = text.find(f"run {upstream_id!r}:")
    assert start >= 0, (upstream_id, stdout)
    end = text.find(" run '", start + 1)
    return text[start : end if end >= 0 else None]


def test_an_upstream_store_is_imported_with_its_ids_params_times_and_states(tmp_path: Path) -> None:
    seed = make_seed()
    source = tmp_path / "upstream"
    up, bad = build_upstream(source, seed)
    before = files_of(source)
    db_mtime = (source / "qex.db").stat().st_mtime_ns
    ours = tmp_path / "ours"

    out = qex(ours, "import", str(source))
    assert out.returncode == 0, out.stderr
    good = {rid: r for rid, r in up.runs.items() if rid not in bad}
    assert f"imported {len(good)} run(s)" in out.stdout
    assert "importing upstream qex runs" in out.stderr  # the progress bar, on stderr
    # every file that cannot be validated is listed with its reason, not dropped silently
    assert f"skipped: {len(bad)} run(s) not imported" in out.stdout
    for rid, reason in bad.items():
        assert reason in listed(out.stdout, rid), (rid, reason, out.stdout)
    # upstream's store is only read: its database, its states and its pages are byte for byte as they were
    assert files_of(source) == before
    assert (source / "qex.db").stat().st_mtime_ns == db_mtime
    assert sorted(p.name for p in source.iterdir()) == ["artifacts", "qex.db", "results"]

    rows = {r["run_id"]: r for r in seed_rows(ours, "SELECT * FROM runs")}
    assert len(rows) == len(good)
    db = (source / "qex.db").resolve()
    st = open_store(ours)
    for upstream_id, record in good.items():
        rid = uuid.UUID(upstream_id).hex if upstream_id != "my-run-7" else stable_run_id("qex", str(db), "my-run-7")
        row = rows[rid]
        assert row["experiment_name"] == record["experiment_name"]
        assert row["backend_name"] == record["backend_name"]
        assert json.loads(row["params"]) == record["params"]
        assert row["timestamp"] == pytest.approx(record["timestamp"], abs=1e-6)
        meta = json.loads(row["metadata"])
        assert meta["upstream_run_id"] == upstream_id
        assert meta["upstream_metadata"] == record["metadata"]
        assert meta["qubit_names"] == record["metadata"]["qubits"]
        original = np.load(source / record["density_matrix_path"])
        imported = load_density_matrix(st, rid)
        assert imported.shape == original.shape and meta["num_qubits"] == original.shape[0].bit_length() - 1
        if original.dtype == np.complex128:  # kept exactly
            np.testing.assert_allclose(imported, original, rtol=0, atol=1e-15)
            assert meta["upstream_rounding"] == 0.0
        else:  # Cirq's complex64: rounded to the nearest double-precision state, by no more than float32's grain
            assert original.dtype == np.complex64
            np.testing.assert_allclose(imported, original, rtol=0, atol=single_precision_atol(original.shape[0]))
            assert meta["upstream_rounding"] == pytest.approx(np.max(np.abs(imported - original)), abs=1e-15)
        assert meta["purity"] == pytest.approx(states.purity(imported), abs=1e-12)
        for k, q in enumerate(meta["qubits"]):
            expected = states.bloch_vector(states.reduced_state(imported, k))
            np.testing.assert_allclose(q["bloch"], expected, atol=1e-12)
        (tag,) = seed_rows(ours, f"SELECT value FROM tag WHERE run_id = '{rid}' AND key = 'qex.upstream_run_id'")
        assert tag["value"] == upstream_id
        (run,) = seed_rows(ours, f"SELECT status, timestamp_end FROM run WHERE id = '{rid}'")
        assert run["status"] == "finished" and run["timestamp_end"] == pytest.approx(record["timestamp"], abs=1e-6)
        (page,) = seed_rows(
            ours,
            f"SELECT artifact_path FROM artifacts WHERE run_id = '{rid}' AND artifact_name = 'upstream_bloch_sphere'",
        )
        assert (ours / page["artifact_path"]).read_bytes() == (
            source / record["artifacts"]["bloch_sphere"]
        ).read_bytes()
    # every recorded file matches its log
    verified = qex(ours, "show", next(iter(rows)))
    assert verified.returncode == 0, verified.stderr

    # idempotent: a second import adds nothing and says so; the bad files are listed again
    again = qex(ours, "import", str(source))
    assert again.returncode == 0, again.stderr
    assert "imported 0 run(s)" in again.stdout
    assert f"already imported, skipped: {len(good)} run(s)" in again.stdout
    assert all(reason in listed(again.stdout, rid) for rid, reason in bad.items())
    assert len(seed_rows(ours, "SELECT run_id FROM runs")) == len(good)
    assert files_of(source) == before

    # a bad file fixed: the next import brings that run, and only it
    fixed_id = next(rid for rid, reason in bad.items() if reason == "not Hermitian")
    fixed = random_state(np.random.default_rng(seed + 1), 1, 2)
    np.save(source / up.runs[fixed_id]["density_matrix_path"], fixed)
    third = qex(ours, "import", str(source))
    assert third.returncode == 0, third.stderr
    assert "imported 1 run(s)" in third.stdout
    np.testing.assert_allclose(load_density_matrix(st, uuid.UUID(fixed_id).hex), fixed, rtol=0, atol=1e-15)


def test_a_cirq_state_in_single_precision_is_checked_at_its_own_precision() -> None:
    # |+> on three qubits from Cirq's simulator: complex64 entries whose trace misses 1 by more than 1e-8
    line = cirq.LineQubit.range(3)
    rho = cirq_backend_state(cirq.Circuit(cirq.H.on_each(*line), cirq.ry(0.3)(line[1])))
    assert rho.dtype == np.complex64
    with pytest.raises(states.InvalidStateError, match="trace"):
        states.check_state(rho)
    import io

    buffer = io.BytesIO()
    np.save(buffer, rho)
    state, rounding = read_state(buffer.getvalue(), "rho.npy")
    assert abs(np.trace(state.matrix) - 1) < 1e-14 and state.eigenvalues[0] > -1e-14
    assert 0 < rounding < single_precision_atol(8)
    # the same state as Cirq's vector, normalised in double precision
    psi = cirq.Simulator().simulate(cirq.Circuit(cirq.H.on_each(*line), cirq.ry(0.3)(line[1]))).final_state_vector
    psi = psi.astype(complex) / np.linalg.norm(psi.astype(complex))
    assert states.fidelity(state, np.outer(psi, psi.conj())) == pytest.approx(1, abs=1e-12)
    # Cirq's pure state stays pure: its eigenvalues near 0 are rounding, taken as 0
    assert states.purity(state) == pytest.approx(1, abs=1e-14) and states.von_neumann_entropy(state) < 1e-12
    # a mixed state in single precision keeps its spectrum (to float32's grain)
    mixed = np.diag([0.75, 0.25]).astype(np.complex64)
    buffer = io.BytesIO()
    np.save(buffer, mixed)
    kept, change = read_state(buffer.getvalue(), "mixed.npy")
    np.testing.assert_allclose(kept.eigenvalues, [0.25, 0.75], atol=1e-15)
    assert change < 1e-15
    # and so does a wider one with small eigenvalues (5e-5: far above float32's rounding, below 8 * 64 * eps)
    spectrum = np.full(64, 5e-5)
    spectrum[0] = 1 - spectrum[1:].sum()
    buffer = io.BytesIO()
    np.save(buffer, np.diag(spectrum).astype(np.complex64))
    wide, change = read_state(buffer.getvalue(), "wide.npy")
    np.testing.assert_allclose(np.sort(wide.eigenvalues), np.sort(spectrum), atol=1e-7)
    assert change < 1e-7
    # a single-precision matrix that is no state is still refused, by the same rule's messages
    buffer = io.BytesIO()
    np.save(buffer, (rho + np.eye(8, dtype=np.complex64) * 0.01).astype(np.complex64))
    with pytest.raises(states.InvalidStateError, match="trace"):
        read_state(buffer.getvalue(), "bad.npy")


def test_upstream_ids_become_ours() -> None:
    db = Path("/data/qex.db")
    u = "217906f7-889a-4b99-9c8c-6d1d9b5a1c3a"
    assert our_run_id(db, u) == uuid.UUID(u).hex == "217906f7889a4b999c8c6d1d9b5a1c3a"
    assert our_run_id(db, u.upper()) == uuid.UUID(u).hex
    other = our_run_id(db, "run-1")
    assert len(other) == 32 and other == our_run_id(db, "run-1") != our_run_id(Path("/else/qex.db"), "run-1")


def test_what_is_not_an_upstream_store_is_refused_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = qex(tmp_path / "ours", "import", str(empty))
    assert out.returncode != 0 and "no qex.db in" in out.stderr
    # our own store is not upstream's: said so, not read as one
    mine = tmp_path / "mine"
    assert qex(mine, "run", "x").returncode == 0
    out = qex(tmp_path / "ours", "import", str(mine))
    assert out.returncode != 0 and "is an Alexandria qex store" in out.stderr
    # another SQLite database
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "qex.db").execute("CREATE TABLE runs (id INTEGER)").connection.close()
    out = qex(tmp_path / "ours", "import", str(other))
    assert out.returncode != 0 and "not upstream qex's schema" in out.stderr

    # a store inside the upstream folder would write into it: refused before anything is written
    up, _ = build_upstream(tmp_path / "upstream", make_seed())
    before = files_of(up.root)
    for inside in (up.root, up.root / "ours"):
        out = qex(inside, "import", str(up.root))
        assert out.returncode != 0 and "inside the upstream store" in out.stderr, out.stderr
    assert files_of(up.root) == before
    with pytest.raises(InvalidInputError, match="inside the upstream store"):  # the library's own check
        check_outside(up.root, up.root / "results" / "x")


def test_a_file_outside_the_upstream_store_is_never_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(make_seed())
    up = Upstream(tmp_path / "upstream", rng)
    secret = tmp_path / "secret.npy"
    np.save(secret, random_state(rng, 1, 1))
    record = up.add("escape", {}, None)
    up.conn.execute("UPDATE runs SET density_matrix_path = ? WHERE run_id = ?", ("../secret.npy", record["run_id"]))
    inside = up.add("inside", {}, random_state(rng, 1, 1))
    link = up.add("link", {}, None)
    (up.root / link["density_matrix_path"]).symlink_to(up.root / inside["density_matrix_path"])
    up.conn.commit()
    up.close()
    summary = import_upstream(up.root, open_store(tmp_path / "ours"))
    assert summary.imported == [f"inside/{inside['run_id']}"]
    text = "\n".join(summary.lines())
    assert "outside" in text and "not a regular file" in text
