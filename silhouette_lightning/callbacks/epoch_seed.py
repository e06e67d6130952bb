"""Reseed the random number generators at the start of every training epoch, from (seed, epoch, rank)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class EpochSeed(Callback):
    """Makes each training epoch's randomness (augmentations, dropout) a function of the run's seed, the
    epoch and the process rank only.

    Why: a checkpoint does not hold the random number generators' states, so a run resumed at an epoch
    boundary would otherwise draw different augmentations than the uninterrupted run. With this (and the
    data module's per-epoch seeded shuffling) a resumed run with ``num_workers: 0`` repeats the
    uninterrupted one exactly on the CPU. With worker processes, the workers' seeds are drawn when the
    loader's iterator is created, which Lightning does before this hook on a resumed epoch: such runs
    resume statistically, not bit for bit.

    The seed is ``seed_everything``'s (``PL_GLOBAL_SEED``); without one, the callback does nothing.
    """

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is None:
            return
        epoch, rank = trainer.current_epoch, trainer.global_rank
        seed_torch, seed_numpy, seed_python = epoch_seeds(int(seed), epoch, rank)
        torch.manual_seed(seed_torch)
        np.random.seed(seed_numpy)  # noqa: NPY002 - the legacy global RNG is the one user code draws from
        random.seed(seed_python)


def epoch_seeds(seed: int, epoch: int, rank: int) -> tuple[int, int, int]:
    """Three independent 32-bit seeds for (torch, numpy, random), different for every (seed, epoch, rank)."""
    state = np.random.SeedSequence([seed % 2**63, epoch, rank]).generate_state(3)
    return int(state[0]), int(state[1]), int(state[2])
