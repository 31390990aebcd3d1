"""The logging API: `start_run` and the `Run` handle that training code calls.

Every call turns into an event queued for the run's `SegmentWriter`; no call
does I/O per event. Processes and runs:

* The process that calls `start_run(experiment=...)` owns the new run: ending
  its handle records the run's end (finished, failed or killed).
* `start_run(run_id=...)` attaches to an existing run from any process. An
  attached handle writes its own segment; ending it only flushes and closes
  that segment, unless `end(status=...)` is given explicitly.
* A child started while a run is active logs to that run with no extra code:
  a forked child gets a fresh writer and segment of its own at fork time (it
  never touches the parent's buffer or file); a spawned or forkserver child
  finds the run through $ALEXANDRIA_RUN_ID and $ALEXANDRIA_STORE, which
  `start_run` sets, and attaches on its first module-level logging call.
* Pending events are written on `flush()`, `end()`, interpreter exit, the exit
  of a multiprocessing child, and SIGTERM.
"""

from __future__ import annotations

import atexit
import hashlib
import math
import operator
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import msgspec

from . import segment
from .errors import (
    AlexandriaError,
    InvalidInputError,
    NoActiveRunError,
    ParamConflictError,
    RunEndedError,
)
from .events import STEP_MAX, STEP_MIN, ArtifactSaved, ParamLogged, RunFinished, RunStarted, TagSet, encode_float
from .segment import BATCH_SIZE, SegmentWriter
from .store import Store, is_run_id

RUN_ENV = "ALEXANDRIA_RUN_ID"
_MP_CONFIG_KEY = "alexandria_run"
STORE_ENV = "ALEXANDRIA_STORE"
MAX_KEY_LENGTH = 250
# log_metric spells the step bounds as literals (a constant load is cheaper than a global one).
assert (STEP_MIN, STEP_MAX) == (-9223372036854775808, 9223372036854775807)

_time = time.time


def param_to_str(value: Any) -> str:
    """The stable text a parameter value is stored as.

    str as is; bool as "true"/"false"; int in decimal; float as its shortest
    round-trip repr ("0.1", "1e-05"), non-finite as "nan", "inf", "-inf";
    None as "null"; numpy scalars as the Python scalar they hold; lists,
    tuples and dicts as compact JSON with sorted keys; anything else as str().
    """
    if isinstance(value, str):
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy / torch scalar
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        try:
            return msgspec.json.encode(value, order="sorted").decode()
        except (TypeError, msgspec.EncodeError):
            return str(value)
    return str(value)


def _hash_file(path: Path, digest: Any) -> int:
    """Feed a file to `digest` in 1 MiB chunks; returns its size."""
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size


def _check_text(text: str, what: str) -> str:
    """Text must be encodable as UTF-8 (a lone surrogate, as surrogateescape leaves, is not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"{what} {text[:40]!r} is not valid Unicode text (it holds a lone surrogate, as undecodable "
            "bytes from a file name or argv leave); clean it with .encode('utf-8', 'replace').decode()"
        ) from None
    return text


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{what} key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(f"{what} key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    return _check_text(key, f"{what} key")


def _to_float(key: str, value: Any) -> float | str:
    """A metric value as the event carries it: a float, or the JSON-safe spelling of NaN / +-inf."""
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(f"metric {key!r}: value must be a number, got the string {value!r}")
    try:
        return encode_float(float(value))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metric {key!r}: value {value!r} cannot be converted to float ({exc})") from exc


def _to_step(step: Any) -> int:
    if isinstance(step, bool):
        raise InvalidInputError(f"step must be an integer or None, got {step!r}")
    try:
        step = operator.index(step)
    except TypeError:
        raise InvalidInputError(f"step must be an integer or None, got {step!r}") from None
    if not STEP_MIN <= step <= STEP_MAX:
        raise InvalidInputError(f"step {step} is outside the 64-bit integer range SQL can store")
    return int(step)


class Run:
    """A handle on one run in one process. Use `start_run` to get one."""

    def __init__(self, store: Store, run_id: str, experiment: str | None, *, owner: bool) -> None:
        self.store = store
        self.id = run_id
        self.experiment = experiment
        self.owner = owner
        self._params: dict[str, str] = {}
        self._metric_keys: set[str] = set()
        self._ended = False
        self._writer = SegmentWriter(store.run_dir(run_id), run_id)
        self._queue = self._writer.queue
        _open_runs.add(self)

    def __repr__(self) -> str:
        state = "ended" if self._ended else "active"
        return f"<Run {self.id} experiment={self.experiment!r} {state}>"

    # -- logging -------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Queue one metric point; costs no I/O. NaN and +-inf are kept."""
        writer = self._writer
        if writer.error is not None:
            writer.raise_error()
        if key not in self._metric_keys:
            self._metric_keys.add(_check_key(key, "metric"))
        if type(value) is not float or value - value != 0.0:  # not a float, or NaN / +-inf
            value = _to_float(key, value)  # type: ignore[assignment]  # may become "NaN" etc.
        # the literal bounds are STEP_MIN and STEP_MAX (constants are cheaper than globals here)
        if step is not None and (type(step) is not int or not -9223372036854775808 <= step <= 9223372036854775807):
            step = _to_step(step)
        queue = self._queue
        queue.append((_time(), key, value, step))
        if len(queue) >= BATCH_SIZE:
            writer.kick()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Queue several metric points sharing one step and one timestamp (all or none)."""
        writer = self._writer
        if writer.error is not None:
            writer.raise_error()
        if step is not None and (type(step) is not int or not STEP_MIN <= step <= STEP_MAX):
            step = _to_step(step)
        now = _time()
        keys = self._metric_keys
        points = []
        for key, value in metrics.items():
            if key not in keys:
                keys.add(_check_key(key, "metric"))
            if type(value) is not float or value - value != 0.0:
                value = _to_float(key, value)  # type: ignore[assignment]
            points.append((now, key, value, step))
        self._queue.extend(points)
        writer.kick()

    def log_param(self, key: str, value: Any) -> None:
        """Record a parameter (stored as text, see `param_to_str`); a different second value is an error."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several parameters: all are checked before any is logged."""
        events: dict[str, ParamLogged] = {}
        for key, value in params.items():
            _check_key(key, "parameter")
            text = _check_text(param_to_str(value), f"parameter {key!r} value")
            old = self._params.get(key)
            if old is not None and old != text:
                raise ParamConflictError(
                    f"parameter {key!r} of run {self.id} is already {old!r}; it cannot become {text!r}. "
                    "Parameters are fixed inputs: log a metric or a tag for values that change"
                )
            if old is None:
                events[key] = ParamLogged(key=key, value=text, time=_time())
        for key, event in events.items():
            self._put(event)
            self._params[key] = event.value  # only once it is queued

    def set_tag(self, key: str, value: Any) -> None:
        """Set a tag (last value wins); tags are for labels that may change."""
        text = _check_text(param_to_str(value), f"tag {key!r} value")
        self._put(TagSet(key=_check_key(key, "tag"), value=text, time=_time()))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.set_tag(key, value)

    def log_artifact(self, path: str | os.PathLike[str], type: str | None = None, name: str | None = None) -> str:
        """Copy a file or directory into the store and record it; returns its path in the store.

        A second artifact with the same name replaces the first.
        """
        src = Path(path)
        if not src.exists():
            raise InvalidInputError(f"artifact {str(src)!r} does not exist")
        name = name or src.name
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            raise InvalidInputError(f"artifact name {name!r} must be a plain file name")
        dest_dir = self.store.artifact_dir(self.id)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        tmp = dest_dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        digest = hashlib.sha256()
        size = 0
        try:
            if src.is_dir():
                shutil.copytree(src, tmp)
                for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                    digest.update(f.relative_to(tmp).as_posix().encode() + b"\0")
                    size += _hash_file(f, digest)
                if dest.is_dir():
                    shutil.rmtree(dest)
                kind = type or "directory"
            else:
                with open(src, "rb") as fin, open(tmp, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        digest.update(chunk)
                        fout.write(chunk)
                        size += len(chunk)
                    fout.flush()
                    os.fsync(fout.fileno())
                kind = type or "file"
            os.replace(tmp, dest)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            raise InvalidInputError(f"cannot copy artifact {str(src)!r} into the store: {exc}") from exc
        rel = self.store.relative(dest)
        self._put(ArtifactSaved(name=name, path=rel, type=kind, size=size, sha256=digest.hexdigest(), time=_time()))
        return rel

    def flush(self) -> None:
        """Write everything logged so far to the event log now."""
        if self._writer.error is not None:
            self._writer.raise_error()
        self._writer.drain()

    # -- life ----------------------------------------------------------------
    def end(self, status: str | None = None, error: str | None = None) -> None:
        """End this handle: flush, close the segment and, for the owner, record how the run ended.

        `status` is "finished" (default for the owner), "failed" or "killed".
        An attached handle records a status only when one is passed. If the
        final write fails, WriterError is raised and the handle stays open:
        call end() again (exit does too) once the cause is gone.
        """
        if self._ended:
            return
        if status is not None and status not in ("finished", "failed", "killed"):
            raise InvalidInputError(f"status must be 'finished', 'failed' or 'killed', got {status!r}")
        if status is None and self.owner:
            status = "finished"
        with segment.critical():  # a SIGTERM now waits until the run is written
            writer = self._writer
            if isinstance(writer, _EndedWriter):  # a retry after a failed close
                writer = writer.closing
            else:
                if status is not None:
                    writer.queue.append(RunFinished(status=status, error=error, time=_time()))
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

    def _start(self, experiment: str, tags: Mapping[str, Any]) -> None:
        tag_text = {_check_key(k, "tag"): _check_text(param_to_str(v), f"tag {k!r} value") for k, v in tags.items()}
        event = RunStarted(experiment=_check_text(experiment, "experiment"), tags=tag_text, time=_time())
        self._writer.put(event)
        self._writer.drain()  # on disk before start_run returns, ahead of any child's events

    def _after_fork_in_child(self) -> None:
        old = self._writer
        if isinstance(old, _EndedWriter):  # the parent is still closing it: not the child's to finish
            old.closing.abandon()
            self._ended = True
            _open_runs.discard(self)
            return
        old.abandon()
        self._writer = SegmentWriter(old.run_dir, self.id)
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
_hooks_installed = False
_signals_installed = False
_failure: str | None = None


def start_run(
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    run_id: str | None = None,
) -> Run:
    """Start a new run, or attach to an existing one with `run_id=`; it becomes the active run."""
    st = Store.open(store)
    if run_id is not None:
        if not isinstance(run_id, str) or not is_run_id(run_id):
            raise InvalidInputError(f"run_id must be a 32-character lowercase hex uuid, got {run_id!r}")
        st.require_run(run_id)
        run = Run(st, run_id, experiment, owner=False)
        if tags:
            run.set_tags(tags)
    else:
        if not isinstance(experiment, str) or not experiment:
            raise InvalidInputError(
                "start_run needs experiment='name' (a non-empty string) or run_id= of a run to attach to"
            )
        run = Run(st, uuid.uuid4().hex, experiment, owner=True)
        st.run_dir(run.id).mkdir(parents=True)
        run._start(experiment, tags or {})
    _install_hooks()
    global _saved_env
    with _state_lock:
        if not _active:
            _saved_env = (os.environ.get(RUN_ENV), os.environ.get(STORE_ENV))
        _active.append(run)
        _share_with_children(run)
    return run


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
    if st.run_has_ended(run_id):
        raise NoActiveRunError(
            f"the run this process inherited from its parent ({run_id}) has already ended; "
            "start a run in this process, or create child processes while the run is active"
        )
    return start_run(run_id=run_id, store=st)


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


def log_metric(key: str, value: float, step: int | None = None) -> None:
    _require_active().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    _require_active().log_metrics(metrics, step)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def log_artifact(path: str | os.PathLike[str], type: str | None = None, name: str | None = None) -> str:
    return _require_active().log_artifact(path, type=type, name=name)


def flush() -> None:
    """Write everything every open run of this process has queued."""
    for run in list(_open_runs):
        run.flush()


def end_run(status: str | None = None) -> None:
    """End the active run of this process."""
    _require_active().end(status)


# -- process life: exit, uncaught exceptions, SIGTERM, Ctrl-C, fork ---------------
def _end_all(status: str, error: str | None = None) -> None:
    for run in list(_open_runs):
        try:
            run.end(status if run.owner else None, error=error)
        except AlexandriaError as exc:
            print(f"alexandria: could not end run {run.id}: {exc}", file=sys.stderr)


def _at_exit() -> None:
    _end_all("failed" if _failure else "finished", _failure)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    global _failure
    if issubclass(exc_type, KeyboardInterrupt):
        _end_all("killed", "KeyboardInterrupt")
    else:
        _failure = f"{exc_type.__name__}: {exc}"
    _previous_excepthook(exc_type, exc, tb)


_previous_excepthook = sys.excepthook
_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _sigterm_seen
    _sigterm_seen = True
    if segment.main_thread_is_busy():  # inside a drain or an end(): handled when it leaves
        segment.deferred_signals.append(lambda: _on_sigterm(signum, frame))
        return
    _end_all("killed", "SIGTERM")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if segment.main_thread_is_busy():
        segment.deferred_signals.append(lambda: _on_sigint(signum, frame))
        return
    raise KeyboardInterrupt


def _install_hooks() -> None:
    """Once per process: flush at exit (also a multiprocessing child's exit), on SIGTERM and Ctrl-C."""
    global _hooks_installed, _signals_installed, _previous_sigterm, _previous_excepthook
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_at_exit)
        if sys.excepthook is not _excepthook:
            _previous_excepthook = sys.excepthook
            sys.excepthook = _excepthook
        from multiprocessing import util

        _register_mp_finalizer()
        util.register_after_fork(_fork_token, _register_mp_finalizer)
    # Signal handlers can only be set from the main thread: retried until a run starts there.
    if not _signals_installed and threading.current_thread() is threading.main_thread():
        _signals_installed = True
        current = signal.getsignal(signal.SIGTERM)
        if current in (signal.SIG_DFL, None) or callable(current):
            _previous_sigterm = current if callable(current) else None
            signal.signal(signal.SIGTERM, _on_sigterm)
            _watch_sigterm()
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)


# A Python signal handler runs only when the main thread runs Python. A SIGTERM that lands between
# CPython's check for pending signals and a blocking C call (a Pool worker taking its queue's lock)
# is never seen by the handler: the process would ignore SIGTERM and its parent would wait forever.
# CPython also writes every signal it catches to the "wakeup fd"; a watcher thread reads it, and if
# the handler has not run shortly after a SIGTERM, it sends SIGTERM to the main thread again, which
# interrupts the blocking call. (Only where no one else, such as asyncio, set a wakeup fd.)
_wakeup: tuple[int, int] | None = None
_sigterm_seen = False


def _watch_sigterm() -> None:
    global _wakeup
    _wakeup = None
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread
        previous = -2
    if previous != -1:
        if previous >= 0:
            signal.set_wakeup_fd(previous)  # someone else's: theirs stays
        os.close(read_fd)
        os.close(write_fd)
        return
    _wakeup = (read_fd, write_fd)
    watcher = threading.Thread(target=_resend_unseen_sigterm, args=(read_fd,), name="alexandria-signals", daemon=True)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        watcher.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _resend_unseen_sigterm(read_fd: int) -> None:
    main = threading.main_thread().ident
    while True:
        try:
            caught = os.read(read_fd, 64)
        except OSError:
            return
        if not caught:
            return
        if signal.SIGTERM in caught:
            time.sleep(0.05)
            if not _sigterm_seen and main is not None:
                try:
                    signal.pthread_kill(main, signal.SIGTERM)
                except (OSError, ProcessLookupError):
                    return


