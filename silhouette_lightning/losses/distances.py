"""Pairwise distances between two sets of embeddings, safe to differentiate everywhere.

The distances are computed from the expanded form ``|a|^2 + |b|^2 - 2 a.b`` with one matrix product,
so memory is O(N*M) and never O(N*M*D). Two details matter for training:

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


def pairwise_distances(
    x: Tensor,
    y: Tensor,
    distance: Distance = "euclidean",
    self_index: Tensor | None = None,
) -> Tensor:
    """Distances between every row of ``x`` ``[N, D]`` and every row of ``y`` ``[M, D]``: ``[N, M]``.

    Args:
        x: anchors ``[N, D]``.
        y: references ``[M, D]``.
        distance: ``"euclidean"``, ``"sqeuclidean"`` or ``"cosine"`` (``1 - cosine similarity``).
        self_index: optional ``[N]`` long tensor; ``y[self_index[i]]`` is the same sample as ``x[i]``.
            Those entries are set to exactly 0 (with zero gradient), whatever the rounding error.
    """
    if distance == "cosine":
        xn = torch.nn.functional.normalize(x, dim=1)
        yn = torch.nn.functional.normalize(y, dim=1)
        dist = 1.0 - xn @ yn.T
    else:
        x_sq = (x * x).sum(dim=1, keepdim=True)
        y_sq = (y * y).sum(dim=1)
        # addmm fuses the product and the sum; the clamp removes tiny negative rounding errors.
        dist = torch.addmm(x_sq + y_sq, x, y.T, alpha=-2.0).clamp_min(0.0)
    if self_index is not None:
        rows = torch.arange(x.shape[0], device=x.device)
        dist = dist.index_put((rows, self_index), torch.zeros((), dtype=dist.dtype, device=dist.device))
    if distance == "euclidean":
        dist = safe_sqrt(dist)
    return dist
