"""Seeded, stratified train/val/test splits of a labelled index set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from silhouette_lightning.errors import ConfigError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`ConfigError` unless both fractions lie in [0, 1) and leave room for training data."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"data.{name} must be in [0, 1), got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction must be < 1 so that training data is left, "
            f"got {val_fraction} + {test_fraction} = {val_fraction + test_fraction}."
        )


def _split_size(fraction: float, n: int) -> int:
    # A positive fraction always yields at least one sample: a tiny data set should still get a
    # (small) validation split rather than silently none.
    if fraction <= 0.0 or n == 0:
        return 0
    return max(1, int(np.floor(fraction * n + 0.5)))


def stratified_split(
    targets: Sequence[int], fractions: Mapping[Split, float], seed: int
) -> dict[Split, np.ndarray]:
    """Split sample indices into train/val/test, stratified by label and reproducible from ``seed``.

    Args:
        targets: label of every sample, length N.
        fractions: share of the N samples for ``"val"`` and ``"test"`` (missing or 0 -> empty split);
            everything else goes to ``"train"``.
        seed: seeds the shuffle; the same targets, fractions and seed always give the same split.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, sorted int64 index arrays that are disjoint and
        cover ``range(N)``. ``test`` has ``round(N * fractions["test"])`` samples (at least 1 if the
        fraction is positive), likewise ``val``; within each split every class has its proportional
        share of the samples, up to rounding (+-1).

    Unlike ``sklearn.model_selection.train_test_split(stratify=...)`` this works for classes with a
    single sample and for splits smaller than the number of classes.
    """
    labels = np.asarray(targets, dtype=np.int64)
    n = len(labels)
    n_test = _split_size(fractions.get("test", 0.0), n)
    n_val = _split_size(fractions.get("val", 0.0), n)
    if n_test + n_val >= n:
        raise ConfigError(
            f"{n} samples are too few for the requested fractions (val {fractions.get('val', 0.0)}, "
            f"test {fractions.get('test', 0.0)}): no training sample would be left. Lower "
            "data.val_fraction / data.test_fraction or add data."
        )
    rng = np.random.default_rng(seed)
    remaining = np.arange(n)
    chosen: dict[Split, np.ndarray] = {}
    for split, count in (("test", n_test), ("val", n_val)):
        taken = _take_stratified(labels, remaining, count, rng)
        chosen[split] = np.sort(taken)
        remaining = np.setdiff1d(remaining, taken)
    return {"train": remaining, "val": chosen["val"], "test": chosen["test"]}


def _take_stratified(
    labels: np.ndarray, pool: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` random indices from ``pool`` with each class's share proportional to its size in it.

    Each class's members are shuffled and placed at evenly spaced positions ``(rank + 0.5) / size``
    in [0, 1); the ``count`` samples with the lowest positions hold ``round(size * count / len(pool))``
    (+-1) members of every class. Equal positions are ordered randomly, so no class is favoured.
    """
    position = np.empty(len(pool), dtype=np.float64)
    for label in np.unique(labels[pool]):
        members = rng.permutation(np.flatnonzero(labels[pool] == label))
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(pool)), position))
    return pool[order[:count]]
