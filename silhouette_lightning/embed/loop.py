"""The embedding loop: images -> the chosen representation, in batches, with a progress bar."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from silhouette_lightning.embed.folder import EmbeddingImages
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.module import EmbeddingModule

REPRESENTATIONS = ("embeddings", "features")


@dataclass
class EmbeddedImages:
    """``vectors[j]`` float32 ``[N_ok, D]`` is the representation of ``paths[kept[j]]``; ``skipped`` lists
    the files that could not be read (not in ``vectors``)."""

    vectors: np.ndarray
    kept: np.ndarray
    skipped: list[str]


def resolve_device(device: str) -> torch.device:
    """``auto``: the first CUDA GPU if there is one, else the CPU; otherwise any torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:<n>.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu (or auto).")
    return resolved


@torch.inference_mode()
def embed_images(
    model: EmbeddingModule,
    images: EmbeddingImages,
    representation: str = "embeddings",
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = True,
) -> EmbeddedImages:
    """Run every image of ``images`` through ``model`` (eval mode) and keep ``representation``.

    ``representation``: ``"embeddings"`` (the projection head's output, ``[N, embedding_dim]``) or
    ``"features"`` (the backbone's, ``[N, num_features]``). Rows follow the data set's order.
    """
    if representation not in REPRESENTATIONS:
        raise ConfigError(
            f"--representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}."
        )
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}.")
    if num_workers < 0:
        raise ConfigError(f"--num-workers must be >= 0, got {num_workers}.")
    device = torch.device(device)
    model = model.eval().to(device)
    loader = DataLoader(
        images,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        shuffle=False,
    )
    chunks: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    skipped: list[int] = []
    columns = (
        TextColumn("[bold]Embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("embed", total=len(images))
        for batch, index in loader:
            ok = index >= 0  # unreadable files come back as -1 - i
            skipped += (-1 - index[~ok]).tolist()
            if ok.any():
                batch = batch[ok].to(device, non_blocking=True)
                vectors = model.encode(batch).get(representation)[:, 0]
                chunks.append(vectors.float().cpu().numpy())
                kept.append(index[ok].numpy())
            bar.advance(task, len(index))
    width = _width(model, representation)
    return EmbeddedImages(
        vectors=np.concatenate(chunks) if chunks else np.zeros((0, width), dtype=np.float32),
        kept=np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, dtype=np.int64),
        skipped=[images.paths[i] for i in skipped],
    )


def _width(model: EmbeddingModule, representation: str) -> int:
    if representation == "features":
        return int(model.backbone.num_features)
    return int(model.hparams.get("embedding_dim", 0))
