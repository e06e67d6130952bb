"""Test and predict embeddings in TensorBoard's Projector (``add_embedding``): labels and an image sprite.

Open it with ``tensorboard --logdir runs`` (``pip install ".[tensorboard]"``), tab *Projector*.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor


class EmbeddingProjector(Callback):
    """Sends the evaluated representation of test and predict images to every ``TensorBoardLogger``.

    The first ``max_points`` samples of the loop (in data set order, on rank 0: under DDP that rank's
    share) are kept: their representation (``model.eval_output``, as the embedding metrics measure it),
    their labels as Projector metadata (class names where the data module knows them) and the images,
    each rescaled to [0, 1] and resized to ``sprite_size`` pixels, as the sprite. One extra forward pass
    of those images only; nothing happens without a TensorBoard logger.

    Args:
        max_points: samples sent per loop.
        sprite_size: side of each image in the sprite, in pixels.
    """

    def __init__(self, max_points: int = 2000, sprite_size: int = 32) -> None:
        super().__init__()
        if max_points < 1 or sprite_size < 1:
            raise ValueError(f"max_points and sprite_size must be >= 1, got {max_points}, {sprite_size}.")
        self.max_points = max_points
        self.sprite_size = sprite_size
        self._kept: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self.sent: list[str] = []  # tags sent, for inspection

    # ------------------------------------------------------------------ hooks
    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._kept["test"] = []

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._kept["predict"] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(trainer, pl_module, batch, "test")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(trainer, pl_module, batch, "predict")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._send(trainer, "test")

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._send(trainer, "predict")

    # ------------------------------------------------------------------ work
    def _keep(self, trainer: Trainer, pl_module: LightningModule, batch: Any, stage: str) -> None:
        if not trainer.is_global_zero or not _tensorboard_loggers(trainer):
            return
        kept = self._kept.setdefault(stage, [])
        room = self.max_points - sum(len(labels) for _, labels, _ in kept)
        if room <= 0:
            return
        images, labels = batch[0][:room], batch[1][:room]
        if images.ndim == 5:  # multi-view: the first view, as the metrics use
            images = images[:, 0]
        output = getattr(pl_module, "eval_output", "embeddings")
        output = output[0] if isinstance(output, list | tuple) else output
        with torch.no_grad():
            vectors = pl_module.encode(images).get(output)[:, 0]
        kept.append((vectors.float().cpu(), labels.cpu(), self._thumbnails(images).cpu()))

    def _thumbnails(self, images: Tensor) -> Tensor:
        """Images ``[B, 3, H, W]`` (normalised) -> ``[B, 3, s, s]`` in [0, 1], each min-max rescaled."""
        images = images.detach().float()
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        scaled = (images - low) / (high - low).clamp_min(1e-12)
        size = (self.sprite_size, self.sprite_size)
        return F.interpolate(scaled, size=size, mode="bilinear", antialias=True)

    def _send(self, trainer: Trainer, stage: str) -> None:
        kept = self._kept.pop(stage, [])
        if not kept or not trainer.is_global_zero:
            return
        vectors = torch.cat([v for v, _, _ in kept])
        labels = torch.cat([lab for _, lab, _ in kept]).tolist()
        sprite = torch.cat([s for _, _, s in kept]).clamp(0, 1)
        names = _class_names(trainer, stage)
        metadata = [names[k] if names is not None and 0 <= k < len(names) else str(k) for k in labels]
        tag = f"{stage}/embeddings"
        for logger in _tensorboard_loggers(trainer):
            try:
                logger.experiment.add_embedding(
                    vectors, metadata=metadata, label_img=sprite, global_step=trainer.global_step, tag=tag
                )
                self.sent.append(tag)
            except Exception as error:  # noqa: BLE001 - a picture for TensorBoard must never stop a run
                rank_zero_warn(f"EmbeddingProjector: could not send {tag} to TensorBoard: {error!r}")


def _tensorboard_loggers(trainer: Trainer) -> list:
    from lightning.pytorch.loggers import TensorBoardLogger

    return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def _class_names(trainer: Trainer, stage: str) -> list[str] | None:
    datamodule = getattr(trainer, "datamodule", None)
    # Test and predict use the test split, whose classes differ with data.unseen_classes.
    for attribute in ("test_class_names", "class_names"):
        try:
            names = getattr(datamodule, attribute, None)
        except Exception:  # noqa: BLE001 - a data module whose names need setup
            names = None
        if names is not None:
            return [str(name) for name in names]
    return None
