"""`alex import wandb`: runs written by the real wandb in offline mode (child processes) come back point for
point: every history row at W&B's `_step` with its `_timestamp`, the system metrics, config, summary-only
values, tags, notes, saved files and the exit status, compared with what the script logged and with what
the `.wandb` file holds as W&B's own CLI (`wandb leet inspect --json`) prints it."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from alexandria import Reader
from alexandria.errors import ImportSourceError
from alexandria.importers import stable_run_id
from alexandria.importers.wandb import import_wandb
from alexandria.store import Store
from tests.conftest import alex, child_env, make_seed, python, wait_until

pytest.importorskip("wandb")  # in the [test] extra: CI always has it

MAIN = """
    import json, os, random, sys, time
    import numpy as np
    import wandb

    rng = random.Random(int(sys.argv[1]))
    out = sys.argv[2]
    open(os.path.join(out, "checkpoint.bin"), "wb").write(b"weights" * 100)
    run = wandb.init(project="vision", name="resnet-a", notes="first **try**", tags=["baseline", "cpu"],
                     group="sweep-1", job_type="train", config={"lr": 0.01, "opt": {"name": "adam", "beta": 0.9}})
    wandb.config.update({"batch": 32})
    rows, step = [], 0
    for i in range(120):
        step += rng.choice((1, 1, 2, 5))
        loss, acc = rng.uniform(0, 10), rng.uniform(0, 1)
        before = time.time()
        wandb.log({"train/loss": loss}, step=step, commit=False)
        row = {"train/loss": loss, "acc": acc, "nested": {"depth": i}}
        if i % 40 == 0:
            row["phase"] = "warmup"
        if i == 7:
            row["acc"] = float("nan")
        wandb.log({k: v for k, v in row.items() if k != "train/loss"}, step=step)
        rows.append({"step": step, "row": row, "before": before, "after": time.time()})
    wandb.log({"sample": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))}, step=step + 1)
    run.summary["best_acc"] = 0.97
    run.summary["train/loss"] = -1.0  # differs from the last logged loss
    with open(os.path.join(run.dir, "notes.txt"), "w") as f:
        f.write("written in run.dir")
    os.makedirs(os.path.join(run.dir, "plots"))
    with open(os.path.join(run.dir, "plots", "a.csv"), "w") as f:
        f.write("x,y\\n1,2\\n")
    os.chdir(out)
    wandb.save("checkpoint.bin")
    run.finish()
    json.dump({"rows": rows, "id": run.id}, open(os.path.join(out, "main.json"), "w"))
"""

CRASH = """
    import sys, wandb
    run = wandb.init(project="vision", id="crash001", name="crashes")
    for step in range(5):
        wandb.log({"loss": 1.0 / (step + 1)})
    raise RuntimeError("out of memory, say")
"""

RESUME = """
    import sys, wandb
    life = int(sys.argv[1])
    run = wandb.init(project="vision", id="resume01", resume="allow", name="resumed" if life == 0 else None)
    for step in range(3):
        wandb.log({"loss": 10 * life + step})
    run.finish()
"""


def wandb_script(code: str, wandb_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run a W&B script in a child process, offline, writing into wandb_dir/wandb."""
    env = child_env(WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_SILENT="true", WANDB_CONSOLE="off")
    proc = python(code, *args, env=env)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wandb_records(log: Path) -> list[dict[str, Any]]:
    """The log's records as W&B's own command line prints them."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)],
        capture_output=True,
        check=True,
        env=child_env(WANDB_MODE="offline", WANDB_SILENT="true"),
        timeout=120,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def folder_of(wandb_dir: Path, wandb_id: str) -> list[Path]:
    return sorted((wandb_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One W&B folder with a finished run (files, media, summary-only values), a crashed one and a run
    resumed by a second process: each written by the real wandb in its own process."""
    root = tmp_path_factory.mktemp("wb")
    seed = make_seed()
    main = wandb_script(MAIN, root, str(seed), str(root))
    assert main.returncode == 0, main.stderr.decode()
    crash = wandb_script(CRASH, root)
    assert crash.returncode == 1 and b"out of memory, say" in crash.stderr
    for life in (0, 1):
        if life:  # W&B names a run's folder by the second it started in: the second life starts in a later one
            ended = int(time.time())
            wait_until(lambda ended=ended: int(time.time()) > ended, timeout=5, what="the next second", every=0.01)
        resumed = wandb_script(RESUME, root, str(life))
        assert resumed.returncode == 0, resumed.stderr.decode()
    assert len(folder_of(root, "resume01")) == 2
    logged = json.loads((root / "main.json").read_text())
    return {"root": root, "logged": logged["rows"], "main_id": logged["id"]}


