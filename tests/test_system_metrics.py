"""System metrics (system_metrics.py): a real sampler in real processes, its points read back from SQL.

No timed assertion: each test waits for samples to appear in the database (with a deadline), never for a
guessed duration. Where a sampler must be shown *not* to run, a second run of the same process samples as
the witness that enough intervals went by.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest

import alexandria
from alexandria.errors import InvalidInputError
from alexandria.store import Store
from alexandria.system_metrics import THREAD_PREFIX
from tests.conftest import child_env, python, query, run_python, wait_until

HOST_METRICS = (
    "system/cpu_percent",
    "system/memory_percent",
    "system/memory_used_mb",
    "system/process_rss_mb",
    "system/process_cpu_percent",
    "system/disk_read_mb",
    "system/disk_write_mb",
    "system/network_sent_mb",
    "system/network_recv_mb",
)
SAMPLES = 4  # each metric at least this many times

#: Prints the names of this process's sampler threads (a JSON list).
SAMPLER_THREADS = f"""
import json, threading
def sampler_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith({THREAD_PREFIX!r}))
"""


def count(store: Store, run_id: str, key: str = "system/cpu_percent") -> int:
    return int(query(store, f"SELECT count(*) FROM metric WHERE run_id = '{run_id}' AND key = '{key}'")[0][0])  # type: ignore[arg-type]


def wait_for_samples(store: Store, run_id: str, n: int, key: str = "system/cpu_percent") -> None:
    wait_until(lambda: count(store, run_id, key) >= n, what=f"{n} samples of {key} in run {run_id}")


def points(store: Store, run_id: str) -> dict[str, list[tuple[float, float | None, object]]]:
    """(timestamp, value, step) of every system/ point of the run, per key, in time order."""
    found: dict[str, list[tuple[float, float | None, object]]] = {}
    for key, ts, value, step in query(
        store, f"SELECT key, timestamp, value, step FROM metric WHERE run_id = '{run_id}' ORDER BY timestamp"
    ):
        if str(key).startswith("system/"):
            found.setdefault(str(key), []).append((float(ts), value, step))  # type: ignore[arg-type]
    return found


def start_child(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return python(SAMPLER_THREADS + textwrap.dedent(code), env=env, stdin=subprocess.PIPE)


def read_line(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line:
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"child exited ({proc.returncode}):\n{err.decode()}")
    return line.strip()


def finish(proc: subprocess.Popen[bytes]) -> tuple[list[str], str]:
    """Say "go" on its stdin; the lines it prints then, and its stderr, once it has exited 0."""
    out, err = proc.communicate(b"go\n", timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode().split("\n"), err.decode()


def nvml_works() -> bool:
    """Whether this machine has an NVIDIA GPU that NVML sees (then GPU metrics are expected, not absent)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


def test_a_run_samples_the_machine_and_its_thread_ends_with_it(store: Store) -> None:
    proc = start_child(
        """
        import sys, alexandria
        run = alexandria.start_run(experiment="sys", capture=False, system_metrics_interval=0.05)
        print(run.id, flush=True)
        sys.stdin.readline()
        print(json.dumps(sampler_threads()), flush=True)
        run.end()
        print(json.dumps(sampler_threads()), flush=True)
        """
    )
    run_id = read_line(proc)
    wait_for_samples(store, run_id, SAMPLES + 1)
    lines, err = finish(proc)
    assert json.loads(lines[0]) == [f"{THREAD_PREFIX}-{run_id[:8]}"]
    assert json.loads(lines[1]) == [], "the sampler thread is still there after end()"
    assert "alexandria" not in err, f"warnings on a machine without a GPU:\n{err}"

    got = points(store, run_id)
    for key in HOST_METRICS:
        series = got.get(key, [])
        assert len(series) >= SAMPLES, (key, len(series))
        times = [t for t, _, _ in series]
        assert times == sorted(set(times)), f"{key}: timestamps not strictly increasing"
        assert all(step is None for _, _, step in series), f"{key}: a system metric has a step"
        values = [v for _, v, _ in series]
        assert all(isinstance(v, float) and v >= 0 for v in values), (key, values)
        if key.startswith("system/disk_") or key.startswith("system/network_"):
            assert values == sorted(values), f"{key} is cumulative: it never decreases ({values})"
    for key in ("system/cpu_percent", "system/memory_percent"):
        assert all(0 <= v <= 100 for _, v, _ in got[key]), got[key]  # type: ignore[operator]
    assert all(0 <= v <= 100 * (os.cpu_count() or 1) for _, v, _ in got["system/process_cpu_percent"])  # type: ignore[operator]
    assert all(v > 0 for _, v, _ in got["system/process_rss_mb"])  # type: ignore[operator]
    assert all(v > 0 for _, v, _ in got["system/memory_used_mb"])  # type: ignore[operator]
    gpu_keys = sorted(k for k in got if k.startswith("system/gpu"))
    if nvml_works():
        assert gpu_keys, "a GPU is present but no GPU metrics were logged"
    else:
        assert gpu_keys == [], "GPU metrics without a GPU"


