"""qex's input rules: what its measures, circuits, stored files and command-line values accept, and the
one typed error (an `Error:` line at the command line) for everything else."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cirq
import numpy as np
import pandas as pd
import pytest

from alexandria import tracking
from alexandria.db import open_database
from alexandria.qex import bloch, states, sweep_figures
from alexandria.qex.backends import CirqBackend, Noise, NumpyDensityMatrix
from alexandria.qex.circuit import Circuit
from alexandria.qex.errors import InvalidStateError, QubitLimitError, StateFileError
from alexandria.qex.grid import MAX_POINTS, parse_grid, parse_values
from alexandria.qex.runner import open_store, run_circuit, run_experiment, sweep
from alexandria.store import Store
from tests.test_qex import qex


def refused(out: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 1 and exactly one line on stderr: `Error: <message>`."""
    assert (out.returncode, out.stderr) == (1, f"Error: {message}\n")


# ---------------------------------------------------------------- 1. every measure checks its input

ONE = np.diag([0.0, 1.0]).astype(complex)  # |1><1|
BAD: dict[str, tuple[Any, str]] = {
    "nan": (np.array([[np.nan, 0], [0, 1]]), "the matrix holds NaN or infinite entries"),
    "inf": (np.array([[np.inf, 0], [0, 1]]), "the matrix holds NaN or infinite entries"),
    "not square": (np.zeros((2, 4)), "a density matrix must be square; got shape (2, 4)"),
    "not 2**n": (np.eye(3) / 3, "a density matrix of n qubits is 2**n wide; got 3, not a power of two >= 2"),
    "vector": (np.array([1.0, 0.0]), "a density matrix must be square; got shape (2,)"),
    "not hermitian": (
        np.array([[0.5, 0.5], [0, 0.5]]),
        "not Hermitian: max |rho - rho^H| = 0.5 > tolerance 1e-08",
    ),
    "trace 2": (np.eye(2), "trace is 2, not 1 (off by 1 > tolerance 1e-08)"),
    "not psd": (np.diag([1.5, -0.5]), "not positive semidefinite: smallest eigenvalue -0.5 < -1e-08"),
}
MEASURES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "purity": (states.purity, ""),
    "von_neumann_entropy": (states.von_neumann_entropy, ""),
    "bloch_vector": (states.bloch_vector, ""),
    "reduced_state": (lambda m: states.reduced_state(m, 0), ""),
    "qubit_summary": (states.qubit_summary, ""),
    "fidelity rho": (lambda m: states.fidelity(m, ONE), "rho: "),
    "fidelity sigma": (lambda m: states.fidelity(ONE, m), "sigma: "),
    "trace_distance rho": (lambda m: states.trace_distance(m, ONE), "rho: "),
    "trace_distance sigma": (lambda m: states.trace_distance(ONE, m), "sigma: "),
    "bloch_figure": (bloch.bloch_figure, ""),
}


@pytest.mark.parametrize("measure", list(MEASURES))
@pytest.mark.parametrize("bad", list(BAD))
def test_every_measure_refuses_a_matrix_that_is_no_state(measure: str, bad: str) -> None:
    call, prefix = MEASURES[measure]
    matrix, message = BAD[bad]
    with pytest.raises(InvalidStateError) as err:
        call(matrix)
    assert str(err.value) == prefix + message


def test_the_tolerance_is_the_callers_and_the_measures_of_real_states_stand() -> None:
    nearly = np.diag([0.5 + 1e-6, 0.5])
    with pytest.raises(InvalidStateError) as err:
        states.purity(nearly)
    assert str(err.value) == "trace is 1.000001, not 1 (off by 1e-06 > tolerance 1e-08)"
    assert states.purity(nearly, atol=1e-5) == pytest.approx(0.5, abs=1e-5)
    plus = np.full((2, 2), 0.5)
    assert states.fidelity(ONE, plus) == pytest.approx(0.5)
    assert states.trace_distance(ONE, plus) == pytest.approx(2**-0.5)
    assert states.bloch_vector(plus) == pytest.approx([1, 0, 0])
    with pytest.raises(InvalidStateError) as err:
        states.bloch_vector(np.eye(4) / 4)
    assert str(err.value) == (
        "a Bloch vector is of one qubit's 2x2 state; got a 2-qubit state: take reduced_state(rho, qubit) first"
    )
    with pytest.raises(InvalidStateError) as err:
        states.reduced_state(np.eye(4) / 4, 2)
    assert str(err.value) == "qubit 2 does not exist in a 2-qubit state (0..1)"


# ---------------------------------------------------------------- 2. qubit counts beyond any limit


