"""Density matrices: validation, per-qubit reduced states, Bloch vectors, purity, entropy, fidelity.

Conventions (the numbers qex logs and plots):

* Qubit order is big-endian: qubit 0 is the leftmost tensor factor, so basis
  index ``b0 b1 ... b(n-1)`` in binary has qubit 0 as its most significant
  bit (Cirq's order for ``LineQubit.range(n)``).
* A valid state is square, of size 2**n, finite (no NaN or infinity),
  Hermitian, of trace 1 and positive semidefinite, each within ``atol``
  (default 1e-8): Hermiticity as the largest entry of |rho - rho^H|, trace as
  |Tr rho - 1|, positivity as the most negative eigenvalue >= -atol. Every
  public measure below checks its input by that one rule
  (`validate_density_matrix`) and raises `InvalidStateError` rather than
  return a plausible number for a matrix that is no state.
* A stored state is a `.npy` file of one numeric 2**n x 2**n matrix, read by
  `decode_density_matrix` only (never unpickled); a file that is missing,
  unreadable, truncated, pickled or of another dtype or shape raises
  `StateFileError` naming the file.
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

import io
import operator
import os
from typing import IO, Any

import numpy as np

from .errors import InvalidStateError, StateFileError

DEFAULT_ATOL = 1e-8

PAULI = {
    "x": np.array([[0, 1], [1, 0]], dtype=complex),
    "y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "z": np.array([[1, 0], [0, -1]], dtype=complex),
}


def _check_shape(shape: tuple[int, ...], label: str) -> None:
    """Square and 2**n wide: the shape rule, shared by in-memory matrices and `.npy` headers."""
    if len(shape) != 2 or shape[0] != shape[1]:
        raise InvalidStateError(f"{label}a density matrix must be square; got shape {shape}")
    size = shape[0]
    if size < 2 or size & (size - 1):
        raise InvalidStateError(
            f"{label}a density matrix of n qubits is 2**n wide; got {size}, not a power of two >= 2"
        )


class ValidState:
    """A density matrix that passed the one rule, with the eigenvalues the positivity test found.

    Why: an n-qubit state's 2**n x 2**n eigendecomposition is the cost that grows fastest (a 1024 x 1024
    one at 10 qubits takes seconds); a run validates its state once (`check_state`) and every measure given
    a `ValidState` skips the check and reuses its eigenvalues, so each state is decomposed once. Made only
    by `check_state`; its matrix is a read-only copy, so what was checked cannot change afterwards.
    """

    __slots__ = ("matrix", "eigenvalues", "atol")

    def __init__(self, matrix: np.ndarray, eigenvalues: np.ndarray, atol: float) -> None:
        self.matrix = matrix
        self.eigenvalues = eigenvalues  # ascending, as numpy.linalg.eigvalsh gives them
        self.atol = atol

    @property
    def num_qubits(self) -> int:
        return int(self.matrix.shape[0]).bit_length() - 1

    def __repr__(self) -> str:
        return f"ValidState({self.num_qubits} qubits)"


def _check(rho: Any, atol: float, name: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(rho as complex128, its ascending eigenvalues), or InvalidStateError: the one rule, written once."""
    label = f"{name}: " if name else ""
    try:
        m = np.asarray(rho, dtype=np.complex128)
    except (TypeError, ValueError) as exc:
        raise InvalidStateError(f"{label}not a numeric matrix: {exc}") from exc
    _check_shape(m.shape, label)
    if not np.all(np.isfinite(m)):
        raise InvalidStateError(f"{label}the matrix holds NaN or infinite entries")
    asym = float(np.max(np.abs(m - m.conj().T)))
    if asym > atol:
        raise InvalidStateError(f"{label}not Hermitian: max |rho - rho^H| = {asym:.3g} > tolerance {atol:g}")
    trace = complex(np.trace(m))
    if abs(trace - 1) > atol:
        raise InvalidStateError(
            f"{label}trace is {trace.real:.12g}, not 1 (off by {abs(trace - 1):.3g} > tolerance {atol:g})"
        )
    eigenvalues = np.linalg.eigvalsh(m)
    lowest = float(eigenvalues[0])
    if lowest < -atol:
        raise InvalidStateError(f"{label}not positive semidefinite: smallest eigenvalue {lowest:.3g} < -{atol:g}")
    return m, eigenvalues


def check_state(rho: Any, atol: float = DEFAULT_ATOL, *, name: str | None = None) -> ValidState:
    """`rho` checked by the one rule, kept with its eigenvalues (`ValidState`); a `ValidState` checked at
    this tolerance or a stricter one is returned as it is, with no second decomposition."""
    if isinstance(rho, ValidState) and rho.atol <= atol:
        return rho
    m, eigenvalues = _check(rho.matrix if isinstance(rho, ValidState) else rho, atol, name)
    frozen = m.copy()
    frozen.setflags(write=False)
    eigenvalues.setflags(write=False)
    return ValidState(frozen, eigenvalues, atol)


