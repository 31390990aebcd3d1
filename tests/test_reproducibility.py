"""End to end: a training script in a real git repository, run as a real process, answers from SQL alone
"what data, code and packages produced this number, and did the run finish?" (the README's query)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import alexandria
from alexandria.db import open_database
from alexandria.rebuild import rebuild
from alexandria.store import Store
from tests.conftest import REPO, alex, child_env, query, table_rows
from tests.test_capture import git, hermetic_git, make_repo, sha  # noqa: F401 - hermetic_git is a fixture

TRAIN = """\
import sys
import numpy as np
import alexandria

with alexandria.start_run(experiment="repro") as run:
    run.log_dataset("data/train.csv", role="train")
    run.log_dataset(np.arange(12, dtype=np.float32).reshape(4, 3), name="holdout", role="eval")
    try:
        run.log_dataset("data/missing.csv", role="test")
    except alexandria.InvalidInputError as exc:
        print("refused:", exc, file=sys.stderr)
    for step in range(10):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
print(run.id)
"""

CSV = b"id,label,score\n1,cat,0.5\n2,dog,\n3,cat,1.25\n"


def readme_query() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- reproducibility query -->\n```sql\n(.*?)```", text, re.S)
    assert match, "README.md lost its reproducibility query"
    return match.group(1)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "project", {"train.py": TRAIN.encode(), "data/train.csv": CSV, "README": b"x\n"})
    (root / "train.py").write_text(TRAIN + "# tuned by hand\n")  # uncommitted: the tree is dirty
    return root


def test_sql_alone_says_what_data_code_and_packages_produced_a_number(store: Store, repo: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "--lr", "0.1 0.2"],
        cwd=repo,
        env=child_env(ALEXANDRIA_STORE=str(store.root)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert "refused:" in proc.stderr and "missing.csv" in proc.stderr  # a bad dataset, and the run went on

    # code: the commit, the dirty diff (hash and artifact), the entrypoint with its arguments, file hashes
    [code] = query(
        store,
        "SELECT git_commit, git_branch, git_dirty, diff_sha256, diff_artifact, entrypoint, "
        "tracked_files, repository, attempt FROM code",
    )
    commit, branch, dirty, diff_sha, diff_artifact, entrypoint, tracked, repository, attempt = code
    diff = git(repo, "diff", "HEAD", "--binary")
    assert (commit, branch, dirty, attempt) == (git(repo, "rev-parse", "HEAD").decode().strip(), "main", 1, 0)
    assert diff_sha == sha(diff) and (store.root / diff_artifact).read_bytes() == diff
    assert entrypoint == f"{repo / 'train.py'} --lr '0.1 0.2'" and repository == str(repo)
    assert json.loads(tracked) == {
        rel: sha((repo / rel).read_bytes()) for rel in ("README", "data/train.csv", "train.py")
    }

    # environment: the child's interpreter and packages
    [(python_version, freeze, libraries, executable)] = query(
        store, "SELECT python_version, pip_freeze, libraries, executable FROM environment"
    )
    assert python_version == platform.python_version() and executable == sys.executable
    assert json.loads(freeze)["msgspec"] == importlib.metadata.version("msgspec")
    assert json.loads(libraries)["numpy"] == np.__version__

    # data: two datasets with roles; the seed's columns answer as the seed wrote them
    rows = query(store, "SELECT role, name, path, num_rows, num_columns, schema, hash FROM dataset ORDER BY role")
    assert rows[0][:5] == ("eval", "holdout", None, 4, 3)
    assert json.loads(rows[0][5]) == {"dtype": "float32", "shape": [4, 3]}
    assert rows[1][:5] == ("train", "train.csv", str(repo / "data/train.csv"), 3, 3)
    assert json.loads(rows[1][5]) == {"id": "integer", "label": "string", "score": "float"}
    assert rows[1][6] == sha(CSV)

    # the README's query, as a user would paste it
    out = alex("sql", readme_query(), "--format", "json", env=child_env(ALEXANDRIA_STORE=str(store.root)))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert {(r["id"], r["status"], r["role"], r["git_commit"], r["numpy"]) for r in answer} == {
        (run_id, "finished", "train", commit, np.__version__),
        (run_id, "finished", "eval", commit, np.__version__),
    }
    assert {r["final_loss"] for r in answer} == {0.1}

    engine = open_database(store)
    live = {t: table_rows(engine, t) for t in ("run", "code", "environment", "dataset", "artifact")}
    engine.dispose()
    rebuild(store)
    engine = open_database(store)
    assert {t: table_rows(engine, t) for t in live} == live
    engine.dispose()


def test_capture_can_be_switched_off_or_narrowed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with alexandria.start_run(experiment="off", store=store, capture=False):
        pass
    with alexandria.start_run(experiment="env only", store=store, capture=["environment"]):
        pass
    monkeypatch.setenv("ALEXANDRIA_CAPTURE", "0")
    with alexandria.start_run(experiment="off by env", store=store):
        pass
    assert query(store, "SELECT count(*) FROM code") == [(0,)]
    assert query(store, "SELECT r.experiment_name FROM environment e JOIN run r ON r.id = e.run_id") == [("env only",)]
    monkeypatch.setenv("ALEXANDRIA_CAPTURE", "code,gpu")
    with pytest.raises(alexandria.InvalidInputError, match=r"ALEXANDRIA_CAPTURE='code,gpu'.*cannot capture gpu"):
        alexandria.start_run(experiment="bad", store=store)


def test_the_environment_is_recorded_before_start_run_returns(store: Store) -> None:
    """On the caller's thread, not a background one: reading package metadata is Python holding the GIL, which
    a thread took from the training loop's first logging calls. So it is in the log before any point is."""
    run = alexandria.start_run(experiment="env first", store=store, capture=["environment"], system_metrics=False)
    try:
        assert not [t.name for t in threading.enumerate() if t.name.startswith("alexandria-capture")]
        run.log_metric("loss", 0.5, step=0)
        run.flush()
        [segment] = store.run_segments(run.id)
        kinds = [json.loads(line)["event"] for line in segment.read_bytes().splitlines()[1:]]
        assert kinds.index("environment") < kinds.index("metric")
    finally:
        run.end()
    assert query(store, "SELECT count(*) FROM environment") == [(1,)]


def test_a_resumed_run_records_its_code_and_environment_again(store: Store) -> None:
    with alexandria.start_run(experiment="twice", store=store, capture=["environment"]) as run:
        pass
    with alexandria.start_run(run_id=run.id, store=store, capture=["environment"]) as again:
        assert again.attempt == 1
    assert query(store, "SELECT attempt FROM environment ORDER BY attempt") == [(0,), (1,)]


def test_bad_datasets_get_clear_errors_and_the_run_goes_on(store: Store, tmp_path: Path) -> None:
    with alexandria.start_run(experiment="bad data", store=store, capture=False) as run:
        with pytest.raises(alexandria.InvalidInputError, match=r"nowhere\.csv"):
            run.log_dataset(tmp_path / "nowhere.csv")
        with pytest.raises(alexandria.InvalidInputError, match="cannot describe dict as a dataset"):
            run.log_dataset({"a": 1})
        with pytest.raises(alexandria.InvalidInputError, match="role must be a non-empty string"):
            run.log_dataset(np.zeros(3), role="")
        run.log_metric("loss", 0.5, step=0)
    assert query(store, "SELECT status FROM run") == [("finished",)]
    assert query(store, "SELECT count(*) FROM dataset") == [(0,)]
    assert query(store, "SELECT count(*) FROM metric") == [(1,)]
