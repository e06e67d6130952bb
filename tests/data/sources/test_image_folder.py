"""The ``imagefolder`` source and reading image files (silhouette_lightning/data/sources/image_folder.py).

Everything runs on tiny solid-colour images written to tmp_path, whose colour identifies their class.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.data.sources.image_folder import load_rgb_image
from silhouette_lightning.data.transforms import IMAGENET_STATS
from silhouette_lightning.errors import ConfigError, DatasetNotFoundError
from tests.data.colour_images import all_batches, labels_from_colour, write_images


def test_imagefolder_class_names_before_setup(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["dog", "cat", "eel"], per_class=1)
    (tmp_path / "train" / ".hidden").mkdir()  # e.g. .ipynb_checkpoints: not a class
    dm = ImageDataModule("imagefolder", root=str(tmp_path))
    assert dm.class_names == ["cat", "dog", "eel"]
    assert dm.num_classes == 3
    assert dm.image_size == 224


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


def test_a_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369  # 0 .. 65535 in equal steps
    Image.fromarray(values).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode in ("I;16", "I")
    loaded = np.asarray(load_rgb_image(tmp_path / "wide.png"), dtype=np.float64)
    assert loaded.shape == (4, 4, 3)
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])
    # Proportional to the 16-bit values: v * 255 / 65535 (here exactly 17 * k), not clipped to white.
    np.testing.assert_allclose(loaded[..., 0], values * 255.0 / 65535.0, atol=0.5)
