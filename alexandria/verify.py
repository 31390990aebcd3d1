"""Checking recorded files against the log: every artifact, media and dataset file a run logged has its size and
SHA-256 in the log, and this module is where they are compared with what is on disk now.

`verify_files` is `alex verify`: each file is found (an artifact only inside the store: `Store.recorded_file`),
opened as a regular file only (`files.open_regular`: a FIFO never hangs it) and hashed, and said to be ok,
missing, changed (size or SHA-256) or refused (outside the store, not a regular file, unreadable).
`read_recorded` is what a reader that loads a file whole (qex's density matrices) calls: the bytes it
returns are the bytes that were checked. `FileHashes` lets the dashboard check what it serves without
hashing a file again until its size or modification time changes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import (
    ChangedFileError,
    MissingFileError,
    NotRegularFileError,
    OutsideStoreError,
)
from .files import NotRegularFile, hash_directory, hash_stream, open_regular
from .store import Store

#: What a check finds, in the order `alex verify` lists problems.
STATUSES = ("changed", "missing", "refused", "ok")


@dataclass(frozen=True)
class FileCheck:
    """One recorded file and what was found: `status` one of `STATUSES`, `detail` why (empty when ok)."""

    run_id: str
    kind: str  # "artifact", "media" or "dataset"
    name: str
    path: str  # as recorded
    status: str
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    """Every file checked; `problems` those that are not ok."""

    checks: list[FileCheck]
    runs: int

    @property
    def problems(self) -> list[FileCheck]:
        order = {s: i for i, s in enumerate(STATUSES)}
        return sorted((c for c in self.checks if c.status != "ok"), key=lambda c: order[c.status])

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def summary(self) -> str:
        files = f"{len(self.checks)} recorded file(s) of {self.runs} run(s)"
        if not self.problems:
            return f"checked {files}: all match their logged size and SHA-256"
        found = ", ".join(f"{self.count(s)} {s}" for s in STATUSES[:-1])
        return f"checked {files}: {found}"

    def document(self) -> dict[str, Any]:
        return {
            "checked": len(self.checks),
            "runs": self.runs,
            **{s: self.count(s) for s in STATUSES},
            "files": [asdict(c) for c in self.checks],
        }


def verify_files(store: Store, run_ids: Sequence[str] | None = None) -> Verification:
    """Check every artifact, media and dataset file the runs (ids or unique prefixes; every run when None) logged
    against its logged size and SHA-256. Folds what is new in the logs first."""
    from .query import Reader, recorded_files, resolve_run_ids, run_count

    with Reader(store) as reader:
        ids = None if run_ids is None else list(dict.fromkeys(resolve_run_ids(reader.engine, run_ids)))
        runs = len(ids) if ids is not None else run_count(reader.engine)
        records = recorded_files(reader.engine, ids)
    return Verification([check_recorded(store, r) for r in records], runs)


def check_recorded(store: Store, record: dict[str, Any]) -> FileCheck:
    """One `query.recorded_files` row checked (see `verify_files`)."""
    name, path = record["name"] or "", record["path"] or ""
    check = FileCheck(record["run_id"], record["kind"], name, path, "ok")
    try:
        if record["kind"] in ("artifact", "media"):  # both kept inside the store
            _check_artifact(store, record)
        else:
            _check_dataset(record)
    except ChangedFileError as exc:
        return _with(check, "changed", exc.reason)
    except MissingFileError as exc:
        return _with(check, "missing", exc.reason)
    except (OutsideStoreError, NotRegularFileError) as exc:
        return _with(check, "refused", exc.reason)
    return check


def read_recorded(store: Store, run_id: str, name: str, record: dict[str, Any]) -> bytes:
    """The bytes of a run's artifact `name` (its `query.artifact_record`), read once and checked: inside the
    store, a regular file, of the logged size and SHA-256. Raises the `RecordedFileError` that says why not."""
    what = _what(run_id, "artifact", name)
    fd, _real = store.open_recorded(record["path"], what)
    with os.fdopen(fd, "rb") as f:
        logged = record["size"]
        if logged is not None and os.fstat(f.fileno()).st_size != logged:  # no need to read it to know
            size = os.fstat(f.fileno()).st_size
            raise _changed(store, what, record, f"its size is {size} bytes, {logged} were logged")
        data = f.read()
    _compare(store, what, record, hashlib.sha256(data).hexdigest(), len(data))
    return data


#: Files larger than this are not hashed when a page is viewed (their size is still compared): a request
#: would wait seconds per gigabyte. `alex verify` hashes every file.
HASH_ON_VIEW_LIMIT = 256 << 20


@dataclass
class FileHashes:
    """SHA-256s of files remembered by what `stat` says of them (device, inode, size, modification time):
    a file is hashed again only once one of those changes. What the dashboard keeps for its process."""

    _known: dict[tuple[int, int, int, int], str] = field(default_factory=dict)

    def warning(self, fd: int, record: dict[str, Any], *, full: bool) -> str | None:
        """Why the open file `fd` of an artifact (`record`: its size and sha256 as logged) no longer matches
        its log, or None. The size is always compared (free: `fstat`); the SHA-256 when `full` (hashed once
        per version of the file), or when this version's hash is already known; never for a file over
        `HASH_ON_VIEW_LIMIT`. `fd` is read from its start and left at its start."""
        info = os.fstat(fd)
        logged_size, logged_hash = record.get("size"), record.get("sha256")
        if logged_size is not None and info.st_size != logged_size:
            return f"changed since it was logged: {info.st_size} bytes, {logged_size} logged"
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        digest = self._known.get(key)
        if digest is None and full and info.st_size <= HASH_ON_VIEW_LIMIT:
            os.lseek(fd, 0, os.SEEK_SET)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                digest = hash_stream(f)[0]
            os.lseek(fd, 0, os.SEEK_SET)
            assert digest is not None
            self._known[key] = digest
        if digest is not None and logged_hash and digest != logged_hash:
            return "changed since it was logged: its SHA-256 differs from the logged one"
        return None


def _check_artifact(store: Store, record: dict[str, Any]) -> None:
    what = _what(record["run_id"], record["kind"], record["name"] or "")
    real = store.recorded_file(record["path"], what)
    if real.is_dir():
        try:
            digest, size = hash_directory(real)
        except NotRegularFile as exc:
            reason = f"holds something that is not a regular file ({exc})"
            raise NotRegularFileError(f"{what}: {reason}", path=record["path"], reason=reason) from None
        except OSError as exc:
            raise _unreadable(what, record, exc) from None
        _compare(store, what, record, digest, size)
        return
    fd, _real = store.open_recorded(record["path"], what)
    _compare_open(store, what, record, fd)


def _check_dataset(record: dict[str, Any]) -> None:
    """A dataset file lives where the run read it (its absolute path, outside the store as a rule): it is
    found there, never served, and read only if it is a regular file."""
    path = record["path"]
    what = _what(record["run_id"], "dataset", record["name"] or "")
    if not os.path.lexists(path):
        raise MissingFileError(f"{what}: its file {path!r} is missing", path=path, reason="missing")
    fd = open_regular(os.path.realpath(path))  # recorded unresolved: a link the user made is followed
    if fd is None:
        kind = "a directory" if os.path.isdir(path) else "not a regular file, or unreadable"
        raise NotRegularFileError(f"{what}: its file {path!r} is {kind}", path=path, reason=f"is {kind}")
    _compare_open(None, what, record, fd)


def _compare_open(store: Store | None, what: str, record: dict[str, Any], fd: int) -> None:
    with os.fdopen(fd, "rb", buffering=0) as f:
        logged = record["size"]
        size = os.fstat(f.fileno()).st_size
        if logged is not None and size != logged:
            raise _changed(store, what, record, f"its size is {size} bytes, {logged} were logged")
        try:
            digest, size = hash_stream(f)
        except OSError as exc:
            raise _unreadable(what, record, exc) from None
    assert digest is not None
    _compare(store, what, record, digest, size)


def _compare(store: Store | None, what: str, record: dict[str, Any], digest: str, size: int) -> None:
    logged_size, logged_hash = record["size"], record["sha256"]
    if logged_size is not None and size != logged_size:
        raise _changed(store, what, record, f"its size is {size} bytes, {logged_size} were logged")
    if logged_hash and digest != logged_hash:
        reason = f"its SHA-256 is {digest[:12]}..., {logged_hash[:12]}... was logged"
        raise _changed(store, what, record, reason)


def _changed(store: Store | None, what: str, record: dict[str, Any], reason: str) -> ChangedFileError:
    where = f"alex --store {store.root} verify" if store is not None else "alex verify"
    return ChangedFileError(
        f"{what}: its file {record['path']!r} changed since it was logged ({reason}); refused. "
        f"`{where}` lists every recorded file that changed",
        path=record["path"],
        reason=reason,
    )


def _unreadable(what: str, record: dict[str, Any], exc: OSError) -> NotRegularFileError:
    reason = f"cannot be read: {exc.strerror or exc}"
    return NotRegularFileError(f"{what}: its file {record['path']!r} {reason}", path=record["path"], reason=reason)


def _what(run_id: str, kind: str, name: str) -> str:
    return f"run {run_id} {kind} {name!r}"


def _with(check: FileCheck, status: str, detail: str) -> FileCheck:
    return FileCheck(check.run_id, check.kind, check.name, check.path, status, detail)