def test_process_memory_counts_the_child_processes(store: Store) -> None:
    """A worker process holding 200 MB shows in system/process_rss_mb (this process and its descendants)."""
    proc = start_child(
        """
        import subprocess, sys, alexandria
        hold = "import sys; b = bytes([1]) * (200 * 2**20); print('ready', flush=True); sys.stdin.readline()"
        worker = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert worker.stdout.readline() == b"ready\\n"
        run = alexandria.start_run(experiment="tree", capture=False, system_metrics_interval=0.05)
        print(run.id, flush=True)
        sys.stdin.readline()
        run.end()
        worker.communicate(b"go\\n")
        """
    )
    run_id = read_line(proc)
    wait_for_samples(store, run_id, 2, key="system/process_rss_mb")
    finish(proc)
    rss = [v for _, v, _ in points(store, run_id)["system/process_rss_mb"]]
    assert min(rss) > 200, rss  # type: ignore[operator]


@pytest.mark.parametrize("how", ["variable", "argument"])
def test_system_metrics_turned_off_log_nothing(store: Store, how: str) -> None:
    """Off by $ALEXANDRIA_SYSTEM_METRICS=0 or system_metrics=False: no thread, no point. The witness run,
    sampling on explicit request (which the variable does not override), shows that intervals went by."""
    off = "system_metrics=False" if how == "argument" else "system_metrics=None"
    env = child_env(ALEXANDRIA_SYSTEM_METRICS="0") if how == "variable" else None
    proc = start_child(
        f"""
        import sys, alexandria
        quiet = alexandria.start_run(experiment="off", capture=False, system_metrics_interval=0.05, {off})
        witness = alexandria.start_run(experiment="on", capture=False, system_metrics=True,
                                       system_metrics_interval=0.05)
        print(quiet.id, witness.id, flush=True)
        sys.stdin.readline()
        print(json.dumps(sampler_threads()), flush=True)
        witness.end()
        quiet.end()
        """,
        env=env,
    )
    quiet, witness = read_line(proc).split()
    wait_for_samples(store, witness, SAMPLES)
    lines, _ = finish(proc)
    assert json.loads(lines[0]) == [f"{THREAD_PREFIX}-{witness[:8]}"]
    assert points(store, quiet) == {}
    assert sorted(points(store, witness)) != []


def test_a_forked_child_does_not_sample(store: Store) -> None:
    """The fork child lives while its parent samples several more times, logs a point of its own, and has
    no sampler thread: its segment (named with its pid) holds its point and no system metric."""
    proc = start_child(
        """
        import os, sys, alexandria
        run = alexandria.start_run(experiment="fork", capture=False, system_metrics_interval=0.05)
        print(run.id, flush=True)
        sys.stdin.readline()  # "fork"
        pid = os.fork()
        if pid == 0:
            print("child", os.getpid(), json.dumps(sampler_threads()), flush=True)
            run.log_metric("child/marker", 1.0, 0)
            sys.stdin.readline()  # "go": the parent sampled meanwhile
            print(json.dumps(sampler_threads()), flush=True)
            run.end()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
        run.end()
        """
    )
    run_id = read_line(proc)
    wait_for_samples(store, run_id, 1)
    assert proc.stdin is not None
    proc.stdin.write(b"fork\n")
    proc.stdin.flush()
    _, child_pid, threads = read_line(proc).split(" ", 2)
    assert json.loads(threads) == []
    before = count(store, run_id)
    wait_for_samples(store, run_id, before + SAMPLES)  # the parent samples on while the child lives
    lines, _ = finish(proc)
    assert json.loads(lines[0]) == []
    segments = [p for p in store.run_dir(run_id).iterdir() if f"-{child_pid}-" in p.name]
    assert len(segments) == 1, segments
    data = segments[0].read_bytes()
    assert b"child/marker" in data and b"system/" not in data


