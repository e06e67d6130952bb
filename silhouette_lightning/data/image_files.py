"""Reading images from disk with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from silhouette_lightning.errors import ConfigError

# The extensions torchvision's ImageFolder accepts; matched case-insensitively.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
)


class UnreadableImageError(ConfigError):
    """An image file exists but cannot be decoded."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_rgb_image(path: str | Path) -> Image.Image:
    """Decode ``path`` fully into an RGB PIL image; any decoding failure -> :class:`UnreadableImageError`."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # convert() forces the full decode inside the try
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
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
