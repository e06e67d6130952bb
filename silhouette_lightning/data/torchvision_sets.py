"""torchvision data sets by name: one :class:`TorchvisionSource` per :class:`TorchvisionDatasetSpec`.

Registers ``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``, ``fgvc_aircraft``, ``dtd``,
``food101``, ``caltech101``, ``caltech256`` and ``oxford_pets`` (specs in
:mod:`~silhouette_lightning.data.torchvision_specs`).
"""

from __future__ import annotations

from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from silhouette_lightning.data.image_files import UnreadableImageError
from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.data.splits import Split, stratified_split
from silhouette_lightning.data.torchvision_specs import (
    TORCHVISION_SPECS,
    TorchvisionDatasetSpec,
    targets_attribute,
)
from silhouette_lightning.data.transforms import (
    padded_random_crop,
    random_resized_crop,
    resize_center_crop,
    resize_only,
)
from silhouette_lightning.errors import DatasetNotFoundError

__all__ = ["DEFAULT_ROOT", "RGBImages", "TorchvisionDatasetSpec", "TorchvisionSource", "targets_attribute"]

#: Where torchvision data sets live when ``data.root`` is not set (relative to the working directory).
DEFAULT_ROOT = Path("data")

# What PIL raises for a file it cannot decode (as in image_files.load_rgb_image).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class RGBImages(Dataset[tuple[Any, int]]):
    """A torchvision data set whose PIL images are converted to RGB.

    Caltech-101/256 hold grayscale (and a few CMYK) JPEGs and torchvision passes them on as they are;
    every pipeline here expects three channels. A file that cannot be decoded raises
    :class:`UnreadableImageError` naming the data set and the sample instead of a bare PIL error.
    """

    def __init__(self, dataset: Dataset[tuple[Any, int]], name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        try:
            image, target = self.dataset[index]
            if isinstance(image, Image.Image) and image.mode != "RGB":
                image = image.convert("RGB")  # also forces the decode inside this try
        except _DECODE_ERRORS as err:
            raise UnreadableImageError(
                f"Cannot read image {index} of dataset '{self.name}' ({type(err).__name__}: {err}). "
                "The file is missing, corrupt or truncated: re-extract or re-download the data set."
            ) from err
        return image, target


class TorchvisionSource(DatasetSource):
    """A torchvision data set described by a :class:`TorchvisionDatasetSpec`.

    Never downloads unless ``download`` is true. Files the constructor needs are checked when the
    source is built (before a Trainer or a run folder exists): a missing data set raises
    :class:`DatasetNotFoundError` saying where it looked, the layout torchvision expects and how to
    get it; with ``download`` it is downloaded then, since class lists may live in its files.
    """

    def __init__(self, config: SourceConfig, spec: TorchvisionDatasetSpec) -> None:
        self.spec = spec
        self.natural_image_size = spec.natural_image_size
        super().__init__(config)
        self.root = Path(config.root) if config.root is not None else DEFAULT_ROOT
        self._loaded: dict[Split, tuple[Dataset[Any], list[int]]] = {}
        missing = self.missing_paths()
        if missing:
            if not config.download or spec.manual_download is not None:
                raise self._not_found(f"missing: {', '.join(missing)}")
            self._download()
        self._class_names = self._read_class_names()

    def _download(self) -> None:
        """Let torchvision download and extract the data set now: its class list may be in the files."""
        self.spec.factory(root=str(self.root), download=True, **self.spec.split_kwargs["train"])
        missing = self.missing_paths()
        if missing:
            raise self._not_found(f"still missing after the download: {', '.join(missing)}")

    def missing_paths(self) -> list[str]:
        """The required files and folders (relative to ``root``) that are not there."""
        required = self.spec.required_paths or (self.spec.extracted_folder,)
        return [path for path in required if not (self.root / path).exists()]

    def _read_class_names(self) -> list[str]:
        if not callable(self.spec.class_names):
            return list(self.spec.class_names)
        try:
            names = [str(name) for name in self.spec.class_names(self.root)]
        except Exception as err:  # whatever the parser raises, the copy is broken
            raise self._not_found(f"cannot read its class list: {type(err).__name__}: {err}") from err
        if not names:
            raise self._not_found("its class list is empty")
        return names

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def _load(self, split: Split) -> tuple[Dataset[Any], list[int]]:
        """The torchvision data set of one of its own splits and its labels (constructed once)."""
        if split not in self._loaded:
            download = self.config.download and self.spec.manual_download is None
            try:
                dataset = self.spec.factory(
                    root=str(self.root), download=download, **self.spec.split_kwargs[split]
                )
            except Exception as err:  # torchvision: RuntimeError; a broken copy: whatever its parser raises
                if download:  # a failed download is a different problem: keep its message
                    raise
                raise self._not_found(f"{split} split; torchvision: {type(err).__name__}: {err}") from err
            targets = [int(t) for t in self.spec.targets(dataset, self._class_names)]
            self._loaded[split] = (RGBImages(dataset, self.name), targets)
        return self._loaded[split]

    def _not_found(self, detail: str) -> DatasetNotFoundError:
        # One paragraph: the CLI prints it as the whole error message.
        parts = [
            f"Dataset '{self.name}' was not found or is incomplete in '{self.root.resolve()}' ({detail})."
        ]
        if self.spec.layout:
            parts.append(f"torchvision expects in data.root: {self.spec.layout}.")
        if self.spec.manual_download is not None:
            parts.append(self.spec.manual_download)
        else:
            parts.append(
                f"Set data.download: true (or --data.download true) to download it, or place the "
                f"extracted {self.spec.extracted_folder} folder in '{self.root}' (data.root)."
            )
        return DatasetNotFoundError(" ".join(parts))

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
        return resize_center_crop(
            self.image_size, self.spec.stats, crop_fraction=self.spec.eval_crop_fraction
        )


for _name, _spec in TORCHVISION_SPECS.items():
    register_dataset(_name, partial(TorchvisionSource, spec=_spec))
