"""`alex import tensorboard`: logdirs written by the real writers (tensorboardX's `SummaryWriter`, and
TensorBoard's own tf-less `EventFileWriter` with its plugins' summary protos) come back point for point,
with the steps and wall times the writers were given."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexandria import Reader
from alexandria.errors import ImportSourceError
from alexandria.importers import ImportSummary, stable_run_id, start_imported_run
from alexandria.importers.tensorboard import import_tensorboard
from alexandria.store import Store
from tests.conftest import make_seed, query

tensorboardX = pytest.importorskip("tensorboardX")  # in the [test] extra: CI always has it

Points = dict[str, list[tuple[int, float, float]]]  # tag -> (step, value, wall time) as the writer got them


def _irregular_steps(rng: random.Random, n: int) -> list[int]:
    step, steps = rng.randrange(0, 5), []
    for _ in range(n):
        steps.append(step)
        step += rng.choice((1, 1, 2, 7, 100))
    return steps


def write_tensorboardx_run(logdir: Path, rng: random.Random, tags: dict[str, int], base: float) -> Points:
    """Scalars at irregular steps with explicit wall times, through tensorboardX's SummaryWriter."""
    written: Points = {}
    writer = tensorboardX.SummaryWriter(str(logdir))
    for tag, n in tags.items():
        when = base
        for step in _irregular_steps(rng, n):
            value = rng.uniform(-10, 10)
            when += rng.uniform(0.001, 2.0)
            writer.add_scalar(tag, value, step, walltime=when)
            written.setdefault(tag, []).append((step, value, when))
    writer.close()
    return written


def write_tensorboard_run(logdir: Path, rng: random.Random, n: int, base: float) -> Points:
    """Scalars through TensorBoard's own writer (no TensorFlow): tensor-valued summaries of its scalar plugin."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp
    from tensorboard.plugins.scalar import metadata as scalar
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    def scalar_pb(tag: str, value: float) -> summary_pb2.Summary:  # what TF 2's tf.summary.scalar writes
        tensor = tensor_util.make_tensor_proto(np.float32(value))
        meta = scalar.create_summary_metadata(display_name=tag, description="")
        return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)])

    writer = EventFileWriter(str(logdir))
    hparams = hp.hparams_pb({"optimizer": "sgd", "momentum": 0.9, "layers": 4})
    writer.add_event(event_pb2.Event(wall_time=base, step=0, summary=hparams))
    written: Points = {}
    when = base
    for step in _irregular_steps(rng, n):
        value = rng.uniform(0, 1)
        when += rng.uniform(0.01, 1.0)
        writer.add_event(event_pb2.Event(wall_time=when, step=step, summary=scalar_pb("eval/acc", value)))
        written.setdefault("eval/acc", []).append((step, value, when))
    writer.close()
    return written


def assert_points(reader: Reader, run_name: str, written: Points) -> None:
    """Every point exactly as written: the count, each step, each wall time; values as the float32 the
    event file holds."""
    run_id = reader.run(run_name)["run"]["id"]
    assert sorted(reader.metric_keys(run_id)) == sorted(written)
    for tag, points in written.items():
        history = reader.history(run_id, tag, with_times=True)
        assert len(history.steps) == len(points)
        assert history.steps.tolist() == [float(s) for s, _, _ in points]
        assert history.values.tolist() == [float(np.float32(v)) for _, v, _ in points]
        assert history.times is not None and history.times.tolist() == [t for _, _, t in points]


@pytest.fixture
def logdir(tmp_path: Path) -> tuple[Path, dict[str, Points], float, float]:
    """Several runs: two by tensorboardX (one nested, thousands of points), one by TensorBoard's writer."""
    rng = random.Random(make_seed())
    root = tmp_path / "tb"
    before = time.time()
    runs = {
        "baseline": write_tensorboardx_run(root / "baseline", rng, {"train/loss": 3000, "lr": 40}, base=1.6e9),
        "sweep/wide": write_tensorboardx_run(root / "sweep" / "wide", rng, {"train/loss": 500}, base=before + 1e5),
        "tb-native": write_tensorboard_run(root / "tb-native", rng, 200, base=1.65e9),
    }
    return root, runs, before, time.time()


