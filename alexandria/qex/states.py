"""Density matrices: validation, per-qubit reduced states, Bloch vectors, purity, entropy, fidelity.

Conventions (the numbers qex logs and plots):

* Qubit order is big-endian: qubit 0 is the leftmost tensor factor, so basis
  index ``b0 b1 ... b(n-1)`` in binary has qubit 0 as its most significant
  bit (Cirq's order for ``LineQubit.range(n)``).
* A valid state is square, of size 2**n, Hermitian, of trace 1 and positive
  semidefinite, each within ``atol`` (default 1e-8): Hermiticity as the
  largest entry of |rho - rho^H|, trace as |Tr rho - 1|, positivity as the
  most negative eigenvalue >= -atol.
* Bloch vector of a one-qubit state: r_i = Tr(rho sigma_i), i = x, y, z;
  |0> is +z, |1> is -z; |r| = 1 for a pure state, < 1 for a mixed one.
* Purity Tr(rho^2): 1 for a pure state, 1/2**n for the maximally mixed one.
* Von Neumann entropy S = -Tr(rho log2 rho), in bits (0 pure, 1 for a
  maximally mixed qubit); eigenvalues below 1e-12 count as zero.
* Fidelity is Uhlmann-Jozsa's, squared: F = (Tr sqrt(sqrt(rho) sigma sqrt(rho)))**2,
  in [0, 1], equal to |<psi|phi>|**2 for pure states (some texts use the
  square root of this; take `math.sqrt(F)` for theirs).
* Trace distance T = 1/2 ||rho - sigma||_1 = half the sum of |eigenvalues| of
  rho - sigma, in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidStateError

DEFAULT_ATOL = 1e-8

PAULI = {
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "z": np.array([[1, 0], [0, -1]], dtype=complex),
}


def validate_density_matrix(rho: Any, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """`rho` as a complex128 array, or InvalidStateError naming the first test it fails and by how much."""
    try:
        m = np.asarray(rho, dtype=np.complex128)
    except (TypeError, ValueError) as exc:
        raise InvalidStateError(f"not a numeric matrix: {exc}") from exc
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InvalidStateError(f"a density matrix must be square; got shape {m.shape}")
    size = m.shape[0]
    if size < 2 or size & (size - 1):
        raise InvalidStateError(f"a density matrix of n qubits is 2**n wide; got {size}, not a power of two >= 2")
    if not np.all(np.isfinite(m)):
        raise InvalidStateError("the matrix holds NaN or infinite entries")
    asym = float(np.max(np.abs(m - m.conj().T)))
    if asym > atol:
        raise InvalidStateError(f"not Hermitian: max |rho - rho^H| = {asym:.3g} > tolerance {atol:g}")
    trace = complex(np.trace(m))
    if abs(trace - 1) > atol:
        raise InvalidStateError(f"trace is {trace.real:.12g}, not 1 (off by {abs(trace - 1):.3g} > tolerance {atol:g})")
    lowest = float(np.linalg.eigvalsh(m)[0])
    if lowest < -atol:
        raise InvalidStateError(f"not positive semidefinite: smallest eigenvalue {lowest:.3g} < -{atol:g}")
    return m


def num_qubits(rho: np.ndarray) -> int:
    return int(rho.shape[0]).bit_length() - 1


def reduced_state(rho: np.ndarray, qubit: int) -> np.ndarray:
    """The 2x2 state of one qubit: the partial trace over all the others."""
    n = num_qubits(rho)
    if not 0 <= qubit < n:
        raise InvalidStateError(f"qubit {qubit} does not exist in a {n}-qubit state")
    t = rho.reshape((2,) * (2 * n))
    # axes 0..n-1 are the row qubits, n..2n-1 the column qubits: trace out every pair but `qubit`
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rows = list(letters[:n])
    cols = list(rows)
    cols[qubit] = letters[n]
    spec = "".join(rows) + "".join(cols) + "->" + rows[qubit] + cols[qubit]
    return np.einsum(spec, t)


def bloch_vector(rho1: np.ndarray) -> np.ndarray:
    """(x, y, z) of a one-qubit state."""
    return np.array([float(np.real(np.trace(rho1 @ PAULI[a]))) for a in "xyz"])


def purity(rho: np.ndarray) -> float:
    return float(np.real(np.einsum("ij,ji->", rho, rho)))


def von_neumann_entropy(rho: np.ndarray) -> float:
    """In bits."""
    w = np.linalg.eigvalsh(rho)
    w = w[w > 1e-12]
    return float(max(0.0, -np.sum(w * np.log2(w))))


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.conj().T


def fidelity(rho: np.ndarray, sigma: np.ndarray) -> float:
    """Uhlmann-Jozsa fidelity, squared convention (see the module docstring)."""
    if rho.shape != sigma.shape:
        raise InvalidStateError(f"cannot compare states of shapes {rho.shape} and {sigma.shape}")
    s = _sqrtm_psd(rho)
    inner = np.linalg.eigvalsh(s @ sigma @ s)
    return float(min(1.0, np.sum(np.sqrt(np.clip(inner, 0, None))) ** 2))


def trace_distance(rho: np.ndarray, sigma: np.ndarray) -> float:
    if rho.shape != sigma.shape:
        raise InvalidStateError(f"cannot compare states of shapes {rho.shape} and {sigma.shape}")
    return float(0.5 * np.sum(np.abs(np.linalg.eigvalsh(rho - sigma))))


def qubit_summary(rho: np.ndarray) -> list[dict[str, Any]]:
    """Per qubit: its Bloch vector, purity and entropy (bits)."""
    out = []
    for q in range(num_qubits(rho)):
        r1 = reduced_state(rho, q)
        out.append(
            {
                "qubit": q,
                "bloch": bloch_vector(r1).tolist(),
                "purity": purity(r1),
                "entropy_bits": von_neumann_entropy(r1),
            }
        )
    return out
