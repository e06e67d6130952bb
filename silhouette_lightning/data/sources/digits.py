"""scikit-learn's bundled 8x8 handwritten digits: 1797 images, 10 classes, no download."""

from __future__ import annotations

from torch import Tensor

from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.sources.in_memory import InMemorySource, as_float_images, resize_images
from silhouette_lightning.data.transforms import NormalizationStats


@register_dataset("digits")
class DigitsSource(InMemorySource):
    """``sklearn.datasets.load_digits()``: grayscale 8x8, intensities 0..16, labels 0..9.

    Images are scaled to [0, 1], resized once to ``image_size`` and repeated to 3 channels. Training
    augmentation is a small random translation only: flipped or rotated digits change meaning
    (2/5, 6/9), and the quick start must reach >= 97 % test accuracy in minutes.
    """

    natural_image_size = 8
    # Pixel mean / std of all 1797 images after scaling to [0, 1].
    stats = NormalizationStats(mean=(0.3053,) * 3, std=(0.3760,) * 3)

    @property
    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]

    def load_images(self) -> tuple[Tensor, list[int]]:
        from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

        digits = load_digits()
        images = resize_images(as_float_images(digits.images, scale=16.0), self.image_size)
        return images, [int(t) for t in digits.target]
