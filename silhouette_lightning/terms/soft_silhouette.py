"""The Soft Silhouette loss as a term (by default on the projection head's embeddings)."""

from __future__ import annotations

from torch import Tensor

from silhouette_lightning.geometry.distances import Distance
from silhouette_lightning.losses.soft_min import SoftMin, TemperatureScale
from silhouette_lightning.losses.soft_silhouette import SoftSilhouetteLoss, Variant
from silhouette_lightning.terms.base import LossTerm, ViewSelection
from silhouette_lightning.terms.outputs import OutputName


class SoftSilhouetteTerm(LossTerm):
    """:class:`~silhouette_lightning.losses.SoftSilhouetteLoss` over the batch.

    Args:
        weight, input, views, name: see :class:`LossTerm`.
        distance, soft_min, temperature, normalize, variant, temperature_scale: see
            :class:`SoftSilhouetteLoss`. The default ``soft_min="hard"`` is the classical silhouette's
            nearest class; ``temperature`` and ``temperature_scale`` apply to ``"softmax"`` and
            ``"logsumexp"`` only. ``"softmax"`` is gamed by training when a batch holds many classes
            (safe with about 10).
        memory_size: cross-batch memory of the last ``memory_size`` samples the term consumed, used as
            extra references in training (see :class:`SoftSilhouetteLoss`). With ``views: all`` every
            view is a sample, so the memory holds ``memory_size / V`` images. 0 (default) = off; at most
            the training set size.
    """

    default_name = "silhouette"

    def __init__(
        self,
        weight: float = 1.0,
        input: OutputName = "embeddings",
        views: ViewSelection = "all",
        name: str | None = None,
        distance: Distance = "euclidean",
        soft_min: SoftMin = "hard",
        temperature: float = 0.1,
        normalize: bool = True,
        variant: Variant = "pairwise",
        temperature_scale: TemperatureScale = "relative",
        memory_size: int = 0,
    ) -> None:
        super().__init__(weight=weight, input=input, views=views, name=name)
        self.loss = SoftSilhouetteLoss(
            distance=distance,
            soft_min=soft_min,
            temperature=temperature,
            normalize=normalize,
            variant=variant,
            temperature_scale=temperature_scale,
            memory_size=memory_size,
        )

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        return self.loss(inputs, labels)
