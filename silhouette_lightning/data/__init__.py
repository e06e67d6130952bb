"""Data: :class:`ImageDataModule`, the registry of named data sets it loads from, their splits, the
transforms (multi-view included) and the :class:`ClassBalancedSampler` for batches with m samples of each
of their classes. The data sets themselves live in :mod:`.sources`, one file per family.

Importing this package registers the built-in data sets: ``digits``, ``synthetic``, ``imagefolder``, and
the torchvision sets ``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``, ``fgvc_aircraft``,
``dtd``, ``food101``, ``caltech101``, ``caltech256`` and ``oxford_pets``.
"""

# Imported for its registrations (each data set family registers its names on import).
from silhouette_lightning.data import sources  # noqa: F401
from silhouette_lightning.data.balanced_sampler import ClassBalancedSampler
from silhouette_lightning.data.datamodule import ImageDataModule
from silhouette_lightning.data.image_split import ImageSplit
from silhouette_lightning.data.registry import register_dataset, registered_datasets, unregister_dataset
from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.data.splits import SPLITS, Split, stratified_split

__all__ = [
    "SPLITS",
    "ClassBalancedSampler",
    "DatasetSource",
    "ImageDataModule",
    "ImageSplit",
    "SourceConfig",
    "Split",
    "register_dataset",
    "registered_datasets",
    "stratified_split",
    "unregister_dataset",
]
