"""What every batch loss shares: its checks, the normalisation, the references and the reduction.

A batch loss compares each anchor (a sample of the batch) with references and gives a value per anchor
and whether the anchor counts (``valid``); the loss is the mean over the valid anchors. The references,
decided once per call in :meth:`BatchLoss.forward` (as pytorch-metric-learning's
``BaseMetricLossFunction.forward`` does):

* given ``ref_embeddings`` / ``ref_labels``: other samples (as in pytorch-metric-learning), no pair
  excluded;
* otherwise under DDP (``gather_distributed`` and more than one process): the global batch, gathered
  with gradient, with the anchors at ``self_index`` (:mod:`silhouette_lightning.distributed`);
* otherwise the anchors themselves, each excluded from its own comparisons (``self_index`` = the
  diagonal);
* in training, with a cross-batch memory: the batch's references followed by the memory's detached
  contents (:mod:`~silhouette_lightning.losses.cross_batch_memory`); the batch is enqueued after the loss.

A subclass holds only its maths: :meth:`BatchLoss.per_anchor` on checked, normalised inputs, and, when its
inputs have another shape (SupCon's views), :meth:`BatchLoss.checked_inputs`. The functional forms of the
losses, which take references and ``self_index`` from their caller, check them with
:func:`resolve_references`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from silhouette_lightning.distributed import global_references, uses_global_batch
from silhouette_lightning.geometry.checks import check_choice, check_embeddings_and_labels
from silhouette_lightning.geometry.distances import l2_normalize
from silhouette_lightning.losses.cross_batch_memory import CrossBatchMemory, check_memory_size
from silhouette_lightning.losses.reduction import REDUCTIONS, Reduction, reduce_anchors


def _check_reference_pair(ref_embeddings: Tensor | None, ref_labels: Tensor | None) -> None:
    if ref_embeddings is None and ref_labels is not None:
        raise ValueError("ref_labels was given without ref_embeddings.")
    if ref_embeddings is not None and ref_labels is None:
        raise ValueError("ref_embeddings needs ref_labels.")


def _check_reference_dim(ref_embeddings: Tensor, embeddings: Tensor) -> None:
    if ref_embeddings.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"ref_embeddings have dimension {ref_embeddings.shape[1]}, embeddings {embeddings.shape[1]}."
        )


def _diagonal(embeddings: Tensor) -> Tensor:
    """``self_index`` of anchors that are their own references: anchor ``i`` is reference ``i``."""
    return torch.arange(embeddings.shape[0], device=embeddings.device)


def resolve_references(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None,
    ref_labels: Tensor | None,
    self_index: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Checked ``(references, reference labels, self_index)`` for the functional form of a batch loss.

    Without references the anchors are their own references and ``self_index`` defaults to the diagonal
    (each anchor is excluded from its own comparisons). Given references are other samples unless
    ``self_index`` says where each anchor sits among them (the distributed case).
    """
    check_embeddings_and_labels(embeddings, labels)
    _check_reference_pair(ref_embeddings, ref_labels)
    if ref_embeddings is None:
        ref_embeddings, ref_labels = embeddings, labels
        if self_index is None:
            self_index = _diagonal(embeddings)
    else:
        check_embeddings_and_labels(ref_embeddings, ref_labels, what="ref_embeddings", anchors=embeddings)
        _check_reference_dim(ref_embeddings, embeddings)
    if self_index is not None and (
        self_index.shape != labels.shape or self_index.is_floating_point() or self_index.dtype == torch.bool
    ):
        raise ValueError(
            f"self_index must be an integer tensor of shape [N] = [{labels.shape[0]}], "
            f"got {self_index.dtype} {tuple(self_index.shape)}."
        )
    return ref_embeddings, ref_labels, self_index


