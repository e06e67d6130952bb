"""Image transforms: normalisation statistics, tensor augmentation, the PIL pipelines and multiple views.

Every pipeline ends in a normalised float32 tensor [3, H, W]; which pipeline a data set uses (and
whether flips make sense for it) is decided in that data set's file. :class:`MultiViewTransform` stacks
several augmented views of one image, for contrastive objectives (SupCon uses two).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from silhouette_lightning.data.image_split import Transform


@dataclass(frozen=True)
class NormalizationStats:
    """Per-channel mean and standard deviation of a data set's pixels in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def transform(self) -> v2.Normalize:
        return v2.Normalize(mean=list(self.mean), std=list(self.std))


IMAGENET_STATS = NormalizationStats(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


class RandomShift:
    """Translate an image tensor [C, H, W] by up to ``max_shift`` pixels along each axis.

    Zero-pads by ``max_shift`` and crops back at a random offset: the same as
    ``RandomCrop(size, padding=max_shift)`` but a few tensor ops, cheap enough to run per sample on
    in-memory data sets. Pixels shifted in are ``fill`` (0 = the background of digits).
    """

    def __init__(self, max_shift: int, fill: float = 0.0) -> None:
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.max_shift = max_shift
        self.fill = fill

    def __call__(self, image: Tensor) -> Tensor:
        s = self.max_shift
        if s == 0:
            return image
        height, width = image.shape[-2:]
        padded = F.pad(image, (s, s, s, s), value=self.fill)
        dy, dx = torch.randint(0, 2 * s + 1, (2,)).tolist()
        return padded[..., dy : dy + height, dx : dx + width]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_shift={self.max_shift}, fill={self.fill})"


def _to_normalized_tensor(stats: NormalizationStats) -> list[v2.Transform]:
    # ToPureTensor: batches are plain tensors, not tv_tensors.Image subclasses.
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), stats.transform(), v2.ToPureTensor()]


def random_resized_crop(size: int, stats: NormalizationStats, *, flip: bool = True) -> v2.Compose:
    """Training pipeline for photos of any size: PIL -> [3, size, size], a crop of 50-100 % of the area."""
    steps: list[v2.Transform] = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalized_tensor(stats))


def resize_center_crop(size: int, stats: NormalizationStats, *, crop_fraction: float = 1.0) -> v2.Compose:
    """Evaluation pipeline for photos of any size: shorter side to ``round(size / crop_fraction)``,
    centre square crop of ``size``.

    ``crop_fraction`` 0.875 is the ImageNet evaluation convention (Resize 256, CenterCrop 224) that
    pretrained backbones were evaluated with; 1.0 keeps the whole shorter side.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    resized = max(size, round(size / crop_fraction))
    steps: list[v2.Transform] = [v2.Resize(resized, antialias=True), v2.CenterCrop(size)]
    return v2.Compose(steps + _to_normalized_tensor(stats))


def padded_random_crop(size: int, natural_size: int, stats: NormalizationStats, *, flip: bool) -> v2.Compose:
    """Training pipeline for small fixed-size images (CIFAR): resize if asked, then a crop of the image
    padded by ``size // 8`` (4 px at 32 px), and an optional horizontal flip."""
    steps = _resize_if_needed(size, natural_size)
    steps.append(v2.RandomCrop(size, padding=max(1, size // 8)))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_normalized_tensor(stats))


def resize_only(size: int, natural_size: int, stats: NormalizationStats) -> v2.Compose:
    """Evaluation pipeline for small fixed-size images: resize only if ``size`` differs from natural."""
    return v2.Compose(_resize_if_needed(size, natural_size) + _to_normalized_tensor(stats))


def _resize_if_needed(size: int, natural_size: int) -> list[v2.Transform]:
    return [] if size == natural_size else [v2.Resize((size, size), antialias=True)]


class MultiViewTransform:
    """Apply ``transform`` ``num_views`` times independently and stack: raw image -> ``[V, 3, H, W]``.

    Batches then have shape ``[B, V, 3, H, W]``; the module runs all ``B * V`` images through the
    backbone in one pass and each loss term picks the views it wants.
    """

    def __init__(self, transform: Transform, num_views: int) -> None:
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.transform = transform
        self.num_views = num_views

    def __call__(self, image: Any) -> Tensor:
        return torch.stack([self.transform(image) for _ in range(self.num_views)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_views={self.num_views}, transform={self.transform!r})"
