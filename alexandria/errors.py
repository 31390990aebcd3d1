"""One tree of typed errors: library code raises these, only the CLI prints them."""

from __future__ import annotations


class AlexandriaError(Exception):
    """Base of every error Alexandria raises on purpose. `pointer`: lines a command line prints under its
    `Error:` line, when there is something to point at (a filter's bad token, with a caret under it)."""

    pointer: str = ""


class InvalidInputError(AlexandriaError, ValueError):
    """A value handed to the API cannot be logged as it is (wrong type, empty key, ...)."""


class ParamConflictError(AlexandriaError, ValueError):
    """A parameter was logged twice in one run with different values."""


class RunNotFoundError(AlexandriaError, LookupError):
    """No run with that id exists in the store."""


class NoActiveRunError(AlexandriaError, RuntimeError):
    """A module-level logging call was made with no run started in this process."""


class RunEndedError(AlexandriaError, RuntimeError):
    """A logging call was made on a run handle that was already ended."""


class WriterError(AlexandriaError, OSError):
    """The background writer could not write the event log (disk full, permissions, ...)."""


class StoreError(AlexandriaError):
    """The store directory or its database cannot be used."""


class ForeignDatabaseError(StoreError):
    """The store's database holds tables Alexandria did not make: it is never written over or replaced."""


class UnsafePathError(StoreError):
    """A path below the store's root is a symbolic link, or not the kind of file it should be (a FIFO where a
    segment should be, a file where a directory should be). Alexandria never reads, writes or follows
    through a link below the root (the root itself may be one: it is resolved once)."""


class CorruptSegmentError(StoreError):
    """A compacted segment that does not decompress whole (cut short, damaged): `data` holds the lines read
    before the damage, `offset` where in the segment's lines it begins, `end` the segment's size."""

    def __init__(self, message: str, *, data: bytes = b"", offset: int = 0, end: int = 0) -> None:
        super().__init__(message)
        self.data = data
        self.offset = offset
        self.end = end


class ReadOnlyError(AlexandriaError):
    """A write was attempted through a read-only connection (for example `alex sql`)."""


class QueryError(AlexandriaError):
    """A SQL query handed to `alex sql` failed."""


class RecordedFileError(AlexandriaError):
    """A file a run recorded (an artifact, a dataset) cannot be used as it was logged. `path` is the path as
    recorded, `reason` why it was refused, for listings such as `alex verify`'s."""

    def __init__(self, message: str, *, path: str, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class OutsideStoreError(RecordedFileError):
    """A recorded path leaves the store (absolute, `..`, a symlink out): never opened, never read."""


class NotRegularFileError(RecordedFileError):
    """A recorded path is a directory, a FIFO or a device where a regular file was logged: never read."""


class MissingFileError(RecordedFileError):
    """A recorded file is no longer where the log says it is."""


class ChangedFileError(RecordedFileError):
    """A recorded file's size or SHA-256 differs from the logged one: it changed since it was logged."""


class UnfoldedEventError(AlexandriaError, TypeError):
    """An event type of the log has no fold rule (a developer added it to events.py, not to folding.py)."""


class UnsupportedError(AlexandriaError, NotImplementedError):
    """A call of another tracker's API (alexandria.wandb, alexandria.mlflow) that Alexandria cannot honour: the
    message names the call and what to do instead."""


class ImportSourceError(AlexandriaError):
    """What an importer was pointed at cannot be read: no such folder or store, nothing of that tracker in it,
    or the package that reads it is not installed."""


class MissingExtraError(AlexandriaError, ImportError):
    """An integration's framework (alexandria.integrations), or Pillow for `log_image`, is not installed: the
    message names the extra that installs it."""
