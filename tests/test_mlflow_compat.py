"""`import alexandria.mlflow as mlflow` against MLflow itself: the same scripts, written as MLflow's docs write
them, run once with real MLflow (a SQLite tracking store) and once with only the import changed; what each
recorded is read back through MLflow's client and through our Reader/SQL and compared."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mlflow_common import needs_mlflow, recorded_by_mlflow, recorded_by_us, require, run_script

__all__ = ["needs_mlflow"]  # the autouse fixture, imported to apply here

QUICKSTART = """
import os
mlflow.set_tracking_uri(os.environ["TRACKING"])
mlflow.set_experiment("quickstart")
params = {"learning_rate": 0.01, "epochs": 5, "optimizer": "adam", "layers": [64, 32]}
with mlflow.start_run(run_name="baseline", tags={"team": "vision"}, description="first *try*") as run:
    mlflow.log_params(params)
    mlflow.log_param("seed", 7)
    for epoch in range(5):
        mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch, timestamp=1700000000000 + 1000 * epoch)
        mlflow.log_metrics({"acc": 0.5 + epoch / 10, "val_acc": 0.4 + epoch / 10}, step=epoch,
                           timestamp=1700000000500 + 1000 * epoch)
    mlflow.log_metric("final", 0.25, timestamp=1700000009999)
    mlflow.set_tag("stage", "tuned")
    mlflow.set_tags({"stage": "final", "owner": "ada"})
    info = mlflow.active_run().info
    assert info.run_id == run.info.run_id and info.status == "RUNNING" and info.run_name == "baseline"
    assert info.start_time == run.info.start_time
got = mlflow.get_run(run.info.run_id)
assert got.info.start_time == run.info.start_time and got.info.end_time >= got.info.start_time
import json
print(json.dumps({"params": got.data.params, "metrics": got.data.metrics, "status": got.info.status,
                  "name": got.info.run_name,
                  "tags": {k: v for k, v in got.data.tags.items() if not k.startswith("mlflow.")}}))
"""

SWEEP = """
import os, json
mlflow.set_tracking_uri(os.environ["TRACKING"])
mlflow.set_experiment("sweep")
with mlflow.start_run(run_name="search") as parent:
    mlflow.log_param("strategy", "grid")
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        with mlflow.start_run(run_name=f"trial-{i}", nested=True) as child:
            mlflow.log_param("lr", lr)
            for step in range(3):
                mlflow.log_metric("loss", lr * (3 - step), step=step, timestamp=1700000100000 + 10 * step + i)
            mlflow.set_tag("trial", str(i))
    mlflow.log_metric("best_loss", 0.001)
    mlflow.set_tag("mlflow.note.content", "grid over *lr*")
with mlflow.start_run(run_name="broken"):
    mlflow.log_param("lr", 5.0)
    mlflow.end_run(status="FAILED")
with mlflow.start_run(run_id=parent.info.run_id) as again:
    mlflow.log_metric("after", 2.0, step=1, timestamp=1700000200000)
    assert again.info.run_id == parent.info.run_id
print(json.dumps({"active": mlflow.active_run() is None}))
"""

ARTIFACTS = """
import os, json, tempfile, pathlib
mlflow.set_tracking_uri(os.environ["TRACKING"])
mlflow.set_experiment("artifacts")
with mlflow.start_run(run_name="files"):
    mlflow.log_dict({"model": {"depth": 3, "width": [64, 32]}, "name": "mlp"}, "config.json")
    mlflow.log_dict({"batch": 32, "lr": 0.01}, "configs/train.yaml")
    mlflow.log_text("epoch,loss\\n0,1.0\\n1,0.5\\n", "logs/history.csv")
    mlflow.log_text("all good", "summary.txt")
    tmp = pathlib.Path(tempfile.mkdtemp())
    (tmp / "weights.bin").write_bytes(bytes(range(256)) * 4)
    mlflow.log_artifact(str(tmp / "weights.bin"))
    mlflow.log_artifact(str(tmp / "weights.bin"), artifact_path="checkpoints/epoch-1")
    out = tmp / "outputs"
    (out / "plots").mkdir(parents=True)
    (out / "predictions.txt").write_text("1\\n0\\n1\\n")
    (out / "plots" / "curve.svg").write_text("<svg/>")
    mlflow.log_artifacts(str(out))
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "seeded"  # the same ids in both runs of the script
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1.0, 0.5, 0.25])
    mlflow.log_figure(fig, "figures/loss.svg", save_kwargs={"metadata": {"Date": None}})
    import plotly.graph_objects as go
    mlflow.log_figure(go.Figure(go.Scatter(x=[0, 1], y=[1.0, 0.5])), "figures/loss.html")
