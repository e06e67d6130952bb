"""Batch-level losses over the global batch under DDP: the gather with gradient and the one convention.

A loss such as the Soft Silhouette compares every sample with the whole batch. Under DDP each process
holds a slice, so the references are gathered from all processes *with gradient*: the backward of the
gather all-reduces (sums) the gradient of the gathered tensor and returns this process's rows, so every
process receives the gradient that every other process's anchors put on its samples.

The convention, in one place: each process computes ``sum over its anchors / (global valid anchors /
world size)``. DDP then averages the parameter gradients over the processes (a factor ``1 / world size``),
and the all-reduce in the gather's backward sums the contributions, so the resulting gradient equals that
of one process on the concatenated batch with the mean over all valid anchors. (Tested with 2 processes on
gloo against a single process.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sizes(rows: int, device: torch.device) -> list[int]:
    size = torch.tensor([rows], device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """All processes' ``x`` concatenated in rank order; ranks may hold different numbers of rows."""
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss may depend on our rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(all embeddings, all labels, offset of this process's rows)``; gradients flow back to every ``x``."""
    sizes = _sizes(x.shape[0], x.device)
    rank = dist.get_rank()
    return _GatherWithGrad.apply(x, sizes, rank), _gather_padded(labels, sizes), sum(sizes[:rank])


def global_count(count: Tensor) -> Tensor:
    """``count`` summed over all processes (no gradient)."""
    count = count.detach().clone()
    dist.all_reduce(count, op=dist.ReduceOp.SUM)
    return count


def uses_global_batch(enabled: bool, ref_embeddings: Tensor | None) -> bool:
    """Whether a loss should work on the global batch: asked to, no explicit references, several processes."""
    return enabled and ref_embeddings is None and world_size() > 1


def global_references(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(references, their labels, self_index)``: all processes' samples; ours sit at ``self_index``."""
    refs, ref_labels, offset = gather_with_grad(embeddings, labels)
    return refs, ref_labels, torch.arange(embeddings.shape[0], device=embeddings.device) + offset


def valid_anchor_count(valid: Tensor, distributed: bool) -> Tensor:
    """Denominator of a mean over valid anchors (``valid`` ``[N]`` bool), in DDP's averaging convention."""
    count = valid.sum()
    return global_count(count) / world_size() if distributed else count
