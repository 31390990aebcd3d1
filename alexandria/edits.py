"""Changing runs after the fact: a name, a note, tags; moving runs to another experiment; deleting and
restoring them.

Each change is an event (`RunEdited`, `TagSet`, `TagRemoved`, `RunDeleted`) in an annotation segment of the
run's own (`segment.write_annotation`), so the log stays append-only and `alex rebuild` reproduces every
edit. An edit never resumes a run: its status, start, end, duration and attempt stay as they were. The
latest edit of a field wins, by the fold rules of folding.py, live and after a rebuild.

Runs are named as every command names them (`query.resolve_run_id`: an id, a unique prefix, a name, or
EXPERIMENT/NAME). Deleting a run deletes its children too (a sweep with its points), and restoring it
restores them; a run still running is deleted only with `force=True`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from .errors import InvalidInputError
from .events import RunDeleted, RunEdited, TagRemoved, TagSet
from .life import run_state
from .names import check_name
from .query import Reader, resolve_run_ids
from .schema import run
from .segment import write_annotation
from .store import Store
from .summaries import id_chunks
from .values import check_key, check_text, param_to_str


class RunningRunError(InvalidInputError):
    """A run still running was to be deleted without `force`."""


@dataclass
class Edited:
    """What an edit, delete or restore wrote: the runs it changed, and those it had nothing to change on."""

    runs: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def edit_run(
    ref: str,
    *,
    name: str | None = None,
    note: str | None = None,
    tags: Mapping[str, Any] | None = None,
    untag: Iterable[str] = (),
    store: str | os.PathLike[str] | Store | None = None,
) -> str:
    """Rename a run, set its note (Markdown; "" clears it), set and remove tags; returns its full id.
    Only what is given changes."""
    tags, untag = dict(tags or {}), list(untag)
    events: list[Any] = []
    if name is not None or note is not None:
        if name is not None:
            check_name(name)
        if note is not None and not isinstance(note, str):
            raise InvalidInputError(f"a run's note is Markdown text, got {type(note).__name__}")
        events.append(RunEdited(name=name, note=note, time=time.time()))
    events += [
        TagSet(key=check_key(k, "tag"), value=check_text(param_to_str(v), f"tag {k!r} value"), time=time.time())
        for k, v in tags.items()
    ]
    events += [TagRemoved(key=check_key(k, "tag"), time=time.time()) for k in untag if k not in tags]
    if not events:
        raise InvalidInputError("nothing to change: give a name, a note, tags to set or tags to remove")
    st = Store.open(store)
    with Reader(st) as reader:
        (run_id,) = resolve_run_ids(reader.engine, [ref])
    write_annotation(st.run_dir(run_id), run_id, events)
    return run_id


def delete_runs(
    refs: Sequence[str], *, force: bool = False, store: str | os.PathLike[str] | Store | None = None
) -> Edited:
    """Delete runs and their children (a tombstone each: hidden everywhere until restored, purged for
    good by `alex gc` after a grace period). A run still running is refused unless `force`."""
    st = Store.open(store)
    with Reader(st) as reader:
        ids = _with_descendants(reader.engine, resolve_run_ids(reader.engine, refs))
        state = _deleted_state(reader.engine, ids)
    if not force:
        running = [rid for rid in ids if not state[rid] and run_state(st, rid).status == "running"]
        if running:
            shown = ", ".join(r[:8] for r in running[:5])
            raise RunningRunError(
                f"run(s) {shown} are still running: end them first, or delete with force "
                "(`alex delete --force`); their writers keep logging into a deleted run"
            )
    return _tombstones(st, ids, state, deleted=True)


def restore_runs(refs: Sequence[str], *, store: str | os.PathLike[str] | Store | None = None) -> Edited:
    """Restore deleted runs and their children exactly as they were."""
    st = Store.open(store)
    with Reader(st) as reader:
        ids = _with_descendants(reader.engine, resolve_run_ids(reader.engine, refs))
        state = _deleted_state(reader.engine, ids)
    return _tombstones(st, ids, state, deleted=False)


def experiment_runs(engine: Engine, experiment: str) -> list[str]:
    """Every run of an experiment, deleted ones included, oldest first; InvalidInputError if it has none."""
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                select(run.c.id).where(run.c.experiment_name == experiment).order_by(run.c.timestamp_start, run.c.id)
            ).scalars()
        )
    if not ids:
        raise InvalidInputError(f"no experiment {experiment!r}; `alex experiments` lists them")
    return ids


def edit_experiment(
    name: str,
    *,
    rename: str | None = None,
    note: str | None = None,
    store: str | os.PathLike[str] | Store | None = None,
) -> Edited:
    """Rename experiment `name` (its runs move to `rename`: a merge if that one exists) and/or set its note
    (Markdown; "" clears it). An experiment has no log of its own: each of its runs, deleted ones too,
    records the change, and the latest note among an experiment's runs is the experiment's."""
    if rename is not None and not check_text(rename, "experiment"):
        raise InvalidInputError("an experiment's new name must be non-empty text")
    if note is not None and not isinstance(note, str):
        raise InvalidInputError(f"an experiment's note is Markdown text, got {type(note).__name__}")
    if rename is None and note is None:
        raise InvalidInputError("nothing to change: give a new name or a note")
    st = Store.open(store)
    with Reader(st) as reader:
        ids = experiment_runs(reader.engine, name)
    edit = RunEdited(experiment=rename, experiment_note=note, time=time.time())
    for rid in ids:
        write_annotation(st.run_dir(rid), rid, [edit])
    return Edited(runs=ids)


def _tombstones(st: Store, ids: list[str], state: dict[str, bool], *, deleted: bool) -> Edited:
    done = Edited()
    now = time.time()
    for rid in ids:
        if state[rid] == deleted:
            done.unchanged.append(rid)
            continue
        write_annotation(st.run_dir(rid), rid, [RunDeleted(deleted=deleted, time=now)])
        done.runs.append(rid)
    return done


def _with_descendants(engine: Engine, ids: list[str]) -> list[str]:
    """`ids` and every run below them (children, their children, ...), each once, in that order."""
    out = list(dict.fromkeys(ids))
    seen = set(out)
    level = out
    with engine.connect() as conn:
        while level:
            found: list[str] = []
            for chunk in id_chunks(level):
                found += conn.execute(select(run.c.id).where(run.c.parent_id.in_(chunk)).order_by(run.c.id)).scalars()
            level = [r for r in found if r not in seen]
            seen.update(level)
            out += level
    return out


def _deleted_state(engine: Engine, ids: list[str]) -> dict[str, bool]:
    state: dict[str, bool] = {}
    with engine.connect() as conn:
        for chunk in id_chunks(ids):
            state.update(
                (rid, bool(d)) for rid, d in conn.execute(select(run.c.id, run.c.deleted).where(run.c.id.in_(chunk)))
            )
    return {rid: bool(state.get(rid)) for rid in ids}
