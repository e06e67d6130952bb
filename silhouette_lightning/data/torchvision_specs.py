"""The torchvision data sets known by name: their files, splits, classes, labels and images.

One :class:`TorchvisionDatasetSpec` per data set; :mod:`~silhouette_lightning.data.torchvision_sets`
registers them. Everything here mirrors what torchvision 0.29's classes read and check, so that the
class list is known before ``setup`` and the labels come without decoding a single image.

Splits (the data module's ``train``/``val``/``test`` <- the data set's own files; "carved" = a seeded,
stratified ``val_fraction`` / ``test_fraction`` share of the train pool):

* CIFAR-10/100, Stanford Cars, Food-101: train, test; val carved from train.
* Oxford-IIIT Pet: trainval -> train, test; val carved from trainval.
* Flowers-102, FGVC-Aircraft (variants): their own train, val and test.
* DTD: partition 1 (train1, val1, test1).
* Caltech-101/256: no official split; the whole set is the train pool, val and test are carved.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision import datasets

from silhouette_lightning.data.cifar_classes import CIFAR10_CLASSES, CIFAR100_CLASSES
from silhouette_lightning.data.splits import Split
from silhouette_lightning.data.transforms import IMAGENET_STATS, NormalizationStats
from silhouette_lightning.errors import ConfigError

# Reads the labels of a constructed torchvision data set, without decoding images, as indices into
# the spec's class names (the second argument).
TargetsReader = Callable[[Any, Sequence[str]], Sequence[int]]


def targets_attribute(dataset: Any, class_names: Sequence[str]) -> Sequence[int]:
    """The labels of a torchvision data set that stores them as ``.targets`` (CIFAR, MNIST, ...)."""
    return dataset.targets


def labels_attribute(dataset: Any, class_names: Sequence[str], *, attribute: str) -> Sequence[int]:
    """Labels stored in ``dataset.<attribute>`` that already index ``class_names``."""
    return getattr(dataset, attribute)


def labels_by_class_name(dataset: Any, class_names: Sequence[str], *, labels: str, names: str) -> list[int]:
    """``dataset.<labels>`` index torchvision's own list ``dataset.<names>``; map them onto ours by name.

    Needed where torchvision numbers only the classes it happens to find (DTD: those in each split's
    own file, Food-101: the keys of each split's json): a class missing from one split would otherwise
    shift every later label of that split.
    """
    ours = {name: k for k, name in enumerate(class_names)}
    theirs = getattr(dataset, names)
    unknown = sorted({theirs[label] for label in getattr(dataset, labels)} - set(ours))
    if unknown:
        raise ConfigError(
            f"The files of {type(dataset).__name__} in '{dataset.root}' name classes that are not in its "
            f"class list: {unknown[:10]}. The copy is inconsistent; re-extract or re-download it."
        )
    return [ours[theirs[label]] for label in getattr(dataset, labels)]


def stanford_cars_targets(dataset: Any, class_names: Sequence[str]) -> list[int]:
    """StanfordCars keeps ``(path, label)`` pairs; the labels index ``cars_meta.mat``'s class names."""
    return [int(label) for _, label in dataset._samples]


@dataclass(frozen=True)
class TorchvisionDatasetSpec:
    """How to construct one torchvision data set and what its images are like.

    Args:
        factory: the torchvision class, called as ``factory(root=..., download=..., **split_kwargs[s])``;
            it must return ``(PIL image, label)`` items when given no transform.
        class_names: class names in label order: fixed, or read from the data set's metadata under
            ``root`` (a text file, a folder listing, a small ``.mat``; never an image).
        split_kwargs: constructor arguments per split the data set has; must include ``"train"``.
            Splits not listed (e.g. CIFAR's ``"val"``) are carved out of train by the fractions.
        stats: normalisation statistics.
        natural_image_size: the default ``image_size``.
        extracted_folder: what a download leaves in ``root``, quoted in the not-found message.
        small_images: fixed-size small images (pad + random crop, no resize at eval) rather than
            photos of varying size (RandomResizedCrop, Resize + CenterCrop).
        horizontal_flip: whether mirrored images keep their class (False for text, digits, ...).
        targets: reads the labels of a constructed data set without decoding images.
        required_paths: files and folders (relative to ``root``) that the constructor needs; checked
            when the data module is built. Empty: just ``extracted_folder``.
        layout: the on-disk layout torchvision expects, for the not-found message.
        manual_download: how to get the files where torchvision cannot download them; None when
            ``download: true`` works.
        eval_crop_fraction: for photos, the share of the resized shorter side that the evaluation
            centre crop keeps (0.875: Resize 256 + CenterCrop 224, as pretrained backbones expect).
    """

    factory: Callable[..., Dataset[Any]]
    class_names: tuple[str, ...] | Callable[[Path], Sequence[str]]
    split_kwargs: Mapping[Split, Mapping[str, Any]]
    stats: NormalizationStats
    natural_image_size: int
    extracted_folder: str
    small_images: bool = True
    horizontal_flip: bool = True
    targets: TargetsReader = targets_attribute
    required_paths: tuple[str, ...] = ()
    layout: str = ""
    manual_download: str | None = None
    eval_crop_fraction: float = 1.0


# --- class names read from the data sets' own metadata ----------------------------------------------


def read_stanford_cars_classes(root: Path) -> list[str]:
    from scipy.io import loadmat  # scipy is torchvision's requirement for this data set too

    meta = loadmat(root / "stanford_cars" / "devkit" / "cars_meta.mat", squeeze_me=True)
    return [str(name) for name in meta["class_names"].tolist()]


def read_lines(root: Path, path: str) -> list[str]:
    """The stripped lines of a text file, as torchvision reads class lists (empty lines dropped)."""
    with open(root / path, encoding="utf-8") as file:
        return [line.strip() for line in file if line.strip()]


def read_subfolders(root: Path, path: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Sorted visible sub-folder names of ``root / path``."""
    return sorted(
        entry.name
        for entry in os.scandir(root / path)
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in exclude
    )


# --- the specs --------------------------------------------------------------------------------------

_PHOTOS: dict[str, Any] = {  # photos of varying size, used with ImageNet-pretrained backbones
    "stats": IMAGENET_STATS,
    "natural_image_size": 224,
    "small_images": False,
    "eval_crop_fraction": 0.875,
}
_CIFAR_SPLITS: Mapping[Split, Mapping[str, Any]] = {"train": {"train": True}, "test": {"train": False}}
_TRAIN_VAL_TEST: Mapping[Split, Mapping[str, Any]] = {
    "train": {"split": "train"},
    "val": {"split": "val"},
    "test": {"split": "test"},
}

CIFAR10_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR10,
    class_names=CIFAR10_CLASSES,
    split_kwargs=_CIFAR_SPLITS,
    stats=NormalizationStats(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    natural_image_size=32,
    extracted_folder="cifar-10-batches-py",
    layout="cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (cifar-10-python.tar.gz)",
)
CIFAR100_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR100,
    class_names=CIFAR100_CLASSES,
    split_kwargs=_CIFAR_SPLITS,
    stats=NormalizationStats(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    natural_image_size=32,
    extracted_folder="cifar-100-python",
    layout="cifar-100-python/{train, test, meta} (cifar-100-python.tar.gz)",
)

FLOWERS102_SPEC = TorchvisionDatasetSpec(
    factory=datasets.Flowers102,
    # The files hold label numbers only; torchvision carries the names.
    class_names=tuple(datasets.Flowers102.classes),
    split_kwargs=_TRAIN_VAL_TEST,  # the official 10 + 10 images per class for train and val
    targets=partial(labels_attribute, attribute="_labels"),
    extracted_folder="flowers-102",
    required_paths=("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
    layout=(
        "flowers-102/jpg/image_00001.jpg ... (102flowers.tgz); "
        "flowers-102/imagelabels.mat, flowers-102/setid.mat (torchvision checks their MD5)"
    ),
    **_PHOTOS,
)

STANFORD_CARS_SPEC = TorchvisionDatasetSpec(
    factory=datasets.StanfordCars,
    class_names=read_stanford_cars_classes,
    split_kwargs={"train": {"split": "train"}, "test": {"split": "test"}},
    targets=stanford_cars_targets,
    extracted_folder="stanford_cars",
    required_paths=(
        "stanford_cars/cars_train",
        "stanford_cars/cars_test",
        "stanford_cars/cars_test_annos_withlabels.mat",
        "stanford_cars/devkit/cars_meta.mat",
        "stanford_cars/devkit/cars_train_annos.mat",
    ),
    layout=(
        "stanford_cars/cars_train/00001.jpg ...; "
        "stanford_cars/cars_test/00001.jpg ...; "
        "stanford_cars/cars_test_annos_withlabels.mat (test labels; not inside the devkit); "
        "stanford_cars/devkit/cars_meta.mat; "
        "stanford_cars/devkit/cars_train_annos.mat"
    ),
    manual_download=(
        "torchvision cannot download Stanford Cars: the original URL "
        "(ai.stanford.edu/~jkrause/cars) is gone, so data.download: true does not help. Get the files "
        "by hand: the images from the Kaggle mirror "
        "https://www.kaggle.com/datasets/jessicali9530/stanford-cars-dataset (flatten its nested "
        "cars_train/cars_train and cars_test/cars_test folders), the devkit (car_devkit.tgz: "
        "cars_meta.mat, cars_train_annos.mat) and the test labels (cars_test_annos_withlabels.mat); "
        "https://github.com/pytorch/vision/issues/7545 lists mirrors of both."
    ),
    **_PHOTOS,
)

FGVC_AIRCRAFT_SPEC = TorchvisionDatasetSpec(
    factory=partial(datasets.FGVCAircraft, annotation_level="variant"),
    class_names=partial(read_lines, path="fgvc-aircraft-2013b/data/variants.txt"),
    split_kwargs=_TRAIN_VAL_TEST,
    targets=partial(labels_by_class_name, labels="_labels", names="classes"),
    extracted_folder="fgvc-aircraft-2013b",
    required_paths=(
        "fgvc-aircraft-2013b/data/images",
        "fgvc-aircraft-2013b/data/variants.txt",
        *(f"fgvc-aircraft-2013b/data/images_variant_{s}.txt" for s in ("train", "val", "test")),
    ),
    layout=(
        "fgvc-aircraft-2013b/data/images/<image id>.jpg; "
        "fgvc-aircraft-2013b/data/variants.txt (the 100 classes); "
        "fgvc-aircraft-2013b/data/images_variant_{train,val,test}.txt (lines '<image id> <variant>')"
    ),
    **_PHOTOS,
)

DTD_SPEC = TorchvisionDatasetSpec(
    factory=partial(datasets.DTD, partition=1),
    class_names=partial(read_subfolders, path="dtd/dtd/images"),
    split_kwargs=_TRAIN_VAL_TEST,  # partition 1: train1.txt, val1.txt, test1.txt
    targets=partial(labels_by_class_name, labels="_labels", names="classes"),
    extracted_folder="dtd",
    required_paths=(
        "dtd/dtd/images",
        *(f"dtd/dtd/labels/{s}1.txt" for s in ("train", "val", "test")),
    ),
    layout=(
        "dtd/dtd/images/<class>/<image>.jpg (dtd-r1.0.1.tar.gz extracted into <root>/dtd); "
        "dtd/dtd/labels/{train,val,test}1.txt (lines '<class>/<image>.jpg')"
    ),
    **_PHOTOS,
)

FOOD101_SPEC = TorchvisionDatasetSpec(
    factory=datasets.Food101,
    class_names=partial(read_lines, path="food-101/meta/classes.txt"),
    split_kwargs={"train": {"split": "train"}, "test": {"split": "test"}},
    targets=partial(labels_by_class_name, labels="_labels", names="classes"),
    extracted_folder="food-101",
    required_paths=(
        "food-101/images",
        "food-101/meta/classes.txt",
        "food-101/meta/train.json",
        "food-101/meta/test.json",
    ),
    layout=(
        "food-101/images/<class>/<image id>.jpg; "
        "food-101/meta/classes.txt, food-101/meta/{train,test}.json ({class: ['<class>/<image id>', ...]})"
    ),
    **_PHOTOS,
)

# Caltech-101/256 have no official split (papers draw e.g. 30 training images per class): the whole
# set is the train pool and val/test are seeded stratified fractions of it.
CALTECH101_SPEC = TorchvisionDatasetSpec(
    factory=datasets.Caltech101,
    # torchvision drops BACKGROUND_Google ("not a real class"): 101 classes.
    class_names=partial(
        read_subfolders, path="caltech101/101_ObjectCategories", exclude=("BACKGROUND_Google",)
    ),
    split_kwargs={"train": {"target_type": "category"}},
    targets=partial(labels_by_class_name, labels="y", names="categories"),
    extracted_folder="caltech101",
    required_paths=("caltech101/101_ObjectCategories",),
    layout=(
        "caltech101/101_ObjectCategories/<category>/image_0001.jpg, image_0002.jpg, ... "
        "(numbered without gaps; BACKGROUND_Google is ignored)"
    ),
    **_PHOTOS,
)
CALTECH256_SPEC = TorchvisionDatasetSpec(
    factory=datasets.Caltech256,
    # All 257 folders, 257.clutter included, as torchvision labels them.
    class_names=partial(read_subfolders, path="caltech256/256_ObjectCategories"),
    split_kwargs={"train": {}},
    targets=partial(labels_by_class_name, labels="y", names="categories"),
    extracted_folder="caltech256",
    required_paths=("caltech256/256_ObjectCategories",),
    layout=(
        "caltech256/256_ObjectCategories/001.ak47/001_0001.jpg, ... "
        "(folder k holds k_0001.jpg, k_0002.jpg, ... without gaps)"
    ),
    **_PHOTOS,
)

# The 37 breeds in the label order of the annotation files (class id 1..37), named as torchvision
# names them (file-name prefix, '_' -> ' ', title case).
OXFORD_PETS_CLASSES: tuple[str, ...] = (
    "Abyssinian", "American Bulldog", "American Pit Bull Terrier", "Basset Hound", "Beagle", "Bengal",
    "Birman", "Bombay", "Boxer", "British Shorthair", "Chihuahua", "Egyptian Mau",
    "English Cocker Spaniel", "English Setter", "German Shorthaired", "Great Pyrenees", "Havanese",
    "Japanese Chin", "Keeshond", "Leonberger", "Maine Coon", "Miniature Pinscher", "Newfoundland",
    "Persian", "Pomeranian", "Pug", "Ragdoll", "Russian Blue", "Saint Bernard", "Samoyed",
    "Scottish Terrier", "Shiba Inu", "Siamese", "Sphynx", "Staffordshire Bull Terrier",
    "Wheaten Terrier", "Yorkshire Terrier",
)  # fmt: skip

OXFORD_PETS_SPEC = TorchvisionDatasetSpec(
    factory=partial(datasets.OxfordIIITPet, target_types="category"),
    class_names=OXFORD_PETS_CLASSES,
    split_kwargs={"train": {"split": "trainval"}, "test": {"split": "test"}},
    targets=partial(labels_attribute, attribute="_labels"),
    extracted_folder="oxford-iiit-pet",
    required_paths=(
        "oxford-iiit-pet/images",
        "oxford-iiit-pet/annotations/trainval.txt",
        "oxford-iiit-pet/annotations/test.txt",
    ),
    layout=(
        "oxford-iiit-pet/images/<Breed>_<n>.jpg (images.tar.gz); "
        "oxford-iiit-pet/annotations/{trainval,test}.txt (annotations.tar.gz; lines "
        "'<image> <class id> <species> <breed id>')"
    ),
    **_PHOTOS,
)

#: Registered name -> spec.
TORCHVISION_SPECS: dict[str, TorchvisionDatasetSpec] = {
    "cifar10": CIFAR10_SPEC,
    "cifar100": CIFAR100_SPEC,
    "flowers102": FLOWERS102_SPEC,
    "stanford_cars": STANFORD_CARS_SPEC,
    "fgvc_aircraft": FGVC_AIRCRAFT_SPEC,
    "dtd": DTD_SPEC,
    "food101": FOOD101_SPEC,
    "caltech101": CALTECH101_SPEC,
    "caltech256": CALTECH256_SPEC,
    "oxford_pets": OXFORD_PETS_SPEC,
}
