"""Every rank of a distributed job logs into one run: the launcher's environment faked, the processes real.

The real launchers (torchrun with gloo, Lightning's DDP) are in tests/frameworks/; here each rank is a
plain `python -c` child given the variables its launcher would set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from alexandria.ranks import Job, current_job
from alexandria.store import Store
from tests.conftest import child_env, complete_lines, python, query, wait_until

RDZV = "0b9f6f3e1c2d4a5b8e7f6a5b4c3d2e1f"


def torchrun_env(rank: int, world: int, rdzv: str = RDZV) -> dict[str, str]:
    """What torchrun gives worker `rank` of a one-node job (`--standalone`: a uuid as the rendezvous id)."""
    return child_env(
        TORCHELASTIC_RUN_ID=rdzv,
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        GROUP_RANK="0",
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT="29500",
        TORCHELASTIC_RESTART_COUNT="0",
    )


# -- detection ----------------------------------------------------------------------------------------------
def test_each_launcher_is_recognised_with_its_global_rank() -> None:
    elastic = {"TORCHELASTIC_RUN_ID": "abc", "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    job = current_job(elastic)
    assert job is not None and (job.launcher, job.rank, job.world_size) == ("torchelastic", 3, 4)
    # torchrun inside a Slurm allocation: torchrun's RANK is the global rank, not SLURM_PROCID
    under_slurm = current_job({**elastic, "SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "7"})
    assert under_slurm == job
    lightning = {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "4242"}
    job = current_job(lightning)
    assert job is not None and (job.launcher, job.rank) == ("lightning", 1)
    assert current_job({**lightning, "NODE_RANK": "1"}) is None  # several nodes: a launcher that names the job
    ompi = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3", "PMIX_NAMESPACE": "prterun-h-1@1"}
    job = current_job(ompi)
    assert job is not None and (job.launcher, job.rank, job.world_size) == ("openmpi", 2, 3)
    mpich = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALNRANKS": "2"}  # Hydra on one node: named by its proxy
    job = current_job(mpich)
    assert job is not None and (job.launcher, job.rank) == ("mpich", 1)
    under_slurm = current_job({**mpich, "MPI_LOCALNRANKS": "1", "SLURM_JOB_ID": "5", "SLURM_STEP_ID": "2"})
    assert under_slurm is not None and under_slurm.key == "mpich\0slurm:5.2"
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "991", "SLURM_STEP_ID": "0"}
    job = current_job(slurm)
    assert job is not None and (job.launcher, job.rank, job.world_size) == ("slurm", 5, 8)
    # not a distributed job: nothing set, a job of one process, MPI without a job id
    assert current_job({}) is None
    assert current_job({**slurm, "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) is None
    assert current_job({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}) is None


def test_the_run_id_is_the_same_in_every_rank_and_differs_between_jobs_and_experiments() -> None:
    ids = {current_job({"TORCHELASTIC_RUN_ID": "a", "RANK": str(r), "WORLD_SIZE": "4"}).run_id("e") for r in range(4)}  # type: ignore[union-attr]
    assert len(ids) == 1
    job = Job("torchelastic", "torchelastic\0a", 0, 4)
    other = Job("torchelastic", "torchelastic\0b", 0, 4)
    assert len({job.run_id("e"), job.run_id("f"), job.run_id("e", 1), other.run_id("e")}) == 4
    assert job.run_id("e") in ids


def test_torchrun_without_a_rendezvous_id_is_named_by_its_launcher_process(tmp_path: Path) -> None:
    """A static rendezvous (torchrun's default id "none") on one node: the ranks' common parent names the job,
    so two jobs one after the other on the same port are two runs."""
    code = """
import json, os, subprocess, sys
env = dict(os.environ, TORCHELASTIC_RUN_ID="none", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="x",
           MASTER_PORT="1")
child = "from alexandria.ranks import current_job; print(current_job().run_id('e'))"
ids = [subprocess.run([sys.executable, "-c", child], env=dict(env, RANK=str(r)), capture_output=True, text=True,
                      check=True).stdout.strip() for r in range(2)]
print(json.dumps(ids))
"""
    first = json.loads(subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    second = json.loads(subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    assert first[0] == first[1] and second[0] == second[1]
    assert first[0] != second[0]


# -- one run ------------------------------------------------------------------------------------------------
RANK = """
import os, sys, alexandria
store, points, wait_for = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rank = int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)
run = alexandria.start_run(experiment="ddp", store=store, tags={"job": "one"})
print(run.id, run.owner, flush=True)
if wait_for != "-":
    sys.stdin.readline()  # the test says when to go on
