"""Per-class sums of distances, the silhouette's only O(N*M) step: ``[N, C]`` from ``[N, D]`` and ``[M, D]``.

    sums[i, c] = sum of d(x_i, r_j) over references j of class c, the pair (i, self_index[i]) excluded

Two paths, both on the expanded-square factors of :mod:`~silhouette_lightning.geometry.distances`:

* :func:`class_distance_sums`, the **training** path (the Soft Silhouette loss): differentiable, float32
  (or float64), anchors against any references, one fused autograd node (below);
* :func:`exact_class_distance_sums`, the **evaluation** path (the exact silhouette score): no gradient,
  float64 by default, the samples against themselves, symmetric tiles and a rounding-noise threshold
  (see its docstring); :func:`precomputed_class_distance_sums` does the same from a given matrix.

The training path. Left to autograd, the distance chain (product, clamp, mask, safe sqrt, scatter) keeps
several ``[N, M]`` tensors alive and passes over each of them again backwards. Here the forward allocates
one ``[N, M]`` buffer, the distances, and the backward turns that same buffer into the weights of the
closed-form gradient in place:

    dL/dd_ij = G[i, y_j]                       (G = dL/dsums, [N, C])
    euclidean:   W_ij = G[i, y_j] / d_ij       (0 where d_ij = 0: the subgradient at coincident points)
    sqeuclidean: W_ij = 2 G[i, y_j]
    dL/dx_i = x_i * sum_j W_ij - (W @ r)_i,    dL/dr_j = r_j * sum_i W_ij - (W^T @ x)_j
    cosine (on L2-normalised inputs, d = 1 - x.r):  dL/dx = -W @ r,  dL/dr = -W^T @ x  with W = G[:, y]

On the CPU a fresh ``[N, M]`` buffer costs its page faults, often more than the arithmetic on it, hence
the in-place style (a second backward through the same graph recomputes the distances; a double
backward, ``create_graph=True``, is not supported and says so). On the CPU the references are sorted
by class first, so ``G[i, y_j]`` is a broadcast over a contiguous block of columns per class and never
needs an ``[N, M]`` gather; accelerators (caching allocators, costly host synchronisation and kernel
launches) use one scatter and one gather instead. The closed form is checked against autograd with
``gradcheck`` in the tests.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from silhouette_lightning.geometry.distances import Distance, distances_from_factors, expanded_factors

# Exact path: a computed distance (squared, for the Euclidean ones) below this many epsilons of its
# rounding-error scale is rounding noise of the expanded form and is set to exactly 0. Without this,
# duplicate points and collapsed classes (a_i = b_i = 0 in exact arithmetic) would get silhouettes from
# noise.
_ROUNDING_FACTOR = 64


def _distances(x: Tensor, ref: Tensor, distance: str, self_index: Tensor | None) -> Tensor:
    """``[N, M]`` distances in one fresh buffer, self pairs 0 (NaN inputs stay NaN: the loss sees them)."""
    dist = distances_from_factors(*expanded_factors(x, ref, distance), distance)
    if self_index is not None:
        dist[torch.arange(x.shape[0], device=x.device), self_index] = 0.0
    return dist


class _ClassDistanceSums(torch.autograd.Function):
    """Column ``j`` of the distances belongs to class ``ref_class[j]``. With ``bounds`` (the CPU path)
    the references are sorted by class and ``bounds[c]:bounds[c+1]`` are the columns of class ``c``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        ref: Tensor,
        ref_class: Tensor,
        num_classes: int,
        bounds: list[int] | None,
        distance: str,
        self_index: Tensor | None,
    ) -> Tensor:
        dist = _distances(x, ref, distance, self_index)
        if bounds is None:
            sums = dist.new_zeros(x.shape[0], num_classes).index_add_(1, ref_class, dist)
        else:  # a plain row sum per class block: faster on the CPU than a scatter over [N, M]
            sums = torch.stack([dist[:, start:end].sum(dim=1) for start, end in pairwise(bounds)], dim=1)
        ctx.save_for_backward(x, ref, ref_class, self_index)
        # Kept as an attribute, not a saved tensor: backward overwrites it in place on purpose, which
        # autograd's version check would refuse; no one else holds a reference to it.
        ctx.buffer = dist
        ctx.bounds = bounds
        ctx.distance = distance
        return sums

    @staticmethod
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: this closed form is not itself differentiable
            raise RuntimeError(
                "The Soft Silhouette's pairwise distance sums do not support double backward "
                "(create_graph=True, e.g. gradient penalties). Use variant='centroid', or compute the "
                "penalty on another loss."
            )
        x, ref, ref_class, self_index = ctx.saved_tensors
        weights = ctx.buffer  # the distances, turned into the gradient weights below
        # A second backward through the same graph (retain_graph=True) finds the buffer used: recompute.
        ctx.buffer = None
        if weights is None:
            weights = _distances(x, ref, ctx.distance, self_index)
        if ctx.distance == "euclidean":
            # 1/d is inf exactly where d_ij = 0 (coincident points, self pairs): subgradient 0 there.
            weights.reciprocal_().nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        if ctx.distance == "sqeuclidean":
            grad_sums = grad_sums * 2.0
        # weights[i, j] (*)= G[i, y_j]: in place per class block, or through one gather.
        combine = Tensor.mul_ if ctx.distance == "euclidean" else Tensor.copy_
        if ctx.bounds is None:
            combine(weights, grad_sums.index_select(1, ref_class))
        else:
            for c, (start, end) in enumerate(pairwise(ctx.bounds)):
                block = weights[:, start:end]
                combine(block, grad_sums[:, c : c + 1].expand_as(block))
        if self_index is not None:
            weights[torch.arange(x.shape[0], device=x.device), self_index] = 0.0
        none = (None,) * 5
        if ctx.distance == "cosine":
            return -(weights @ ref), -(weights.T @ x), *none
        grad_x = x * weights.sum(dim=1, keepdim=True) - weights @ ref
        grad_ref = ref * weights.sum(dim=0).unsqueeze(1) - weights.T @ x
        return grad_x, grad_ref, *none


