"""`import alexandria.wandb as wandb`: ordinary W&B (and trackio) scripts, run as real processes with only the
import changed, land in SQL as W&B records them.

W&B's documented step semantics, which these tests pin (and, where the real `wandb` package is installed,
compare with what it writes in offline mode): `log(d)` commits a row at the current step and advances the
step by one; `commit=False` accumulates into the current row; `step=s` above the current step commits the
pending row and moves to `s` without committing (commit=True commits it); `step=s` below the current step
is dropped with a warning; finishing commits the pending row.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexandria.store import Store
from alexandria.wandb import run_id_for
from tests.conftest import child_env, query, skip_outside_ci

WANDB_IMPORT = "import alexandria.wandb as wandb"


def run_script(body: str, *, check: bool = True, env: dict[str, str] | None = None, cwd: Path | None = None):
    """A W&B-style script (`import wandb` written by the caller) in a child process of its own."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        env=env or child_env(ALEXANDRIA_CAPTURE="0"),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )
    if check:
        assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stderr}"
    return proc


def points(store: Store, run_id: str) -> dict[tuple[str, int], float]:
    found = query(store, f"SELECT key, step, value FROM metric WHERE run_id = '{run_id}'")
    out = {(str(k), int(s)): float(v) for k, s, v in found}  # type: ignore[arg-type]
    assert len(out) == len(found), "a point was written twice"
    return out


def the_run(store: Store) -> tuple[str, str, str, str, str | None, dict[str, str]]:
    (row,) = query(store, "SELECT id, experiment_name, name, status, note, tags FROM run")
    run_id, experiment, name, status, note, tags = row
    return run_id, experiment, name, status, note, json.loads(tags)  # type: ignore[return-value,arg-type]


def params(store: Store, run_id: str) -> dict[str, str]:
    return dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))  # type: ignore[arg-type]


# The W&B quickstart, as its docs write it.
QUICKSTART = """
    {import_line}
    import random

    random.seed(7)
    epochs = 10
    lr = 0.01
    run = wandb.init(
        project="my-awesome-project",
        name="quickstart",
        config={{"learning_rate": lr, "epochs": epochs, "architecture": "CNN", "optimizer": {{"beta1": 0.9}}}},
        tags=["baseline", "cnn"],
        notes="first try",
        group="sweep-a",
        job_type="train",
    )
    offset = random.random() / 5
    for epoch in range(2, epochs):
        acc = 1 - 2**-epoch - random.random() / epoch - offset
        loss = 2**-epoch + random.random() / epoch + offset
        wandb.log({{"acc": acc, "loss": loss}})
    print(json.dumps({{"id": run.id, "step": run.step, "lr": wandb.config.learning_rate,
                       "epochs": wandb.config["epochs"], "summary_acc": run.summary["acc"]}}))
    run.finish()
"""


def quickstart_expected() -> dict[tuple[str, int], float]:
    import random

    random.seed(7)
    offset = random.random() / 5
    expected = {}
    for step, epoch in enumerate(range(2, 10)):
        expected[("acc", step)] = 1 - 2**-epoch - random.random() / epoch - offset
        expected[("loss", step)] = 2**-epoch + random.random() / epoch + offset
    return expected


def test_the_quickstart_runs_unchanged(store: Store) -> None:
    out = run_script("import json\n" + textwrap.dedent(QUICKSTART).format(import_line=WANDB_IMPORT))
    shown = json.loads(out.stdout)
    assert shown["step"] == 8 and shown["lr"] == 0.01 and shown["epochs"] == 10
    run_id, experiment, name, status, note, tags = the_run(store)
    assert run_id == run_id_for("my-awesome-project", shown["id"]) and len(shown["id"]) == 8
    assert (experiment, name, status, note) == ("my-awesome-project", "quickstart", "finished", "first try")
    assert tags == {
        "wandb.id": shown["id"],
        "wandb.tag.baseline": "1",
        "wandb.tag.cnn": "1",
        "wandb.group": "sweep-a",
        "wandb.job_type": "train",
    }
    assert params(store, run_id) == {
        "learning_rate": "0.01",
        "epochs": "10",
        "architecture": "CNN",
        "optimizer.beta1": "0.9",
    }
    expected = quickstart_expected()
    assert points(store, run_id) == expected
    assert shown["summary_acc"] == expected[("acc", 7)]