def validate_density_matrix(rho: Any, atol: float = DEFAULT_ATOL, *, name: str | None = None) -> np.ndarray:
    """`rho` as a complex128 array, or InvalidStateError naming the first test it fails and by how much.

    The one rule for what a state is: every measure here, the pictures and the store check with it.
    `name` (e.g. "sigma" or a file) starts the message, so a caller passing two states learns which one.
    A `ValidState` (already checked, `check_state`) gives its matrix back with no second check.
    """
    if isinstance(rho, ValidState) and rho.atol <= atol:
        return rho.matrix
    return _check(rho.matrix if isinstance(rho, ValidState) else rho, atol, name)[0]


def num_qubits(rho: Any) -> int:
    """n for a 2**n x 2**n matrix (its shape checked, not its entries: cheap, for sizes and labels)."""
    if isinstance(rho, ValidState):
        return rho.num_qubits
    _check_shape(np.shape(rho), "")
    return int(np.shape(rho)[0]).bit_length() - 1


def _reduced(m: np.ndarray, qubit: int) -> np.ndarray:
    n = num_qubits(m)
    t = m.reshape((2,) * (2 * n))
    # axes 0..n-1 are the row qubits, n..2n-1 the column qubits: trace out every pair but `qubit`
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    rows = list(letters[:n])
    cols = list(rows)
    cols[qubit] = letters[n]
    spec = "".join(rows) + "".join(cols) + "->" + rows[qubit] + cols[qubit]
    return np.einsum(spec, t)


def reduced_state(rho: Any, qubit: int, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """The 2x2 state of one qubit: the partial trace over all the others."""
    m = validate_density_matrix(rho, atol)
    n = num_qubits(m)
    try:
        q = operator.index(qubit)
    except TypeError:
        q = None
    if isinstance(qubit, bool) or q is None or not 0 <= q < n:
        raise InvalidStateError(f"qubit {qubit!r} does not exist in a {n}-qubit state (0..{n - 1})")
    return _reduced(m, q)


def _bloch(m1: np.ndarray) -> np.ndarray:
    return np.array([float(np.real(np.trace(m1 @ PAULI[a]))) for a in "xyz"])


def bloch_vector(rho1: Any, atol: float = DEFAULT_ATOL) -> np.ndarray:
    """(x, y, z) of a one-qubit state."""
    m = validate_density_matrix(rho1, atol)
    if m.shape != (2, 2):
        raise InvalidStateError(
            f"a Bloch vector is of one qubit's 2x2 state; got a {num_qubits(m)}-qubit state: "
            "take reduced_state(rho, qubit) first"
        )
    return _bloch(m)


def _purity(m: np.ndarray) -> float:
    return float(np.real(np.einsum("ij,ji->", m, m)))


def purity(rho: Any, atol: float = DEFAULT_ATOL) -> float:
    """Tr(rho^2)."""
    return _purity(validate_density_matrix(rho, atol))


def _entropy_of(w: np.ndarray) -> float:
    w = w[w > 1e-12]
    return float(max(0.0, -np.sum(w * np.log2(w))))


def _entropy(m: np.ndarray) -> float:
    return _entropy_of(np.linalg.eigvalsh(m))


def von_neumann_entropy(rho: Any, atol: float = DEFAULT_ATOL) -> float:
    """In bits, from the eigenvalues the check found (no second decomposition)."""
    return _entropy_of(check_state(rho, atol).eigenvalues)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.conj().T


def _pair(rho: Any, sigma: Any, atol: float) -> tuple[np.ndarray, np.ndarray]:
    r = validate_density_matrix(rho, atol, name="rho")
    s = validate_density_matrix(sigma, atol, name="sigma")
    if r.shape != s.shape:
        raise InvalidStateError(f"cannot compare states of shapes {r.shape} and {s.shape}")
    return r, s


def fidelity(rho: Any, sigma: Any, atol: float = DEFAULT_ATOL) -> float:
    """Uhlmann-Jozsa fidelity, squared convention (see the module docstring)."""
    r, s = _pair(rho, sigma, atol)
    root = _sqrtm_psd(r)
    inner = np.linalg.eigvalsh(root @ s @ root)
    return float(min(1.0, np.sum(np.sqrt(np.clip(inner, 0, None))) ** 2))


def trace_distance(rho: Any, sigma: Any, atol: float = DEFAULT_ATOL) -> float:
    r, s = _pair(rho, sigma, atol)
    return float(min(1.0, 0.5 * np.sum(np.abs(np.linalg.eigvalsh(r - s)))))


def qubit_summary(rho: Any, atol: float = DEFAULT_ATOL) -> list[dict[str, Any]]:
    """Per qubit: its Bloch vector, purity and entropy (bits)."""
    m = validate_density_matrix(rho, atol)
    out = []
    for q in range(num_qubits(m)):
        r1 = _reduced(m, q)
        out.append({"qubit": q, "bloch": _bloch(r1).tolist(), "purity": _purity(r1), "entropy_bits": _entropy(r1)})
    return out


# -- stored states: .npy files ---------------------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY"
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}

