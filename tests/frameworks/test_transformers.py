"""alexandria.integrations.transformers against the real Trainer: a tiny BERT built from a config (random
weights, never a download) trained on seeded random token ids in a child process; the rows in SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alexandria.store import Store
from tests.conftest import child_env, make_seed, need_framework, python, query

transformers = need_framework("transformers")

#: A training script as a user writes it: argv = output dir, seed, how the callback is given, what happens.
SCRIPT = r"""
import json, os, signal, sys
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

out, seed, how, event = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.manual_seed(seed)
gen = torch.Generator().manual_seed(seed)
config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=37, max_position_embeddings=32, num_labels=2)
model = BertForSequenceClassification(config)

class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(0, 100, (n, 16), generator=gen)
        self.labels = torch.randint(0, 2, (n,), generator=gen)
    def __len__(self):
        return len(self.labels)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}

class Trouble(TrainerCallback):
    # what goes wrong, at the beginning of step 4 (after three logged steps)
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 3 and event == "raise":
            raise RuntimeError("the loader broke at step 3")
        if state.global_step == 3 and event == "sigint":
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
        if state.global_step == 3 and event == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stopping the job

callbacks = [Trouble()]
report_to = "none"
if how == "report_to":
    try:  # transformers' own list does not know the name until the integration is imported
        Trainer(model=model, args=TrainingArguments(output_dir=out, report_to="alexandria", use_cpu=True))
    except ValueError as exc:
        print("REFUSED", exc, file=sys.stderr)
    else:
        raise SystemExit("report_to='alexandria' was accepted before the import")
    import alexandria.integrations.transformers  # noqa: F401  registers "alexandria"
    report_to = "alexandria"
else:
    from alexandria.integrations.transformers import AlexandriaCallback
    callbacks.append(AlexandriaCallback(experiment="tiny-bert", tags={"team": "nlp"}, log_model=event == "finish"))

args = TrainingArguments(
    output_dir=out, report_to=report_to, run_name="bert-2x32", logging_steps=1, max_steps=6,
    per_device_train_batch_size=4, eval_strategy="steps", eval_steps=3, save_strategy="no", use_cpu=True,
    disable_tqdm=True, learning_rate=3e-4, seed=seed, hub_token="hf_secret_never_logged",
)
trainer = Trainer(model=model, args=args, train_dataset=Tokens(24), eval_dataset=Tokens(8), callbacks=callbacks)
print("CALLBACKS", json.dumps([type(c).__name__ for c in trainer.callback_handler.callbacks]), flush=True)
if event == "adopt":
    import alexandria
    with alexandria.start_run(experiment="mine") as run:
        trainer.train()
        run.log_metric("after_train", 1.0, step=7)  # the callback left the run open for its owner
else:
    trainer.train()
    if event == "finish":
        trainer.evaluate()
        trainer.predict(Tokens(8))
print("HISTORY", json.dumps(trainer.state.log_history), flush=True)
print("NUM_PARAMETERS", model.num_parameters(), flush=True)
import torch.distributed as dist
if dist.is_initialized():  # as torch asks: a process group left to exit can abort ("terminate called ...")
    dist.destroy_process_group()
