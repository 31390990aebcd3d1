"""A store's database, opened the one way every command needs it: engines, and `open_database`.

The database is the SQLite file inside the store (the zero-setup default) or a server named by a URL (in
$ALEXANDRIA_DB or `Store.db_url`); what differs between them lives in alexandria/backends/, chosen by the
URL's scheme. Whichever it is, the logs are the truth and the database is a projection of them: a database
that is missing or written by another schema version is rebuilt (rebuild.py) rather than migrated. A
database Alexandria did not make is never written over (`Backend.claim` holds the rule).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from .backends import Target, backend_for
from .backends import safe_target as safe_target  # the CLI prints targets with it
from .backends.base import UNREADABLE
from .projector import Projector
from .rebuild import ProgressFactory, rebuild
from .schema import SCHEMA_VERSION
from .store import Store

log = logging.getLogger("alexandria.db")


def writer_engine(target: Target, *, bulk: bool = False, schema: str | None = None) -> Engine:
    """An engine for the projector (`bulk`: a rebuild's scratch copy; `schema`: where the tables are, on a
    database with schemas)."""
    return backend_for(target).writer_engine(bulk=bulk, schema=schema)


def reader_engine(target: Target) -> Engine:
    """A read-only engine: any write is refused by the database itself."""
    return backend_for(target).reader_engine()


def engines(target: Target) -> tuple[Engine, Engine]:
    """The writer and the reader engine of one database."""
    writer = writer_engine(target)
    try:
        return writer, reader_engine(target)
    except BaseException:
        writer.dispose()
        raise


def open_database(store: Store, *, catch_up: bool = True, progress: ProgressFactory | None = None) -> Engine:
    """The store's writable engine (its SQLite file, or `store.db_url`), its schema current, with
    everything complete folded in. `ForeignDatabaseError` if the database there is not Alexandria's
    (`Backend.claim`); any other database error on the way (a full disk, a read-only file, a lock held too
    long) is one StoreError saying what to do (`Backend.store_error`). `progress` (a command's bar on a
    terminal) hears of a rebuild, and of a catch-up with a backlog of more than one transaction's worth."""
    backend = backend_for(store.database)
    try:
        version = backend.claim(store)
        if version == UNREADABLE:  # not a database at all (overwritten, truncated): the logs still are the truth
            log.warning("database %s is unreadable; rebuilding it from the logs", backend.describe())
        if version is not None and version != SCHEMA_VERSION:
            rebuild(store, progress)
    except DBAPIError as exc:
        raise backend.store_error(exc) from exc
    engine = backend.writer_engine()
    try:
        if version is None:
            backend.create_schema(engine)
        if catch_up and progress is not None:
            Projector(store, engine).catch_up_reporting(progress)
        elif catch_up:
            Projector(store, engine).catch_up()
    except DBAPIError as exc:
        engine.dispose()
        raise backend.store_error(exc) from exc
    except BaseException:
        engine.dispose()
        raise
    return engine
