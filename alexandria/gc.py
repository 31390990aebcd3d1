"""Garbage collection: deleted runs purged for good once their grace period is over (`alex gc`).

A deleted run keeps its logs, artifacts and rows (edits.py) so that it can be restored; `collect_garbage`
removes them for good once the run was deleted longer ago than `older_than` seconds (its `run_edit` row
"deleted" = "1" says when; a restored run has "0" and is never purged). Each run is judged on its own row: the
children of a deleted parent were tombstoned with it.

What belongs to a run: its folder `runs/<id>/` (every segment, annotation segments too), `artifacts/<id>/`,
and every file its artifact rows record elsewhere in the store (qex keeps `results/<id>_rho.npy` beside
them), each removed only if it passes the store's containment check (`Store.recorded_file`), is reached
through no link (`store.refuse_links`), lies in a folder of the store other than `runs/` (never a log, never
the database file), and no run that stays records it too. Nothing outside the store is touched and no link
is followed: a link is removed, never its target.

Killed at any point (kill -9), a rerun finishes the job, and no half-deleted run is ever projected. Per run:

1. a manifest of the files it recorded (`gc-manifest.json`, not a segment: nothing reads it as a log) is
   written atomically into its folder;
2. in ONE transaction, holding the projector's locks of that run (`Backend.lock_for_purge`), the folder is
   renamed `runs/.purging-<id>` (the segment listing ignores a name that is no run id, so neither a
   projector nor a rebuild reads it again) and every row of the run is deleted from every table (run, every
   table with a run_id, the positions and problems of its segments). Killed before the commit, the rows
   stay whole, the folder is renamed already: the run is still listed, with all its rows, until a rerun;
3. then its recorded files, `artifacts/<id>/`, the segments and the manifest last, then the folder.

A rerun first finishes every `runs/.purging-*` it finds (rows, then files), whatever the grace period.

A deleted run whose writer is still alive (deleted with force while running: `life.run_state` says
"running") is skipped and named in the report: purging it would pull the log from under its writer. Run
`alex gc` again once it ended.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, or_, select

from .backends import backend_of
from .errors import InvalidInputError, RecordedFileError, UnsafePathError
from .files import fsync_directory, write_atomically
from .life import run_state
from .rebuild import ProgressFactory
from .schema import artifact, log_problem, media, metadata, metric_point, metric_summary, run, run_edit
from .store import Store, is_run_id, make_dirs, refuse_links

log = logging.getLogger("alexandria.gc")

#: Where a run being purged waits for the rest of its purge: a name the segment listing ignores.
PURGING_PREFIX = ".purging-"
#: The list of files a run recorded outside its folders, written before anything is removed.
MANIFEST = "gc-manifest.json"
#: The default grace period: a week.
DEFAULT_GRACE = "7d"

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds in a grace period written `30m`, `12h`, `7d`, `2w`, `90s` or `0` (a bare number: seconds)."""
    m = _AGE.match(text.strip().lower())
    if m is None:
        raise InvalidInputError(
            f"cannot read the age {text!r}: give a number and a unit, like 30m, 12h or 7d (or 0: every deleted run)"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class GcReport:
    """What `collect_garbage` did (or, with `dry_run`, would do)."""

    dry_run: bool
    #: Runs purged for good (rows and files), those finished from an interrupted purge included.
    purged: list[str] = field(default_factory=list)
    #: Of `purged`, those a killed earlier gc had begun.
    finished: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    #: Deleted runs past the grace period whose writer is still alive: not touched.
    skipped_running: list[str] = field(default_factory=list)
    #: Recorded files left in place, each with why (another run records it, a link, outside the store...).
    kept_files: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Plan:
    run_id: str
    #: Recorded paths (relative to the store) outside the run's two folders.
    files: list[str]
    pending: bool  # found as runs/.purging-<id>: a purge already begun


def collect_garbage(
    store: str | os.PathLike[str] | Store | None,
    older_than: float,
    dry_run: bool = False,
    *,
    progress: ProgressFactory | None = None,
) -> GcReport:
    """Purge for good every run deleted more than `older_than` seconds ago, and finish every purge a killed
    gc left (see the module's docstring). `dry_run`: only say what would go; nothing is touched."""
    from .db import open_database

    store = Store.open(store)

    if older_than < 0 or older_than != older_than:
        raise InvalidInputError(f"the grace period must be 0 or more seconds, got {older_than}")
    report = GcReport(dry_run=dry_run)
    engine = open_database(store)
    try:
        plans = _pending(store, engine) + _due(store, engine, older_than, report)
        total = sum(_run_size(store, engine, p, report if dry_run else None) for p in plans)
        if dry_run:
            report.purged = [p.run_id for p in plans]
            report.finished = [p.run_id for p in plans if p.pending]
            report.bytes_freed = total
            return report
        advance = progress(total) if progress is not None and plans else None
        for plan in plans:
            freed = _purge(store, engine, plan, report, advance)
            if freed is None:
                continue
            report.bytes_freed += freed
            report.purged.append(plan.run_id)
            if plan.pending:
                report.finished.append(plan.run_id)
            log.info("purged run %s", plan.run_id)
    finally:
        engine.dispose()
    return report


# -- what to purge ---------------------------------------------------------------------------------------------
def _purging_dir(store: Store, run_id: str) -> Path:
    return store.runs_dir / f"{PURGING_PREFIX}{run_id}"


def _pending(store: Store, engine: Engine) -> list[_Plan]:
    """The purges a killed gc began (its folder renamed already), with their manifests."""
    plans = []
    try:
        with os.scandir(store.runs_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
    for name in names:
        run_id = name[len(PURGING_PREFIX) :]
        if name.startswith(PURGING_PREFIX) and is_run_id(run_id):
            # The manifest, and the rows if the transaction that deletes them never committed.
            files = set(_read_manifest(_purging_dir(store, run_id) / MANIFEST))
            files |= set(_recorded_elsewhere(engine, run_id))
            plans.append(_Plan(run_id, sorted(files), pending=True))
    return plans


def _due(store: Store, engine: Engine, older_than: float, report: GcReport) -> list[_Plan]:
    """Deleted runs past the grace period, but for those still running (named in the report)."""
    cutoff = time.time() - older_than
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                select(run_edit.c.run_id)
                .join(run, run.c.id == run_edit.c.run_id)
                .where(run_edit.c.field == "deleted", run_edit.c.value == "1", run_edit.c.timestamp <= cutoff)
                .order_by(run_edit.c.run_id)
            ).scalars()
        )
    plans = []
    for run_id in ids:
        if _purging_dir(store, run_id).exists():
            continue  # among the pending ones
        if run_state(store, run_id).status == "running":
            report.skipped_running.append(run_id)
            continue
        plans.append(_Plan(run_id, _recorded_elsewhere(engine, run_id), pending=False))
    return plans


