"""torchrun (2 and 4 ranks) and `accelerate launch` (2) on CPU (gloo) for real: each rank logging its own steps,
they end in one run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alexandria.store import Store
from tests.conftest import child_env, need_framework, query

SCRIPT = Path(__file__).with_name("torchrun_script.py")
STEPS = 25


TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node={ranks}")
# accelerate's launcher on a machine without GPUs: --multi_gpu is what hands it to torch.distributed.run (its
# --cpu runs one process, or MPI); the job has torchelastic's default id "none", named by the launcher process.
ACCELERATE = ("-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes={ranks}", "--num_machines=1",
              "--mixed_precision=no", "--dynamo_backend=no")


@pytest.mark.parametrize(("launcher", "ranks"), [(TORCHRUN, 2), (TORCHRUN, 4), (ACCELERATE, 2)],
                         ids=["torchrun-2", "torchrun-4", "accelerate-2"])
def test_every_rank_of_a_torchrun_job_logs_into_one_run(
    store: Store, tmp_path: Path, launcher: tuple[str, ...], ranks: int
) -> None:
    need_framework("torch")
    if launcher is ACCELERATE:
        need_framework("accelerate")
    command = [sys.executable, *(part.format(ranks=ranks) for part in launcher)]
    proc = subprocess.run(
        [*command, str(SCRIPT), str(store.root), str(STEPS)],
        env=child_env(OMP_NUM_THREADS="1"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = [(int(p.stem[4:]), *p.read_text().split()) for p in sorted(tmp_path.glob("rank*.run"))]
    assert [rank for rank, _, _ in printed] == list(range(ranks))
    run_ids = {run_id for _, run_id, _ in printed}
    assert len(run_ids) == 1
    assert [owner for _, _, owner in printed] == ["True"] + ["False"] * (ranks - 1)  # rank 0 owns it
    (run_id,) = run_ids
    assert query(store, "SELECT id, experiment_name, status, attempt FROM run") == [(run_id, "torchrun", "finished", 0)]
    assert query(store, "SELECT key, value FROM parameter") == [("world_size", str(ranks))]
    mine = query(store, "SELECT rank, step, value FROM metric WHERE key = 'mine' ORDER BY rank, step")
    assert mine == [(r, s, float(r)) for r in range(ranks) for s in range(STEPS)]  # every point exactly once
    sums = query(store, "SELECT rank, step, value FROM metric WHERE key = 'sum' ORDER BY rank, step")
    assert sums == [(r, s, float(sum(k + s for k in range(ranks)))) for r in range(ranks) for s in range(STEPS)]
    assert query(store, "SELECT event FROM lifecycle ORDER BY timestamp") == [("started",), ("finished",)]
    assert sorted(query(store, "SELECT rank, closed FROM log_segment")) == [(r, True) for r in range(ranks)]
