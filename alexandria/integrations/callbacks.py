"""The run a framework's callback logs into, shared by the callbacks (Transformers, Keras).

A callback cannot see an exception that ends training (neither `TrainerCallback` nor Keras' `Callback` has a
hook for it), so the process hooks (hooks.py) record how a run the callback left open ended: failed on an
uncaught exception, killed on Ctrl-C or SIGTERM. What the callback decides is which run it logs into and
whether it owns that run's end:

* a run of its own, started when training begins; the end of training only writes out what is queued, so
  `trainer.evaluate()` or `predict()` after `train()`, or a second `fit`, log into the same run, and the run
  ends when the process exits ("finished", or failed/killed by the process hooks) or at the callback's
  `end()` (a notebook's way: its kernel outlives the training), as the Lightning logger's run does;
* or the run the process already has active (`alexandria.start_run(...)` around `fit`/`train`, or a run
  shared by a parent process): logged into, never ended, since its owner ends it.

Logged to again after `end()`, a run of its own is resumed (`start_run(run_id=...)`: its next life), so
everything one callback logs stays one run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..errors import NoActiveRunError, ParamConflictError
from ..store import Store
from ..tracking import Run, active_run, start_run

_log = logging.getLogger(__name__)


class CallbackRun:
    """The run one callback instance logs into: started (or adopted) on first use, ended only if started."""

    def __init__(
        self,
        experiment: str | None,
        tags: Mapping[str, Any] | None,
        store: str | os.PathLike[str] | Store | None,
    ) -> None:
        self.experiment = experiment
        self.tags = dict(tags or {})
        self.store = store
        self.run: Run | None = None
        #: True when this callback started the run and so ends it; False for a run adopted from the process.
        self.owned = False
        self._skipped: set[str] = set()

    def begin(self, default_experiment: str, name: str | None = None) -> tuple[Run, bool]:
        """The run to log into now, and whether it is new (its parameters not logged yet)."""
        run = self.run
        if run is not None and not run.ended:
            return run, False
        if run is not None and self.owned:  # ended by the callback's end(): its next life
            self.run = start_run(run_id=run.id, store=run.store)
            return self.run, False
        # an adopted run its owner has ended since is not ours to resume: a run of the process, or a new one
        adopted = self._active()
        if adopted is not None:
            self.run, self.owned = adopted, False
            if self.tags:
                adopted.set_tags(self.tags)
            return adopted, True
        self.run = start_run(
            experiment=self.experiment or default_experiment, tags=self.tags, store=self.store, name=name
        )
        self.owned = True
        return self.run, True

    def _active(self) -> Run | None:
        """The process's active run, if it is in the store this callback logs to."""
        try:
            run = active_run()
        except NoActiveRunError:  # an inherited run that ended: start one of our own
            return None
        if run is None:
            return None
        if self.store is not None and Store.open(self.store).root != run.store.root:
            return None
        return run

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log the parameters; one the run already has with another value (an adopted run that an earlier
        fit logged into) keeps its first value, with a warning: a callback never stops training over it."""
        run = self.run
        assert run is not None
        try:
            run.log_params(params)
        except ParamConflictError:
            for key, value in params.items():
                try:
                    run.log_param(key, value)
                except ParamConflictError as exc:
                    _log.warning("alexandria: %s", exc)

    def training_ended(self) -> None:
        """The end of a fit or of training: write out what is queued; the run stays open for what follows."""
        run = self.run
        if run is not None and not run.ended:
            run.flush()

    def end(self, status: str = "finished") -> None:
        """End the run now if this callback started it; an adopted run is only flushed."""
        run = self.run
        if run is None or run.ended:
            return
        if self.owned:
            run.end(status)
        else:
            run.flush()

    def scalars(self, logs: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
        """The numeric entries of a framework's logs (Python numbers, numpy and 0-d tensor scalars) as floats;
        the others (text, lists) are skipped, each key named once in a warning."""
        out: dict[str, float] = {}
        for key, value in (logs or {}).items():
            if isinstance(value, (str, bytes, bool)) or value is None:
                number = None
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = None
            if number is None:
                if key not in self._skipped:
                    self._skipped.add(key)
                    _log.warning(
                        "alexandria: %r is not a number (%s); it is not logged as a metric", key, type(value).__name__
                    )
                continue
            out[f"{prefix}{key}"] = number
        return out
