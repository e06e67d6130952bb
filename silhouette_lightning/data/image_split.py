"""One split of a data set: which samples, their labels, and how images become tensors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, Dataset

from silhouette_lightning.errors import ConfigError

# Turns a raw image (PIL image or float tensor [3, H, W] in [0, 1]) into the model input: a normalised
# float tensor [3, H, W], or [V, 3, H, W] for a transform that makes V views.
Transform = Callable[[Any], Any]


class ImageSplit(Dataset[tuple[Any, int]]):
    """The samples ``base[indices[i]]`` of an underlying data set, passed through ``transform``.

    ``base[j]`` returns ``(raw_image, label)``. ``targets[i]`` is the label of item ``i``, known without
    reading any image, so samplers, class splits and label checks never touch pixels.

    Item ``i`` is ``(transform(raw_image), label)``; with this package's transforms a float tensor
    [3, H, W] and an ``int`` (the default collate turns a batch into [B, 3, H, W] and int64 [B]).
    """

    def __init__(
        self,
        base: Dataset[tuple[Any, int]],
        indices: Sequence[int] | np.ndarray,
        targets: Sequence[int],
        transform: Transform | None = None,
    ) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = [int(t) for t in targets]
        if len(self.indices) != len(self.targets):
            raise ValueError(f"{len(self.indices)} indices but {len(self.targets)} targets")
        self.transform = transform

    @classmethod
    def select(
        cls,
        base: Dataset[tuple[Any, int]],
        base_targets: Sequence[int],
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> ImageSplit:
        """The items of ``base`` at ``indices`` (all of them if None), ``base_targets`` being its labels."""
        if indices is None:
            indices = np.arange(len(base_targets))
        return cls(base, indices, [base_targets[int(i)] for i in indices])

    @classmethod
    def concat(cls, splits: Sequence[ImageSplit]) -> ImageSplit:
        """The items of ``splits`` one after the other (no transform). Splits of one base keep it;
        splits of different bases (e.g. a torchvision set's train and test files) get a ConcatDataset."""
        bases = list({id(s.base): s.base for s in splits}.values())
        targets = [t for s in splits for t in s.targets]
        if len(bases) == 1:
            return cls(bases[0], np.concatenate([s.indices for s in splits]), targets)
        starts = np.cumsum([0] + [len(base) for base in bases[:-1]])
        offsets = {id(base): int(start) for base, start in zip(bases, starts, strict=True)}
        indices = np.concatenate([s.indices + offsets[id(s.base)] for s in splits])
        return cls(ConcatDataset(bases), indices, targets)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSplit:
        """Items ``indices`` of this split (positions in this split, not in the base)."""
        positions = np.asarray(indices, dtype=np.int64)
        return ImageSplit(
            self.base, self.indices[positions], [self.targets[int(i)] for i in positions], self.transform
        )

    def relabel(self, mapping: dict[int, int]) -> ImageSplit:
        """Only the samples whose label is a key of ``mapping``, labelled with its values."""
        positions = [i for i, target in enumerate(self.targets) if target in mapping]
        kept = self.subset(positions)
        return ImageSplit(kept.base, kept.indices, [mapping[t] for t in kept.targets], kept.transform)

    def with_transform(self, transform: Transform | None) -> ImageSplit:
        """The same samples with another transform (e.g. training augmentation)."""
        return ImageSplit(self.base, self.indices, self.targets, transform)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, _ = self.base[int(self.indices[index])]
        if self.transform is not None:
            image = self.transform(image)
        # This split's own label (equal to the base's unless relabelled, e.g. for unseen classes).
        return image, self.targets[index]


def check_targets_in_range(targets: Sequence[int], num_classes: int, *, split: str, dataset: str) -> None:
    """Raise :class:`ConfigError` if a label lies outside [0, num_classes).

    A label out of range would otherwise surface as a CUDA device-side assert or an index error deep
    inside the loss, far from its cause.
    """
    labels = np.asarray(targets, dtype=np.int64)
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise ConfigError(
            f"The {split} split of dataset '{dataset}' has labels outside [0, {num_classes}): {shown} "
            f"(num_classes = {num_classes}). Check that the dataset's classes match its class list."
        )
