"""Sum of the distances from every anchor to every class, fused into one autograd node.

``sums[i, c] = sum of d(x_i, r_j) over references j of class c`` (self pairs excluded) is the pairwise
silhouette's only O(N*M) step. Left to autograd, the distance chain (product, clamp, mask, safe sqrt,
scatter) keeps several ``[N, M]`` tensors alive and passes over each of them again backwards. Here the
forward allocates one ``[N, M]`` buffer, the distances, and the backward turns that same buffer into the
weights of the closed-form gradient in place:

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

from silhouette_lightning.losses.distances import Distance


def _distances(x: Tensor, ref: Tensor, distance: str, self_index: Tensor | None) -> Tensor:
    """``[N, M]`` distances in one fresh buffer, self pairs 0."""
    if distance == "cosine":  # inputs are unit vectors here; 1 - x.r, clamped against rounding
        dist = torch.mm(x, ref.T).neg_().add_(1.0).clamp_(0.0, 2.0)
    else:
        # |x|^2 + |r|^2 - 2 x.r as ONE product of augmented matrices [-2x, |x|^2, 1] @ [r, 1, |r|^2]^T:
        # no broadcast [N, M] temporary for the norms.
        x_aug = torch.cat([x * -2.0, (x * x).sum(dim=1, keepdim=True), x.new_ones(x.shape[0], 1)], 1)
        ref_aug = torch.cat([ref, ref.new_ones(ref.shape[0], 1), (ref * ref).sum(dim=1, keepdim=True)], 1)
        dist = torch.mm(x_aug, ref_aug.T).clamp_min_(0.0)  # rounding can make it slightly negative
    if self_index is not None:
        dist[torch.arange(x.shape[0], device=x.device), self_index] = 0.0
    if distance == "euclidean":
        dist.sqrt_()
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
    """``[N, C]`` sums of distances from anchors ``x`` ``[N, D]`` to references ``ref`` ``[M, D]`` of each
    class (``ref_class`` ``[M]`` in ``0..C-1``), excluding the pairs ``(i, self_index[i])``.

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
