"""Tiny copies of torchvision's data sets, written in each data set's own on-disk format.

Every image is a solid colour whose red value is unique to the file (``FakeImage.value``), so a test
can tell from the pixels of a loaded sample which file it came from, and compare the label and the
split it got with the table written here: an oracle independent of torchvision and of the package.
Green is always :data:`GREEN` (blue :data:`BLUE`), so a test can check the normalisation constants.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from silhouette_lightning.data.sources.torchvision_sets import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    OXFORD_PETS_CLASSES,
)

GREEN, BLUE = 128, 64
#: Red values of consecutive files: far enough apart that JPEG rounding cannot confuse two files.
VALUE_STEP, FIRST_VALUE = 7, 20


@dataclass(frozen=True)
class FakeImage:
    """One written image: its identity (red value), the split it was written to and its label.

    ``split`` is the data set's own split as the data module names it (``"train"`` also for
    Oxford-IIIT Pet's trainval); Caltech images, which have no official split, are ``"train"``.
    ``label`` is the index in :attr:`FakeCopy.class_names`. ``mode`` is the JPEG's colour mode: real
    Caltech copies hold some grayscale ("L") and CMYK files.
    """

    value: int
    split: str
    label: int
    mode: str = "RGB"


@dataclass
class FakeCopy:
    """What a writer put on disk, in terms the data module should report back.

    Attributes:
        name: the registered data set name.
        class_names: the class names the data module must report, in label order.
        images: every image written.
        own_splits: the splits that come from the data set's files; the others are carved from train.
        md5_checked_in: torchvision modules whose ``check_integrity`` compares MD5 sums of the real
            files even when not downloading; the fake files cannot match them.
    """

    name: str
    class_names: list[str]
    images: list[FakeImage] = field(default_factory=list)
    own_splits: tuple[str, ...] = ("train", "test")
    md5_checked_in: tuple[str, ...] = ()

    def add(self, split: str, label: int, *, mode: str = "RGB") -> FakeImage:
        image = FakeImage(FIRST_VALUE + VALUE_STEP * len(self.images), split, label, mode)
        self.images.append(image)
        return image

    def count(self, split: str) -> int:
        return sum(image.split == split for image in self.images)


def save_jpeg(path: Path, image: FakeImage, size: tuple[int, int] = (14, 10)) -> None:
    """A solid ``size`` (W, H) JPEG: red = the file's value (grayscale: all channels are that value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour: int | tuple[int, ...] = {
        "RGB": (image.value, GREEN, BLUE),
        "L": image.value,
        "CMYK": (255 - image.value, 255 - GREEN, 255 - BLUE, 0),  # PIL reads it back as that RGB
    }[image.mode]
    Image.new(image.mode, size, colour).save(path, "JPEG", quality=95)


# --- CIFAR: pickled uint8 arrays --------------------------------------------------------------------


def _cifar_rows(images: list[FakeImage]) -> np.ndarray:
    """[N, 3072] uint8 rows: 32x32 red plane, green plane, blue plane (CIFAR's layout)."""
    planes = [(image.value, GREEN, BLUE) for image in images]
    return np.asarray(
        [np.repeat(np.asarray(p, dtype=np.uint8), 32 * 32) for p in planes], dtype=np.uint8
    ).reshape(len(images), 3 * 32 * 32)


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(content, file)


def write_cifar10(root: Path) -> FakeCopy:
    """``cifar-10-batches-py/data_batch_1..5``, ``test_batch``, ``batches.meta``."""
    names = list(CIFAR10_CLASSES)
    copy = FakeCopy("cifar10", names, md5_checked_in=("torchvision.datasets.cifar",))
    folder = root / "cifar-10-batches-py"
    for batch in range(1, 6):  # two images per training batch, labels 0, 2, 9
        written = [copy.add("train", (0, 2, 9)[(batch + k) % 3]) for k in range(2)]
        _pickle(
            folder / f"data_batch_{batch}",
            {"data": _cifar_rows(written), "labels": [i.label for i in written]},
        )
    written = [copy.add("test", label) for label in (0, 2, 9, 9)]
    _pickle(folder / "test_batch", {"data": _cifar_rows(written), "labels": [i.label for i in written]})
    _pickle(folder / "batches.meta", {"label_names": names})
    return copy


def write_cifar100(root: Path) -> FakeCopy:
    """``cifar-100-python/train``, ``test``, ``meta`` (fine labels)."""
    names = list(CIFAR100_CLASSES)
    copy = FakeCopy("cifar100", names, md5_checked_in=("torchvision.datasets.cifar",))
    folder = root / "cifar-100-python"
    for split, labels in (("train", (0, 50, 99) * 3), ("test", (0, 99))):
        written = [copy.add(split, label) for label in labels]
        rows = _cifar_rows(written)
        _pickle(
            folder / split,
            {"data": rows, "fine_labels": [i.label for i in written], "coarse_labels": [0] * len(written)},
        )
    _pickle(folder / "meta", {"fine_label_names": names})
    return copy


