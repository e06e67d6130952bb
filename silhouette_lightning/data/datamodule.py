"""The LightningDataModule that LightningCLI configures as ``data:``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, DistributedSampler

from silhouette_lightning.data.balanced_sampler import ClassBalancedSampler, check_balanced_batch
from silhouette_lightning.data.class_split import ClassSplit
from silhouette_lightning.data.image_split import ImageSplit, Transform, check_targets_in_range
from silhouette_lightning.data.registry import create_source
from silhouette_lightning.data.source import SourceConfig
from silhouette_lightning.data.splits import SPLITS, Split, check_fractions
from silhouette_lightning.data.transforms import MultiViewTransform
from silhouette_lightning.errors import ConfigError

# The splits each Trainer entry point needs; ``predict`` embeds the test split.
STAGE_SPLITS: dict[str, tuple[Split, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


class ImageDataModule(LightningDataModule):
    """Image classification data from a registry of named data sets.

    Every batch is ``(images, labels)``: float32 [B, 3, H, W] (normalised with the data set's
    statistics; grayscale repeated to 3 channels; [B, V, 3, H, W] for training with ``num_views > 1``)
    and int64 [B] in [0, num_classes).
    ``num_classes`` and ``class_names`` are known right after construction (LightningCLI links
    ``data.num_classes`` to the model before ``setup`` runs); images are read in ``setup``.

    The training order depends only on the training seed and the epoch, never on the global RNG: the
    train loader's sampler is a :class:`~torch.utils.data.DistributedSampler` (also with one process)
    whose ``set_epoch`` the Trainer calls every epoch, so a run resumed from a checkpoint at an epoch
    boundary sees the batches of an uninterrupted run (the random augmentations are not covered). Under
    DDP each rank takes its shard, with world size and rank from the attached Trainer. Outside a
    Trainer, call ``loader.sampler.set_epoch(epoch)`` before each epoch for a new order.

    Args:
        dataset: registered data set name: ``digits`` (scikit-learn's bundled 8x8 digits),
            ``imagefolder`` (``root/train/<class>/*``, optional ``root/val``, ``root/test``), the
            torchvision data sets ``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``,
            ``fgvc_aircraft``, ``dtd``, ``food101``, ``caltech101``, ``caltech256``, ``oxford_pets`` (their
            own splits where they have them; missing val/test splits, and all of Caltech's, are carved out
            by ``val_fraction`` / ``test_fraction``), ``synthetic`` (generated, for tests).
        root: folder of ``imagefolder`` (required) or of torchvision data sets (default ``data``).
        batch_size: samples per batch (per process under DDP), >= 1.
        num_workers: DataLoader worker processes (0 = load in the main process).
        image_size: side length H = W of the images; None = the data set's natural size
            (digits 8, synthetic 16, cifar 32, the other torchvision sets and imagefolder 224).
        val_fraction: share of the data used for validation where the data set has no own val split.
        test_fraction: share of the data used for testing where the data set has no own test split.
        seed: seeds every split and generated data, independently of the training seed, so the
            split stays fixed across runs with different training seeds.
        augment: apply the data set's training augmentation (light crops/shifts; flips only where
            mirrored images keep their class).
        num_views: augmented views per training image (2 for SupCon); training batches are then
            ``[B, V, 3, H, W]``. Validation, test and predict always use one un-augmented view.
        download: let torchvision download missing data sets into ``root`` when the data module is
            built (Stanford Cars cannot be downloaded: the error says how to get it); nothing downloads
            otherwise.
        drop_last: drop the last incomplete training batch (kept when the training split, or a DDP
            rank's share of it, is smaller than one batch), so no step sees a tiny batch that
            batch-level losses cannot use. Balanced batches are always complete.
        pin_memory: pin batches in page-locked memory; None = only when CUDA is available.
        persistent_workers: keep worker processes alive between epochs (only if num_workers > 0).
        unseen_classes: hold classes out of training and validation, to test how the embedding
            clusters classes it never saw: a count (drawn with ``seed``) or a list of class names /
            indices. The model then has ``num_classes`` = the seen classes; ``test`` (and ``predict``)
            use only the unseen classes, relabelled ``0..U-1``, and report embedding metrics only.
        unseen_test: which images of the unseen classes ``test`` and ``predict`` use. ``split``: their
            share of the test split (``test_fraction`` of each class, as for seen classes); ``all``: every
            image of them (train, val and test splits together: training never reads any of them), for
            more queries per class in few-shot episodes and less noisy metrics. Needs ``unseen_classes``.
        options: data set specific settings, e.g. ``{"num_classes": 4, "samples_per_class": 16}``
            for ``synthetic``; unknown keys are an error.
        sampler: how training batches are drawn. ``random``: a seeded shuffle of the training split
            per epoch. ``balanced``: every batch holds ``batch_size / samples_per_class`` classes with
            ``samples_per_class`` samples each (:class:`ClassBalancedSampler`), so every sample has
            positives in its batch; an epoch is ``floor(N / (batch_size x world size))`` batches per
            rank (at least one), classes drawn in proportion to their size, samples of classes smaller
            than ``samples_per_class`` repeated. Validation, test and predict are never affected.
        samples_per_class: m, samples of each class in a balanced batch: >= 2, dividing ``batch_size``
            into >= 2 classes, and the training data needs ``batch_size / m`` classes. Only used by
            ``sampler: balanced``.
    """

    def __init__(
        self,
        dataset: str = "digits",
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        image_size: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
        augment: bool = True,
        num_views: int = 1,
        download: bool = False,
        drop_last: bool = True,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        unseen_classes: int | list[int | str] | None = None,
        unseen_test: Literal["split", "all"] = "split",
        options: dict[str, Any] | None = None,
        sampler: Literal["random", "balanced"] = "random",
        samples_per_class: int = 4,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}.")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}.")
        if image_size is not None and image_size < 1:
            raise ConfigError(f"data.image_size must be >= 1 (or null: natural size), got {image_size}.")
        if num_views < 1:
            raise ConfigError(f"data.num_views must be >= 1, got {num_views}.")
        if num_views > 1 and not augment:
            raise ConfigError(
                f"data.num_views={num_views} needs data.augment: true; without augmentation the views "
                "would be identical copies."
            )
        if sampler not in ("random", "balanced"):
            raise ConfigError(f"data.sampler must be 'random' or 'balanced', got {sampler!r}.")
        if sampler == "balanced":
            check_balanced_batch(batch_size, samples_per_class)
        check_fractions(val_fraction, test_fraction)
        if unseen_test not in ("split", "all"):
            raise ConfigError(f"data.unseen_test must be 'split' or 'all', got {unseen_test!r}.")
        if unseen_test == "all" and unseen_classes is None:
            raise ConfigError(
                "data.unseen_test: all tests on every image of the unseen classes, but data.unseen_classes "
                "is not set: set it (a count or class names), or drop data.unseen_test."
            )
        self.unseen_test = unseen_test
        self.batch_size = batch_size
        self.sampler = sampler
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.num_workers = num_workers
        self.augment = augment
        self.num_views = num_views
        self.drop_last = drop_last
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers
        # No save_hyperparameters(): keys such as ``seed`` or ``image_size`` would clash with the
        # model's hparams when Lightning merges them for the logger; LightningCLI saves the config.
        self.source = create_source(
            SourceConfig(
                name=dataset,
                root=Path(root) if root is not None else None,
                image_size=image_size,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                download=download,
                options=dict(options or {}),
            )
        )
        self.class_split = (
            None
            if unseen_classes is None
            else ClassSplit.resolve(unseen_classes, self.source.class_names, seed)
        )
        if sampler == "balanced":
            # Known before any image is read; setup checks the classes the train split really has.
            check_balanced_batch(batch_size, samples_per_class, self.num_classes)
        self._splits: dict[Split, ImageSplit] = {}
        self._class_split_announced = False

    @property
    def num_classes(self) -> int:
        """Classes the model is trained on (the seen ones with ``unseen_classes``)."""
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        """Label ``k`` of the train and validation splits is ``class_names[k]``."""
        return self._class_names_of(unseen=False)

    @property
    def test_on_unseen_classes(self) -> bool:
        """Whether test and predict hold only classes that training never saw (no accuracy there)."""
        return self.class_split is not None

    @property
    def test_class_names(self) -> list[str]:
        """Label ``k`` of the test and predict splits is ``test_class_names[k]``."""
        return self._class_names_of(unseen=True)

    def _class_names_of(self, unseen: bool) -> list[str]:
        """The names of the seen or unseen side of the class split; every class without one."""
        names = self.source.class_names
        return names if self.class_split is None else [names[k] for k in self.class_split.classes(unseen)]

    @property
    def image_size(self) -> int:
        """Side length H = W of the batches' images."""
        return self.source.image_size

    def setup(self, stage: str | None = None) -> None:
        """Build the splits ``stage`` needs (all for None); splits built before are kept."""
        for split in STAGE_SPLITS.get(stage, SPLITS) if stage is not None else SPLITS:
            self.split_dataset(split)
        if self.class_split is not None and not self._class_split_announced:
            # A drawn count of unseen classes is only reproducible if the run says which were drawn.
            rank_zero_info(
                f"data.unseen_classes: held out of training and validation, tested: "
                f"{', '.join(self.test_class_names)}; trained on: {', '.join(self.class_names)}."
            )
            self._class_split_announced = True
        if self.sampler == "balanced" and "train" in self._splits:
            present = len(set(self._splits["train"].targets))
            check_balanced_batch(self.batch_size, self.samples_per_class, present)

    def split_dataset(self, split: Split) -> ImageSplit:
        """The transformed data set of ``split``, built on first use (``.targets``, ``.indices``)."""
        if split not in self._splits:
            raw = self._raw_split(split)
            check_targets_in_range(
                raw.targets, len(self.source.class_names), split=split, dataset=self.source.name
            )
            if self.class_split is not None:
                raw = raw.relabel(self.class_split.relabelling(unseen=split == "test"))
            self._splits[split] = raw.with_transform(self.transform_for(split))
        return self._splits[split]

    def _raw_split(self, split: Split) -> ImageSplit:
        """The source's ``split``; with ``unseen_test: all`` the test split is every split together (the
        relabelling below then keeps only the unseen classes' images)."""
        if split == "test" and self.unseen_test == "all":
            return ImageSplit.concat([self.source.load_split(s) for s in SPLITS])
        return self.source.load_split(split)

    def transform_for(self, split: Split) -> Transform:
        """Training augmentation (``num_views`` views) for the train split if ``augment``, else the
        deterministic evaluation transform."""
        if split == "train" and self.augment:
            transform = self.source.train_transform()
            return transform if self.num_views == 1 else MultiViewTransform(transform, self.num_views)
        return self.source.eval_transform()

    def train_dataloader(self) -> DataLoader:
        dataset = self.split_dataset("train")
        # Lightning leaves a DistributedSampler in place under DDP (it would replace any other train
        # sampler) and calls its set_epoch every epoch, single-process runs included.
        world_size, rank = self._shard()
        sampler: DistributedSampler
        if self.sampler == "balanced":
            sampler = ClassBalancedSampler(
                dataset.targets,
                self.batch_size,
                self.samples_per_class,
                num_replicas=world_size,
                rank=rank,
                seed=self.training_seed,
            )
        else:
            # drop_last=False pads the shards to equal length with a few repeated samples, as Lightning's
            # own DDP sampler does; the DataLoader's drop_last then decides about the last batch.
            sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.training_seed
            )
        drop_last = _drop_last_training_batch(len(sampler), self.batch_size, self.drop_last)
        # The loader's own generator: creating its iterator then draws the workers' base seed from it, not
        # from the global RNG. Lightning creates the iterator before `on_train_epoch_start` when it resumes
        # a run and after it otherwise; drawing from the global RNG there would shift every augmentation
        # of a resumed epoch (see callbacks.EpochSeed).
        generator = torch.Generator().manual_seed(self.training_seed)
        return self._loader(dataset, sampler=sampler, drop_last=drop_last, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split_dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split_dataset("test"))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.split_dataset("test"))

    def _shard(self) -> tuple[int, int]:
        """(world size, global rank) of the attached Trainer; (1, 0) without one."""
        return (1, 0) if self.trainer is None else (self.trainer.world_size, self.trainer.global_rank)

    @property
    def training_seed(self) -> int:
        """Seeds the training order: the seed of ``seed_everything`` (``PL_GLOBAL_SEED``), else ``seed``."""
        return int(os.environ.get("PL_GLOBAL_SEED", self.seed))

    def _loader(
        self,
        dataset: ImageSplit,
        *,
        sampler: DistributedSampler | None = None,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )


def _drop_last_training_batch(samples: int, batch_size: int, drop_last: bool) -> bool:
    """Whether the training loader drops its last incomplete batch, given one process's ``samples``.

    With fewer samples than one batch, dropping it would leave no batch at all, so it is kept. A last
    batch of a single sample is always dropped: BatchNorm cannot train on one sample ("Expected more than
    1 value per channel") and no batch-level loss can use it. Under DDP every process has the same count
    (the sampler pads), so all processes decide alike.
    """
    if samples < 2:
        raise ConfigError(
            f"The training split has {samples} sample(s) per process: a training batch needs at least 2 "
            "(BatchNorm and the batch-level losses compare samples). Use more training data (lower "
            "data.val_fraction / data.test_fraction) or fewer processes (trainer.devices)."
        )
    if samples % batch_size == 1:
        return True
    return drop_last and samples >= batch_size
