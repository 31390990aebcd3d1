"""Rebuilding a store's database from the logs.

The logs are the truth; the database is a projection of them. `rebuild` replays every segment into a
fresh copy of the tables beside the live ones and swaps it in atomically, the way its backend can
(alexandria/backends/: a scratch file copied over with SQLite's online backup; a scratch schema renamed
into place on a server): readers see the old tables or the new ones, never half. A projector running
meanwhile simply continues from the positions the rebuild committed.

Only a database Alexandria made is replaced (`Backend.claim`): one holding another program's tables is
refused, and an unreadable file only goes when there are logs to rebuild it from (SQLite keeps it beside,
as `<name>.corrupt-<time>`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from .backends import backend_for
from .projector import TRANSACTION_BYTES, FoldStats, Projector, store_size
from .store import Store

#: What a long call is given to report progress (`rebuild`, `gc.collect_garbage`, the importers): called once
#: with the total when the work begins, it returns what to call with each part done.
ProgressFactory = Callable[[int], Callable[[int], None]]


def rebuild(
    store: Store, progress: ProgressFactory | None = None, *, transaction_bytes: int = TRANSACTION_BYTES
) -> FoldStats:
    """Replay every log into a fresh database and swap it in atomically (`ForeignDatabaseError` if the
    database there is not Alexandria's)."""
    backend = backend_for(store.database)
    backend.claim(store)

    def load(engine: Engine) -> FoldStats:
        on_bytes = progress(store_size(store)) if progress else None
        return Projector(store, engine).catch_up(progress=on_bytes, transaction_bytes=transaction_bytes)

    return backend.rebuild(store, load)
