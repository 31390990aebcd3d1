"""SIGTERM inside the frameworks, with real processes: a DDP rank waiting in a gloo collective (which waits
on through signals, so no Python handler can run) still ends with everything written, and Lightning's
graceful SIGTERM stop runs as Lightning wrote it, with the run recorded "killed"."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from alexandria.db import open_database
from alexandria.store import Store
from tests.conftest import child_env, in_a_futex_wait, need_framework, python, wait_until

torch = need_framework("torch")

RANKS = """
import os, sys, time
import torch, torch.distributed as dist
import alexandria

dist.init_process_group("gloo")
rank = dist.get_rank()
run = alexandria.start_run(experiment="gloo")
for step in range(1000):
    run.log_metric(f"rank{rank}", float(step), step=step)
dist.barrier()  # every rank has logged (and, with a 60 s flush interval, holds it all in memory)
# one write of the whole line: the ranks share the launcher's pipe, unbuffered, and print() writes the line
# and its newline apart, so two ranks' lines could interleave ("rank 0 pid 6385rank 1 pid 6386")
sys.stdout.write(f"rank {rank} pid {os.getpid()}\\n")
sys.stdout.flush()
if rank == 0:
    time.sleep(600)  # never comes to the next collective
else:
    dist.all_reduce(torch.ones(1))  # waits in gloo for rank 0: forever
"""


def is_a_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_a_rank_stopped_inside_a_gloo_collective_ends_with_everything_written(store: Store, tmp_path: Path) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert launcher.stdout is not None and launcher.stderr is not None
    try:
        pids = {}
        while len(pids) < 2:
            line = launcher.stdout.readline().decode()
            assert line, launcher.stderr.read().decode()[-3000:]
            for rank, pid in re.findall(r"rank (\d+) pid (\d+)", line):
                pids[int(rank)] = int(pid)
        wait_until(lambda: in_a_futex_wait(pids[1]), timeout=60, what="rank 1 to wait in the collective")
        os.kill(pids[1], signal.SIGTERM)  # rank 1 alone, as `kill PID` does: rank 0 lives on, so gloo waits on
        wait_until(lambda: not Path(f"/proc/{pids[1]}").exists() or is_a_zombie(pids[1]), timeout=60,
                   what="rank 1 to die of its SIGTERM")
        launcher.send_signal(signal.SIGTERM)  # then the job: torchrun hands it on, waits 30 s, SIGKILLs
        launcher.wait(timeout=120)
    finally:
        launcher.kill()
    engine = open_database(store)
    with engine.connect() as conn:
        points = dict(conn.exec_driver_sql("SELECT key, count(*) FROM metric GROUP BY key").all())
        segments = conn.exec_driver_sql(
            "SELECT count(*), sum(CASE WHEN closed THEN 1 ELSE 0 END) FROM log_segment "
            "WHERE NOT coalesce(annotation, 0)"
        ).one()
        statuses = {row[0] for row in conn.exec_driver_sql("SELECT status FROM run").all()}
    engine.dispose()
    assert points == {"rank0": 1000, "rank1": 1000}  # rank 1's points too: its handler never ran
    assert tuple(segments) == (2, 2)  # both writers closed their segments: neither was SIGKILLed
    assert statuses == {"killed"}


LIGHTNING_FIT = """
import os, signal, sys
import torch
from torch.utils.data import DataLoader, TensorDataset
import lightning as L
import alexandria

class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, index):
        loss = self.layer(batch[0]).pow(2).mean()
        alexandria.log_metric("loss", float(loss), step=self.global_step)
        if self.global_step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, mid-epoch
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

class Seen(L.Callback):
    def on_exception(self, trainer, module, exception):
        print("on_exception", type(exception).__name__, flush=True)

torch.manual_seed(0)
data = DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=4)
with alexandria.start_run(experiment="lightning") as run:
    print(run.id, flush=True)
    trainer = L.Trainer(max_epochs=50, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Seen()])
    trainer.fit(Model(), data)
print("fit returned", flush=True)
"""


def test_lightnings_graceful_sigterm_stop_runs_and_the_run_is_killed(store: Store) -> None:
    need_framework("lightning")
    proc = python(LIGHTNING_FIT, env=child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root)))
    out, err = proc.communicate(timeout=300)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err.decode()[-3000:]  # Lightning's SIGTERMException leaves with exit code 0
    assert "on_exception SIGTERMException" in lines  # Lightning's own stop ran: our handler let it
    assert "fit returned" not in lines
    engine = open_database(store)
    with engine.connect() as conn:
        run = conn.exec_driver_sql("SELECT status, error FROM run").one()
        steps = [row[0] for row in conn.exec_driver_sql("SELECT step FROM metric ORDER BY step").all()]
    engine.dispose()
    assert tuple(run) == ("killed", "SIGTERM")
    assert steps == list(range(6))  # every step logged before the stop, none after it
