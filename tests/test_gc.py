"""`alex gc`: deleted runs purged for good after their grace period, safely (alexandria/gc.py).

Every purge goes through the real `alex gc` in a child process; the kill test SIGKILLs it at random points
(seeded) and checks that a rerun converges on what an uninterrupted gc gives."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.events import RunDeleted
from alexandria.formatting import size_text
from alexandria.gc import PURGING_PREFIX, parse_age
from alexandria.schema import USER_TABLES, relation
from alexandria.segment import write_annotation
from alexandria.store import Store
from tests.conftest import alex, child_env, every_backend, make_seed, python, rebuilt_snapshot, snapshot, wait_until

#: The tables compared: every user table and the projection's bookkeeping of segments.
TABLES = (*USER_TABLES, "log_segment", "log_problem")


def make_run(store: Store, i: int, *, big: int = 1000, parent: Any = None, shared: Path | None = None) -> str:
    """A finished run with params, metrics, a tag, a copied artifact and a file recorded in results/."""
    with alexandria.start_run(experiment="gc", store=store, capture=False, parent=parent, tags={"k": str(i)}) as run:
        run.log_params({"i": i})
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        src = store.root.parent / f"model-{i}.bin"
        src.write_bytes(os.urandom(big))
        run.log_artifact(src)
        results = store.root / "results"
        results.mkdir(exist_ok=True)
        rho = results / f"{run.id}_rho.npy"
        rho.write_bytes(os.urandom(big))
        run.record_artifact(rho, name="rho")
        if shared is not None:
            run.record_artifact(shared, name="shared")
        return run.id


def store_files(store: Store) -> dict[str, str]:
    """Every file of the store but the database's, by relative path, with the SHA-256 of its bytes."""
    out = {}
    for dirpath, _, names in os.walk(store.root):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(store.root).as_posix()
            if "/" not in rel and "alexandria.db" in rel:
                continue
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def tables(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    engine = open_database(store)
    try:
        return snapshot(engine, TABLES)
    finally:
        engine.dispose()


def _owner(table: str) -> tuple[int, bool]:
    """The column (index among those `table_rows` keeps) naming a row's run; whether it is a segment path."""
    cols = [c.name for c in relation(table).columns if not (c.name == "id" and table != "run")]
    if table == "run":
        return 0, False
    if table == "log_problem":
        return cols.index("segment"), True
    return cols.index("run_id"), False


def run_of(table: str, row: tuple[Any, ...]) -> str:
    i, is_path = _owner(table)
    return str(row[i]).split("/")[1] if is_path else str(row[i])


def without(snap: dict[str, list[tuple[Any, ...]]], ids: set[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The tables less every row of the runs `ids`."""
    return {t: [r for r in rows if run_of(t, r) not in ids] for t, rows in snap.items()}


def rows_of(snap: dict[str, list[tuple[Any, ...]]], rid: str) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [r for r in rows if run_of(t, r) == rid] for t, rows in snap.items()}


def files_of(files: dict[str, str], ids: set[str]) -> set[str]:
    """The files that belong to runs `ids` (their folders and their results/ files)."""
    return {
        rel for rel in files if any(rel.startswith((f"runs/{r}/", f"artifacts/{r}/", f"results/{r}_")) for r in ids)
    }


def gc(*args: str) -> subprocess.CompletedProcess[str]:
    done = alex("gc", *args)
    assert done.returncode == 0, done.stderr
    return done


def live_ids(store: Store) -> set[str]:
    with alexandria.Reader(store) as r:
        return {row["id"] for row in r.runs(deleted=None)}


# -- the grace period ---------------------------------------------------------------------------------------
def test_ages_are_read_in_seconds_minutes_hours_and_days() -> None:
    assert [parse_age(t) for t in ("0", "90s", "30m", "12h", "7d", "1.5h")] == [0, 90, 1800, 43200, 604800, 5400]
    done = alex("gc", "--older-than", "7 days")
    assert done.returncode == 1 and "cannot read the age '7 days'" in done.stderr + done.stdout


@every_backend
def test_gc_purges_folders_recorded_files_and_rows_and_rebuild_agrees(store: Store) -> None:
    shared = store.root / "results" / "shared.bin"
    shared.parent.mkdir(parents=True, exist_ok=True)
    shared.write_bytes(b"s" * 5000)
    kept = make_run(store, 2, shared=shared)
    with alexandria.start_run(experiment="gc", store=store, capture=False) as parent:
        parent.log_metric("loss", 0.5, step=0)
        parent.record_artifact(shared, name="shared")
        # A child of the deleted run is deleted with it, and judged on its own tombstone.
        child = make_run(store, 3, big=3000, parent=parent)
    doomed = parent.id
    alexandria.delete_runs([doomed], store=store)
    before_files, before = store_files(store), tables(store)
    purged = {doomed, child}
    gone = files_of(before_files, purged)
    assert "results/shared.bin" not in gone and f"results/{child}_rho.npy" in gone
    freed = sum((store.root / rel).stat().st_size for rel in gone)

    done = gc("--older-than", "0")
    assert f"purged 2 run(s), freed {size_text(freed)}" in done.stdout
    assert "kept results/shared.bin: recorded by another run too" in done.stdout
    after_files = store_files(store)
    assert set(after_files) == set(before_files) - gone
    assert not (store.run_dir(doomed)).exists() and not store.artifact_dir(child).exists()
    assert not any(name.startswith(PURGING_PREFIX) for name in os.listdir(store.runs_dir))
    after = tables(store)
    assert after == without(before, purged)
    assert kept in live_ids(store) and not purged & live_ids(store)
    assert rebuilt_snapshot(store, TABLES) == after
    # Nothing more to do: a second gc purges nothing, and the shared file goes with its last run.
    assert "purged 0 run(s), freed 0 B" in gc("--older-than", "0").stdout
    alexandria.delete_runs([kept], store=store)
    gc("--older-than", "0")
    assert not shared.exists()


@every_backend
def test_the_grace_period_keeps_recent_deletions_and_a_restored_run_is_never_purged(store: Store) -> None:
    old, recent, restored = (make_run(store, i) for i in range(3))
    # Deleted eight days ago: the tombstone is an event of that time in the run's log.
    write_annotation(store.run_dir(old), old, [RunDeleted(deleted=True, time=time.time() - 8 * 86400)])
    alexandria.delete_runs([recent, restored], store=store)
    alexandria.restore_runs([restored], store=store)
    before = tables(store)

    assert "purged 1 run(s)" in gc().stdout  # the default grace: 7 days
    assert not store.run_dir(old).exists()
    assert store.run_dir(recent).exists() and store.artifact_dir(recent).exists()
    assert tables(store) == without(before, {old})
    assert "purged 0 run(s)" in gc("--older-than", "12h").stdout

    assert "purged 1 run(s)" in gc("--older-than", "0").stdout
    assert not store.run_dir(recent).exists()
    assert store.run_dir(restored).exists() and (store.root / "results" / f"{restored}_rho.npy").exists()
    assert tables(store) == without(before, {old, recent})
    assert live_ids(store) == {restored}


@every_backend
def test_a_dry_run_says_what_would_go_and_touches_nothing(store: Store) -> None:
    doomed = make_run(store, 0, big=12_345)
    make_run(store, 1)
    alexandria.delete_runs([doomed], store=store)
    before_files, before = store_files(store), tables(store)
    freed = sum((store.root / rel).stat().st_size for rel in files_of(before_files, {doomed}))

    done = gc("--older-than", "0", "--dry-run")
    assert f"would purge run {doomed}\n" in done.stdout
    assert f"would purge 1 run(s), would free {size_text(freed)}" in done.stdout
    assert store_files(store) == before_files
    assert tables(store) == before
    assert f"purged 1 run(s), freed {size_text(freed)}" in gc("--older-than", "0").stdout


WRITER = """
import sys, time, pathlib, alexandria
run = alexandria.start_run(experiment="gc", capture=False)
run.log_metric("loss", 1.0, step=0)
run.flush()
print(run.id, flush=True)
go = pathlib.Path(sys.argv[1])
while not go.exists():
    time.sleep(0.02)
run.end()
"""


@every_backend
def test_a_deleted_run_whose_writer_is_alive_is_skipped(store: Store, tmp_path: Path) -> None:
    go = tmp_path / "go"
    writer = python(WRITER, str(go))
    try:
        assert writer.stdout is not None
        rid = writer.stdout.readline().decode().strip()
        assert rid, writer.stderr.read().decode() if writer.stderr else ""
        wait_until(lambda: rid in live_ids(store), what="the writer's run projected")
        alexandria.delete_runs([rid], force=True, store=store)
        before = tables(store)
        done = gc("--older-than", "0")
        assert f"skipped run {rid[:8]}: deleted but still running" in done.stdout
        assert "purged 0 run(s)" in done.stdout
        assert store.run_dir(rid).exists() and rows_of(tables(store), rid) == rows_of(before, rid)
    finally:
        go.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr.read().decode() if writer.stderr else ""
    assert "purged 1 run(s)" in gc("--older-than", "0").stdout
    assert not store.run_dir(rid).exists() and rid not in live_ids(store)


# -- killed midway ------------------------------------------------------------------------------------------
def _file_count(root: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(root))


def _check_whole(store: Store, before: dict[str, list[tuple[Any, ...]]]) -> None:
    """No half-deleted run: every run the tables (and `Reader.runs`) list has exactly its rows of before."""
    now = tables(store)
    listed = live_ids(store)
    assert listed == {r[0] for r in now["run"]}
    for rid in {run_of(t, r) for t, rows in now.items() for r in rows}:
        assert rows_of(now, rid) == rows_of(before, rid), f"run {rid} is half deleted"


@every_backend
def test_gc_killed_at_random_points_then_rerun_converges(store: Store) -> None:
    rng = random.Random(make_seed())
    ids = [make_run(store, i, big=300_000) for i in range(10)]
    doomed = set(rng.sample(ids, 8))
    alexandria.delete_runs(sorted(doomed), store=store)
    before_files, before = store_files(store), tables(store)
    expected_files = set(before_files) - files_of(before_files, doomed)
    start = _file_count(store.root)
    removable = start - len(expected_files)

    for _ in range(6):
        target = rng.randint(-1, removable)  # -1: as soon as a folder is renamed; else after that many files went
        proc = subprocess.Popen(
            [sys.executable, "-m", "alexandria.cli", "gc", "--older-than", "0"],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def reached(target: int = target, proc: subprocess.Popen[bytes] = proc, start: int = start) -> bool:
            if proc.poll() is not None:
                return True
            if target < 0:
                return any(n.startswith(PURGING_PREFIX) for n in os.listdir(store.runs_dir))
            return start - _file_count(store.root) >= target

        wait_until(reached, what="gc to reach its crash point", every=0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        _check_whole(store, before)  # whatever point it died at
        start = _file_count(store.root)
        removable = max(start - len(expected_files), 0)

    gc("--older-than", "0")  # uninterrupted: finishes every purge begun
    assert set(store_files(store)) == expected_files
    assert all(store_files(store)[rel] == before_files[rel] for rel in expected_files)
    assert not any(name.startswith(PURGING_PREFIX) for name in os.listdir(store.runs_dir))
    after = tables(store)
    assert after == without(before, doomed)
    assert rebuilt_snapshot(store, TABLES) == after


def test_a_purge_left_half_done_is_finished_whatever_the_grace(store: Store) -> None:
    """A folder renamed for purging but whose rows were never deleted (killed inside the transaction) is
    finished by the next gc, even one whose grace period would keep the run."""
    doomed, kept = make_run(store, 0), make_run(store, 1)
    alexandria.delete_runs([doomed], store=store)
    before_files, before = store_files(store), tables(store)
    os.rename(store.run_dir(doomed), store.runs_dir / f"{PURGING_PREFIX}{doomed}")
    assert doomed in live_ids(store)  # still whole: its rows stay until the purge is finished
    done = gc()  # the default grace would keep a run deleted just now
    assert "purged 1 run(s) (1 finishing an interrupted gc)" in done.stdout
    assert set(store_files(store)) == set(before_files) - files_of(before_files, {doomed})
    assert tables(store) == without(before, {doomed})
    assert live_ids(store) == {kept}


@pytest.mark.parametrize("poll", [False, True])
def test_watch_keeps_folding_while_gc_renames_and_removes(store: Store, poll: bool) -> None:
    """`alex watch` takes the renamed folder's events in its stride: it keeps projecting new runs."""
    doomed = make_run(store, 0)
    alexandria.delete_runs([doomed], store=store)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "watch", *(["--poll", "--interval", "0.1"] if poll else [])],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        gc("--older-than", "0")
        late = make_run(store, 1)
        with alexandria.Reader(store, fold=False) as r:
            wait_until(
                lambda: r.runs(deleted=None) and {x["id"] for x in r.runs(deleted=None)} == {late},
                what="the watcher to project the new run",
            )
        assert watcher.poll() is None, watcher.stderr.read().decode() if watcher.stderr else ""
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=60)


def test_gc_removes_links_and_never_what_they_point_to(store: Store, tmp_path: Path) -> None:
    """A link where a run's artifacts folder was, and a recorded file replaced by a link to a file outside
    the store: the links go (or stay, refused), their targets are untouched."""
    doomed = make_run(store, 0)
    alexandria.delete_runs([doomed], store=store)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.bin").write_bytes(b"p" * 100)
    art = store.artifact_dir(doomed)
    for entry in art.iterdir():
        entry.unlink()
    art.rmdir()
    art.symlink_to(outside, target_is_directory=True)
    rho = store.root / "results" / f"{doomed}_rho.npy"
    rho.unlink()
    rho.symlink_to(outside / "precious.bin")

    done = gc("--older-than", "0")
    assert "purged 1 run(s)" in done.stdout
    assert f"kept results/{doomed}_rho.npy" in done.stdout and "outside the store" in done.stdout
    assert not os.path.lexists(art) and rho.is_symlink()
    assert (outside / "precious.bin").read_bytes() == b"p" * 100
