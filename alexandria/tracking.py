"""The logging API: `start_run` and the `Run` handle that training code calls.

Every call turns into an event queued for the run's `SegmentWriter`; no call
does I/O per event. Processes and runs:

* The process that calls `start_run(experiment=...)` owns the new run: ending
  its handle records the run's end (finished, failed or killed).
* `start_run(run_id=...)` attaches to a running run from any process. An
  attached handle writes its own segment; ending it only flushes and closes
  that segment, unless `end(status=...)` is given explicitly. On a run that
  ended or crashed (life.py) it resumes it instead: this process owns the
  new life, numbered by `attempt`.
* A child started while a run is active logs to that run with no extra code:
  a forked child gets a fresh writer and segment of its own at fork time (it
  never touches the parent's buffer or file); a spawned or forkserver child
  finds the run through $ALEXANDRIA_RUN_ID and $ALEXANDRIA_STORE, which
  `start_run` sets, and attaches on its first module-level logging call.
* Every rank of a distributed job (torchrun, Lightning's DDP launcher, MPI, Slurm: ranks.py) logs into one
  run: `start_run(experiment=...)` finds the run a parent shared, else derives the id from the job's identity
  and the experiment; global rank 0 creates and ends it, the other ranks join it without ever resuming or
  ending it (`_start_rank`). Each rank's points carry its rank (`Header.rank`, `metric.rank`).
* Of processes that start one new run id at once (`start_run(run_id=..., experiment=...)`), the one whose
  exclusive mkdir of the run's folder succeeds creates it; the others attach (`_claim_new`).
* Pending events are written on `flush()`, `end()`, interpreter exit, the exit
  of a multiprocessing child, and SIGTERM (hooks.py).

What a value may be and how it is stored is values.py's; copying and hashing
artifacts is files.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from . import hooks
from . import system_metrics as _system
from .dataset import DatasetInfo, describe_dataset
from .errors import (
    AlexandriaError,
    InvalidInputError,
    NoActiveRunError,
    ParamConflictError,
    RunEndedError,
    StoreError,
)
from .events import (
    ArtifactSaved,
    CodeCaptured,
    DatasetLogged,
    EnvironmentCaptured,
    HistogramLogged,
    MediaFile,
    MediaLogged,
    MetricLogged,
    ParamLogged,
    RunEdited,
    RunFinished,
    RunResumed,
    RunStarted,
    TagSet,
)
from .files import copy_atomically, hash_file, write_atomically
from .life import ENDED, has_started, run_state
from .media import MEDIA_DIR, Encoded, Histogram
from .names import check_name, generate_name
from .ranks import Job, current_job
from .segment import BATCH_SIZE, SegmentWriter
from .store import STORE_ENV, Store, is_run_id, make_dirs, refuse_links
from .values import (
    STEP_MAX,
    STEP_MIN,
    check_key,
    check_text,
    event_time,
    metric_step,
    metric_value,
    param_to_str,
)

RUN_ENV = "ALEXANDRIA_RUN_ID"
_MP_CONFIG_KEY = "alexandria_run"
# log_metric spells the step bounds as literals (a constant load is cheaper than a global one).
assert (STEP_MIN, STEP_MAX) == (-9223372036854775808, 9223372036854775807)

_time = time.time
_log = logging.getLogger(__name__)


# -- event times ------------------------------------------------------------------
_last_time = 0.0  # of the last event _ordered_time gave a time
_clock_lock = threading.RLock()  # re-entrant: a signal handler may end runs while the main thread holds it


def _ordered_time() -> float:
    """The time of an event whose fold rule compares times (a parameter, a tag, an artifact, a run's start,
    resume or end): strictly later than the previous such event of this process.

    time.time() can return the same float twice (a float's resolution at today's epoch is ~240 ns, and
    some clocks are coarser or step back): set_tag("stage", "tuned") then set_tag("stage", "final")
    would tie, and the projector breaks a tie by value, so "tuned" could win. One float step past the
    previous time keeps the order the calls were made in. Metric points are all kept, whatever their
    times, so log_metric's hot path does not pay for this.
    """
    global _last_time
    with _clock_lock:
        now = _time()
        if now <= _last_time:
            now = math.nextafter(_last_time, math.inf)
        _last_time = now
        return now


class Run:
    """A handle on one run in one process. Use `start_run` to get one."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        experiment: str | None,
        *,
        owner: bool,
        attempt: int = 0,
        rank: int | None = None,
    ) -> None:
        self.store = store
        self.id = run_id
        self.experiment = experiment
        #: The readable name given or generated at the start (names.py); None on a handle attached or resumed
        #: without one.
        self.name: str | None = None
        self.owner = owner
        #: 0 in the run's first life, n after its n-th resume.
        self.attempt = attempt
        #: This process's global rank in a distributed job (ranks.py), None outside one: its segment's
        #: header carries it, and so every metric point it logs (`metric.rank`).
        self.rank = rank
        self.parent_id: str | None = None
        self._params: dict[str, str] = {}
        self._metric_keys: set[str] = set()
        self._ended = False
        self._capture_thread: threading.Thread | None = None
        self._sampler: _system.Sampler | None = None
        self._writer = SegmentWriter(store.run_dir(run_id), run_id, attempt=attempt, rank=rank)
        self._queue = self._writer.queue
        _open_runs.add(self)

    @property
    def ended(self) -> bool:
        """Whether this handle was ended (its logging calls raise RunEndedError)."""
        return self._ended

    def __repr__(self) -> str:
        state = "ended" if self._ended else "active"
        return f"<Run {self.id} experiment={self.experiment!r} {state}>"

    # -- logging -------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None, *, timestamp: float | None = None) -> None:
        """Queue one metric point; costs no I/O. NaN and +-inf are kept. `timestamp` (unix seconds) is when
        the point was measured, for points logged after the fact (an import); by default, now."""
        writer = self._writer
        if writer.error is not None:
            writer.raise_error()
        if key not in self._metric_keys:
            self._metric_keys.add(check_key(key, "metric"))
        if type(value) is not float or value - value != 0.0:  # not a float, or NaN / +-inf
            value = metric_value(key, value)  # type: ignore[assignment]  # may become "NaN" etc.
        # the literal bounds are STEP_MIN and STEP_MAX (constants are cheaper than globals here)
        if step is not None and (type(step) is not int or not -9223372036854775808 <= step <= 9223372036854775807):
            step = metric_step(step)
        if timestamp is not None:
            timestamp = event_time(timestamp)
        queue = self._queue
        queue.append(MetricLogged(_time() if timestamp is None else timestamp, key, value, step))
        if len(queue) >= BATCH_SIZE:
            writer.kick()

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, *, timestamp: float | None = None
    ) -> None:
        """Queue several metric points sharing one step and one timestamp (all or none; see `log_metric`)."""
        writer = self._writer
        if writer.error is not None:
            writer.raise_error()
        if step is not None and (type(step) is not int or not STEP_MIN <= step <= STEP_MAX):
            step = metric_step(step)
        now = _time() if timestamp is None else event_time(timestamp)
        keys = self._metric_keys
        points = []
        for key, value in metrics.items():
            if key not in keys:
                keys.add(check_key(key, "metric"))
            if type(value) is not float or value - value != 0.0:
                value = metric_value(key, value)  # type: ignore[assignment]
            points.append(MetricLogged(now, key, value, step))
        self._queue.extend(points)
        writer.kick()

    def log_param(self, key: str, value: Any) -> None:
        """Record a parameter (stored as text, see `param_to_str`); a different second value is an error."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several parameters: all are checked before any is logged."""
        events: dict[str, ParamLogged] = {}
        for key, value in params.items():
            check_key(key, "parameter")
            text = check_text(param_to_str(value), f"parameter {key!r} value")
            old = self._params.get(key)
            if old is not None and old != text:
                raise ParamConflictError(
                    f"parameter {key!r} of run {self.id} is already {old!r}; it cannot become {text!r}. "
                    "Parameters are fixed inputs: log a metric or a tag for values that change"
                )
            if old is None:
                events[key] = ParamLogged(key=key, value=text, time=_ordered_time())
        for key, event in events.items():
            self._put(event)
            self._params[key] = event.value  # only once it is queued

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (last value wins); tags are for labels that may change."""
        text = check_text(param_to_str(value), f"tag {key!r} value")
        self._put(TagSet(key=check_key(key, "tag"), value=text, time=_ordered_time()))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.set_tag(key, value)

    def log_artifact(self, path: str | os.PathLike[str], type: str | None = None, name: str | None = None) -> str:
        """Copy a file or directory into the store and record it; returns its path in the store.

        A second artifact with the same name replaces the first. Links inside a directory are recorded
        (the record's `links`), never followed nor copied (`files.copy_atomically`). A link where the copy
        goes (`artifacts/<run_id>`, or the name itself) raises UnsafePathError: nothing is written through it.
        """
        src = Path(path)
        if not src.exists():
            raise InvalidInputError(f"artifact {str(src)!r} does not exist")
        name = name or src.name
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise InvalidInputError(f"artifact name {name!r} must be a plain file name")
        if name == MEDIA_DIR:
            raise InvalidInputError(f"artifact name {name!r} is where the run's media files are kept; pass name=")
        kind = type or ("directory" if src.is_dir() else "file")
        try:
            dest = refuse_links(make_dirs(self.store.artifact_dir(self.id)) / name)
            copied = copy_atomically(src, dest)
        except OSError as exc:
            raise InvalidInputError(f"cannot copy artifact {str(src)!r} into the store: {exc}") from exc
        return self.record_artifact(
            dest, type=kind, name=name, size=copied.size, sha256=copied.sha256, links=copied.links
        )

    def record_artifact(
        self,
        path: str | os.PathLike[str],
        type: str | None = None,
        name: str | None = None,
        *,
        size: int | None = None,
        sha256: str | None = None,
        links: Mapping[str, str] | None = None,
    ) -> str:
        """Record as an artifact a file already durably in place inside the store (`files.write_atomically`
        writes one so); nothing is copied. Returns its path in the store.

        `name` defaults to the file's name; `size` and `sha256`, unless both are given, are read from the
        file. A second artifact with the same name replaces the first, as with `log_artifact`. `links`: of a
        directory, the symbolic links in it (relative path -> target text) that were not copied.
        """
        dest = Path(os.path.abspath(path))
        try:
            rel = self.store.relative(dest)
        except ValueError:
            raise InvalidInputError(
                f"artifact {str(dest)!r} is not inside the store {self.store.root}; log_artifact copies it in"
            ) from None
        refuse_links(dest)  # a link in the store is never recorded as the file it points to
        try:
            if sha256 is None or size is None:
                sha256, size = hash_file(dest)
        except OSError as exc:
            raise InvalidInputError(f"cannot read artifact {str(dest)!r}: {exc}") from exc
        self._put(
            ArtifactSaved(
                name=name or dest.name,
                path=rel,
                type=type,
                size=size,
                sha256=sha256,
                links=dict(links or {}),
                time=_ordered_time(),
            )
        )
        return rel

    def log_dataset(self, data: Any, name: str | None = None, role: str = "train") -> DatasetInfo:
        """Record a dataset the run uses: a file path (CSV, TSV, .npy, .npz, Parquet), a numpy array or a
        pandas DataFrame, with its size, schema and SHA-256 (see `dataset.describe_dataset`).

        A run may log several, one per `role` ("train", "eval", "test", ...). Bad input raises
        InvalidInputError naming it; nothing is logged and the run goes on.
        """
        if not isinstance(role, str) or not role:
            raise InvalidInputError(f"dataset role must be a non-empty string such as 'train' or 'eval', got {role!r}")
        info = describe_dataset(data, name)
        self._put(
            DatasetLogged(
                name=check_text(info.name, "dataset name"),
                role=check_text(role, "dataset role"),
                path=None if info.path is None else check_text(info.path, "dataset path"),
                format=info.format,
                num_rows=info.num_rows,
                num_columns=info.num_columns,
                schema=info.schema,
                hash=info.hash,
                size=info.size,
                time=_time(),
            )
        )
        return info

    # -- media (media.py encodes, these write) ----------------------------------------------------------------
    def log_image(
        self,
        key: str,
        image: Any,
        step: int | None = None,
        caption: str | None = None,
        *,
        timestamp: float | None = None,
    ) -> str:
        """Log an image as PNG: a numpy array (HxW grey, HxWx3 RGB, HxWx4 RGBA; uint8, floats in [0, 1], bool),
        a PIL image or an image file's path (Pillow: the `media` extra). Returns its file's path in the store.
        `step` None logs it without a step, as `log_metric` does."""
        from .media import encode_image

        key, step, when = self._media_args(key, step, timestamp)
        if caption is not None and not isinstance(caption, str):
            raise InvalidInputError(f"log_image({key!r}): caption must be a str or None, got {type(caption).__name__}")
        caption = None if caption is None else check_text(caption, f"image {key!r} caption")
        return self._log_media(key, step, encode_image(key, image), when, caption=caption)

    def log_figure(self, key: str, fig: Any, step: int | None = None, *, timestamp: float | None = None) -> str:
        """Log a figure: a plotly figure as its JSON, a matplotlib figure as PNG and SVG. Returns its path."""
        from .media import encode_figure

        key, step, when = self._media_args(key, step, timestamp)
        return self._log_media(key, step, encode_figure(key, fig), when)

    def log_table(self, key: str, data: Any, step: int | None = None, *, timestamp: float | None = None) -> str:
        """Log a table (a DataFrame, a pyarrow Table, a list of dicts or a dict of columns) as Parquet when
        pyarrow is installed, else as CSV; its shape and column names go into its `media` row."""
        from .media import encode_table

        key, step, when = self._media_args(key, step, timestamp)
        return self._log_media(key, step, encode_table(key, data), when)

    def log_text(self, key: str, text: str, step: int | None = None, *, timestamp: float | None = None) -> str:
        """Log a text as a UTF-8 .txt file (its `media` row's n_rows: its number of lines)."""
        from .media import encode_text

        key, step, when = self._media_args(key, step, timestamp)
        return self._log_media(key, step, encode_text(key, text), when)

    def log_histogram(
        self,
        key: str,
        values: Any = None,
        step: int | None = None,
        bins: int = 64,
        *,
        np_histogram: tuple[Any, Any] | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Log a histogram of `values` (numpy's, over `bins` equal bins of the finite values; NaN and +-inf are
        counted as dropped), or one already counted: `np_histogram=(counts, edges)`. Its bins are rows of the
        `histogram` table, no file."""
        from .media import histogram_from_counts, histogram_of

        key, step, when = self._media_args(key, step, timestamp)
        if (values is None) == (np_histogram is None):
            raise InvalidInputError(f"log_histogram({key!r}): pass values, or np_histogram=(counts, edges), not both")
        h: Histogram
        if np_histogram is not None:
            if not isinstance(np_histogram, Sequence) or len(np_histogram) != 2:
                raise InvalidInputError(f"log_histogram({key!r}): np_histogram must be a pair (counts, edges)")
            h = histogram_from_counts(key, *np_histogram)
        else:
            h = histogram_of(key, values, bins)
        self._put(
            HistogramLogged(
                key=key, step=step, edges=h.edges, counts=h.counts, min=h.min, max=h.max, count=h.count,
                nonfinite=h.nonfinite, time=when,
            )
        )  # fmt: skip

    def _media_args(self, key: Any, step: Any, timestamp: Any) -> tuple[str, int | None, float]:
        if self._writer.error is not None:
            self._writer.raise_error()
        key = check_key(key, "media")
        step = None if step is None else metric_step(step)
        return key, step, _time() if timestamp is None else event_time(timestamp)

    def _log_media(self, key: str, step: int | None, enc: Encoded, when: float, caption: str | None = None) -> str:
        """Write the record's files (each atomically, under a fresh name in the key's folder of the run's media
        folder), then queue its event; a file written before a failure is removed again."""
        import hashlib

        from .media import key_folder

        try:
            folder = refuse_links(make_dirs(self.store.artifact_dir(self.id) / MEDIA_DIR / key_folder(key)))
        except OSError as exc:
            raise InvalidInputError(f"cannot write media {key!r} into the store: {exc}") from exc
        stem = f"{'x' if step is None else step}-{uuid.uuid4().hex[:12]}"
        written: list[MediaFile] = []
        try:
            for fmt, ext, data in enc.files:
                dest = refuse_links(folder / f"{stem}.{ext}")
                try:
                    write_atomically(dest, data)
                except OSError as exc:
                    raise InvalidInputError(f"cannot write media {key!r} into the store: {exc}") from exc
                sha = hashlib.sha256(data).hexdigest()
                written.append(MediaFile(path=self.store.relative(dest), format=fmt, size=len(data), sha256=sha))
            main = written[0]
            self._put(
                MediaLogged(
                    key=key, kind=enc.kind, path=main.path, format=main.format, step=step, size=main.size,
                    sha256=main.sha256, width=enc.width, height=enc.height, caption=caption, n_rows=enc.n_rows,
                    n_cols=enc.n_cols, columns=enc.columns, files=written[1:], time=when,
                )
            )  # fmt: skip
        except BaseException:
            for f in written:
                (self.store.root / f.path).unlink(missing_ok=True)
            raise
        return main.path

    def flush(self) -> None:
        """Write everything logged so far to the event log now."""
        if self._writer.error is not None:
            self._writer.raise_error()
        self._writer.drain()

    # -- life ----------------------------------------------------------------
    def end(self, status: str | None = None, error: str | None = None, *, end_time: float | None = None) -> None:
        """End this handle: flush, close the segment and, for the owner, record how the run ended.

        `status` is "finished" (default for the owner), "failed" or "killed"; `end_time` (unix seconds)
        when it ended, for a run logged after the fact (an import); by default, now.
        An attached handle records a status only when one is passed. If the
        final write fails, WriterError is raised and the handle stays open:
        call end() again (exit does too) once the cause is gone.
        """
        if self._ended:
            return
        if status is not None and status not in ENDED:
            raise InvalidInputError(f"status must be 'finished', 'failed' or 'killed', got {status!r}")
        if status is None and self.owner:
            status = "finished"
        ended_at = None if end_time is None else event_time(end_time, "end_time")
        sampler = self._sampler
        if sampler is not None:  # stopped first: its points belong before the run's end
            self._sampler = None
            sampler.stop()
        capture = self._capture_thread
        if capture is not None and capture is not threading.current_thread():
            capture.join(CAPTURE_WAIT)  # the run's code and environment records belong in its log
        with hooks.critical():  # a SIGTERM now waits until the run is written
            writer = self._writer
            if isinstance(writer, _EndedWriter):  # a retry after a failed close
                writer = writer.closing
            else:
                if status is not None:
                    when = _ordered_time() if ended_at is None else ended_at
                    writer.queue.append(RunFinished(status=status, error=error, time=when))
                ended = _EndedWriter(writer, self.id)
                self._writer = ended  # type: ignore[assignment]
                self._queue = ended.queue  # calls racing end() from other threads now fail loudly
            writer.close()
            self._ended = True
            _open_runs.discard(self)
            _forget_active(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.owner:
            self.end()  # an attached handle's exception is its process's business, not the run's end
        elif exc_type is not None and hooks.sigterm_received():  # a graceful stop on SIGTERM: a sys.exit,
            self.end("killed", error="SIGTERM")  # Lightning's SIGTERMException, whatever leaves the block
        elif exc_type is None or (issubclass(exc_type, SystemExit) and exc.code in (None, 0)):  # type: ignore[union-attr]
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("killed", error="KeyboardInterrupt")
        else:
            self.end("failed", error=f"{exc_type.__name__}: {exc}")

    # -- internals -----------------------------------------------------------
    def _put(self, event: Any) -> None:
        if self._writer.error is not None:
            self._writer.raise_error()
        if event is not None:
            self._writer.put(event)

    def _start(
        self, experiment: str, tags: Mapping[str, Any], parent_id: str | None, name: str, started: float | None
    ) -> None:
        tag_text = _tag_texts(tags)
        event = RunStarted(
            experiment=check_text(experiment, "experiment"),
            tags=tag_text,
            parent_id=parent_id,
            name=name,
            time=_ordered_time() if started is None else started,
        )
        self.parent_id = parent_id
        self.name = name
        self._writer.put(event)
        self._writer.drain()  # on disk before start_run returns, ahead of any child's events

    def _resume(self, previous_status: str, tags: Mapping[str, Any]) -> None:
        tag_text = _tag_texts(tags)
        self._writer.put(RunResumed(attempt=self.attempt, previous_status=previous_status, time=_ordered_time()))
        for key, value in tag_text.items():
            self._writer.put(TagSet(key=key, value=value, time=_ordered_time()))
        self._writer.drain()

    def _capture(self, kinds: frozenset[str]) -> None:
        """Record the environment here and the code from a background thread: start_run does not wait for git.

        The environment is read on the calling thread, before start_run returns: it is some 10-50 ms of
        Python reading package metadata (more with more packages), which a background thread took from the
        training loop just begun, holding the GIL (logging calls of 20-40 ms). git runs in a process of its
        own, so its wait costs the loop nothing."""
        if not kinds:
            return
        from . import capture  # imported on first use: a run with capture off never pays for it

        if "environment" in kinds:
            try:
                env = capture.capture_environment()
                self._put(EnvironmentCaptured(time=_time(), **dataclasses.asdict(env)))
            except Exception as exc:  # never into the training: say so and go on
                _log.warning("alexandria: capturing the environment of run %s failed: %r", self.id, exc)
        if "code" in kinds:
            entrypoint, script = capture.describe_entrypoint()  # argv as it is now, on the calling thread
            self._capture_thread = hooks.start_thread(
                self._capture_code, f"alexandria-capture-{self.id[:8]}", entrypoint, script
            )

    def _capture_code(self, entrypoint: str, script: Path | None) -> None:
        time.sleep(0.001)  # hand the GIL straight back: start_run returns now, not after a switch interval
        from . import capture

        try:
            code = capture.capture_code(entrypoint, script)
            fields = dataclasses.asdict(code)
            diff = fields.pop("diff")
            fields["diff_artifact"] = self._save_diff(diff) if diff else None
            self._put(CodeCaptured(time=_time(), **fields))
        except RunEndedError:
            pass  # ended before capture was done (end() waited CAPTURE_WAIT seconds)
        except Exception as exc:  # never into the training: say so and go on
            _log.warning("alexandria: capturing the code of run %s failed: %r", self.id, exc)

    def _save_diff(self, diff: bytes) -> str | None:
        """Keep the uncommitted diff as an artifact (`git_diff.patch`, `git_diff.1.patch` after a resume)."""
        name = "git_diff.patch" if self.attempt == 0 else f"git_diff.{self.attempt}.patch"
        with tempfile.TemporaryDirectory(prefix="alexandria-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(diff)
            try:
                return self.log_artifact(path, type="git-diff")
            except InvalidInputError as exc:
                _log.warning("alexandria: could not keep the diff of run %s: %s", self.id, exc)
                return None

    def _after_fork_in_child(self) -> None:
        old = self._writer
        if isinstance(old, _EndedWriter):  # the parent is still closing it: not the child's to finish
            old.closing.abandon()
            self._ended = True
            _open_runs.discard(self)
            return
        old.abandon()
        self._capture_thread = None  # the parent's thread; the parent records what it captures
        self._sampler = None  # the parent's too: a forked child never samples the machine
        self._writer = SegmentWriter(old.run_dir, self.id, attempt=self.attempt, rank=self.rank)
        self._queue = self._writer.queue
        self.owner = False  # the parent records the end of the run


class _RefusingQueue(deque[Any]):
    """The queue of an ended handle. A thread that read `run._queue` just before end() swapped it
    fails loudly here instead of queueing into a writer nobody drains any more (CPython runs the
    read and the append of a logging call without a thread switch between them)."""

    def __init__(self, error: RunEndedError) -> None:
        super().__init__()
        self.error = error

    def append(self, item: Any) -> None:
        raise self.error

    def extend(self, items: Any) -> None:
        raise self.error


class _EndedWriter:
    """Stands in for the writer of an ended handle: every logging call raises RunEndedError.

    It keeps the writer being closed, so a failed close can be retried.
    """

    def __init__(self, closing: SegmentWriter, run_id: str) -> None:
        self.closing = closing
        self.run_dir = closing.run_dir
        self.error = RunEndedError(
            f"run {run_id} was ended; alexandria.start_run(run_id={run_id!r}) attaches to it again"
        )
        self.queue = _RefusingQueue(self.error)

    def raise_error(self) -> None:
        raise self.error

    def drain(self) -> None:
        raise self.error

    put = kick = drain


# Runs with an open handle in this process, for exit, signals and fork.
_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_active: list[Run] = []  # stack: the innermost open run is the active one; read without the lock
_state_lock = threading.RLock()  # re-entrant: a signal handler may end runs while the main thread holds it
_saved_env: tuple[str | None, str | None] = (None, None)  # the variables as they were before the first run


def start_run(
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    run_id: str | None = None,
    *,
    parent: Run | str | None = None,
    nested: bool = False,
    capture: bool | Iterable[str] | None = None,
    name: str | None = None,
    start_time: float | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float | None = None,
) -> Run:
    """Start a new run, or continue an existing one with `run_id=`; it becomes the active run.

    `run_id=` of a run that is still running attaches to it (this process
    writes its own segment; see `Run`). Of a run that ended (finished, failed,
    killed) or crashed, it resumes it: the log says so (`run_resumed`), the
    status is running again, this process owns its end, and everything logged
    from now on carries the next `attempt` number.

    `run_id=` together with `experiment=` of a run the store does not have yet starts a new run with that
    id: an adapter that derives stable ids from another tracker's (alexandria.wandb) creates the run on its
    first start and continues it on the next.

    `parent=` (a Run or run id) or `nested=True` (the active run) makes the new
    run a child of another, as a sweep's runs are of the sweep.

    `name` is a readable name for a new run (not unique: the id stays its identity); without one a name of
    two words and a number is generated ("brisk-heron-42"). Given with `run_id=`, it renames the run.

    In a rank of a distributed job (ranks.py), `start_run(experiment=...)` logs into the job's one run: rank
    0 owns it, the other ranks join it (the module's docstring; README "Distributed training").

    `start_time` (unix seconds) is when a new run began, for a run logged after the fact (an import, with
    `log_metric(..., timestamp=)` and `end(end_time=)`); by default, now.

    `capture` says what to record about the run in the background: the code
    (git commit, dirty diff, hashes of tracked files, entrypoint) and the
    environment (Python, OS, installed packages). True or None (the default,
    $ALEXANDRIA_CAPTURE if set: "0" for nothing, or "code", "environment")
    means both; False nothing; or a collection of "code" and "environment".

    `system_metrics` (default on for the run's owner: None reads $ALEXANDRIA_SYSTEM_METRICS, "0" turns it
    off; a handle attached with `run_id=` samples only when given True) logs the machine's and the
    process's CPU, memory, disk, network and GPU load every `system_metrics_interval` seconds (None:
    $ALEXANDRIA_SYSTEM_METRICS_INTERVAL, else 10) as `system/...` metrics; see system_metrics.py.
    """
    st = Store.open(store)
    kinds = _capture_kinds(capture)
    # A bad option or variable is refused before anything is written; ownership is known further down.
    sampling = _system.wanted(system_metrics, True)
    interval = _system.interval_of(system_metrics_interval) if sampling else 0.0
    if name is not None:
        check_name(name)
    started = None if start_time is None else event_time(start_time, "start_time")
    if run_id is not None and (not isinstance(run_id, str) or not is_run_id(run_id)):
        raise InvalidInputError(f"run_id must be a 32-character lowercase hex uuid, got {run_id!r}")
    job = current_job()
    if job is not None and run_id is None and not (parent or nested) and isinstance(experiment, str) and experiment:
        return _activate(_start_rank(st, job, experiment, tags, name, started, kinds))
    rank = None if job is None else job.rank
    parent_id = None
    if run_id is None or (experiment is not None and not st.run_exists(run_id)):  # a new run: checked first
        _require_experiment(experiment)
        _tag_texts(tags or {})
        parent_id = _parent_id(st, parent, nested)
    continued = run_id is not None and (experiment is None or not _claim_new(st, run_id))
    if started is not None and continued:
        raise InvalidInputError("start_time= is for a new run: a run continued with run_id= began already")
    if continued:
        assert run_id is not None
        st.require_run(run_id)
        # Whether its start is written is read first: a creator that writes it after the state was read would
        # look crashed (no segment yet) and started (its segment now), and be resumed by a second owner.
        started = has_started(st, run_id)
        state = run_state(st, run_id)
        if state.status == "running" or not started or (job is not None and job.rank != 0):
            # (a run whose creator is writing its start; a rank's job run, never resumed but by rank 0)
            run = Run(st, run_id, experiment, owner=False, attempt=state.attempt, rank=rank)
            if tags:
                run.set_tags(tags)
        else:
            run = Run(st, run_id, experiment, owner=True, attempt=state.attempt + 1, rank=rank)
            run._resume(state.status, tags or {})
            run._capture(kinds)
        if name is not None:
            run._put(RunEdited(name=name, time=_ordered_time()))
            run.name = name
    else:
        assert isinstance(experiment, str)
        run_id = run_id or uuid.uuid4().hex
        run = new_run(st, run_id, experiment, tags, parent_id=parent_id, name=name, start_time=started, rank=rank)
        run._capture(kinds)
    if sampling and _system.wanted(system_metrics, run.owner):
        run._sampler = _system.start(run, interval)
    return _activate(run)


def _require_experiment(experiment: Any) -> None:
    if not isinstance(experiment, str) or not experiment:
        raise InvalidInputError(
            "start_run needs experiment='name' (a non-empty string) or run_id= of a run to attach to"
        )


def _claim_new(st: Store, run_id: str) -> bool:
    """Whether this process creates run `run_id` (`start_run(run_id=..., experiment=...)` of a run the store
    lacks): the run's folder is claimed with one exclusive mkdir, as importers claim theirs, so of several
    processes starting the same new id at once exactly one writes its start and owns it; the others attach."""
    if st.run_exists(run_id):
        return False
    return st.claim_run_dir(run_id, "log into a store this process may write (store=, or $ALEXANDRIA_STORE)")


#: How many runs of each experiment this process started as a rank of a distributed job (their ids'
#: index: every rank of the job counts the same, so the n-th run of every rank is the same run).
_job_runs: dict[str, int] = {}


def _start_rank(
    st: Store,
    job: Job,
    experiment: str,
    tags: Mapping[str, Any] | None,
    name: str | None,
    started: float | None,
    kinds: frozenset[str],
) -> Run:
    """`start_run(experiment=...)` in a rank of a distributed job (ranks.py): every rank logs into one run.

    Its id is the run a parent process shared ($ALEXANDRIA_RUN_ID: Lightning's main process, or a job script
    that exported one), else derived from the job's identity and the experiment, so that the ranks agree
    without talking. (With `run_id=` given, `start_run` does as anywhere else, except that a rank other than
    0 never resumes the run.) Global rank 0 owns it: creates it (or, when its start is written
    already, a restarted job's, resumes the run that ended or attaches to it), records its end and status.
    Every other rank joins it as it is, even ended, or not created yet: its own segment, never a resume nor
    an end; so does rank 0 when the run was shared with it and has started (a process that rank 0 started,
    or rank 0 of Lightning's launcher, whose run began before the launch: the sharer owns it).
    """
    run_id = os.environ.get(RUN_ENV) or ""
    shared = is_run_id(run_id)
    if not shared:
        index = _job_runs.get(experiment, 0)
        _job_runs[experiment] = index + 1
        run_id = job.run_id(experiment, index)
    if job.rank != 0 or (shared and has_started(st, run_id)):  # a shared run is the sharer's to resume and end
        run = Run(st, run_id, experiment, owner=False, attempt=run_state(st, run_id).attempt, rank=job.rank)
        if tags:
            run.set_tags(tags)
        return run
    if not has_started(st, run_id):
        run = new_run(st, run_id, experiment, tags, name=name, start_time=started, rank=0)
        run._capture(kinds)
        return run
    state = run_state(st, run_id)
    if state.status != "running":  # a restarted job's run (torchelastic restarts its ranks): a new life
        run = Run(st, run_id, experiment, owner=True, attempt=state.attempt + 1, rank=0)
        run._resume(state.status, tags or {})
        run._capture(kinds)
        return run
    # running: a restarted job's run whose last rank 0 left no end, or this process's own (nested) run
    owner = not any(r.id == run_id and r.owner for r in list(_open_runs))
    run = Run(st, run_id, experiment, owner=owner, attempt=state.attempt, rank=0)
    if tags:
        run.set_tags(tags)
    return run


def new_run(
    st: Store,
    run_id: str,
    experiment: str,
    tags: Mapping[str, Any] | None = None,
    *,
    parent_id: str | None = None,
    name: str | None = None,
    start_time: float | None = None,
    rank: int | None = None,
) -> Run:
    """Create a run with this id and write its start, without making it the active run: `start_run`'s new
    run, and an importer's, whose id is derived from its source (`alexandria.importers.stable_run_id`)."""
    if name is not None:
        check_name(name)
    run = Run(st, run_id, experiment, owner=True, rank=rank)
    try:
        make_dirs(st.run_dir(run.id))  # a link in its place is refused (UnsafePathError), never written through
    except OSError as exc:  # a store this process may not write (permissions, a read-only mount, a full disk)
        raise StoreError(
            f"cannot create a run directory in {st.runs_dir}: {exc.strerror}; "
            "log into a store this process may write (store=, or $ALEXANDRIA_STORE)"
        ) from exc
    run._start(experiment, tags or {}, parent_id, name or generate_name(), start_time)
    return run


def _activate(run: Run) -> Run:
    hooks.install(_end_all, _reset_in_child, _flush_all)
    global _saved_env
    with _state_lock:
        if not _active:
            _saved_env = (os.environ.get(RUN_ENV), os.environ.get(STORE_ENV))
        _active.append(run)
        _share_with_children(run)
    return run


def _parent_id(st: Store, parent: Run | str | None, nested: bool) -> str | None:
    if parent is None and nested:
        active = active_run()
        if active is None:
            raise InvalidInputError("start_run(nested=True) needs an active run to nest under; none is active")
        return active.id
    if isinstance(parent, Run):
        return parent.id
    if parent is None:
        return None
    if not isinstance(parent, str) or not is_run_id(parent):
        raise InvalidInputError(f"parent must be a Run or a 32-character run id, got {parent!r}")
    st.require_run(parent)
    return parent


CAPTURE_ENV = "ALEXANDRIA_CAPTURE"
CAPTURE_KINDS = frozenset({"code", "environment"})
#: Seconds `end()` waits for a capture still running (a huge repository on a slow disk) before giving up on it.
CAPTURE_WAIT = 60.0


def _capture_kinds(capture: bool | Iterable[str] | None) -> frozenset[str]:
    if capture is None:
        text = os.environ.get(CAPTURE_ENV, "").strip().lower()
        if text in ("", "1", "true", "on", "yes", "all"):
            return CAPTURE_KINDS
        if text in ("0", "false", "off", "no", "none"):
            return frozenset()
        kinds = frozenset(k.strip() for k in text.split(",") if k.strip())
        where = f"${CAPTURE_ENV}={text!r}"
    elif capture is True or capture is False:
        return CAPTURE_KINDS if capture else frozenset()
    elif isinstance(capture, str):
        kinds, where = frozenset({capture}), f"capture={capture!r}"
    else:
        kinds, where = frozenset(capture), f"capture={capture!r}"
    unknown = kinds - CAPTURE_KINDS
    if unknown:
        raise InvalidInputError(
            f"{where}: cannot capture {', '.join(sorted(unknown))}; say True, False, or any of 'code', 'environment'"
        )
    return kinds


def _tag_texts(tags: Mapping[str, Any]) -> dict[str, str]:
    return {check_key(k, "tag"): check_text(param_to_str(v), f"tag {k!r} value") for k, v in tags.items()}


def _share_with_children(run: Run | None) -> None:
    """Tell processes started from now on which run is active: through the environment (any child),
    and through multiprocessing's per-process config, which every Process object copies when it is
    created and carries to spawn and forkserver children (a forkserver's environment is the one it
    started with, possibly during an earlier run)."""
    import multiprocessing

    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    if run is None:
        config.pop(_MP_CONFIG_KEY, None)
        for name, value in zip((RUN_ENV, STORE_ENV), _saved_env, strict=True):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return
    config[_MP_CONFIG_KEY] = (run.id, str(run.store.root))
    os.environ[RUN_ENV] = run.id
    os.environ[STORE_ENV] = str(run.store.root)


def _inherited_run() -> tuple[str, str | None] | None:
    """The run a parent process shared: multiprocessing's config first (exact for forkserver), then the environment."""
    if "multiprocessing" in sys.modules:
        import multiprocessing

        shared = multiprocessing.current_process()._config.get(_MP_CONFIG_KEY)  # type: ignore[attr-defined]
        if shared:
            return shared[0], shared[1]
    run_id = os.environ.get(RUN_ENV)
    return (run_id, os.environ.get(STORE_ENV)) if run_id else None


def active_run() -> Run | None:
    """The run module-level calls log to: the latest open one, or the run a parent process shared.

    A run shared through $ALEXANDRIA_RUN_ID that has already ended is not
    attached to (a forkserver started during an earlier run still carries that
    run's id): the call fails with NoActiveRunError instead.
    """
    try:
        return _active[-1]
    except IndexError:
        pass
    shared = _inherited_run()
    if shared is None:
        return None
    run_id, store = shared
    st = Store.open(store)
    st.require_run(run_id)
    state = run_state(st, run_id)
    job = current_job()
    if job is not None and job.rank != 0:  # a rank joins its job's run as it is, even ended (see start_run)
        return _activate(Run(st, run_id, None, owner=False, attempt=state.attempt, rank=job.rank))
    if state.status in ENDED:  # never resumed from here: that is the parent's business
        raise NoActiveRunError(
            f"the run this process inherited from its parent ({run_id}) has already ended; "
            "start a run in this process, or create child processes while the run is active"
        )
    return _activate(Run(st, run_id, None, owner=False, attempt=state.attempt))


def _require_active() -> Run:
    run = active_run()
    if run is None:
        raise NoActiveRunError("no active run: call alexandria.start_run(experiment=...) first")
    return run


def _forget_active(run: Run) -> None:
    with _state_lock:
        if run in _active:
            _active.remove(run)
        _share_with_children(_active[-1] if _active else None)


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def log_metric(key: str, value: float, step: int | None = None, *, timestamp: float | None = None) -> None:
    _require_active().log_metric(key, value, step, timestamp=timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, *, timestamp: float | None = None) -> None:
    _require_active().log_metrics(metrics, step, timestamp=timestamp)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def log_artifact(path: str | os.PathLike[str], type: str | None = None, name: str | None = None) -> str:
    return _require_active().log_artifact(path, type=type, name=name)


def log_dataset(data: Any, name: str | None = None, role: str = "train") -> DatasetInfo:
    return _require_active().log_dataset(data, name=name, role=role)


def log_image(key: str, image: Any, step: int | None = None, caption: str | None = None) -> str:
    return _require_active().log_image(key, image, step, caption)


def log_figure(key: str, fig: Any, step: int | None = None) -> str:
    return _require_active().log_figure(key, fig, step)


def log_table(key: str, data: Any, step: int | None = None) -> str:
    return _require_active().log_table(key, data, step)


def log_text(key: str, text: str, step: int | None = None) -> str:
    return _require_active().log_text(key, text, step)


def log_histogram(
    key: str,
    values: Any = None,
    step: int | None = None,
    bins: int = 64,
    *,
    np_histogram: tuple[Any, Any] | None = None,
) -> None:
    _require_active().log_histogram(key, values, step, bins, np_histogram=np_histogram)


def flush() -> None:
    """Write everything every open run of this process has queued."""
    for run in list(_open_runs):
        run.flush()


def end_run(status: str | None = None, *, end_time: float | None = None) -> None:
    """End the active run of this process."""
    _require_active().end(status, end_time=end_time)


# -- process life (hooks.py calls these) -------------------------------------------
def _end_all(status: str, error: str | None) -> None:
    """End every open handle of this process: at exit, on an uncaught exception, SIGTERM or Ctrl-C."""
    for run in list(_open_runs):
        try:
            run.end(status if run.owner else None, error=error)
        except AlexandriaError as exc:
            _log.warning("alexandria: could not end run %s: %s", run.id, exc)


def _flush_all() -> None:
    """Write what every open handle has queued, never raising: a SIGTERM that another handler keeps."""
    for run in list(_open_runs):
        try:
            run.flush()
        except AlexandriaError as exc:
            _log.warning("alexandria: could not write run %s: %s", run.id, exc)


def _reset_in_child() -> None:
    """In a forked child: locks of its own (the parent's may have been held at fork time), and a writer of
    its own for every open handle."""
    global _state_lock, _clock_lock
    _state_lock = threading.RLock()
    _clock_lock = threading.RLock()
    for run in list(_open_runs):
        run._after_fork_in_child()
