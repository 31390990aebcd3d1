"""Keeping the database current while runs log: the projector driven by watchdog.

A change under `<store>/runs` wakes the projector at once (inotify where the
OS has it); a fold also runs every `interval` seconds whatever happens, which
is what keeps network filesystems (no inotify) current. `poll=True` uses
watchdog's polling observer outright; if the native observer cannot start
(no inotify, watch limit reached) polling is used instead.

Several watchers may fold one store into one PostgreSQL database at once
(one per node, all pointed at the same store on shared storage): each
segment is folded by one of them at a time (backends/postgres.py), a watcher skips
the segments another is folding rather than waiting for them, and a lost
connection or a server restart is logged and retried at the next fold
instead of ending the watch.

A database deleted or overwritten under a running watcher (`rm alexandria.db`, garbage written over it)
is noticed at the next fold that fails: it is rebuilt from the logs, one warning says so, and the watch goes
on. A database replaced by one Alexandria did not make is never written over: the watch ends with
`ForeignDatabaseError` (`Backend.claim` holds the rule).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .backends import backend_for
from .backends.base import UNREADABLE
from .errors import AlexandriaError, ForeignDatabaseError, StoreError
from .projector import FoldStats, Projector
from .rebuild import rebuild
from .schema import SCHEMA_VERSION
from .store import COMPRESSED_SUFFIX, SEGMENT_SUFFIX, Store, make_dirs

log = logging.getLogger("alexandria.watch")

#: Seconds between two compactions of the closed, folded segments by a watcher (compaction.py): the first
#: right after the first fold, then this often, so a watcher never spends its time listing segments.
COMPACT_EVERY = 600.0
#: After a change is seen, wait this long for more before folding (coalesces a writer's burst).
DEBOUNCE = 0.05


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = event.src_path if isinstance(event.src_path, str) else event.src_path.decode()
        if event.is_directory or path.endswith((SEGMENT_SUFFIX, COMPRESSED_SUFFIX)):
            self.wake.set()


def _start_observer(store: Store, handler: FileSystemEventHandler, poll: bool) -> BaseObserver:
    observer: BaseObserver = PollingObserver(timeout=1.0) if poll else Observer()
    observer.schedule(handler, str(store.runs_dir), recursive=True)
    try:
        observer.start()
    except OSError as exc:
        if poll:
            raise
        log.warning("file notifications unavailable (%s); polling instead", exc)
        return _start_observer(store, handler, poll=True)
    return observer


def rebuilt_after(store: Store, exc: DatabaseError) -> bool:
    """After a failed fold: if the database is no longer the one Alexandria made (deleted, emptied,
    overwritten), rebuild it from the logs and say so in one warning (True); False if it is intact or cannot
    be reached (the failure was something else: retry). Another program's database raises
    `ForeignDatabaseError`: it is never written over."""
    backend = backend_for(store.database)
    try:
        version = backend.claim(store)
    except ForeignDatabaseError:
        raise
    except StoreError:  # unreachable (a server down) or nothing to rebuild it from: a plain retry
        return False
    if version == SCHEMA_VERSION:
        return False
    what = {None: "was deleted or emptied", UNREADABLE: "was overwritten (unreadable)"}.get(
        version, f"was replaced by one of schema version {version}"
    )
    try:
        stats = rebuild(store)
    except ForeignDatabaseError:  # replaced again meanwhile, by another program's database
        raise
    except (DatabaseError, StoreError) as failed:  # a full disk, a lock held too long: the next fold retries
        log.warning("database %s %s; rebuilding it failed, retrying: %s", backend.describe(), what, failed)
        return True
    log.warning(
        "database %s %s (%s); rebuilt it from the logs: %d events", backend.describe(), what, exc.orig, stats.events
    )
    return True


def _compact_quietly(store: Store, engine: Engine) -> None:
    """A watcher's compaction: a failure (a full disk, a read-only store) is a warning, and the next one retries."""
    from .compaction import compact

    try:
        compact(store, engine)
    except (AlexandriaError, OSError, DatabaseError) as exc:
        log.warning("compacting closed segments failed, retrying later: %s", exc)


def watch(
    store: Store,
    engine: Engine,
    *,
    poll: bool = False,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_fold: Callable[[FoldStats], None] | None = None,
    compact_every: float | None = COMPACT_EVERY,
) -> None:
    """Fold new events as they appear until `stop` is set (or forever); every `compact_every` seconds (None:
    never) compact the segments closed and folded whole (`compaction.compact`), between two folds."""
    stop = stop or threading.Event()
    wake = threading.Event()
    make_dirs(store.runs_dir)
    observer = _start_observer(store, _Wake(wake), poll)
    projector = Projector(store, engine)
    next_compaction = time.monotonic()
    try:
        while not stop.is_set():
            try:
                stats = projector.catch_up(wait=False)
            except DatabaseError as exc:
                if not rebuilt_after(store, exc):  # the server went away, a connection broke: the next fold retries
                    log.warning("fold failed, retrying in %.1fs: %s", interval, exc.orig)
            else:
                if on_fold is not None and (stats.events or stats.problems):
                    on_fold(stats)
                if compact_every is not None and time.monotonic() >= next_compaction:
                    next_compaction = time.monotonic() + compact_every
                    _compact_quietly(store, engine)
            if wake.wait(interval):
                stop.wait(DEBOUNCE)
            wake.clear()
    finally:
        observer.stop()
        observer.join(timeout=5)
