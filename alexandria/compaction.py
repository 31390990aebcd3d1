"""Compaction: closed segments compressed at rest, read back transparently.

Why: a metric point costs ~100 bytes of JSON line; a closed segment never changes again, so it can be kept
as gzip (zlib level 6: ~15 bytes a point, decompressed at ~250 MB/s; docs/log-format.md, "Compacted
segments", has the figures and the choice). A segment keeps its name and its identity: `<name>.jsonl`
compacted is `<name>.jsonl.gz`, still listed, keyed and positioned as `<name>.jsonl` (a position counts
bytes of its lines, compressed or not), and `zcat` shows its lines.

The file is standard gzip, one member per `CHUNK` of whole lines; the first member's header has an extra
field (subfield "AX") holding what a reader needs without inflating it: the size and SHA-256 of the lines, and
the segment's last lines (`life.read_tail`). Why members: deflate turns a flipped byte into garbage from there
on, and its check comes at the member's end; the reader hands out a member's lines only once its CRC-32 has
checked, so damage never becomes lines (as one member, one in five random 8-byte flips gave lines that decode
as events never logged). A file of the first layout (one member) is read only once it has inflated whole to its hash.

Only a segment whose last line is `closed` is compacted (a killed writer's segment stays as it is), once it
has been quiet `ZERO_WAIT` seconds. Crash-safe, in this order: the copy is written beside under a hidden
name (`.<name>.jsonl.gz.<pid>.<hex>.part`, locked while written), fsynced, read back whole and compared
with the original (size and SHA-256), renamed into place, the folder fsynced, and only then the original
unlinked and the folder fsynced again. Killed anywhere, the plain file is still there until the very last
step, and while both are there the plain one is read (`store.open_stored_segment`): a reader, the projector
and a rebuild see the same lines all along. A later compaction finishes the job and removes stale parts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import stat
import struct
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CorruptSegmentError, UnsafePathError
from .events import DECODE_ERRORS, SegmentClosed, decoder
from .files import fsync_directory
from .store import COMPRESSED_SUFFIX, REFUSED_SIZE, SEGMENT_SUFFIX, Store, compressed_path, open_segment, refuse_links

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger("alexandria.compaction")

#: zlib's level: 6 is its default and the knee of the curve (docs/log-format.md, "Compacted segments").
LEVEL = 6
#: Segments smaller than this stay plain: gzip's framing would save nothing on a few lines (an edit's segment).
MIN_SIZE = 4096
#: Seconds a closed segment must have been quiet before it is compacted (segment.ZERO_WAIT's reason: on a
#: network filesystem, bytes of it may not have arrived here yet).
MIN_AGE = 60.0
#: Bytes read from a file at a time.
CHUNK = 1 << 20
#: The segment's last lines kept in the header, at most this many bytes (else none: `read_tail` inflates).
TAIL_BYTES = 16 << 10
PART_SUFFIX = ".part"

_MAGIC = b"\x1f\x8b\x08\x04"  # gzip, deflate, FEXTRA set
_SUBFIELD = b"AX"
_VERSION = 2  # 1: the whole file one member (still read: `_Stream`)
_MEMBER_HEAD = b"\x1f\x8b\x08\x00\0\0\0\0\0\xff"  # a later member's header: gzip, deflate, no flags, no time
_FIXED = struct.Struct("<BQ32s")  # version, size of the lines, their SHA-256
_HEAD = 12  # magic(4) mtime(4) xfl(1) os(1) xlen(2)


@dataclass(frozen=True)
class Info:
    """What a compacted segment's gzip header says of its lines."""

    size: int
    sha256: bytes
    tail: bytes
    data_start: int  # where the deflate data begins
    version: int


def _header(size: int, digest: bytes, tail: bytes) -> bytes:
    payload = _FIXED.pack(_VERSION, size, digest) + tail
    sub = _SUBFIELD + struct.pack("<H", len(payload)) + payload
    return _MAGIC + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", len(sub)) + sub