STEPS = """
    {import_line}

    run = wandb.init(project="steps", config={{"batch_size": 32}})
    for i in range(3):
        wandb.log({{"loss": 1.0 / (i + 1)}})
    wandb.log({{"a": 1}}, commit=False)
    wandb.log({{"a": 11, "b": 2}}, commit=False)
    wandb.log({{"c": 3}})
    wandb.log({{"x": 4}}, step=10)
    wandb.log({{"x": 5}}, step=5)
    wandb.log({{"y": 6}})
    wandb.log({{"z": 7}}, step=12, commit=True)
    wandb.log({{"w": 8}})
    wandb.log({{"train": {{"loss": 0.25, "acc": 0.75}}}}, step=20)
    wandb.log({{"q": 9}}, step=20)
    print("STEP", run.step)
    wandb.finish()
"""

STEPS_EXPECTED = {
    ("loss", 0): 1.0,
    ("loss", 1): 0.5,
    ("loss", 2): 1 / 3,
    ("a", 3): 11.0,
    ("b", 3): 2.0,
    ("c", 3): 3.0,
    ("x", 10): 4.0,
    ("y", 10): 6.0,
    ("z", 12): 7.0,
    ("w", 13): 8.0,
    ("train.loss", 20): 0.25,
    ("train.acc", 20): 0.75,
    ("q", 20): 9.0,
}


def test_steps_follow_wandb_commit_false_explicit_and_lower_steps(store: Store) -> None:
    """Every rule of W&B's step numbering in one script; the step-5 point is dropped with a warning."""
    out = run_script(STEPS.format(import_line=WANDB_IMPORT))
    assert "STEP 20" in out.stdout  # the step-20 row is still pending: finish commits it
    assert "step 5 is lower than the current step 10" in out.stderr
    run_id, experiment, _, status, _, _ = the_run(store)
    assert (experiment, status) == ("steps", "finished")
    assert points(store, run_id) == STEPS_EXPECTED
    assert params(store, run_id) == {"batch_size": "32"}


