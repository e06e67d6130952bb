"""Tests for silhouette_lightning.data: registry, splits, data sets, errors and the data module.

Everything runs on bundled (digits), generated (synthetic) or tiny tmp_path data; nothing downloads.
"""

from __future__ import annotations

import inspect
import pickle
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from silhouette_lightning.data import (
    ImageDataModule,
    register_dataset,
    registered_datasets,
    stratified_split,
    unregister_dataset,
)
from silhouette_lightning.data.cifar_classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from silhouette_lightning.data.datamodule import _drop_last_training_batch
from silhouette_lightning.data.image_files import load_rgb_image
from silhouette_lightning.data.synthetic import SyntheticSource
from silhouette_lightning.data.torchvision_sets import TorchvisionDatasetSpec, TorchvisionSource
from silhouette_lightning.data.transforms import IMAGENET_STATS, NormalizationStats
from silhouette_lightning.errors import ConfigError, DatasetNotFoundError

DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760

# --- helpers ---------------------------------------------------------------------------------------


def class_color(label: int) -> tuple[int, int, int]:
    """A distinct solid colour per class, so a test can read the label back from the pixels."""
    return (30 + 60 * label, 200 - 50 * label, 100)


def write_images(folder: Path, classes: list[str], per_class: int, fmt: str = "PNG") -> None:
    """``per_class`` solid-colour images of 20x12 pixels in ``folder/<class>/`` (colour = sorted index)."""
    for label, name in enumerate(sorted(classes)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = "jpg" if fmt == "JPEG" else "png"
            Image.new("RGB", (20, 12), class_color(label)).save(folder / name / f"{i:03d}.{suffix}", fmt)


def all_batches(loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def labels_from_colour(images: torch.Tensor, stats: NormalizationStats) -> torch.Tensor:
    """Invert normalisation and map each image's mean red value back to its class colour's label."""
    red = images[:, 0].mean(dim=(1, 2)) * stats.std[0] + stats.mean[0]
    reds = torch.tensor([class_color(k)[0] / 255 for k in range(4)])
    return (red[:, None] - reds[None]).abs().argmin(dim=1)


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


def test_cifar_class_lists() -> None:
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[-1] == "truck"
    assert len(CIFAR100_CLASSES) == 100 == len(set(CIFAR100_CLASSES))
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)  # torchvision's meta file order


def test_imagefolder_class_names_before_setup(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["dog", "cat", "eel"], per_class=1)
    (tmp_path / "train" / ".hidden").mkdir()  # e.g. .ipynb_checkpoints: not a class
    dm = ImageDataModule("imagefolder", root=str(tmp_path))
    assert dm.class_names == ["cat", "dog", "eel"]
    assert dm.num_classes == 3
    assert dm.image_size == 224


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


# --- digits and synthetic ----------------------------------------------------------------------------


def test_digits_batches_match_sklearn_pixels_and_labels() -> None:
    dm = ImageDataModule("digits", batch_size=64, augment=False)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 3, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64

    # The val loader is unshuffled: compare it with scikit-learn's arrays, normalised by hand.
    digits = load_digits()
    val_images, val_labels = all_batches(dm.val_dataloader())
    indices = dm.split_dataset("val").indices
    expected = (torch.from_numpy(digits.images[indices] / 16.0).float() - DIGITS_MEAN) / DIGITS_STD
    torch.testing.assert_close(val_images, expected[:, None].expand(-1, 3, -1, -1), atol=1e-5, rtol=0)
    assert val_labels.tolist() == digits.target[indices].tolist()

    train_images, _ = all_batches(dm.train_dataloader())
    assert abs(train_images.mean().item()) < 0.05 and abs(train_images.std().item() - 1) < 0.05


def test_digits_resize_happens_once_to_image_size() -> None:
    dm = ImageDataModule("digits", image_size=16, batch_size=32)
    images, _ = next(iter(dm.train_dataloader()))  # dataloaders build their split if setup was skipped
    assert images.shape == (32, 3, 16, 16)
    assert dm.source._dataset.images.shape == (1797, 1, 16, 16)  # stored resized and grayscale


def test_digits_augmentation_is_a_small_translation() -> None:
    # Oracle: every augmented view equals the clean image shifted by at most 1 px with zero fill,
    # never flipped; and views do vary.
    torch.manual_seed(0)
    augmented = ImageDataModule("digits", augment=True).split_dataset("train")
    clean = augmented.with_transform(None)
    raw, _ = clean[5]
    padded = torch.nn.functional.pad(raw, (1, 1, 1, 1))
    shifts = [padded[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
    seen = set()
    for _ in range(40):
        view = augmented[5][0] * DIGITS_STD + DIGITS_MEAN
        matches = [k for k, s in enumerate(shifts) if torch.allclose(view, s, atol=1e-5)]
        assert matches, "augmented view is not a <=1 px shift of the image"
        seen.add(matches[0])
    assert len(seen) > 3


def test_synthetic_is_deterministic_and_learnable() -> None:
    def make(seed: int) -> ImageDataModule:
        dm = ImageDataModule("synthetic", batch_size=16, augment=False, seed=seed)
        dm.setup("fit")
        dm.setup("test")
        return dm

    dm, again = make(0), make(0)
    train_x, train_y = all_batches(dm.val_dataloader())
    torch.testing.assert_close(train_x, all_batches(again.val_dataloader())[0])
    assert not torch.allclose(train_x, all_batches(make(1).val_dataloader())[0])
    assert train_x.shape[1:] == (3, 16, 16)
    assert len(dm.split_dataset("train")) + len(train_y) + len(dm.split_dataset("test")) == 4 * 32

    # Nearest class mean on raw pixels must classify the test split: the classes are separable.
    x, y = all_batches(torch.utils.data.DataLoader(dm.split_dataset("train"), batch_size=256))
    means = torch.stack([x[y == k].mean(0).flatten() for k in range(4)])
    test_x, test_y = all_batches(dm.test_dataloader())
    predicted = torch.cdist(test_x.flatten(1), means).argmin(1)
    assert (predicted == test_y).float().mean() >= 0.95


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


# --- imagefolder -------------------------------------------------------------------------------------


def test_imagefolder_train_only_is_split_by_fractions(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["cat", "dog", "eel"], per_class=10, fmt="JPEG")
    dm = ImageDataModule("imagefolder", root=str(tmp_path), image_size=16, batch_size=4, augment=False)
    dm.setup("fit")
    dm.setup("test")
    sizes = {s: len(dm.split_dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 5, "test": 5}
    for s in ("val", "test"):
        assert sorted(Counter(dm.split_dataset(s).targets).values()) == [1, 2, 2]  # stratified

    images, labels = all_batches(dm.train_dataloader())
    assert images.shape == (20, 3, 16, 16) and labels.dtype == torch.int64
    # Labels follow the sorted folder names: each image's colour identifies its folder.
    assert labels_from_colour(images, IMAGENET_STATS).tolist() == labels.tolist()


def test_imagefolder_uses_its_own_val_and_test_folders(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["a", "b"], per_class=5)
    write_images(tmp_path / "val", ["a", "b"], per_class=2)
    write_images(tmp_path / "test", ["a", "b"], per_class=3)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")  # ignored
    dm = ImageDataModule("imagefolder", root=str(tmp_path), image_size=8, batch_size=2)
    dm.setup()
    assert {s: len(dm.split_dataset(s)) for s in ("train", "val", "test")} == {
        "train": 10,
        "val": 4,
        "test": 6,
    }
    assert all("/val/" in p for p in dm.split_dataset("val").base.paths)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        images, labels = all_batches(loader)
        assert images.shape[1:] == (3, 8, 8)
        assert labels_from_colour(images, IMAGENET_STATS).tolist() == labels.tolist()


def test_imagefolder_root_holding_class_folders(tmp_path: Path) -> None:
    write_images(tmp_path, ["x", "y"], per_class=10)
    dm = ImageDataModule("imagefolder", root=str(tmp_path), image_size=8, val_fraction=0.2, test_fraction=0.0)
    dm.setup()
    assert dm.class_names == ["x", "y"]
    assert [len(dm.split_dataset(s)) for s in ("train", "val", "test")] == [16, 4, 0]


def test_imagefolder_missing_root_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DatasetNotFoundError) as info:
        ImageDataModule("imagefolder", root=str(missing))
    assert f"'{missing}' does not exist" in str(info.value)
    assert "<root>/train/<class>/<image>" in str(info.value)


def test_imagefolder_val_without_train_names_the_missing_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "val", ["a"], per_class=1)
    with pytest.raises(DatasetNotFoundError, match="no train/ folder") as info:
        ImageDataModule("imagefolder", root=str(tmp_path))
    assert str(tmp_path / "train") in str(info.value)


def test_imagefolder_class_folders_must_match(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["cat", "dog"], per_class=1)
    write_images(tmp_path / "val", ["cat", "eel"], per_class=1)
    with pytest.raises(ConfigError, match=r"missing \['dog'\], extra \['eel'\]"):
        ImageDataModule("imagefolder", root=str(tmp_path))


def test_imagefolder_empty_class_folder_is_named(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["cat"], per_class=3)
    (tmp_path / "train" / "dog").mkdir()
    dm = ImageDataModule("imagefolder", root=str(tmp_path))
    with pytest.raises(ConfigError, match="contains no images") as info:
        dm.setup("fit")
    assert str(tmp_path / "train" / "dog") in str(info.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_error_names_the_file(tmp_path: Path, damage: str) -> None:
    write_images(tmp_path / "train", ["a", "b"], per_class=2)
    write_images(tmp_path / "test", ["a", "b"], per_class=2)
    bad = tmp_path / "test" / "b" / "bad.png"
    if damage == "garbage":
        bad.write_bytes(b"this is not a png")
    else:
        Image.new("RGB", (64, 64), (1, 2, 3)).save(bad)
        bad.write_bytes(bad.read_bytes()[:60])
    dm = ImageDataModule("imagefolder", root=str(tmp_path), image_size=8, batch_size=8)
    dm.setup("test")
    with pytest.raises(ConfigError, match="Cannot read image file") as info:
        all_batches(dm.test_dataloader())
    assert str(bad) in str(info.value)


# --- torchvision data sets ---------------------------------------------------------------------------


def test_cifar10_not_on_disk_says_where_and_how(tmp_path: Path) -> None:
    # At construction: before LightningCLI builds a Trainer or a run folder.
    with pytest.raises(DatasetNotFoundError) as info:
        ImageDataModule("cifar10", root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    assert "data.download: true" in message and "--data.download true" in message
    assert "cifar-10-batches-py" in message
    assert isinstance(info.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


class _FakeTorchvisionSet(torch.utils.data.Dataset):
    """Stands in for a torchvision class: ``(root, train, download)`` -> (PIL image, label) items."""

    def __init__(self, root: str, train: bool, download: bool) -> None:
        self.targets = [i % 3 for i in range(30 if train else 9)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.new("RGB", (8, 8), class_color(self.targets[index])), self.targets[index]


def test_cifar10_folder_present_but_unreadable_says_where_and_how(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()  # e.g. an interrupted extraction
    dm = ImageDataModule("cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="torchvision: .*data.download: true"):
        dm.setup("fit")


@pytest.fixture
def fake_torchvision_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "data" / "fake-folder").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the default root is ./data
    spec = TorchvisionDatasetSpec(
        factory=_FakeTorchvisionSet,
        class_names=("r", "g", "b"),
        split_kwargs={"train": {"train": True}, "test": {"train": False}},
        stats=NormalizationStats(mean=(0.5,) * 3, std=(0.25,) * 3),
        natural_image_size=8,
        extracted_folder="fake-folder",
    )
    register_dataset("fake_tv", partial(TorchvisionSource, spec=spec))
    yield "fake_tv"
    unregister_dataset("fake_tv")


def test_torchvision_source_carves_val_from_train_and_keeps_test(fake_torchvision_dataset: str) -> None:
    dm = ImageDataModule(fake_torchvision_dataset, val_fraction=0.2, batch_size=4, image_size=12)
    dm.setup()
    train, val, test = (dm.split_dataset(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (24, 6, 9)  # test_fraction unused: own test split
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    assert Counter(val.targets) == {0: 2, 1: 2, 2: 2}
    for loader in (dm.train_dataloader(), dm.test_dataloader()):
        images, labels = all_batches(loader)
        assert images.shape[1:] == (3, 12, 12)
    test_images, test_labels = all_batches(dm.test_dataloader())
    assert labels_from_colour(test_images, NormalizationStats((0.5,) * 3, (0.25,) * 3)).tolist() == (
        test_labels.tolist()
    )


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


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369  # 0 .. 65535 in equal steps
    Image.fromarray(values).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode in ("I;16", "I")
    loaded = np.asarray(load_rgb_image(tmp_path / "wide.png"), dtype=np.float64)
    assert loaded.shape == (4, 4, 3)
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])
    # Proportional to the 16-bit values: v * 255 / 65535 (here exactly 17 * k), not clipped to white.
    np.testing.assert_allclose(loaded[..., 0], values * 255.0 / 65535.0, atol=0.5)
