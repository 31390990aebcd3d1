"""Files written so that no reader ever sees half of one, and the one way files are hashed.

Atomic writes: a temporary name beside the target, fsync of the file, a rename over the target, fsync of
the directory. A process killed midway leaves at most a `.<name>.<pid>.<random>.tmp` file, never a partial
target. Used for artifacts, captured code, reports, exports and plug-ins' files. (Not mkstemp: its mode 0600
would make the file unreadable to others; new files get 0666 minus the umask, like any other.)

Hashes are SHA-256 of a file's bytes (what `sha256sum` prints), read in `CHUNK_SIZE` pieces so that a
file of any size costs one chunk of memory: artifacts, datasets and captured code all use `hash_file`
(`hash_directory` for a directory artifact).

Reading a file a log names (`open_regular`): regular files only, opened without blocking and without
following a final symlink, so a FIFO or a device put in its place never hangs or feeds the reader.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, overload

#: Bytes read at a time when hashing or copying a file.
CHUNK_SIZE = 1 << 20

_PathLike = str | bytes | os.PathLike[Any]
#: Flags to open a file for reading that is never a link followed nor a FIFO waited on (fstat tells the rest).
READ_NOFOLLOW = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

log = logging.getLogger(__name__)


def temporary_name(path: Path) -> Path:
    """A name beside `path` that no other process or thread can take."""
    import secrets  # here, as hashlib and shutil below: they cost every `alex` command's start otherwise

    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def fsync_directory(directory: Path) -> None:
    """Make a rename inside `directory` durable (where the system lets a directory be opened)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # directories cannot be opened here: the rename is as durable as this system makes it
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Stream into a temporary file beside `path`; on success it replaces `path` durably, on failure it is
    removed and `path` is untouched. Text modes write UTF-8 with "\\n" line ends as given."""
    tmp = temporary_name(path)
    kwargs: dict[str, Any] = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode.replace("x", "w"), **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` as the whole content of `path` (see the module's docstring)."""
    with atomic_file(path) as f:
        f.write(data)


@dataclass(frozen=True)
class Copied:
    """What `copy_atomically` copied: the SHA-256 and size of the bytes, and of a directory its links."""

    sha256: str
    size: int
    #: Relative path ("/"-separated) -> target text of each symbolic link in the directory: not copied.
    links: dict[str, str] = field(default_factory=dict)


def copy_atomically(src: Path, dest: Path) -> Copied:
    """Copy the file or directory `src` to `dest`, replacing what is there; returns its SHA-256 and size.

    A file is hashed as it streams through `atomic_file`. A directory is copied beside `dest` and renamed
    into place; its hash covers each regular file's relative path ("/"-separated, NUL-ended) and bytes, in
    path order, and its size is the sum of their sizes. Inside a directory nothing is followed: a symbolic
    link is recorded (`Copied.links`: its target text) and not copied, so a link to a file elsewhere copies
    none of it and a link loop costs nothing; a FIFO, socket or device is skipped with a warning. (`src`
    itself is opened as given, links and all: the caller named it.) On failure (OSError) `dest` is untouched.
    """
    import hashlib
    import shutil

    if not src.is_dir():
        digest = hashlib.sha256()
        size = 0
        with open(src, "rb") as fin, atomic_file(dest) as fout:
            while chunk := fin.read(CHUNK_SIZE):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
        return Copied(digest.hexdigest(), size)
    tmp = temporary_name(dest)
    try:
        copied = _copy_tree(src, tmp)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_directory(dest.parent)
    return copied


def _copy_tree(src: Path, dest: Path) -> Copied:
    """Copy the directory `src` into the new directory `dest` without following any link inside it; the
    copy is then hashed as every directory artifact is (`hash_directory`)."""
    os.mkdir(dest)
    links: dict[str, str] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(src / rel_dir) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():
                links[rel] = os.readlink(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                os.mkdir(dest / rel)
                stack.append(rel)
            elif entry.is_file(follow_symlinks=False):
                _copy_file(src / rel, dest / rel)
            else:
                log.warning("not copying %s into the store: not a regular file, a directory or a link", entry.path)
    sha256, size = hash_directory(dest)
    return Copied(sha256, size, dict(sorted(links.items())))


def _copy_file(src: Path, dest: Path) -> None:
    """Copy one regular file (opened with O_NOFOLLOW: a link swapped in meanwhile is refused), its
    permission bits and times kept."""
    import shutil

    fd = os.open(src, READ_NOFOLLOW)
    with open(fd, "rb") as fin:
        st = os.fstat(fin.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(src))
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        with open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK_SIZE)
            os.chmod(fout.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(fout.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))


@overload
def hash_file(path: _PathLike, digest: Any = None, *, limit: None = None) -> tuple[str, int]: ...
@overload
def hash_file(path: _PathLike, digest: Any = None, *, limit: int) -> tuple[str | None, int]: ...
def hash_file(path: _PathLike, digest: Any = None, *, limit: int | None = None) -> tuple[str | None, int]:
    """The SHA-256 of a file's bytes in hex, and its size.

    `digest` (a hashlib object) is fed instead of a fresh SHA-256, for one hash over several files; the hex
    is then that digest's so far. With `limit`, reading stops as soon as the file proves longer than
    `limit` bytes (it may have grown since it was measured): the hex is then None and the size the bytes
    read.
    """
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f, digest, limit=limit)


def hash_stream(
    f: io.RawIOBase | io.BufferedIOBase, digest: Any = None, *, limit: int | None = None
) -> tuple[str | None, int]:
    """`hash_file` of a file already open (binary, from where it stands): what a reader that opened the file
    once, to check it and then use it, hashes, so the bytes checked are the bytes of the file it holds."""
    import hashlib

    if digest is None:
        digest = hashlib.sha256()
    size = 0
    chunk = bytearray(CHUNK_SIZE)
    view = memoryview(chunk)
    while n := f.readinto(chunk):
        size += n
        if limit is not None and size > limit:
            return None, size
        digest.update(view[:n])
    return digest.hexdigest(), size


def hash_directory(root: Path) -> tuple[str, int]:
    """The SHA-256 and size of a directory artifact: each regular file's relative path ("/"-separated,
    NUL-ended) and bytes, in path order (by path components); the size is the sum of its files'.

    Symlinks are not followed and only regular files are read: an entry that is neither a directory nor a
    regular file raises `NotRegularFile` (a copy made by `copy_atomically` holds none)."""
    import hashlib

    files: list[PurePosixPath] = []
    for parent, dirs, names in os.walk(root, followlinks=False):
        base = PurePosixPath(Path(parent).relative_to(root).as_posix())
        for name in names + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            files.append(base / name)
    digest = hashlib.sha256()
    size = 0
    for rel in sorted(files, key=lambda p: p.parts):
        fd = open_regular(root / rel)
        if fd is None:
            raise NotRegularFile(f"{rel} in {root} is not a regular file")
        with os.fdopen(fd, "rb", buffering=0) as f:
            digest.update(rel.as_posix().encode() + b"\0")
            size += hash_stream(f, digest)[1]
    return digest.hexdigest(), size


class NotRegularFile(OSError):
    """A directory holds a symlink, a FIFO or a device where only regular files belong."""


def open_regular(path: _PathLike) -> int | None:
    """A file descriptor of `path` if it is a regular file, else None (a directory, a FIFO, a device, a
    symlink, gone). Opened without blocking, so a FIFO never hangs the reader (an open for reading waits
    for a writer otherwise); a regular file reads the same either way."""
    try:
        fd = os.open(path, READ_NOFOLLOW)
    except OSError:  # a directory on some systems, a symlink, gone, unreadable
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd
