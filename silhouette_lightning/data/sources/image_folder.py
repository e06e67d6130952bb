"""A user's own images in class folders: ``root/train/<class>/*`` (+ optional ``val/``, ``test/``), and
reading image files with errors that name the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.data.splits import Split, stratified_split
from silhouette_lightning.data.transforms import IMAGENET_STATS, random_resized_crop, resize_center_crop
from silhouette_lightning.errors import ConfigError, DatasetNotFoundError

# --- image files ------------------------------------------------------------------------------------

# The extensions torchvision's ImageFolder accepts; matched case-insensitively.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
)

# Single-channel modes wider than 8 bits, which convert("RGB") would clip instead of scale.
_WIDE_GRAYSCALE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

# What PIL raises for a file it cannot decode.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(ConfigError):
    """An image file exists but cannot be decoded."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as 8-bit ``L``, scaled by its type's range.

    Why: PIL's ``convert("RGB")`` clips such values at 255 instead of scaling them, so a 16-bit PNG
    (0..65535) comes out nearly all white. Integer images are scaled from the 16-bit range (values
    ``v`` -> ``round(v * 255 / 65535)``, proportional, as other 16-bit readers do; a 32-bit ``I`` image
    with values above 65535 is scaled by its own maximum), float images (``F``) from their own range.
    """
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    else:
        low, high = 0.0, max(65535.0, float(values.max()) if values.size else 0.0)
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def load_rgb_image(path: str | Path) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image; any decoding failure -> :class:`UnreadableImageError`."""
    try:
        with Image.open(path) as image:
            if image.mode in _WIDE_GRAYSCALE_MODES:
                image = _to_8_bit(image)
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except DECODE_ERRORS as err:
        raise UnreadableImageError(
            f"Cannot read image file '{path}' ({type(err).__name__}: {err}). "
            "The file is corrupt, truncated or not an image: remove or replace it."
        ) from err


class ImageFileDataset(Dataset[tuple[Image.Image, int]]):
    """Image files with labels. Item ``i``: ``(RGB PIL image of paths[i], targets[i])``."""

    def __init__(self, paths: Sequence[str | Path], targets: Sequence[int]) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} paths but {len(targets)} targets")
        # Strings, not Paths: smaller to pickle into worker processes.
        self.paths = [str(p) for p in paths]
        self.targets = [int(t) for t in targets]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return load_rgb_image(self.paths[index]), self.targets[index]


# --- class folders ----------------------------------------------------------------------------------

LAYOUT_HELP = """Expected layout:
  <root>/train/<class>/<image>   required
  <root>/val/<class>/<image>     optional; otherwise data.val_fraction of train
  <root>/test/<class>/<image>    optional; otherwise data.test_fraction of train
or <root>/<class>/<image>, split by data.val_fraction and data.test_fraction."""


@dataclass(frozen=True)
class FolderLayout:
    """Which folder holds each split's class folders; None where the split is carved out of train."""

    train: Path
    val: Path | None
    test: Path | None

    def folder(self, split: Split) -> Path | None:
        return getattr(self, split)


def find_layout(root: Path) -> FolderLayout:
    """Detect the layout under ``root``; raise :class:`DatasetNotFoundError` if there is none."""
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetNotFoundError(f"Image folder '{root}' {what} (data.root). {LAYOUT_HELP}")
    if (root / "train").is_dir():
        return FolderLayout(
            train=root / "train",
            val=root / "val" if (root / "val").is_dir() else None,
            test=root / "test" if (root / "test").is_dir() else None,
        )
    strays = [name for name in ("val", "test") if (root / name).is_dir()]
    if strays:
        # Without this check 'val' and 'test' would silently become two classes.
        raise DatasetNotFoundError(
            f"'{root}' has {', '.join(strays)}/ but no train/ folder: looked for '{root / 'train'}'. "
            f"{LAYOUT_HELP}"
        )
    return FolderLayout(train=root, val=None, test=None)


def list_class_folders(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder``: the class names, in label order."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan_images(folder: Path, class_names: list[str]) -> tuple[list[str], list[int]]:
    """All image files under ``folder/<class>/`` (recursively, sorted) and their labels.

    A class folder without images is an error: it would be a class the model can never learn, and
    usually means a copy went wrong.
    """
    paths: list[str] = []
    targets: list[int] = []
    for label, name in enumerate(class_names):
        class_folder = folder / name
        found = sorted(
            str(Path(dirpath) / filename)
            for dirpath, _, filenames in os.walk(class_folder, followlinks=True)
            for filename in filenames
            if is_image_file(Path(filename))
        )
        if not found:
            raise ConfigError(
                f"Class folder '{class_folder}' contains no images (looked for files ending in "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Add images or remove the folder."
            )
        paths.extend(found)
        targets.extend([label] * len(found))
    return paths, targets


@register_dataset("imagefolder")
class ImageFolderSource(DatasetSource):
    """Images in class folders; class names are the sorted folder names of the train split.

    Splits with their own folder are used as they are; missing ``val``/``test`` splits are carved
    out of train by seeded stratified fractions. Images are decoded with PIL and converted to RGB;
    training augmentation is RandomResizedCrop(scale 0.5-1) + horizontal flip, evaluation is
    Resize + CenterCrop; normalised with ImageNet statistics (what pretrained backbones expect).
    """

    natural_image_size = 224

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if config.root is None:
            raise ConfigError(
                f"Dataset 'imagefolder' needs data.root, the folder of your images. {LAYOUT_HELP}"
            )
        self.layout = find_layout(Path(config.root))
        self._class_names = list_class_folders(self.layout.train)
        if not self._class_names:
            raise DatasetNotFoundError(f"No class folders in '{self.layout.train}'. {LAYOUT_HELP}")
        for split in ("val", "test"):
            folder = self.layout.folder(split)
            if folder is not None:
                self._check_same_classes(folder)

    def _check_same_classes(self, folder: Path) -> None:
        # Labels are positions in the sorted class list: a class missing in one split would shift
        # every later label there, so the folders must match exactly.
        names = list_class_folders(folder)
        if names != self._class_names:
            missing = sorted(set(self._class_names) - set(names))
            extra = sorted(set(names) - set(self._class_names))
            raise ConfigError(
                f"Class folders of '{folder}' differ from '{self.layout.train}': missing {missing}, "
                f"extra {extra}. Every split needs the same class folders."
            )

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @cached_property
    def _train_pool(self) -> tuple[ImageFileDataset, dict[Split, np.ndarray]]:
        """The train folder's images and their split into train and the carved-out val/test."""
        paths, targets = scan_images(self.layout.train, self._class_names)
        fractions: dict[Split, float] = {
            "val": self.config.val_fraction if self.layout.val is None else 0.0,
            "test": self.config.test_fraction if self.layout.test is None else 0.0,
        }
        return ImageFileDataset(paths, targets), stratified_split(targets, fractions, self.config.seed)

    def load_split(self, split: Split) -> ImageSplit:
        folder = self.layout.folder(split)
        if split != "train" and folder is not None:
            dataset = ImageFileDataset(*scan_images(folder, self._class_names))
            return ImageSplit.select(dataset, dataset.targets)
        dataset, indices = self._train_pool
        return ImageSplit.select(dataset, dataset.targets, indices[split])

    def train_transform(self) -> Transform:
        return random_resized_crop(self.image_size, IMAGENET_STATS, flip=True)

    def eval_transform(self) -> Transform:
        return resize_center_crop(self.image_size, IMAGENET_STATS)