print(json.dumps({}))
"""

SEARCH = """
import os, json
mlflow.set_tracking_uri(os.environ["TRACKING"])
mlflow.set_experiment("search")
for i, (lr, opt) in enumerate([(0.1, "sgd"), (0.01, "adam"), (0.001, "adam"), (0.05, "sgd")]):
    with mlflow.start_run(run_name=f"r{i}", tags={"opt": opt}):
        mlflow.log_params({"lr": lr, "opt": opt})
        mlflow.log_metric("acc", 0.6 + i / 10, step=0)
        mlflow.log_metric("acc", 0.7 + i / 10 - (0.2 if i == 2 else 0), step=1)
with mlflow.start_run(run_name="bad"):
    mlflow.log_param("lr", 1.0)
    mlflow.end_run("KILLED")

def names(**kw):
    frame = mlflow.search_runs(**kw)
    return frame["tags.mlflow.runName"].tolist()

def table(**kw):
    frame = mlflow.search_runs(**kw)
    cols = sorted(c for c in frame.columns if c.startswith(("metrics.", "params.", "tags.opt")))
    shown = [c for c in frame.columns if not c.startswith(("tags.mlflow.", "tags.opt")) and c != "artifact_uri"]
    return {"columns": sorted(shown),
            "rows": frame[["tags.mlflow.runName", *cols]].fillna("-").values.tolist(),
            "status": frame["status"].tolist(), "time": str(frame["start_time"].dtype)}

