"""The optimizer and learning-rate schedule of a run (``model.optimizer``, ``model.lr_scheduler``), with
the checks of the settings that would otherwise train nothing, or NaN, without an error."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from silhouette_lightning.errors import ConfigError


def configure_optimization(
    parameters: Iterable[nn.Parameter],
    optimizer: OptimizerCallable,
    lr_scheduler: LRSchedulerCallable | None = None,
    max_epochs: int | None = None,
) -> Any:
    """What ``LightningModule.configure_optimizers`` returns: ``optimizer`` over the trainable
    ``parameters``, and with ``lr_scheduler`` a schedule stepped once per epoch (``ReduceLROnPlateau``
    monitors ``val/loss``). ``max_epochs``: the run's length, to warn about a cosine schedule of another
    length (None: unknown, no check)."""
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        # E.g. `fit` with configs/method/introspection.yaml (frozen backbone, no term on head or
        # classifier); torch would fail with "optimizer got an empty parameter list".
        raise ConfigError(
            "Nothing to train: the backbone is frozen (model.backbone.init_args.freeze) and no loss term "
            "trains the projection head or the classifier. The introspection baseline is evaluated with "
            "`silhouette-fit test` or `validate`, not `fit`; for linear probing set "
            "model.online_linear_eval: true or add a term on the logits or embeddings."
        )
    try:
        built = optimizer(trainable)
    except ValueError as err:
        if "learning rate" not in str(err):
            raise
        # torch refuses a negative lr itself, as a bare ValueError from deep inside the optimizer.
        raise ConfigError(f"model.optimizer.init_args.lr must be a finite number > 0 ({err}).") from err
    check_learning_rates(built)
    if lr_scheduler is None:
        return built
    scheduler = lr_scheduler(built)
    warn_if_cosine_outlasts_the_run(scheduler, max_epochs)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        config["monitor"] = "val/loss"
    return {"optimizer": built, "lr_scheduler": config}


def check_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """A learning rate <= 0 or NaN trains nothing (or NaN) without any error from torch: refuse it."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(
                f"model.optimizer.init_args.lr must be a finite number > 0, got {lr}. Set it to a positive "
                "learning rate (e.g. 1e-3 for AdamW)."
            )


def warn_if_cosine_outlasts_the_run(scheduler: Any, max_epochs: int | None) -> None:
    """Warn when a per-epoch cosine schedule's ``T_max`` is not the run's length.

    Why: lowering ``--trainer.max_epochs`` for a quick run leaves ``T_max`` at the config's value, so the
    learning rate never decays (T_max > epochs), or a longer run climbs back up after ``T_max`` epochs.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    if max_epochs is None or max_epochs < 0 or scheduler.T_max == max_epochs:
        return
    rank_zero_warn(
        f"model.lr_scheduler.init_args.T_max is {scheduler.T_max} but trainer.max_epochs is {max_epochs}: "
        "the cosine schedule is stepped once per epoch and will not end at the run's end. Set "
        f"--model.lr_scheduler.init_args.T_max {max_epochs} (or the same value for both)."
    )