def _wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a W&B transaction log (.wandb): a 7-byte header, then 32 KiB blocks of records with a
    7-byte header each (crc32c, length, type: full, first, middle, last), the LevelDB log layout W&B uses."""
    data = path.read_bytes()
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # the zero padding at a block's end
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield pending
            pending = b""


def test_step_numbering_matches_what_real_wandb_writes_offline(store: Store, tmp_path: Path) -> None:
    """The same script under the real `wandb` in offline mode: its history rows (read from its .wandb log with
    its own protobuf types) hold exactly the points Alexandria stored, at the same steps."""
    try:
        from wandb.proto import wandb_internal_pb2  # type: ignore[import-not-found]
    except ImportError:
        skip_outside_ci("the wandb package is not installed (pip install -e '.[test]' installs it)")
    wandb_dir = tmp_path / "wandb-home"
    wandb_dir.mkdir()
    env = child_env(
        ALEXANDRIA_CAPTURE="0", WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=str(wandb_dir),
        WANDB_CONFIG_DIR=str(wandb_dir / "config"), WANDB_CACHE_DIR=str(wandb_dir / "cache"),
    )  # fmt: skip
    real = run_script(STEPS.format(import_line="import wandb"), env=env, cwd=tmp_path)
    ours = run_script(STEPS.format(import_line=WANDB_IMPORT))
    (log_file,) = wandb_dir.glob("wandb/offline-run-*/run-*.wandb")
    theirs: dict[tuple[str, int], float] = {}
    for raw in _wandb_records(log_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        row = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for key, value in row.items():
            if not key.startswith("_"):
                theirs[(key, row["_step"])] = float(value)
    assert theirs == STEPS_EXPECTED
    run_id = the_run(store)[0]
    assert points(store, run_id) == theirs
    assert real.stdout.split()[-1] == ours.stdout.split()[-1] == "20"  # run.step agrees too


def test_summary_exit_code_and_pending_row_at_exit(store: Store) -> None:
    """An explicit summary is stored as tags; finish(exit_code=1) fails the run; a script that never calls
    finish still writes its pending row (commit=False) and ends finished."""
    run_script(
        f"""
        {WANDB_IMPORT}
        wandb.init(project="sum", name="one")
        wandb.log({{"loss": 0.5}})
        wandb.log({{"loss": 0.25}})
        wandb.summary["best_loss"] = 0.2
        wandb.run.summary.update({{"eval": {{"acc": 0.9}}}})
        assert wandb.summary["loss"] == 0.25 and wandb.summary["best_loss"] == 0.2
        wandb.finish(exit_code=1)
        assert wandb.run is None
        run = wandb.init(project="sum", name="two")
        wandb.log({{"loss": 0.125}}, commit=False)
        """
    )
    found = {
        name: (status, json.loads(tags), run_id)
        for run_id, name, status, tags in query(store, "SELECT id, name, status, tags FROM run")
    }  # type: ignore[arg-type]
    status, tags, one = found["one"]
    assert status == "failed"
    assert {k: v for k, v in tags.items() if k.startswith("summary.")} == {
        "summary.best_loss": "0.2",
        "summary.eval.acc": "0.9",
    }
    assert points(store, one) == {("loss", 0): 0.5, ("loss", 1): 0.25}
    status, _, two = found["two"]
    assert status == "finished"
    assert points(store, two) == {("loss", 0): 0.125}


def test_context_manager_finishes_or_fails_the_run(store: Store) -> None:
    proc = run_script(
        f"""
        {WANDB_IMPORT}
        with wandb.init(project="ctx", name="ok", config={{"lr": 0.1}}) as run:
            run.log({{"loss": 1.0}})
            run.config.update({{"epochs": 3}})
            run.config.dropout = 0.5
        with wandb.init(project="ctx", name="boom") as run:
            run.log({{"loss": 2.0}})
            raise RuntimeError("diverged")
        """,
        check=False,
    )
    assert proc.returncode == 1 and "diverged" in proc.stderr
    found = {
        name: (status, run_id, error)
        for run_id, name, status, error in query(store, "SELECT id, name, status, error FROM run")
    }
    assert found["ok"][0] == "finished" and found["boom"][0] == "failed"
    assert found["boom"][2] == "RuntimeError: diverged"
    assert params(store, found["ok"][1]) == {"lr": "0.1", "epochs": "3", "dropout": "0.5"}  # type: ignore[arg-type]
    assert points(store, found["boom"][1]) == {("loss", 0): 2.0}  # type: ignore[arg-type]


def test_resume_by_id_continues_the_same_run_after_its_last_step(store: Store) -> None:
    """id= + resume="allow" creates the run, then continues it (W&B's id maps to one Alexandria id); the steps
    go on after the highest one; resume="must" of a missing id and resume="never" of an existing one fail."""
    script = f"""
        import sys
        {WANDB_IMPORT}
        run = wandb.init(project="resumable", id="abc12345", resume="allow", name="r")
        start = run.step
        for i in range(3):
            wandb.log({{"loss": float(start + i)}})
        print(run.id, run.resumed)
        wandb.finish()
    """
    first = run_script(script)
    second = run_script(script)
    assert first.stdout.split() == ["abc12345", "False"] and second.stdout.split() == ["abc12345", "True"]
    run_id, _, name, status, _, tags = the_run(store)
    assert run_id == run_id_for("resumable", "abc12345") and tags["wandb.id"] == "abc12345"
    assert (name, status) == ("r", "finished")
    assert points(store, run_id) == {("loss", s): float(s) for s in range(6)}
    assert query(store, f"SELECT max(attempt) FROM lifecycle WHERE run_id = '{run_id}'") == [(1,)]
    never = run_script(
        f'{WANDB_IMPORT}\nwandb.init(project="resumable", id="abc12345", resume="never")', check=False
    )
    assert never.returncode == 1 and "InvalidInputError" in never.stderr and "resume='never'" in never.stderr
    must = run_script(f'{WANDB_IMPORT}\nwandb.init(project="resumable", id="zzz99999", resume="must")', check=False)
    assert must.returncode == 1 and "has no such run" in must.stderr
    assert len(query(store, "SELECT id FROM run")) == 1


def test_a_trackio_script_runs_with_the_same_module(store: Store) -> None:
    """trackio's API is W&B's: `import alexandria.wandb as trackio` serves its scripts too."""
    run_script(
        """
        import alexandria.wandb as trackio

        trackio.init(project="fine-tune", name="trackio-run", config={"epochs": 2, "lr": 3e-4}, space_id=None)
        for epoch in range(2):
            for step in range(3):
                trackio.log({"epoch": epoch, "train_loss": 1.0 / (1 + epoch * 3 + step)})
        trackio.finish()
        """
    )
    run_id, experiment, name, status, _, _ = the_run(store)
    assert (experiment, name, status) == ("fine-tune", "trackio-run", "finished")
    assert params(store, run_id) == {"epochs": "2", "lr": "0.0003"}
    expected = {}
    for epoch in range(2):
        for step in range(3):
            expected[("epoch", epoch * 3 + step)] = float(epoch)
            expected[("train_loss", epoch * 3 + step)] = 1.0 / (1 + epoch * 3 + step)
    assert points(store, run_id) == expected


def test_media_other_than_image_table_and_histogram_are_refused_and_nothing_of_the_call_is_logged(
    store: Store,
) -> None:
    proc = run_script(
        f"""
        {WANDB_IMPORT}
        from alexandria.errors import UnsupportedError
        wandb.init(project="media")
        audio = wandb.Audio([0.0, 0.1], sample_rate=8000)
        image = wandb.Image([[0, 1], [1, 0]])
        with_image = wandb.Table(columns=["a"], data=[[image]])
        for value in (audio, [audio, audio], wandb.Video("clip.mp4"), wandb.Html("<b>x</b>"), with_image):
            try:
                wandb.log({{"loss": 1.0, "sample": value, "picture": image}})
            except UnsupportedError as exc:
                print(exc)
            else:
                raise SystemExit("not refused")
        wandb.log({{"loss": 0.5}})
        wandb.define_metric("loss", summary="min")
        wandb.define_metric("acc", summary="max")
        wandb.watch(object())
        wandb.finish()
        """
    )
    lines = proc.stdout.splitlines()
    assert [line.split()[4] for line in lines[:4]] == ["wandb.Audio;", "wandb.Audio;", "wandb.Video;", "wandb.Html;"]
    assert all("'sample'" in line and "nothing of this log call was logged" in line for line in lines)
    assert "table 'sample' holds a Image; media inside a table are not supported" in lines[4]
    assert proc.stderr.count("define_metric is ignored") == 1 and proc.stderr.count("watch is ignored") == 1
    run_id = the_run(store)[0]
    assert points(store, run_id) == {("loss", 0): 0.5}
    assert query(store, "SELECT count(*) FROM media") == [(0,)]


def test_images_tables_and_histograms_are_logged_at_the_rows_step(store: Store) -> None:
    run_script(
        f"""
        {WANDB_IMPORT}
        import numpy as np
        import pandas as pd
        from PIL import Image
        wandb.init(project="media")
        wandb.log({{"loss": 1.0, "grid": wandb.Image([[0, 1], [1, 0]], caption="grid")}})  # step 0
        wandb.log({{"chw": wandb.Image(np.zeros((3, 4, 5)) + 0.5), "hist": wandb.Histogram([1, 2, 2, 3], num_bins=2)}})
        table = wandb.Table(columns=["a", "b"], data=[[1, "x"]])
        table.add_data(2, "y")
        wandb.log({{"table": table, "frame": wandb.Table(dataframe=pd.DataFrame({{"c": [1.5]}}))}}, step=5)
        wandb.log({{"gallery": [wandb.Image(Image.new("RGB", (3, 2))), wandb.Image(np.ones((2, 2)))]}}, commit=False)
        wandb.log({{"given": wandb.Histogram(np_histogram=([1, 4], [0.0, 1.0, 2.0])), "loss": 0.5}})
        wandb.log({{"plain": wandb.Table(data=[[1, 2]])}})
        wandb.finish()
        """
    )
    run_id = the_run(store)[0]
    found = query(
        store,
        f"SELECT key, step, kind, width, height, caption, n_rows, n_cols, columns, value_count FROM media "
        f"WHERE run_id = '{run_id}' ORDER BY step, key, id",
    )
    assert found == [
        ("grid", 0, "image", 2, 2, "grid", None, None, None, None),
        ("chw", 1, "image", 5, 4, None, None, None, None, None),
        ("hist", 1, "histogram", None, None, None, 2, None, None, 4),
        ("frame", 5, "table", None, None, None, 1, 1, '["c"]', None),
        ("gallery", 5, "image", 3, 2, None, None, None, None, None),
        ("gallery", 5, "image", 2, 2, None, None, None, None, None),
        ("given", 5, "histogram", None, None, None, 2, None, None, 5),
        ("table", 5, "table", None, None, None, 2, 2, '["a", "b"]', None),
        ("plain", 6, "table", None, None, None, 1, 2, '["Column_1", "Column_2"]', None),
    ]
    (path,) = query(store, f"SELECT path FROM media WHERE run_id = '{run_id}' AND key = 'grid'")[0]
    with Image.open(store.root / str(path)) as img:
        assert np.asarray(img).tolist() == [[0, 255], [255, 0]]  # W&B's scaling: at most 1, times 255
    (chw,) = query(store, f"SELECT path FROM media WHERE run_id = '{run_id}' AND key = 'chw'")[0]
    with Image.open(store.root / str(chw)) as img:
        assert img.mode == "RGB" and set(np.asarray(img).reshape(-1).tolist()) == {127}  # 127.5, cut as W&B cuts
    assert points(store, run_id) == {("loss", 0): 1.0, ("loss", 5): 0.5}


def test_config_changes_are_refused_and_save_keeps_files(store: Store, tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "a.bin").write_bytes(b"a")
    (tmp_path / "ckpt" / "b.bin").write_bytes(b"b")
    proc = run_script(
        f"""
        {WANDB_IMPORT}
        from alexandria.errors import ParamConflictError
        run = wandb.init(project="cfg", config={{"lr": 0.1}})
        wandb.config.setdefaults({{"lr": 0.5, "seed": 1}})
        assert wandb.config.lr == 0.1 and wandb.config.seed == 1
        try:
            wandb.config.update({{"lr": 0.2}})
        except ParamConflictError as exc:
            print("refused", exc)
        run.log_artifact("model.pt", type="model")
        wandb.save("ckpt/*.bin", base_path=".")
        import os
        os.makedirs(os.path.join(run.dir, "sub"))
        with open(os.path.join(run.dir, "sub", "notes.txt"), "w") as f:
            f.write("kept")
        folder = run.dir
        wandb.finish()
        assert not os.path.exists(folder)
        """,
        cwd=tmp_path,
    )
    assert proc.stdout.startswith("refused")
    run_id = the_run(store)[0]
    assert params(store, run_id) == {"lr": "0.1", "seed": "1"}
    found = dict(query(store, f"SELECT name, type FROM artifact WHERE run_id = '{run_id}'"))
    assert found == {"model.pt": "model", "ckpt__a.bin": "file", "ckpt__b.bin": "file", "sub__notes.txt": "file"}
    (stored,) = query(store, f"SELECT path FROM artifact WHERE run_id = '{run_id}' AND name = 'sub__notes.txt'")
    assert (store.root / str(stored[0])).read_text() == "kept"


def test_log_before_init_and_disabled_mode(store: Store) -> None:
    proc = run_script(
        f"""
        {WANDB_IMPORT}
        from alexandria.errors import NoActiveRunError
        assert wandb.run is None
        try:
            wandb.log({{"loss": 1.0}})
        except NoActiveRunError as exc:
            print("refused")
        try:
            wandb.config.update({{"lr": 1}})
        except NoActiveRunError as exc:
            print("refused")
        try:
            wandb.summary["x"] = 1
        except NoActiveRunError as exc:
            print("refused")
        run = wandb.init(project="off", mode="disabled", config={{"lr": 1}}, settings=wandb.Settings(console="off"))
        wandb.log({{"loss": 1.0}})
        assert run.step == 1 and wandb.config.lr == 1
        wandb.finish()
        """
    )
    assert proc.stdout.split() == ["refused"] * 3
    assert query(store, "SELECT count(*) FROM run") == [(0,)]


def test_run_ids_are_a_stable_uuid5_of_project_and_wandb_id() -> None:
    assert run_id_for("p", "abc12345") == run_id_for("p", "abc12345") != run_id_for("q", "abc12345")
    assert run_id_for("p", "abc12345") == "62a56356d3085f30be5ed03e7020ed81"


def test_importing_the_module_loads_nothing_heavy() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, alexandria.wandb; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'numpy', 'pluggy', 'wandb'}))",
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
    assert os.environ.get("ALEXANDRIA_RUN_ID") is None


def test_start_run_with_a_new_run_id_and_an_experiment_creates_that_run(store: Store) -> None:
    """The core call the adapter stands on: a chosen id of a run not in the store yet starts it (with its
    start_time, as an import gives one); the same call again resumes it."""
    import alexandria

    run_id = run_id_for("core", "x1")
    first = alexandria.start_run(experiment="core", run_id=run_id, store=store, start_time=1000.0, capture=False)
    assert first.id == run_id and first.owner and first.attempt == 0
    first.log_metric("m", 1.0, step=0)
    first.end()
    again = alexandria.start_run(experiment="core", run_id=run_id, store=store, capture=False)
    assert again.attempt == 1
    again.end()
    assert query(store, "SELECT id, experiment_name, timestamp_start, status, attempt FROM run") == [
        (run_id, "core", 1000.0, "finished", 1)
    ]
    with pytest.raises(alexandria.InvalidInputError, match="start_time= is for a new run"):
        alexandria.start_run(experiment="core", run_id=run_id, store=store, start_time=1.0)


def test_a_second_process_resuming_a_running_run_leaves_its_end_to_the_owner(store: Store) -> None:
    """init(id=, resume="allow") of a run another process still runs attaches to it: its finish flushes,
    and the run ends when its owner finishes."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, alexandria
                {WANDB_IMPORT}
                wandb.init(project="shared", id="own12345")
                wandb.log({{"loss": 1.0}})
                alexandria.flush()
                print("ready", flush=True)
                sys.stdin.readline()
                wandb.finish()
                """
            ),
        ],
        env=child_env(ALEXANDRIA_CAPTURE="0"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        run_script(
            f"""
            {WANDB_IMPORT}
            run = wandb.init(project="shared", id="own12345", resume="allow")
            assert run.resumed and run.step == 1, run.step
            wandb.log({{"other": 2.0}})
            wandb.finish()
            """
        )
        run_id = run_id_for("shared", "own12345")
        assert query(store, "SELECT status FROM run") == [("running",)]
        assert owner.stdin is not None
        owner.stdin.write("go\n")
        owner.stdin.close()
        assert owner.wait(timeout=120) == 0
    finally:
        if owner.poll() is None:
            owner.kill()
    assert query(store, "SELECT status, attempt FROM run") == [("finished", 0)]
    assert points(store, run_id) == {("loss", 0): 1.0, ("other", 1): 2.0}
