"""The model outputs that the tests of loss terms feed them (random, seeded)."""

from __future__ import annotations

import torch

from silhouette_lightning.terms.outputs import ModelOutputs


def random_model_outputs(batch: int = 6, views: int = 2, classes: int = 3, dim: int = 4, seed: int = 0):
    """``ModelOutputs`` of ``batch`` images with ``views`` views: features ``[B, V, 5]``, embeddings
    ``[B, V, dim]`` and logits ``[B, V, classes]``, standard normal from one generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return ModelOutputs(
        features=torch.randn(batch, views, 5, generator=g),
        embeddings=torch.randn(batch, views, dim, generator=g),
        logits=torch.randn(batch, views, classes, generator=g),
    )