for step in range(points):
    alexandria.log_metric("loss", rank + step / 1000, step)
    run.log_metric(f"rank{rank}/only", float(step), step)
alexandria.end_run()
print("ended", flush=True)
"""


def _metric_rows(store: Store) -> list[tuple[object, ...]]:
    return query(store, "SELECT run_id, key, step, rank, attempt FROM metric ORDER BY rank, key, step")


def _events(store: Store, run_id: str) -> list[dict[str, object]]:
    found = []
    for segment in sorted(store.run_dir(run_id).glob("*.jsonl")):
        found += [json.loads(line) for _, line in complete_lines(segment)]
    return found


def test_every_rank_logs_into_one_run_and_a_rank_after_rank_zero_ended_never_resumes_it(store: Store) -> None:
    """Four ranks of one torchrun job: rank 0 starts, logs and ends the run first; ranks 1-3 log after
    that. One run, finished, every rank's points once, each point carrying its rank, and no resume."""
    world, points = 4, 50
    zero = python(RANK, str(store.root), str(points), "-", env=torchrun_env(0, world))
    out, err = zero.communicate(timeout=120)
    assert zero.returncode == 0, err.decode()
    run_id, owner = out.decode().split()[:2]
    assert owner == "True"
    others = [python(RANK, str(store.root), str(points), "-", env=torchrun_env(r, world)) for r in range(1, world)]
    for rank, proc in enumerate(others, 1):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert out.decode().split()[:2] == [run_id, "False"], f"rank {rank}"

    assert query(store, "SELECT id, experiment_name, status, attempt FROM run") == [(run_id, "ddp", "finished", 0)]
    expected = sorted(
        [(run_id, "loss", s, r, 0) for r in range(world) for s in range(points)]
        + [(run_id, f"rank{r}/only", s, r, 0) for r in range(world) for s in range(points)],
        key=lambda row: (row[3], row[1], row[2]),
    )
    assert _metric_rows(store) == expected
    kinds = [e["event"] for e in _events(store, run_id)]
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1
    assert "run_resumed" not in kinds
    assert sorted(query(store, "SELECT rank FROM log_segment")) == [(r,) for r in range(world)]


