"""The quantum plug-in's typed errors: branches of the one `AlexandriaError` tree, so both command
lines print them as `Error: ...` like any library error."""

from __future__ import annotations

from ..errors import AlexandriaError


class InvalidStateError(AlexandriaError, ValueError):
    """A matrix is not a valid density matrix: which test failed, and by how much."""


class QubitLimitError(AlexandriaError, ValueError):
    """A circuit has more qubits than a backend can simulate."""


class BackendError(AlexandriaError):
    """A backend cannot run (an optional package is missing, a circuit it cannot take)."""


class StateFileError(InvalidStateError):
    """A stored state's `.npy` file cannot be read as one: missing, unreadable, truncated, pickled, or not
    a numeric 2**n x 2**n matrix."""


class NotRerunnableError(AlexandriaError):
    """A run cannot be run again: it stored no circuit description (logged before qex stored them), or its
    circuit or backend is not one qex can rebuild."""
