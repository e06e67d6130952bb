"""Tests of the data module (silhouette_lightning/data/datamodule.py) and what it is built from: the
registry, splits, label checks, the training loader and multiple views. The data set families are tested
in tests/data/sources/.

Everything runs on bundled (digits) or generated (synthetic) data; nothing downloads.
"""

from __future__ import annotations

import inspect
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from silhouette_lightning.data import (
    ImageDataModule,
    register_dataset,
    registered_datasets,
    stratified_split,
    unregister_dataset,
)
from silhouette_lightning.data.datamodule import _drop_last_training_batch
from silhouette_lightning.data.sources.synthetic import SyntheticSource
from silhouette_lightning.data.sources.torchvision_sets import CIFAR10_CLASSES, CIFAR100_CLASSES
from silhouette_lightning.errors import ConfigError
from tests.data.colour_images import all_batches

# --- construction, names, registry -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected_names"),
    [
        ({"dataset": "digits"}, [str(d) for d in range(10)]),
        ({"dataset": "synthetic", "options": {"num_classes": 3}}, ["class_0", "class_1", "class_2"]),
        ({"dataset": "cifar10", "root": "cifar-10-batches-py"}, list(CIFAR10_CLASSES)),
        ({"dataset": "CIFAR100", "root": "cifar-100-python"}, list(CIFAR100_CLASSES)),
    ],
)
def test_class_names_are_known_before_setup(kwargs: dict, expected_names: list[str], tmp_path: Path) -> None:
    # CIFAR's folder exists but is empty: the names must come without reading (or downloading) anything.
    if "root" in kwargs:
        (tmp_path / kwargs["root"]).mkdir()
        kwargs = {**kwargs, "root": str(tmp_path)}
    dm = ImageDataModule(**kwargs)
    assert dm.class_names == expected_names
    assert dm.num_classes == len(expected_names)


def test_unknown_dataset_lists_registered_names() -> None:
    with pytest.raises(ConfigError, match="Unknown dataset 'mnist-typo'") as info:
        ImageDataModule("mnist-typo")
    for name in ("cifar10", "cifar100", "digits", "imagefolder", "synthetic"):
        assert name in str(info.value)
    assert set(registered_datasets()) >= {"cifar10", "cifar100", "digits", "imagefolder", "synthetic"}


def test_registering_a_taken_name_needs_replace() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", SyntheticSource)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"image_size": 0}, "image_size must be >= 1"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"test_fraction": -0.1}, r"test_fraction must be in \[0, 1\)"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
        ({"options": {"num_classes": 3}}, r"Unknown data.options for dataset 'digits': \['num_classes'\]"),
        ({"dataset": "synthetic", "options": {"bogus": 1}}, "Allowed: noise, num_classes, samples_per_class"),
        ({"dataset": "synthetic", "options": {"num_classes": "4"}}, "num_classes .* must be a int"),
        ({"dataset": "synthetic", "options": {"num_classes": True}}, "must be a int"),
        ({"dataset": "synthetic", "options": {"samples_per_class": 0}}, "samples_per_class must be >= 1"),
        ({"dataset": "imagefolder"}, "needs data.root"),
    ],
)
def test_bad_config_values_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ImageDataModule(**kwargs)


def test_every_constructor_argument_is_documented_and_parsable() -> None:
    # LightningCLI (jsonargparse) takes each argument's help from the docstring's Args section.
    doc = inspect.getdoc(ImageDataModule) or ""
    params = [p for p in inspect.signature(ImageDataModule.__init__).parameters if p != "self"]
    missing = [p for p in params if f"\n    {p}:" not in doc]
    assert not missing, f"undocumented arguments: {missing}"

    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ImageDataModule, "data")
    config = parser.parse_args(["--data.dataset=synthetic", "--data.options={num_classes: 3}"])
    dm = ImageDataModule(**config.data.as_dict())
    assert dm.num_classes == 3


# --- splits ------------------------------------------------------------------------------------------


def test_stratified_split_is_exact_for_tiny_classes() -> None:
    targets = [0] * 7 + [1] * 3 + [2] * 1  # classes too small for sklearn's stratified split
    split = stratified_split(targets, {"val": 0.2, "test": 0.2}, seed=3)
    assert len(split["val"]) == 2 and len(split["test"]) == 2 and len(split["train"]) == 7
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(11))
    # A tiny positive fraction still yields one sample; zero yields none.
    split = stratified_split(targets, {"val": 0.01, "test": 0.0}, seed=0)
    assert len(split["val"]) == 1 and len(split["test"]) == 0


def test_stratified_split_without_training_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no training sample"):
        stratified_split([0, 1], {"val": 0.4, "test": 0.4}, seed=0)


def test_digits_split_is_seeded_stratified_disjoint_and_complete() -> None:
    def split_indices(seed: int) -> dict[str, np.ndarray]:
        dm = ImageDataModule("digits", seed=seed)
        dm.setup()
        return {s: dm.split_dataset(s).indices for s in ("train", "val", "test")}

    first, again, other = split_indices(0), split_indices(0), split_indices(1)
    for s in first:
        np.testing.assert_array_equal(first[s], again[s])
    assert not np.array_equal(first["test"], other["test"])

    train, val, test = (set(first[s].tolist()) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(1797))
    assert len(test) == len(val) == round(0.15 * 1797)

    labels = load_digits().target
    class_sizes = Counter(labels.tolist())
    for s in ("val", "test"):
        per_class = Counter(labels[first[s]].tolist())
        for label, size in class_sizes.items():
            assert abs(per_class[label] - 0.15 * size) <= 1.0, (s, label, per_class[label], size)