def history_in_file(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def value(v: Any) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v) if isinstance(v, str) else v


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def test_every_row_step_time_and_field_exact(runs: dict[str, Any], store: Store) -> None:
    root, logged = runs["root"], runs["logged"]
    (folder,) = folder_of(root, runs["main_id"])
    records = wandb_records(folder / f"run-{runs['main_id']}.wandb")
    history = history_in_file(records)
    summary = import_wandb(root / "wandb", store)
    assert "vision/resnet-a" in summary.imported
    with Reader(store) as reader:
        run_id = stable_run_id("wandb", "vision", runs["main_id"])
        details = reader.run(run_id)
        run = details["run"]
        assert run["name"] == "resnet-a" and run["experiment_name"] == "vision" and run["status"] == "finished"
        assert run["note"] == "first **try**"
        assert details["params"] == {"lr": "0.01", "opt.name": "adam", "opt.beta": "0.9", "batch": "32"}
        tags = run["tags"]
        assert tags["wandb.id"] == runs["main_id"]
        assert (tags["wandb.tag.baseline"], tags["wandb.tag.cpu"]) == ("1", "1")
        assert (tags["wandb.group"], tags["wandb.job_type"]) == ("sweep-1", "train")
        # Summary values no history row explains; the ones W&B derived from the rows are not tags.
        assert tags["summary.best_acc"] == "0.97" and tags["summary.train/loss"] == "-1"  # W&B keeps JSON numbers
        assert "summary.acc" not in tags and "summary.nested.depth" not in tags

        # Every numeric key of every row, at the row's _step, with its _timestamp, as the file holds it...
        for key in ("train/loss", "acc", "nested.depth"):
            in_file = [h for h in history if key in h]
            got = reader.history(run_id, key, with_times=True)
            assert got.steps.tolist() == [float(h["_step"]) for h in in_file]
            assert same(got.values.tolist(), [float(value(h[key])) for h in in_file])
            assert got.times is not None and got.times.tolist() == [h["_timestamp"] for h in in_file]
        # ... and as the script logged it: the same steps and values, each time within its log call.
        loss = reader.history(run_id, "train/loss", with_times=True)
        assert loss.steps.tolist() == [float(r["step"]) for r in logged]
        assert loss.values.tolist() == [r["row"]["train/loss"] for r in logged]
        assert loss.times is not None
        assert all(r["before"] <= t <= r["after"] for r, t in zip(logged, loss.times.tolist(), strict=True))
        acc = reader.history(run_id, "acc").values.tolist()
        assert math.isnan(acc[7]) and acc[8] == logged[8]["row"]["acc"]
        depth = reader.history(run_id, "nested.depth").values.tolist()
        assert depth == [float(r["row"]["nested"]["depth"]) for r in logged]
        assert sorted(k for k in reader.metric_keys(run_id) if not k.startswith("system/")) == [
            "acc",
            "nested.depth",
            "train/loss",
        ]
        assert summary.skipped["non-numeric history series"] == 1  # "phase": text
        assert summary.skipped["image-file series"] == 1
        assert summary.skipped["media file"] == 1  # the image's own file under files/media/

        # System metrics: every "stats" record, at steps 0, 1, ..., at its time.
        stats = [r["stats"] for r in records if r["type"] == "stats"]
        assert stats, "wandb wrote no system metrics"
        key = sorted(stats[0]["item"])[0]
        got = reader.history(run_id, f"system/{key}", with_times=True)
        assert got.values.tolist() == [float(s["item"][key]) for s in stats if key in s["item"]]
        assert got.steps.tolist() == [float(i) for i, s in enumerate(stats) if key in s["item"]]
        assert got.times is not None
        expected = [_iso(s["timestamp"]) for s in stats if key in s["item"]]
        assert got.times.tolist() == pytest.approx(expected, abs=1e-6)  # nanoseconds beyond a float's reach

        (run_record,) = [r["run"] for r in records if r["type"] == "run"]
        assert run["timestamp_start"] == pytest.approx(_iso(run_record["start_time"]), abs=1e-6)
        assert run["timestamp_end"] >= max(h["_timestamp"] for h in history)

        # Files: the user's (one in run.dir, a folder, one wandb.save'd from elsewhere), not W&B's own.
        artifacts = {a["name"]: a for a in reader.run(run_id)["artifacts"]}
        assert sorted(artifacts) == ["checkpoint.bin", "notes.txt", "plots"]
        stored = store.root / artifacts["checkpoint.bin"]["path"]
        assert stored.read_bytes() == b"weights" * 100 and not stored.is_symlink()
        assert summary.artifacts == 3