"""


def train(tmp_path: Path, how: str, event: str) -> tuple[int, str, str]:
    """Run the script to its end in a process of its own: (exit code, stdout, stderr)."""
    proc = python(
        SCRIPT, str(tmp_path / "out"), str(make_seed()), how, event,
        env=child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
    )
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out.decode(), err.decode()


def printed(out: str, what: str) -> str:
    return next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(what + " "))


def the_run(store: Store) -> tuple[str, str, str, str | None, str | None]:
    runs = query(store, "SELECT id, experiment_name, name, status, error FROM run")
    assert len(runs) == 1, runs
    return runs[0]  # type: ignore[return-value]


def points(store: Store, run_id: str, key: str) -> list[tuple[int, float]]:
    found = query(store, f"SELECT step, value FROM metric WHERE run_id = '{run_id}' AND key = '{key}' ORDER BY id")
    return [(int(s), float(v)) for s, v in found]  # type: ignore[arg-type]


def test_trainer_logs_arguments_config_every_step_evaluation_and_its_end(store: Store, tmp_path: Path) -> None:
    code, out, err = train(tmp_path, "callbacks", "finish")
    assert code == 0, err
    run_id, experiment, name, status, error = the_run(store)
    assert (experiment, name, status, error) == ("tiny-bert", "bert-2x32", "finished", None)
    assert query(store, f"SELECT value FROM tag WHERE run_id = '{run_id}' AND key = 'team'") == [("nlp",)]

    params = dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))
    assert params["args.learning_rate"] == "0.0003"
    assert params["args.logging_steps"] == "1"
    assert params["args.max_steps"] == "6"
    assert params["args.per_device_train_batch_size"] == "4"
    assert params["args.train_batch_size"] == "4"
    assert params["args.world_size"] == "1"
    assert params["args.hub_token"] == "<HUB_TOKEN>"
    assert not any("hf_secret_never_logged" in v for v in params.values())  # type: ignore[operator]
    assert params["model.hidden_size"] == "32"
    assert params["model.num_hidden_layers"] == "2"
    assert params["model.vocab_size"] == "100"
    assert params["model.id2label.1"] == "LABEL_1"  # nested config flattened with dots
    assert params["model.num_parameters"] == printed(out, "NUM_PARAMETERS")

    # every on_log at its global step, with the Trainer's own values and keys
    history = json.loads(printed(out, "HISTORY"))
    train_logs = [h for h in history if "loss" in h]
    assert [h["step"] for h in train_logs] == [1, 2, 3, 4, 5, 6]
    assert points(store, run_id, "loss") == [(h["step"], h["loss"]) for h in train_logs]
    assert points(store, run_id, "learning_rate") == [(h["step"], h["learning_rate"]) for h in train_logs]
    assert [s for s, _ in points(store, run_id, "grad_norm")] == [1, 2, 3, 4, 5, 6]
    evals = [h for h in history if "eval_loss" in h]
    assert [h["step"] for h in evals] == [3, 6, 6]  # two during training, trainer.evaluate() after it
    assert points(store, run_id, "eval_loss") == [(h["step"], h["eval_loss"]) for h in evals]
    (summary,) = [h for h in history if "train_runtime" in h]
    assert points(store, run_id, "train_loss") == [(6, summary["train_loss"])]
    # trainer.predict's metrics: not logged by the Trainer, by the callback at the last step
    assert [s for s, _ in points(store, run_id, "test_loss")] == [6]

    # the end of training is not the run's: evaluate() and predict() after it log into the same life, which
    # ends at exit
    lifecycle = query(store, f"SELECT event, status, attempt FROM lifecycle WHERE run_id = '{run_id}' ORDER BY id")
    assert lifecycle == [("started", "running", 0), ("finished", "finished", 0)]
    assert query(store, f"SELECT DISTINCT attempt FROM metric WHERE run_id = '{run_id}'") == [(0,)]

    # log_model=True: the trained model, as save_pretrained writes it, is the artifact "model"
    ((kind, path),) = query(store, f"SELECT type, path FROM artifact WHERE run_id = '{run_id}' AND name = 'model'")
    assert kind == "model"
    saved = store.root / str(path)
    assert (saved / "config.json").is_file() and (saved / "model.safetensors").is_file()
    assert json.loads((saved / "config.json").read_text())["hidden_size"] == 32


def test_report_to_alexandria_works_once_the_integration_is_imported(store: Store, tmp_path: Path) -> None:
    code, out, err = train(tmp_path, "report_to", "none")
    assert code == 0, err
    assert "REFUSED alexandria is not supported" in err  # transformers' own message, before the import
    assert "AlexandriaCallback" in json.loads(printed(out, "CALLBACKS"))
    run_id, experiment, name, status, _ = the_run(store)
    # no experiment given: TrainingArguments.project (transformers' default "huggingface")
    default = getattr(transformers.TrainingArguments, "project", "huggingface")
    assert (experiment, name, status) == (default, "bert-2x32", "finished")
    assert [s for s, _ in points(store, run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in points(store, run_id, "eval_loss")] == [3, 6]


def test_a_training_that_raises_is_failed_with_what_it_logged(store: Store, tmp_path: Path) -> None:
    code, _, err = train(tmp_path, "callbacks", "raise")
    assert code == 1 and "the loader broke at step 3" in err
    run_id, _, _, status, error = the_run(store)
    assert status == "failed"
    assert error == "RuntimeError: the loader broke at step 3"
    assert [s for s, _ in points(store, run_id, "loss")] == [1, 2, 3]
    assert [s for s, _ in points(store, run_id, "eval_loss")] == [3]


@pytest.mark.parametrize("sig", ["sigint", "sigterm"])
def test_ctrl_c_or_sigterm_during_training_is_killed(store: Store, tmp_path: Path, sig: str) -> None:
    code, _, err = train(tmp_path, "callbacks", sig)
    assert code != 0, err
    run_id, _, _, status, _ = the_run(store)
    assert status == "killed"
    assert [s for s, _ in points(store, run_id, "loss")] == [1, 2, 3]


def test_a_run_the_script_started_is_logged_into_and_left_to_it(store: Store, tmp_path: Path) -> None:
    code, _, err = train(tmp_path, "callbacks", "adopt")
    assert code == 0, err
    run_id, experiment, _, status, _ = the_run(store)  # one run: the script's, not a second one
    assert (experiment, status) == ("mine", "finished")
    assert [s for s, _ in points(store, run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    params = dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))
    assert params["model.hidden_size"] == "32"
    assert points(store, run_id, "after_train") == [(7, 1.0)]
    assert query(store, f"SELECT count(*) FROM lifecycle WHERE run_id = '{run_id}'") == [(2,)]  # started, finished


def test_under_torchrun_the_world_process_zero_logs_every_step_once(store: Store, tmp_path: Path) -> None:
    """Two processes of one DDP job (gloo on CPU), each with the callback: one run, from rank 0."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         str(tmp_path / "out"), str(make_seed()), "callbacks", "ddp"],
        env=child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_id, experiment, _, status, _ = the_run(store)
    assert (experiment, status) == ("tiny-bert", "finished")
    assert [s for s, _ in points(store, run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in points(store, run_id, "eval_loss")] == [3, 6]
    params = dict(query(store, f"SELECT key, value FROM parameter WHERE run_id = '{run_id}'"))
    assert params["args.world_size"] == "2"
    assert len(list(store.runs_dir.iterdir())) == 1  # rank 1 created no run directory


def test_only_the_world_process_zero_logs(store: Store) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from alexandria.integrations.transformers import AlexandriaCallback

    callback = AlexandriaCallback(experiment="ranks", store=store)
    args = TrainingArguments(output_dir=str(store.root / "out"), report_to="none", use_cpu=True)
    state = TrainerState(is_world_process_zero=False, global_step=1)
    callback.on_train_begin(args, state, TrainerControl())
    callback.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    callback.on_train_end(args, state, TrainerControl())
    assert callback.run is None
    assert not store.runs_dir.exists() or not any(store.runs_dir.iterdir())


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never a hub: the tests build their models from configs."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
