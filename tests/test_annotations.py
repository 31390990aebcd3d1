"""Edits made after the fact are no life of a run: an annotation segment never changes a run's status,
times or attempt, whether the run finished, crashed or still runs (events.Header.annotation)."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest
from sqlalchemy import select

import alexandria
from alexandria.errors import InvalidInputError
from alexandria.life import run_state
from alexandria.names import generate_name
from alexandria.query import Reader
from alexandria.schema import run
from alexandria.store import Store
from tests.conftest import every_backend, python

pytestmark = every_backend

#: The columns an edit must leave as they were.
LIFE = ("status", "error", "timestamp_start", "timestamp_end", "last_seen", "attempt", "parent_id")

WRITER = """
import sys, alexandria
run = alexandria.start_run(experiment="life", store=sys.argv[1], capture=False)
run.log_metric("loss", 1.0, 0)
run.flush()
print(run.id, flush=True)
sys.stdin.readline()  # until the test says: then end, or be killed first
run.end()
print("ended", flush=True)
"""


def life_of(store: Store, run_id: str) -> dict[str, Any]:
    with Reader(store) as reader, reader.engine.connect() as conn:  # the reader folds what is logged first
        return dict(conn.execute(select(run).where(run.c.id == run_id)).one()._mapping)


def test_editing_a_crashed_run_keeps_its_verdict(store: Store) -> None:
    writer = python(WRITER, str(store.root), stdin=-1)
    assert writer.stdout is not None
    run_id = writer.stdout.readline().decode().strip()
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    before = life_of(store, run_id)
    assert before["status"] == "crashed"
    alexandria.edit_run(run_id, name="post-mortem", note="killed on purpose", tags={"cause": "oom"}, store=store)
    after = life_of(store, run_id)
    assert {k: after[k] for k in LIFE} == {k: before[k] for k in LIFE}
    assert (after["name"], after["note"], after["tags"]) == ("post-mortem", "killed on purpose", {"cause": "oom"})
    assert run_state(store, run_id).status == "crashed"


def test_editing_a_running_run_leaves_it_running_until_its_writer_ends(store: Store) -> None:
    writer = python(WRITER, str(store.root), stdin=-1)
    assert writer.stdout is not None and writer.stdin is not None
    run_id = writer.stdout.readline().decode().strip()
    try:
        alexandria.edit_run(run_id, note="still training", store=store)
        during = life_of(store, run_id)
        assert (during["status"], during["note"], during["timestamp_end"]) == ("running", "still training", None)
    finally:
        writer.stdin.write(b"end\n")
        writer.stdin.close()
    assert writer.stdout.readline().decode().strip() == "ended"
    writer.wait(timeout=60)
    ended = life_of(store, run_id)
    assert ended["status"] == "finished" and ended["attempt"] == 0 and ended["note"] == "still training"
    edit_segment = [p for p in store.run_segments(run_id) if b'"annotation":true' in p.read_bytes()]
    assert len(edit_segment) == 1


def test_an_edited_run_resumes_into_its_first_resume(store: Store) -> None:
    with alexandria.start_run(experiment="life", store=store, capture=False) as first:
        first.log_metric("loss", 1.0, 0)
    alexandria.edit_run(first.id, name="edited twice", store=store)
    alexandria.edit_run(first.id, tags={"k": "v"}, untag=["nothing"], store=store)
    with alexandria.start_run(run_id=first.id, store=store, capture=False) as again:
        assert again.attempt == 1  # the annotation segments are no lives
    row = life_of(store, first.id)
    assert (row["status"], row["attempt"], row["name"], row["tags"]) == ("finished", 1, "edited twice", {"k": "v"})


def test_names_given_generated_and_refused(store: Store) -> None:
    with alexandria.start_run(experiment="names", store=store, capture=False) as unnamed:
        pass
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{1,2}", unnamed.name or "")
    with alexandria.start_run(experiment="names", store=store, capture=False, name="bs64-lr0.01") as named:
        pass
    rows = {r["id"]: r["name"] for r in Reader(store).runs()}
    assert rows == {unnamed.id: unnamed.name, named.id: "bs64-lr0.01"}
    for bad in ("", "   ", "two\nlines", "x" * 201):
        with pytest.raises(InvalidInputError, match="a run's name must be"):
            alexandria.start_run(experiment="names", store=store, capture=False, name=bad)
    assert len({generate_name() for _ in range(50)}) > 40  # readable, and varied enough to tell runs apart
