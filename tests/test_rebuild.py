"""`alex rebuild` interrupted: Ctrl-C or kill -9 while it replays leaves the old database as it was (the rebuild
writes a scratch file beside it and only a finished one is copied over), and the next rebuild completes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alexandria.db import open_database, reader_engine
from alexandria.events import Header, RunStarted, WriterInfo, encoder
from alexandria.store import Store
from benchmarks.rebuild import build_store
from tests.conftest import alex, child_env, snapshot, wait_until

#: Enough log for several transactions (about 37 MB): the rebuild is still replaying when it is stopped.
RUNS, KEYS, STEPS = 4, 10, 10_000


def _scratch(store: Store) -> list[Path]:
    return sorted(store.root.glob(f".{store.db_path.name}.rebuild-*"))


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_rebuild_leaves_the_old_database_untouched(tmp_path: Path, how: signal.Signals) -> None:
    store = build_store(tmp_path / "store", RUNS, KEYS, STEPS)
    open_database(store).dispose()  # the live projection: the old database
    engine = reader_engine(store.db_path)
    before = snapshot(engine)
    engine.dispose()
    new_run = "f" * 32  # logged after the old database was folded: only a finished rebuild has it
    store.run_dir(new_run).mkdir()
    lines = [Header(time=1.0, format=1, run_id=new_run, writer=WriterInfo(host="h", pid=1))]
    lines.append(RunStarted(experiment="x", time=1.0))
    (store.run_dir(new_run) / "0.jsonl").write_bytes(encoder.encode_lines(lines))
    rebuilding = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "--store", str(store.root), "rebuild"],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # stopped once its scratch file holds a committed transaction of points, with more to come
        wait_until(lambda: any(p.stat().st_size > 4 << 20 for p in _scratch(store)), what="the scratch file growing")
        rebuilding.send_signal(how)
        rebuilding.wait(timeout=120)
    finally:
        if rebuilding.poll() is None:
            rebuilding.kill()
            rebuilding.wait()
    assert rebuilding.returncode != 0
    engine = reader_engine(store.db_path)
    assert snapshot(engine) == before
    engine.dispose()
    if how == signal.SIGINT:
        assert _scratch(store) == []  # Ctrl-C cleans up after itself
    else:
        assert _scratch(store), "kill -9 leaves the scratch file behind"
    assert alex("--store", str(store.root), "rebuild").returncode == 0
    assert _scratch(store) == []  # and the next rebuild removes what a killed one left
    engine = reader_engine(store.db_path)
    after = snapshot(engine, ("run",))
    engine.dispose()
    assert {r[0] for r in after["run"]} == {r[0] for r in before["run"]} | {new_run}


def test_a_rebuild_keeps_the_scratch_file_of_one_still_running(tmp_path: Path) -> None:
    """Only a dead rebuild's scratch file is removed: one whose process is alive (here a stand-in child) is its."""
    store = build_store(tmp_path / "store", 1, 2, 10)
    open_database(store).dispose()
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        theirs = store.root / f".{store.db_path.name}.rebuild-{alive.pid}"
        theirs.write_bytes(b"a rebuild in progress")
        assert alex("--store", str(store.root), "rebuild").returncode == 0
        assert theirs.read_bytes() == b"a rebuild in progress"
    finally:
        alive.communicate(b"")
