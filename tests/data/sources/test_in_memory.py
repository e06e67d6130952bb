"""The in-memory sources (silhouette_lightning/data/sources/): ``digits`` (scikit-learn's bundled 8x8
digits) and ``synthetic`` (generated class patterns); nothing downloads.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from silhouette_lightning.data import ImageDataModule
from tests.data.colour_images import all_batches

DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760


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
