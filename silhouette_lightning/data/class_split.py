"""Seen / unseen classes: train and validate on some classes, test the embedding on the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from silhouette_lightning.errors import ConfigError


@dataclass(frozen=True)
class ClassSplit:
    """Original class indices kept for training/validation (``seen``) and held out for testing (``unseen``).

    Each side is relabelled to ``0..len-1`` in the original order, so the classifier only has outputs
    for the seen classes and the unseen test split has labels of its own.
    """

    seen: tuple[int, ...]
    unseen: tuple[int, ...]

    @classmethod
    def resolve(
        cls, unseen_classes: int | Sequence[int | str], class_names: Sequence[str], seed: int
    ) -> ClassSplit:
        """From a count (drawn with ``seed``) or a list of class names / indices."""
        num = len(class_names)
        if isinstance(unseen_classes, int) and not isinstance(unseen_classes, bool):
            if not 1 <= unseen_classes <= num - 2:
                raise ConfigError(
                    f"data.unseen_classes={unseen_classes} must hold out at least 1 of the dataset's {num} "
                    "classes and leave at least 2 seen ones."
                )
            order = torch.randperm(num, generator=torch.Generator().manual_seed(seed)).tolist()
            unseen = set(order[:unseen_classes])
        else:
            unseen = {_class_index(value, class_names) for value in unseen_classes}
            if not unseen or num - len(unseen) < 2:
                raise ConfigError(
                    f"data.unseen_classes must name at least 1 class and leave at least 2 seen classes, got "
                    f"{list(unseen_classes)} of {num} classes."
                )
        return cls(seen=tuple(k for k in range(num) if k not in unseen), unseen=tuple(sorted(unseen)))

    def classes(self, unseen: bool) -> tuple[int, ...]:
        """The original class indices of the seen or the unseen side, in their new label order."""
        return self.unseen if unseen else self.seen

    def relabelling(self, unseen: bool) -> dict[int, int]:
        """Original label -> new label, for the seen or the unseen side."""
        return {original: new for new, original in enumerate(self.classes(unseen))}


def _class_index(value: int | str, class_names: Sequence[str]) -> int:
    if isinstance(value, str) and value in class_names:
        return list(class_names).index(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(class_names):
        return value
    raise ConfigError(
        f"data.unseen_classes: {value!r} is not a class of this dataset. Valid names: "
        f"{', '.join(class_names)} (or indices 0..{len(class_names) - 1})."
    )
