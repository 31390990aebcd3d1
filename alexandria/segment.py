"""Segment files: one append-only JSON-lines file per writing process and run.

Writing: `SegmentWriter` takes events from the logging calls through a deque
(no I/O on the caller's thread) and a background thread encodes and appends
them in batches. Each process owns its own segment, created with O_EXCL, so
processes never share a file offset and nothing interleaves; O_APPEND
atomicity is never relied on, which keeps network filesystems safe.

Reading: `SegmentReader` yields complete lines only. A last line without its
newline is "not written yet": it is left for a later read (TensorBoard's rule).
A complete line that does not decode is corruption: it is reported with the
file and byte offset, skipped, and reading goes on; except a line holding NUL
bytes in a segment modified less than `ZERO_WAIT` seconds ago, which is "not
written yet" too (network filesystems show unarrived bytes as zeros).

No per-line checksum: the failure the log must survive is a process dying
mid-write, which newline framing plus strict JSON decoding detects; a CRC would
cost every event on the hot path to catch bit rot the filesystem and disk
already check. Power loss can leave zero-filled blocks: those fail to decode
and are reported as corruption like any other garbage.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from .compaction import read_range
from .errors import CorruptSegmentError, UnsafePathError, WriterError
from .events import (
    DECODE_ERRORS,
    EVENT_TYPES,
    FORMAT_VERSION,
    MAX_NESTING,
    DatasetLogged,
    Event,
    Header,
    Heartbeat,
    SegmentClosed,
    decoder,
    encoder,
    too_deep,
)
from .files import write_atomically
from .hooks import critical, start_thread
from .life import HEARTBEAT_INTERVAL, this_writer
from .store import SEGMENT_SUFFIX, make_dirs, open_stored_segment

#: How often the background writer appends what was logged (seconds); $ALEXANDRIA_FLUSH_INTERVAL.
FLUSH_INTERVAL = float(os.environ.get("ALEXANDRIA_FLUSH_INTERVAL", "0.2"))
#: Seconds a segment must have been quiet before a line holding NUL bytes counts as corrupt. On a network
#: filesystem another node can see a file longer than the bytes that have arrived, the gap reading as
#: zeros: until then such a line is "not written yet" (read again later), as a last partial line is.
#: Zeros that stay (a power loss) are reported as corruption once the file has been quiet this long.
ZERO_WAIT = 60.0
#: Queued events the logging call that finds them drains itself: ~1 ms of encoding and one write of ~250 KB
#: (a drain costs ~0.2 us an event), in one call of 5,000, too rare to reach the p99.9 latency (2,000 did:
#: 14 us against 3 us).
BATCH_SIZE = 5_000
#: Queued events at which a logging call stops to write them itself (backpressure: memory stays bounded).
MAX_PENDING = 100_000


class _Wake:
    """An Event whose set() may be re-entered from a signal handler on the same thread (RLock).

    set() on the main thread is a critical section: a SIGTERM handled while it holds the lock would end the
    runs there, and `close()` would join a writer thread that needs that very lock to leave its wait().
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._flag = False

    def set(self) -> None:
        with critical(), self._cond:
            self._flag = True
            self._cond.notify()

    def wait(self, timeout: float) -> bool:
        with self._cond:
            if not self._flag:
                self._cond.wait(timeout)
            flag, self._flag = self._flag, False
            return flag


_ENCODE_ERRORS = (msgspec.EncodeError, TypeError, ValueError, OverflowError, UnicodeEncodeError)

_O_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def _safe_host() -> str:
    host = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in host)[:64]


def new_segment_name() -> str:
    """A name no other writer can take: creation time, host, pid and random bits (sorts by creation)."""
    return f"{time.time_ns():020d}-{_safe_host()}-{os.getpid()}-{secrets.token_hex(4)}{SEGMENT_SUFFIX}"


def write_annotation(run_dir: Path, run_id: str, events: list[Any]) -> Path:
    """Append edits made after the fact to a run as a whole segment of their own: a header saying so
    (`Header.annotation`), the events, and its close, written to a hidden name and renamed into place, so a
    projector sees all of it or none. It is no life of the run: its status, times and attempt stay."""
    make_dirs(run_dir)  # a link in the run folder's place is refused, never written through
    header = Header(time=time.time(), format=FORMAT_VERSION, run_id=run_id, writer=this_writer(), annotation=True)
    lines = encoder.encode_lines([header, *events, SegmentClosed(time=time.time())])
    path = run_dir / new_segment_name()
    write_atomically(path, lines)
    return path


