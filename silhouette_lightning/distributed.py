"""Batch-level losses over the global batch under DDP: the gather with gradient and the one convention.

A loss such as the Soft Silhouette compares every sample with the whole batch. Under DDP each process
holds a slice, so the references are gathered from all processes *with gradient*: the backward of the
gather all-reduces (sums) the gradient of the gathered tensor and returns this process's rows, so every
process receives the gradient that every other process's anchors put on its samples. :func:`gather_rows`
is the package's one gather of per-process tensors whose row counts differ (no gradient); the gather with
gradient is built on it.

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


def _row_counts(rows: int, device: torch.device) -> list[int]:
    """Every process's number of rows, in rank order."""
    size = torch.tensor([rows], device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def gather_rows(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """All processes' ``x`` ``[n_rank, ...]`` concatenated in rank order, without gradient; ranks may hold
    different numbers of rows (``sizes``, the per-rank row counts, when already known). Every process
    must call it; without torch.distributed (or with one process) it is ``x``."""
    if world_size() == 1:
        return x
    if sizes is None:
        sizes = _row_counts(x.shape[0], x.device)
    # all_gather needs equal shapes: pad every part to the largest, then cut each back to its rows.
    padded = x.new_zeros((max(sizes), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], rank: int) -> Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        return gather_rows(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss may depend on our rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def uses_global_batch(enabled: bool, ref_embeddings: Tensor | None) -> bool:
    """Whether a loss should work on the global batch: asked to, no explicit references, several processes."""
    return enabled and ref_embeddings is None and world_size() > 1


def global_references(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(references, their labels, self_index)``: all processes' samples, the embeddings with gradient
    (it flows back to every process's ``embeddings``); this process's samples sit at ``self_index``."""
    sizes = _row_counts(embeddings.shape[0], embeddings.device)
    rank = dist.get_rank()
    refs = _GatherWithGrad.apply(embeddings, sizes, rank)
    offset = sum(sizes[:rank])
    self_index = torch.arange(embeddings.shape[0], device=embeddings.device) + offset
    return refs, gather_rows(labels, sizes), self_index


def valid_anchor_count(valid: Tensor, distributed: bool) -> Tensor:
    """Denominator of a mean over valid anchors (``valid`` ``[N]`` bool), in DDP's averaging convention."""
    count = valid.sum()
    if not distributed:
        return count
    count = count.detach().clone()
    dist.all_reduce(count, op=dist.ReduceOp.SUM)
    return count / world_size()
