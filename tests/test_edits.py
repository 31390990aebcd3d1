"""Names, notes, edits, deletes and restores through the real `alex` command line: an edit never touches a
run's life, a deleted run (and its children) is gone from every listing until restored exactly, and
`alex rebuild` reproduces all of it from the logs."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.events import RunEdited, SegmentClosed, encoder
from alexandria.segment import new_segment_name, write_annotation
from alexandria.store import Store
from tests.conftest import alex, every_backend, python, rebuilt_snapshot, snapshot, wait_until

GENERATED = re.compile(r"^[a-z]+-[a-z]+-\d{1,2}$")


def ok(*args: str) -> str:
    """`alex args...`, which must succeed: its stdout."""
    done = alex(*args)
    assert done.returncode == 0, f"alex {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def refused(*args: str) -> str:
    """`alex args...`, which must fail with one `Error:` line: that line."""
    done = alex(*args)
    assert done.returncode == 1, f"alex {' '.join(args)} did not fail:\n{done.stdout}{done.stderr}"
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: ") and "Traceback" not in done.stderr
    return done.stderr


def listed(*args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok(*args, "--format", "json"))
    return rows


def ids_of(*args: str) -> set[str]:
    return {r["id"] for r in listed("runs", *args)}


def live_snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    engine = open_database(store)
    try:
        return snapshot(engine)
    finally:
        engine.dispose()


def run_row(store: Store, run_id: str) -> dict[str, Any]:
    """The `run` row as the SQLite file holds it, read with the sqlite3 module (no library code)."""
    with closing(sqlite3.connect(store.db_path)) as db:
        db.row_factory = sqlite3.Row
        return dict(db.execute("SELECT * FROM run WHERE id = ?", (run_id,)).fetchone())


@pytest.fixture
def sweep(store: Store) -> dict[str, str]:
    """A named parent with two children (generated names) in experiment "sweep", and a run in "other"."""
    ids = {}
    with alexandria.start_run(experiment="sweep", name="grid", store=store, capture=False) as parent:
        ids["parent"] = parent.id
        for i, lr in enumerate((0.1, 0.01)):
            with alexandria.start_run(experiment="sweep", store=store, parent=parent, capture=False) as child:
                child.log_params({"lr": lr})
                child.log_metric("loss", 1.0 / (i + 1), step=0)
                ids[f"child{i}"] = child.id
    with alexandria.start_run(experiment="other", name="lone", store=store, capture=False, tags={"k": "v"}) as run:
        run.log_params({"lr": 0.5})
        run.log_metric("loss", 0.3, step=0)
        ids["other"] = run.id
    return ids


def test_editing_a_finished_run_changes_its_name_note_and_tags_never_its_life(store: Store, tmp_path: Path) -> None:
    with alexandria.start_run(
        experiment="e", name="before", tags={"a": "1", "b": "2"}, store=store, capture=False
    ) as r:
        r.log_metric("loss", 0.5, step=0)
    ok("runs")  # folded
    life = ("status", "timestamp_start", "timestamp_end", "attempt", "last_seen", "experiment_name", "error")
    before = run_row(store, r.id)
    note = tmp_path / "note.md"
    note.write_text("# Why\n\nlr too **high**\n", encoding="utf-8")

    out = ok(
        "edit", r.id[:10], "--name", "after", "--note-file", str(note), "--tag", "a=9", "--tag", "c=x=y", "--untag", "b"
    )
    assert out == f"edited run {r.id}: name 'after'; note set (3 line(s)); tag a=9; tag c=x=y; tag b removed\n"
    ok("runs")
    after = run_row(store, r.id)
    assert {k: after[k] for k in life} == {k: before[k] for k in life}
    assert before["status"] == "finished" and before["attempt"] == 0
    assert (before["name"], before["note"]) == ("before", None)
    assert (after["name"], after["note"], json.loads(after["tags"])) == (
        "after",
        "# Why\n\nlr too **high**\n",
        {"a": "9", "c": "x=y"},
    )
    with closing(sqlite3.connect(store.db_path)) as db:
        assert db.execute("SELECT event FROM lifecycle WHERE run_id = ? ORDER BY id", (r.id,)).fetchall() == [
            ("started",),
            ("finished",),
        ]  # no resume
        assert sorted(db.execute("SELECT key, value FROM tag WHERE run_id = ?", (r.id,))) == [("a", "9"), ("c", "x=y")]

    shown = ok("show", "after")
    assert shown.startswith(f"run {r.id}  name after  experiment e  status finished\n")
    assert "note:\n" in shown and "Why" in shown and "lr too high" in shown and "**" not in shown  # rendered
    table = ok("runs")
    assert "after" in table and "resumed" not in table
    assert ok("edit", "after", "--note", "") == f"edited run {r.id}: note cleared\n"
    assert alexandria.Reader(store).run("after")["run"]["note"] is None
    assert refused("edit", "after") == (
        "Error: nothing to change: give a name, a note, tags to set or tags to remove\n"
    )
    assert refused("edit", "after", "--tag", "novalue") == "Error: tag 'novalue' must be KEY=VALUE, e.g. team=vision\n"
    assert refused("edit", "after", "--rename", "x") == (
        "Error: --rename renames an experiment (with --experiment NAME); a run's new name is --name\n"
    )


def test_every_listing_shows_run_names_and_every_command_takes_one(store: Store, sweep: dict[str, str]) -> None:
    rows = {r["id"]: r for r in listed("runs")}
    assert rows[sweep["parent"]]["name"] == "grid" and rows[sweep["other"]]["name"] == "lone"
    child_names = [rows[sweep[f"child{i}"]]["name"] for i in range(2)]
    assert all(GENERATED.match(n) for n in child_names), child_names
    assert ok("runs", "--format", "csv").splitlines()[0].startswith("id,name,experiment_name,status,")
    table = ok("runs")
    assert all(n in table for n in ("grid", "lone", *child_names))

    assert ok("show", "lone").startswith(f"run {sweep['other']}  name lone  experiment other  status finished\n")
    assert json.loads(ok("show", child_names[0], "--format", "json"))["run"]["id"] == sweep["child0"]
    compared = ok("compare", child_names[0], "lone")
    assert compared.count(child_names[0]) >= 2 and compared.count("lone") >= 2  # both tables' headers
    assert json.loads(ok("compare", "lone", "grid", "--format", "json"))["runs"][0]["name"] == "lone"
    ok("report", "lone", child_names[1], "-o", str(store.root / "r.html"))
    ok("report", "--sweep", "grid", "-o", str(store.root / "s.html"))
    ok("plot", "lone", "-m", "loss", "-o", str(store.root / "p.html"))
    ok("export", "lone", "-o", str(store.root / "out"))
    assert ok("verify", "lone").startswith("checked")
    with alexandria.Reader(store) as r:
        run = r.run("grid")["run"]
        assert (run["name"], run["note"], run["deleted"]) == ("grid", None, False)
        assert r.history("lone", "loss").values.tolist() == [0.3]


def test_a_name_two_runs_share_is_ambiguous_and_experiment_slash_name_picks_one(store: Store) -> None:
    with alexandria.start_run(experiment="e1", name="same", store=store, capture=False) as a:
        pass
    with alexandria.start_run(experiment="e2", name="same", store=store, capture=False) as b:
        pass
    message = (
        f"Error: run name 'same' is ambiguous: runs {a.id[:8]} in 'e1', {b.id[:8]} in 'e2' have it; "
        "give the id (or a unique prefix), or EXPERIMENT/NAME\n"
    )
    assert refused("show", "same") == message
    assert refused("edit", "same", "--note", "x") == message
    assert refused("delete", "same") == message
    assert ok("show", "e2/same").startswith(f"run {b.id}  name same  experiment e2")
    assert ok("edit", "e1/same", "--name", "first") == f"edited run {a.id}: name 'first'\n"
    assert ok("show", "same").startswith(f"run {b.id}  ")  # now one run has it
    assert refused("show", "nobody") == "Error: no run with id or name 'nobody'; `alex runs` lists the runs\n"


@every_backend
def test_delete_hides_a_run_and_its_children_and_restore_brings_back_exactly_what_was(
    store: Store, sweep: dict[str, str]
) -> None:
    everyone = set(sweep.values())
    family = {sweep["parent"], sweep["child0"], sweep["child1"]}
    ok("edit", "lone", "--note", "kept")
    before = live_snapshot(store)

    out = ok("delete", "grid")
    children = sorted(sweep[c] for c in ("child0", "child1"))  # after their parent, by id
    assert (
        out == f"deleted 3 run(s), child runs included: {sweep['parent'][:8]}, {children[0][:8]}, {children[1][:8]}\n"
    )
    assert ids_of() == {sweep["other"]}
    assert ids_of("--experiment", "sweep") == set()
    assert ids_of("--deleted") == family
    assert ok("runs", "--deleted").lstrip().startswith("3 deleted run(s) (`alex restore RUN` restores one)")
    assert ok("runs").lstrip().startswith("1 run(s)")
    with alexandria.Reader(store) as r:
        assert {x["id"] for x in r.runs()} == {sweep["other"]}
        assert {x["id"] for x in r.runs(deleted=True)} == family
        assert {x["id"] for x in r.runs(deleted=None)} == everyone
        assert r.run(sweep["child0"])["run"]["deleted"] is True  # a child goes with its parent
        assert r.experiments() == [
            {
                "name": "other",
                "runs": 1,
                "deleted": 0,
                "last_activity": pytest.approx(time.time(), abs=300),
                "note": None,
            }
        ]
        assert [e["name"] for e in r.experiments(deleted=True)] == ["sweep"]
    shown = ok("show", sweep["child1"])
    assert f"deleted: hidden from every listing; `alex restore {sweep['child1']}` restores it" in shown
    again = ok("delete", sweep["child0"], "grid")
    assert again.startswith("deleted 0 run(s), child runs included\nalready deleted: 3 run(s): ")

    out = ok("restore", "grid")
    assert out.startswith("restored 3 run(s), child runs included: ")
    assert ids_of() == everyone and ids_of("--deleted") == set()
    assert (
        ok("restore", "lone")
        == f"restored 0 run(s), child runs included\nalready restored: 1 run(s): {sweep['other'][:8]}\n"
    )
    after = live_snapshot(store)
    tombstones = [row for row in after["run_edit"] if row[1] == "deleted"]
    assert sorted(row[0] for row in tombstones) == sorted(family) and {row[2] for row in tombstones} == {"0"}
    after["run_edit"] = [row for row in after["run_edit"] if row[1] != "deleted"]
    assert after == before  # every user table, row for row: restored exactly
    assert rebuilt_snapshot(store) == live_snapshot(store)


@every_backend
def test_deleting_and_restoring_a_whole_experiment(store: Store, sweep: dict[str, str]) -> None:
    out = ok("delete", "--experiment", "sweep")
    assert out.startswith("deleted 3 run(s), child runs included: ")
    assert ids_of() == {sweep["other"]}
    assert (
        refused("delete", "--experiment", "nothing")
        == "Error: no experiment 'nothing'; `alex experiments` lists them\n"
    )
    assert refused("delete", "grid", "--experiment", "sweep") == "Error: give runs or --experiment NAME, not both\n"
    assert refused("delete") == (
        "Error: no runs given: name runs (ids, unique prefixes or names), or --experiment NAME\n"
    )
    assert ok("restore", "--experiment", "sweep").startswith("restored 3 run(s), child runs included: ")
    assert ids_of() == set(sweep.values())


def test_deleted_runs_are_refused_by_compare_and_left_out_of_exports(store: Store, sweep: dict[str, str]) -> None:
    ok("delete", "grid")
    refusal = refused("compare", "lone", sweep["child0"])
    assert refusal == f"Error: run {sweep['child0']} is deleted: `alex restore {sweep['child0'][:8]}` brings it back\n"
    ok("export", "-o", str(store.root / "out"))
    exported = (store.root / "out" / "runs.csv").read_text()
    assert sweep["other"] in exported and not any(sweep[k] in exported for k in ("parent", "child0", "child1"))
    ok("restore", "grid")
    assert "loss" in ok("compare", "lone", sweep["child0"])


#: A writer that starts a run, says its id, and keeps it running until a signal file appears.
LIVE_WRITER = """
import pathlib, sys, time
import alexandria
with alexandria.start_run(experiment="live", name="busy", capture=False) as run:
    run.log_metric("x", 1.0, step=0)
    run.flush()
    print(run.id, flush=True)
    stop, deadline = pathlib.Path(sys.argv[1]), time.monotonic() + 120
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def test_a_running_run_is_deleted_only_with_force(store: Store, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    writer = python(LIVE_WRITER, str(stop))
    try:
        assert writer.stdout is not None
        run_id = writer.stdout.readline().decode().strip()
        assert len(run_id) == 32, writer.stderr.read().decode() if writer.stderr else ""
        assert refused("delete", "busy") == (
            f"Error: run(s) {run_id[:8]} are still running: end them first, or delete with force "
            "(`alex delete --force`); their writers keep logging into a deleted run\n"
        )
        assert refused("delete", "--experiment", "live").startswith(f"Error: run(s) {run_id[:8]} are still running")
        assert [r["status"] for r in listed("runs")] == ["running"]
        assert ok("delete", "busy", "--force") == f"deleted 1 run(s), child runs included: {run_id[:8]}\n"
        assert ids_of() == set() and ids_of("--deleted") == {run_id}
    finally:
        stop.touch()
        writer.communicate(timeout=120)
    assert writer.returncode == 0
    wait_until(lambda: [r["status"] for r in listed("runs", "--deleted")] == ["finished"], what="the run to finish")
    assert ids_of() == set()  # still deleted after its writer ended
    assert ok("restore", run_id).startswith("restored 1 run(s)")


@every_backend
def test_experiments_are_listed_renamed_and_described(store: Store, sweep: dict[str, str]) -> None:
    found = listed("experiments")
    assert [(e["name"], e["runs"], e["deleted"], e["note"]) for e in found] == [
        ("other", 1, 0, None),
        ("sweep", 3, 0, None),
    ]
    assert all(e["last_activity"] > 0 for e in found)
    assert ok("experiments", "--format", "csv").splitlines()[0] == "name,runs,deleted,last_activity,note"

    note = "Learning-rate grid\n\nsee **the wiki**"
    out = ok("edit", "--experiment", "sweep", "--rename", "lr-grid", "--note", note)
    assert out == "experiment 'sweep' (3 run(s)): renamed to 'lr-grid'; note set (3 line(s))\n"
    ok("delete", sweep["child1"])
    found = {e["name"]: e for e in listed("experiments")}
    assert set(found) == {"other", "lr-grid"}
    assert (found["lr-grid"]["runs"], found["lr-grid"]["deleted"], found["lr-grid"]["note"]) == (2, 1, note)
    table = ok("experiments")
    assert "lr-grid" in table and "Learning-rate grid" in table and "the wiki" not in table  # the first line
    assert ids_of("--experiment", "lr-grid") == {sweep["parent"], sweep["child0"]}
    assert ok("show", "lr-grid/grid").startswith(f"run {sweep['parent']}  name grid  experiment lr-grid")
    assert refused("edit", "--experiment", "lr-grid", "--name", "x") == (
        "Error: --experiment takes --rename and --note only; edit a run with `alex edit RUN`\n"
    )
    assert refused("edit", "--experiment", "sweep", "--note", "x") == (
        "Error: no experiment 'sweep'; `alex experiments` lists them\n"
    )
    # a rename into an existing experiment merges them; its note is the latest among its runs
    ok("edit", "--experiment", "other", "--note", "older")
    ok("edit", "--experiment", "lr-grid", "--rename", "other")
    found = {e["name"]: e for e in listed("experiments")}
    assert list(found) == ["other"] and (found["other"]["runs"], found["other"]["note"]) == (3, "older")
    assert rebuilt_snapshot(store) == live_snapshot(store)


@every_backend
def test_rebuild_gives_what_the_live_projection_has_after_edits_deletes_and_restores(
    store: Store, sweep: dict[str, str]
) -> None:
    ok("edit", "grid", "--name", "grid2", "--note", "n1", "--tag", "t=1")
    ok("edit", "grid2", "--note", "n2", "--untag", "t", "--tag", "u=2")
    ok("edit", "lone", "--untag", "k")
    ok("delete", "grid2")
    ok("restore", sweep["child0"])  # a child back while its parent stays deleted
    ok("edit", "--experiment", "other", "--rename", "solo", "--note", "alone")
    ok("delete", "lone")
    ok("restore", "lone")
    ok("delete", "lone")
    live = live_snapshot(store)
    assert ids_of() == {sweep["child0"]} and ids_of("--deleted") == {sweep["parent"], sweep["child1"], sweep["other"]}
    rebuild = ok("rebuild")
    assert rebuild.startswith("rebuilt ")
    assert live_snapshot(store) == live
    with alexandria.Reader(store) as r:
        run = r.run("grid2")["run"]
        assert (run["note"], run["tags"], run["deleted"]) == ("n2", {"u": "2"}, True)
        assert r.run(sweep["other"])["run"]["experiment_name"] == "solo"


def test_an_annotation_event_this_reader_does_not_know_is_reported_and_skipped(store: Store) -> None:
    with alexandria.start_run(experiment="e", name="old", store=store, capture=False) as r:
        r.log_metric("loss", 1.0, step=0)
    segment = write_annotation(store.run_dir(r.id), r.id, [RunEdited(name="new", time=time.time())])
    lines = segment.read_bytes().splitlines(keepends=True)  # header, the edit, the close
    future = json.dumps({"event": "run_starred", "time": time.time(), "stars": 5}).encode() + b"\n"
    later = encoder.encode_lines([RunEdited(note="still read", time=time.time())])
    newer = store.run_dir(r.id) / new_segment_name()
    newer.write_bytes(lines[0] + future + later + encoder.encode_lines([SegmentClosed(time=time.time())]))
    offset = len(lines[0])

    table = ok("runs")
    assert "1 unreadable line(s) in the logs were skipped: `alex problems` lists them" in table
    relative = newer.relative_to(store.root).as_posix()
    assert (
        ok("problems")
        == f"{relative} at byte {offset}: unknown_event: event type 'run_starred' is newer than this reader\n"
    )
    run = alexandria.Reader(store).run(r.id)["run"]
    assert (run["name"], run["note"], run["status"], run["attempt"]) == ("new", "still read", "finished", 0)
    assert rebuilt_snapshot(store) == live_snapshot(store)


def test_qex_commands_take_run_names_and_list_them(tmp_path: Path) -> None:
    root = tmp_path / "qex"
    env_store = ["--store", str(root)]
    made = alex("qex", *env_store, "run", "bell")
    assert made.returncode == 0, made.stderr
    with alexandria.Reader(root) as r:
        (run,) = r.runs()
    listing = alex("qex", *env_store, "runs", "--format", "json")
    assert [x["name"] for x in json.loads(listing.stdout)] == [run["name"]]
    shown = alex("qex", *env_store, "show", run["name"])
    assert shown.returncode == 0 and shown.stdout.startswith(f"run {run['id']}  name {run['name']}  experiment bell")
    assert ok("--store", str(root), "delete", run["name"]).startswith("deleted 1 run(s)")
    gone = alex("qex", *env_store, "show", run["name"])
    assert (gone.returncode, gone.stderr) == (
        1,
        f"Error: run {run['id']} is deleted: `alex restore {run['id'][:8]}` brings it back\n",
    )
    assert json.loads(alex("qex", *env_store, "runs", "--format", "json").stdout) == []
