"""Where a store keeps things: one directory, found the same way by every process.

Layout::

    <store>/alexandria.db                  the SQL projection (disposable); qex.db in a qex store
    <store>/runs/<run_id>/<segment>.jsonl  event logs, one segment per writing process
    <store>/artifacts/<run_id>/<name>      copies of logged artifacts

Resolution order: the `store=` argument, else $ALEXANDRIA_STORE, else
`./alexandria_data` in the current directory.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import RunNotFoundError, StoreError

STORE_ENV = "ALEXANDRIA_STORE"
DEFAULT_STORE = "alexandria_data"
DB_NAME = "alexandria.db"
#: The database of a qex store (the same projection, named as the qex seed names it).
QEX_DB_NAME = "qex.db"
SEGMENT_SUFFIX = ".jsonl"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def resolve_store_path(store: str | os.PathLike[str] | None = None) -> Path:
    """The absolute path of the store the caller means."""
    if store is None:
        store = os.environ.get(STORE_ENV) or DEFAULT_STORE
    return Path(store).expanduser().resolve()


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file inside the store so that no reader ever sees half of it: a temporary name beside
    `path`, fsync, rename over it, fsync the directory. A process killed midway leaves at most a
    `.<name>.<pid>.<random>.tmp` file, never a partial `path`. (Not mkstemp: its mode 0600 would make
    the file unreadable to others; 0666 minus the umask, like any new file.)"""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened here: the rename is as durable as this system makes it
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


@dataclass(frozen=True)
class Store:
    """A store directory and the paths inside it."""

    root: Path
    #: The database file inside the store: alexandria.db, or qex.db for a store qex made (found by its file).
    db_name: str = DB_NAME

    @classmethod
    def open(
        cls, store: str | os.PathLike[str] | Store | None = None, *, create: bool = True, db_name: str | None = None
    ) -> Store:
        if isinstance(store, Store):
            return store
        try:
            root = resolve_store_path(store)
        except RuntimeError as exc:  # "~nouser/x": no such home directory
            raise StoreError(f"cannot resolve store path {store!r}: {exc}") from exc
        if root.exists() and not root.is_dir():
            raise StoreError(f"store path {root} exists and is not a directory; pass another --store")
        if create:
            try:
                (root / "runs").mkdir(parents=True, exist_ok=True)
                (root / "artifacts").mkdir(exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {root}: {exc.strerror}") from exc
        if db_name is None:
            db_name = QEX_DB_NAME if (root / QEX_DB_NAME).exists() and not (root / DB_NAME).exists() else DB_NAME
        return cls(root, db_name)

    @property
    def db_path(self) -> Path:
        return self.root / self.db_name

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def artifact_dir(self, run_id: str) -> Path:
        return self.root / "artifacts" / run_id

    def run_exists(self, run_id: str) -> bool:
        return self.run_dir(run_id).is_dir()

    def require_run(self, run_id: str) -> None:
        if not is_run_id(run_id) or not self.run_exists(run_id):
            raise RunNotFoundError(f"no run {run_id!r} in store {self.root}; `alex runs` lists the runs there")

    def run_segments(self, run_id: str) -> list[Path]:
        """The run's segment files in creation order (their names start with the creation time)."""
        try:
            names = sorted(e.name for e in os.scandir(self.run_dir(run_id)) if e.name.endswith(SEGMENT_SUFFIX))
        except FileNotFoundError:
            return []
        return [self.run_dir(run_id) / name for name in names]

    def segments(self) -> Iterator[Path]:
        """Every segment file, in a stable order (run id, then segment name = creation order)."""
        try:
            run_dirs = sorted(e.name for e in os.scandir(self.runs_dir) if e.is_dir() and is_run_id(e.name))
        except FileNotFoundError:
            return
        for run_id in run_dirs:
            yield from self.run_segments(run_id)

    def relative(self, path: Path) -> str:
        """A path inside the store as stored in the database: relative, with forward slashes."""
        return path.relative_to(self.root).as_posix()
