"""The training objective: the loss terms, bound to the model's widths, their weighted sum, the online
linear evaluation, and the rule for non-finite values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses.cross_batch_memory import CrossBatchMemory
from silhouette_lightning.terms.base import LossTerm
from silhouette_lightning.terms.cross_entropy import CrossEntropyTerm
from silhouette_lightning.terms.nonfinite import NonFinitePolicy, NonFiniteRule
from silhouette_lightning.terms.outputs import ModelOutputs, OutputName


@dataclass(frozen=True)
class ObjectiveValue:
    """One batch's objective: each term's unweighted value, their weighted sum and, with the online linear
    evaluation, the classifier's cross-entropy on detached features."""

    terms: dict[str, Tensor]
    objective: Tensor
    linear_eval: Tensor | None

    @property
    def total(self) -> Tensor:
        """What backward runs on: the objective plus the linear evaluation (which only trains the
        classifier, whose input is detached: it measures, not shapes)."""
        return self.objective if self.linear_eval is None else self.objective + self.linear_eval

    @property
    def checked(self) -> dict[str, Tensor]:
        """The values that must be finite in training, by name."""
        extra = {} if self.linear_eval is None else {"linear_eval": self.linear_eval}
        return {**self.terms, **extra}

    def logged(self) -> dict[str, Tensor]:
        """``loss/<term>``, ``loss`` (the objective) and ``loss/linear_eval``, in this order."""
        values: dict[str, Tensor] = {f"loss/{name}": value for name, value in self.terms.items()}
        values["loss"] = self.objective
        if self.linear_eval is not None:
            values["loss/linear_eval"] = self.linear_eval
        return values


class Objective:
    """The weighted loss terms of a model, checked and bound to its output widths.

    Not an ``nn.Module``: the model registers :attr:`terms` itself (as ``losses``, the key its
    checkpoints have always had), so the terms move, train and save with it.

    Args:
        terms: the loss terms; ``None``: cross-entropy alone. Names must be unique (they are logged).
        widths: the width of each output a term may read (``features``, ``embeddings``, ``logits``: the
            number of classes, which the terms are bound to).
        online_linear_eval: also train the classifier on detached features with its own cross-entropy
            (no term may then read the logits).
        on_nonfinite, max_consecutive_skips: the :class:`NonFiniteRule`.
    """

    def __init__(
        self,
        terms: list[LossTerm] | None,
        widths: Mapping[OutputName, int],
        online_linear_eval: bool = False,
        on_nonfinite: NonFinitePolicy = "stop",
        max_consecutive_skips: int = 10,
    ) -> None:
        terms = [CrossEntropyTerm()] if terms is None else list(terms)
        if not terms:
            raise ConfigError("model.losses is empty: give at least one loss term.")
        if online_linear_eval and any(term.input == "logits" for term in terms):
            raise ConfigError(
                "model.online_linear_eval trains the classifier on detached features, so a loss term on the "
                "logits would not shape the representation: remove the logits term (e.g. CrossEntropyTerm) "
                "or set online_linear_eval: false."
            )
        names = [term.name for term in terms]
        if len(set(names)) != len(names):
            raise ConfigError(f"Loss term names must be unique (they are logged by name), got {names}.")
        self.num_classes = widths["logits"]
        for term in terms:
            term.bind(num_classes=self.num_classes, input_dim=widths[term.input])
        self.terms = nn.ModuleList(terms)
        self.online_linear_eval = online_linear_eval
        self.nonfinite = NonFiniteRule(on_nonfinite, max_consecutive_skips)

    def reads(self, output: OutputName) -> bool:
        """Whether some term reads ``output``."""
        return any(term.input == output for term in self.terms)

    def __call__(self, outputs: ModelOutputs, labels: Tensor) -> ObjectiveValue:
        values = {term.name: term(outputs, labels) for term in self.terms}
        objective = sum(term.weight * values[term.name] for term in self.terms)
        linear_eval = None
        if self.online_linear_eval:
            linear_eval = nn.functional.cross_entropy(
                outputs.logits.flatten(0, 1), labels.repeat_interleave(outputs.num_views)
            )
        return ObjectiveValue(values, objective, linear_eval)

    def logged_names(self) -> list[str]:
        """The keys of :meth:`ObjectiveValue.logged`, known before any batch."""
        names = ["loss", *(f"loss/{term.name}" for term in self.terms)]
        return [*names, "loss/linear_eval"] if self.online_linear_eval else names

    def check_labels(self, labels: Tensor) -> None:
        """Labels outside ``[0, num_classes)`` would surface as an index error deep inside cross-entropy (or
        a device-side assert on CUDA): a clear error instead."""
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ConfigError(
                f"Labels must lie in [0, {self.num_classes}) but this batch has labels in [{low}, {high}]. "
                "Check that model.num_classes matches the data (the CLI links it from data.num_classes) and "
                "that the dataset's labels are class indices."
            )

    def check_memories_fit(self, train_dataloader: Any) -> None:
        """Refuse a cross-batch memory larger than the training set (of ``train_dataloader``): it would hold
        samples twice, the anchors' own earlier copies among them."""
        try:
            size = len(train_dataloader.dataset)
        except (AttributeError, TypeError):  # an iterable data set, or several loaders: nothing to compare
            return
        for index, term in enumerate(self.terms):
            memories = [m for m in term.modules() if isinstance(m, CrossBatchMemory)]
            if any(memory.size > size for memory in memories):
                raise ConfigError(
                    f"model.losses[{index}] ({term.name!r}): memory_size={memories[0].size} is larger than "
                    f"the training set ({size} samples), so the memory would hold samples twice, the "
                    f"anchors' own earlier copies among them. Set memory_size <= {size} (0 turns it off)."
                )

    def freeze_untrained(
        self, head: nn.Module, classifier: nn.Module, head_evaluated: bool, accuracy_reported: bool
    ) -> None:
        """Freeze the head when no term reads the embeddings, the classifier when nothing trains it.

        Why: such parameters would never receive a gradient, and DDP (without the costly
        ``find_unused_parameters``) fails on the first step when a parameter gets none. Frozen, DDP skips
        them, and the optimizer carries no state for them. The warnings say when a logged number then
        measures an untrained part (``head_evaluated``: the embedding metrics read the head;
        ``accuracy_reported``: the accuracy reads the classifier).
        """
        if not self.reads("embeddings"):
            head.requires_grad_(False)
            if head_evaluated:
                rank_zero_warn(
                    "No loss term reads the embeddings, so the projection head stays at its random "
                    "initialisation and the embedding metrics measure a random projection of the features. "
                    "Set model.eval_output: features (as configs/method/ce.yaml does)."
                )
        if not self.reads("logits") and not self.online_linear_eval:
            classifier.requires_grad_(False)
            if accuracy_reported:
                rank_zero_warn(
                    "No loss term reads the logits and model.online_linear_eval is off: the classifier stays "
                    "untrained and the logged accuracy is chance level. Set model.online_linear_eval: true."
                )
