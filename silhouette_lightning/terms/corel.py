"""COREL (cosine or Gaussian) as a term, with class vectors that the module creates, trains and saves."""

from __future__ import annotations

from torch import Tensor

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses.corel import CorelKind, CorelLoss, check_corel_options
from silhouette_lightning.terms.base import LossTerm, ViewSelection
from silhouette_lightning.terms.outputs import OutputName


class CorelTerm(LossTerm):
    """:class:`~silhouette_lightning.losses.corel.CorelLoss` over the batch (by default on the embeddings).

    The class vectors ``[num_classes, input width]`` are created in :meth:`bind`, which the module calls
    in its ``__init__``: configs never repeat ``num_classes`` or ``embedding_dim``, the optimizer gets the
    class vectors with the module's other parameters, and checkpoints restore them.

    Args:
        weight, input, views, name: see :class:`LossTerm`.
        kind, gamma, lam, learn_gamma: see :class:`~silhouette_lightning.losses.corel.CorelLoss`.
    """

    default_name = "corel"

    def __init__(
        self,
        weight: float = 1.0,
        input: OutputName = "embeddings",
        views: ViewSelection = "all",
        name: str | None = None,
        kind: CorelKind = "cosine",
        gamma: float = 0.5,
        lam: float = 0.5,
        learn_gamma: bool = False,
    ) -> None:
        super().__init__(weight=weight, input=input, views=views, name=name)
        # Checked here, not only in bind, so that a bad value fails while the config is instantiated.
        check_corel_options(kind=kind, gamma=gamma, lam=lam, learn_gamma=learn_gamma)
        self.kind = kind
        self.gamma = float(gamma)
        self.lam = float(lam)
        self.learn_gamma = learn_gamma
        self.loss: CorelLoss | None = None

    def bind(self, num_classes: int, input_dim: int) -> None:
        if self.loss is not None:
            if (self.loss.num_classes, self.loss.embedding_dim) == (num_classes, input_dim):
                return  # bound again to the same shapes: keep the (possibly trained) class vectors
            raise ConfigError(
                f"Loss term {self.name!r} is already bound to {self.loss.num_classes} classes x "
                f"{self.loss.embedding_dim} dims and cannot be re-bound to {num_classes} x {input_dim}; "
                "create a new term for another model."
            )
        self.loss = CorelLoss(
            num_classes,
            input_dim,
            kind=self.kind,
            gamma=self.gamma,
            lam=self.lam,
            learn_gamma=self.learn_gamma,
        )

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        if self.loss is None:
            raise RuntimeError(
                f"Loss term {self.name!r} (CorelTerm) has no class vectors yet: call "
                "term.bind(num_classes, input_dim) first. EmbeddingModule does this in its __init__."
            )
        return self.loss(inputs, labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kind={self.kind!r}, bound={self.loss is not None}"
