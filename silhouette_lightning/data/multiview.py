"""Several augmented views of one image, for contrastive objectives (SupCon uses two)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from silhouette_lightning.data.image_split import Transform


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
