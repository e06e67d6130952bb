"""What the model produces for a batch, as the loss terms see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

OutputName = Literal["logits", "features", "embeddings"]


@dataclass(frozen=True)
class ModelOutputs:
    """The model's outputs for ``B`` images with ``V`` views each (``V = 1`` without multi-view data).

    Attributes:
        features: pooled backbone output ``[B, V, F]``.
        embeddings: projection head output ``[B, V, E]``.
        logits: classifier output ``[B, V, num_classes]``.
    """

    features: Tensor
    embeddings: Tensor
    logits: Tensor

    @property
    def num_views(self) -> int:
        return self.features.shape[1]

    def get(self, name: OutputName) -> Tensor:
        return getattr(self, name)