def _iso(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_crashed_and_resumed_runs(runs: dict[str, Any], store: Store) -> None:
    root = runs["root"]
    import_wandb(root / "wandb", store)
    (crash_folder,) = folder_of(root, "crash001")
    exits = [r["exit"] for r in wandb_records(crash_folder / "run-crash001.wandb") if r["type"] == "exit"]
    assert [e.get("exit_code") for e in exits] == [1]
    with Reader(store) as reader:
        crashed = reader.run(stable_run_id("wandb", "vision", "crash001"))["run"]
        assert crashed["status"] == "failed" and crashed["name"] == "crashes"

        # Two processes, two folders, one W&B id: one run, both lives' rows at their own steps and times.
        folders = folder_of(root, "resume01")
        assert len(folders) == 2
        rows = [h for f in folders for h in history_in_file(wandb_records(f / "run-resume01.wandb"))]
        run_id = stable_run_id("wandb", "vision", "resume01")
        run = reader.run(run_id)["run"]
        assert run["name"] == "resumed" and run["status"] == "finished"
        got = reader.history(run_id, "loss", with_times=True)
        assert got.times is not None
        points = sorted(zip(got.times.tolist(), got.steps.tolist(), got.values.tolist(), strict=True))
        assert points == sorted((h["_timestamp"], float(h["_step"]), float(h["loss"])) for h in rows)
        assert sorted(v for _, _, v in points) == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
        assert len(reader.runs()) == 3


def test_second_import_adds_nothing(runs: dict[str, Any], store: Store, tmp_path: Path) -> None:
    root = runs["root"]
    first = alex("--store", str(store.root), "import", "wandb", str(root / "wandb"))
    assert first.returncode == 0, first.stderr
    assert "imported 3 run(s):" in first.stdout and "3 artifact(s)" in first.stdout
    assert "reading W&B runs" in first.stderr  # the progress bar, on stderr
    with Reader(store) as reader:
        before = [reader.sql(f"SELECT count(*) FROM {t}")[1] for t in ("metric", "parameter", "tag", "artifact")]
    # The folder that holds wandb/ ($WANDB_DIR), then one run folder: the same runs, found already there.
    again = alex("--store", str(store.root), "import", "wandb", str(root))
    assert again.returncode == 0, again.stderr
    assert "imported 0 run(s): 0 point(s)" in again.stdout and "already imported, skipped: 3 run(s)" in again.stdout
    assert "folder(s) of it" not in again.stdout  # the resumed run's two folders were both imported
    (one,) = folder_of(root, "crash001")
    assert import_wandb(one, store).already_there == {"vision/crashes": "finished"}
    with Reader(store) as reader:
        after = [reader.sql(f"SELECT count(*) FROM {t}")[1] for t in ("metric", "parameter", "tag", "artifact")]
        assert after == before and len(reader.runs()) == 3


def record_ends(data: bytes) -> set[int]:
    """Where each record of a W&B log ends: its format is LevelDB's log (a 7-byte file header, then records
    of a 7-byte header (checksum, length, type) and their bytes, in blocks of 32 KiB padded at their end)."""
    ends, pos = set(), 7
    while pos < len(data):
        left = 32768 - pos % 32768
        if left < 7:  # too little room for a header: padding, the next block starts the next record
            pos += left
            continue
        pos += 7 + int.from_bytes(data[pos + 4 : pos + 6], "little")
        ends.add(pos)
    return ends


@pytest.mark.parametrize("cut", ["inside a record", "between records"])
def test_truncated_log_imports_its_complete_records_as_killed(
    runs: dict[str, Any], store: Store, tmp_path: Path, cut: str
) -> None:
    """A log cut short (the process was killed: W&B writes it in blocks) keeps its complete records; without
    an exit record the run is killed, and both are said in the summary (a cut between two records leaves no
    partial record: only the missing exit is said)."""
    (source,) = folder_of(runs["root"], "crash001")
    folder = tmp_path / "wandb" / source.name
    folder.mkdir(parents=True)
    data = (source / "run-crash001.wandb").read_bytes()
    rng = random.Random(make_seed())
    ends = record_ends(data)
    assert len(data) in ends  # the parse above is the file's format
    near_end = range(len(data) - 200, len(data) - 40)
    log = folder / "run-crash001.wandb"
    log.write_bytes(data[: rng.choice([n for n in near_end if (n in ends) == (cut == "between records")])])
    records = wandb_records(log)
    rows = history_in_file(records)
    assert 0 < len(rows) <= 5 and not any(r["type"] == "exit" for r in records)
    summary = import_wandb(tmp_path / "wandb", store)
    assert summary.imported == ["vision/crashes"] and summary.points >= len(rows)
    assert any("incomplete .wandb file" in w for w in summary.warnings) == (cut == "inside a record")
    assert any("no exit record" in w and "imported as killed" in w for w in summary.warnings)
    with Reader(store) as reader:
        run_id = stable_run_id("wandb", "vision", "crash001")
        assert reader.run(run_id)["run"]["status"] == "killed"
        assert reader.history(run_id, "loss").values.tolist() == [float(h["loss"]) for h in rows]


def test_not_a_wandb_folder_and_not_a_wandb_log(tmp_path: Path, store: Store) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (empty / "notes.txt").write_text("no runs here")
    with pytest.raises(ImportSourceError, match="is not a W&B folder"):
        import_wandb(empty, store)
    with pytest.raises(ImportSourceError, match="is not a folder"):
        import_wandb(empty / "notes.txt", store)
    bad = tmp_path / "wandb" / "offline-run-20260101_000000-junk0001"
    bad.mkdir(parents=True)
    (bad / "run-junk0001.wandb").write_bytes(b"this is not a transaction log" * 20)
    with pytest.raises(ImportSourceError, match="is not a readable W&B transaction log"):
        import_wandb(tmp_path / "wandb", store)
    assert not store.runs_dir.exists() or not any(store.runs_dir.iterdir())
    cli = alex("--store", str(store.root), "import", "wandb", str(empty))
    assert cli.returncode == 1 and cli.stderr.startswith("Error: ") and "is not a W&B folder" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_killed_before_anything_was_written(tmp_path: Path, store: Store) -> None:
    """A process killed right after init leaves a log with W&B's header only: reported, nothing created."""
    code = textwrap.dedent(
        """
        import os, signal, wandb
        wandb.init(project="vision", id="gone0001")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = wandb_script(code, tmp_path)
    assert done.returncode == -9
    (folder,) = folder_of(tmp_path, "gone0001")
    summary = import_wandb(tmp_path / "wandb", store)
    if any(r["type"] == "run" for r in wandb_records(folder / "run-gone0001.wandb")):  # flushed before the kill
        assert summary.imported == ["vision/gone0001"]
        assert any("imported as killed" in w for w in summary.warnings)
    else:
        assert summary.imported == [] and any("no run record" in w for w in summary.warnings)


def test_damaged_block_imports_what_precedes_it(runs: dict[str, Any], store: Store, tmp_path: Path) -> None:
    """Bytes overwritten inside the log (a checksum that fails): wandb-core skips the damaged data, the
    records it reads are imported and its warning is printed."""
    (source,) = folder_of(runs["root"], runs["main_id"])
    name = f"run-{runs['main_id']}.wandb"
    folder = tmp_path / "wandb" / source.name
    folder.mkdir(parents=True)
    data = bytearray((source / name).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = b"\xff" * 16
    (folder / name).write_bytes(bytes(data))
    rows = history_in_file(wandb_records(folder / name))
    summary = import_wandb(folder, store)
    assert summary.imported == ["vision/resnet-a"]
    assert any("corrupt data" in w for w in summary.warnings)
    with Reader(store) as reader:
        run_id = stable_run_id("wandb", "vision", runs["main_id"])
        got = reader.history(run_id, "train/loss", with_times=True)
        in_file = [h for h in rows if "train/loss" in h]
        assert in_file and got.steps.tolist() == [float(h["_step"]) for h in in_file]
        assert got.times is not None and got.times.tolist() == [h["_timestamp"] for h in in_file]


def test_an_import_stopped_midway_is_reported_not_completed(runs: dict[str, Any], store: Store) -> None:
    """A process killed while it imported a run leaves that run without an end: the next import skips it and
    says how to import it again."""
    run_id = stable_run_id("wandb", "vision", "crash001")
    died = python(
        """
        import os, sys
        from alexandria.store import Store
        from alexandria.importers import start_imported_run
        run = start_imported_run(Store.open(sys.argv[1]), sys.argv[2], "vision", name="crashes", start_time=1.6e9)
        run.log_metric("loss", 1.0, 0, timestamp=1.6e9)
        run.flush()
        os._exit(9)
        """,
        str(store.root),
        run_id,
    )
    assert died.wait(timeout=120) == 9
    summary = import_wandb(runs["root"], store)
    assert summary.already_there["vision/crashes"] in ("crashed", "running")
    assert any("vision/crashes: an earlier import of it did not finish" in line for line in summary.lines())
    assert sorted(summary.imported) == ["vision/resnet-a", "vision/resumed"]


def test_a_folder_resumed_after_the_import_is_reported(runs: dict[str, Any], store: Store) -> None:
    """A resumed run's second folder, appearing after its first was imported, is not appended to the ended
    run: the next import says so and how to bring it (the folders the import saw are tag `wandb.folders`)."""
    first, second = folder_of(runs["root"], "resume01")
    assert import_wandb(first, store).imported == ["vision/resumed"]
    summary = import_wandb(runs["root"], store)
    assert summary.already_there == {"vision/resumed": "finished"}
    assert any(line.startswith("vision/resumed: 1 folder(s) of it") for line in summary.warnings)
    with Reader(store) as reader:
        run = reader.run(stable_run_id("wandb", "vision", "resume01"))
        assert run["run"]["tags"]["wandb.folders"] == "1"
        assert reader.history(run["run"]["id"], "loss").values.tolist() == [0.0, 1.0, 2.0]