# --- loaders ---------------------------------------------------------------------------------------


def test_train_loader_drops_only_the_incomplete_last_batch() -> None:
    options = {"num_classes": 4, "samples_per_class": 32}  # 128 samples -> 90 train
    dm = ImageDataModule("synthetic", batch_size=32, options=options)
    assert [len(y) for _, y in dm.train_dataloader()] == [32, 32]
    # Fewer samples than one batch: keep them rather than yield no batch at all.
    dm = ImageDataModule("synthetic", batch_size=128, options=options)
    assert [len(y) for _, y in dm.train_dataloader()] == [90]


def test_setup_is_idempotent_and_predict_is_the_unshuffled_test_split() -> None:
    dm = ImageDataModule("synthetic", batch_size=8)
    dm.setup("fit")
    train = dm.split_dataset("train")
    dm.setup("fit")
    assert dm.split_dataset("train") is train
    dm.setup("predict")
    _, test_labels = all_batches(dm.test_dataloader())
    _, predict_labels = all_batches(dm.predict_dataloader())
    assert predict_labels.tolist() == test_labels.tolist() == dm.split_dataset("test").targets


def test_split_datasets_pickle_for_worker_processes() -> None:
    split = ImageDataModule("synthetic", augment=False).split_dataset("train")
    clone = pickle.loads(pickle.dumps(split))
    torch.testing.assert_close(clone[3][0], split[3][0])
    assert clone.targets == split.targets


# --- label range ------------------------------------------------------------------------------------


class _ShiftedLabelsSource(SyntheticSource):
    """Labels 5..7 for 3 classes: what a broken custom source or class mapping would produce."""

    def load_images(self) -> tuple[torch.Tensor, list[int]]:
        images, labels = super().load_images()
        return images, [label + 5 for label in labels]


@pytest.fixture
def shifted_labels_dataset() -> str:
    register_dataset("shifted_labels", _ShiftedLabelsSource)
    yield "shifted_labels"
    unregister_dataset("shifted_labels")


def test_labels_out_of_range_are_a_clear_error(shifted_labels_dataset: str) -> None:
    dm = ImageDataModule(shifted_labels_dataset, options={"num_classes": 3})
    with pytest.raises(ConfigError, match=r"train split .* outside \[0, 3\): 5, 6, 7 \(num_classes = 3\)"):
        dm.setup("fit")


# --- multi-view ------------------------------------------------------------------------------------


def test_two_views_are_independent_augmentations_of_the_same_image() -> None:
    dm = ImageDataModule("digits", image_size=16, batch_size=32, num_views=2, seed=0)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 2, 3, 16, 16) and labels.shape == (32,)
    # Each view is a shift of at most 1 px of the one clean image: compare with the eval transform.
    train = dm.split_dataset("train")
    clean = dm.transform_for("val")(train.base[int(train.indices[0])][0])
    views = train[0][0]
    assert views.shape == (2, 3, 16, 16)
    background = clean.min()
    for view in views:
        shifts = [
            torch.roll(
                torch.nn.functional.pad(clean, (1, 1, 1, 1), value=float(background)), (dy, dx), (1, 2)
            )
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        ]
        assert any(torch.allclose(view, s[:, 1:-1, 1:-1]) for s in shifts)
    # Over a batch, the two views differ for most images (independent random shifts).
    differ = (images[:, 0] - images[:, 1]).flatten(1).abs().amax(dim=1) > 0
    assert differ.float().mean() > 0.5
    # Evaluation stays single-view.
    val_images, _ = next(iter(dm.val_dataloader()))
    assert val_images.shape[1:] == (3, 16, 16)


def test_multiple_views_need_augmentation() -> None:
    with pytest.raises(ConfigError, match="num_views=2 needs data.augment: true"):
        ImageDataModule("digits", num_views=2, augment=False)
    with pytest.raises(ConfigError, match="num_views must be >= 1"):
        ImageDataModule("digits", num_views=0)


@pytest.mark.parametrize(
    ("samples", "batch_size", "drop_last", "expected"),
    [
        (17, 8, False, True),
        (16, 8, False, False),
        (18, 8, False, False),
        (18, 8, True, True),
        (5, 8, True, False),
    ],
)
def test_a_last_training_batch_of_one_sample_is_dropped(samples, batch_size, drop_last, expected) -> None:
    # A batch of one sample makes BatchNorm raise "Expected more than 1 value per channel" in training.
    assert _drop_last_training_batch(samples, batch_size, drop_last) is expected


def test_the_training_loader_never_yields_a_single_sample_batch() -> None:
    data = ImageDataModule(
        "synthetic", image_size=8, batch_size=4, drop_last=False, val_fraction=0.0, test_fraction=0.0,
        options={"num_classes": 3, "samples_per_class": 3},
    )  # fmt: skip
    data.setup("fit")
    assert len(data.split_dataset("train")) % 4 == 1  # 9 samples: batches 4, 4 and a lone one
    sizes = [len(labels) for _, labels in data.train_dataloader()]
    assert sizes == [4, 4]


def test_a_training_split_of_one_sample_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="training split has 1 sample.*at least 2"):
        _drop_last_training_batch(1, 8, True)
