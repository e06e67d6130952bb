"""Distances between two sets of embeddings: the expanded-square factors that every path builds on.

All distances here come from ONE matrix product of two factor matrices (:func:`expanded_factors`):

    squared Euclidean:  |x - y|^2 = |x|^2 + |y|^2 - 2 x.y = [-2x, |x|^2, 1] . [y, 1, |y|^2]
    cosine (unit rows): 1 - x.y                       = [-x, 1] . [y, 1]

so an ``[N, M]`` block costs one ``[N, D + 2] x [D + 2, M]`` product, memory O(N*M) and never O(N*M*D),
and no broadcast ``[N, M]`` temporary for the norms. Two kinds of callers use the factors:

* :func:`pairwise_distances`: differentiable by autograd, for small blocks (``[N, C]`` distances to
  centroids or class vectors, retrieval's query blocks);
* :func:`distances_from_factors`: in place, no autograd, for the large kernels of
  :mod:`~silhouette_lightning.geometry.class_sums` (the losses' fused sums, the exact silhouette's tiles).

Two details matter for training:

* ``sqrt`` has an infinite derivative at 0. Coincident points (duplicates, a point and itself, a
  collapsed class) would turn the whole gradient into NaN. :func:`safe_sqrt` returns 0 with a zero
  (sub)gradient there instead.
* In float16 the expanded form overflows and cancels badly, so callers run this in float32 (see
  :func:`as_compute_dtype`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Distance = Literal["euclidean", "sqeuclidean", "cosine"]
DISTANCES: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")

# Below this squared distance two points are treated as coincident. It is far below the float32
# rounding error of the expanded form for unit-norm embeddings (~1e-7), so it changes no real distance.
_SQRT_EPS = 1e-20


def as_compute_dtype(x: Tensor) -> Tensor:
    """Half-precision inputs are promoted to float32; float32/float64 are kept as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def l2_normalize(x: Tensor) -> Tensor:
    """Rows scaled to unit norm, in float32 (a half-precision norm can overflow for large embeddings)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.nn.functional.normalize(as_compute_dtype(x), dim=1)


def safe_sqrt(squared: Tensor) -> Tensor:
    """``sqrt`` with value 0 and gradient 0 where ``squared`` is (numerically) zero; NaN stays NaN."""
    # `squared <= eps`, not `~(squared > eps)`: a NaN compares False both ways, and must reach the loss
    # (where the non-finite guard sees it) instead of being silently turned into a distance of 0.
    coincident = squared <= _SQRT_EPS
    # clamp first so the unused branch of `where` never holds an inf derivative (0 * inf = NaN).
    return torch.where(coincident, torch.zeros_like(squared), squared.clamp_min(_SQRT_EPS).sqrt())


def expanded_factors(x: Tensor, y: Tensor, distance: str) -> tuple[Tensor, Tensor]:
    """``left`` ``[N, K]`` and ``right`` ``[M, K]`` with ``left @ right.T`` = the squared Euclidean
    distances of the rows of ``x`` ``[N, D]`` and ``y`` ``[M, D]`` (``K = D + 2``; for ``"euclidean"``
    and ``"sqeuclidean"``), or their cosine distances ``1 - x.y`` (``K = D + 1``; ``"cosine"``, whose
    rows must already be unit vectors: the callers normalise, so that autograd or the caller's own
    convention handles it).

    Values only: the product has rounding errors of about ``eps * max(|x|^2, |y|^2)`` (negative values
    included) that each caller cleans in its own way.
    """
    x_ones, y_ones = x.new_ones(x.shape[0], 1), y.new_ones(y.shape[0], 1)
    if distance == "cosine":
        return torch.cat([-x, x_ones], 1), torch.cat([y, y_ones], 1)
    x_sq = (x * x).sum(dim=1, keepdim=True)
    y_sq = x_sq if y is x else (y * y).sum(dim=1, keepdim=True)
    return torch.cat([x * -2.0, x_sq, x_ones], 1), torch.cat([y, y_ones, y_sq], 1)


def distances_from_factors(
    left: Tensor, right: Tensor, distance: str, out: Tensor | None = None, noise: float | None = None
) -> Tensor:
    """``[N, M]`` distances from the :func:`expanded_factors` ``left`` ``[N, K]`` / ``right`` ``[M, K]``,
    computed in place in ``out`` (or one fresh buffer): no autograd, for the fused kernels.

    Rounding errors of the product are cleaned before the square root: with ``noise=None`` negative values
    become 0 and NaN stays NaN (training: a NaN embedding must reach the loss); with a ``noise`` level
    (finite inputs only: the exact evaluation) every value ``<= noise`` becomes exactly 0, so coincident
    points are at distance 0 and not at rounding noise. Cosine distances are also capped at 2.
    """
    block = torch.mm(left, right.T, out=out)
    if noise is None:
        block.clamp_min_(0.0)
    else:
        torch.nn.functional.threshold_(block, noise, 0.0)
    if distance == "cosine":
        block.clamp_max_(2.0)
    elif distance == "euclidean":
        block.sqrt_()
    return block


def pairwise_distances(
    x: Tensor,
    y: Tensor,
    distance: Distance = "euclidean",
    self_index: Tensor | None = None,
) -> Tensor:
    """Distances between every row of ``x`` ``[N, D]`` and every row of ``y`` ``[M, D]``: ``[N, M]``,
    differentiable (finite gradients also at coincident points).

    Args:
        x: anchors ``[N, D]``.
        y: references ``[M, D]``.
        distance: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (``1 - cosine similarity``).
        self_index: optional ``[N]`` long tensor; ``y[self_index[i]]`` is the same sample as ``x[i]``.
            Those entries are set to exactly 0 (with zero gradient), whatever the rounding error.
    """
    if distance == "cosine":
        x = torch.nn.functional.normalize(x, dim=1)
        y = torch.nn.functional.normalize(y, dim=1)
    left, right = expanded_factors(x, y, distance)
    dist = left @ right.T
    if distance != "cosine":
        dist = dist.clamp_min(0.0)  # rounding can make a squared distance slightly negative
    if self_index is not None:
        rows = torch.arange(x.shape[0], device=x.device)
        dist = dist.index_put((rows, self_index), torch.zeros((), dtype=dist.dtype, device=dist.device))
    if distance == "euclidean":
        dist = safe_sqrt(dist)
    return dist