def _recorded_elsewhere(engine: Engine, run_id: str) -> list[str]:
    """The paths the run's artifacts record outside `artifacts/<id>/` (removed with that folder anyway)."""
    own = f"artifacts/{run_id}/"
    with engine.connect() as conn:
        paths = conn.execute(select(artifact.c.path).where(artifact.c.run_id == run_id)).scalars()
        return sorted({p for p in paths if p and not p.startswith(own)})


def _read_manifest(path: Path) -> list[str]:
    """The files a purge is to remove; none if the manifest is missing (killed before it was written, when
    nothing was renamed yet) or after it went (the last step of a purge)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValueError:  # written atomically, so never half: a file someone edited
        log.warning("ignoring %s: not a gc manifest", path)
        return []
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


# -- sizes, for the progress bar and a dry run ----------------------------------------------------------------
def _run_size(store: Store, engine: Engine, plan: _Plan, dry: GcReport | None) -> int:
    rid = plan.run_id
    folder = _purging_dir(store, rid) if plan.pending else store.run_dir(rid)
    size = _tree_size(folder) - _tree_size(folder / MANIFEST) + _tree_size(store.artifact_dir(rid))
    for rel in plan.files:
        path, why = _removable(store, engine, rid, rel)
        if path is not None:
            size += _tree_size(path)
        elif dry is not None and why:
            dry.kept_files.append((rel, why))
    return size


def _tree_size(path: Path) -> int:
    """Bytes of a file, or of every file below a directory, no link followed (0 if nothing is there)."""
    return sum(size for _, size in _entries(path))


def _entries(path: Path) -> Iterator[tuple[Path, int]]:
    """`_walk(path)`, once the folders above `path` are shown to be no links (UnsafePathError): `path` itself
    may be one, and is then removed, never followed."""
    refuse_links(path.parent)
    return _walk(path)


def _walk(path: Path) -> Iterator[tuple[Path, int]]:
    """Every entry at and below `path`, children before their directory, with its size (a directory's is
    0), never following a link (a link is an entry, not a way in)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(path) as entries:
                names = sorted(e.name for e in entries)
        except FileNotFoundError:
            return
        for name in names:
            yield from _walk(path / name)
        yield path, 0
    else:
        yield path, st.st_size if stat.S_ISREG(st.st_mode) else 0


