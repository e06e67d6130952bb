"""Supervised contrastive loss as a term (by default on the projection head's embeddings, all views)."""

from __future__ import annotations

from torch import Tensor

from silhouette_lightning.losses.supcon import SupConLoss
from silhouette_lightning.terms.base import LossTerm, ViewSelection
from silhouette_lightning.terms.outputs import OutputName


class SupConTerm(LossTerm):
    """:class:`~silhouette_lightning.losses.supcon.SupConLoss` over the batch.

    With ``views="all"`` the term receives the ``B * V`` views of the batch as samples, labels repeated,
    which is exactly multi-view SupCon: the other views of an image are among its positives.

    Args:
        weight, input, views, name: see :class:`LossTerm`.
        temperature, normalize: see :class:`SupConLoss`.
        memory_size: cross-batch memory of the last ``memory_size`` samples (views) the term consumed,
            used as extra references in training (see :class:`SupConLoss`). 0 (default) = off; at most
            the training set size.
    """

    default_name = "supcon"

    def __init__(
        self,
        weight: float = 1.0,
        input: OutputName = "embeddings",
        views: ViewSelection = "all",
        name: str | None = None,
        temperature: float = 0.1,
        normalize: bool = True,
        memory_size: int = 0,
    ) -> None:
        super().__init__(weight=weight, input=input, views=views, name=name)
        self.loss = SupConLoss(temperature=temperature, normalize=normalize, memory_size=memory_size)

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        return self.loss(inputs, labels)
