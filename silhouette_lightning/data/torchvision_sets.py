"""torchvision data sets by name (CIFAR-10/100 now; more are one :class:`TorchvisionDatasetSpec` each)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torchvision import datasets

from silhouette_lightning.data.cifar_classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.data.splits import Split, stratified_split
from silhouette_lightning.data.transforms import (
    NormalizationStats,
    padded_random_crop,
    random_resized_crop,
    resize_center_crop,
    resize_only,
)
from silhouette_lightning.errors import DatasetNotFoundError

#: Where torchvision data sets live when ``data.root`` is not set (relative to the working directory).
DEFAULT_ROOT = Path("data")


def targets_attribute(dataset: Any) -> Sequence[int]:
    """The labels of a torchvision data set that stores them as ``.targets`` (CIFAR, MNIST, ...)."""
    return dataset.targets


@dataclass(frozen=True)
class TorchvisionDatasetSpec:
    """How to construct one torchvision data set and what its images are like.

    Args:
        factory: the torchvision class, called as ``factory(root=..., download=..., **split_kwargs[s])``;
            it must return ``(PIL image, label)`` items when given no transform.
        class_names: class names in label order (fixed, so nothing is read before ``setup``).
        split_kwargs: constructor arguments per split the data set has; must include ``"train"``.
            Splits not listed (e.g. CIFAR's ``"val"``) are carved out of train by the fractions.
        stats: normalisation statistics.
        natural_image_size: the default ``image_size``.
        extracted_folder: what a download leaves in ``root``, quoted in the not-found message.
        small_images: fixed-size small images (pad + random crop, no resize at eval) rather than
            photos of varying size (RandomResizedCrop, Resize + CenterCrop).
        horizontal_flip: whether mirrored images keep their class (False for text, digits, ...).
        targets: reads the labels of a constructed data set without decoding images.
    """

    factory: Callable[..., Dataset[Any]]
    class_names: tuple[str, ...]
    split_kwargs: Mapping[Split, Mapping[str, Any]]
    stats: NormalizationStats
    natural_image_size: int
    extracted_folder: str
    small_images: bool = True
    horizontal_flip: bool = True
    targets: Callable[[Any], Sequence[int]] = targets_attribute


class TorchvisionSource(DatasetSource):
    """A torchvision data set described by a :class:`TorchvisionDatasetSpec`.

    Never downloads unless ``download`` is true; a missing data set raises
    :class:`DatasetNotFoundError` saying where it looked and how to get it.
    """

    def __init__(self, config: SourceConfig, spec: TorchvisionDatasetSpec) -> None:
        self.spec = spec
        self.natural_image_size = spec.natural_image_size
        super().__init__(config)
        self.root = Path(config.root) if config.root is not None else DEFAULT_ROOT
        self._loaded: dict[Split, tuple[Dataset[Any], list[int]]] = {}
        # Fail at construction, before a Trainer or a run folder exists, when the data cannot be there.
        if not config.download and not (self.root / spec.extracted_folder).exists():
            raise self._not_found("its folder is missing")

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    def _load(self, split: Split) -> tuple[Dataset[Any], list[int]]:
        """The torchvision data set of one of its own splits and its labels (constructed once)."""
        if split not in self._loaded:
            try:
                dataset = self.spec.factory(
                    root=str(self.root), download=self.config.download, **self.spec.split_kwargs[split]
                )
            except RuntimeError as err:
                if self.config.download:  # a failed download is a different problem: keep its message
                    raise
                raise self._not_found(f"{split} split; torchvision: {err}") from err
            self._loaded[split] = (dataset, [int(t) for t in self.spec.targets(dataset)])
        return self._loaded[split]

    def _not_found(self, detail: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(
            f"Dataset '{self.name}' was not found in '{self.root.resolve()}' ({detail}). Set "
            f"data.download: true (or --data.download true) to download it, or place the extracted "
            f"{self.spec.extracted_folder} folder in '{self.root}' (data.root)."
        )

    @cached_property
    def _carved_indices(self) -> dict[Split, np.ndarray]:
        """The torchvision train split divided into train and the val/test splits it lacks."""
        fractions: dict[Split, float] = {
            split: fraction
            for split, fraction in (("val", self.config.val_fraction), ("test", self.config.test_fraction))
            if split not in self.spec.split_kwargs
        }
        return stratified_split(self._load("train")[1], fractions, self.config.seed)

    def load_split(self, split: Split) -> ImageSplit:
        if split != "train" and split in self.spec.split_kwargs:
            return ImageSplit.select(*self._load(split))
        dataset, targets = self._load("train")
        return ImageSplit.select(dataset, targets, self._carved_indices[split])

    def train_transform(self) -> Transform:
        flip = self.spec.horizontal_flip
        if self.spec.small_images:
            return padded_random_crop(self.image_size, self.natural_image_size, self.spec.stats, flip=flip)
        return random_resized_crop(self.image_size, self.spec.stats, flip=flip)

    def eval_transform(self) -> Transform:
        if self.spec.small_images:
            return resize_only(self.image_size, self.natural_image_size, self.spec.stats)
        return resize_center_crop(self.image_size, self.spec.stats)


_CIFAR_SPLITS: Mapping[Split, Mapping[str, Any]] = {"train": {"train": True}, "test": {"train": False}}

CIFAR10_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR10,
    class_names=CIFAR10_CLASSES,
    split_kwargs=_CIFAR_SPLITS,
    stats=NormalizationStats(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    natural_image_size=32,
    extracted_folder="cifar-10-batches-py",
)
CIFAR100_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR100,
    class_names=CIFAR100_CLASSES,
    split_kwargs=_CIFAR_SPLITS,
    stats=NormalizationStats(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    natural_image_size=32,
    extracted_folder="cifar-100-python",
)

register_dataset("cifar10", partial(TorchvisionSource, spec=CIFAR10_SPEC))
register_dataset("cifar100", partial(TorchvisionSource, spec=CIFAR100_SPEC))
