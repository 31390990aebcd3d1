"""System metrics: a background thread that logs the machine's and the training process's load into the run.

Every `interval` seconds (10 by default) the owner of a run logs, through the run's own `log_metrics` with
no step, what psutil says of the machine and of this process, and what NVIDIA's NVML says of each GPU:

* `system/cpu_percent` (every core of the machine: 100 = all busy), `system/memory_percent`,
  `system/memory_used_mb` (total minus available);
* `system/process_rss_mb` and `system/process_cpu_percent` (100 = one core) of this process *and its
  descendants*: a DataLoader's or a Pool's workers are the training's memory and CPU too;
* `system/disk_read_mb`, `system/disk_write_mb`, `system/network_sent_mb`, `system/network_recv_mb`: the
  machine's totals *since the sampler started* (cumulative, as MLflow and W&B log them: a chart of them
  rises with the traffic, and a rate is its slope);
* per GPU `i` (NVML's index: every GPU of the machine, whatever CUDA_VISIBLE_DEVICES says):
  `system/gpu<i>/utilization_percent`, `memory_used_mb`, `memory_percent`, `temperature_c`, `power_w`.

MB are mebibytes (2**20 bytes). A value the platform does not report (disk counters in some containers, a
GPU's power on some boards) is left out, not logged as 0. Without an NVIDIA driver (NVML cannot start), or
without the `nvidia-ml-py` bindings (the `gpu` extra), there are no GPU metrics and nothing is said above
debug level. psutil is a dependency of Alexandria; it and pynvml are imported by `start_run` when it starts
the sampler (not by the sampler's thread, which would take the GIL from the training loop meanwhile), never
by `import alexandria`.

The thread is one per run per process, started by `start_run` for the run's owner (never for a handle
attached with `run_id=` unless asked, never in a forked child: threads do not survive fork) and stopped and
joined by `Run.end`, without a last sample: `end()` does not wait for psutil, and a run shorter than the
interval has no system metrics. The logging hot path pays nothing for it: the sampler adds a few points
per interval to the same queue (`python -m benchmarks --only system_metrics` measures it).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any

from . import hooks
from .errors import AlexandriaError, InvalidInputError, RunEndedError

if TYPE_CHECKING:
    from .tracking import Run

ENV = "ALEXANDRIA_SYSTEM_METRICS"
INTERVAL_ENV = "ALEXANDRIA_SYSTEM_METRICS_INTERVAL"
DEFAULT_INTERVAL = 10.0
THREAD_PREFIX = "alexandria-system-metrics"
#: Seconds `Run.end` waits for a sample in progress (an NVML call on a busy driver) before leaving it behind.
STOP_WAIT = 5.0
MB = float(2**20)

_log = logging.getLogger(__name__)
_ON = ("", "1", "true", "on", "yes")
_OFF = ("0", "false", "off", "no", "none")


def wanted(option: bool | None, owner: bool) -> bool:
    """Whether a handle samples: `option` if given; else, for a run's owner, $ALEXANDRIA_SYSTEM_METRICS (on
    unless "0"); an attached handle only when asked (the owner's process samples the machine already)."""
    if option is not None:
        if not isinstance(option, bool):
            raise InvalidInputError(f"system_metrics must be True, False or None, got {option!r}")
        return option
    text = os.environ.get(ENV, "").strip().lower()
    if text in _OFF:
        return False
    if text not in _ON:
        raise InvalidInputError(f"${ENV}={text!r}: say 0 to turn system metrics off, or 1 (the default)")
    return owner


def interval_of(value: float | None) -> float:
    """Seconds between samples: `value`, else $ALEXANDRIA_SYSTEM_METRICS_INTERVAL, else 10."""
    where = f"system_metrics_interval={value!r}"
    if value is None:
        text = os.environ.get(INTERVAL_ENV, "").strip()
        if not text:
            return DEFAULT_INTERVAL
        where = f"${INTERVAL_ENV}={text!r}"
        try:
            value = float(text)
        except ValueError:
            value = math.nan
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise InvalidInputError(f"{where}: the interval between system metric samples must be a positive number")
    return float(value)


_samplers: dict[str, Sampler] = {}  # run id -> the sampler of this process: one per run
# Re-entrant: a SIGTERM handler may end a run (and stop its sampler) while the main thread holds it in start().
_lock = threading.RLock()


def start(run: Run, interval: float) -> Sampler | None:
    """Start sampling into `run` unless this process samples it already, or there is nothing to sample with
    (then None).

    The probes are opened here, on the caller's thread, before `start_run` returns: importing psutil and
    pynvml and starting NVML take some 40 ms of Python holding the GIL, and in the sampler's thread that
    time was taken from the training loop just begun (logging calls of 16-20 ms). The thread then only
    samples, about a millisecond each interval."""
    with _lock:
        if run.id in _samplers:
            return None
    probes = _open_probes(run)  # outside the lock: a signal handler ending a run meanwhile need not wait
    if probes is None:
        return None
    with _lock:
        if run.id in _samplers:  # another thread started one meanwhile
            for probe in probes:
                probe.close()
            return None
        sampler = _samplers[run.id] = Sampler(run, interval)
    sampler.thread = hooks.start_thread(sampler._loop, f"{THREAD_PREFIX}-{run.id[:8]}", probes)
    return sampler


def _open_probes(run: Run) -> list[Any] | None:
    """psutil's probe of the machine and, where NVML starts, the GPUs' (None, said, when psutil is missing or
    fails: the run goes on without system metrics)."""
    try:
        import psutil
    except ImportError:
        _log.warning("alexandria: psutil is not installed: no system metrics (pip install psutil)")
        return None
    try:
        probes: list[Any] = [_Host(psutil)]
        gpus = _Gpus.open()
        if gpus is not None:
            probes.append(gpus)
    except Exception as exc:  # never into the training: say so and stop sampling
        _log.warning("alexandria: system metrics of run %s are off: %r", run.id, exc)
        return None
    return probes


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads: none of its samplers either."""
    global _lock
    _lock = threading.RLock()
    _samplers.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class Sampler:
    """The sampling thread of one run in this process."""

    def __init__(self, run: Run, interval: float) -> None:
        self.run = run
        self.interval = interval
        self.thread: threading.Thread | None = None
        #: Samples logged so far (the benchmark reports it: proof that the sampler ran).
        self.samples = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        """Stop and join the thread (at most STOP_WAIT seconds); no last sample."""
        self._stop.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT)
        with _lock:
            if _samplers.get(self.run.id) is self:
                del _samplers[self.run.id]

    def _loop(self, probes: list[Any]) -> None:
        try:
            self._sample_until_stopped(probes)
        finally:
            for probe in probes:
                probe.close()

    def _sample_until_stopped(self, probes: list[Any]) -> None:
        run = self.run
        while not self._stop.wait(self.interval):
            if run._writer.error is not None:  # the training's logging call raises it; not ours to consume
                continue
            try:
                metrics: dict[str, float] = {}
                for probe in probes:
                    metrics.update(probe.sample())
                if metrics:
                    run.log_metrics(metrics)
                    self.samples += 1
            except RunEndedError:
                return
            except AlexandriaError as exc:  # a write failed: the training's next call says so too
                _log.debug("alexandria: a system metrics sample of run %s was not logged: %s", run.id, exc)
            except Exception as exc:
                _log.warning("alexandria: system metrics of run %s stopped: %r", run.id, exc)
                return


class _Host:
    """psutil's view of the machine and of this process tree."""

    def __init__(self, psutil: Any) -> None:
        self.psutil = psutil
        self.me = psutil.Process()
        self.tree: dict[int, Any] = {}  # pid -> Process: cpu_percent measures since the same object's last call
        psutil.cpu_percent(None)  # primes "since the last call"
        self._processes()
        disk = _counters(psutil.disk_io_counters)
        net = _counters(psutil.net_io_counters)
        self.disk0 = None if disk is None else (disk.read_bytes, disk.write_bytes)
        self.net0 = None if net is None else (net.bytes_sent, net.bytes_recv)

    def _processes(self) -> list[Any]:
        """This process and its descendants, the same Process object for a pid from one sample to the next."""
        psutil = self.psutil
        pids = _descendants(self.me.pid)
        if pids is None:
            try:
                pids = [p.pid for p in self.me.children(recursive=True)]
            except psutil.Error:
                pids = []
        tree = {self.me.pid: self.me}
        for pid in pids:
            known = self.tree.get(pid)
            if known is None:
                try:
                    known = psutil.Process(pid)
                    known.cpu_percent(None)  # primed: its first real figure comes at the next sample
                except psutil.Error:
                    continue
            tree[pid] = known
        self.tree = tree
        return list(tree.values())

    def sample(self) -> dict[str, float]:
        psutil = self.psutil
        vm = psutil.virtual_memory()
        out = {
            "system/cpu_percent": float(psutil.cpu_percent(None)),
            "system/memory_percent": float(vm.percent),
            "system/memory_used_mb": (vm.total - vm.available) / MB,
        }
        rss = cpu = 0.0
        for proc in self._processes():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except psutil.Error:  # a worker that exited meanwhile
                continue
        out["system/process_rss_mb"] = rss / MB
        out["system/process_cpu_percent"] = cpu
        disk = _counters(psutil.disk_io_counters) if self.disk0 is not None else None
        if disk is not None and self.disk0 is not None:
            out["system/disk_read_mb"] = (disk.read_bytes - self.disk0[0]) / MB
            out["system/disk_write_mb"] = (disk.write_bytes - self.disk0[1]) / MB
        net = _counters(psutil.net_io_counters) if self.net0 is not None else None
        if net is not None and self.net0 is not None:
            out["system/network_sent_mb"] = (net.bytes_sent - self.net0[0]) / MB
            out["system/network_recv_mb"] = (net.bytes_recv - self.net0[1]) / MB
        return out

    def close(self) -> None:
        pass


def _counters(read: Any) -> Any:
    """The machine's disk or network counters, or None where it has none to give (some containers raise)."""
    try:
        return read()
    except (OSError, RuntimeError):
        return None


def _descendants(pid: int) -> list[int] | None:
    """The pids below `pid`, from Linux's /proc/<pid>/task/<tid>/children: a few small reads, where psutil's
    `children()` reads the status of every process of the machine (milliseconds on a busy host, every
    sample). None where the kernel has no such files (then psutil's way is used)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            if parent == pid:
                return None
            continue  # exited meanwhile
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if parent == pid:
                    return None  # a kernel without CONFIG_PROC_CHILDREN
                continue
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


class _Gpus:
    """NVML's view of every GPU of the machine; a reading a board does not support is not asked again."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles
        self.unsupported: set[tuple[int, str]] = set()

    @classmethod
    def open(cls) -> _Gpus | None:
        """NVML started with the machine's GPUs, or None (no bindings, no driver, no GPU): said at debug level."""
        try:
            import pynvml
        except ImportError:
            _log.debug("alexandria: no GPU metrics: nvidia-ml-py is not installed (pip install 'alexandria[gpu]')")
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError: no driver, no library (a machine without an NVIDIA GPU)
            _log.debug("alexandria: no GPU metrics: NVML cannot start: %s", exc)
            return None
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as exc:
            _log.debug("alexandria: no GPU metrics: NVML lists no GPU: %s", exc)
            pynvml.nvmlShutdown()
            return None
        if not handles:
            pynvml.nvmlShutdown()
            return None
        return cls(pynvml, handles)

    def _read(self, index: int, name: str, read: Any) -> Any:
        if (index, name) in self.unsupported:
            return None
        try:
            return read()
        except self.nvml.NVMLError as exc:
            self.unsupported.add((index, name))
            _log.debug("alexandria: GPU %d does not report %s: %s", index, name, exc)
            return None

    def sample(self) -> dict[str, float]:
        nvml = self.nvml
        out: dict[str, float] = {}
        for i, handle in enumerate(self.handles):
            prefix = f"system/gpu{i}/"
            util = self._read(i, "utilization", lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h))
            if util is not None:
                out[prefix + "utilization_percent"] = float(util.gpu)
            mem = self._read(i, "memory", lambda h=handle: nvml.nvmlDeviceGetMemoryInfo(h))
            if mem is not None:
                out[prefix + "memory_used_mb"] = mem.used / MB
                if mem.total:
                    out[prefix + "memory_percent"] = 100.0 * mem.used / mem.total
            temp = self._read(
                i, "temperature", lambda h=handle: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
            )
            if temp is not None:
                out[prefix + "temperature_c"] = float(temp)
            power = self._read(i, "power", lambda h=handle: nvml.nvmlDeviceGetPowerUsage(h))
            if power is not None:
                out[prefix + "power_w"] = power / 1000.0  # NVML reports milliwatts
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass
