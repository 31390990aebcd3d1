"""Process hooks: what Alexandria does when its process exits, forks, fails, or is sent SIGTERM or Ctrl-C.

The promise is that nothing logged is lost and every run records how it ended, however the process goes:

* a normal exit: `atexit` ends the open runs ("finished", or "failed" with the uncaught exception that
  `sys.excepthook` saw); a multiprocessing child leaves through `os._exit`, so a multiprocessing
  `Finalize` does it there;
* SIGTERM: the runs are recorded "killed", then the previous handler (or the default action) runs; a handler
  installed over ours that chains to it (Lightning's) keeps the signal: ours only writes what was logged, and
  the runs end "killed" when the process leaves; a main thread stuck in native code that retries through
  signals (a gloo collective) is not waited for beyond a grace: the runs are ended from another thread;
* Ctrl-C: KeyboardInterrupt, which the run's `with` block or the excepthook records as "killed";
* fork: the child gets fresh writers of its own (the run module's callback), never the parent's buffers.

This is the riskiest code of the library: signal handlers run between any two bytecodes of the main
thread, and a forked child starts with whatever locks other threads of its parent held. Each measure
below says the failure it prevents. The run module (tracking.py) hands its two callbacks to `install`;
this module knows nothing of runs, so segment.py's writer can use its critical sections and threads.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

_log = logging.getLogger(__name__)

# -- critical sections -----------------------------------------------------------------
# Signal safety. Our SIGTERM and SIGINT handlers run on the main thread,
# between any two bytecodes of whatever it was doing. While the main thread is
# inside one of Alexandria's critical sections (a drain, a run's end) a handler
# that wrote or unwound there would re-enter a lock or lose track of bytes
# already written, so the handlers queue their work here and the section runs
# it as it leaves.
_deferred_signals: list[Callable[[], None]] = []
_busy = 0


class critical:
    """Marks a main-thread critical section (no-op on other threads); runs deferred signal work on leaving."""

    __slots__ = ("entered",)

    def __enter__(self) -> None:
        global _busy
        self.entered = threading.current_thread() is threading.main_thread()
        if self.entered:
            _busy += 1

    def __exit__(self, *exc: object) -> None:
        global _busy
        if not self.entered:
            return
        _busy -= 1
        if _busy == 0 and _deferred_signals:
            work = _deferred_signals[:]
            _deferred_signals.clear()
            for handle in work:
                handle()


# -- threads ---------------------------------------------------------------------------
_HANDLED = {signal.SIGTERM, signal.SIGINT}  # the signals Alexandria handles: blocked in helper threads and across fork


def start_thread(target: Callable[..., None], name: str, *args: Any) -> threading.Thread:
    """Start a daemon thread born with SIGTERM and SIGINT blocked, so the kernel hands them to a thread
    that lets Python run its handlers: a signal taken by a helper thread would leave a main thread
    blocked in a C wait (a Pool worker's queue lock) unaware of it, and the process would never die."""
    thread = threading.Thread(target=target, name=name, args=args, daemon=True)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


# -- exit and uncaught exceptions --------------------------------------------------------
def _no_runs(*args: object) -> None:
    """Stands in for `install`'s callbacks until a run starts: there is no run to end or reset yet."""


_end_runs: Callable[[str, str | None], None] = _no_runs
_reset_runs_in_child: Callable[[], None] = _no_runs
_flush_runs: Callable[[], None] = _no_runs
_hooks_installed = False
_signals_installed = False
_failure: str | None = None  # the uncaught exception the excepthook saw: the runs failed


def install(
    end_runs: Callable[[str, str | None], None],
    reset_runs_in_child: Callable[[], None],
    flush_runs: Callable[[], None],
) -> None:
    """Once per process (called at every run's start): flush at exit (also a multiprocessing child's exit),
    on SIGTERM and Ctrl-C.

    `end_runs(status, error)` ends every open run of the process; `reset_runs_in_child()` gives a forked
    child writers of its own; `flush_runs()` writes what every open run has queued (for a SIGTERM that
    another program's handler chained to us). They are called back rather than registered on their own so that the
    order in a forked child stays: the runs are reset first, and only then are signals unblocked.
    """
    global _hooks_installed, _signals_installed, _previous_sigterm, _previous_excepthook
    global _end_runs, _reset_runs_in_child, _flush_runs
    if not _hooks_installed:
        _hooks_installed = True
        _end_runs, _reset_runs_in_child, _flush_runs = end_runs, reset_runs_in_child, flush_runs
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


def sigterm_received() -> bool:
    """Whether this process was sent SIGTERM (and is leaving because of it): the runs it ends are "killed"."""
    return _sigterm_seen


def _at_exit() -> None:
    if _sigterm_seen:  # a graceful stop on SIGTERM (another handler kept the signal): the run did not finish
        _end_runs("killed", "SIGTERM")
    else:
        _end_runs("failed" if _failure else "finished", _failure)


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    global _failure
    if issubclass(exc_type, KeyboardInterrupt):
        _end_runs("killed", "KeyboardInterrupt")
    else:
        _failure = f"{exc_type.__name__}: {exc}"
    _previous_excepthook(exc_type, exc, tb)


class _ForkToken:
    """Anchor for multiprocessing's after-fork registry (it needs a weak-referenceable object)."""


_fork_token = _ForkToken()


def _register_mp_finalizer(_token: object = None) -> None:
    # Multiprocessing children leave through os._exit, so atexit never runs
    # there; a Finalize does. A forked child's finalizer registry is cleared
    # after fork, so multiprocessing's after-fork hook registers it again.
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=100)


# -- SIGTERM and Ctrl-C ------------------------------------------------------------------
_previous_excepthook = sys.excepthook
_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _sigterm_seen
    _sigterm_seen = True
    if _ending_elsewhere.is_set():  # the watcher thread ends the runs and the process: nothing to do here
        _ending_elsewhere.wait()
        return
    if _busy > 0:  # inside a drain or an end(): handled when it leaves
        _deferred_signals.append(lambda: _on_sigterm(signum, frame))
        return
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        # A handler installed over ours called us (Lightning's chains to the one it found): the signal is
        # theirs to act on, as they wrote it (Lightning stops the loop, tears down and exits 0). Ours only
        # makes what was logged durable; the runs end "killed" as the process leaves (sigterm_received).
        _flush_runs()
        return
    _end_runs("killed", "SIGTERM")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _sigint_handled
    _sigint_handled += 1  # the watcher's sign that this Ctrl-C was seen (even if deferred)
    if _busy > 0:
        _deferred_signals.append(lambda: _on_sigint(signum, frame))
        return
    raise KeyboardInterrupt


# A Python signal handler runs only when the main thread runs Python. A SIGTERM or Ctrl-C that lands
# between CPython's check for pending signals and a blocking C call (a Pool worker taking its queue's
# lock, the `time.sleep` right after a print) is never seen by the handler: the process would ignore
# SIGTERM and its parent would wait forever, and a Ctrl-C would be lost (plain CPython has the same race).
# CPython also writes every signal it catches to the "wakeup fd"; a watcher thread reads it, and if
# the handler has not run shortly after the signal, it sends the signal to the main thread again, which
# interrupts the blocking call. (Only where no one else, such as asyncio, set a wakeup fd.)
#
# Some native code retries its wait whatever the signal (a gloo collective, pthread_join): the handler then
# never runs, and a process that would have died at once without Alexandria lives on until its launcher's
# SIGKILL, with nothing written. So when the handler has not run SIGTERM_GRACE seconds after the signal,
# and ours is still the handler with the default action behind it, the watcher ends the runs from its own
# thread ("killed", everything written and closed) and the process dies of SIGTERM as it would have.
SIGTERM_GRACE = 2.0
#: Seconds a caught signal's Python handler has to run before the watcher sends the signal to the main thread.
UNSEEN_AFTER = 0.05
_wakeup: tuple[int, int] | None = None
_sigterm_seen = False
_sigint_handled = 0  # how many times _on_sigint ran
_ending_elsewhere = threading.Event()


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
    start_thread(_resend_unseen_signals, "alexandria-signals", read_fd)


