"""torchvision data sets by name: one :class:`TorchvisionSource` per :class:`TorchvisionDatasetSpec`.

Registers ``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``, ``fgvc_aircraft``, ``dtd``,
``food101``, ``caltech101``, ``caltech256`` and ``oxford_pets``. Each spec says the data set's files,
splits, classes, labels and images; everything mirrors what torchvision 0.29's classes read and check,
so that the class list is known before ``setup`` and the labels come without decoding a single image.

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
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets

from silhouette_lightning.data.image_split import ImageSplit, Transform
from silhouette_lightning.data.registry import register_dataset
from silhouette_lightning.data.source import DatasetSource, SourceConfig
from silhouette_lightning.data.sources.image_folder import DECODE_ERRORS, UnreadableImageError
from silhouette_lightning.data.splits import Split, stratified_split
from silhouette_lightning.data.transforms import (
    IMAGENET_STATS,
    NormalizationStats,
    padded_random_crop,
    random_resized_crop,
    resize_center_crop,
    resize_only,
)
from silhouette_lightning.errors import ConfigError, DatasetNotFoundError

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


# --- fixed class lists, in label order, so ``num_classes`` is known before any file is read ---------

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# The 100 fine labels of CIFAR-100 (``fine_label_names`` in its ``meta`` file, alphabetical).
CIFAR100_CLASSES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout",
    "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

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


# --- the specs --------------------------------------------------------------------------------------

_CIFAR: dict[str, Any] = {  # 32 px images; torchvision's ``train`` flag picks the split
    "split_kwargs": {"train": {"train": True}, "test": {"train": False}},
    "natural_image_size": 32,
}
_PHOTOS: dict[str, Any] = {  # photos of varying size, used with ImageNet-pretrained backbones
    "stats": IMAGENET_STATS,
    "natural_image_size": 224,
    "small_images": False,
    "eval_crop_fraction": 0.875,
}
_TRAIN_VAL_TEST: Mapping[Split, Mapping[str, Any]] = {
    "train": {"split": "train"},
    "val": {"split": "val"},
    "test": {"split": "test"},
}

CIFAR10_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR10,
    class_names=CIFAR10_CLASSES,
    stats=NormalizationStats(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    extracted_folder="cifar-10-batches-py",
    layout="cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (cifar-10-python.tar.gz)",
    **_CIFAR,
)
CIFAR100_SPEC = TorchvisionDatasetSpec(
    factory=datasets.CIFAR100,
    class_names=CIFAR100_CLASSES,
    stats=NormalizationStats(mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    extracted_folder="cifar-100-python",
    layout="cifar-100-python/{train, test, meta} (cifar-100-python.tar.gz)",
    **_CIFAR,
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


# --- the source -------------------------------------------------------------------------------------

#: Where torchvision data sets live when ``data.root`` is not set (relative to the working directory).
DEFAULT_ROOT = Path("data")


class RGBImages(Dataset[tuple[Any, int]]):
    """A torchvision data set whose PIL images are converted to RGB.

    Caltech-101/256 hold grayscale (and a few CMYK) JPEGs and torchvision passes them on as they are;
    every pipeline here expects three channels. A file that cannot be decoded raises
    :class:`UnreadableImageError` naming the data set and the sample instead of a bare PIL error.
    """

    def __init__(self, dataset: Dataset[tuple[Any, int]], name: str) -> None:
        self.dataset = dataset
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        try:
            image, target = self.dataset[index]
            if isinstance(image, Image.Image) and image.mode != "RGB":
                image = image.convert("RGB")  # also forces the decode inside this try
        except DECODE_ERRORS as err:
            raise UnreadableImageError(
                f"Cannot read image {index} of dataset '{self.name}' ({type(err).__name__}: {err}). "
                "The file is missing, corrupt or truncated: re-extract or re-download the data set."
            ) from err
        return image, target


class TorchvisionSource(DatasetSource):
    """A torchvision data set described by a :class:`TorchvisionDatasetSpec`.

    Never downloads unless ``download`` is true. Files the constructor needs are checked when the
    source is built (before a Trainer or a run folder exists): a missing data set raises
    :class:`DatasetNotFoundError` saying where it looked, the layout torchvision expects and how to
    get it; with ``download`` it is downloaded then, since class lists may live in its files.
    """

    def __init__(self, config: SourceConfig, spec: TorchvisionDatasetSpec) -> None:
        self.spec = spec
        self.natural_image_size = spec.natural_image_size
        super().__init__(config)
        self.root = Path(config.root) if config.root is not None else DEFAULT_ROOT
        self._loaded: dict[Split, tuple[Dataset[Any], list[int]]] = {}
        missing = self.missing_paths()
        if missing:
            if not config.download or spec.manual_download is not None:
                raise self._not_found(f"missing: {', '.join(missing)}")
            self._download()
        self._class_names = self._read_class_names()

    def _download(self) -> None:
        """Let torchvision download and extract the data set now: its class list may be in the files."""
        self.spec.factory(root=str(self.root), download=True, **self.spec.split_kwargs["train"])
        missing = self.missing_paths()
        if missing:
            raise self._not_found(f"still missing after the download: {', '.join(missing)}")

    def missing_paths(self) -> list[str]:
        """The required files and folders (relative to ``root``) that are not there."""
        required = self.spec.required_paths or (self.spec.extracted_folder,)
        return [path for path in required if not (self.root / path).exists()]

    def _read_class_names(self) -> list[str]:
        if not callable(self.spec.class_names):
            return list(self.spec.class_names)
        try:
            names = [str(name) for name in self.spec.class_names(self.root)]
        except Exception as err:  # whatever the parser raises, the copy is broken
            raise self._not_found(f"cannot read its class list: {type(err).__name__}: {err}") from err
        if not names:
            raise self._not_found("its class list is empty")
        return names

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def _load(self, split: Split) -> tuple[Dataset[Any], list[int]]:
        """The torchvision data set of one of its own splits and its labels (constructed once)."""
        if split not in self._loaded:
            download = self.config.download and self.spec.manual_download is None
            try:
                dataset = self.spec.factory(
                    root=str(self.root), download=download, **self.spec.split_kwargs[split]
                )
            except Exception as err:  # torchvision: RuntimeError; a broken copy: whatever its parser raises
                if download:  # a failed download is a different problem: keep its message
                    raise
                raise self._not_found(f"{split} split; torchvision: {type(err).__name__}: {err}") from err
            targets = [int(t) for t in self.spec.targets(dataset, self._class_names)]
            self._loaded[split] = (RGBImages(dataset, self.name), targets)
        return self._loaded[split]

    def _not_found(self, detail: str) -> DatasetNotFoundError:
        # One paragraph: the CLI prints it as the whole error message.
        parts = [
            f"Dataset '{self.name}' was not found or is incomplete in '{self.root.resolve()}' ({detail})."
        ]
        if self.spec.layout:
            parts.append(f"torchvision expects in data.root: {self.spec.layout}.")
        if self.spec.manual_download is not None:
            parts.append(self.spec.manual_download)
        else:
            parts.append(
                f"Set data.download: true (or --data.download true) to download it, or place the "
                f"extracted {self.spec.extracted_folder} folder in '{self.root}' (data.root)."
            )
        return DatasetNotFoundError(" ".join(parts))

    @cached_property
    def _carved_indices(self) -> dict[Split, np.ndarray]:
        """The torchvision train split divided into train and the val/test splits it lacks."""
        fractions: dict[Split, float] = {
            split: fraction
            for split, fraction in (("val", self.config.val_fraction), ("test", self.config.test_fraction))
            if split not in self.spec.split_kwargs
        }
        return stratified_split(self._load("train")[1], fractions, self.config.seed)

    def load_split(self, split: Split) -> ImageSplit:
        if split != "train" and split in self.spec.split_kwargs:
            return ImageSplit.select(*self._load(split))
        dataset, targets = self._load("train")
        return ImageSplit.select(dataset, targets, self._carved_indices[split])

    def train_transform(self) -> Transform:
        flip = self.spec.horizontal_flip
        if self.spec.small_images:
            return padded_random_crop(self.image_size, self.natural_image_size, self.spec.stats, flip=flip)
        return random_resized_crop(self.image_size, self.spec.stats, flip=flip)

    def eval_transform(self) -> Transform:
        if self.spec.small_images:
            return resize_only(self.image_size, self.natural_image_size, self.spec.stats)
        return resize_center_crop(
            self.image_size, self.spec.stats, crop_fraction=self.spec.eval_crop_fraction
        )


for _name, _spec in TORCHVISION_SPECS.items():
    register_dataset(_name, partial(TorchvisionSource, spec=_spec))
