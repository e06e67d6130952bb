"""Supervised contrastive loss (SupCon; Khosla et al. 2020, the "L_out" form).

For an anchor ``i`` with label ``y_i`` and references ``j`` (every other sample, or the given
references),

    logit_ij   = sim(i, j) / temperature          (dot product; cosine when the inputs are normalised)
    log_p_ij   = logit_ij - log sum_{k != i} exp(logit_ik)
    loss_i     = -mean over positives p (y_p = y_i, p != i) of log_p_ip

and the loss is the mean of ``loss_i`` over the anchors that have at least one positive. Views are
samples: ``[N, V, D]`` embeddings are flattened to ``[N * V, D]`` (image-major, labels repeated per
view), which is exactly multi-view SupCon. The value equals ``pytorch_metric_learning.losses.SupConLoss``
on the flattened batch, except that a batch with positives but no negatives (one class) gets its
actual SupCon value here, where pytorch-metric-learning returns 0.

Cost: one ``[N, M]`` similarity matrix and ``[N, M]`` masks; no ``[N, M, D]`` tensor. Everything runs in
at least float32, also under autocast.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from silhouette_lightning.distributed import global_references, uses_global_batch
from silhouette_lightning.losses.checks import (
    check_choice,
    check_dense_tensor,
    check_embeddings_and_labels,
    check_temperature,
    resolve_references,
)
from silhouette_lightning.losses.cross_batch_memory import (
    CrossBatchMemory,
    check_memory_size,
    memory_references,
)
from silhouette_lightning.losses.distances import as_compute_dtype, l2_normalize
from silhouette_lightning.losses.reduction import REDUCTIONS, Reduction, reduce_anchors


class SupConTerms(NamedTuple):
    """Per-anchor SupCon loss ``[N]`` and validity mask ``[N]``.

    ``valid`` is True where the anchor has at least one positive among the references; ``loss`` is 0
    where it is False.
    """

    loss: Tensor
    valid: Tensor


def supcon_per_anchor(
    anchors: Tensor,
    labels: Tensor,
    refs: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    temperature: float = 0.1,
    self_index: Tensor | None = None,
) -> SupConTerms:
    """Differentiable per-anchor SupCon loss and the validity mask.

    The similarity is the plain dot product: L2-normalise the inputs first for the cosine similarity
    (:class:`SupConLoss` does that with ``normalize=True``).

    Args:
        anchors: ``[N, D]``.
        labels: anchor labels ``[N]``, any integers (they need not be contiguous).
        refs: references ``[M, D]``; default: the anchors themselves (self pairs excluded).
        ref_labels: reference labels ``[M]``; required with ``refs``.
        temperature: > 0.
        self_index: ``[N]`` positions of the anchors inside the references, for references that contain
            the anchors (the distributed case: local anchors inside the gathered global batch). Those
            pairs are neither positives nor part of the denominator. Default: the diagonal when no
            references are given, none otherwise.
    """
    check_temperature(temperature, allow_zero=False)
    refs, ref_labels, self_index = resolve_references(anchors, labels, refs, ref_labels, self_index)

    # Similarities, softmax and logs in float32 (or float64) even under fp16/bf16 autocast: logits of
    # 1 / temperature and their exponentials lose most of their digits in half precision.
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        x = as_compute_dtype(anchors)
        ref = as_compute_dtype(refs).to(x.dtype)
        logits = (x @ ref.T) / temperature  # [N, M]
        n, m = logits.shape

        # `keep`: the pairs that enter the denominator (all but the anchor itself).
        keep = torch.ones(n, m, dtype=torch.bool, device=logits.device)
        if self_index is not None:
            rows = torch.arange(n, device=logits.device)
            keep[rows, self_index.to(logits.device)] = False
        positive = (labels.unsqueeze(1) == ref_labels.unsqueeze(0)) & keep

        # Dtype-aware sentinel instead of -inf: exp() of it is exactly 0, and neither it nor its
        # difference to a finite value can make an inf - inf = NaN.
        lowest = torch.finfo(logits.dtype).min
        masked = logits.masked_fill(~keep, lowest)
        if m > 0:
            # The row maximum (detached: it cancels in log_p, so it changes no value and no gradient)
            # keeps exp() in range. Rows without any kept entry shift by 0 instead of by the sentinel.
            row_max = masked.detach().amax(dim=1, keepdim=True)
            row_max = torch.where(keep.any(dim=1, keepdim=True), row_max, torch.zeros_like(row_max))
        else:
            row_max = logits.new_zeros(n, 1)
        shifted = logits - row_max
        log_denominator = torch.logsumexp(shifted.masked_fill(~keep, lowest), dim=1, keepdim=True)
        log_prob = shifted - log_denominator  # [N, M]; finite everywhere, also at masked entries

        num_positives = positive.sum(dim=1)
        valid = num_positives > 0
        # `where`, not a multiplication by the mask: excluded entries contribute neither value nor gradient.
        sum_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        loss = -sum_log_prob / num_positives.clamp_min(1).to(log_prob.dtype)
        return SupConTerms(loss=torch.where(valid, loss, torch.zeros_like(loss)), valid=valid)


class SupConLoss(nn.Module):
    """Supervised contrastive loss: mean of ``loss_i`` over the anchors that have a positive.

    Args:
        temperature: of the softmax over similarities (> 0; default 0.1).
        normalize: L2-normalise the embeddings (and references) first, so the similarity is the cosine;
            otherwise it is the dot product.
        reduction: ``"mean"`` over anchors with a positive (default), ``"sum"`` over them, or ``"none"``:
            the per-anchor loss ``[N * V]``, with 0 for anchors without positives (use
            :func:`supcon_per_anchor` for the validity mask).
        gather_distributed: under DDP (more than one process) and without references, compare the
            local anchors with the embeddings of all processes, with gradient: the global-batch loss.
        memory_size: keep the last ``memory_size`` flattened views and labels the loss consumed (after
            the normalisation, detached, in at least float32) in a FIFO :class:`CrossBatchMemory` and
            use them as extra references in training mode (extra positives and extra terms in the
            denominator): equal to this loss with ``references = concat(batch, memory)`` and the
            anchors' self pairs excluded. The batch (the gathered global batch under DDP) is enqueued
            after the loss is computed; in eval mode the memory is neither used nor updated.
            0 (default) = no memory.

    A batch where no anchor has a positive (all singletons) gives a loss of 0 that is still connected
    to the graph, so ``backward()`` works and distributed ranks stay in step.
    """

    def __init__(
        self,
        temperature: float = 0.1,
        normalize: bool = True,
        reduction: Reduction = "mean",
        gather_distributed: bool = True,
        memory_size: int = 0,
    ) -> None:
        super().__init__()
        check_choice("reduction", reduction, REDUCTIONS)
        check_temperature(temperature, allow_zero=False)
        self.temperature = float(temperature)
        self.normalize = normalize
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.memory = CrossBatchMemory(memory_size) if check_memory_size(memory_size) else None

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, reduction={self.reduction!r}"

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Loss of the anchors ``embeddings`` ``[N, D]`` or ``[N, V, D]`` with ``labels`` ``[N]``.

        ``[N, V, D]`` is flattened to ``[N * V, D]`` image-major (``n0v0, n0v1, ..., n1v0, ...``) with
        every label repeated ``V`` times. With ``ref_embeddings`` ``[M, D]`` (or ``[M, V, D]``) /
        ``ref_labels`` ``[M]`` the anchors are compared with those references instead of with each
        other; the references are taken to be *other* samples (as in pytorch-metric-learning), so no
        pair is excluded. A loss with a memory takes no references in training mode.

        Inputs must be dense tensors on one device, float embeddings with ``D >= 1`` and integer labels;
        anything else (sparse, integer embeddings, ``[N, 0]``, labels on another device) is a
        ``ValueError`` that says what to pass. An empty batch (``N = 0``) gives the graph-connected 0.
        """
        if (ref_embeddings is None) != (ref_labels is None):
            raise ValueError(
                "ref_embeddings needs ref_labels."
                if ref_labels is None
                else "ref_labels was given without ref_embeddings."
            )
        # Check before normalising, so a wrong shape or dtype is our ValueError, not a torch error.
        embeddings, labels = flatten_views(embeddings, labels)
        if ref_embeddings is not None:
            ref_embeddings, ref_labels = flatten_views(
                ref_embeddings, ref_labels, what="ref_embeddings", anchors=embeddings
            )
        if self.normalize:
            embeddings = l2_normalize(embeddings)
            if ref_embeddings is not None:
                ref_embeddings = l2_normalize(ref_embeddings)
        self_index = None
        distributed = uses_global_batch(self.gather_distributed, ref_embeddings)
        if distributed:  # local anchors against everyone's embeddings (see distributed.py)
            ref_embeddings, ref_labels, self_index = global_references(embeddings, labels)
        memory = self.memory if self.training else None
        if memory is not None:  # the batch (global under DDP) and, detached, the memory
            queued = (embeddings, labels) if ref_embeddings is None else (ref_embeddings, ref_labels)
            ref_embeddings, ref_labels, self_index = memory_references(
                memory, embeddings, labels, ref_embeddings, ref_labels, self_index
            )
        terms = supcon_per_anchor(
            embeddings,
            labels,
            ref_embeddings,
            ref_labels,
            temperature=self.temperature,
            self_index=self_index,
        )
        if memory is not None:  # after the loss: a sample is never its own reference from the memory
            memory.enqueue(*queued)
        return reduce_anchors(terms.loss, terms.valid, self.reduction, distributed)


def flatten_views(
    embeddings: Tensor, labels: Tensor, what: str = "embeddings", anchors: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``[N, V, D]`` embeddings with ``[N]`` labels -> ``[N * V, D]`` image-major, labels repeated;
    ``[N, D]`` is checked and returned as it is. ``anchors``: see :func:`check_embeddings_and_labels`."""
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"{what} and labels must be torch.Tensors, got {type(embeddings)} and {type(labels)}."
        )
    check_dense_tensor(embeddings, what)  # before flattening: sparse tensors cannot be flattened
    check_dense_tensor(labels, "labels")
    if embeddings.ndim == 3:
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels must have shape [N] = [{embeddings.shape[0]}] (one per image, shared by its views) "
                f"to match {what} [N, V, D] = {tuple(embeddings.shape)}, got {tuple(labels.shape)}."
            )
        embeddings, labels = embeddings.flatten(0, 1), labels.repeat_interleave(embeddings.shape[1])
    elif embeddings.ndim != 2:
        raise ValueError(f"{what} must have shape [N, D] or [N, V, D], got {tuple(embeddings.shape)}.")
    check_embeddings_and_labels(embeddings, labels, what=what, anchors=anchors)
    return embeddings, labels
