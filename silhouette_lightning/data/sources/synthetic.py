"""Deterministic class-conditional images for tests and smoke runs (no files, no download)."""

from __future__ import annotations

import torch
from torch import Tensor

from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.source import SourceConfig
from silhouette_lightning.data.sources.in_memory import InMemorySource, resize_images
from silhouette_lightning.data.transforms import NormalizationStats
from silhouette_lightning.errors import ConfigError


@register_dataset("synthetic")
class SyntheticSource(InMemorySource):
    """Each class is a smooth random colour pattern (a 4x4 grid of random RGB values, bilinearly
    upsampled); each sample is its class pattern plus Gaussian pixel noise, clipped to [0, 1].

    Classes differ in colour and layout, so a tiny model separates them in a few steps, while the noise
    keeps samples of one class distinct. Generated from ``seed``: the same config gives the same images.

    Options: ``num_classes`` (>= 1), ``samples_per_class`` (>= 1), ``noise`` (pixel noise std, >= 0).
    """

    natural_image_size = 16
    option_defaults = {"num_classes": 4, "samples_per_class": 32, "noise": 0.1}
    # Patterns are uniform in [0, 1]: mean 0.5, std ~0.29 before upsampling smooths them a little.
    stats = NormalizationStats(mean=(0.5,) * 3, std=(0.25,) * 3)

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        for key in ("num_classes", "samples_per_class"):
            if self.options[key] < 1:
                raise ConfigError(f"data.options.{key} must be >= 1, got {self.options[key]}.")
        if self.options["noise"] < 0:
            raise ConfigError(f"data.options.noise must be >= 0, got {self.options['noise']}.")

    @property
    def class_names(self) -> list[str]:
        return [f"class_{k}" for k in range(self.options["num_classes"])]

    def load_images(self) -> tuple[Tensor, list[int]]:
        num_classes, per_class = self.options["num_classes"], self.options["samples_per_class"]
        generator = torch.Generator().manual_seed(self.config.seed)
        patterns = resize_images(torch.rand(num_classes, 3, 4, 4, generator=generator), self.image_size)
        labels = torch.arange(num_classes).repeat_interleave(per_class)
        noise = torch.randn(len(labels), 3, self.image_size, self.image_size, generator=generator)
        images = (patterns[labels] + self.options["noise"] * noise).clamp_(0.0, 1.0)
        return images, labels.tolist()