def test_a_thousand_qubits_is_a_qubit_limit_error_before_anything_is_built(tmp_path: Path) -> None:
    beyond = (
        "the circuit has 1000 qubits, more than qex's limit of 14 "
        "(a 1000-qubit density matrix takes 2**2004 bytes; 14 qubits take 4 GiB)"
    )
    with pytest.raises(QubitLimitError) as err:
        Circuit(1000)
    assert str(err.value) == beyond
    with pytest.raises(QubitLimitError) as err:
        Circuit.from_json(1000, [])
    assert str(err.value) == beyond
    root = tmp_path / "qex_data"
    for experiment in ("h", "ghz", "x"):
        with pytest.raises(QubitLimitError) as err:
            run_experiment(experiment, {"n": 1000}, store=root)
        assert str(err.value) == beyond
    assert not root.exists()  # refused before the store was touched

    native = cirq.Circuit(cirq.H.on_each(*cirq.LineQubit.range(1000)))
    with pytest.raises(QubitLimitError) as err:
        CirqBackend().run(native)
    assert str(err.value) == (
        "the circuit has 1000 qubits, more than the cirq backend's limit of 10 "
        "(a 1000-qubit density matrix takes 2**2004 bytes; 10 qubits take 16 MiB); raise it with max_qubits=, up to 14"
    )


