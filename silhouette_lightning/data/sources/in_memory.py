"""Data sets small enough to hold as one tensor: loaded and resized once, split by seeded fractions."""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.source import DatasetSource
from silhouette_lightning.data.splits import Split, stratified_split
from silhouette_lightning.data.transforms import NormalizationStats, RandomShift


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """Images held in memory. Item ``i``: ``(images[i] as [3, H, W], targets[i])``.

    ``images`` is [N, C, H, W] float in [0, 1] with C = 1 or 3; grayscale is stored once and expanded
    to 3 channels on access (a view, no copy), so every model can assume RGB input.
    """

    def __init__(self, images: Tensor, targets: list[int]) -> None:
        if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) != len(targets):
            raise ValueError(f"expected images [N, 1|3, H, W] and N targets, got {tuple(images.shape)}")
        self.images = images
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index].expand(3, -1, -1), self.targets[index]


def resize_images(images: Tensor, size: int) -> Tensor:
    """Bilinear resize of a batch [N, C, h, w] to [N, C, size, size], values kept in [0, 1]."""
    if images.shape[-2:] == (size, size):
        return images
    # Antialiasing only matters when shrinking, where it avoids aliasing of thin strokes.
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.clamp_(0.0, 1.0)


class InMemorySource(DatasetSource):
    """A source whose images are generated or loaded as one tensor, at the target size, up front.

    Resizing once (not per sample and epoch) and augmenting with a cheap :class:`RandomShift` keeps
    these data sets fast on a laptop CPU. The train/val/test split is :func:`stratified_split` of the
    whole set with the configured fractions and seed.
    """

    #: Normalisation statistics of the images in [0, 1].
    stats: ClassVar[NormalizationStats]

    @abstractmethod
    def load_images(self) -> tuple[Tensor, list[int]]:
        """All images as float [N, 1|3, image_size, image_size] in [0, 1], and their N labels."""

    @cached_property
    def _dataset(self) -> TensorImageDataset:
        images, targets = self.load_images()
        return TensorImageDataset(images, targets)

    @cached_property
    def _split_indices(self) -> dict[Split, np.ndarray]:
        fractions: dict[Split, float] = {"val": self.config.val_fraction, "test": self.config.test_fraction}
        return stratified_split(self._dataset.targets, fractions, self.config.seed)

    def load_split(self, split: Split) -> ImageSplit:
        return ImageSplit.select(self._dataset, self._dataset.targets, self._split_indices[split])

    @property
    def max_shift(self) -> int:
        # +-1 px at 8 and 16 px, +-2 px at 32 px: mild enough that digits stay readable.
        return max(1, self.image_size // 16)

    def train_transform(self) -> Transform:
        return v2.Compose([RandomShift(self.max_shift), self.stats.transform()])

    def eval_transform(self) -> Transform:
        return self.stats.transform()


def as_float_images(array: np.ndarray, scale: float) -> Tensor:
    """A numpy array [N, H, W] of intensities in [0, scale] -> float32 tensor [N, 1, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(array, dtype=np.float32) / scale).unsqueeze(1)
