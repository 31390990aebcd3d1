"""alexandria.integrations.keras against real Keras 3 (torch backend): a tiny Dense model fit on seeded random
data in a child process; the rows in SQL."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from alexandria.errors import InvalidInputError
from alexandria.store import Store
from tests.conftest import child_env, make_seed, need_framework, python, query

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras 3 defaults to TensorFlow, which is not installed
keras = need_framework("keras")

#: argv = seed, log_every_n_batches, what happens. 40 samples, 20% for validation, batch 8: 4 batches/epoch.
SCRIPT = r"""
import json, os, signal, sys
import numpy as np
import keras
from alexandria.integrations.keras import AlexandriaCallback

seed, every, event = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(seed)
x = np.random.default_rng(seed).normal(size=(40, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
layers = [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)]
model = keras.Sequential(layers, name="tiny")
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])

batches = []
class Record(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        batches.append(dict(logs))
        if event == "raise" and len(batches) == 6:
            raise RuntimeError("bad batch 6")
        if event == "sigint" and len(batches) == 6:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

callback = AlexandriaCallback(
    experiment="keras-tiny", name="dense-8", tags={"kind": "dense"}, log_every_n_batches=every
)
if event == "adopt":  # the script's own run, and a callback per fit: both log into it
    import alexandria
    with alexandria.start_run(experiment="mine") as run:
        history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, verbose=0, callbacks=[callback])
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[AlexandriaCallback(log_every_n_batches=0)])
        run.log_metric("after_fit", 1.0, step=99)
else:
    history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, verbose=0, callbacks=[Record(), callback])
if event == "end-refit":  # a notebook's way: end the run, later fit again with the same callback
    callback.end()
    from alexandria.db import open_database
    with open_database(callback._run.run.store).connect() as conn:
        print("STATUS", conn.exec_driver_sql("SELECT status FROM run").scalar_one(), flush=True)
if event in ("refit", "end-refit"):
    model.fit(x, y, batch_size=8, epochs=1, validation_split=0.2, verbose=0, callbacks=[Record(), callback])
