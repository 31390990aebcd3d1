"""One rank of a torchrun job the tests start: python -m torch.distributed.run ... torchrun_script.py STORE STEPS.

Every rank joins a gloo process group, all-reduces a tensor per step and logs its own steps with no code
about ranks: `start_run(experiment=...)` alone, as a single-process script would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

import alexandria

store, steps = sys.argv[1], int(sys.argv[2])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
run = alexandria.start_run(experiment="torchrun", store=store)
alexandria.log_param("world_size", world)
for step in range(steps):
    total = torch.tensor([float(rank + step)])
    dist.all_reduce(total)
    alexandria.log_metric("sum", total.item(), step)
    alexandria.log_metric("mine", float(rank), step)
Path(f"rank{rank}.run").write_text(f"{run.id} {run.owner}")  # in the working directory: one file per rank
alexandria.end_run()
dist.destroy_process_group()
