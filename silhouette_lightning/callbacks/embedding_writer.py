"""``predict`` output as one ``.npz`` file that numpy (and pandas, via numpy) reads directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

DEFAULT_FILENAME = "predictions.npz"


class EmbeddingWriter(BasePredictionWriter):
    """Writes all predictions of a ``predict`` run to ``output_path`` (default
    ``<trainer.log_dir>/predictions.npz``) and prints where.

    The file holds, in the order of the predict data set (sample ``i`` of the split is row ``i``):

    * ``embeddings``: float32 [N, E], the ``"embeddings"`` of :meth:`EmbeddingModule.predict_step`;
    * ``labels``: int64 [N];
    * ``paths``: str [N], the image files, only when the data set knows them (image folders).

    ``np.load(path)["embeddings"]``; for pandas, ``pd.DataFrame(data["embeddings"]).assign(label=...)``.

    Multi-process runs: every rank predicts its share (Lightning's unrepeated distributed sampler), then
    the per-rank arrays *and their data set indices* are gathered to every rank with
    ``all_gather_object`` (shares differ in length, which tensor all-gathers do not allow) and rank 0
    sorts the rows by data set index and writes the one file. Sorting by index rather than concatenating
    ranks keeps the rows in data set order however the sampler interleaved them; a duplicated index
    (a padded sampler) is written once. The gathered arrays live in CPU memory on every rank: about
    ``N * E * 4`` bytes, small next to the images they were computed from.
    """

    def __init__(self, output_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_path = output_path
        self.written_path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        # trainer.log_dir is a broadcast: every rank must ask for it.
        path = Path(self.output_path) if self.output_path else Path(trainer.log_dir or ".") / DEFAULT_FILENAME
        embeddings, labels, indices = _concatenate(predictions, batch_indices)
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (embeddings, labels, indices))
            embeddings = np.concatenate([g[0] for g in gathered])
            labels = np.concatenate([g[1] for g in gathered])
            indices = (
                None if any(g[2] is None for g in gathered) else np.concatenate([g[2] for g in gathered])
            )
        if not trainer.is_global_zero:
            return
        arrays: dict[str, np.ndarray] = {"embeddings": embeddings, "labels": labels}
        if indices is not None:
            # Data set order, each sample once.
            indices, first = np.unique(indices, return_index=True)
            arrays = {name: values[first] for name, values in arrays.items()}
            paths = _sample_paths(_predict_dataset(trainer))
            if paths is not None:
                arrays["paths"] = np.asarray([paths[int(i)] for i in indices], dtype=str)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        self.written_path = path
        rank_zero_info(
            f"Predictions: {path} (embeddings {tuple(arrays['embeddings'].shape)}, "
            f"labels, {'paths' if 'paths' in arrays else 'no paths'})"
        )


def _concatenate(
    predictions: Sequence[Any], batch_indices: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """This rank's predictions as (embeddings float32 [n, E], labels int64 [n], data set indices [n] or
    None when Lightning could not track them)."""
    if predictions and not isinstance(predictions[0], dict):
        # Lightning nests the batches in a list per dataloader only when there are several.
        if len(predictions) != 1:
            raise ValueError(f"EmbeddingWriter writes one predict dataloader, got {len(predictions)}.")
        predictions = predictions[0]
    if not predictions:
        raise ValueError("EmbeddingWriter: predict produced no batches (is the predict data set empty?).")
    embeddings = torch.cat([p["embeddings"].detach().float().cpu() for p in predictions]).numpy()
    labels = torch.cat([p["labels"].detach().long().cpu() for p in predictions]).numpy()
    batches = list(batch_indices[0]) if len(batch_indices) == 1 else []
    indices = None
    if len(batches) == len(predictions) and sum(len(b) for b in batches) == len(labels):
        indices = np.asarray([i for batch in batches for i in batch], dtype=np.int64)
    return embeddings, labels, indices


def _predict_dataset(trainer: Trainer) -> Any:
    loaders = trainer.predict_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if len(loaders) == 1 else None
    return getattr(loaders, "dataset", None)


def _sample_paths(dataset: Any) -> list[str] | None:
    """File path of each item of ``dataset``, or None if it has none.

    Either the data set has ``paths`` itself, or it is an :class:`ImageSplit` (``base`` and ``indices``)
    over a data set with ``paths`` (:class:`ImageFileDataset`): item ``i`` is ``base.paths[indices[i]]``.
    """
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return [str(p) for p in paths]
    base_paths = getattr(getattr(dataset, "base", None), "paths", None)
    indices = getattr(dataset, "indices", None)
    if base_paths is None or indices is None:
        return None
    return [str(base_paths[int(i)]) for i in indices]
