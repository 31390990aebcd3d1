"""The Lightning logger against the real Lightning: each test runs tests/frameworks/lit_script.py (a tiny
MLP on seeded random data) as its own process and reads what reached SQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alexandria.store import Store
from tests.conftest import child_env, need_framework, query


@pytest.fixture(autouse=True)
def _frameworks() -> None:
    """Every test here starts by needing torch and Lightning (skipped outside the frameworks environment)."""
    need_framework("torch")
    need_framework("lightning")


SCRIPT = Path(__file__).with_name("lit_script.py")
PARAMS = [("hidden", "8"), ("lr", "0.05"), ("optimizer.momentum", "0.0"), ("optimizer.name", "sgd")]
STEPS = 16  # 64 samples in batches of 8, two epochs


def lit(
    mode: str, store: Store, tmp_path: Path, package: str = "lightning", launcher: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = child_env(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, *launcher, str(SCRIPT), mode, str(store.root), str(tmp_path / "root"), package],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def printed_runs(proc: subprocess.CompletedProcess[str], tmp_path: Path) -> dict[int, str]:
    """Rank -> run id, as each rank wrote them (lit_script.py: root/rank<N>.run)."""
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {int(path.stem[4:]): path.read_text() for path in (tmp_path / "root").glob("rank*.run")}


@pytest.mark.parametrize("package", ["lightning", "pytorch_lightning"])
def test_a_fit_logs_its_hyperparameters_every_step_and_finishes(store: Store, tmp_path: Path, package: str) -> None:
    need_framework(package)
    (run_id,) = printed_runs(lit("fit", store, tmp_path, package), tmp_path).values()
    assert query(store, "SELECT id, experiment_name, status, error FROM run") == [(run_id, "lit", "finished", None)]
    assert query(store, "SELECT key, value FROM parameter ORDER BY key") == PARAMS
    assert query(store, "SELECT value FROM tag WHERE key = 'suite'") == [("lightning",)]
    assert query(store, "SELECT step FROM metric WHERE key = 'train_loss' ORDER BY step") == [
        (s,) for s in range(STEPS)
    ]
    assert query(store, "SELECT step FROM metric WHERE key = 'val_loss' ORDER BY step") == [(7,), (15,)]
    assert query(store, "SELECT DISTINCT rank FROM metric") == [(None,)]  # one process: no distributed job


def test_test_and_validate_after_fit_log_into_the_same_run(store: Store, tmp_path: Path) -> None:
    (run_id,) = printed_runs(lit("fit_test", store, tmp_path), tmp_path).values()
    assert query(store, "SELECT id, status FROM run") == [(run_id, "finished")]
    assert query(store, "SELECT key, step FROM metric WHERE key IN ('test_loss', 'val_loss') ORDER BY key, step") == [
        ("test_loss", STEPS),
        ("val_loss", 7),
        ("val_loss", 15),
        ("val_loss", STEPS),  # trainer.validate() after fit
    ]
    lives = query(store, "SELECT event FROM lifecycle ORDER BY timestamp")
    assert lives == [("started",), ("finished",)]  # no end after fit, no resume for test


def test_a_fit_that_raises_ends_the_run_failed_with_its_points(store: Store, tmp_path: Path) -> None:
    proc = lit("fail", store, tmp_path)
    assert proc.returncode != 0 and "boom at step 3" in proc.stderr
    assert query(store, "SELECT status, error FROM run") == [("failed", "RuntimeError: boom at step 3")]
    assert query(store, "SELECT step FROM metric WHERE key = 'train_loss' ORDER BY step") == [(0,), (1,), (2,)]


@pytest.mark.parametrize("mode", ["interrupt", "sigterm"])
def test_an_interrupted_fit_ends_the_run_killed(store: Store, tmp_path: Path, mode: str) -> None:
    """Ctrl-C (KeyboardInterrupt) inside the fit, or a real SIGTERM: Lightning's handler, installed over
    Alexandria's, stops the fit at the batch's end (its SIGTERMException) and the process exits 0."""
    proc = lit(mode, store, tmp_path)
    assert proc.returncode == (1 if mode == "interrupt" else 0), proc.stderr[-4000:]
    error = "KeyboardInterrupt" if mode == "interrupt" else "SIGTERM"  # as hooks.py records them
    assert query(store, "SELECT status, error FROM run") == [("killed", error)]
    # Ctrl-C stops step 3 before its point; a SIGTERM lets step 3 finish, and no step follows it
    logged = 3 if mode == "interrupt" else 4
    assert query(store, "SELECT count(*) FROM metric WHERE key = 'train_loss'") == [(logged,)]


def test_checkpoints_are_logged_as_artifacts_when_asked(store: Store, tmp_path: Path) -> None:
    torch = need_framework("torch")
    (run_id,) = printed_runs(lit("ckpt", store, tmp_path), tmp_path).values()
    found = query(store, "SELECT name, type, path FROM artifact WHERE type != 'git-diff' ORDER BY name")
    assert [(name, kind) for name, kind, _ in found] == [
        ("epoch=0-step=8.ckpt", "checkpoint"),
        ("epoch=1-step=16.ckpt", "checkpoint"),
    ]
    for _, _, path in found:  # real checkpoints, readable by torch, kept although Lightning removed the first
        checkpoint = torch.load(store.root / path, weights_only=False)
        assert "state_dict" in checkpoint
    assert not (tmp_path / "root" / "lit" / run_id / "checkpoints" / "epoch=0-step=8.ckpt").exists()


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")


@pytest.mark.parametrize("launcher", [(), TORCHRUN], ids=["lightning-launcher", "torchrun"])
def test_lightning_ddp_on_cpu_logs_every_rank_into_one_run(
    store: Store, tmp_path: Path, launcher: tuple[str, ...]
) -> None:
    """Trainer(strategy="ddp", devices=2) run as a script: Lightning's launcher starts the second rank as a
    child process (or torchrun starts both); both log (sync_dist=False), into one run, each point once with
    its rank."""
    proc = lit("ddp", store, tmp_path, launcher=launcher)
    runs = printed_runs(proc, tmp_path)
    assert sorted(runs) == [0, 1] and len(set(runs.values())) == 1, proc.stdout
    run_id = runs[0]
    assert query(store, "SELECT id, experiment_name, status FROM run") == [(run_id, "lit", "finished")]
    assert query(store, "SELECT key, value FROM parameter ORDER BY key") == PARAMS
    per_rank = STEPS // 2  # the DistributedSampler gives each rank half the batches
    got = query(store, "SELECT rank, step, value FROM metric WHERE key = 'rank_seen' ORDER BY rank, step")
    assert got == [(r, s, float(r)) for r in (0, 1) for s in range(per_rank)]
    assert query(
        store, "SELECT rank, count(*), count(DISTINCT step) FROM metric WHERE key = 'train_loss' GROUP BY rank"
    ) == [
        (0, per_rank, per_rank),
        (1, per_rank, per_rank),
    ]
    assert sorted(query(store, "SELECT rank FROM log_segment")) == [(0,), (1,)]
    assert os.environ.get("LOCAL_RANK") is None  # the test process itself is no rank
