"""Cross-entropy on the classifier logits."""

from __future__ import annotations

from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.terms.base import LossTerm, ViewSelection


class CrossEntropyTerm(LossTerm):
    """Cross-entropy of the classifier logits, averaged over the selected views.

    Args:
        weight, views, name: see :class:`LossTerm` (it always reads ``"logits"``).
        label_smoothing: in ``[0, 1)``.
    """

    default_name = "ce"

    def __init__(
        self,
        weight: float = 1.0,
        views: ViewSelection = "all",
        name: str | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight=weight, input="logits", views=views, name=name)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.label_smoothing = label_smoothing

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        return nn.functional.cross_entropy(inputs, labels, label_smoothing=self.label_smoothing)