NpySource = bytes | bytearray | memoryview | IO[bytes] | str | os.PathLike[str]


def decode_density_matrix(source: NpySource, atol: float = DEFAULT_ATOL, *, name: str | None = None) -> np.ndarray:
    """A `.npy` file (its path, an open binary file, or its bytes) as a validated state.

    The one reader of stored states. It never unpickles, and it checks the header (version, dtype, shape)
    against the bytes that follow before reading any, so a damaged file costs no more memory than it
    holds; every way the file can be wrong is a `StateFileError` naming it (`name`, else the path).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(io.BytesIO(bytes(source)), name or "the .npy data", atol)
    if isinstance(source, str | os.PathLike):
        label = name or os.fspath(source)
        try:
            with open(source, "rb") as f:
                return _decode(f, label, atol)
        except FileNotFoundError:
            raise StateFileError(f"{label} is missing: restore it, or run the experiment again") from None
        except OSError as exc:
            raise StateFileError(f"{label} cannot be read: {exc.strerror or exc}") from exc
    label = name or str(getattr(source, "name", "the .npy file"))
    try:
        stream: IO[bytes] = source if source.seekable() else io.BytesIO(source.read())
        return _decode(stream, label, atol)
    except OSError as exc:
        raise StateFileError(f"{label} cannot be read: {exc.strerror or exc}") from exc


def _decode(f: IO[bytes], label: str, atol: float) -> np.ndarray:
    start = f.tell()
    total = f.seek(0, os.SEEK_END) - start
    f.seek(start)
    what = f"{label} is not a density matrix qex wrote"
    head = f.read(len(_NPY_MAGIC) + 2)  # the magic string, then the format version
    if total == 0:
        raise StateFileError(f"{what}: the file is empty (0 bytes)")
    if head[: len(_NPY_MAGIC)] != _NPY_MAGIC[: len(head)]:
        raise StateFileError(f"{what}: it is not a .npy file (it does not start with numpy's magic bytes)")
    if len(head) < len(_NPY_MAGIC) + 2:
        raise StateFileError(f"{what}: it is truncated ({total} bytes, inside the .npy header)")
    version = (head[6], head[7])
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise StateFileError(f"{what}: .npy format version {version[0]}.{version[1]} is not one qex reads (1.0, 2.0)")
    try:
        shape, fortran_order, dtype = reader(f)
    except (ValueError, TypeError, SyntaxError) as exc:
        problem = "truncated" if "EOF" in str(exc) else "damaged"
        raise StateFileError(f"{what}: its .npy header is {problem} ({exc})") from None
    if dtype.hasobject:
        raise StateFileError(f"{what}: it holds Python objects (a pickled array), which qex never loads")
    if dtype.kind not in "iufc" or dtype.subdtype is not None:
        raise StateFileError(f"{what}: it holds {dtype} values; a state is a matrix of numbers (complex128)")
    _check_shape(tuple(shape), f"{label}: ")
    count = int(shape[0]) * int(shape[1])
    expected = count * dtype.itemsize
    remaining = total - (f.tell() - start)
    if remaining < expected:
        raise StateFileError(
            f"{what}: it is truncated: its header declares a {shape[0]}x{shape[1]} {dtype} matrix "
            f"({expected} bytes) but only {remaining} bytes follow"
        )
    if remaining > expected:
        raise StateFileError(
            f"{what}: {remaining - expected} bytes follow the {shape[0]}x{shape[1]} {dtype} matrix its header declares"
        )
    flat = np.frombuffer(f.read(expected), dtype=dtype, count=count)
    matrix = flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)
    return validate_density_matrix(matrix, atol, name=label)


# -- exported states: CSV --------------------------------------------------------------------------------------
#: `qex export RUN out.csv`: a header, then one line per entry, row-major.
CSV_COLUMNS = ("row", "col", "real", "imag")


def density_matrix_csv(rho: Any) -> str:
    """The matrix as long-format CSV (`row,col,real,imag`, floats as Python's shortest exact repr), which
    pandas and numpy read back exactly with no converter: rho[row, col] = real + 1j * imag."""
    m = validate_density_matrix(rho)
    out = io.StringIO()
    out.write(",".join(CSV_COLUMNS) + "\n")
    for (i, j), v in np.ndenumerate(m):
        out.write(f"{i},{j},{float(v.real)!r},{float(v.imag)!r}\n")
    return out.getvalue()