class SegmentWriter:
    """Buffers one process's events for one run and appends them to its own segment.

    `queue` is the hot path: callers append event Structs (a metric's value
    already JSON-safe, `values.encode_float`). The logging call that finds
    `BATCH_SIZE` events waiting drains them itself, unless a drain is under way;
    a background thread writes what waits once `flush_interval` seconds have
    passed without a write (and writes the heartbeat), so no event waits longer
    for the disk and the thread stays out of a fast caller's way. At
    `MAX_PENDING` the logging call always drains.

    Why the caller drains: a writer thread woken per batch fought the training
    thread for the GIL, and the hand-off cost more than the encoding (736 ns a
    point in a loop against 424 ns for the two halves done in turn). Drained
    inline, one call in `BATCH_SIZE` takes a few milliseconds of encoding and
    one write, and the others pay only the append.
    """

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        *,
        attempt: int = 0,
        rank: int | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        self.attempt = attempt
        self.rank = rank
        self.flush_interval = flush_interval
        self.heartbeat_interval = heartbeat_interval
        self._last_write = 0.0  # monotonic time of the last append
        self.queue: deque[Any] = deque()
        self.path: Path | None = None
        #: A failure of a write nobody was waiting for, raised by the next logging call.
        self.error: BaseException | None = None
        self._fd: int | None = None
        self._out = bytearray()  # encoded, not yet written (kept across a failed write: nothing is lost)
        self._lock = threading.Lock()  # one drain at a time keeps lines in order
        self._wake = _Wake()
        self._write_failed = False  # the last write failed: logging calls leave retrying to the timer
        self._stopping = False
        self._closed = False
        self._thread = start_thread(self._loop, f"alexandria-writer-{run_id[:8]}")

    # -- caller side ---------------------------------------------------------
    def put(self, event: Any) -> None:
        """Queue one event (any thread)."""
        self.queue.append(event)
        self.kick()

    def kick(self) -> None:
        """Called after appends: drain a full batch, or apply backpressure.

        A failed drain does not raise here: the event just queued stays
        queued, and the next logging call raises (before queueing its own),
        so a call that raises never logged its event. After a failed write
        only the thread's timer (and backpressure) tries again, so a full disk
        costs the training loop one error, not a write attempt every call.
        """
        n = len(self.queue)
        if n >= MAX_PENDING or (n >= BATCH_SIZE and not self._write_failed and not self._lock.locked()):
            try:
                self.drain()
            except WriterError as exc:
                self._write_failed = True
                self.error = exc

    def raise_error(self) -> None:
        """Raise the failure a write met. It is raised once, unless the queue is full: then every call
        raises (and logs nothing) until a write succeeds again, so memory stays bounded."""
        err = self.error
        if err is None:
            return
        if len(self.queue) < MAX_PENDING:
            self.error = None
        if isinstance(err, WriterError):
            raise err
        raise WriterError(f"writing the event log {self.path or self.run_dir} failed: {err}") from err

    def drain(self) -> None:
        """Encode and append everything queued so far; raise WriterError on failure (nothing is lost)."""
        with critical():
            try:
                with self._lock:
                    self._write_out()  # what a failed write left, first
                    bad = None
                    remaining = len(self.queue)  # not more: callers logging meanwhile must not keep us here
                    while remaining > 0:  # in chunks: memory holds one chunk's event objects at a time
                        take = min(remaining, BATCH_SIZE)
                        bad = self._encode_queued(take) or bad
                        remaining -= take
                    self._write_out()  # one write: each GIL release here lets the training loop preempt us
            except OSError as exc:
                raise WriterError(
                    f"cannot append to event log {self.path or self.run_dir}: {exc.strerror or exc}; "
                    "the events are kept in memory and written on the next flush"
                ) from exc
            if bad is not None:
                raise WriterError(f"an event could not be encoded and was dropped: {bad!r}")

    def close(self, *, sync: bool = True) -> None:
        """Stop the thread, write everything and `closed`, fsync and close. On failure nothing is closed:
        call again."""
        if self._closed:
            return
        if not self._stopping and (self._fd is not None or self.queue):
            self.queue.append(SegmentClosed(time=time.time()))  # once: a retried close finds _stopping set
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.drain()
        with self._lock:
            if self._fd is not None:
                if sync:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
        self._closed = True

    def abandon(self) -> None:
        """In a forked child: drop the parent's file and queue without touching the parent's thread or locks."""
        self._stopping = self._closed = True
        if self._fd is not None:
            try:
                os.close(self._fd)  # the child's copy only; the parent's stays open
            except OSError:
                pass
            self._fd = None
        self.queue = deque()
        self._out = bytearray()

    # -- background side -----------------------------------------------------
    def _loop(self) -> None:
        timeout = self.flush_interval
        while not self._stopping:
            self._wake.wait(timeout)
            if self._stopping:
                return
            quiet = time.monotonic() - self._last_write
            if quiet < self.flush_interval:  # a logging call wrote lately: wait for the rest of the interval
                timeout = self.flush_interval - quiet  # (no GIL to fight for while a fast caller writes its own)
                continue
            timeout = self.flush_interval
            try:
                if self._fd is not None and time.monotonic() - self._last_write >= self.heartbeat_interval:
                    self.queue.append(Heartbeat(time=time.time()))  # nothing written for a while: still alive
                self.drain()
            except BaseException as exc:  # handed to the caller's next call, never swallowed
                self._write_failed = True
                self.error = exc
                time.sleep(self.flush_interval)

    def _open(self) -> None:
        make_dirs(self.run_dir)  # a link in the run folder's place is refused, never written through
        path = self.run_dir / new_segment_name()
        self._fd = os.open(path, _O_FLAGS, 0o644)
        self.path = path
        writer = this_writer()
        writer.heartbeat = self.heartbeat_interval
        header = Header(
            time=time.time(),
            format=FORMAT_VERSION,
            run_id=self.run_id,
            writer=writer,
            attempt=self.attempt,
            rank=self.rank,
        )
        self._out[0:0] = encoder.encode(header) + b"\n"

    def _encode_queued(self, n: int) -> Exception | None:
        """Move `n` queued events into the output buffer; returns the error of an event that could not be encoded.

        The fast path builds the batch's Structs in one comprehension and encodes them with a single
        `encode_lines` call; a batch holding an event that does not encode goes line by line instead,
        so only that event is dropped and no partial line is ever written.
        """
        if self._fd is None:
            self._open()
        pop = self.queue.popleft
        items = [pop() for _ in range(n)]
        try:
            self._out += encoder.encode_lines(items)
            return None
        except _ENCODE_ERRORS:
            return self._encode_each(items)

    def _encode_each(self, items: list[Any]) -> Exception | None:
        out = self._out
        bad = None
        for item in items:
            mark = len(out)
            try:
                encoder.encode_into(item, out, -1)
            except _ENCODE_ERRORS as exc:
                del out[mark:]
                bad = exc
                continue
            out.append(10)
        return bad

    def _write_out(self) -> None:
        out = self._out
        if not out or self._fd is None:
            return
        view = memoryview(out)
        written = 0
        try:
            while written < len(out):
                written += os.write(self._fd, view[written:])
            self._last_write = time.monotonic()
            self._write_failed = False
        finally:
            view.release()
            del out[:written]


