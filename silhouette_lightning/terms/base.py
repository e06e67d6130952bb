"""The loss term: the pluggable unit of the objective.

The module holds a list of terms and sums ``weight * term(outputs, labels)``. Each term says which model
output it reads and which views, and carries the name it is logged under (``train/loss/<name>``), so a
new objective is a new ``class_path`` in the config, never a change to the module.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.checks import check_choice
from silhouette_lightning.terms.outputs import ModelOutputs, OutputName

ViewSelection = Literal["all", "first"]
_OUTPUT_NAMES = ("logits", "features", "embeddings")


class LossTerm(nn.Module):
    """Base class of loss terms.

    Subclasses implement :meth:`compute` on ``inputs`` ``[N, ...]`` and ``labels`` ``[N]``, where the
    selected views are flattened into the batch (``N = B * V`` for ``views="all"``, labels repeated).

    Args:
        weight: factor of this term in the total loss (its logged value is unweighted).
        input: which output the term reads: ``"logits"``, ``"features"`` or ``"embeddings"``.
        views: ``"all"`` views of every image, or only the ``"first"``.
        name: logging name; defaults to the class's ``default_name``.
    """

    default_name: str = "loss"

    def __init__(
        self,
        weight: float = 1.0,
        input: OutputName = "embeddings",
        views: ViewSelection = "all",
        name: str | None = None,
    ) -> None:
        super().__init__()
        check_choice("input", input, _OUTPUT_NAMES)
        check_choice("views", views, ("all", "first"))
        if weight < 0:
            raise ConfigError(f"Loss term weight must be >= 0, got {weight}.")
        name = self.default_name if name is None else name
        if not name or "/" in name:
            raise ConfigError(f"Loss term name must be non-empty and contain no '/', got {name!r}.")
        self.weight = float(weight)
        self.input = input
        self.views = views
        self.name = name

    def bind(self, num_classes: int, input_dim: int) -> None:
        """Called once by the module, before the optimizer is built: the number of classes and the width
        of the output this term reads. Terms with their own parameters (class vectors, proxies) create
        them here, so configs never repeat ``num_classes`` or ``embedding_dim``."""

    def select(self, outputs: ModelOutputs, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The term's input ``[N, ...]`` and labels ``[N]``, views flattened image-major."""
        x = outputs.get(self.input)
        if self.views == "first":
            x = x[:, :1]
        num_views = x.shape[1]
        return x.flatten(0, 1), labels.repeat_interleave(num_views)

    def forward(self, outputs: ModelOutputs, labels: Tensor) -> Tensor:
        return self.compute(*self.select(outputs, labels))

    def compute(self, inputs: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weight={self.weight}, input={self.input!r}, views={self.views!r}"