def _resend_unseen_signals(read_fd: int) -> None:
    main = threading.main_thread().ident
    sigint_seen = _sigint_handled  # the handler's count as of the last Ctrl-C dealt with
    resent_sigint = False
    while True:
        try:
            caught = os.read(read_fd, 64)
        except OSError:
            return
        if not caught or main is None:
            return
        if signal.SIGINT in caught and signal.getsignal(signal.SIGINT) is _on_sigint:
            if resent_sigint:  # the byte of our own resend: that Ctrl-C was dealt with
                resent_sigint = False
            elif _ran_within(UNSEEN_AFTER, functools.partial(_sigint_handled_beyond, sigint_seen)):
                sigint_seen = _sigint_handled
            else:
                try:
                    signal.pthread_kill(main, signal.SIGINT)
                except (OSError, ProcessLookupError):
                    return
                resent_sigint = True
                sigint_seen += 1  # the resend's handler run is this Ctrl-C's, not the next one's
        if signal.SIGTERM in caught and not _sigterm_seen and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            if _ran_within(UNSEEN_AFTER, sigterm_received):
                continue
            try:
                signal.pthread_kill(main, signal.SIGTERM)
            except (OSError, ProcessLookupError):
                return
            if not _ran_within(SIGTERM_GRACE, sigterm_received) and _previous_sigterm is None:
                _end_here_and_die()


def _sigint_handled_beyond(count: int) -> bool:
    return _sigint_handled > count


def _ran_within(seconds: float, ran: Callable[[], bool]) -> bool:
    """Whether `ran()` is true now or becomes so within `seconds` (the handler it watches ran)."""
    deadline = time.monotonic() + seconds
    while not ran():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _end_here_and_die() -> None:
    """On the watcher thread: end the runs, then die of SIGTERM (the main thread is stuck in native code)."""
    _ending_elsewhere.set()
    _log.warning(
        "alexandria: SIGTERM was not handled within %.0f s (the main thread waits in native code): "
        "the runs are ended from another thread and the process dies of SIGTERM",
        SIGTERM_GRACE,
    )
    try:
        _end_runs("killed", "SIGTERM")
    finally:
        try:  # signal.signal() is the main thread's alone: restore the default action through libc
            import ctypes

            ctypes.CDLL(None).signal(signal.SIGTERM, 0)  # 0 is SIG_DFL
            os.kill(os.getpid(), signal.SIGTERM)  # blocked here: the kernel hands it to the main thread
            time.sleep(5)
        finally:
            os._exit(128 + signal.SIGTERM)  # no libc: the exit code a shell gives a death by SIGTERM


# -- fork ------------------------------------------------------------------------------
# CPython drops the signals a child receives between fork() and its own reinitialisation. A
# multiprocessing Pool can SIGTERM a worker that young (terminate() right after map()); with our
# handler in place of the default action the worker would then never die. So SIGTERM and SIGINT are
# blocked across fork: a signal that early stays pending and is handled once the child is ready.
_mask_before_fork: set[int | signal.Signals] | None = None


def _before_fork() -> None:
    global _mask_before_fork
    _mask_before_fork = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)


def _after_fork_in_parent() -> None:
    if _mask_before_fork is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _mask_before_fork)


def _after_fork_in_child() -> None:
    global _sigterm_seen, _busy, _ending_elsewhere
    try:
        _sigterm_seen = False
        _ending_elsewhere = threading.Event()
        _busy = 0  # the parent's critical sections are not the child's
        _deferred_signals.clear()
        _reset_runs_in_child()
        if _wakeup is not None:  # the parent's pipe and watcher are the parent's: get our own
            signal.set_wakeup_fd(-1)
            for fd in _wakeup:
                os.close(fd)
            _watch_sigterm()
    finally:
        _after_fork_in_parent()  # unblock: a SIGTERM that came early is handled now


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
