"""`alex import tensorboard` on what PyTorch's own `torch.utils.tensorboard.SummaryWriter` writes: legacy
`simple_value` scalars, new-style tensor scalars (float32, and float64 with `double_precision`),
`add_scalars` (a sub-folder per series, each a run), `add_hparams` (a run of its own), in two runs in
sub-folders; every point's step, value and wall time comes back exactly."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from alexandria import Reader
from alexandria.importers import stable_run_id
from alexandria.store import Store
from tests.conftest import alex, make_seed, need_framework

torch = need_framework("torch")

Points = dict[str, list[tuple[int, float, float]]]  # tag -> (step, value as the file holds it, wall time)


def _steps(rng: random.Random, n: int) -> list[int]:
    step, out = rng.randrange(0, 3), []
    for _ in range(n):
        out.append(step)
        step += rng.choice((1, 1, 3, 50))
    return out


def write_run(root: Path, name: str, rng: random.Random, base: float) -> dict[str, Points]:
    """One run through torch's SummaryWriter into root/name; returns what each run folder it made holds, by
    its path relative to root (the import's run names)."""
    from torch.utils.tensorboard import SummaryWriter

    out: dict[str, Points] = {name: {}}
    writer = SummaryWriter(log_dir=str(root / name))
    when = base
    for step in _steps(rng, 300):
        when += rng.uniform(0.001, 3.0)
        loss = rng.uniform(-5, 5)
        writer.add_scalar("train/loss", torch.tensor(loss), step, walltime=when)  # simple_value: float32
        out[name].setdefault("train/loss", []).append((step, float(np.float32(loss)), when))
        if step % 3 == 0:
            acc = rng.random()
            writer.add_scalar("eval/acc", acc, step, walltime=when, new_style=True)  # a float32 tensor
            out[name].setdefault("eval/acc", []).append((step, float(np.float32(acc)), when))
            lr = rng.uniform(1e-5, 1e-1)
            writer.add_scalar("lr", lr, step, walltime=when, new_style=True, double_precision=True)
            out[name].setdefault("lr", []).append((step, lr, when))
    for step in _steps(rng, 20):
        when += 1.0
        values = {"train": rng.random(), "val": rng.random()}
        writer.add_scalars("losses", values, step, walltime=when)  # one sub-folder per series
        for series, v in values.items():
            out.setdefault(f"{name}/losses_{series}", {}).setdefault("losses", []).append(
                (step, float(np.float32(v)), when)
            )
    before = time.time()
    writer.add_scalar("no_walltime", 1.5, 0)  # its time is the writer's clock
    after = time.time()
    out[name]["no_walltime"] = [(0, 1.5, before), (0, 1.5, after)]  # bounds, checked apart
    writer.add_hparams({"lr": 0.01, "layers": 3, "opt": "sgd"}, {"hp/final": 0.25}, run_name="hp")
    writer.close()
    return out


def test_torch_summary_writer_scalars_exact(tmp_path: Path) -> None:
    rng = random.Random(make_seed())
    root = tmp_path / "runs"
    written = {**write_run(root, "first", rng, 1.6e9), **write_run(root, "sweep/second", rng, 1.7e9)}
    store = tmp_path / "store"
    proc = alex("--store", str(store), "import", "tensorboard", str(root))
    assert proc.returncode == 0, proc.stderr
    runs = sorted([*written, "first/hp", "sweep/second/hp"])
    assert f"imported {len(runs)} run(s)" in proc.stdout
    with Reader(Store(store)) as reader:
        assert sorted(r["name"] for r in reader.runs()) == runs
        for name, points in written.items():
            run = reader.run(name)["run"]
            assert run["id"] == stable_run_id("tensorboard", str(root.resolve() / name))
            assert run["status"] == "finished" and run["experiment_name"] == "runs"
            assert sorted(reader.metric_keys(run["id"])) == sorted(points)
            for tag, expected in points.items():
                got = reader.history(run["id"], tag, with_times=True)
                assert got.times is not None
                if tag == "no_walltime":
                    (_, value, lo), (_, _, hi) = expected
                    assert got.steps.tolist() == [0.0] and got.values.tolist() == [value]
                    assert lo <= got.times.tolist()[0] <= hi
                    continue
                assert got.steps.tolist() == [float(s) for s, _, _ in expected]
                assert got.values.tolist() == [v for _, v, _ in expected]
                assert got.times.tolist() == [t for _, _, t in expected]
        for hp in ("first/hp", "sweep/second/hp"):
            details = reader.run(hp)
            assert details["params"] == {"lr": "0.01", "layers": "3", "opt": "sgd"}
            assert reader.history(details["run"]["id"], "hp/final").values.tolist() == [0.25]
    again = alex("--store", str(store), "import", "tensorboard", str(root))
    assert again.returncode == 0 and f"already imported, skipped: {len(runs)} run(s)" in again.stdout
