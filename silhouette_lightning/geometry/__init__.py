"""The geometry floor under the losses and the metrics (pure PyTorch, no Lightning).

One copy of the maths that both need, so that the training loss and the exact metric cannot drift apart:

* :mod:`~silhouette_lightning.geometry.distances`: the expanded-square factors, pairwise distances;
* :mod:`~silhouette_lightning.geometry.class_sums`: the per-class distance sums, a differentiable
  training path (one fused autograd node) and an exact, tiled evaluation path;
* :mod:`~silhouette_lightning.geometry.silhouette`: ``a_i``, ``b_i`` and ``s_i`` from those sums;
* :mod:`~silhouette_lightning.geometry.checks`: the checks of options and inputs.

``losses/`` and ``metrics/`` import from here; nothing here imports from them.
"""

from silhouette_lightning.geometry.class_sums import class_distance_sums, exact_class_distance_sums
from silhouette_lightning.geometry.distances import DISTANCES, Distance, pairwise_distances
from silhouette_lightning.geometry.silhouette import SilhouetteTerms, exact_silhouette_from_sums

__all__ = [
    "DISTANCES",
    "Distance",
    "SilhouetteTerms",
    "class_distance_sums",
    "exact_class_distance_sums",
    "exact_silhouette_from_sums",
    "pairwise_distances",
]