LAUNCHERS = {
    "torchelastic": lambda r, n: {"TORCHELASTIC_RUN_ID": RDZV, "RANK": str(r), "WORLD_SIZE": str(n)},
    "openmpi": lambda r, n: {"OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": str(n), "PMIX_NAMESPACE": "p@1"},
    "mpich": lambda r, n: {"PMI_RANK": str(r), "PMI_SIZE": str(n), "MPI_LOCALNRANKS": str(n)},
    "slurm": lambda r, n: {"SLURM_PROCID": str(r), "SLURM_NTASKS": str(n), "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"},
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_ranks_of_every_launcher_started_together_share_one_run(store: Store, launcher: str) -> None:
    """Three ranks started at once (as a launcher starts them: children of one process), released together."""
    world = 3
    procs = [
        python(RANK.replace('os.environ.get("RANK")', "int(sys.argv[4])"), str(store.root), "10", "wait", str(r),
               env=child_env(**LAUNCHERS[launcher](r, world)), stdin=subprocess.PIPE)
        for r in range(world)
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outs.append(out.decode().split()[:2])
    (run_id,) = {run_id for run_id, _ in outs}
    assert [owner for _, owner in outs] == ["True", "False", "False"]
    assert query(store, "SELECT id, status FROM run") == [(run_id, "finished")]
    assert query(store, "SELECT rank, count(*) FROM metric GROUP BY rank ORDER BY rank") == [
        (r, 20) for r in range(world)
    ]


def test_a_rank_that_joins_before_rank_zero_created_the_run_keeps_its_points(store: Store) -> None:
    """Rank 1 logs, ends and exits before rank 0 has even started: its points wait in the run's folder and
    belong to the run rank 0 then creates."""
    one = python(RANK, str(store.root), "20", "-", env=torchrun_env(1, 2))
    out, err = one.communicate(timeout=120)
    assert one.returncode == 0, err.decode()
    run_id = out.decode().split()[0]
    zero = python(RANK, str(store.root), "20", "-", env=torchrun_env(0, 2))
    out, err = zero.communicate(timeout=120)
    assert zero.returncode == 0, err.decode()
    assert out.decode().split()[:2] == [run_id, "True"]
    assert query(store, "SELECT id, experiment_name, status FROM run") == [(run_id, "ddp", "finished")]
    assert query(store, "SELECT rank, count(*) FROM metric GROUP BY rank ORDER BY rank") == [(0, 40), (1, 40)]
    assert query(store, "SELECT value FROM tag WHERE key = 'job'") == [("one",)]


def test_ranks_running_together_end_with_rank_zero_s_status(store: Store) -> None:
    """All ranks start together; rank 0 fails while the others still log: the run failed (rank 0's status),
    and the others' later points are all there."""
    failing = RANK.replace("alexandria.end_run()", 'alexandria.end_run("failed" if rank == 0 else None)')
    procs = [
        python(failing, str(store.root), "30", "wait", env=torchrun_env(r, 3), stdin=subprocess.PIPE) for r in range(3)
    ]
    ids = set()
    for proc in procs:
        assert proc.stdout is not None
        ids.add(proc.stdout.readline().split()[0])
    assert len(ids) == 1
    zero = procs[0]
    out, err = zero.communicate(b"go\n", timeout=120)
    assert zero.returncode == 0, err.decode()
    wait_until(lambda: query(store, "SELECT status FROM run") == [("failed",)], what="rank 0's end folded")
    for proc in procs[1:]:
        out, err = proc.communicate(b"go\n", timeout=120)
        assert proc.returncode == 0, err.decode()
    assert query(store, "SELECT status, attempt FROM run") == [("failed", 0)]
    assert query(store, "SELECT rank, count(*) FROM metric GROUP BY rank ORDER BY rank") == [(r, 60) for r in range(3)]


SEQUENCE = """
import sys, alexandria
for fold in range(2):
    with alexandria.start_run(experiment="kfold", store=sys.argv[1]) as run:
        run.log_metric("fold", float(fold), 0)
        print(run.id, flush=True)
"""


def test_each_rank_s_nth_run_of_an_experiment_is_the_job_s_nth_run(store: Store) -> None:
    """A script that runs two folds one after the other, on two ranks: two runs, each with both ranks."""
    outs = []
    for rank in (1, 0):
        proc = python(SEQUENCE, str(store.root), env=torchrun_env(rank, 2))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        outs.append(out.decode().split())
    assert outs[0] == outs[1] and len(set(outs[0])) == 2
    got = query(store, "SELECT run_id, value, rank FROM metric ORDER BY value, rank")
    assert got == [(outs[0][0], 0.0, 0), (outs[0][0], 0.0, 1), (outs[0][1], 1.0, 0), (outs[0][1], 1.0, 1)]
    assert sorted(query(store, "SELECT status FROM run")) == [("finished",), ("finished",)]


LIGHTNING_MAIN = """
import os, subprocess, sys, alexandria
store = sys.argv[1]
# what Lightning's launcher does: set the job's variables in the main process, then start the other ranks
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="4321", NODE_RANK="0", LOCAL_RANK="0", WORLD_SIZE="2")
child = subprocess.Popen([sys.executable, "-c", sys.argv[2], store], env=dict(os.environ, LOCAL_RANK="1"))
run = alexandria.start_run(experiment="lit", store=store)
run.log_metric("loss", 0.0, 0)
print(run.id, flush=True)
run.end()
assert child.wait() == 0
"""
LIGHTNING_CHILD = """
import sys, alexandria
run = alexandria.start_run(experiment="lit", store=sys.argv[1])
run.log_metric("loss", 1.0, 0)
run.end()
"""


def test_lightning_s_launcher_main_process_and_its_children_share_the_run(store: Store) -> None:
    proc = python(LIGHTNING_MAIN, str(store.root), LIGHTNING_CHILD)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    run_id = out.decode().strip()
    assert query(store, "SELECT id, status FROM run") == [(run_id, "finished")]
    assert query(store, "SELECT value, rank FROM metric ORDER BY rank") == [(0.0, 0), (1.0, 1)]


INHERITING = """
import os, subprocess, sys, alexandria
store = sys.argv[1]
run = alexandria.start_run(experiment="top", store=store)  # before the launcher: not yet a rank
os.environ.update(MASTER_PORT="4321", NODE_RANK="0", LOCAL_RANK="0", WORLD_SIZE="2")
child = subprocess.Popen([sys.executable, "-c", sys.argv[2], store], env=dict(os.environ, LOCAL_RANK="1"))
assert child.wait() == 0
again = alexandria.start_run(experiment="top", store=store)  # a logger of rank 0, say: the same run, not its owner
print(run.id, again.id, again.owner, flush=True)
again.end()
run.log_metric("loss", 0.0, 0)
run.end()
"""
LATE_CHILD = """
import sys, alexandria
run = alexandria.start_run(experiment="top", store=sys.argv[1])
run.log_metric("loss", 1.0, 0)
print(run.id, flush=True)
run.end()
"""


def test_a_run_the_main_process_started_before_launching_is_the_ranks_run(store: Store) -> None:
    """$ALEXANDRIA_RUN_ID inherited from the main process wins over an id derived from the job."""
    proc = python(INHERITING, str(store.root), LATE_CHILD)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    child_id, run_id, again_id, again_owner = out.decode().split()
    assert child_id == run_id == again_id and again_owner == "False"
    assert query(store, "SELECT id, status FROM run") == [(run_id, "finished")]
    assert query(store, "SELECT value, rank FROM metric ORDER BY value") == [(0.0, None), (1.0, 1)]


# -- two processes creating one new run id at once ------------------------------------------------------------
RACER = """
import sys, time, alexandria
store, run_id, go, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print("ready", flush=True)
sys.stdin.readline()
run = alexandria.start_run(experiment="race", run_id=run_id, store=store)
print(run.owner, flush=True)
sys.stdin.readline()  # every racer has started before any ends: a racer that came after the end would resume
for step in range(100):
    run.log_metric("loss", float(k), step)
run.end()
"""


@pytest.mark.parametrize("racers", [2, 6])
def test_processes_racing_to_create_one_new_run_id_make_one_run_with_one_owner(store: Store, racers: int) -> None:
    run_id = uuid.uuid4().hex
    procs = [python(RACER, str(store.root), run_id, "-", str(k), stdin=subprocess.PIPE) for k in range(racers)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.communicate()[1].decode()
    for proc in procs:  # released together
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    owners = []
    for proc in procs:
        assert proc.stdout is not None
        owners.append(proc.stdout.readline().decode().strip())
    for proc in procs:
        out, err = proc.communicate(b"end\n", timeout=120)
        assert proc.returncode == 0, err.decode()
    assert sorted(owners) == ["False"] * (racers - 1) + ["True"]
    kinds = [e["event"] for e in _events(store, run_id)]
    assert kinds.count("run_started") == 1 and kinds.count("run_finished") == 1 and "run_resumed" not in kinds
    assert query(store, "SELECT id, experiment_name, attempt FROM run") == [(run_id, "race", 0)]
    assert query(store, "SELECT value, count(*) FROM metric GROUP BY value ORDER BY value") == [
        (float(k), 100) for k in range(racers)
    ]


#: A creator held between claiming the run's folder and writing its start, until told to go on.
SLOW_CREATOR = """
import sys, alexandria
from alexandria import tracking
new_run = tracking.new_run

def held(*args, **kwargs):
    print("claimed", flush=True)
    sys.stdin.readline()
    return new_run(*args, **kwargs)

tracking.new_run = held
run = alexandria.start_run(experiment="race", run_id=sys.argv[2], store=sys.argv[1])
print(run.owner, flush=True)
sys.stdin.readline()
run.end()
"""

#: A second process starting the same id, held right after it has read the run's state, until told to go on.
LOOKER = """
import sys, alexandria
from alexandria import tracking
run_state = tracking.run_state

def looked(*args, **kwargs):
    state = run_state(*args, **kwargs)
    print("looked", state.status, flush=True)
    sys.stdin.readline()
    return state

tracking.run_state = looked
run = alexandria.start_run(experiment="race", run_id=sys.argv[2], store=sys.argv[1])
print(run.owner, flush=True)
sys.stdin.readline()
run.end()
"""


def test_a_creator_writing_its_start_while_another_process_looks_stays_the_one_owner(store: Store) -> None:
    """The race the test above hits now and then, made to happen: the creator has claimed the folder but not
    written its start when the second process reads the run's state (no segment: it looks crashed), and writes
    it before that process goes on. The second process attaches; it does not resume the run as a second owner."""
    run_id = uuid.uuid4().hex
    creator = python(SLOW_CREATOR, str(store.root), run_id, stdin=subprocess.PIPE)
    assert creator.stdin is not None and creator.stdout is not None
    assert creator.stdout.readline() == b"claimed\n", creator.communicate()[1].decode()
    looker = python(LOOKER, str(store.root), run_id, stdin=subprocess.PIPE)
    assert looker.stdin is not None and looker.stdout is not None
    assert looker.stdout.readline() == b"looked crashed\n", looker.communicate()[1].decode()
    creator.stdin.write(b"go\n")
    creator.stdin.flush()
    assert creator.stdout.readline() == b"True\n"  # its start is written
    looker.stdin.write(b"go\n")
    looker.stdin.flush()
    assert looker.stdout.readline() == b"False\n", looker.communicate()[1].decode()
    for proc in (looker, creator):
        _, err = proc.communicate(b"end\n", timeout=120)
        assert proc.returncode == 0, err.decode()
    kinds = [e["event"] for e in _events(store, run_id)]
    assert kinds.count("run_started") == 1 and "run_resumed" not in kinds and kinds.count("run_finished") == 1
    assert query(store, "SELECT id, status, attempt FROM run") == [(run_id, "finished", 0)]


def test_outside_a_distributed_job_start_run_ignores_the_rank_rules(store: Store) -> None:
    """No launcher: every start_run(experiment=...) is a new run, as before; points carry no rank."""
    code = """
import sys, alexandria
for _ in range(2):
    with alexandria.start_run(experiment="plain", store=sys.argv[1]) as run:
        run.log_metric("x", 1.0, 0)
"""
    env = {k: v for k, v in child_env().items() if k not in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID")}
    proc = python(code, str(store.root), env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert query(store, "SELECT count(*) FROM run") == [(2,)]
    assert query(store, "SELECT rank FROM metric") == [(None,), (None,)]
    assert os.environ.get("RANK") is None


EXPLICIT = """
import sys, alexandria
run = alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1])
run.log_metric("late", 1.0, 0)
print(run.owner, flush=True)
run.end()
"""


def test_a_rank_given_run_id_of_an_ended_run_joins_it_without_resuming(store: Store) -> None:
    """Outside a job, start_run(run_id=) of an ended run resumes it; rank 1 of a job only joins it."""
    zero = python(RANK, str(store.root), "5", "-", env=torchrun_env(0, 2))
    out, err = zero.communicate(timeout=120)
    assert zero.returncode == 0, err.decode()
    run_id = out.decode().split()[0]
    one = python(EXPLICIT, str(store.root), run_id, env=torchrun_env(1, 2))
    out, err = one.communicate(timeout=120)
    assert one.returncode == 0, err.decode()
    assert out.decode().strip() == "False"
    assert query(store, "SELECT status, attempt FROM run") == [("finished", 0)]
    assert query(store, "SELECT rank, attempt FROM metric WHERE key = 'late'") == [(1, 0)]
    assert "run_resumed" not in [e["event"] for e in _events(store, run_id)]


def test_a_new_run_id_refused_for_bad_input_is_not_claimed(store: Store) -> None:
    """What start_run refuses is refused before the run's folder is claimed: a later, valid start of the same id
    still creates the run (and owns it) instead of attaching to a run nobody will start."""
    import alexandria
    from alexandria.errors import InvalidInputError

    run_id = uuid.uuid4().hex
    for bad in ({"experiment": ""}, {"experiment": "e", "tags": {"": "x"}}, {"experiment": "e", "parent": "nope"}):
        with pytest.raises(InvalidInputError):
            alexandria.start_run(run_id=run_id, store=store, **bad)  # type: ignore[arg-type]
        assert not store.run_exists(run_id)
    run = alexandria.start_run(run_id=run_id, experiment="e", store=store)
    assert run.owner
    run.end()
    assert query(store, "SELECT id, experiment_name, status FROM run") == [(run_id, "e", "finished")]


def test_a_restarted_job_s_rank_zero_resumes_the_run_and_the_others_join_the_new_life(store: Store) -> None:
    """torchelastic restarts every rank with the same job id after a failure: rank 0 finds the run's start
    written, resumes it (attempt 1) and owns its end; rank 1 of the new round joins that life."""
    failing = RANK.replace("alexandria.end_run()", 'alexandria.end_run("failed" if rank == 0 else None)')
    for rank in (0, 1):
        proc = python(failing, str(store.root), "5", "-", env=torchrun_env(rank, 2))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert query(store, "SELECT status, attempt FROM run") == [("failed", 0)]
    for rank in (0, 1):
        env = torchrun_env(rank, 2)
        env["TORCHELASTIC_RESTART_COUNT"] = "1"
        proc = python(RANK, str(store.root), "5", "-", env=env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        assert out.decode().split()[1] == ("True" if rank == 0 else "False")
    assert query(store, "SELECT status, attempt FROM run") == [("finished", 1)]
    assert query(store, "SELECT event, attempt FROM lifecycle ORDER BY timestamp") == [
        ("started", 0),
        ("finished", 0),
        ("resumed", 1),
        ("finished", 1),
    ]
    assert query(store, "SELECT attempt, rank, count(*) FROM metric GROUP BY attempt, rank ORDER BY attempt, rank") == [
        (0, 0, 10),
        (0, 1, 10),
        (1, 0, 10),
        (1, 1, 10),
    ]


INHERITED_CALL = """
import sys, alexandria
alexandria.log_metric("late", 1.0, 0)  # no start_run: the run the main process shared
alexandria.flush()
"""


def test_a_rank_that_inherited_a_run_already_ended_still_logs_into_it(store: Store) -> None:
    """Outside a job, a child inheriting an ended run gets NoActiveRunError; a rank of a job joins the run."""
    code = """
import sys, alexandria
run = alexandria.start_run(experiment="main", store=sys.argv[1])
print(run.id, flush=True)
run.end()
"""
    proc = python(code, str(store.root))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    run_id = out.decode().strip()
    lightning_child = dict(LOCAL_RANK="1", NODE_RANK="0", WORLD_SIZE="2", MASTER_PORT="4321")
    proc = python(INHERITED_CALL, env=child_env(ALEXANDRIA_RUN_ID=run_id, **lightning_child))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    plain = python(INHERITED_CALL, env=child_env(ALEXANDRIA_RUN_ID=run_id))
    _, err = plain.communicate(timeout=120)
    assert plain.returncode != 0 and b"NoActiveRunError" in err
    assert query(store, "SELECT status, attempt FROM run") == [("finished", 0)]
    assert query(store, "SELECT key, rank FROM metric WHERE key = 'late'") == [("late", 1)]


RANK_ZERO_WITH_HELPER = """
import subprocess, sys, alexandria
run = alexandria.start_run(experiment="main", store=sys.argv[1])
helper = "import sys, alexandria; h = alexandria.start_run(experiment='main', store=sys.argv[1]); print(h.id, h.owner)"
out = subprocess.run([sys.executable, "-c", helper, sys.argv[1]], capture_output=True, text=True, check=True).stdout
print(run.id, out.strip(), flush=True)
run.log_metric("after", 1.0, 0)
run.end("failed")
"""


def test_a_process_rank_zero_starts_joins_its_run_and_leaves_its_end_to_rank_zero(store: Store) -> None:
    """A helper process of rank 0 has rank 0's variables and the run it shared: it joins that run, not as its
    owner, so its exit does not end it: the run's end and status stay rank 0's."""
    proc = python(RANK_ZERO_WITH_HELPER, str(store.root), env=torchrun_env(0, 2))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    run_id, helper_id, helper_owner = out.decode().split()
    assert helper_id == run_id and helper_owner == "False"
    assert query(store, "SELECT status FROM run") == [("failed",)]
    assert query(store, "SELECT event, status FROM lifecycle ORDER BY timestamp") == [
        ("started", "running"),
        ("finished", "failed"),
    ]
