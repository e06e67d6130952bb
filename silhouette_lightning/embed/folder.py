"""The images to embed: class folders (labelled) or a flat / nested folder of unlabelled files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from silhouette_lightning.data.image_split import Transform
from silhouette_lightning.data.sources.image_folder import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    is_image_file,
    list_class_folders,
    load_rgb_image,
)
from silhouette_lightning.errors import DatasetNotFoundError


@dataclass(frozen=True)
class ImageCollection:
    """Image files in a fixed (sorted) order; with labels when they came from class folders.

    ``labels[i]`` is the index of ``class_names`` that ``paths[i]`` belongs to; both None for unlabelled
    folders.
    """

    root: Path
    paths: list[str]
    labels: list[int] | None
    class_names: list[str] | None

    @property
    def labelled(self) -> bool:
        return self.labels is not None


def _images_under(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursively, following links), sorted."""
    return sorted(
        str(Path(dirpath) / filename)
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True)
        if not any(part.startswith(".") for part in Path(dirpath).relative_to(folder).parts)
        for filename in filenames
        if is_image_file(Path(filename))
    )


def scan_image_collection(root: str | Path, labels: bool = True) -> ImageCollection:
    """All images under ``root``.

    Labelled when ``labels`` and ``root`` holds class folders and no image files of its own:
    ``root/<class>/**/<image>``, class ``k`` the k-th folder name in sorted order (class folders without
    images are left out). Otherwise every image under ``root``, recursively, unlabelled.

    Raises:
        DatasetNotFoundError: ``root`` is missing, not a folder, or holds no image file.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DatasetNotFoundError(f"Image folder '{root}' {what}: give the folder of the images to embed.")
    top_level_images = any(e.is_file() and is_image_file(Path(e.name)) for e in os.scandir(root))
    if labels and not top_level_images:
        paths: list[str] = []
        targets: list[int] = []
        class_names: list[str] = []
        for name in list_class_folders(root):
            found = _images_under(root / name)
            if found:
                targets += [len(class_names)] * len(found)
                class_names.append(name)
                paths += found
        if paths:
            return ImageCollection(root, paths, targets, class_names)
    paths = _images_under(root)
    if not paths:
        raise DatasetNotFoundError(
            f"No images in '{root}' (looked recursively for files ending in "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}). Give a folder of images, or of class folders of images."
        )
    return ImageCollection(root, paths, None, None)


class EmbeddingImages(Dataset[tuple[Tensor, int]]):
    """Item ``i``: ``(transformed image [3, H, W], i)``; an unreadable file gives a zero image and ``-1 - i``.

    Unreadable files are reported, not raised, so that one corrupt file does not stop (and lose) the
    embedding of thousands of others; the loop drops their rows and lists them once.
    """

    def __init__(self, paths: list[str], transform: Transform, image_size: int) -> None:
        self.paths = paths
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        try:
            return self.transform(load_rgb_image(self.paths[index])), index
        except UnreadableImageError:
            return torch.zeros(3, self.image_size, self.image_size), -1 - index