print(json.dumps({
    "acc": names(filter_string="metrics.acc > 0.75", order_by=["metrics.acc DESC"]),
    "param": names(filter_string="params.opt = 'adam'", order_by=["params.lr ASC"]),
    "tag_and": names(filter_string="tags.opt = 'sgd' AND metrics.acc >= 0.7", order_by=["metrics.acc ASC"]),
    "status": names(filter_string="attributes.status = 'FINISHED'", order_by=["params.lr DESC"]),
    "killed": names(filter_string="attributes.status != 'FINISHED'"),
    "like": names(filter_string="params.opt LIKE 'ad%' AND tags.opt ILIKE 'AD%'", order_by=["metrics.acc DESC"]),
    "by_name": names(experiment_names=["search"], filter_string="attributes.run_name = 'r1'"),
    "newest": names(experiment_names=["search"], max_results=2),
    "table": table(experiment_names=["search"], order_by=["params.lr ASC"]),
}))
"""


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _both(tmp_path: Path, script: str) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "ours").mkdir()
    tracking = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    theirs_out = run_script(script, tmp_path / "mlflow", ours=False, tracking=tracking)
    ours_out = run_script(script, tmp_path / "ours", ours=True, tracking=(tmp_path / "ours" / "store").as_uri())
    return theirs_out, ours_out, recorded_by_mlflow(tracking), recorded_by_us(tmp_path / "ours" / "store")


def _same_records(theirs: dict[str, Any], ours: dict[str, Any]) -> None:
    assert sorted(theirs) == sorted(ours)
    for name in theirs:
        t, o = dict(theirs[name]), dict(ours[name])
        for side in (t, o):  # wall-clock times differ between two processes: those must lie within the run
            start, end = side.pop("start_time"), side.pop("end_time") or 2**62
            assert start <= end
            for key, points in side["metrics"].items():
                assert all(ts < start or start - 1 <= ts <= end + 1 for _, _, ts in points)
                side["metrics"][key] = [(s, v, ts if ts < start - 1 else "now") for s, v, ts in points]
            for name in side["artifacts"]:  # plotly names its <div> with a fresh uuid each time
                if name.endswith(".html"):
                    side["artifacts"][name] = _UUID.sub(b"<uuid>", side["artifacts"][name])
        assert t == o, name


def test_quickstart_params_metrics_steps_and_timestamps_as_mlflow(tmp_path: Path) -> None:
    theirs_out, ours_out, theirs, ours = _both(tmp_path, QUICKSTART)
    assert theirs_out == ours_out
    _same_records(theirs, ours)
    run = ours["baseline"]
    assert run["metrics"]["loss"][0] == (0, 1.0, 1700000000000)  # milliseconds in, seconds stored, ms out
    assert run["metrics"]["final"] == [(0, 0.25, 1700000009999)]  # no step: step 0, as MLflow logs it
    assert run["note"] == "first *try*" and run["status"] == "FINISHED"


def test_nested_sweep_parents_and_statuses_as_mlflow(tmp_path: Path) -> None:
    theirs_out, ours_out, theirs, ours = _both(tmp_path, SWEEP)
    assert theirs_out == ours_out == {"active": True}
    _same_records(theirs, ours)
    assert [ours[f"trial-{i}"]["parent"] for i in range(3)] == ["search"] * 3
    assert ours["broken"]["status"] == "FAILED"
    assert ours["search"]["note"] == "grid over *lr*"  # the tag MLflow's UI shows as a description
    assert ours["search"]["metrics"]["after"] == [(1, 2.0, 1700000200000)]  # logged into the run continued


def test_artifacts_dict_text_files_dirs_and_figures_as_mlflow(tmp_path: Path) -> None:
    require("matplotlib", "yaml")
    _, _, theirs, ours = _both(tmp_path, ARTIFACTS)
    _same_records(theirs, ours)
    assert sorted(ours["files"]["artifacts"]) == [
        "checkpoints/epoch-1/weights.bin",
        "config.json",
        "configs/train.yaml",
        "figures/loss.html",
        "figures/loss.svg",
        "logs/history.csv",
        "plots/curve.svg",
        "predictions.txt",
        "summary.txt",
        "weights.bin",
    ]


def test_search_runs_filter_and_order_as_mlflow(tmp_path: Path) -> None:
    theirs_out, ours_out, theirs, ours = _both(tmp_path, SEARCH)
    assert ours_out["acc"] == ["r3", "r1"]
    assert ours_out["killed"] == ["bad"]
    assert theirs_out == ours_out
    _same_records(theirs, ours)


SEARCH_GRAMMAR = """
import os, json
mlflow.set_tracking_uri(os.environ["TRACKING"])
mlflow.set_experiment("grammar")
ids = {}
for i in range(4):
    with mlflow.start_run(run_name=f"g{i}") as run:
        ids[f"g{i}"] = run.info.run_id
        mlflow.log_metric("val acc", i / 4, step=0)
        mlflow.log_param("model name", "mlp" if i % 2 else "cnn")
        mlflow.set_tag("split", "a" if i < 2 else "b")

def names(text, order=("attributes.run_name ASC",)):
    frame = mlflow.search_runs(experiment_names=["grammar"], filter_string=text, order_by=list(order))
    return frame["tags.mlflow.runName"].tolist()

