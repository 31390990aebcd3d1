"""PyTorch Lightning: `Trainer(logger=AlexandriaLogger(experiment="mnist"))`.

`from alexandria.integrations.lightning import AlexandriaLogger` is a Logger of the `lightning` package
(`lightning.pytorch`), or of `pytorch_lightning` where only that one is installed;
`alexandria.integrations.pytorch_lightning` gives the one of `pytorch_lightning` whichever is installed.

What it records: hyperparameters as parameters (a Namespace or dict, nested dicts with dotted keys:
`values.flatten`), every `log_metrics` call at Lightning's step, checkpoints as artifacts when asked.

With DDP every rank logs, not rank 0 alone: each rank's logger starts the run with `start_run`, which
makes global rank 0 the run's owner and lets the other ranks join it (ranks.py, tracking.py); a value
logged with `self.log(..., sync_dist=False)` is kept once per rank, its points told apart by `metric.rank`.

When the run ends: Lightning calls `finalize("success")` at the end of every `fit`, `validate`, `test` and
`predict`, so that call only writes out what is queued, and `trainer.test()` after `trainer.fit()` logs into
the same run. `finalize("failed")` (an exception inside the trainer) ends it as failed, or killed for
Ctrl-C and Lightning's SIGTERM exit. Otherwise the run ends as finished when the process exits (or failed
with an uncaught exception: hooks.py), or at `logger.end()`.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from .. import hooks, tracking
from ..errors import InvalidInputError, MissingExtraError
from ..store import Store
from ..values import flatten

#: The exceptions that mean a fit was stopped, not that it failed: the run ends "killed".
_STOPPED = ("KeyboardInterrupt", "SIGTERMException")


def _logger_class(package: str, module: str) -> type:
    """The AlexandriaLogger class over the Logger of `package` ("lightning.pytorch" or "pytorch_lightning"),
    named as an attribute of `module` (so that pickle finds it: strategy="ddp_spawn" pickles the logger)."""
    import importlib

    loggers = importlib.import_module(f"{package}.loggers")
    base: Any = loggers.Logger

    class AlexandriaLogger(base):  # type: ignore[misc, valid-type]
        """A Lightning logger writing into an Alexandria run (see the module's docstring)."""

        def __init__(
            self,
            experiment: str = "lightning_logs",
            name: str | None = None,
            tags: Mapping[str, Any] | None = None,
            store: str | os.PathLike[str] | Store | None = None,
            log_checkpoints: bool = False,
            run_id: str | None = None,
        ) -> None:
            super().__init__()
            if not isinstance(experiment, str) or not experiment:
                raise InvalidInputError(f"AlexandriaLogger needs experiment= a non-empty string, got {experiment!r}")
            self._experiment_name = experiment
            self._run_name = name
            self._tags = dict(tags or {})
            self._store = store
            self._log_checkpoints = bool(log_checkpoints)
            self._run_id = run_id
            self._run: tracking.Run | None = None
            self._checkpoints: dict[str, float] = {}  # path -> mtime of the version logged

        # -- what Lightning reads ------------------------------------------------------------------------
        @property
        def name(self) -> str:
            """The experiment: with `version`, Lightning's checkpoint folder is <root>/<experiment>/<run id>."""
            return self._experiment_name

        @property
        def version(self) -> str:
            """The run's id (the run is started on first use)."""
            return self.experiment.id

        @property
        def experiment(self) -> tracking.Run:
            """The Alexandria run, started on first use on every rank (rank 0 owns it: ranks.py)."""
            run = self._run
            if run is None or run.ended:
                run_id = self._run_id if run is None else run.id
                experiment = self._experiment_name
                run = tracking.start_run(
                    experiment=experiment, tags=self._tags, store=self._store, run_id=run_id, name=self._run_name
                )
                self._run = run
            return run

        @property
        def save_dir(self) -> None:
            """None: checkpoints stay under the trainer's `default_root_dir` (the store holds logs, and copies
            of the checkpoints with `log_checkpoints=True`)."""
            return None

        @property
        def log_dir(self) -> None:
            return None

        # -- what Lightning calls ------------------------------------------------------------------------
        def log_hyperparams(self, params: Namespace | Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
            if isinstance(params, Namespace):
                params = vars(params)
            self.experiment.log_params(flatten(dict(params)))

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            self.experiment.log_metrics(metrics, step)

        def save(self) -> None:
            """Nothing: Lightning calls it after every `log_metrics`, and the run's writer appends in the
            background already (`finalize` and the run's end write everything out)."""

        def finalize(self, status: str) -> None:
            run = self._run
            if run is None or run.ended:
                return
            if status == "success":
                run.flush()
                return
            exc = sys.exc_info()[1]  # Lightning calls finalize("failed") while it handles the exception
            kind = type(exc).__name__ if exc is not None else ""
            ended = "killed" if kind in _STOPPED or status != "failed" else "failed"
            error = None if exc is None else f"{kind}: {exc}" if str(exc) else kind
            if hooks.sigterm_received():  # Lightning's graceful stop on SIGTERM: as every run killed by it says
                ended, error = "killed", "SIGTERM"
            run.end(ended if run.owner else None, error=error)

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            """With `log_checkpoints=True`, copy every checkpoint file saved since the last call into the run
            (an artifact of the same name replaces the older version)."""
            if not self._log_checkpoints:
                return
            paths = [getattr(checkpoint_callback, "last_model_path", "")]
            paths += list(getattr(checkpoint_callback, "best_k_models", {}) or {})
            paths.append(getattr(checkpoint_callback, "best_model_path", ""))
            for path in dict.fromkeys(p for p in paths if p):
                try:
                    mtime = os.stat(path).st_mtime
                except OSError:
                    continue  # removed since (a checkpoint that left the top k)
                if self._checkpoints.get(path) != mtime:
                    self.experiment.log_artifact(path, type="checkpoint")
                    self._checkpoints[path] = mtime

        # -- Alexandria's --------------------------------------------------------------------------------
        def end(self, status: str = "finished") -> None:
            """End the run now ("finished", "failed" or "killed"); a later stage on this logger resumes it."""
            if self._run is not None and not self._run.ended:
                self._run.end(status if self._run.owner else None)

        def __getstate__(self) -> dict[str, Any]:
            """A spawned process (strategy="ddp_spawn") gets the settings, not this process's run handle."""
            state = dict(self.__dict__)
            state["_run"] = None
            return state

    AlexandriaLogger.__module__ = module
    AlexandriaLogger.__qualname__ = "AlexandriaLogger"
    return AlexandriaLogger


def _installed() -> str:
    import importlib.util

    for package in ("lightning", "pytorch_lightning"):
        if importlib.util.find_spec(package) is not None:
            return "lightning.pytorch" if package == "lightning" else package
    raise MissingExtraError(
        "alexandria.integrations.lightning needs PyTorch Lightning (the 'lightning' or 'pytorch_lightning' "
        "package): pip install 'alexandria[lightning]'"
    )


AlexandriaLogger = _logger_class(_installed(), __name__)