def test_attached_handles_sample_only_when_asked_and_once_per_process(store: Store) -> None:
    owner = alexandria.start_run(experiment="attach", capture=False, system_metrics=False)
    try:
        out = run_python(
            SAMPLER_THREADS
            + textwrap.dedent(
                """
                import sys, alexandria
                plain = alexandria.start_run(run_id=sys.argv[1], system_metrics_interval=0.05)
                print(json.dumps(sampler_threads()))
                asked = alexandria.start_run(run_id=sys.argv[1], system_metrics=True, system_metrics_interval=0.05)
                again = alexandria.start_run(run_id=sys.argv[1], system_metrics=True, system_metrics_interval=0.05)
                print(json.dumps(sampler_threads()))
                again.end()
                print(json.dumps(sampler_threads()))
                asked.end()
                print(json.dumps(sampler_threads()))
                plain.end()
                """
            ),
            owner.id,
        )
    finally:
        owner.end()
    name = f"{THREAD_PREFIX}-{owner.id[:8]}"
    assert [json.loads(line) for line in out.split()] == [[], [name], [name], []]


def test_a_fake_nvml_maps_onto_gpu_metrics(store: Store, tmp_path: Path) -> None:
    """A stand-in for the *hardware*: a module named pynvml, first on the child's path, answering NVML's
    calls with fixed numbers for two GPUs (the second reports no power, as some boards do). What is
    tested is our mapping of NVML's answers onto metrics, and that NVML is shut down at the end."""
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(
        textwrap.dedent(
            """
            # Stand-in for NVIDIA hardware behind NVML: fixed answers, no driver.
            import os
            from types import SimpleNamespace
            NVML_TEMPERATURE_GPU = 0
            MIB = 2**20
            class NVMLError(Exception):
                pass
            def nvmlInit():
                pass
            def nvmlShutdown():
                with open(os.environ["FAKE_NVML_LOG"], "a") as f:
                    f.write("shutdown\\n")
            def nvmlDeviceGetCount():
                return 2
            def nvmlDeviceGetHandleByIndex(i):
                return ("gpu", i)
            def nvmlDeviceGetUtilizationRates(h):
                return SimpleNamespace(gpu=37 + h[1], memory=5)
            def nvmlDeviceGetMemoryInfo(h):
                return SimpleNamespace(used=(1024 + 1024 * h[1]) * MIB, total=8192 * MIB, free=0)
            def nvmlDeviceGetTemperature(h, sensor):
                assert sensor == NVML_TEMPERATURE_GPU
                return 61 + h[1]
            def nvmlDeviceGetPowerUsage(h):
                if h[1] == 1:
                    raise NVMLError("Not Supported")
                return 150500
            """
        )
    )
    nvml_log = tmp_path / "nvml.log"
    env = child_env(FAKE_NVML_LOG=str(nvml_log))
    env["PYTHONPATH"] = str(fake) + os.pathsep + env["PYTHONPATH"]
    proc = start_child(
        """
        import sys, alexandria
        run = alexandria.start_run(experiment="gpu", capture=False, system_metrics_interval=0.05)
        print(run.id, flush=True)
        sys.stdin.readline()
        run.end()
        """,
        env=env,
    )
    run_id = read_line(proc)
    wait_for_samples(store, run_id, SAMPLES, key="system/gpu1/temperature_c")
    _, err = finish(proc)
    assert "alexandria" not in err, err
    got = points(store, run_id)
    expected = {
        "system/gpu0/utilization_percent": 37.0,
        "system/gpu0/memory_used_mb": 1024.0,
        "system/gpu0/memory_percent": 12.5,
        "system/gpu0/temperature_c": 61.0,
        "system/gpu0/power_w": 150.5,
        "system/gpu1/utilization_percent": 38.0,
        "system/gpu1/memory_used_mb": 2048.0,
        "system/gpu1/memory_percent": 25.0,
        "system/gpu1/temperature_c": 62.0,
    }
    gpu = {k: v for k, v in got.items() if k.startswith("system/gpu")}
    assert sorted(gpu) == sorted(expected)  # no gpu1/power_w: that board does not report it
    for key, value in expected.items():
        assert {v for _, v, _ in gpu[key]} == {value}, key
        assert len(gpu[key]) >= SAMPLES
    assert nvml_log.read_text() == "shutdown\n"