print(json.dumps({
    "backticks": names("metrics.`val acc` >= 0.5 and params.`model name` = 'mlp'"),
    "run_id_in": names(f"attributes.run_id IN ('{ids['g0']}', '{ids['g3']}')"),
    "name_like": names("attributes.run_name LIKE 'g%' AND tags.split != 'a'"),
    "name_tag": names("tags.`mlflow.runName` = 'g2'"),
    "time": names("attributes.start_time > 0 AND metrics.`val acc` < 0.3"),
    "order_tag": names("", order=("tags.split DESC", "metrics.`val acc` ASC")),
    "double_quotes": names('params.`model name` = "cnn"'),
}))
"""


def test_search_grammar_quoted_keys_attributes_and_lists_as_mlflow(tmp_path: Path) -> None:
    theirs_out, ours_out, _, _ = _both(tmp_path, SEARCH_GRAMMAR)
    assert ours_out["backticks"] == ["g3"] and ours_out["run_id_in"] == ["g0", "g3"]
    assert theirs_out == ours_out


def _ours(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    from tests.conftest import child_env

    return subprocess.run(
        [sys.executable, "-c", "import alexandria.mlflow as mlflow\n" + code],
        cwd=tmp_path,
        env=child_env(ALEXANDRIA_STORE=str(tmp_path / "store")),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("mlflow.set_tracking_uri('http://localhost:5000')", "mlflow.set_tracking_uri('http://localhost:5000')"),
        ("mlflow.autolog()", "mlflow.autolog() is not supported"),
        ("mlflow.sklearn.log_model(None, 'm')", "mlflow.sklearn is not supported"),
        (
            "mlflow.start_run(); mlflow.search_runs(filter_string=\"metrics.acc > 0.5 OR params.x = 'y'\")",
            "expected AND at position 18, found 'OR'",
        ),
        (
            "mlflow.start_run(); mlflow.search_runs(filter_string='metrics.acc > high')",
            "expected a number at position 14",
        ),
        (
            "mlflow.start_run(); mlflow.search_runs(filter_string=\"params.lr > '1'\")",
            "> at position 10 compares numbers",
        ),
        ("mlflow.start_run(); mlflow.search_runs(filter_string=\"foo.lr = '1'\")", "'foo' at position 0"),
        ("mlflow.start_run(); mlflow.search_runs(order_by=['metrics.acc SIDEWAYS'])", "expected ASC or DESC"),
        ("mlflow.start_run(); mlflow.start_run()", "is already active"),
    ],
)
def test_what_is_not_supported_or_wrong_fails_naming_it(tmp_path: Path, code: str, message: str) -> None:
    proc = _ours(code, tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "alexandria.errors." in proc.stderr or "Error" in proc.stderr


def test_filter_values_are_bound_never_pasted_into_sql(tmp_path: Path) -> None:
    proc = _ours(
        "from alexandria.mlflow.search import FilterError\n"
        "with mlflow.start_run(run_name='a'):\n"
        "    mlflow.log_param('p', \"x' OR '1'='1\")\n"
        "print(len(mlflow.search_runs(filter_string=\"params.p = 'x\\\\' OR \\\\'1\\\\'=\\\\'1'\")))\n"
        "print(len(mlflow.search_runs(filter_string=\"params.p = 'x'\")))\n"
        "try:\n"
        "    mlflow.search_runs(filter_string=\"params.p = 'x'' OR ''1''=''1'\")\n"
        "except FilterError as exc:\n"
        "    print('refused', 'position 14' in str(exc))\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "0", "refused", "True"], proc.stdout + proc.stderr


def test_importing_alexandria_mlflow_loads_neither_mlflow_nor_sqlalchemy(tmp_path: Path) -> None:
    proc = _ours(
        "import sys\nprint(sorted(m for m in ('mlflow', 'sqlalchemy', 'pandas') if m in sys.modules))", tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_crashed_run_reads_as_failed(tmp_path: Path) -> None:
    """MLflow has no "crashed": a run whose process died without ending it reads as FAILED, and filters so."""
    died = _ours(
        "import os\nrun = mlflow.start_run(run_name='lost')\nmlflow.log_metric('x', 1.0)\n"
        "import alexandria; alexandria.flush()\nprint(run.info.run_id, flush=True)\nos._exit(0)\n",
        tmp_path,
    )
    run_id = died.stdout.split()[0]
    proc = _ours(
        f"print(mlflow.get_run({run_id!r}).info.status)\n"
        "print(mlflow.search_runs(filter_string=\"attributes.status = 'FAILED'\")['tags.mlflow.runName'].tolist())\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["FAILED", "['lost']"]
