"""torchvision data sets by name (silhouette_lightning/data/sources/torchvision_sets.py), loaded from tiny
copies written in each data set's own file format, and through stand-ins for the torchvision classes.

The oracle is the table of files the writers in ``fake_torchvision_data`` put on disk: every image's
red value identifies its file, so each loaded sample's split and label are compared with what was
written, and its green/blue values with the expected normalisation constants.
"""

from __future__ import annotations

import pickle
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import OxfordIIITPet

from silhouette_lightning.data import (
    ImageDataModule,
    register_dataset,
    registered_datasets,
    unregister_dataset,
)
from silhouette_lightning.data.sources.image_folder import UnreadableImageError
from silhouette_lightning.data.sources.torchvision_sets import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    OXFORD_PETS_CLASSES,
    TorchvisionDatasetSpec,
    TorchvisionSource,
    read_lines,
)
from silhouette_lightning.data.transforms import IMAGENET_STATS, NormalizationStats
from silhouette_lightning.errors import DatasetNotFoundError
from tests.data.colour_images import all_batches, class_color, labels_from_colour
from tests.fake_torchvision_data import (
    BLUE,
    GREEN,
    WRITERS,
    FakeCopy,
    write_dtd,
    write_fgvc_aircraft,
    write_oxford_pets,
)

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
PHOTO_SETS = [
    "flowers102",
    "stanford_cars",
    "fgvc_aircraft",
    "dtd",
    "food101",
    "caltech101",
    "caltech256",
    "oxford_pets",
]
ALL_SETS = ["cifar10", "cifar100", *PHOTO_SETS]
EXPECTED_STATS = {"cifar10": CIFAR10_STATS, "cifar100": CIFAR100_STATS} | dict.fromkeys(PHOTO_SETS, IMAGENET)
NATURAL_SIZE = {"cifar10": 32, "cifar100": 32} | dict.fromkeys(PHOTO_SETS, 224)

# A file or folder torchvision's constructor needs, per data set (from torchvision 0.29's source).
TORCHVISION_NEEDS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "flowers102": "flowers-102/setid.mat",
    "stanford_cars": "stanford_cars/devkit/cars_meta.mat",
    "fgvc_aircraft": "fgvc-aircraft-2013b/data/variants.txt",
    "dtd": "dtd/dtd/labels/train1.txt",
    "food101": "food-101/meta/train.json",
    "caltech101": "caltech101/101_ObjectCategories",
    "caltech256": "caltech256/256_ObjectCategories",
    "oxford_pets": "oxford-iiit-pet/annotations/trainval.txt",
}


