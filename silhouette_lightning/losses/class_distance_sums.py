"""Sum of the distances from every anchor to every class, fused into one autograd node.

``sums[i, c] = sum of d(x_i, r_j) over references j of class c`` (self pairs excluded) is the pairwise
silhouette's only O(N*M) step. Left to autograd, the distance chain (product, clamp, mask, safe sqrt,
scatter) keeps several ``[N, M]`` tensors alive and makes as many passes over them again backwards.
This Function saves one ``[N, M]`` matrix (the distances) and computes the gradient in closed form:

    dL/dd_ij = G[i, y_j]                       (G = dL/dsums, [N, C])
    euclidean:   W_ij = G[i, y_j] / d_ij       (0 where d_ij = 0: the subgradient at coincident points)
    sqeuclidean: W_ij = 2 G[i, y_j]
    dL/dx_i = x_i * sum_j W_ij - (W @ r)_i,    dL/dr_j = r_j * sum_i W_ij - (W^T @ x)_j
    cosine (on L2-normalised inputs, d = 1 - x.r):  dL/dx = -G[:, y] @ r,  dL/dr = -G[:, y]^T @ x

The closed form is checked against autograd with ``torch.autograd.gradcheck`` in the tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from silhouette_lightning.losses.distances import Distance

# Squared distances at or below this are coincident points (see distances.safe_sqrt).
_COINCIDENT = 1e-20


class _ClassDistanceSums(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        ref: Tensor,
        ref_class: Tensor,
        num_classes: int,
        distance: str,
        self_index: Tensor | None,
    ) -> Tensor:
        if distance == "cosine":  # inputs are unit vectors here; 1 - x.r, clamped against rounding
            dist = torch.mm(x, ref.T).neg_().add_(1.0).clamp_(0.0, 2.0)
        else:
            x_sq = (x * x).sum(dim=1, keepdim=True)
            dist = torch.addmm(x_sq + (ref * ref).sum(dim=1), x, ref.T, alpha=-2.0).clamp_min_(0.0)
        if self_index is not None:
            dist[torch.arange(x.shape[0], device=x.device), self_index] = 0.0
        if distance == "euclidean":
            dist.masked_fill_(dist <= _COINCIDENT, 0.0).sqrt_()
        ctx.save_for_backward(x, ref, ref_class, dist, self_index)
        ctx.distance = distance
        return dist.new_zeros(x.shape[0], num_classes).index_add_(1, ref_class, dist)

    @staticmethod
    def backward(ctx: Any, grad_sums: Tensor) -> tuple[Tensor | None, ...]:
        x, ref, ref_class, dist, self_index = ctx.saved_tensors
        weights = grad_sums.index_select(1, ref_class)  # [N, M]: dL/dd_ij
        if self_index is not None:
            weights[torch.arange(x.shape[0], device=x.device), self_index] = 0.0
        if ctx.distance == "cosine":
            return -weights @ ref, -weights.T @ x, None, None, None, None
        if ctx.distance == "euclidean":
            # d_ij = 0 only for coincident points (and self pairs): their subgradient is 0.
            weights.div_(dist.clamp_min(1e-30)).masked_fill_(dist == 0, 0.0)
        else:
            weights.mul_(2.0)
        grad_x = x * weights.sum(dim=1, keepdim=True) - weights @ ref
        grad_ref = ref * weights.sum(dim=0).unsqueeze(1) - weights.T @ x
        return grad_x, grad_ref, None, None, None, None


def class_distance_sums(
    x: Tensor,
    ref: Tensor,
    ref_class: Tensor,
    num_classes: int,
    distance: Distance,
    self_index: Tensor | None = None,
) -> Tensor:
    """``[N, C]`` sums of distances from anchors ``x`` ``[N, D]`` to references ``ref`` ``[M, D]`` of each
    class (``ref_class`` ``[M]`` in ``0..C-1``), excluding the pairs ``(i, self_index[i])``.

    For ``distance="cosine"`` the inputs must already be L2-normalised (the caller normalises, so that
    autograd handles the normalisation's own gradient).
    """
    return _ClassDistanceSums.apply(x, ref, ref_class, num_classes, distance, self_index)
