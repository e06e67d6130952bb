"""Reading images from disk with errors that name the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from silhouette_lightning.errors import ConfigError

# The extensions torchvision's ImageFolder accepts; matched case-insensitively.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
)


# Single-channel modes wider than 8 bits, which convert("RGB") would clip instead of scale.
_WIDE_GRAYSCALE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


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