def test_every_point_step_and_wall_time_exact(
    logdir: tuple[Path, dict[str, Points], float, float], store: Store
) -> None:
    root, runs, before, after = logdir
    summary = import_tensorboard(root, store)
    assert sorted(summary.imported) == sorted(runs)
    assert summary.points == sum(len(p) for points in runs.values() for p in points.values())
    with Reader(store) as reader:
        for name, written in runs.items():
            assert_points(reader, name, written)
            run = reader.run(name)["run"]
            assert run["experiment_name"] == "tb"
            assert run["status"] == "finished"
            assert run["id"] == stable_run_id("tensorboard", str(root.resolve() / name))
        # The run's start is its first event's wall time, its end the last one's: the writer's own
        # file_version event (written when it opened the file, now) counts as an event.
        first = min(t for points in runs["baseline"].values() for _, _, t in points)
        baseline = reader.run("baseline")["run"]
        assert baseline["timestamp_start"] == first
        assert before <= baseline["timestamp_end"] <= after
        wide = reader.run("sweep/wide")["run"]
        assert before <= wide["timestamp_start"] <= after
        assert wide["timestamp_end"] == runs["sweep/wide"]["train/loss"][-1][2]
        native = reader.run("tb-native")
        assert native["params"] == {"optimizer": "sgd", "momentum": "0.9", "layers": "4"}


def test_second_import_adds_nothing(logdir: tuple[Path, dict[str, Points], float, float], store: Store) -> None:
    root, runs, _, _ = logdir
    import_tensorboard(root, store)
    with Reader(store) as reader:
        before = reader.sql("SELECT count(*) FROM metric")[1]
    again = import_tensorboard(root, store, experiment="another-name")
    assert again.imported == [] and again.points == 0
    assert again.already_there == {name: "finished" for name in runs}
    with Reader(store) as reader:
        assert reader.sql("SELECT count(*) FROM metric")[1] == before
        assert len(reader.runs()) == len(runs)
        for name, written in runs.items():
            assert_points(reader, name, written)


def test_parent_folder_import_finds_the_same_runs(
    logdir: tuple[Path, dict[str, Points], float, float], store: Store
) -> None:
    """A run's id comes from its own folder: importing the logdir's parent (or a sub-folder) later skips the
    runs already there instead of copying them again under longer names."""
    root, runs, _, _ = logdir
    import_tensorboard(root / "sweep", store)
    summary = import_tensorboard(root.parent, store)
    assert summary.already_there == {"tb/sweep/wide": "finished"}
    assert sorted(summary.imported) == ["tb/baseline", "tb/tb-native"]
    with Reader(store) as reader:
        assert sorted(r["name"] for r in reader.runs()) == ["tb/baseline", "tb/tb-native", "wide"]


def test_hparams_text_images_and_histograms(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "logs"
    rng = np.random.default_rng(make_seed())
    picture = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)  # CHW, as add_image takes it
    writer = tensorboardX.SummaryWriter(str(root / "run1"))
    writer.add_scalar("loss", 0.5, 1, walltime=1.7e9)
    writer.add_histogram("weights", np.arange(100.0), 1, walltime=1.7e9 + 1)
    writer.add_histogram("bias", np.arange(10.0), 1, walltime=1.7e9 + 1)
    writer.add_histogram("bias", np.arange(12.0), 2, walltime=1.7e9 + 2)
    writer.add_image("sample", picture, 1, walltime=1.7e9 + 3)
    writer.add_text("status", "converged", 0, walltime=1.7e9 + 4)
    writer.add_text("config", "lr: 0.1\nbatch: 32", 0, walltime=1.7e9 + 5)
    writer.add_hparams({"lr": 0.01, "batch": 32, "optimizer": "adam", "amsgrad": True}, {"hp/acc": 0.75}, name="hp")
    writer.close()

    summary = import_tensorboard(root, store, experiment="hp-test")
    assert sorted(summary.imported) == ["run1", "run1/hp"]
    assert dict(summary.skipped) == {}
    assert summary.media == 4
    assert "imported 2 run(s): 2 point(s), 4 param(s), 3 tag(s), 4 media" in summary.lines()
    media = query(store, "SELECT key, step, kind, width, height, value_count, timestamp, path FROM media ORDER BY id")
    assert [m[:7] for m in media] == [
        ("sample", 1, "image", 5, 4, None, 1.7e9 + 3),
        ("weights", 1, "histogram", None, None, 100, 1.7e9 + 1),
        ("bias", 1, "histogram", None, None, 10, 1.7e9 + 1),
        ("bias", 2, "histogram", None, None, 12, 1.7e9 + 2),
    ]
    with Image.open(store.root / str(media[0][7])) as img:
        np.testing.assert_array_equal(np.asarray(img), picture.transpose(1, 2, 0))
    bins = query(store, "SELECT step, lower, upper, count FROM histogram WHERE key = 'bias' ORDER BY step, bin")
    assert sum(b[3] for b in bins if b[0] == 2) == 12
    assert all(b[1] <= b[2] for b in bins)
    assert [(b[1], b[3]) for b in bins if b[0] == 1 and b[3]][0][0] <= 0.0  # the first value, 0, counted
    with Reader(store) as reader:
        hp = reader.run("run1/hp")
        assert hp["params"] == {"lr": "0.01", "batch": "32", "optimizer": "adam", "amsgrad": "true"}
        assert [m.key for m in hp["metrics"]] == ["hp/acc"]
        run1 = reader.run("run1")
        assert run1["run"]["tags"]["status/text_summary"] == "converged"  # one short line: a tag
        assert "### config/text_summary" in run1["run"]["note"]  # several lines: the run's note
        assert "lr: 0.1\nbatch: 32" in run1["run"]["note"]
        assert run1["run"]["timestamp_start"] == 1.7e9