# -- purging --------------------------------------------------------------------------------------------------
def _purge(
    store: Store, engine: Engine, plan: _Plan, report: GcReport, advance: Callable[[int], None] | None
) -> int | None:
    """Purge one run; returns the bytes freed, or None if it was skipped (its writer is alive again)."""
    rid = plan.run_id
    folder = store.run_dir(rid)
    purging = _purging_dir(store, rid)
    if not plan.pending:
        if not store.run_exists(rid):  # logs gone already (removed by hand): rows and artifacts remain
            make_dirs(folder)
        write_atomically(folder / MANIFEST, json.dumps({"run_id": rid, "files": plan.files}).encode())
    if not _delete_rows(store, engine, rid, rename=None if plan.pending else (folder, purging)):
        report.skipped_running.append(rid)  # a writer attached meanwhile: nothing renamed, no row deleted
        return None
    freed = 0
    for rel in plan.files:
        path, why = _removable(store, engine, rid, rel)
        if path is None:
            if why:
                report.kept_files.append((rel, why))
            continue
        freed += _remove_tree(path, advance)
    freed += _remove_tree(store.artifact_dir(rid), advance, keep=_recorded_by_others(store, engine, rid))
    manifest = purging / MANIFEST
    for entry in sorted(os.listdir(purging)) if purging.is_dir() else []:
        if entry != MANIFEST:
            freed += _remove_tree(purging / entry, advance)
    _remove_tree(manifest, None)  # gc's own file: not counted as freed
    _remove_tree(purging, None)
    return freed


def _delete_rows(store: Store, engine: Engine, run_id: str, rename: tuple[Path, Path] | None) -> bool:
    """Every row of the run, in one transaction holding the projector's locks of the run; `rename` (its
    folder to its purging name) is done inside it, so no projector reads the folder half renamed. False,
    and nothing done, if a writer of the run is alive again (judged once more under the locks)."""
    backend = backend_of(engine)
    with engine.begin() as conn:
        backend.lock_for_purge(conn, [run_id])
        if rename is not None:
            if run_state(store, run_id).status == "running":
                return False
            src, dest = rename
            refuse_links(src)
            os.rename(src, dest)
            fsync_directory(src.parent)
        _delete_run_rows(conn, run_id)
    return True


def _delete_run_rows(conn: Connection, run_id: str) -> None:
    own = f"runs/{run_id}"
    segment = log_problem.c.segment
    conn.execute(delete(log_problem).where(or_(segment == own, segment.startswith(own + "/"))))
    for table in reversed(metadata.sorted_tables):  # rows that refer to a run before the run's own row
        if table is run:
            conn.execute(delete(run).where(run.c.id == run_id))
        elif table is metric_point:  # its rows name the run through their series
            series = select(metric_summary.c.id).where(metric_summary.c.run_id == run_id)
            conn.execute(delete(metric_point).where(metric_point.c.series.in_(series.scalar_subquery())))
        elif "run_id" in table.c:
            conn.execute(delete(table).where(table.c.run_id == run_id))


def _recorded_by_others(store: Store, engine: Engine, run_id: str) -> set[Path]:
    """Paths in `artifacts/<run_id>/` another run records as an artifact or a media file (kept: a forged or a
    shared record)."""
    prefix = f"artifacts/{run_id}/"
    with engine.connect() as conn:
        found = set(
            conn.execute(
                select(artifact.c.path).where(artifact.c.path.startswith(prefix), artifact.c.run_id != run_id)
            ).scalars()
        )
        for path, files in conn.execute(select(media.c.path, media.c.files).where(media.c.run_id != run_id)):
            found.update(p for p in [path, *(f.get("path") for f in files or [])] if p and p.startswith(prefix))
        return {store.root / rel for rel in found}


def _removable(store: Store, engine: Engine, run_id: str, rel: str) -> tuple[Path | None, str]:
    """The path of a recorded file to remove, or None and why it stays ("" : it is gone already). It must lie
    in a folder of the store other than runs/, pass the containment check, be reached through no link, and be
    recorded by no run other than `run_id`."""
    parts = Path(rel).parts
    if len(parts) < 2 or parts[0] == "runs":
        return None, "not in a folder of the store where artifacts are kept"
    try:
        store.recorded_file(rel, f"run {run_id} artifact")
        path = refuse_links(store.root / rel)
    except RecordedFileError as exc:
        if getattr(exc, "reason", "") == "missing":
            return None, ""
        return None, str(exc)
    except UnsafePathError as exc:
        return None, str(exc)
    query = select(artifact.c.run_id).where(artifact.c.path == rel, artifact.c.run_id != run_id)
    with engine.connect() as conn:
        if conn.execute(query.limit(1)).first() is not None:
            return None, "recorded by another run too"
    return path, ""


def _remove_tree(
    path: Path, advance: Callable[[int], None] | None, keep: set[Path] | frozenset[Path] = frozenset()
) -> int:
    """Remove a file, a link (never its target) or a directory and all below it, children first; `keep`:
    paths to leave, with the directories above them. Returns the bytes freed."""
    freed = 0
    kept = set(keep)
    for entry, size in list(_entries(path)):
        if entry in kept:
            kept.add(entry.parent)
            continue
        try:
            if stat.S_ISDIR(os.lstat(entry).st_mode):
                os.rmdir(entry)
            else:
                os.unlink(entry)
        except FileNotFoundError:
            continue
        freed += size
        if advance is not None and size:
            advance(size)
    return freed