def read_info(fd: int) -> Info:
    """The header of the compacted segment open as `fd`; CorruptSegmentError if it is none."""
    head = os.pread(fd, _HEAD, 0)
    if len(head) < _HEAD or head[:4] != _MAGIC:
        raise CorruptSegmentError("not a compacted segment: its gzip header is missing or damaged")
    (xlen,) = struct.unpack("<H", head[10:12])
    extra = os.pread(fd, xlen, _HEAD)
    if len(extra) < xlen or extra[:2] != _SUBFIELD or xlen < 4 + _FIXED.size:
        raise CorruptSegmentError("not a compacted segment: its gzip header has no size and hash of its lines")
    (plen,) = struct.unpack("<H", extra[2:4])
    version, size, digest = _FIXED.unpack_from(extra, 4)
    if version not in (1, _VERSION) or plen != xlen - 4:
        raise CorruptSegmentError(f"compacted segment of an unknown layout (version {version})")
    return Info(size, digest, extra[4 + _FIXED.size : 4 + plen], _HEAD + xlen, version)


_SIZES: dict[tuple[str, int, int, int, int], int] = {}


def segment_size(path: Path) -> int | None:
    """The size of the lines of the segment known as `path` (plain: its file's size; compacted: its header's,
    remembered per version of the file), None if it is gone. A compacted file whose header does not read
    counts `REFUSED_SIZE`, so that a fold reads it once, into its problem."""
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        pass
    packed = compressed_path(path)
    try:
        st = os.lstat(packed)
    except FileNotFoundError:
        return None
    key = (str(packed), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    size = _SIZES.get(key)
    if size is None:
        try:
            fd = open_segment(packed)
        except (OSError, UnsafePathError):
            return REFUSED_SIZE
        try:
            size = read_info(fd).size
        except CorruptSegmentError:
            size = REFUSED_SIZE
        finally:
            os.close(fd)
        if len(_SIZES) > 4096:
            _SIZES.clear()
        _SIZES[key] = size
    return size


# -- reading --------------------------------------------------------------------------------------------------
class _Stream:
    """Inflating one compacted file from its start: `pos` is the offset in its lines of `buf`'s first byte.

    A member's bytes are handed out once zlib has checked its CRC-32 and length (its end), never before: so the
    lines read before a damage are exactly the whole members before the damaged one. A file of the first layout
    is one member as big as the segment: it is inflated whole to its header's hash first (`_whole`), then read.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.path = path
        self.info = read_info(fd)
        self.inflate = zlib.decompressobj(31)  # gzip framing: zlib checks each member's CRC-32 and length
        self.input = b""  # compressed bytes read and not inflated yet
        self.cpos = 0  # the whole file goes through zlib, its header too
        self.pos = 0  # where `buf` begins in the lines
        self.buf = b""
        self.member: list[bytes] = []  # the current member's inflated bytes, not checked yet
        self.total = 0  # bytes of lines handed out so far
        self.done = False
        self.untrusted = self.info.version == 1 and not _whole(fd, path, self.info)

    def pull(self, fd: int) -> bytes:
        """The next inflated bytes (b"" at the end); CorruptSegmentError if the file is cut short or damaged."""
        if self.untrusted:
            raise self.damage(
                "its lines do not inflate to the hash in its header, and a file of this first layout"
                " (one gzip member) cannot tell where the damage begins: none of it is read"
            )
        d = self.inflate
        while not self.done:
            try:
                if not self.input:
                    self.input = os.pread(fd, CHUNK, self.cpos)
                    if not self.input:
                        raise self.damage("the file is cut short (a closed segment is whole: it was truncated)")
                    self.cpos += len(self.input)
                out = d.decompress(self.input, CHUNK)
            except zlib.error as exc:
                raise self.damage(f"the compressed data is damaged ({exc})") from None
            self.input = d.unused_data if d.eof else d.unconsumed_tail
            if self.info.version == 1 and not d.eof:
                if out:  # checked whole already: handed out as it inflates
                    self.total += len(out)
                    return out
                continue
            self.member.append(out)
            if not d.eof:
                continue
            member, self.member = b"".join(self.member), []
            end = self.total + len(member)
            if end < self.info.size and self.info.version != 1:
                self.inflate = d = zlib.decompressobj(31)  # the next member
            else:
                self.done = True
                if self.input or os.pread(fd, 1, self.cpos):
                    raise self.damage("bytes follow the end of the compressed data", member)
                if end != self.info.size:
                    raise self.damage(f"its lines are {end} bytes, its header says {self.info.size}", member)
            if member:
                self.total += len(member)
                return member
        return b""

    def damage(self, why: str, more: bytes = b"") -> CorruptSegmentError:
        self.done = True
        offset = self.total + len(more)
        return CorruptSegmentError(
            f"compacted segment {self.path} is damaged at byte {offset} of its lines: {why}",
            data=more,
            offset=offset,
            end=max(self.info.size, offset + 1),
        )


_WHOLE: dict[tuple[str, int, int, int, int], bool] = {}


def _whole(fd: int, path: Path, info: Info) -> bool:
    """Whether a file of the first layout inflates to exactly its header's size and SHA-256, with nothing after
    (remembered per version of the file: a fold reads it a transaction at a time)."""
    import hashlib

    st = os.fstat(fd)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _WHOLE:
        d, digest, size, cpos = zlib.decompressobj(31), hashlib.sha256(), 0, 0
        try:
            while not d.eof and (data := os.pread(fd, CHUNK, cpos)):
                cpos += len(data)
                while data and not d.eof:
                    out = d.decompress(data, CHUNK)
                    digest.update(out)
                    size += len(out)
                    data = d.unconsumed_tail
            ok = d.eof and not d.unused_data and not os.pread(fd, 1, cpos)
            ok = ok and size == info.size and digest.digest() == info.sha256
        except zlib.error:
            ok = False
        if len(_WHOLE) > 4096:
            _WHOLE.clear()
        _WHOLE[key] = ok
    return _WHOLE[key]


_STREAMS: OrderedDict[tuple[Any, ...], _Stream] = OrderedDict()
_STREAMS_LOCK = threading.Lock()
#: Streams kept between reads: a fold reads a long segment a transaction at a time, each from where the last
#: stopped, so each transaction inflates only its own bytes.
_KEPT = 4


def read_range(fd: int, path: Path, offset: int, max_bytes: int) -> bytes:
    """The lines of the compacted segment open as `fd` from `offset` on: about `max_bytes`, then on to the
    end of a line. CorruptSegmentError (its `data`: the bytes from `offset` that did read) if damaged."""
    st = os.fstat(fd)
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _STREAMS_LOCK:
        stream = _STREAMS.pop(key, None)
    if stream is None or stream.pos > offset:
        stream = _Stream(fd, path)
    start, hand = stream.pos, [stream.buf]  # inflated bytes in hand, from `start` on
    length = len(stream.buf)
    try:
        while not stream.done and (start + length < offset + max_bytes or b"\n" not in hand[-1]):
            more = stream.pull(fd)
            hand.append(more)
            length += len(more)
            if start + length <= offset:  # all before `offset`: dropped
                start, hand, length = start + length, [b""], 0
    except CorruptSegmentError as exc:
        exc.data = (b"".join(hand) + exc.data)[max(0, offset - start) :]
        raise
    data = b"".join(hand)[offset - start :]
    cut = len(data) if stream.done else data.rfind(b"\n") + 1
    stream.pos, stream.buf = offset + cut, data[cut:]
    with _STREAMS_LOCK:
        _STREAMS[key] = stream
        while len(_STREAMS) > _KEPT:
            _STREAMS.popitem(last=False)
    return data[:cut]


def inflate_all(fd: int, path: Path) -> tuple[int, bytes]:
    """(size, SHA-256) of every line of the compacted segment open as `fd`, read through the same inflating
    reader as a fold; CorruptSegmentError if it does not read whole."""
    import hashlib

    stream = _Stream(fd, path)
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.pull(fd):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.digest()


def read_ends(path: Path, window: int) -> tuple[bytes, bytes]:
    """The first line and (about) the last `window` bytes of the segment known as `path`, plain or compacted:
    what `life.read_tail` reads. Of a compacted one, the tail comes from its header."""
    from .store import open_stored_segment

    fd, real = open_stored_segment(path)
    with open(fd, "rb") as f:
        if real == path:
            head = f.readline()
            size = f.seek(0, os.SEEK_END)
            f.seek(max(len(head), size - window))
            return head, f.read()
        try:
            head = read_range(fd, real, 0, 1).split(b"\n", 1)[0] + b"\n"
            tail = read_info(fd).tail
            if not tail:
                tail = _inflated_tail(fd, real, window)
        except CorruptSegmentError:
            return b"", b""
        return head, tail


def read_head(path: Path, lines: int) -> list[bytes]:
    """The first `lines` lines of the segment known as `path`, plain or compacted."""
    from .store import open_stored_segment

    fd, real = open_stored_segment(path)
    with open(fd, "rb") as f:
        if real == path:
            return [f.readline() for _ in range(lines)]
        try:
            data = read_range(fd, real, 0, 1 << 16)
        except CorruptSegmentError as exc:
            data = exc.data
        return [line + b"\n" for line in data.split(b"\n")[:lines]]


def _inflated_tail(fd: int, path: Path, window: int) -> bytes:
    stream = _Stream(fd, path)
    tail = b""
    while chunk := stream.pull(fd):
        tail = (tail + chunk)[-window:]
    return tail


# -- compacting -----------------------------------------------------------------------------------------------
@dataclass
class CompactionReport:
    """What a compaction did: segments compacted, their bytes before and after, and what was left and why."""

    compacted: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    finished: int = 0  # compactions a killed one had left half done, finished now
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (segment, why), for segments worth telling


def _last_line(fd: int, size: int) -> bytes:
    start = max(0, size - TAIL_BYTES)
    data = os.pread(fd, size - start, start)
    if not data.endswith(b"\n"):
        return b""
    return data[:-1].rsplit(b"\n", 1)[-1]


def _tail_lines(fd: int, size: int) -> bytes:
    """The segment's last 3 lines, for the header (life.read_tail reads as many), or b"" if longer than TAIL_BYTES."""
    start = max(0, size - TAIL_BYTES)
    data = os.pread(fd, size - start, start)
    lines = data[:-1].split(b"\n")
    if start > 0 and len(lines) <= 3:
        return b""
    return b"\n".join(lines[-3:]) + b"\n"


def is_closed(fd: int, size: int) -> bool:
    """Whether the segment open as `fd` ends with its writer's `closed` line."""
    try:
        return type(decoder.decode(_last_line(fd, size))) is SegmentClosed
    except DECODE_ERRORS:
        return False


def _remove_stale_parts(run_dir: Path, name: str) -> None:
    """Remove parts a killed compaction of `name` left (a live one holds its part's lock: left alone)."""
    prefix = f".{name}.gz."
    try:
        names = [n for n in os.listdir(run_dir) if n.startswith(prefix) and n.endswith(PART_SUFFIX)]
    except FileNotFoundError:
        return
    for part in names:
        try:
            fd = os.open(run_dir / part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # gone meanwhile, or a link: never followed (a link is nothing compaction made)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a compaction is writing it now
            os.unlink(run_dir / part)
        finally:
            os.close(fd)


def _verified(fd: int, path: Path, size: int, digest: bytes) -> bool:
    """Whether the compacted file open as `fd` holds exactly `size` bytes of lines hashing to `digest`."""
    try:
        info = read_info(fd)
        return info.size == size and info.sha256 == digest and inflate_all(fd, path) == (size, digest)
    except CorruptSegmentError as exc:
        log.warning("%s", exc)
        return False


def _hash_plain(fd: int, size: int) -> bytes:
    import hashlib

    digest = hashlib.sha256()
    pos = 0
    while pos < size:
        chunk = os.pread(fd, min(CHUNK, size - pos), pos)
        if not chunk:
            break
        digest.update(chunk)
        pos += len(chunk)
    return digest.digest()


def compact_segment(path: Path, *, min_age: float = MIN_AGE, now: float | None = None) -> tuple[str, int, int]:
    """Compact one segment (`<name>.jsonl`) if it is closed, quiet `min_age` seconds and at least `MIN_SIZE`
    bytes; returns (what happened, bytes before, bytes after): "compacted", "finished" (a killed compaction's
    copy was there, checked, and the original removed), or why it was left ("open", "young", "small",
    "gone", "refused")."""
    run_dir = path.parent
    packed = compressed_path(path)
    try:
        refuse_links(run_dir)
        fd = open_segment(path)
    except FileNotFoundError:
        return "gone", 0, 0
    except UnsafePathError as exc:
        log.warning("not compacted: %s", exc)
        return "refused", 0, 0
    try:
        st = os.fstat(fd)
        size = st.st_size
        if size < MIN_SIZE:
            return "small", size, size
        if not is_closed(fd, size):
            return "open", size, size  # a live writer's, or a killed one's: it stays as it is
        now = time.time() if now is None else now
        if now - st.st_mtime < min_age:
            return "young", size, size
        _remove_stale_parts(run_dir, path.name)
        digest = _hash_plain(fd, size)
        try:
            mode = os.lstat(packed).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            log.warning("not compacted: %s is not a regular file; remove it", packed)
            return "refused", size, size
        if mode is not None and _check_existing(packed, size, digest):
            _unlink_original(path, fd, st)
            return "finished", size, os.lstat(packed).st_size
        after = _write_copy(fd, path, size, digest)
        if os.fstat(fd).st_size != size:  # a closed segment never grows: if it did, keep it as it is
            compressed_path(path).unlink(missing_ok=True)
            return "open", size, size
        _unlink_original(path, fd, st)
        return "compacted", size, after
    except FileNotFoundError:  # the run was purged meanwhile (`alex gc`), or another compaction finished it
        return "gone", 0, 0
    finally:
        os.close(fd)


def _check_existing(packed: Path, size: int, digest: bytes) -> bool:
    try:
        pfd = open_segment(packed)
    except (FileNotFoundError, UnsafePathError):
        return False
    try:
        return _verified(pfd, packed, size, digest)
    finally:
        os.close(pfd)


def _write_copy(fd: int, path: Path, size: int, digest: bytes) -> int:
    """Write, fsync, check and rename into place the compressed copy of the plain segment `fd`; its size."""
    run_dir = path.parent
    part = run_dir / f".{path.name}.gz.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}"
    out = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(out, fcntl.LOCK_EX)  # held until closed: a part being written is never taken for stale
        head = _header(size, digest, _tail_lines(fd, size))
        pos = 0
        while pos < size:  # one member per chunk of whole lines (a line longer than a chunk spans members)
            chunk = os.pread(fd, min(CHUNK, size - pos), pos)
            if not chunk:
                raise FileNotFoundError(f"{path} shrank while compacted")
            if pos + len(chunk) < size and (cut := chunk.rfind(b"\n") + 1):
                chunk = chunk[:cut]
            pos += len(chunk)
            deflate = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
            trailer = struct.pack("<II", zlib.crc32(chunk), len(chunk))
            _write(out, head + deflate.compress(chunk) + deflate.flush() + trailer)
            head = _MEMBER_HEAD
        os.fsync(out)
        if not _verified(out, part, size, digest):
            raise CorruptSegmentError(f"the compressed copy of {path} did not read back equal; the segment is kept")
        after = os.fstat(out).st_size
        os.rename(part, compressed_path(path))
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        os.close(out)
    fsync_directory(run_dir)
    return after


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _unlink_original(path: Path, fd: int, st: os.stat_result) -> None:
    """Remove the plain segment, now that its checked copy is in place (the very file checked: same inode)."""
    now = os.lstat(path)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        raise FileNotFoundError(f"{path} was replaced meanwhile")
    os.unlink(path)
    fsync_directory(path.parent)


def compact(
    store: Store,
    engine: Engine | None = None,
    *,
    run_ids: list[str] | None = None,
    min_age: float = MIN_AGE,
) -> CompactionReport:
    """Compact every closed segment of the store (or of `run_ids`) that is quiet, not small, and, given the
    `engine` of its projection, folded whole there (a segment not folded yet is read faster plain)."""
    folded: dict[str, int] | None = None
    if engine is not None:
        from sqlalchemy import select

        from .schema import log_segment

        with engine.connect() as conn:
            folded = {path: offset for path, offset in conn.execute(select(log_segment.c.path, log_segment.c.offset))}
    report = CompactionReport()
    now = time.time()
    listed = [store.run_segments(rid) for rid in run_ids] if run_ids is not None else [list(store.segments())]
    paths = [p for run_paths in listed for p in run_paths]
    for path in paths:
        if not path.name.endswith(SEGMENT_SUFFIX) or path.name.endswith(COMPRESSED_SUFFIX):
            continue
        rel = store.relative(path)
        if folded is not None:
            size = segment_size(path)
            if size is None or folded.get(rel, -1) < size:
                continue
        what, before, after = compact_segment(path, min_age=min_age, now=now)
        if what in ("compacted", "finished"):
            report.compacted += what == "compacted"
            report.finished += what == "finished"
            report.bytes_before += before
            report.bytes_after += after
        elif what == "refused":
            report.skipped.append((rel, "refused: not a regular file, or a link on the way"))
    if report.compacted or report.finished:
        log.info(
            "compacted %d segment(s): %d bytes to %d",
            report.compacted + report.finished,
            report.bytes_before,
            report.bytes_after,
        )
    return report
