"""Files written so that no reader ever sees half of one: a temporary name beside the target, fsync of the
file, a rename over the target, fsync of the directory. A process killed midway leaves at most a
`.<name>.<pid>.<random>.tmp` file, never a partial target. Used for artifacts, captured code, reports,
exports and qex's states. (Not mkstemp: its mode 0600 would make the file unreadable to others; new files
get 0666 minus the umask, like any other.)"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temporary_name(path: Path) -> Path:
    """A name beside `path` that no other process or thread can take."""
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
