"""qex: each state's eigendecomposition is done once per run, and the checked state cannot drift from its check."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from alexandria.qex import states
from alexandria.qex.backends import Noise, NumpyDensityMatrix
from alexandria.qex.errors import InvalidStateError
from alexandria.qex.experiments import get_experiment
from alexandria.qex.runner import run_circuit, sweep
from benchmarks.qex import NEEDED, counting_decompositions


@pytest.mark.parametrize("noisy", [False, True], ids=["noiseless", "noisy"])
def test_run_circuit_decomposes_each_state_once(tmp_path: Path, noisy: bool) -> None:
    n = 5
    circuit = get_experiment("ghz").circuit({"n": n})
    backend = NumpyDensityMatrix(Noise(depolarizing=0.02) if noisy else Noise())
    with counting_decompositions(2**n) as calls:
        result = run_circuit("ghz", circuit, {"n": n}, backend, store=tmp_path / "s", capture=False)
    # noiseless: the check's eigvalsh only (entropy reuses it); noisy: + the ideal's check, fidelity's sqrt
    # and inner spectrum, and trace distance's spectrum
    assert len(calls) == NEEDED[noisy] == (5 if noisy else 1), calls
    # and the numbers are still right: GHZ is pure with every qubit maximally mixed
    if not noisy:
        assert result.metadata["entropy_bits"] == pytest.approx(0.0, abs=1e-9)
        assert result.metadata["purity"] == pytest.approx(1.0, abs=1e-12)
        assert all(q["entropy_bits"] == pytest.approx(1.0, abs=1e-9) for q in result.metadata["qubits"])
    else:
        assert 0 < result.metadata["fidelity_to_ideal"] < 1
        assert result.metadata["entropy_bits"] > 0.01


def test_a_sweep_reuses_its_children_states(tmp_path: Path) -> None:
    n = 4
    backend = NumpyDensityMatrix(Noise(depolarizing=0.02))
    with counting_decompositions(2**n) as calls:
        sweep("ghz", {"n": [n, n]}, backend=backend, store=tmp_path / "s")
    assert len(calls) == 2 * NEEDED[True]  # the sweep plot checks nothing again


def test_measures_of_a_checked_state_equal_those_of_the_matrix() -> None:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(8, 8)) + 1j * rng.normal(size=(8, 8))
    rho = a @ a.conj().T
    rho /= np.trace(rho)
    w = np.linalg.eigvalsh(rho)
    state = states.check_state(rho)
    assert states.von_neumann_entropy(state) == pytest.approx(float(-np.sum(w * np.log2(w))), abs=1e-12)
    assert states.purity(state) == pytest.approx(float(np.sum(w**2)), abs=1e-12)
    assert states.qubit_summary(state) == states.qubit_summary(rho)
    assert states.fidelity(state, rho) == pytest.approx(1.0, abs=1e-9)
    assert np.array_equal(states.validate_density_matrix(state), rho)


def test_a_checked_state_cannot_change_after_its_check() -> None:
    rho = np.diag([1.0, 0.0]).astype(complex)
    state = states.check_state(rho)
    rho[0, 0] = 5.0  # the caller's array is not the checked one
    assert state.matrix[0, 0] == 1.0
    with pytest.raises(ValueError):
        state.matrix[0, 0] = 5.0


def test_a_stricter_tolerance_checks_again() -> None:
    rho = np.diag([1.0 + 1e-6, -1e-6]).astype(complex)
    loose = states.check_state(rho, atol=1e-5)
    assert states.check_state(loose, atol=1e-5) is loose
    with pytest.raises(InvalidStateError, match="not positive semidefinite"):
        states.check_state(loose, atol=1e-8)
    with pytest.raises(InvalidStateError, match="trace"):
        states.check_state(np.eye(2) * math.pi)
