"""What a named data set must provide to :class:`~silhouette_lightning.data.ImageDataModule`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.splits import Split
from silhouette_lightning.errors import ConfigError


@dataclass(frozen=True)
class SourceConfig:
    """The data module's settings that concern the data set itself (not batching).

    ``image_size`` None means the data set's natural size; ``options`` are the data set's own extras
    (checked against :attr:`DatasetSource.option_defaults`).
    """

    name: str
    root: Path | None = None
    image_size: int | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    download: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)


class DatasetSource(ABC):
    """One named data set: its classes, its raw (untransformed) splits and its transforms.

    Subclasses are registered with :func:`~silhouette_lightning.data.registry.register_dataset`.
    ``__init__`` must stay cheap (no image reading, no download): the data module builds the source
    when it is constructed, and LightningCLI reads ``num_classes`` before ``setup()`` runs.
    """

    #: Side length of the images when ``image_size`` is None.
    natural_image_size: int
    #: The allowed ``options`` keys and their defaults.
    option_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.options = resolve_options(config.name, config.options, self.option_defaults)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        """Side length H = W of the images this source's transforms produce."""
        return self.config.image_size or self.natural_image_size

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Class names; label ``k`` is ``class_names[k]``. Must not read images or download."""

    @abstractmethod
    def load_split(self, split: Split) -> ImageSplit:
        """The raw samples of ``split`` (no transform). May be called more than once; cache work."""

    @abstractmethod
    def train_transform(self) -> Transform:
        """Raw image -> augmented, normalised float tensor [3, H, W]."""

    @abstractmethod
    def eval_transform(self) -> Transform:
        """Raw image -> normalised float tensor [3, H, W], deterministic."""


def resolve_options(
    dataset: str, options: Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated with ``options``; unknown keys or values of the wrong type -> ConfigError."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"Unknown data.options for dataset '{dataset}': {unknown}. Allowed: {allowed}.")
    for key, value in options.items():
        expected = type(defaults[key])
        if not _has_type(value, expected):
            raise ConfigError(
                f"data.options.{key} for dataset '{dataset}' must be a {expected.__name__}, got {value!r}."
            )
    return {**defaults, **options}


def _has_type(value: Any, expected: type) -> bool:
    if expected is type(None):  # a None default accepts anything; the source checks it
        return True
    if isinstance(value, bool) and expected is not bool:  # bool is an int subclass; True is no count
        return False
    if expected is float:  # an int is a fine float
        return isinstance(value, int | float)
    return isinstance(value, expected)
