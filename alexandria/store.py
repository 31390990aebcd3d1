"""Where a store keeps things: one directory, found the same way by every process.

Layout::

    <store>/alexandria.db                  the SQL projection (disposable; a plug-in may name it otherwise)
    <store>/runs/<run_id>/<segment>.jsonl  event logs, one segment per writing process
    <store>/runs/<run_id>/<segment>.jsonl.gz  a closed segment compacted at rest, still named <segment>.jsonl
    <store>/artifacts/<run_id>/<name>      copies of logged artifacts

Links: the root is resolved once, when the store is opened (a `--store` reached through a symbolic link is
fine); below it nothing is a link. Every directory Alexandria makes there is made by `make_dirs`, which
refuses a link on the way; a segment is opened by `open_segment`, which refuses a link and anything not a
regular file; a path about to be written or recorded is checked by `refuse_links`. What is refused raises
`UnsafePathError` naming the path (docs/log-format.md, "Links in the store").

Resolution order: the `store=` argument, else $ALEXANDRIA_STORE, else
`./alexandria_data` in the current directory.

The projection is the SQLite file inside the store unless a database URL is given: `Store.open(...,
db_url="postgresql://...")`, else $ALEXANDRIA_DB (see db.py). The logs stay in the store directory either
way: they are the truth, the database only their projection.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import (
    MissingFileError,
    NotRegularFileError,
    OutsideStoreError,
    RunNotFoundError,
    StoreError,
    UnsafePathError,
)
from .files import READ_NOFOLLOW, open_regular

STORE_ENV = "ALEXANDRIA_STORE"
#: A database URL (postgresql://...) for the projection instead of the store's SQLite file.
DB_ENV = "ALEXANDRIA_DB"
DEFAULT_STORE = "alexandria_data"
DB_NAME = "alexandria.db"
SEGMENT_SUFFIX = ".jsonl"
#: A closed segment compacted at rest (alexandria/compaction.py): `<name>.jsonl.gz`, still known as `<name>.jsonl`.
COMPRESSED_SUFFIX = SEGMENT_SUFFIX + ".gz"
_RUN_ID = re.compile(r"[0-9a-f]{32}\Z")  # \Z, not $: "$" also matches before a trailing newline

log = logging.getLogger(__name__)
#: Entries named like a segment that are not regular files, warned about once each.
_WARNED: set[str] = set()
#: The size the fold loop is given for an entry named like a segment (or a run folder) that is not one: it is
#: "read" once, into its problem (`open_segment` refuses it), and its position then says it was.
REFUSED_SIZE = 1


def describe_mode(mode: int) -> str:
    """What a file of this mode (from lstat, or fstat of a file opened without following links) is."""
    for test, what in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return what
    return "a device"


def make_dirs(path: Path) -> Path:
    """Create the absolute directory `path` and those missing above it, one at a time, each checked (lstat,
    never following it) to be a directory before anything is made inside it: the one way Alexandria makes a
    directory in a store. A link or a file on the way raises UnsafePathError naming it, and nothing is made
    through it. (The root was resolved when the store was opened, so no link above it is met here.)"""
    current = Path(path.anchor)
    for part in path.parts[1:]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            try:
                os.mkdir(current)
            except FileExistsError:  # made meanwhile by another process
                pass
            mode = os.lstat(current).st_mode
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{current} is {describe_mode(mode)} where Alexandria keeps a directory; it never writes "
                "through a link below the store's root: remove it, or pass another store"
            )
    return path


def refuse_links(path: Path) -> Path:
    """`path` (absolute, below a store's resolved root), unless it is or passes through a symbolic link:
    then UnsafePathError. For a path about to be written or recorded: no link target is ever touched."""
    if os.path.realpath(path) != str(path):
        where = "is a symbolic link" if os.path.islink(path) else "is inside a symbolic link"
        raise UnsafePathError(
            f"{path} {where}: Alexandria never reads or writes through a link below the store's root; remove the link"
        )
    return path


def open_segment(path: Path) -> int:
    """A read-only descriptor of the segment `path`, opened without following a link: a regular file named
    *.jsonl opened with O_NOFOLLOW (and O_NONBLOCK, so a FIFO never blocks), the folders above it resolving to
    themselves. Anything else (a link, a directory, a FIFO, a link or a file in a run folder's place) raises
    UnsafePathError; nothing of it is read. The one check: the listing's refusals are folded through it."""
    parent = path.parent
    if os.path.realpath(parent) != str(parent):
        raise UnsafePathError(_not_read(parent, "a symbolic link, or inside one"))
    try:
        fd = os.open(path, READ_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(_not_read(path, "a symbolic link")) from None
        raise
    mode = os.fstat(fd).st_mode
    named = path.name.endswith((SEGMENT_SUFFIX, COMPRESSED_SUFFIX))
    if not stat.S_ISREG(mode) or not named:  # a file where a run folder should be
        os.close(fd)
        what = describe_mode(mode) if not stat.S_ISREG(mode) else f"a file not named *{SEGMENT_SUFFIX}"
        raise UnsafePathError(_not_read(path, what))
    return fd


def compressed_path(path: Path) -> Path:
    """Where the segment `path` (`<name>.jsonl`) lies once compacted: `<name>.jsonl.gz`."""
    return path.with_name(path.name + ".gz")


def open_stored_segment(path: Path) -> tuple[int, Path]:
    """A read-only descriptor of the segment known as `path` (`<name>.jsonl`) and the file it is, checked as
    `open_segment` checks: THE rule of which file is read, the listing's too (`Store._run_entries`). The plain
    file while it exists (it is the original: a compaction removes it last, after its compressed copy is
    checked and in place), else the compressed one `<name>.jsonl.gz`. FileNotFoundError if neither is there."""
    try:
        return open_segment(path), path
    except FileNotFoundError:
        if not path.name.endswith(SEGMENT_SUFFIX):
            raise
    packed = compressed_path(path)
    return open_segment(packed), packed


def _not_read(path: Path, what: str) -> str:
    return (
        f"{path} is {what}: a segment is a regular file in a run folder and no link below the store's root is "
        "followed, so it was not read; remove it"
    )


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
                make_dirs(root / "runs")
                make_dirs(root / "artifacts")
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

    def claim_run_dir(self, run_id: str, remedy: str) -> bool:
        """Create the run's folder with one exclusive mkdir: True for the one process that made it (it writes
        the run's start), False if it was there already. Of several processes creating one new run at once
        (ranks, imports) exactly one wins. A store this process may not write is a StoreError ending in
        `remedy` (what the caller's user should do)."""
        try:
            make_dirs(self.runs_dir)
            os.mkdir(self.run_dir(run_id))
        except FileExistsError:
            return False
        except OSError as exc:  # permissions, a read-only mount, a full disk
            raise StoreError(f"cannot create a run directory in {self.runs_dir}: {exc.strerror}; {remedy}") from exc
        return True

    def run_exists(self, run_id: str) -> bool:
        """Whether the run's folder is there (UnsafePathError if a link or another file has its place)."""
        try:
            mode = os.lstat(self.run_dir(run_id)).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{self.run_dir(run_id)} is {describe_mode(mode)}, not a run folder: no link below the store's "
                "root is followed; remove it"
            )
        return True

    def require_run(self, run_id: str) -> None:
        if not is_run_id(run_id) or not self.run_exists(run_id):
            raise RunNotFoundError(f"no run {run_id!r} in store {self.root}; `alex runs` lists the runs there")

    def run_segments(self, run_id: str) -> list[Path]:
        """The run's segment files in creation order (their names start with the creation time)."""
        return [path for path, refused in self._run_entries(run_id) if not refused]

    def segments(self) -> Iterator[Path]:
        """Every segment file, in a stable order (run id, then segment name = creation order)."""
        return (path for path, refused in self.segment_entries() if not refused)

    def segment_entries(self) -> Iterator[tuple[Path, bool]]:
        """Every entry named like a segment, or like a run folder in `runs/`, in a stable order, and whether
        it is refused: a segment is a regular file and a run folder a directory, never a link (nor a FIFO, a
        directory named *.jsonl, ...). A refused entry is warned about once and never read; the projector
        records it once as a problem (`open_segment` says why)."""
        runs = self.runs_dir
        try:
            mode = os.lstat(runs).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(
                f"{runs} is {describe_mode(mode)}, not the store's runs folder: no link below the store's root "
                "is followed; remove it"
            )
        with os.scandir(runs) as entries:
            named = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries if is_run_id(e.name))
        for name, is_dir in named:
            if is_dir:
                yield from self._run_entries(name)
            else:
                yield _refused(runs / name), True

    def _run_entries(self, run_id: str) -> list[tuple[Path, bool]]:
        """The run's segments by the name they are known by (`<name>.jsonl`, compacted or not). Of a segment
        present both plain and compressed (a compaction between its rename and its unlink), the plain file is
        the one (`open_stored_segment`): the compressed one is refused only when it stands alone."""
        run_dir = self.run_dir(run_id)
        try:
            with os.scandir(run_dir) as entries:
                found = {
                    e.name: e.is_file(follow_symlinks=False)
                    for e in entries
                    if e.name.endswith((SEGMENT_SUFFIX, COMPRESSED_SUFFIX))
                }
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in sorted(found):
            if name.endswith(COMPRESSED_SUFFIX):
                plain = name[: -len(".gz")]
                if plain in found:
                    continue  # the plain file is read; this copy is a compaction's, not finished yet
                regular = found[name]
                out.append((run_dir / plain, False) if regular else (_refused(run_dir / name), True))
                continue
            out.append((run_dir / name, False) if found[name] else (_refused(run_dir / name), True))
        out.sort(key=lambda entry: entry[0].name)
        return out

    @staticmethod
    def run_id_of(rel: str) -> str:
        """The run a segment's relative path belongs to (`runs/<run_id>/<segment>`, or a refused `runs/<run_id>`)."""
        return rel.split("/")[1]

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
            raise OutsideStoreError(_outside(what, text, reason, self.root), path=text, reason=reason)
        real_root = self.root.resolve()
        try:
            real = (real_root / rel).resolve(strict=True)
        except FileNotFoundError:
            raise MissingFileError(
                f"{what}: its file {text!r} is missing from the store {self.root}", path=text, reason="missing"
            ) from None
        except (OSError, RuntimeError):  # a symlink loop, a component that is not a directory
            reason = "cannot be resolved (a symlink loop, or a file where a directory should be)"
            raise OutsideStoreError(_outside(what, text, reason, self.root), path=text, reason=reason) from None
        if real == real_root or not real.is_relative_to(real_root):
            reason = (
                "names the store itself"
                if real == real_root
                else f"leads outside the store through a symlink (to {real})"
            )
            raise OutsideStoreError(_outside(what, text, reason, self.root), path=text, reason=reason)
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


def _outside(what: str, recorded: str, reason: str, root: Path) -> str:
    return (
        f"{what}: its recorded path {recorded!r} {reason}; refused, as it is not inside the store {root} "
        "(Alexandria records only paths inside the store: the log was edited or comes from elsewhere)"
    )


def _refused(path: Path) -> Path:
    """An entry that is not what its name says (see `Store.segment_entries`), warned about once."""
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        log.warning("skipping %s: a segment is a regular file in a run folder, never a link; this is not", path)
    return path
