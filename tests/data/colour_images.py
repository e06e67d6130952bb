"""Helpers of the data tests: solid-colour class images whose label can be read back from the pixels,
and all batches of a loader at once."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from silhouette_lightning.data.transforms import NormalizationStats


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct solid colour per class, so a test can read the label back from the pixels."""
    return (30 + 60 * label, 200 - 50 * label, 100)


def write_images(folder: Path, classes: list[str], per_class: int, fmt: str = "PNG") -> None:
    """``per_class`` solid-colour images of 20x12 pixels in ``folder/<class>/`` (colour = sorted index)."""
    for label, name in enumerate(sorted(classes)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = "jpg" if fmt == "JPEG" else "png"
            Image.new("RGB", (20, 12), class_color(label)).save(folder / name / f"{i:03d}.{suffix}", fmt)


def all_batches(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def labels_from_colour(images: torch.Tensor, stats: NormalizationStats) -> torch.Tensor:
    """Invert normalisation and map each image's mean red value back to its class colour's label."""
    red = images[:, 0].mean(dim=(1, 2)) * stats.std[0] + stats.mean[0]
    reds = torch.tensor([class_color(k)[0] / 255 for k in range(4)])
    return (red[:, None] - reds[None]).abs().argmin(dim=1)
