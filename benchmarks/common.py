"""What every benchmark shares: its `Result` (a rate beside the limit measured in the same run), timing helpers
(`timed`, `best`, `http_median_ms`) and `PEAK_MB`, a child's own peak memory. Its own module so that a
benchmark module can be imported alone (a test reads one) without importing the registry in core.py."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    name: str
    rate: float
    unit: str
    limit: float | None = None
    limit_name: str = ""
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return self.rate / self.limit if self.limit else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def http_median_ms(port: int, path: str, times: int) -> tuple[float, int]:
    """The median time in ms of `times` GETs of `path` from the server on `port`, one kept-alive connection
    (a new one per call: a limit measured in between may outlast the server's keep-alive), after one request
    that warms it (the connection pool, the templates); and the size of the last body. A status other than
    200 fails the benchmark."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        samples, size = [], 0
        for _ in range(times):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            samples.append(time.perf_counter() - t0)
            assert response.status == 200, (path, response.status, body[:200])
            size = len(body)
        return statistics.median(samples) * 1000, size
    finally:
        conn.close()


def best(repeat: int, fn: Callable[[], float]) -> float:
    """Median of `repeat` runs of a rate (the machine is shared: one run is noise)."""
    return statistics.median(fn() for _ in range(repeat))


# Peak memory of the measuring child itself: the kernel's high-water mark of its own address space.
# (ru_maxrss would not do: Linux carries it across exec, so it would include this parent's size.)
PEAK_MB = (
    "def peak_mb():\n"
    "    with open('/proc/self/status') as f:\n"
    "        return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')) / 1024\n"
)


def command_medians_ms(commands: dict[str, list[str]], env: dict[str, str], rounds: int) -> dict[str, float]:
    """Each command's median wall time in ms, as a fresh process: each run once first (bytecode compiled, a
    store folded, as after any first read), then `rounds` rounds in an order rotated each round, so that a slow
    moment of a shared machine falls on each command in turn."""
    for args in commands.values():
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            subprocess.run(commands[name], env=env, check=True, stdout=subprocess.DEVNULL)
            samples[name].append(time.perf_counter() - t)
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}