def skip_md5_checks(copy: FakeCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flowers-102 and CIFAR compare MD5 sums of the real files even without downloading; fake files
    cannot match, so only that comparison is replaced (the files must still exist)."""
    for module in copy.md5_checked_in:
        monkeypatch.setattr(f"{module}.check_integrity", lambda fpath, md5=None: Path(fpath).is_file())


@pytest.fixture(params=ALL_SETS)
def tiny_copy(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCopy:
    copy = WRITERS[request.param](tmp_path)
    skip_md5_checks(copy, monkeypatch)
    return copy


def carved_size(fraction: float, n: int) -> int:
    """The documented size of a carved split: round(n * fraction), at least 1 for a positive fraction."""
    return max(1, int(np.floor(fraction * n + 0.5))) if fraction > 0 else 0


def pixel_values(image: torch.Tensor, stats: tuple[tuple[float, ...], tuple[float, ...]]) -> np.ndarray:
    """Mean R, G, B of a normalised [3, H, W] image, back in 0..255."""
    mean, std = (torch.tensor(s)[:, None, None] for s in stats)
    return ((image * std + mean) * 255).mean(dim=(1, 2)).numpy()


# --- loading tiny copies ------------------------------------------------------------------------------


def test_every_data_set_of_the_paper_is_registered() -> None:
    assert set(registered_datasets()) >= set(ALL_SETS)


def test_tiny_copy_gives_the_written_splits_labels_and_pixels(tiny_copy: FakeCopy, tmp_path: Path) -> None:
    copy = tiny_copy
    dm = ImageDataModule(copy.name, root=str(tmp_path), image_size=16, batch_size=4, augment=False)
    assert dm.class_names == copy.class_names
    assert dm.num_classes == len(copy.class_names)
    dm.setup("fit")
    dm.setup("test")

    written = {image.value: image for image in copy.images}
    loaded: dict[int, str] = {}
    for split in ("train", "val", "test"):
        dataset = dm.split_dataset(split)
        for i in range(len(dataset)):
            image, label = dataset[i]
            assert image.shape == (3, 16, 16) and image.dtype == torch.float32
            red, green, blue = pixel_values(image, EXPECTED_STATS[copy.name])
            value = min(written, key=lambda v: abs(v - red))
            source = written[value]
            assert abs(red - value) < 3, (split, i, red)
            # The normalisation constants: green and blue come back only with the expected mean/std.
            expected = (value, value) if source.mode == "L" else (GREEN, BLUE)
            assert abs(green - expected[0]) < 3 and abs(blue - expected[1]) < 3, (split, i, green, blue)
            assert label == dataset.targets[i] == source.label, (split, i, source)
            assert value not in loaded, f"file {source} loaded twice"
            loaded[value] = split
    assert set(loaded) == set(written)  # every written file, each once

    for value, split in loaded.items():
        if split in copy.own_splits:
            assert written[value].split == split  # the data set's own split, as written
        else:
            assert written[value].split == "train"  # carved out of the train pool
    pool = copy.count("train")
    expected = {s: carved_size(0.15, pool) for s in ("val", "test") if s not in copy.own_splits}
    expected |= {s: copy.count(s) for s in ("val", "test") if s in copy.own_splits}
    expected["train"] = pool - sum(n for s, n in expected.items() if s not in copy.own_splits)
    assert {s: len(dm.split_dataset(s)) for s in expected} == expected


def test_tiny_copy_batches_and_natural_image_size(tiny_copy: FakeCopy, tmp_path: Path) -> None:
    copy = tiny_copy
    dm = ImageDataModule(copy.name, root=str(tmp_path), image_size=16, batch_size=4)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))  # training augmentation on
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {i.label for i in copy.images}

    for split in ("train", "val", "test"):  # worker processes receive the splits pickled
        image, label = pickle.loads(pickle.dumps(dm.split_dataset(split)))[0]
        assert image.shape == (3, 16, 16)

    natural = ImageDataModule(copy.name, root=str(tmp_path), batch_size=4)
    assert natural.image_size == NATURAL_SIZE[copy.name]
    natural.setup("test")
    image, _ = natural.split_dataset("test")[0]
    assert image.shape == (3, NATURAL_SIZE[copy.name], NATURAL_SIZE[copy.name])


def test_labels_come_without_decoding_images(
    tiny_copy: FakeCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was opened")

    monkeypatch.setattr(Image, "open", no_decoding)
    dm = ImageDataModule(tiny_copy.name, root=str(tmp_path), batch_size=4)
    targets = [t for split in ("train", "val", "test") for t in dm.split_dataset(split).targets]
    assert Counter(targets) == Counter(image.label for image in tiny_copy.images)


def test_splits_torchvision_numbers_differently_keep_our_labels(tmp_path: Path) -> None:
    # DTD's val1.txt has no 'cracked' image: torchvision numbers 'zigzagged' 1 in that split, 2 in train.
    write_dtd(tmp_path)
    dm = ImageDataModule("dtd", root=str(tmp_path), batch_size=4)
    torchvision_val, _ = dm.source._load("val")
    assert torchvision_val.dataset.classes == ["banded", "zigzagged"]
    assert dm.split_dataset("val").targets == [2, 0]  # zigzagged, banded, as written


def test_class_lists_are_torchvisions_and_the_official_ones(tmp_path: Path) -> None:
    # Oxford-IIIT Pet: torchvision derives names from the file names of the breeds present.
    write_oxford_pets(tmp_path)
    pets = OxfordIIITPet(str(tmp_path), split="trainval")
    assert [OXFORD_PETS_CLASSES[k] for k in sorted(set(pets._labels))] == pets.classes
    assert len(OXFORD_PETS_CLASSES) == 37 == len(set(OXFORD_PETS_CLASSES))
    assert (OXFORD_PETS_CLASSES[0], OXFORD_PETS_CLASSES[-1]) == ("Abyssinian", "Yorkshire Terrier")
    # Flowers-102: the names of labels 1 and 102 of the official list.
    (tmp_path / "flowers-102" / "jpg").mkdir(parents=True)
    for name in ("imagelabels.mat", "setid.mat"):
        (tmp_path / "flowers-102" / name).touch()
    flowers = ImageDataModule("flowers102", root=str(tmp_path))
    assert flowers.num_classes == 102
    assert (flowers.class_names[0], flowers.class_names[-1]) == ("pink primrose", "blackberry lily")


def test_photo_evaluation_is_the_imagenet_resize_and_centre_crop(tmp_path: Path) -> None:
    # Shorter side to 16 / 0.875 = 18 px, centre 16 px kept: a horizontal ramp 0..179 loses 1/18 of its
    # width on each side (a crop of the whole shorter side would lose nothing).
    write_dtd(tmp_path)
    transform = ImageDataModule("dtd", root=str(tmp_path), image_size=16).source.eval_transform()
    ramp = np.tile(np.arange(180, dtype=np.uint8), (180, 1))
    image = Image.fromarray(np.stack([ramp, ramp, ramp], axis=-1))
    red = (transform(image)[0] * IMAGENET[1][0] + IMAGENET[0][0]) * 255
    span = (red[:, -1] - red[:, 0]).mean().item()
    assert span == pytest.approx(180 * 15 / 18, abs=5)


# --- missing and broken copies ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SETS)
def test_missing_data_set_says_where_what_and_how(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        ImageDataModule(name, root=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path.resolve()) in message
    assert TORCHVISION_NEEDS[name] in message
    assert "download" in message
    if name != "stanford_cars":
        assert "data.download: true" in message and "--data.download true" in message
    assert "\n" not in message  # one paragraph: the CLI prints it as the whole error
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no folder created (Caltech would)


@pytest.mark.parametrize("download", [False, True])
def test_stanford_cars_says_how_to_get_the_files_by_hand(download: bool, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        ImageDataModule("stanford_cars", root=str(tmp_path), download=download)
    message = str(info.value)
    assert "cannot download" in message and "data.download: true does not help" in message
    assert "kaggle.com" in message and "github.com/pytorch/vision/issues/7545" in message
    for path in (
        "stanford_cars/cars_train",
        "stanford_cars/cars_test",
        "stanford_cars/cars_test_annos_withlabels.mat",
        "stanford_cars/devkit/cars_meta.mat",
        "stanford_cars/devkit/cars_train_annos.mat",
    ):
        assert path in message
    assert list(tmp_path.iterdir()) == []


def test_partial_copy_names_the_missing_file(tmp_path: Path) -> None:
    write_dtd(tmp_path)
    (tmp_path / "dtd" / "dtd" / "labels" / "val1.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: dtd/dtd/labels/val1\.txt\)"):
        ImageDataModule("dtd", root=str(tmp_path))


def test_inconsistent_copy_is_a_clear_error_at_setup(tmp_path: Path) -> None:
    write_fgvc_aircraft(tmp_path)
    with open(tmp_path / "fgvc-aircraft-2013b" / "data" / "images_variant_test.txt", "a") as file:
        file.write("0999999 Boeing 999\n")  # a variant that variants.txt does not list
    dm = ImageDataModule("fgvc_aircraft", root=str(tmp_path))
    dm.setup("fit")
    with pytest.raises(DatasetNotFoundError, match="incomplete.*test split; torchvision: KeyError"):
        dm.setup("test")


def test_corrupt_image_names_the_data_set_and_sample(tmp_path: Path) -> None:
    write_dtd(tmp_path)
    victim = sorted((tmp_path / "dtd" / "dtd" / "images" / "banded").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:30])
    dm = ImageDataModule("dtd", root=str(tmp_path), augment=False)
    dm.setup()
    with pytest.raises(UnreadableImageError, match="dataset 'dtd'"):
        for split in ("train", "val", "test"):
            dataset = dm.split_dataset(split)
            for i in range(len(dataset)):
                dataset[i]


class _DownloadingDataset(torch.utils.data.Dataset):
    """Stands in for a torchvision class whose class list is in its files; 'downloads' by writing them."""

    calls: list[bool] = []

    def __init__(self, root: str, download: bool, split: str) -> None:
        type(self).calls.append(download)
        folder = Path(root) / "fake-set"
        if download and not folder.exists():
            folder.mkdir()
            (folder / "classes.txt").write_text("cat\ndog\n")
        if not folder.exists():
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        self.targets = [0, 1, 1, 0, 1, 0, 0, 1] if split == "train" else [1, 0]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.new("L", (8, 8), 40 * self.targets[index]), self.targets[index]


@pytest.fixture
def downloadable_set() -> str:
    spec = TorchvisionDatasetSpec(
        factory=_DownloadingDataset,
        class_names=partial(read_lines, path="fake-set/classes.txt"),
        split_kwargs={"train": {"split": "train"}, "test": {"split": "test"}},
        stats=IMAGENET_STATS,
        natural_image_size=8,
        extracted_folder="fake-set",
        required_paths=("fake-set/classes.txt",),
        small_images=False,
    )
    _DownloadingDataset.calls = []
    register_dataset("fake_download", partial(TorchvisionSource, spec=spec))
    yield "fake_download"
    unregister_dataset("fake_download")


def test_download_happens_only_when_configured_and_before_the_class_list_is_read(
    downloadable_set: str, tmp_path: Path
) -> None:
    with pytest.raises(DatasetNotFoundError, match="fake-set/classes.txt"):
        ImageDataModule(downloadable_set, root=str(tmp_path))
    assert _DownloadingDataset.calls == [] and list(tmp_path.iterdir()) == []

    dm = ImageDataModule(downloadable_set, root=str(tmp_path), download=True)
    assert _DownloadingDataset.calls == [True]  # at construction: the class names are in the files
    assert dm.class_names == ["cat", "dog"]
    dm.setup("test")
    image, label = dm.split_dataset("test")[0]
    assert image.shape == (3, 8, 8) and label == 1  # grayscale made RGB


# --- through the data module, with stand-ins for the torchvision classes ---------------------------


def test_cifar_class_lists() -> None:
    assert CIFAR10_CLASSES[0] == "airplane" and CIFAR10_CLASSES[-1] == "truck"
    assert len(CIFAR100_CLASSES) == 100 == len(set(CIFAR100_CLASSES))
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)  # torchvision's meta file order


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