def class_distance_sums(
    x: Tensor,
    ref: Tensor,
    ref_class: Tensor,
    num_classes: int,
    distance: Distance,
    self_index: Tensor | None = None,
    sorted_blocks: bool | None = None,
) -> Tensor:
    """Training path: ``[N, C]`` sums of distances from anchors ``x`` ``[N, D]`` to references ``ref``
    ``[M, D]`` of each class (``ref_class`` ``[M]`` in ``0..C-1``), excluding the pairs
    ``(i, self_index[i])``; differentiable with respect to ``x`` and ``ref``.

    For ``distance="cosine"`` the inputs must already be L2-normalised (the caller normalises, so that
    autograd handles the normalisation's own gradient). ``sorted_blocks`` picks the strategy (default:
    sorted class blocks on the CPU, scatter/gather elsewhere); both give the same result.
    """
    if not (x.device.type == "cpu" if sorted_blocks is None else sorted_blocks):
        # Accelerators: one scatter and one gather, no host synchronisation (their allocators cache
        # buffers, so the extra [N, M] gather buffer costs no page faults).
        return _ClassDistanceSums.apply(x, ref, ref_class, num_classes, None, distance, self_index)
    order = torch.argsort(ref_class, stable=True)
    bounds = [0, *torch.cumsum(torch.bincount(ref_class, minlength=num_classes), 0).tolist()]
    if self_index is not None:
        position = torch.empty_like(order)
        position[order] = torch.arange(order.shape[0], device=order.device)
        self_index = position[self_index]
    return _ClassDistanceSums.apply(
        x, ref[order], ref_class[order], num_classes, bounds, distance, self_index
    )


def exact_class_distance_sums(
    x: Tensor, classes: Tensor, num_classes: int, distance: str, chunk: int
) -> Tensor:
    """Evaluation path: ``[N, C]`` with ``sums[i, c]`` = sum of ``d(x_i, x_j)`` over the samples ``j`` of
    class ``c`` (``classes`` ``[N]`` in ``0..C-1``; ``d(i, i) = 0``), in the dtype of ``x`` ``[N, D]``
    (finite values; no gradient).

    Cost: the distance matrix is symmetric, so only the ``[chunk, chunk]`` tiles on and above the diagonal
    are computed, and tile ``(I, J)`` adds its rows to the sums of the samples in ``I`` and its columns to
    those in ``J``: N^2*D/2 multiply-adds, memory O(chunk^2 + N*C), never N^2.

    Precision: the Euclidean distances are computed on centred data (centring changes no distance but
    shrinks ``|x|^2``, and with it the expanded form's rounding error, ~eps ``|x|^2``); cosine distances on
    the rows scaled to unit norm (zero vectors stay zero: distance 1 to every other point, as in
    scikit-learn). A computed distance (squared, for the Euclidean ones) below ``64 eps max|x - mean|^2``
    (cosine: ``64 eps``) is rounding noise and is set to exactly 0, so duplicates and collapsed classes
    get ``a_i = 0`` and not a value driven by noise.
    """
    n = x.shape[0]
    if distance == "cosine":
        x, scale = torch.nn.functional.normalize(x, dim=1), 1.0
    else:
        x = x - x.mean(dim=0, keepdim=True)
        scale = float((x * x).sum(dim=1).max()) if n else 0.0
    left, right = expanded_factors(x, x, distance)
    noise = _ROUNDING_FACTOR * torch.finfo(x.dtype).eps * scale
    sums = x.new_zeros(n, num_classes)
    # One buffer for every tile: the CPU pays page faults for each fresh [chunk, chunk] allocation.
    buffer = x.new_empty(min(chunk, n) ** 2)
    for start_i in range(0, n, chunk):
        rows = slice(start_i, min(start_i + chunk, n))
        for start_j in range(start_i, n, chunk):
            cols = slice(start_j, min(start_j + chunk, n))
            tile = buffer[: (rows.stop - rows.start) * (cols.stop - cols.start)]
            tile = tile.view(rows.stop - rows.start, cols.stop - cols.start)
            distances_from_factors(left[rows], right[cols], distance, out=tile, noise=noise)
            if start_i == start_j:
                tile.diagonal().zero_()  # d(i, i) = 0 exactly, not a rounding error
            sums[rows].index_add_(1, classes[cols], tile)
            if start_i != start_j:
                # [C, n_J] scatter over contiguous tile rows, then one transposed add: faster than a
                # scatter into the strided columns of sums[cols].
                column_sums = tile.new_zeros(num_classes, tile.shape[1]).index_add_(0, classes[rows], tile)
                sums[cols] += column_sums.T
    return sums


def precomputed_class_distance_sums(
    distances: Tensor, classes: Tensor, num_classes: int, dtype: torch.dtype, chunk: int
) -> Tensor:
    """Evaluation path from a given ``[N, N]`` distance matrix: ``[N, C]`` per-class sums of its rows in
    ``dtype``, ``chunk`` rows at a time (the matrix need not be symmetric: row ``i`` is what sample ``i``
    sees, as in scikit-learn)."""
    n = distances.shape[0]
    sums = torch.zeros(n, num_classes, dtype=dtype, device=distances.device)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        sums[rows].index_add_(1, classes, distances[rows].to(dtype))
    return sums
