"""Wall-clock time of each training epoch's batches, logged as ``train/epoch_time_s`` (cost comparisons)."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class EpochTimer(Callback):
    """Logs the seconds from the start of a training epoch to the end of its last training batch.

    That covers data loading, forward, backward and optimizer steps, i.e. what a loss adds to the cost of
    training, and excludes validation (which Lightning runs before ``on_train_epoch_end``), checkpoints and
    plots, which do not depend on the training loss. Rank 0's clock (under DDP the ranks wait for each
    other at every gradient all-reduce anyway).
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._last_batch_end: float | None = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start, self._last_batch_end = time.perf_counter(), None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # No start: the run resumed mid-epoch, whose start was in the previous process.
        if self._start is not None and self._last_batch_end is not None:
            seconds = self._last_batch_end - self._start
            pl_module.log("train/epoch_time_s", seconds, on_step=False, on_epoch=True, rank_zero_only=True)
        self._start = None