class BatchLoss(nn.Module):
    """Base of the losses that compare a batch's anchors with references (see the module docstring).

    Args:
        normalize: L2-normalise the embeddings (and references) first, in float32 at least.
        reduction: ``"mean"`` over valid anchors (default), ``"sum"`` over them, or ``"none"``: the
            per-anchor values ``[N]``, 0 for invalid anchors.
        gather_distributed: under DDP (more than one process) and without references, compare the local
            anchors with the embeddings gathered from all processes, with gradient: the global-batch loss.
        memory_size: size of the cross-batch memory of recent embeddings used as extra references in
            training (:class:`CrossBatchMemory`); 0 = none.
    """

    def __init__(
        self,
        normalize: bool = True,
        reduction: Reduction = "mean",
        gather_distributed: bool = True,
        memory_size: int = 0,
    ) -> None:
        check_choice("reduction", reduction, REDUCTIONS)
        super().__init__()
        self.normalize = normalize
        self.reduction = reduction
        self.gather_distributed = gather_distributed
        self.memory = CrossBatchMemory(memory_size) if check_memory_size(memory_size) else None

    def checked_inputs(
        self, embeddings: Tensor, labels: Tensor, what: str = "embeddings", anchors: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(embeddings [N, D], labels [N])`` after the checks of
        :func:`~silhouette_lightning.geometry.checks.check_embeddings_and_labels`; a loss whose inputs
        have another shape reshapes them here."""
        check_embeddings_and_labels(embeddings, labels, what=what, anchors=anchors)
        return embeddings, labels

    def per_anchor(
        self, embeddings: Tensor, labels: Tensor, refs: Tensor, ref_labels: Tensor, self_index: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(loss [N], valid [N])`` of the anchors ``embeddings`` ``[N, D]`` against ``refs`` ``[M, D]``,
        excluding the pairs ``(i, self_index[i])``; the loss is 0 where ``valid`` is False. The inputs are
        checked and (with ``normalize``) normalised."""
        raise NotImplementedError

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """The loss of the anchors ``embeddings`` with ``labels`` against the references (module docstring).

        Inputs must be dense tensors on one device, float embeddings with ``D >= 1`` and integer labels;
        anything else (sparse, integer embeddings, ``[N, 0]``, labels on another device) is a ``ValueError``
        that says what to pass. An empty batch (``N = 0``), or one without a valid anchor, gives a 0 that is
        still connected to the graph, so ``backward()`` works and distributed ranks stay in step.
        """
        # Check before normalising, so a wrong shape or dtype is our ValueError, not a torch error.
        _check_reference_pair(ref_embeddings, ref_labels)
        embeddings, labels = self.checked_inputs(embeddings, labels)
        given = ref_embeddings is not None
        if given:
            ref_embeddings, ref_labels = self.checked_inputs(
                ref_embeddings, ref_labels, what="ref_embeddings", anchors=embeddings
            )
            _check_reference_dim(ref_embeddings, embeddings)
        if self.normalize:
            embeddings = l2_normalize(embeddings)
            if given:
                ref_embeddings = l2_normalize(ref_embeddings)
        self_index = None
        distributed = uses_global_batch(self.gather_distributed, ref_embeddings)
        if distributed:  # local anchors against everyone's embeddings (see distributed.py)
            ref_embeddings, ref_labels, self_index = global_references(embeddings, labels)
        elif not given:
            ref_embeddings, ref_labels, self_index = embeddings, labels, _diagonal(embeddings)
        memory = self.memory if self.training else None
        if memory is not None:  # the batch (global under DDP) and, detached, the memory
            if given:
                raise ValueError(
                    "A loss with a cross-batch memory (memory_size > 0) compares the batch with itself and "
                    "the memory; it takes no ref_embeddings in training. Set memory_size: 0 or drop the "
                    "references."
                )
            queued = (ref_embeddings, ref_labels)
            ref_embeddings, ref_labels, self_index = memory.references(ref_embeddings, ref_labels, self_index)
        loss, valid = self.per_anchor(embeddings, labels, ref_embeddings, ref_labels, self_index)
        if memory is not None:  # after the loss: a sample is never its own reference from the memory
            memory.enqueue(*queued)
        return reduce_anchors(loss, valid, self.reduction, distributed)