def test_a_sweep_checks_every_points_qubit_count_before_its_first_run(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    with pytest.raises(QubitLimitError) as err:
        sweep("ghz", {"n": [2, 11]}, store=root)
    assert str(err.value) == (
        "the circuit has 11 qubits, more than the numpy_dm backend's limit of 10 "
        "(a 11-qubit density matrix takes 64 MiB; 10 qubits take 16 MiB)"
    )
    assert not root.exists()  # no parent, no child for n=2: nothing recorded


# ---------------------------------------------------------------- 3. stored .npy files qex cannot read


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


GOOD = npy(ONE)
#: damaged contents of a run's density-matrix file, and what decoding it says after "<file> is not a
#: density matrix qex wrote: " (None: the whole message is the matrix's own)
DAMAGED: dict[str, tuple[bytes, str]] = {
    "truncated": (
        GOOD[:-10],
        "it is truncated: its header declares a 2x2 complex128 matrix (64 bytes) but only 54 bytes follow",
    ),
    "truncated header": (GOOD[:20], "its .npy header is truncated (EOF: reading array header, expected"),
    "empty": (b"", "the file is empty (0 bytes)"),
    "magic only": (GOOD[:4], "it is truncated (4 bytes, inside the .npy header)"),
    "not npy": (b"rho = [[0, 0], [0, 1]]\n", "it is not a .npy file (it does not start with numpy's magic bytes)"),
    "pickled": (
        npy(np.array([[{"a": 1}, 0], [0, 1]], dtype=object), allow_pickle=True),
        "it holds Python objects (a pickled array), which qex never loads",
    ),
    "text": (
        npy(np.array([["a", "b"], ["c", "d"]])),
        "it holds <U1 values; a state is a matrix of numbers (complex128)",
    ),
    "trailing bytes": (GOOD + b"\0\0\0", "3 bytes follow the 2x2 complex128 matrix its header declares"),
    "version 9": (GOOD[:6] + b"\x09\x00" + GOOD[8:], ".npy format version 9.0 is not one qex reads (1.0, 2.0)"),
}


def test_decoding_a_stored_state_refuses_every_damaged_file_by_name() -> None:
    for case, (data, problem) in DAMAGED.items():
        with pytest.raises(StateFileError) as err:
            states.decode_density_matrix(data, name="rho.npy")
        assert str(err.value).startswith(f"rho.npy is not a density matrix qex wrote: {problem}"), case
    with pytest.raises(InvalidStateError) as err:
        states.decode_density_matrix(npy(np.zeros((2, 2, 2))), name="rho.npy")
    assert str(err.value) == "rho.npy: a density matrix must be square; got shape (2, 2, 2)"
    with pytest.raises(InvalidStateError) as err:
        states.decode_density_matrix(npy(np.array([[np.nan, 0], [0, 1]])), name="rho.npy")
    assert str(err.value) == "rho.npy: the matrix holds NaN or infinite entries"
    # what np.save may write for a state: any numeric dtype, either byte order, either memory order
    mixed = np.array([[0.5, 0.25 - 0.25j], [0.25 + 0.25j, 0.5]])
    for array in (mixed, mixed.astype(">c16"), np.asfortranarray(mixed), np.eye(2) / 2, mixed.astype(np.complex64)):
        decoded = states.decode_density_matrix(io.BytesIO(npy(array)))
        assert decoded.dtype == np.complex128 and np.array_equal(decoded, array.astype(np.complex128))


def record_state_file(root: Path, data: bytes) -> tuple[str, Path]:
    """A qex run whose density-matrix file holds `data`, logged with that file's own hash and size (as a
    damaged or foreign file the store records faithfully): (run id, the file)."""
    store = open_store(root)
    good = run_experiment("x", store=store)
    run = tracking.start_run(experiment="x", store=store, tags={"qex": "run"}, capture=False)
    with run:
        run.log_params({"n": 1, "qex.backend": "numpy_dm", "qex.params": json.dumps({"n": 1})})
        dest = store.root / "results" / f"{run.id}_rho.npy"
        dest.write_bytes(data)
        run.record_artifact(dest, type="application/x-npy", name="density_matrix")
        run.set_tag("qex.metadata", json.dumps(good.metadata))
    open_database(Store.open(root, db_name="qex.db")).dispose()
    return run.id, dest


@pytest.mark.parametrize("case", ["truncated", "pickled", "text", "not npy"])
def test_qex_reports_an_unreadable_state_file_as_one_error_line(tmp_path: Path, case: str) -> None:
    root = tmp_path / "qex_data"
    data, problem = DAMAGED[case]
    run_id, path = record_state_file(root, data)
    message = f"{path} is not a density matrix qex wrote: {problem}"
    refused(qex(root, "export", run_id, str(tmp_path / "out.csv")), message)
    assert not (tmp_path / "out.csv").exists()
    if case == "truncated":
        refused(qex(root, "compare", run_id, run_id), message)
        refused(qex(root, "show", run_id), message)  # what show says of a state holds only for a readable one


def test_qex_reports_a_missing_state_file_as_one_error_line(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    run_id, path = record_state_file(root, GOOD)
    path.unlink()
    for args in (("export", run_id, str(tmp_path / "out.npy")), ("compare", run_id, run_id)):
        out = qex(root, *args)
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        recorded = path.relative_to(root)  # the containment check names the recorded path and the store
        assert out.stderr == (
            f"Error: run {run_id} artifact 'density_matrix': its file '{recorded}' is missing from the store {root}\n"
        )
    with pytest.raises(StateFileError) as err:
        states.decode_density_matrix(path)
    assert str(err.value) == f"{path} is missing: restore it, or run the experiment again"


# ---------------------------------------------------------------- 4. CSV export that tools read back


def test_csv_export_reads_back_exactly_with_numpy_pandas_and_csv(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    circuit = Circuit(2).h(0).s(0).rx(1, 0.3).cnot(0, 1).t(1)
    result = run_circuit("mixed", circuit, {}, NumpyDensityMatrix(Noise(depolarizing=0.05)), store=root)
    rho = result.rho
    assert np.abs(rho.imag).max() > 0.1  # imaginary parts to get right
    out = tmp_path / "state.csv"
    done = qex(root, "export", result.run_id, str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.splitlines()[0] == "row,col,real,imag" and len(text.splitlines()) == 1 + 16

    def matrix(rows: Any, cols: Any, real: Any, imag: Any) -> np.ndarray:
        m = np.full((4, 4), np.nan, dtype=complex)
        m[np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)] = np.asarray(real) + 1j * np.asarray(imag)
        return m

    table = np.loadtxt(out, delimiter=",", skiprows=1)
    from_numpy = matrix(table[:, 0], table[:, 1], table[:, 2], table[:, 3])
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["row", "col", "real", "imag"] and frame["real"].dtype == np.float64
    from_pandas = matrix(frame["row"], frame["col"], frame["real"], frame["imag"])
    lines = list(csv.DictReader(io.StringIO(text)))
    from_csv = matrix(*([float(r[k]) for r in lines] for k in ("row", "col", "real", "imag")))
    for back in (from_numpy, from_pandas, from_csv):
        assert np.abs(back - rho).max() <= 1e-15


# ---------------------------------------------------------------- 5. sweep values: a grammar, not eval


def test_a_sweep_value_is_read_by_the_grammar_never_evaluated(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    allowed = "sweep values are numbers, pi, + - * / and parentheses (e.g. 3*pi/4)"
    refused(
        qex(root, "sweep", "ry", "--over", "theta=9**9**9:1:2", timeout=60),  # eval would compute for ever
        f"theta=9**9**9:1:2: '**' (a power) at character 2 is not allowed; {allowed}",
    )
    refused(
        qex(root, "sweep", "ry", "--over", "theta=0,__import__('os')"),
        f"theta=0,__import__('os'): unknown name '__import__' at character 3 (pi is the only one); {allowed}",
    )
    refused(
        qex(root, "sweep", "ry", "--over", "theta=0:1:1000000"),
        f"theta=0:1:1000000: a range of 1000000 points is more than the {MAX_POINTS} a sweep takes",
    )
    refused(
        qex(root, "sweep", "ry", "--over", "theta=0:1:1000", "--over", "n=1:1000:1000"),
        f"the sweep over theta, n has 1000000 points, more than the {MAX_POINTS} a sweep takes",
    )
    assert not root.exists()  # refused before the store was opened


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1e999", "the value at character 1 is too large to be a finite number"),
        ("1/0", "division by zero at character 2"),
        ("1,,2", "a value is empty (at character 3)"),
        ("pi/", "the value ends early: a number is missing at character 4"),
        ("(1+2", "the '(' at character 1 is not closed"),
        ("2^3", "unexpected '^' at character 2"),
        ("0:pi:4)", "unexpected ')' at character 7"),
        ("(" * 40 + "1" + ")" * 40, "parentheses nest deeper than 32 at character 33"),
    ],
)
def test_what_the_grammar_refuses_points_at_the_character(text: str, problem: str) -> None:
    with pytest.raises(Exception) as err:
        parse_values("x", text)
    assert str(err.value) == f"x={text}: {problem}; sweep values are numbers, pi, + - * / and parentheses (e.g. 3*pi/4)"


def test_ranges_lists_and_their_limits() -> None:
    assert parse_values("theta", "0:pi:3") == [0.0, pytest.approx(np.pi / 2), pytest.approx(np.pi)]
    assert parse_values("theta", "-pi/2, 3*pi/4, 2*(1+0.5), 1e-3, .5") == pytest.approx(
        [-np.pi / 2, 3 * np.pi / 4, 3.0, 0.001, 0.5]
    )
    assert len(parse_values("theta", f"0:1:{MAX_POINTS}")) == MAX_POINTS
    for text, problem in [
        ("0:1", "a range is start:stop:count, e.g. 0:pi:9; got 2 parts"),
        ("0:1:2.5", "the count of a range must be an integer, got 2.5"),
        ("0:1:0", "the count of a range must be at least 1, got 0"),
    ]:
        with pytest.raises(Exception) as err:
            parse_values("theta", text)
        assert str(err.value) == f"theta={text}: {problem}"
    with pytest.raises(Exception) as err:
        parse_grid(["theta"])
    assert str(err.value) == "--over 'theta' must be name=start:stop:count or name=a,b,c"


# ---------------------------------------------------------------- 6. integers stay integers


def test_integers_stay_integers_and_floats_floats() -> None:
    def kinds(text: str) -> list[tuple[type, float]]:
        return [(type(v), v) for v in parse_values("v", text)]

    assert kinds("1,2,3") == [(int, 1), (int, 2), (int, 3)]
    assert kinds("2*3,-4,1+1") == [(int, 6), (int, -4), (int, 2)]
    assert kinds("1:4:4") == [(int, 1), (int, 2), (int, 3), (int, 4)]
    assert kinds("0:1:3") == [(float, 0.0), (float, 0.5), (float, 1.0)]
    assert kinds("1.0,4/2,1e2,pi*0") == [(float, 1.0), (float, 2.0), (float, 100.0), (float, 0.0)]
    assert kinds("1.5:3:2") == [(float, 1.5), (float, 3.0)]


def test_a_sweep_over_a_qubit_count_runs_with_integers(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    for over in ("n=1,2", "n=1:2:2"):
        out = qex(root, "sweep", "ghz", "--over", over)
        assert out.returncode == 0, out.stderr
    listed = json.loads(qex(root, "runs", "--experiment", "ghz", "--format", "json").stdout)
    children = sorted(r["params"]["n"] for r in listed if "n" in r["params"])
    assert children == [1, 1, 2, 2] and all(type(n) is int for n in children)
    assert sorted(r["metadata"]["num_qubits"] for r in listed) == [1, 1, 2, 2]
    assert len(list((root / "artifacts").glob("*_sweep.html"))) == 2


def test_the_sweep_plot_takes_states_of_several_sizes() -> None:
    bell = np.zeros((4, 4))
    bell[np.ix_([0, 3], [0, 3])] = 0.5
    fig = sweep_figures.sweep_figure("n", [1, 2], [ONE, bell])
    traces = {t.name: t for t in fig.data}
    assert list(traces["qubit 0 trajectory"].z) == pytest.approx([-1.0, 0.0])
    assert list(traces["qubit 1 trajectory"].customdata[0]) == pytest.approx([2, 0.5])  # only n=2 has qubit 1
    assert list(traces["qubit 1 purity"].x) == [2] and list(traces["purity"].y) == pytest.approx([1.0, 1.0])