@dataclass
class Problem:
    """Something in a segment that could not be projected."""

    segment: Path
    offset: int
    kind: str  # "corrupt", "unknown_event", "bad_header", "refused" (not a regular file: never read)
    detail: str


@dataclass
class SegmentReader:
    """Reads a segment from `offset` on, complete lines only, resumable."""

    path: Path
    offset: int = 0
    header: Header | None = None
    problems: list[Problem] = field(default_factory=list)
    #: The path is not a segment (a link, a FIFO, ...: `store.open_segment`): nothing was read, one problem says why.
    refused: bool = False

    def read(self, max_bytes: int = 64 << 20) -> list[Event]:
        """Events of the complete lines written since the last read (at most about `max_bytes`)."""
        try:
            fd, real = open_stored_segment(self.path)
        except UnsafePathError as exc:
            self.refused = True
            self.problems.append(Problem(self.path, self.offset, "refused", str(exc)))
            return []
        if real != self.path:
            return self._read_compacted(fd, real, max_bytes)
        with open(fd, "rb") as f:
            fresh = time.time() - os.fstat(f.fileno()).st_mtime < ZERO_WAIT
            f.seek(self.offset)
            data = f.read(max_bytes)
            while data and b"\n" not in data:  # one line longer than max_bytes: read on to its end
                more = f.read(max_bytes)
                if not more:
                    break
                data += more
        return self._take(data, fresh)

    def _read_compacted(self, fd: int, real: Path, max_bytes: int) -> list[Event]:
        """Read a compacted segment (compaction.py): the same lines at the same offsets. Its bytes are all
        there (it was closed and checked), so damage is corruption, never "not written yet": the lines before
        it are read, one problem names the file and the offset in its lines, and the segment counts as read."""
        with open(fd, "rb") as f:
            try:
                data = read_range(f.fileno(), real, self.offset, max_bytes)
            except CorruptSegmentError as exc:
                events = self._take(exc.data[: exc.data.rfind(b"\n") + 1])
                self.problems.append(Problem(real, exc.offset, "corrupt", str(exc)))
                self.offset = max(self.offset, exc.end, 1)  # a damaged header: its size counts 1
                return events
        return self._take(data)

    def _take(self, data: bytes, fresh: bool = False) -> list[Event]:
        """The events of the complete lines of `data`, read at `self.offset`, which moves past them."""
        end = data.rfind(b"\n") + 1
        if end == 0:
            return []  # nothing, or a partial line: not written yet
        chunk = data[:end]
        base = self.offset
        self.offset += end
        if base == 0:
            first = chunk.index(b"\n") + 1
            self._read_header(chunk[:first])
            chunk, base = chunk[first:], first
            if not chunk:
                return []
        try:
            events = decoder.decode_lines(chunk)
        except DECODE_ERRORS:
            return self._decode_each(chunk, base, fresh)
        types = set(map(type, events))  # checked at C speed; both are rare: a header mid-segment, a schema too deep
        if Header in types or (DatasetLogged in types and any(too_deep(e) for e in events if type(e) is DatasetLogged)):
            return self._decode_each(chunk, base, fresh)
        return events

    def _read_header(self, line: bytes) -> None:
        try:
            event = decoder.decode(line)
        except DECODE_ERRORS as exc:
            self.problems.append(Problem(self.path, 0, "bad_header", f"first line is not a segment header: {exc}"))
            return
        if type(event) is not Header:
            self.problems.append(Problem(self.path, 0, "bad_header", "first line is not a segment header"))
            return
        self.header = event

    def _decode_each(self, chunk: bytes, base: int, fresh: bool = False) -> list[Event]:
        events: list[Event] = []
        pos = 0
        while pos < len(chunk):
            nl = chunk.index(b"\n", pos)
            line = chunk[pos:nl]
            offset = base + pos
            pos = nl + 1
            if not line.strip():
                continue  # blank: skipped, as decode_lines does
            try:
                event = decoder.decode(line)
            except DECODE_ERRORS as exc:
                if fresh and b"\0" in line:  # zeros in a file still being written: bytes not arrived yet
                    self.offset = offset
                    return events
                self.problems.append(self._classify(line, offset, exc))
                continue
            if type(event) is Header:
                self.problems.append(Problem(self.path, offset, "corrupt", "segment header in the middle of a segment"))
                continue
            if type(event) is DatasetLogged and too_deep(event):
                self.problems.append(
                    Problem(self.path, offset, "corrupt", f"dataset schema nested deeper than {MAX_NESTING}")
                )
                continue
            events.append(event)
        return events

    def _classify(self, line: bytes, offset: int, exc: Exception) -> Problem:
        try:
            raw = msgspec.json.decode(line)
        except DECODE_ERRORS:
            raw = None
        if isinstance(raw, dict) and isinstance(raw.get("event"), str) and raw["event"] not in EVENT_TYPES:
            return Problem(self.path, offset, "unknown_event", f"event type {raw['event']!r} is newer than this reader")
        preview = line[:60].decode("utf-8", "replace")
        return Problem(self.path, offset, "corrupt", f"{exc}: {preview!r}")
