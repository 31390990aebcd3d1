"""Keras 3: `model.fit(..., callbacks=[AlexandriaCallback()])` logs the fit into an Alexandria run.

What lands in the run (docs in the README's Keras section):

* parameters when the fit begins: `fit.epochs`, `fit.steps` (batches per epoch; null when Keras does not
  know), `fit.verbose` (what Keras passes callbacks: `batch_size` is not among them), the optimizer's config
  as `optimizer.<key>` with `optimizer.class`, the other compile arguments as `compile.<key>`
  (`compile.loss`, `compile.metrics`, ...), `model.name` and `model.num_parameters`;
* every `log_every_n_batches`-th batch: Keras' batch logs as `batch/<name>` (Keras reports the running
  mean over the epoch so far) and `batch/learning_rate`, at step = the global batch count (1 after the
  first batch, counting on across epochs and across fits of the same callback);
* every epoch: the epoch logs as Keras names them in `History` (`loss`, `val_loss`, ...), `learning_rate`
  and `epoch` (the number of epochs done), at the global batch count when the epoch ended, so that batch
  and epoch curves share one step axis;
* the end: the end of a fit only writes out what is queued (a second fit, `evaluate`, log on into the same
  run); the run ends "finished" when the process exits (or at `callback.end()`, a notebook's way), failed
  or killed through the process hooks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import keras

from ..errors import InvalidInputError
from ..store import Store
from ..tracking import Run
from ..values import flatten
from .callbacks import CallbackRun

__all__ = ["AlexandriaCallback"]

_log = logging.getLogger(__name__)

#: The experiment of a run when `experiment=` names none.
DEFAULT_EXPERIMENT = "keras"


class AlexandriaCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Logs a Keras fit's parameters, batch and epoch metrics and end into an Alexandria run.

    `log_every_n_batches`: 1 logs every batch, n every n-th, 0 no batch metrics (epochs only). `name`: the
    new run's name (default: a generated one). With a run
    already active in the process (`alexandria.start_run` around `fit`), the callback logs into it and
    leaves its end to its owner.
    """

    def __init__(
        self,
        experiment: str | None = None,
        tags: Mapping[str, Any] | None = None,
        store: str | os.PathLike[str] | Store | None = None,
        log_every_n_batches: int = 1,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(log_every_n_batches, bool) or not isinstance(log_every_n_batches, int) or log_every_n_batches < 0:
            raise InvalidInputError(
                f"log_every_n_batches must be an integer >= 0 (0: epochs only), got {log_every_n_batches!r}"
            )
        self._run = CallbackRun(experiment, tags, store)
        self.name = name
        self.log_every_n_batches = log_every_n_batches
        self._batches = 0  # the global batch count: batches trained by the fits this callback saw
        self._epoch_base = 0  # the global count when the current epoch began
        self._last_logged = 0

    @property
    def run(self) -> Run | None:
        """The run this callback logs into (None before the first fit begins)."""
        return self._run.run

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        _, new = self._run.begin(DEFAULT_EXPERIMENT, self.name)
        if new:
            self._run.log_params(_params(self.params or {}, self.model))

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch_base = self._batches

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        # `batch` is the index in the epoch of the last batch done (several with steps_per_execution > 1)
        self._batches = self._epoch_base + batch + 1
        every = self.log_every_n_batches
        run = self._run.run
        if every and run is not None and self._batches - self._last_logged >= every:
            self._last_logged = self._batches
            metrics = self._run.scalars(logs, "batch/")
            self._add_learning_rate(metrics, "batch/learning_rate")
            run.log_metrics(metrics, step=self._batches)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        run = self._run.run
        if run is not None:
            metrics = self._run.scalars(logs)
            metrics["epoch"] = epoch + 1
            self._add_learning_rate(metrics, "learning_rate")  # unless ReduceLROnPlateau put it in the logs
            run.log_metrics(metrics, step=self._batches)

    def end(self, status: str = "finished") -> None:
        """End the callback's run now ("finished", "failed" or "killed"): in a notebook, whose kernel outlives
        the training; elsewhere the run ends when the process exits. A run the script started is its own."""
        self._run.end(status)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._run.training_ended()

    def _add_learning_rate(self, metrics: dict[str, float], key: str) -> None:
        """The optimizer's current learning rate (a schedule's value at this step), as W&B's Keras logger
        logs it."""
        if key in metrics:
            return
        rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        if rate is None:
            return
        try:
            metrics[key] = _as_written(float(keras.ops.convert_to_numpy(rate)))
        except (TypeError, ValueError):  # not a number: a custom optimizer's own notion of a rate
            _log.debug("alexandria: the learning rate %r is not a number", rate, exc_info=True)


def _as_written(value: Any) -> Any:
    """An optimizer's hyperparameters live in float32 variables: 0.01 comes back as 0.009999999776482582.
    A float that is exactly a float32 becomes the shortest decimal of that float32 (0.01), the value the
    user wrote."""
    if isinstance(value, float):
        import numpy as np  # Keras' own dependency, loaded with it

        single = np.float32(value)
        if float(single) == value:
            return float(str(single))
    return value


def _params(fit: Mapping[str, Any], model: Any) -> dict[str, Any]:
    params = flatten(dict(fit), "fit.")
    if model is None:
        return params
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        params["optimizer.class"] = type(optimizer).__name__
        for key, value in flatten(optimizer.get_config(), "optimizer.").items():
            params[key] = _as_written(value)
    try:
        compiled = model.get_compile_config() or {}
    except Exception:  # a model compiled in a way Keras cannot serialize: its other parameters still count
        _log.debug("alexandria: the model's compile config is not available", exc_info=True)
        compiled = {}
    compiled.pop("optimizer", None)  # logged above, from the live optimizer
    params.update(flatten(compiled, "compile."))
    params["model.name"] = model.name
    params["model.num_parameters"] = model.count_params()
    return params