# --- Flowers-102: jpg/ + two .mat files -------------------------------------------------------------


def write_flowers102(root: Path) -> FakeCopy:
    """``flowers-102/jpg/image_00001.jpg``..., ``imagelabels.mat`` (1-based), ``setid.mat``."""
    from torchvision.datasets import Flowers102

    copy = FakeCopy(
        "flowers102",
        list(Flowers102.classes),
        own_splits=("train", "val", "test"),
        md5_checked_in=("torchvision.datasets.flowers102",),
    )
    folder = root / "flowers-102"
    ids: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    labels: list[int] = []
    # Labels 0, 50, 101 (the first and the last of the 102); ids are 1-based positions in labels.
    for split, split_labels in (("train", (0, 50, 101, 0)), ("val", (50, 101)), ("test", (0, 101, 50))):
        for label in split_labels:
            image = copy.add(split, label)
            labels.append(label)
            ids[split].append(len(labels))
            save_jpeg(folder / "jpg" / f"image_{len(labels):05d}.jpg", image)
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": np.asarray(labels, dtype=np.uint8)[None] + 1})
    set_ids = {"trnid": ids["train"], "valid": ids["val"], "tstid": ids["test"]}
    scipy.io.savemat(
        folder / "setid.mat", {key: np.asarray(v, dtype=np.uint16)[None] for key, v in set_ids.items()}
    )
    return copy


# --- Stanford Cars: devkit .mat files ---------------------------------------------------------------

CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def _cars_annotations(entries: list[tuple[str, int]]) -> np.ndarray:
    """A MATLAB struct array like the devkit's: bounding box, 1-based class, file name."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annotations = np.empty((1, len(entries)), dtype=[(name, "O") for name in fields])
    for k, (fname, label) in enumerate(entries):
        annotations[0, k] = (np.uint8(1), np.uint8(1), np.uint8(9), np.uint8(7), np.uint8(label + 1), fname)
    return annotations


def write_stanford_cars(root: Path) -> FakeCopy:
    """``stanford_cars/cars_{train,test}/*.jpg``, ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``,
    ``cars_test_annos_withlabels.mat``."""
    copy = FakeCopy("stanford_cars", list(CARS_CLASSES))
    folder = root / "stanford_cars"
    for split, labels in (("train", (0, 1, 2, 2, 1, 0, 1)), ("test", (2, 0, 1))):
        entries = []
        for k, label in enumerate(labels, 1):
            image = copy.add(split, label)
            save_jpeg(folder / f"cars_{split}" / f"{k:05d}.jpg", image)
            entries.append((f"{k:05d}.jpg", label))
        annos = folder / (
            "devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat"
        )
        annos.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(annos, {"annotations": _cars_annotations(entries)})
    names = np.empty((1, len(CARS_CLASSES)), dtype=object)
    names[0, :] = CARS_CLASSES
    scipy.io.savemat(folder / "devkit" / "cars_meta.mat", {"class_names": names})
    return copy


# --- FGVC-Aircraft: text files ----------------------------------------------------------------------

AIRCRAFT_VARIANTS = ["707-320", "Cessna 172", "F/A-18"]  # a space and a slash, as in the real list


def write_fgvc_aircraft(root: Path) -> FakeCopy:
    """``fgvc-aircraft-2013b/data/images/<id>.jpg``, ``variants.txt``, ``images_variant_<split>.txt``."""
    copy = FakeCopy("fgvc_aircraft", list(AIRCRAFT_VARIANTS), own_splits=("train", "val", "test"))
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    for split, labels in (("train", (0, 1, 2, 1)), ("val", (2, 0)), ("test", (1, 2, 0))):
        lines = []
        for label in labels:
            image = copy.add(split, label)
            image_id = f"{1000000 + image.value:07d}"
            save_jpeg(data / "images" / f"{image_id}.jpg", image)
            lines.append(f"{image_id} {AIRCRAFT_VARIANTS[label]}\n")
        (data / f"images_variant_{split}.txt").write_text("".join(lines))
    return copy


# --- DTD: class folders + partition files -----------------------------------------------------------

DTD_CLASSES = ["banded", "cracked", "zigzagged"]


def write_dtd(root: Path) -> FakeCopy:
    """``dtd/dtd/images/<class>/<class>_NNNN.jpg`` and ``dtd/dtd/labels/{train,val,test}1.txt``.

    The val split has no ``cracked`` image: torchvision then numbers ``zigzagged`` 1 there (it numbers
    the classes each split file names), while the data module must keep it at 2.
    """
    copy = FakeCopy("dtd", list(DTD_CLASSES), own_splits=("train", "val", "test"))
    data = root / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True)
    for split, labels in (("train", (0, 1, 2, 0)), ("val", (2, 0)), ("test", (1, 2, 0))):
        lines = []
        for label in labels:
            image = copy.add(split, label)
            relative = f"{DTD_CLASSES[label]}/{DTD_CLASSES[label]}_{image.value:04d}.jpg"
            save_jpeg(data / "images" / relative, image)
            lines.append(relative + "\n")
        (data / "labels" / f"{split}1.txt").write_text("".join(lines))
    return copy


# --- Food-101: json metadata ------------------------------------------------------------------------

FOOD_CLASSES = ["apple_pie", "baby_back_ribs", "waffles"]


def write_food101(root: Path) -> FakeCopy:
    """``food-101/images/<class>/<id>.jpg``, ``meta/classes.txt``, ``meta/{train,test}.json``.

    ``test.json`` has no ``baby_back_ribs`` key, so torchvision numbers ``waffles`` 1 in the test split.
    """
    copy = FakeCopy("food101", list(FOOD_CLASSES))
    folder = root / "food-101"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "classes.txt").write_text("\n".join(FOOD_CLASSES) + "\n")
    for split, labels in (("train", (0, 1, 2, 0, 1, 2, 2)), ("test", (2, 0, 2))):
        metadata: dict[str, list[str]] = {}
        for label in labels:
            image = copy.add(split, label)
            relative = f"{FOOD_CLASSES[label]}/{100000 + image.value}"
            save_jpeg(folder / "images" / f"{relative}.jpg", image)
            metadata.setdefault(FOOD_CLASSES[label], []).append(relative)
        (folder / "meta" / f"{split}.json").write_text(json.dumps(metadata))
    return copy


# --- Caltech-101/256: numbered files in category folders --------------------------------------------


def write_caltech101(root: Path) -> FakeCopy:
    """``caltech101/101_ObjectCategories/<category>/image_0001.jpg``...; BACKGROUND_Google is not a class.

    ``Faces_easy`` sorts before ``accordion`` (torchvision sorts case-sensitively); two of the
    ``accordion`` images are grayscale and one CMYK, as some real Caltech images are.
    """
    categories = ["Faces_easy", "accordion", "airplanes"]
    copy = FakeCopy("caltech101", categories, own_splits=())
    folder = root / "caltech101" / "101_ObjectCategories"
    for label, per_class in enumerate((4, 5, 4)):
        for k in range(1, per_class + 1):
            image = copy.add(
                "train", label, mode={1: "L", 2: "L", 3: "CMYK"}.get(k, "RGB") if label == 1 else "RGB"
            )
            save_jpeg(folder / categories[label] / f"image_{k:04d}.jpg", image)
    background = FakeImage(255, "none", -1)  # not a class: never loaded
    save_jpeg(folder / "BACKGROUND_Google" / "image_0001.jpg", background)
    return copy


def write_caltech256(root: Path) -> FakeCopy:
    """``caltech256/256_ObjectCategories/001.ak47/001_0001.jpg``... (one grayscale, one CMYK image)."""
    categories = ["001.ak47", "002.american-flag", "003.backpack"]
    copy = FakeCopy("caltech256", categories, own_splits=())
    folder = root / "caltech256" / "256_ObjectCategories"
    for label, per_class in enumerate((5, 4, 4)):
        for k in range(1, per_class + 1):
            image = copy.add("train", label, mode=("L", "CMYK", "RGB", "RGB")[k - 1] if label == 2 else "RGB")
            save_jpeg(folder / categories[label] / f"{label + 1:03d}_{k:04d}.jpg", image)
    return copy


# --- Oxford-IIIT Pet: annotation lists --------------------------------------------------------------

# (file-name prefix, class id 1..37, species 1 = cat / 2 = dog, breed id within the species)
PET_BREEDS = [("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("yorkshire_terrier", 37, 2, 25)]


def write_oxford_pets(root: Path) -> FakeCopy:
    """``oxford-iiit-pet/images/<Breed>_<n>.jpg``, ``annotations/{trainval,test}.txt``."""
    copy = FakeCopy("oxford_pets", list(OXFORD_PETS_CLASSES))
    folder = root / "oxford-iiit-pet"
    (folder / "annotations").mkdir(parents=True)
    for split, file, breeds in (("train", "trainval", (0, 1, 2, 0, 1, 2, 2)), ("test", "test", (1, 0, 2))):
        lines = []
        for breed in breeds:
            prefix, class_id, species, breed_id = PET_BREEDS[breed]
            image = copy.add(split, class_id - 1)
            save_jpeg(folder / "images" / f"{prefix}_{image.value}.jpg", image)
            lines.append(f"{prefix}_{image.value} {class_id} {species} {breed_id}\n")
        (folder / "annotations" / f"{file}.txt").write_text("".join(lines))
    return copy


#: Registered name -> writer of its tiny copy.
WRITERS: dict[str, Callable[[Path], FakeCopy]] = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "flowers102": write_flowers102,
    "stanford_cars": write_stanford_cars,
    "fgvc_aircraft": write_fgvc_aircraft,
    "dtd": write_dtd,
    "food101": write_food101,
    "caltech101": write_caltech101,
    "caltech256": write_caltech256,
    "oxford_pets": write_oxford_pets,
}
