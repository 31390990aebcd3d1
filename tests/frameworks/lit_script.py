"""A small Lightning training script the tests run as a real process: python lit_script.py MODE STORE ROOT [PACKAGE].

MODE: fit, fit_test (fit, then test and validate on the same trainer), fail (an exception at step 3),
interrupt (KeyboardInterrupt at step 3), sigterm (Lightning's SIGTERMException at step 3),
ckpt (checkpoints logged as artifacts), ddp (two CPU processes through Lightning's own launcher).
PACKAGE: lightning (default) or pytorch_lightning. The data are random (seeded), the model a tiny MLP.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

mode, store, root = sys.argv[1], sys.argv[2], sys.argv[3]
package = sys.argv[4] if len(sys.argv) > 4 else "lightning"
pl = importlib.import_module("lightning.pytorch" if package == "lightning" else "pytorch_lightning")
integration = "lightning" if package == "lightning" else "pytorch_lightning"
AlexandriaLogger = importlib.import_module(f"alexandria.integrations.{integration}").AlexandriaLogger


class MLP(pl.LightningModule):
    def __init__(self, hidden: int = 8, lr: float = 0.05, optimizer: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        if mode == "fail" and self.global_step == 3:
            raise RuntimeError("boom at step 3")
        if mode == "interrupt" and self.global_step == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, inside the fit
        if mode == "sigterm" and self.global_step == 3:  # a real SIGTERM: Lightning's handler, over ours, stops
            os.kill(os.getpid(), signal.SIGTERM)  # the fit at this batch's end with its SIGTERMException
        loss = self._loss(batch)
        self.log("train_loss", loss)
        # every rank logs its own value (no sync, not rank 0 only): one point per rank and step
        self.log("rank_seen", float(self.global_rank), rank_zero_only=False, sync_dist=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    pl.seed_everything(1234, verbose=False)
    generator = torch.Generator().manual_seed(1234)
    data = TensorDataset(torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator))
    loader = DataLoader(data, batch_size=8)
    logger = AlexandriaLogger(
        experiment="lit", store=store, tags={"suite": "lightning"}, log_checkpoints=mode == "ckpt"
    )
    ddp = mode == "ddp"
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=mode == "ckpt",
        default_root_dir=root,
        accelerator="cpu",
        devices=2 if ddp else 1,
        strategy="ddp" if ddp else "auto",
    )
    model = MLP(optimizer={"name": "sgd", "momentum": 0.0})
    trainer.fit(model, loader, loader)
    if mode == "fit_test":
        trainer.test(model, loader)
        trainer.validate(model, loader)
    # each rank says which run it logged into, in a file of its own (the ranks share one stdout)
    Path(root).mkdir(parents=True, exist_ok=True)
    Path(root, f"rank{trainer.global_rank}.run").write_text(logger.version)
    if torch.distributed.is_initialized():  # as torch asks: a process group left to exit can abort the process
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
