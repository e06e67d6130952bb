"""Lightning callback that draws the embedding map and the silhouette diagram of validation and test."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from silhouette_lightning.callbacks.embedding_map import PROJECTIONS, Projection, plot_embedding_map
from silhouette_lightning.callbacks.silhouette_diagram import plot_silhouette_diagram
from silhouette_lightning.metrics.silhouette_score import silhouette_samples_exact


def _evaluated_epoch(trainer: Trainer) -> int:
    """The epoch of the weights being evaluated: outside ``fit`` (``test_after_fit`` tests the best
    checkpoint, ``test --ckpt_path``) the checkpoint's epoch, not the trainer's last one."""
    state, ckpt_path = getattr(trainer, "state", None), getattr(trainer, "ckpt_path", None)
    if state is not None and state.fn != TrainerFn.FITTING and ckpt_path:
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
            return int(checkpoint["epoch"])
        except Exception:  # noqa: BLE001 - a label must never stop the run
            pass
    return trainer.current_epoch


class EmbeddingPlots(Callback):
    """Saves an embedding map and a silhouette diagram of the evaluated embeddings as PNG, and logs them.

    At the end of a validation epoch of ``fit`` (every ``every_n_epochs`` epochs and at the last epoch,
    ``max_epochs``; never during the sanity check), of ``validate``, and of ``test``, it asks the module's
    :class:`~silhouette_lightning.metrics.EmbeddingEvaluation` of that stage (``pl_module.evaluation(stage)``:
    the first ``eval_output``, L2-normalised) for the samples its metrics are computed on, gathered from all
    processes (:meth:`~silhouette_lightning.metrics.EmbeddingEvaluation.send_samples_to`: callbacks'
    epoch-end hooks run before the LightningModule's, whose ``compute()`` then hands them over). It
    subsamples ``max_points`` of them (seeded), computes exact per-sample silhouettes (the distance of the
    evaluation's silhouette) and, on rank 0 only, writes
    ``<trainer.log_dir>/plots/{stage}_embedding_map_epoch{E}.png`` and
    ``..._silhouette_diagram_epoch{E}.png`` and sends both to a ``TensorBoardLogger``
    (``add_figure``, tag ``{stage}/embedding_map`` / ``{stage}/silhouette_diagram``).

    A plotting error never stops training: it becomes a warning. With fewer than two classes the
    silhouette diagram is skipped with a warning.

    Args:
        every_n_epochs: plot every this many epochs during fit (the last epoch always).
        projection: ``"auto"`` (UMAP when ``umap-learn`` is installed, else t-SNE), ``"umap"``,
            ``"tsne"`` or ``"pca"``. A 2-D embedding is drawn as it is.
        max_points: at most this many samples are plotted (a seeded random subset); ``None``: all.
        seed: of the subsampling and of the projection.
    """

    def __init__(
        self,
        every_n_epochs: int = 10,
        projection: Projection = "auto",
        max_points: int | None = 5000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        if projection not in PROJECTIONS:
            raise ValueError(
                f"projection must be one of {', '.join(map(repr, PROJECTIONS))}, got {projection!r}."
            )
        if max_points is not None and max_points < 2:
            raise ValueError(f"max_points must be >= 2 or None, got {max_points}.")
        self.every_n_epochs = every_n_epochs
        self.projection = projection
        self.max_points = max_points
        self.seed = seed
        self.saved: list[str] = []  # paths written on this rank (rank 0), for inspection
        self.last_projection: str | None = None  # method used by the latest map

    # ------------------------------------------------------------------ hooks
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING and not self._due(trainer):
            return
        self._request(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._request(trainer, pl_module, "test")

    def _due(self, trainer: Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch >= trainer.max_epochs
        return last or epoch % self.every_n_epochs == 0

    # ------------------------------------------------------------------ work
    def _request(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Ask the module's evaluation of ``stage`` for its samples (same decision on every rank)."""
        evaluation = getattr(pl_module, "evaluation", None)
        evaluation = evaluation(stage) if callable(evaluation) else None
        if not hasattr(evaluation, "send_samples_to"):
            rank_zero_warn(
                f"EmbeddingPlots: {type(pl_module).__name__} has no `evaluation(stage)` EmbeddingEvaluation, "
                "so there are no embeddings to plot."
            )
            return
        distance = getattr(evaluation, "silhouette_distance", "euclidean")
        evaluation.send_samples_to(
            lambda embeddings, labels: self._plot(trainer, stage, embeddings, labels, distance)
        )

    def _plot(self, trainer: Trainer, stage: str, embeddings: Tensor, labels: Tensor, distance: str) -> None:
        """The gathered samples, on every rank: the log folder (a collective), then plotting on rank 0."""
        folder = os.path.join(trainer.log_dir or trainer.default_root_dir, "plots")  # log_dir broadcasts
        if not trainer.is_global_zero:
            return
        try:
            self._draw(trainer, stage, embeddings.detach().float(), labels.detach().long(), distance, folder)
        except Exception as error:  # noqa: BLE001 - pictures must never stop training
            rank_zero_warn(f"EmbeddingPlots: the {stage} plots failed and were skipped: {error!r}")

    def _draw(
        self, trainer: Trainer, stage: str, embeddings: Tensor, labels: Tensor, distance: str, folder: str
    ) -> None:
        embeddings, labels = embeddings.cpu(), labels.cpu()
        if embeddings.shape[0] < 2:
            rank_zero_warn(f"EmbeddingPlots: {embeddings.shape[0]} {stage} samples, nothing to plot.")
            return
        if self.max_points is not None and embeddings.shape[0] > self.max_points:
            generator = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(embeddings.shape[0], generator=generator)[: self.max_points].sort().values
            embeddings, labels = embeddings[keep], labels[keep]
        class_names = self._class_names(trainer, stage)
        epoch = _evaluated_epoch(trainer)
        os.makedirs(folder, exist_ok=True)
        figures = {}
        try:
            figure = plot_embedding_map(
                embeddings, labels, class_names, self.projection, self.seed, title=f"{stage} epoch {epoch}"
            )
            self.last_projection = figure.projection_method
            figures["embedding_map"] = figure
        except Exception as error:  # noqa: BLE001
            rank_zero_warn(f"EmbeddingPlots: the {stage} embedding map failed and was skipped: {error!r}")
        num_classes = int(torch.unique(labels).numel())
        if num_classes < 2:
            rank_zero_warn(
                f"EmbeddingPlots: the {stage} embeddings hold {num_classes} class; the silhouette is "
                "undefined, so the silhouette diagram is skipped."
            )
        else:
            try:
                silhouettes = silhouette_samples_exact(embeddings, labels, distance=distance)
                figures["silhouette_diagram"] = plot_silhouette_diagram(
                    silhouettes, labels, class_names, title=f"{stage} epoch {epoch}"
                )
            except Exception as error:  # noqa: BLE001
                rank_zero_warn(
                    f"EmbeddingPlots: the {stage} silhouette diagram failed and was skipped: {error!r}"
                )
        for name, figure in figures.items():
            path = os.path.join(folder, f"{stage}_{name}_epoch{epoch}.png")
            figure.savefig(path, format="png")
            self.saved.append(path)
            self._log_figure(trainer, f"{stage}/{name}", figure)

    @staticmethod
    def _class_names(trainer: Trainer, stage: str) -> Sequence[str] | None:
        datamodule = getattr(trainer, "datamodule", None)
        # With data.unseen_classes the test split has its own classes (and labels 0..U-1).
        attribute = (
            "test_class_names"
            if stage == "test" and hasattr(datamodule, "test_class_names")
            else "class_names"
        )
        try:
            names = getattr(datamodule, attribute, None)
        except Exception:  # noqa: BLE001 - a data module whose names need setup
            return None
        return list(names) if names is not None else None

    @staticmethod
    def _log_figure(trainer: Trainer, tag: str, figure: Any) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                try:
                    logger.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)
                except Exception as error:  # noqa: BLE001
                    rank_zero_warn(f"EmbeddingPlots: could not send {tag} to TensorBoard: {error!r}")
