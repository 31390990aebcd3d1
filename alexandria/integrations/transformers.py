"""Hugging Face Transformers: `Trainer(..., callbacks=[AlexandriaCallback()])`, or `report_to="alexandria"`.

What lands in the run (docs in the README's Transformers section):

* parameters, once, when training begins: every `TrainingArguments` field as `args.<field>` (from `to_dict()`,
  which masks tokens; nested dicts flattened with dots), the effective `args.train_batch_size`,
  `args.eval_batch_size` and `args.world_size`, the model's config as `model.<key>` and
  `model.num_parameters`;
* every `on_log` as metrics at `state.global_step`, keys as the Trainer names them (`loss`, `learning_rate`,
  `grad_norm`, `epoch`, `eval_loss`, `train_runtime`, ...: `metric_for_best_model` names them so too);
  `trainer.predict`'s metrics (`test_*`), which the Trainer does not log, at the same step;
* the end: the end of training only writes out what is queued, so `trainer.evaluate()` and `predict()`
  after `train()` log into the same run; it ends "finished" when the process exits (or at `callback.end()`,
  a notebook's way), failed or killed through the process hooks (the callback never sees the exception).
  Only the world process zero logs.

`report_to="alexandria"` works once this module is imported: the Trainer looks each name up, when it is
built, in `transformers.integrations.integration_utils.INTEGRATION_TO_CALLBACK` (a plain dict, the same lookup
since transformers 4.40), and importing this module adds "alexandria" to it. `report_to="all"` does not
include it: that list is transformers' own.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import transformers
from transformers.integrations import integration_utils

from ..store import Store
from ..tracking import Run
from ..values import flatten
from .callbacks import CallbackRun

__all__ = ["AlexandriaCallback"]

_log = logging.getLogger(__name__)

#: The experiment of a run when neither `experiment=` nor `TrainingArguments.project` names one.
DEFAULT_EXPERIMENT = "huggingface"


class AlexandriaCallback(transformers.TrainerCallback):  # type: ignore[misc]
    """Logs a `Trainer`'s arguments, model config, logs and end into an Alexandria run.

    `experiment` defaults to `TrainingArguments.project` (transformers >= 4.56), else "huggingface"; the
    run's name is `TrainingArguments.run_name` when set. With a run already active in the process
    (`alexandria.start_run` around `trainer.train()`), the callback logs into it and leaves its end to its
    owner. `log_model=True` records the trained model (`save_pretrained`, with the tokenizer or processor)
    as the artifact "model" when training ends.
    """

    def __init__(
        self,
        experiment: str | None = None,
        tags: Mapping[str, Any] | None = None,
        store: str | os.PathLike[str] | Store | None = None,
        log_model: bool = False,
    ) -> None:
        self._run = CallbackRun(experiment, tags, store)
        self.log_model = log_model

    @property
    def run(self) -> Run | None:
        """The run this callback logs into (None before training begins)."""
        return self._run.run

    def _begin(self, args: Any, state: Any, model: Any) -> Run | None:
        if not state.is_world_process_zero:
            return None
        run_name = getattr(args, "run_name", None)
        if run_name == getattr(args, "output_dir", None):  # transformers 4's default run name is the output dir
            run_name = None
        run, new = self._run.begin(getattr(args, "project", None) or DEFAULT_EXPERIMENT, run_name or None)
        if new:
            self._run.log_params(_params(args, model))
        return run

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._begin(args, state, model)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: Mapping[str, Any] | None = None,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        run = self._begin(args, state, model)
        if run is not None:
            run.log_metrics(self._run.scalars(logs), step=state.global_step)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        run = self._begin(args, state, kwargs.get("model"))
        if run is not None:
            run.log_metrics(self._run.scalars(metrics), step=state.global_step)

    def end(self, status: str = "finished") -> None:
        """End the callback's run now ("finished", "failed" or "killed"): in a notebook, whose kernel outlives
        the training; elsewhere the run ends when the process exits. A run the script started is its own."""
        self._run.end(status)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self._run.run is None:
            return
        if self.log_model and model is not None:
            self._log_model(model, kwargs.get("processing_class") or kwargs.get("tokenizer"))
        self._run.training_ended()

    def _log_model(self, model: Any, processor: Any) -> None:
        run = self._run.run
        assert run is not None
        with tempfile.TemporaryDirectory(prefix="alexandria-model-") as tmp:
            model.save_pretrained(tmp)
            if processor is not None and hasattr(processor, "save_pretrained"):
                processor.save_pretrained(tmp)
            run.log_artifact(tmp, type="model", name="model")


def _params(args: Any, model: Any) -> dict[str, Any]:
    """`args.<field>` for every TrainingArguments field (tokens masked by `to_dict`) and its effective sizes,
    `model.<key>` for the model's config, and `model.num_parameters`."""
    params = flatten(args.to_dict(), "args.")
    # the batch sizes per process (per-device size times its devices), and the number of processes
    for effective in ("train_batch_size", "eval_batch_size", "world_size"):
        try:
            params[f"args.{effective}"] = getattr(args, effective)
        except Exception:  # a property that needs devices this process cannot set up
            _log.debug("alexandria: TrainingArguments.%s is not available", effective, exc_info=True)
    config = getattr(model, "config", None)
    if config is not None:
        params.update(flatten(config if isinstance(config, dict) else config.to_dict(), "model."))
    if hasattr(model, "num_parameters"):
        params["model.num_parameters"] = model.num_parameters()
    return params


def _register() -> None:
    """`report_to="alexandria"`: the Trainer instantiates the class this table names when it is built."""
    table = getattr(integration_utils, "INTEGRATION_TO_CALLBACK", None)
    if isinstance(table, dict):
        table.setdefault("alexandria", AlexandriaCallback)
    else:  # a transformers that looks report_to up elsewhere: callbacks=[AlexandriaCallback()] still works
        _log.warning(
            "alexandria: transformers %s has no INTEGRATION_TO_CALLBACK table; report_to='alexandria' will be "
            "refused: pass callbacks=[AlexandriaCallback()] instead",
            transformers.__version__,
        )


_register()
