"""qex: what a recorded run costs beside the work it cannot avoid.

A run must simulate its circuit and decompose each state it checks once (the positivity test needs the
eigenvalues; entropy reuses them). The limit is that work, timed in the same run on the same matrices:
one simulation plus one `numpy.linalg.eigvalsh` per state that must be decomposed (1 noiseless; a noisy
run also checks its noiseless twin and needs fidelity's two and trace distance's one: 5, and 2 simulations).
The eigendecompositions are counted while the run is timed (a count above the minimum is the regression).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.qex.backends import Noise, NumpyDensityMatrix
from alexandria.qex.experiments import get_experiment
from alexandria.qex.runner import open_store, run_circuit

from .common import Result

#: Decompositions of the full state a run needs at least: noiseless, noisy (see the module docstring).
NEEDED = {False: 1, True: 5}


@contextmanager
def counting_decompositions(min_size: int) -> Iterator[list[str]]:
    """Every numpy.linalg eigh/eigvalsh of a matrix at least `min_size` wide, by name, while inside."""
    calls: list[str] = []
    originals: dict[str, Callable[..., Any]] = {"eigh": np.linalg.eigh, "eigvalsh": np.linalg.eigvalsh}

    def wrap(name: str) -> Callable[..., Any]:
        def counted(a: Any, *args: Any, **kwargs: Any) -> Any:
            if np.shape(a)[0] >= min_size:
                calls.append(name)
            return originals[name](a, *args, **kwargs)

        return counted

    try:
        for name in originals:
            setattr(np.linalg, name, wrap(name))
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(np.linalg, name, fn)


def bench_qex(quick: bool, tmp: Path) -> list[Result]:
    """`run_circuit` of a GHZ state, noiseless (6 qubits quick, 10 full) and with depolarizing noise (6, 8:
    its five decompositions at 10 qubits would take minutes on a shared machine)."""
    repeat = 1 if quick else 3
    store = open_store(tmp / "qex")
    out: list[Result] = []
    for noisy in (False, True):
        n = 6 if quick else (8 if noisy else 10)
        circuit = get_experiment("ghz").circuit({"n": n})
        backend = NumpyDensityMatrix(Noise(depolarizing=0.01) if noisy else Noise(), max_qubits=n)
        runs, counts, sims, eigs = [], [], [], []
        for _ in range(repeat):  # interleaved: a shared machine's load falls on the run and its limit alike
            with counting_decompositions(2**n) as calls:
                t0 = time.perf_counter()
                result = run_circuit("ghz", circuit, {"n": n}, backend, store=store, capture=False)
                runs.append(time.perf_counter() - t0)
            counts.append(len(calls))
            rho = np.array(result.rho)
            t0 = time.perf_counter()
            backend.run(circuit)
            if noisy:
                NumpyDensityMatrix(max_qubits=n).run(circuit)
            sims.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            np.linalg.eigvalsh(rho)
            eigs.append(time.perf_counter() - t0)
        run_s, sim_s, eig_s = statistics.median(runs), statistics.median(sims), statistics.median(eigs)
        limit_s = sim_s + NEEDED[noisy] * eig_s
        label = "noisy (depol 0.01)" if noisy else "noiseless"
        out.append(
            Result(
                f"qex: run_circuit {n}q {label}",
                60 / run_s,
                "runs/min",
                60 / limit_s,
                f"simulate + {NEEDED[noisy]} eigvalsh of the {2**n}x{2**n} state",
                target=f"{NEEDED[noisy]} decompositions a run; the limit most of a large run",
                extra={
                    "seconds_per_run": run_s,
                    "limit_seconds": limit_s,
                    "simulate_s": sim_s,
                    "one_eigvalsh_s": eig_s,
                    "decompositions_per_run": max(counts),
                },
            )
        )
    return out
