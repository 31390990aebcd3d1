"""A run's life: how it ended, or whether anything is still writing it.

Statuses: `running`, then `finished`, `failed` or `killed`, which the run's
owner writes (`run_finished`), or `crashed`, which nobody writes: it is the
verdict on a run that never ended while none of its writers is alive any more
(kill -9, out of memory, power loss). The verdict comes from the log, so the
live projector and `alex rebuild` reach the same one:

* every segment's header names its writer (host, pid, and on Linux the boot
  id and the process's start time, which tell a pid reused by another process
  apart);
* a writer that ends cleanly writes `closed` as its segment's last line;
* a writer with nothing to write for `HEARTBEAT_INTERVAL` seconds writes a
  `heartbeat`, so its segment's last line is never older than that while it
  lives.

A writer is alive when its segment is not closed and: on this host, its
process still exists (same pid, same start time, same boot, not a zombie);
on another host (shared storage), its last line is younger than
`MISSED_HEARTBEATS` heartbeat intervals plus `CLOCK_GRACE` seconds. A run
whose last life event is a start or a resume is `running` while one writer is
alive, `crashed` otherwise. New lines from a writer thought dead (a stopped
process continued) make the run `running` again.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .compaction import read_ends, read_head
from .events import DECODE_ERRORS, Header, RunFinished, RunStarted, SegmentClosed, WriterInfo, decoder
from .store import Store

#: Seconds of silence after which a writer writes a heartbeat; $ALEXANDRIA_HEARTBEAT_INTERVAL.
HEARTBEAT_INTERVAL = float(os.environ.get("ALEXANDRIA_HEARTBEAT_INTERVAL", "30"))
#: A writer on another host is taken for dead after this many missed heartbeats ...
MISSED_HEARTBEATS = 3
#: ... plus this many seconds, for clocks of different hosts that disagree a little.
CLOCK_GRACE = 30.0

ENDED = ("finished", "failed", "killed")


@functools.cache
def boot_id() -> str:
    """The kernel's id of this boot (Linux), "" elsewhere."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> int | None:
    """Start time of a live process in clock ticks since boot (Linux); None when it is gone or a zombie,
    0 when this system cannot tell (not Linux) but the pid exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        stat = b""
    if stat:
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state is field 3 of stat(5)
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


def this_writer() -> WriterInfo:
    """The WriterInfo of the calling process (for a segment header)."""
    import sys

    from . import __version__

    pid = os.getpid()
    return WriterInfo(
        host=socket.gethostname(),
        pid=pid,
        ppid=os.getppid(),
        python=sys.version.split()[0],
        alexandria=__version__,
        boot_id=boot_id(),
        started=process_start(pid) or 0,
        heartbeat=HEARTBEAT_INTERVAL,
    )


def writer_alive(writer: WriterInfo | None, last_time: float, closed: bool, now: float) -> bool:
    """Whether the writer of a segment may still write to it (see the module docstring)."""
    if closed:
        return False
    if writer is None:  # no readable header: only the clock can tell
        return now - last_time <= MISSED_HEARTBEATS * HEARTBEAT_INTERVAL + CLOCK_GRACE
    if writer.host == socket.gethostname():
        if writer.boot_id and boot_id() and writer.boot_id != boot_id():
            return False  # the machine rebooted since
        started = process_start(writer.pid)
        if started is None:
            return False
        return not (writer.started and started and started != writer.started)  # else: the pid was reused
    interval = writer.heartbeat or HEARTBEAT_INTERVAL
    return now - last_time <= MISSED_HEARTBEATS * interval + CLOCK_GRACE


@dataclass
class SegmentTail:
    """What the first and last lines of one segment say."""

    header: Header | None
    last_time: float
    closed: bool
    finished: RunFinished | None  # among the last lines: the owner's end, just before `closed`


def read_tail(path: Path, window: int = 1 << 16) -> SegmentTail:
    """Read a segment's header and its last complete lines, not the whole file."""
    head, tail = read_ends(path, window)  # plain or compacted; a link in a segment's place is never followed
    header = None
    try:
        event = decoder.decode(head)
        header = event if isinstance(event, Header) else None
    except DECODE_ERRORS:
        pass
    lines = tail[: tail.rfind(b"\n") + 1].split(b"\n")
    last_time = header.time if header else 0.0
    closed = False
    finished = None
    for line in lines[-3:]:
        try:
            event = decoder.decode(line)
        except DECODE_ERRORS:
            continue
        last_time = max(last_time, event.time)
        closed = isinstance(event, SegmentClosed)
        if isinstance(event, RunFinished):
            finished = event
    return SegmentTail(header, last_time, closed, finished)


@dataclass
class RunState:
    """A run's state read straight from its log (no database needed)."""

    status: str  # running, finished, failed, killed, crashed
    attempt: int  # 0 before any resume


def run_state(store: Store, run_id: str, now: float | None = None) -> RunState:
    """Read the run's life from the tails of its segments.

    The newest life is the highest `attempt` among segment headers; it ended
    when one of its segments ends with `run_finished`; otherwise it is
    running while a writer (of any life) is alive, else crashed.
    """
    now = time.time() if now is None else now
    tails = [t for t in map(read_tail, store.run_segments(run_id)) if not (t.header and t.header.annotation)]
    attempt = max((t.header.attempt for t in tails if t.header), default=0)
    ends = [t.finished for t in tails if t.finished and (t.header.attempt if t.header else 0) == attempt]
    if ends:
        return RunState(max(ends, key=lambda e: (e.time, e.status)).status, attempt)
    alive = any(writer_alive(t.header.writer if t.header else None, t.last_time, t.closed, now) for t in tails)
    return RunState("running" if alive else "crashed", attempt)


def has_started(store: Store, run_id: str) -> bool:
    """Whether the run's start is written: the creator writes `run_started` first in its segment, straight
    after the header, before `start_run` returns. A rank that joined a distributed job's run before its
    rank 0 created it has a segment there without one."""
    for path in store.run_segments(run_id):
        line = read_head(path, 2)[-1]  # plain or compacted; a link in a segment's place is never followed
        try:
            if isinstance(decoder.decode(line), RunStarted):
                return True
        except DECODE_ERRORS:
            continue
    return False