def test_import_alexandria_loads_neither_psutil_nor_pynvml() -> None:
    out = run_python(
        """
        import json, sys
        import alexandria
        print(json.dumps([m for m in ("psutil", "pynvml") if m in sys.modules]))
        """
    )
    assert json.loads(out) == []


def test_start_run_opens_the_probes_itself_not_the_sampler_thread() -> None:
    """psutil and NVML are loaded by the time start_run returns: their ~40 ms of imports, done in the sampler's
    thread, held the GIL while the training loop began."""
    out = run_python(
        """
        import json, sys, tempfile
        import alexandria
        with tempfile.TemporaryDirectory() as store:
            run = alexandria.start_run(experiment="probes", store=store, capture=False, system_metrics=True)
            loaded = "psutil" in sys.modules
            run.end()
        print(json.dumps(loaded))
        """
    )
    assert json.loads(out) is True


def test_bad_settings_are_refused_before_a_run_starts(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="system_metrics_interval"):
        alexandria.start_run(experiment="bad", capture=False, system_metrics_interval=0)
    with pytest.raises(InvalidInputError, match="system_metrics must be"):
        alexandria.start_run(experiment="bad", capture=False, system_metrics="yes")  # type: ignore[arg-type]
    monkeypatch.setenv("ALEXANDRIA_SYSTEM_METRICS", "maybe")
    with pytest.raises(InvalidInputError, match="ALEXANDRIA_SYSTEM_METRICS='maybe'"):
        alexandria.start_run(experiment="bad", capture=False)
    monkeypatch.setenv("ALEXANDRIA_SYSTEM_METRICS", "1")
    monkeypatch.setenv("ALEXANDRIA_SYSTEM_METRICS_INTERVAL", "soon")
    with pytest.raises(InvalidInputError, match="ALEXANDRIA_SYSTEM_METRICS_INTERVAL='soon'"):
        alexandria.start_run(experiment="bad", capture=False)
    assert not store.runs_dir.exists() or list(store.runs_dir.iterdir()) == []


def test_a_resumed_run_samples_again(store: Store) -> None:
    """Its owner is the process that resumed it: that process samples the machine for the new life."""

    def threads() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX))

    run = alexandria.start_run(experiment="resume", capture=False, system_metrics_interval=0.05)
    name = f"{THREAD_PREFIX}-{run.id[:8]}"
    assert threads() == [name]
    run.end()
    assert threads() == []
    again = alexandria.start_run(run_id=run.id, capture=False, system_metrics_interval=0.05)
    assert again.owner and threads() == [name]
    wait_for_samples(store, run.id, 1)
    again.end()
    assert threads() == []


def test_sigterm_while_sampling_ends_the_run_killed_with_its_samples(store: Store) -> None:
    """The SIGTERM handler ends the run, which stops and joins the sampler: the process still dies of the
    signal, the run is "killed", and the samples taken so far are in it."""
    proc = start_child(
        """
        import time, alexandria
        run = alexandria.start_run(experiment="term", capture=False, system_metrics_interval=0.05)
        print(run.id, flush=True)
        step = 0
        while True:  # training, at a pace that keeps the store small
            run.log_metric("loss", 0.5, step)
            step += 1
            time.sleep(0.001)
        """
    )
    run_id = read_line(proc)
    wait_for_samples(store, run_id, 3)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err.decode()
    assert query(store, f"SELECT status FROM run WHERE id = '{run_id}'") == [("killed",)]
    assert count(store, run_id) >= 3