print("HISTORY", json.dumps(history.history), flush=True)
print("BATCHES", json.dumps(batches), flush=True)
print("NUM_PARAMETERS", model.count_params(), flush=True)
"""


def fit(every: int, event: str = "none") -> tuple[int, str, str]:
    proc = python(SCRIPT, str(make_seed()), str(every), event, env=child_env(KERAS_BACKEND="torch"))
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out.decode(), err.decode()


def printed(out: str, what: str) -> str:
    return next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(what + " "))


def the_run(store: Store) -> tuple[str, str, str | None, str | None]:
    runs = query(store, "SELECT id, experiment_name, status, error, name FROM run")
    assert len(runs) == 1, runs
    if runs[0][1] != "mine":  # not the script's own run
        assert runs[0][4] == "dense-8"
    return runs[0][:4]  # type: ignore[return-value]


def points(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    found = query(store, f"SELECT step, value FROM metric WHERE run_id = '{run_id}' AND key = '{key}' ORDER BY id")
    return [(int(s), float(v)) for s, v in found]  # type: ignore[arg-type]


def test_fit_logs_parameters_every_batch_every_epoch_and_its_end(store: Store) -> None:
    code, out, err = fit(every=1)
    assert code == 0, err
    run_id, experiment, status, error = the_run(store)
    assert (experiment, status, error) == ("keras-tiny", "finished", None)
    assert query(store, f"SELECT value FROM tag WHERE run_id = '{run_id}' AND key = 'kind'") == [("dense",)]

    params = dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))
    assert params["fit.epochs"] == "3"
    assert params["fit.steps"] == "4"
    assert params["optimizer.class"] == "Adam"
    assert params["optimizer.learning_rate"] == "0.01"  # as written, not as float32 widens it
    assert params["optimizer.beta_1"] == "0.9"
    assert params["compile.loss"] == "mse"
    assert params["compile.metrics"] == '["mae"]'
    assert params["model.name"] == "tiny"
    assert params["model.num_parameters"] == printed(out, "NUM_PARAMETERS")

    # every batch at the global batch count, with Keras' own values
    batches = json.loads(printed(out, "BATCHES"))
    assert len(batches) == 12
    assert points(store, run_id, "batch/loss") == [(i + 1, b["loss"]) for i, b in enumerate(batches)]
    assert points(store, run_id, "batch/mae") == [(i + 1, b["mae"]) for i, b in enumerate(batches)]
    # every epoch, keys as in History, at the global batch count when the epoch ended
    history = json.loads(printed(out, "HISTORY"))
    for key in ("loss", "mae", "val_loss", "val_mae"):
        assert points(store, run_id, key) == [(4, history[key][0]), (8, history[key][1]), (12, history[key][2])]
    assert points(store, run_id, "epoch") == [(4, 1.0), (8, 2.0), (12, 3.0)]
    # the optimizer's learning rate, as written (float32 holds 0.009999999776482582)
    assert points(store, run_id, "learning_rate") == [(4, 0.01), (8, 0.01), (12, 0.01)]
    assert points(store, run_id, "batch/learning_rate") == [(i, 0.01) for i in range(1, 13)]


def test_log_every_n_batches_and_a_second_fit_count_on(store: Store) -> None:
    code, _, err = fit(every=3, event="refit")
    assert code == 0, err
    run_id, _, status, _ = the_run(store)  # one callback, one run: the second fit continues it
    assert status == "finished"
    assert [s for s, _ in points(store, run_id, "batch/loss")] == [3, 6, 9, 12, 15]
    assert [s for s, _ in points(store, run_id, "val_loss")] == [4, 8, 12, 16]
    assert query(store, f"SELECT event, attempt FROM lifecycle WHERE run_id = '{run_id}' ORDER BY id") == [
        ("started", 0), ("finished", 0),  # the end of a fit is not the run's: it ends at exit
    ]
    assert query(store, f"SELECT count(*) FROM parameter WHERE run_id = '{run_id}' AND key = 'fit.epochs'") == [(1,)]


def test_end_ends_the_run_now_and_a_later_fit_resumes_it(store: Store) -> None:
    code, out, err = fit(every=3, event="end-refit")
    assert code == 0, err
    assert printed(out, "STATUS") == "finished"  # before the process ends: end() ended it
    run_id, _, status, _ = the_run(store)
    assert status == "finished"
    assert [s for s, _ in points(store, run_id, "val_loss")] == [4, 8, 12, 16]  # the second fit counts on
    assert query(store, f"SELECT event, attempt FROM lifecycle WHERE run_id = '{run_id}' ORDER BY id") == [
        ("started", 0), ("finished", 0), ("resumed", 1), ("finished", 1),
    ]


def test_epochs_only(store: Store) -> None:
    code, _, err = fit(every=0)
    assert code == 0, err
    run_id, _, _, _ = the_run(store)
    assert points(store, run_id, "batch/loss") == []
    assert [s for s, _ in points(store, run_id, "loss")] == [4, 8, 12]


def test_a_fit_that_raises_is_failed_with_what_it_logged(store: Store) -> None:
    code, _, err = fit(every=1, event="raise")
    assert code == 1 and "bad batch 6" in err
    run_id, _, status, error = the_run(store)
    assert (status, error) == ("failed", "RuntimeError: bad batch 6")
    assert [s for s, _ in points(store, run_id, "batch/loss")] == [1, 2, 3, 4, 5]  # the 6th raised first
    assert [s for s, _ in points(store, run_id, "loss")] == [4]


def test_ctrl_c_during_a_fit_is_killed(store: Store) -> None:
    code, _, err = fit(every=1, event="sigint")
    assert code != 0 and "KeyboardInterrupt" in err
    run_id, _, status, _ = the_run(store)
    assert status == "killed"
    assert [s for s, _ in points(store, run_id, "loss")] == [4]


def test_a_run_the_script_started_is_logged_into_and_left_to_it(store: Store) -> None:
    code, _, err = fit(every=1, event="adopt")
    assert code == 0, err
    run_id, experiment, status, _ = the_run(store)
    assert (experiment, status) == ("mine", "finished")
    assert points(store, run_id, "after_fit") == [(99, 1.0)]  # the callbacks did not end the script's run
    assert [s for s, _ in points(store, run_id, "val_loss")] == [4, 8, 12]
    # the second fit's epochs=1 cannot replace the first's: kept, with a warning, and training went on
    params = dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))
    assert params["fit.epochs"] == "3"
    assert "parameter 'fit.epochs'" in err and "cannot become '1'" in err
    assert query(store, f"SELECT count(*) FROM lifecycle WHERE run_id = '{run_id}'") == [(2,)]  # started, finished


def test_log_every_n_batches_is_checked() -> None:
    from alexandria.integrations.keras import AlexandriaCallback

    for wrong in (-1, 1.5, True):
        with pytest.raises(InvalidInputError, match="log_every_n_batches"):
            AlexandriaCallback(log_every_n_batches=wrong)  # type: ignore[arg-type]


def test_keras_is_imported_only_by_the_integration(tmp_path: Path) -> None:
    code = "import sys, alexandria; assert 'keras' not in sys.modules and 'transformers' not in sys.modules"
    proc = python(code, env=child_env())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
