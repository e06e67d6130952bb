"""Pure-PyTorch losses (no Lightning imports): copy them into any training loop."""

from silhouette_lightning.losses.distances import pairwise_distances
from silhouette_lightning.losses.soft_silhouette import (
    SilhouetteTerms,
    SoftSilhouetteLoss,
    silhouette_samples,
    silhouette_terms,
)

__all__ = [
    "SilhouetteTerms",
    "SoftSilhouetteLoss",
    "pairwise_distances",
    "silhouette_samples",
    "silhouette_terms",
]