# CPython drops the signals a child receives between fork() and its own reinitialisation. A
# multiprocessing Pool can SIGTERM a worker that young (terminate() right after map()); with our
# handler in place of the default action the worker would then never die. So SIGTERM and SIGINT are
# blocked across fork: a signal that early stays pending and is handled once the child is ready.
_mask_before_fork: set[int | signal.Signals] | None = None


def _before_fork() -> None:
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


def _after_fork_in_parent() -> None:
    if _mask_before_fork is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def _after_fork_in_child() -> None:
    global _state_lock, _sigterm_seen
    try:
        _state_lock = threading.RLock()  # the parent's may have been held at fork time
        _sigterm_seen = False
        segment.reset_after_fork()
        for run in list(_open_runs):
            run._after_fork_in_child()
        if _wakeup is not None:  # the parent's pipe and watcher are the parent's: get our own
            signal.set_wakeup_fd(-1)
            for fd in _wakeup:
                os.close(fd)
            _watch_sigterm()
    finally:
        _after_fork_in_parent()  # unblock: a SIGTERM that came early is handled now


class _ForkToken:
    """Anchor for multiprocessing's after-fork registry (it needs a weak-referenceable object)."""


_fork_token = _ForkToken()


def _register_mp_finalizer(_token: object = None) -> None:
    # Multiprocessing children leave through os._exit, so atexit never runs
    # there; a Finalize does. A forked child's finalizer registry is cleared
    # after fork, so multiprocessing's after-fork hook registers it again.
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=100)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
