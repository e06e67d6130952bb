"""What the embedding metrics share: their input checks and their synced state of embeddings and labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from silhouette_lightning.losses.checks import check_embeddings_and_labels


def check_metric_inputs(embeddings: Tensor, labels: Tensor, owner: str) -> None:
    """Shape/dtype checks of the losses plus finiteness: a NaN/inf embedding would silently rank last."""
    check_embeddings_and_labels(embeddings, labels)
    if not torch.isfinite(embeddings).all():
        bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
        raise ValueError(
            f"{owner}: embeddings contain NaN or inf values in {bad} of {embeddings.shape[0]} rows; "
            "the model diverged or the input is corrupt (metrics need finite embeddings)."
        )


def check_same_dim(previous: list[Tensor] | Tensor, embeddings: Tensor, owner: str) -> None:
    """New embeddings must have the dimension of those already stored (a list state, or its cat)."""
    first = previous if isinstance(previous, Tensor) else (previous[0] if previous else None)
    if first is not None and first.ndim == 2 and first.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"{owner}: embeddings of dimension {embeddings.shape[1]} cannot be added to earlier ones of "
            f"dimension {first.shape[1]} (call reset() between different models)."
        )


def concatenated_state(state: list[Tensor] | Tensor, owner: str) -> Tensor:
    """A cat-reduced state (a list before sync, a tensor after it) as one tensor; clear error if empty."""
    if isinstance(state, list) and not state:
        raise ValueError(f"{owner}.compute() has no samples: call update() with at least one batch first.")
    return dim_zero_cat(state)


class EmbeddingMetric(Metric):
    """A metric over all evaluated embeddings ``[N, D]`` and their labels ``[N]``.

    ``update`` checks a batch and keeps it in list states that torchmetrics concatenates across processes
    (``dist_reduce_fx="cat"``: ranks may hold different numbers of samples); subclasses compute on
    :meth:`samples`, the whole (gathered) set.
    """

    is_differentiable = False
    full_state_update = False

    embeddings: list[Tensor]
    labels: list[Tensor]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """Raise a clear ``ValueError`` for a batch this metric cannot use."""
        check_metric_inputs(embeddings, labels, type(self).__name__)

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        """Store a batch: ``embeddings`` ``[B, D]`` (finite floats), ``labels`` ``[B]`` integers."""
        self.check_inputs(embeddings, labels)
        check_same_dim(self.embeddings, embeddings, type(self).__name__)
        self.embeddings.append(embeddings.detach())
        # One label dtype on every rank, so that the gathered states concatenate.
        self.labels.append(labels.detach().long())

    @property
    def has_samples(self) -> bool:
        # After a DDP sync the states are single tensors; before it, lists (maybe empty).
        return not (isinstance(self.embeddings, list) and not self.embeddings)

    def samples(self) -> tuple[Tensor, Tensor]:
        """All embeddings and labels seen (on every process after a sync); a clear error if none."""
        owner = type(self).__name__
        return concatenated_state(self.embeddings, owner), concatenated_state(self.labels, owner)