@pytest.mark.parametrize("cut", [1, 5, 14])
def test_truncated_last_record_imports_the_complete_ones(tmp_path: Path, store: Store, cut: int) -> None:
    """A partial last record is "not written yet" for TensorBoard's loader: everything before it comes in,
    the leftover bytes are reported (a cut of 14 leaves only part of the record's length header)."""
    rng = random.Random(make_seed())
    root = tmp_path / "logs"
    written = write_tensorboardx_run(root / "cut", rng, {"loss": 100}, base=1.6e9)
    (event_file,) = (root / "cut").iterdir()
    data = event_file.read_bytes()
    event_file.write_bytes(data[:-cut])
    summary = import_tensorboard(root, store)
    assert summary.imported == ["cut"] and summary.points == 99
    (warning,) = summary.warnings
    assert f"the last {_last_record_size(written) - cut} byte(s) are not a complete record" in warning
    with Reader(store) as reader:
        assert_points(reader, "cut", {"loss": written["loss"][:-1]})


def _last_record_size(written: Points) -> int:
    """The size of tensorboardX's record of the last scalar (its Event, framed), to know what a cut leaves."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    step, value, when = written["loss"][-1]
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=value)])
    return len(event_pb2.Event(wall_time=when, step=step, summary=summary).SerializeToString()) + 16


def test_garbage_event_file_is_reported_not_fatal(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "logs"
    write_tensorboardx_run(root / "good", random.Random(make_seed()), {"loss": 10}, base=1.6e9)
    (root / "bad").mkdir()
    (root / "bad" / "events.out.tfevents.123.host").write_bytes(b"this is no TFRecord file at all" * 3)
    summary = import_tensorboard(root, store)
    assert summary.imported == ["good"] and summary.points == 10
    assert any("bad: no complete event" in w for w in summary.warnings)
    assert any("are not a complete record" in w for w in summary.warnings)


def test_not_a_logdir_is_a_typed_error(tmp_path: Path, store: Store) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportSourceError, match="no TensorBoard event files"):
        import_tensorboard(tmp_path / "empty", store)
    with pytest.raises(ImportSourceError, match="is not a folder"):
        import_tensorboard(tmp_path / "missing", store)


def test_cli_imports_with_a_summary_then_skips(
    logdir: tuple[Path, dict[str, Points], float, float], tmp_path: Path
) -> None:
    root, runs, _, _ = logdir
    store = tmp_path / "cli-store"
    alex = [sys.executable, "-m", "alexandria.cli", "--store", str(store)]
    env = {**os.environ, "ALEXANDRIA_STORE": str(store)}
    first = subprocess.run(
        [*alex, "import", "tensorboard", str(root), "--experiment", "old"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    total = sum(len(p) for points in runs.values() for p in points.values())
    assert first.stdout.splitlines()[0] == f"imported 3 run(s): {total} point(s), 3 param(s), 3 tag(s)"
    second = subprocess.run(
        [*alex, "import", "tensorboard", str(root)], capture_output=True, text=True, env=env, timeout=300
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [
        "imported 0 run(s): 0 point(s), 0 param(s), 0 tag(s)",
        "already imported, skipped: 3 run(s)",
    ]
    listed = subprocess.run([*alex, "runs", "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["name"] for r in json.loads(listed.stdout)) == sorted(runs)
    (tmp_path / "empty").mkdir()
    missing = subprocess.run(
        [*alex, "import", "tensorboard", str(tmp_path / "empty")], capture_output=True, text=True, env=env, timeout=300
    )
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no TensorBoard event files")


def test_import_alexandria_loads_no_reader() -> None:
    """The importers' third-party readers are imported only when an import runs."""
    code = (
        "import sys, alexandria, alexandria.importers\n"
        "print([m for m in sys.modules if m.startswith(('tensorboard', 'google.protobuf'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_summary_lines_say_what_was_left() -> None:
    summary = ImportSummary(imported=["a"], points=5, already_there={"b": "finished", "c": "crashed"})
    summary.skip("histogram series", 3, "media arrive with `log_image`")
    lines = summary.lines()
    assert lines[0] == "imported 1 run(s): 5 point(s), 0 param(s), 0 tag(s)"
    assert "already imported, skipped: 2 run(s)" in lines
    assert any(line.startswith("  c: an earlier import of it did not finish (crashed)") for line in lines)


def test_interrupted_import_is_named_and_can_be_redone(tmp_path: Path) -> None:
    """A run an import began but never ended (the process died) is skipped with what to do; after
    `alex delete` and `alex gc --older-than 0` the next import brings it in whole."""
    root = tmp_path / "logs"
    written = write_tensorboardx_run(root / "r", random.Random(make_seed()), {"loss": 50}, base=1.6e9)
    store = tmp_path / "store"
    env = {**os.environ, "ALEXANDRIA_STORE": str(store)}
    run_id = stable_run_id("tensorboard", str((root / "r").resolve()))
    died = (
        "import os, sys\n"
        "from alexandria.store import Store\n"
        "from alexandria.importers import start_imported_run\n"
        "run = start_imported_run(Store.open(sys.argv[1]), sys.argv[2], 'logs', name='r', start_time=1.6e9)\n"
        "assert run is not None\n"
        "run.log_metric('loss', 1.0, 0, timestamp=1.6e9)\n"
        "run.flush()\n"
        "os._exit(9)  # killed mid-import: no end, no more points\n"
    )
    subprocess.run([sys.executable, "-c", died, str(store), run_id], env=env, timeout=120)
    alex = [sys.executable, "-m", "alexandria.cli", "--store", str(store)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*alex, *args], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    skipped = cli("import", "tensorboard", str(root))
    assert "already imported, skipped: 1 run(s)" in skipped.stdout
    assert "r: an earlier import of it did not finish (crashed)" in skipped.stdout
    cli("delete", run_id)
    cli("gc", "--older-than", "0")
    again = cli("import", "tensorboard", str(root))
    assert again.stdout.splitlines()[0] == "imported 1 run(s): 50 point(s), 0 param(s), 1 tag(s)"
    assert "reading event files" in again.stderr  # the progress bar, on stderr
    with Reader(Store.open(store)) as reader:
        assert_points(reader, "r", written)
        assert reader.run("r")["run"]["status"] == "finished"


def test_a_run_is_claimed_once(store: Store) -> None:
    """Two imports racing for one run: the run's folder is made by one exclusive mkdir, and the loser gets
    None (counted as already there), never a second writer of the same run."""
    run_id = stable_run_id("tensorboard", "/somewhere/run")
    first = start_imported_run(store, run_id, "e", name="run", start_time=1.6e9)
    assert first is not None
    assert start_imported_run(store, run_id, "e", name="run", start_time=1.6e9) is None
    first.end(end_time=1.6e9 + 1)


def test_unreadable_event_file_stops_with_what_to_do(tmp_path: Path, store: Store) -> None:
    """An event file that cannot be read (here a dangling link: open fails as for an I/O error) stops the
    import with a typed error before its run is written; the runs before it stay, and the rerun skips them."""
    root = tmp_path / "logs"
    write_tensorboardx_run(root / "a-good", random.Random(make_seed()), {"loss": 10}, base=1.6e9)
    (root / "b-broken").mkdir(parents=True)
    (root / "b-broken" / "events.out.tfevents.1.host").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ImportSourceError, match=r"cannot read .*events\.out\.tfevents\.1\.host"):
        import_tensorboard(root, store)
    with Reader(store) as reader:
        assert [r["name"] for r in reader.runs()] == ["a-good"]


def test_without_pillow_images_are_counted_as_skipped_naming_the_extra(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "logs"
    writer = tensorboardX.SummaryWriter(str(root / "run1"))
    writer.add_image("sample", np.zeros((3, 2, 2), dtype=np.uint8), 1, walltime=1.7e9)
    writer.add_image("sample", np.zeros((3, 2, 2), dtype=np.uint8), 2, walltime=1.7e9 + 1)
    writer.add_histogram("weights", np.arange(10.0), 1, walltime=1.7e9 + 1)
    writer.close()
    code = f"""
import sys
sys.modules["PIL"] = None  # as if Pillow were not installed
from alexandria.importers.tensorboard import import_tensorboard
from alexandria.store import Store
print("\\n".join(import_tensorboard({str(root)!r}, Store.open({str(store.root)!r})).lines()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "imported 1 run(s): 0 point(s), 0 param(s), 1 tag(s), 1 media" in out
    assert (
        "skipped: 1 image series: importing TensorBoard images needs Pillow, which is not installed: "
        "pip install 'alexandria[media]'" in out
    )
    assert query(store, "SELECT key, kind FROM media") == [("weights", "histogram")]
