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
from torch import Tensor

from silhouette_lightning.geometry.checks import (
    check_dense_tensor,
    check_embeddings_and_labels,
    check_temperature,
)
from silhouette_lightning.geometry.distances import as_compute_dtype
from silhouette_lightning.losses.base import BatchLoss, resolve_references
from silhouette_lightning.losses.reduction import Reduction


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
    return _supcon_terms(anchors, labels, refs, ref_labels, temperature, self_index)


def _supcon_terms(
    anchors: Tensor,
    labels: Tensor,
    refs: Tensor,
    ref_labels: Tensor,
    temperature: float,
    self_index: Tensor | None,
) -> SupConTerms:
    """:func:`supcon_per_anchor` on checked inputs."""
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


class SupConLoss(BatchLoss):
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
        check_temperature(temperature, allow_zero=False)
        super().__init__(normalize, reduction, gather_distributed, memory_size)
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, normalize={self.normalize}, reduction={self.reduction!r}"

    def checked_inputs(
        self, embeddings: Tensor, labels: Tensor, what: str = "embeddings", anchors: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``[N, D]`` or ``[N, V, D]`` embeddings with ``[N]`` labels, checked and flattened to
        ``[N * V, D]`` image-major (``n0v0, n0v1, ..., n1v0, ...``) with every label repeated ``V`` times
        (:func:`flatten_views`); references likewise."""
        return flatten_views(embeddings, labels, what=what, anchors=anchors)

    def per_anchor(
        self, embeddings: Tensor, labels: Tensor, refs: Tensor, ref_labels: Tensor, self_index: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """SupCon's ``loss_i`` and whether the anchor has a positive; see
        :class:`~silhouette_lightning.losses.base.BatchLoss` for the references, checks and reduction."""
        terms = _supcon_terms(embeddings, labels, refs, ref_labels, self.temperature, self_index)
        return terms.loss, terms.valid


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
