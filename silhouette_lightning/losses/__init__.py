"""Pure-PyTorch losses (no Lightning imports): copy them, with ``silhouette_lightning.geometry`` under them,
into any training loop."""

from silhouette_lightning.geometry.distances import pairwise_distances
from silhouette_lightning.geometry.silhouette import SilhouetteTerms
from silhouette_lightning.losses.base import BatchLoss
from silhouette_lightning.losses.cross_batch_memory import CrossBatchMemory
from silhouette_lightning.losses.soft_silhouette import (
    SoftSilhouetteLoss,
    silhouette_samples,
    silhouette_terms,
)
from silhouette_lightning.losses.supcon import SupConLoss, SupConTerms, supcon_per_anchor

__all__ = [
    "BatchLoss",
    "CrossBatchMemory",
    "SilhouetteTerms",
    "SoftSilhouetteLoss",
    "SupConLoss",
    "SupConTerms",
    "pairwise_distances",
    "silhouette_samples",
    "silhouette_terms",
    "supcon_per_anchor",
]
