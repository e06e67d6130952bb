"""A test-only callback that kills its own process at a chosen training batch (resume tests)."""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback, LightningModule, Trainer


class KillAt(Callback):
    """Sends ``signal_name`` (``SIGTERM`` or ``SIGKILL``) to this process before batch ``batch`` of epoch
    ``epoch``, on rank ``rank`` only (a scheduler signals every process; Lightning shares a SIGTERM that
    one rank got with the others)."""

    def __init__(self, epoch: int, batch: int, signal_name: str = "SIGTERM", rank: int = 0) -> None:
        self.epoch, self.batch, self.rank = epoch, batch, rank
        self.signal = getattr(signal, signal_name)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx, trainer.global_rank) == (self.epoch, self.batch, self.rank):
            os.kill(os.getpid(), self.signal)


class KillAtTest(Callback):
    """Sends SIGTERM to this process before test batch ``batch`` (``test_after_fit`` must stop on it)."""

    def __init__(self, batch: int = 0) -> None:
        self.batch = batch

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)
