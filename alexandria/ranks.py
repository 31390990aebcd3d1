"""Which distributed job this process is a rank of, read from its launcher's environment.

Every rank of a distributed job runs the same script, so every rank calls `start_run(experiment=...)`.
For them to log into one run without talking to each other, each must find the same run id and know
whether it owns the run. `current_job()` reads both from the environment the launcher gave the process:

* torchrun / torchelastic (and `accelerate launch`, which launches through `torch.distributed.run`):
  `RANK`, `WORLD_SIZE`, and the job's `TORCHELASTIC_RUN_ID` (the rendezvous id: a fresh uuid with
  `--standalone`, else `--rdzv-id`, whose default is "none": then, on one node, the launcher process,
  every rank's parent, names the job);
* Lightning's own launcher for DDP (`Trainer(strategy="ddp")` run as a plain script): the main process
  is local rank 0 and starts the others as its children with `LOCAL_RANK`, `NODE_RANK`, `WORLD_SIZE`
  and `MASTER_PORT` (no `RANK`), and it sets the same variables in its own environment when it launches
  them; the main process names the job (one node only: on several, use torchrun, Slurm or MPI);
* Open MPI (`OMPI_COMM_WORLD_RANK`/`SIZE`, the job named by `PMIX_NAMESPACE` or the HNP's uri), MPICH and
  Intel MPI (`PMI_RANK`/`PMI_SIZE`, named by `PMIX_NAMESPACE` under PMIx); else by the Slurm step they run
  in, else, all ranks on one node, by the process that started them (mpirun's daemon, Hydra's proxy);
* Slurm (`SLURM_PROCID`, `SLURM_NTASKS`, named by `SLURM_JOB_ID` and `SLURM_STEP_ID`).

A job of one process is no distributed job: `current_job()` says None and runs start as anywhere else.
The rule for the run itself (rank 0 owns it, the others join it) is tracking.py's.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from .life import process_start

#: The namespace of the run ids derived from a job's identity (uuid5).
_NAMESPACE = uuid.UUID("6f1d2c59-5b0e-4a8e-9c35-1f1f6b7a0c42")


@dataclass(frozen=True)
class Job:
    """This process's place in a distributed job."""

    #: Who launched it: "torchelastic", "lightning", "openmpi", "mpich", "slurm".
    launcher: str
    #: The same text in every rank of the job and in no other job.
    key: str
    rank: int
    world_size: int

    def run_id(self, experiment: str, index: int = 0) -> str:
        """The id every rank derives for its `index`-th run of `experiment` in this job (0 for the first)."""
        return uuid.uuid5(_NAMESPACE, f"{self.key}\0{experiment}\0{index}").hex


def _int(env: Mapping[str, str], name: str) -> int | None:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        return None


def _process_key(pid: int) -> str:
    """A process named so that a later process given the same pid is another name (host, pid, start)."""
    return f"{socket.gethostname()}:{pid}:{process_start(pid) or 0}"


def _mpi_job(env: Mapping[str, str], names: tuple[str, ...], one_node: bool) -> str | None:
    """An MPI job's identity: the first of `names` the launcher set, else the Slurm step it runs in, else, with
    every rank on this node, the process that started them all (mpirun's daemon, Hydra's proxy)."""
    for name in names:
        if env.get(name):
            return env[name]
    if env.get("SLURM_JOB_ID"):
        return f"slurm:{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '')}"
    return _process_key(os.getppid()) if one_node else None


def current_job(env: Mapping[str, str] | None = None) -> Job | None:
    """The distributed job this process is a rank of, or None (not launched as one, or a job of one)."""
    env = os.environ if env is None else env
    job = _detect(env)
    if job is None or job.world_size < 2 or not 0 <= job.rank < job.world_size:
        return None
    return job


def _detect(env: Mapping[str, str]) -> Job | None:
    rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if "TORCHELASTIC_RUN_ID" in env and rank is not None and size is not None:
        rdzv = env["TORCHELASTIC_RUN_ID"]
        if rdzv and rdzv != "none":
            key = f"torchelastic\0{rdzv}"
        else:  # a static rendezvous without --rdzv-id: on one node, the launcher (every rank's parent) names it
            key = f"torchelastic\0{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
            if _int(env, "LOCAL_WORLD_SIZE") == size:
                key += "\0" + _process_key(os.getppid())
            elif "SLURM_JOB_ID" in env:
                key += f"\0slurm:{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '')}"
        return Job("torchelastic", key, rank, size)
    local, node = _int(env, "LOCAL_RANK"), _int(env, "NODE_RANK")
    if rank is None and local is not None and node == 0 and size is not None and "MASTER_PORT" in env:
        # Lightning's launcher: local rank 0 is the main process, the others its children
        launcher = os.getpid() if local == 0 else os.getppid()
        return Job("lightning", f"lightning\0{env['MASTER_PORT']}\0{_process_key(launcher)}", local, size)
    rank, size = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
    if rank is not None and size is not None:
        names = ("PMIX_NAMESPACE", "OMPI_MCA_orte_hnp_uri", "OMPI_MCA_ess_base_jobid")
        job_id = _mpi_job(env, names, _int(env, "OMPI_COMM_WORLD_LOCAL_SIZE") == size)
        if job_id:
            return Job("openmpi", f"openmpi\0{job_id}", rank, size)
    rank, size = _int(env, "PMI_RANK"), _int(env, "PMI_SIZE")
    if rank is not None and size is not None:
        job_id = _mpi_job(env, ("PMIX_NAMESPACE",), _int(env, "MPI_LOCALNRANKS") == size)
        if job_id:
            return Job("mpich", f"mpich\0{job_id}", rank, size)
    rank, size = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    if rank is not None and size is not None and "SLURM_JOB_ID" in env:
        key = f"slurm\0{env.get('SLURM_CLUSTER_NAME', '')}\0{env['SLURM_JOB_ID']}\0{env.get('SLURM_STEP_ID', '')}"
        return Job("slurm", key, rank, size)
    return None
