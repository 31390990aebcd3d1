"""Where a store keeps things: one directory, found the same way by every process.

Layout::

    <store>/alexandria.db                  the SQL projection (disposable; a plug-in may name it otherwise)
    <store>/runs/<run_id>/<segment>.jsonl  event logs, one segment per writing process
    <store>/artifacts/<run_id>/<name>      copies of logged artifacts

Resolution order: the `store=` argument, else $ALEXANDRIA_STORE, else
`./alexandria_data` in the current directory.

The projection is the SQLite file inside the store unless a database URL is given: `Store.open(...,
db_url="postgresql://...")`, else $ALEXANDRIA_DB (see db.py). The logs stay in the store directory either
way: they are the truth, the database only their projection.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import MissingFileError, NotRegularFileError, OutsideStoreError, RunNotFoundError, StoreError
from .files import open_regular

STORE_ENV = "ALEXANDRIA_STORE"
#: A database URL (postgresql://...) for the projection instead of the store's SQLite file.
DB_ENV = "ALEXANDRIA_DB"
DEFAULT_STORE = "alexandria_data"
DB_NAME = "alexandria.db"
SEGMENT_SUFFIX = ".jsonl"
_RUN_ID = re.compile(r"[0-9a-f]{32}\Z")  # \Z, not $: "$" also matches before a trailing newline

log = logging.getLogger(__name__)
#: Entries named like a segment that are not regular files, warned about once each.
_WARNED: set[str] = set()


def resolve_store_path(store: str | os.PathLike[str] | None = None) -> Path:
    """The absolute path of the store the caller means."""
    if store is None:
        store = os.environ.get(STORE_ENV) or DEFAULT_STORE
    return Path(store).expanduser().resolve()


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


@dataclass(frozen=True)
class Store:
    """A store directory and the paths inside it."""

    root: Path
    #: The database file inside the store; None: alexandria.db, or a name a plug-in gives (`database_names`)
    #: when only a file of that name is there. Resolved when first needed: never on the logging path.
    db_name: str | None = None
    #: The projection's database server (a URL, e.g. postgresql://host/db); None: the SQLite file `db_path`.
    db_url: str | None = None

    @classmethod
    def open(
        cls,
        store: str | os.PathLike[str] | Store | None = None,
        *,
        create: bool = True,
        db_name: str | None = None,
        db_url: str | None = None,
    ) -> Store:
        """`db_url` (else $ALEXANDRIA_DB, else none: the SQLite file) is where the projection lives."""
        if isinstance(store, Store):
            return store if db_url is None else replace(store, db_url=db_url)
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
        return cls(root, db_name, db_url or os.environ.get(DB_ENV) or None)

    @property
    def db_path(self) -> Path:
        """The SQLite file of the projection (used only when `db_url` is None)."""
        if self.db_name is not None:
            return self.root / self.db_name
        default = self.root / DB_NAME
        if not default.exists():
            from .plugins import database_names

            for name in database_names():
                if (self.root / name).exists():
                    return self.root / name
        return default

    @property
    def database(self) -> Path | str:
        """Where the projection lives: the database URL, else the SQLite file (what db.py's engines take)."""
        return self.db_url or self.db_path

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
            with os.scandir(self.run_dir(run_id)) as entries:
                found = [e for e in entries if e.name.endswith(SEGMENT_SUFFIX)]
        except FileNotFoundError:
            return []
        names = []
        for entry in found:
            if entry.is_file(follow_symlinks=False):
                names.append(entry.name)
            elif entry.path not in _WARNED:  # a directory, a FIFO, a link: no process of ours writes one
                _WARNED.add(entry.path)
                log.warning("skipping %s: a segment is a regular file, this is not", entry.path)
        return [self.run_dir(run_id) / name for name in sorted(names)]

    def segments(self) -> Iterator[Path]:
        """Every segment file, in a stable order (run id, then segment name = creation order)."""
        try:
            with os.scandir(self.runs_dir) as entries:
                run_dirs = sorted(e.name for e in entries if e.is_dir() and is_run_id(e.name))
        except FileNotFoundError:
            return
        for run_id in run_dirs:
            yield from self.run_segments(run_id)

    def recorded_file(self, recorded: str | None, what: str) -> Path:
        """The real path of a path a log records inside the store (an artifact's), once it is shown to lie
        there: the one check every reader of a recorded path makes before it opens anything.

        The path must be relative, without `..`, NUL or backslash, and, every symlink followed, still lie
        inside the store's own real root; else `OutsideStoreError` (a forged or foreign log: nothing is
        opened). `MissingFileError` if nothing is there. `what` names it in the message ("run 1f2e... artifact
        'model'")."""
        text = recorded or ""
        rel = PurePosixPath(text)
        reason = None
        if not text:
            reason = "is empty"
        elif "\0" in text or "\\" in text:
            reason = "holds a NUL or a backslash"
        elif rel.is_absolute() or PureWindowsPath(text).drive:
            reason = "is absolute"
        elif ".." in rel.parts:
            reason = "climbs out with '..'"
        if reason is not None:
            raise OutsideStoreError(_refused(what, text, reason, self.root), path=text, reason=reason)
        real_root = self.root.resolve()
        try:
            real = (real_root / rel).resolve(strict=True)
        except FileNotFoundError:
            raise MissingFileError(
                f"{what}: its file {text!r} is missing from the store {self.root}", path=text, reason="missing"
            ) from None
        except (OSError, RuntimeError):  # a symlink loop, a component that is not a directory
            reason = "cannot be resolved (a symlink loop, or a file where a directory should be)"
            raise OutsideStoreError(_refused(what, text, reason, self.root), path=text, reason=reason) from None
        if real == real_root or not real.is_relative_to(real_root):
            reason = (
                "names the store itself"
                if real == real_root
                else f"leads outside the store through a symlink (to {real})"
            )
            raise OutsideStoreError(_refused(what, text, reason, self.root), path=text, reason=reason)
        return real

    def open_recorded(self, recorded: str | None, what: str) -> tuple[int, Path]:
        """A file descriptor and the real path of a recorded file (`recorded_file`), opened only if it is a
        regular file (`files.open_regular`: a FIFO never hangs the reader); else `NotRegularFileError`."""
        real = self.recorded_file(recorded, what)
        fd = open_regular(real)
        if fd is None:
            try:
                mode = os.lstat(real).st_mode
            except OSError:
                mode = 0
            reason = (
                "is a directory"
                if stat.S_ISDIR(mode)
                else "cannot be opened (permission denied?)"
                if stat.S_ISREG(mode)
                else "is not a regular file (a FIFO, a device or a symlink)"
            )
            raise NotRegularFileError(
                f"{what}: its file {recorded!r} {reason}; refused", path=recorded or "", reason=reason
            )
        return fd, real

    def relative(self, path: Path) -> str:
        """A path inside the store as stored in the database: relative, with forward slashes."""
        return path.relative_to(self.root).as_posix()


def _refused(what: str, recorded: str, reason: str, root: Path) -> str:
    return (
        f"{what}: its recorded path {recorded!r} {reason}; refused, as it is not inside the store {root} "
        "(Alexandria records only paths inside the store: the log was edited or comes from elsewhere)"
    )
