"""Class-balanced training batches (m samples of each of P classes), one shard per DDP rank."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

from silhouette_lightning.errors import ConfigError


def check_balanced_batch(batch_size: int, samples_per_class: int, num_classes: int | None = None) -> int:
    """Raise :class:`ConfigError` unless ``batch_size`` splits into >= 2 classes of ``samples_per_class``.

    Args:
        batch_size: samples per batch B (per process).
        samples_per_class: m, samples of each class in a batch.
        num_classes: classes available to fill the batches (None = not checked).

    Returns:
        The number of classes per batch, P = B / m.
    """
    if samples_per_class < 2:
        raise ConfigError(
            f"data.samples_per_class must be >= 2 for data.sampler: balanced, got {samples_per_class}: "
            "every sample needs another sample of its class in the batch (the silhouette's a_i)."
        )
    if batch_size % samples_per_class != 0:
        lower = batch_size // samples_per_class * samples_per_class
        raise ConfigError(
            f"data.batch_size ({batch_size}) must be a multiple of data.samples_per_class "
            f"({samples_per_class}) for data.sampler: balanced (a batch is batch_size / samples_per_class "
            f"classes of samples_per_class samples each): set data.batch_size to e.g. "
            f"{max(lower, 2 * samples_per_class)} or {lower + samples_per_class}, or choose a "
            f"data.samples_per_class that divides {batch_size}."
        )
    classes_per_batch = batch_size // samples_per_class
    if classes_per_batch < 2:
        raise ConfigError(
            f"data.batch_size ({batch_size}) holds only one class of data.samples_per_class "
            f"({samples_per_class}) samples, but the silhouette compares each sample with other classes: "
            f"set data.batch_size to at least {2 * samples_per_class} (2 x samples_per_class) or lower "
            "data.samples_per_class."
        )
    if num_classes is not None and num_classes < classes_per_batch:
        if num_classes < 2:
            raise ConfigError(
                f"The balanced sampler needs at least 2 classes in the training data, found {num_classes}: "
                "use data.sampler: random, or data with more classes."
            )
        # The largest class count the data allows, reached with the smallest m that divides the batch.
        fitting = [
            m for m in range(2, batch_size + 1) if batch_size % m == 0 and batch_size // m <= num_classes
        ]
        hint = (
            f"raise data.samples_per_class to {fitting[0]} ({batch_size // fitting[0]} classes per batch) or "
            if fitting and batch_size // fitting[0] >= 2
            else ""
        )
        raise ConfigError(
            f"The balanced sampler fills every batch with data.batch_size / data.samples_per_class = "
            f"{batch_size} / {samples_per_class} = {classes_per_batch} classes, but the training data has "
            f"only {num_classes} classes: {hint}lower data.batch_size to at most "
            f"{num_classes * samples_per_class} (a multiple of data.samples_per_class)."
        )
    return classes_per_batch


class ClassBalancedSampler(DistributedSampler):
    """Indices whose consecutive chunks of ``batch_size`` are class-balanced batches, one shard per rank.

    Use it as ``DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True)``: every
    batch then holds P = ``batch_size / samples_per_class`` different classes with m =
    ``samples_per_class`` samples each, so every sample has m - 1 positives (the silhouette's ``a_i``,
    SupCon's positives) and P - 1 competing classes (``b_i``). Being a :class:`DistributedSampler`,
    Lightning leaves it in place under DDP and calls :meth:`set_epoch` before every epoch.

    An epoch is T = ``num_replicas`` x ``batches_per_replica`` batches, where ``batches_per_replica`` =
    max(1, floor(N / (batch_size x num_replicas))) for N labels, the same on every rank. All ranks build
    the same T batches from one random draw seeded by ``(seed, epoch)`` and rank r takes batches
    r, r + R, r + 2R, ...: the indices depend only on ``(seed, epoch)`` (not on the global RNG or on
    what ran before), so a run resumed at an epoch boundary sees the batches of an uninterrupted one.

    How one epoch is drawn (n_c samples of class c; K classes present):

    * Class c gets s_c = T P n_c / N of the T P class slots (its share of the data, as with uniform
      shuffling), capped at T (one slot per batch) with the excess handed on to the other classes in
      proportion to their size. Each epoch rounds the shares to integers u_c in {floor(s_c), ceil(s_c)}
      by systematic sampling (expected value s_c, sum exactly T P).
    * Class c fills its u_c slots with u_c m draws from successive random permutations of its samples:
      no sample is drawn twice in an epoch before all samples of its class were drawn (counts differ by
      at most one within a class). Repeats therefore happen only where u_c m > n_c: in classes with
      fewer than m samples, which are **sampled with replacement** (a batch then holds each of their
      samples floor(m / n_c) or ceil(m / n_c) times), by fewer than m draws where the share is rounded
      up, and when N < T x batch_size (a training set smaller than one batch per rank).
      Within one batch a class with n_c >= m never repeats a sample.
    * Batches are filled one after another with P classes drawn with weights = their remaining slots,
      always including the classes that need every remaining batch; batch order and the order inside a
      batch are then shuffled.

    Args:
        labels: class label of every dataset item, length N (any integers; only equality matters).
        batch_size: samples per batch on each rank B; a multiple of ``samples_per_class``.
        samples_per_class: m >= 2; B / m >= 2 classes per batch, and at least B / m classes present.
        num_replicas: number of ranks R; default: the initialised process group's size, else 1.
        rank: this process's rank in [0, R); default: the process group's rank, else 0.
        seed: seeds the draw together with the epoch (>= 0); use the same on every rank.

    Raises:
        ConfigError: for a bad ``batch_size`` / ``samples_per_class`` or fewer classes than B / m.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | Tensor,
        batch_size: int,
        samples_per_class: int = 4,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if seed < 0:
            raise ConfigError(f"The balanced sampler's seed must be >= 0, got {seed}.")
        labels = np.asarray(labels.tolist() if isinstance(labels, Tensor) else labels, dtype=np.int64)
        if labels.ndim != 1 or labels.size == 0:
            raise ConfigError(
                f"The balanced sampler needs a non-empty 1-D list of labels, got shape {labels.shape}."
            )
        super().__init__(
            labels, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.labels = labels
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        classes, inverse = np.unique(labels, return_inverse=True)
        self.classes_per_batch = check_balanced_batch(batch_size, samples_per_class, len(classes))
        # Dataset positions of each class's samples, in the order of ``classes``.
        order = np.argsort(inverse, kind="stable")
        self._members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        self.batches_per_replica = max(1, len(labels) // (batch_size * num_replicas))
        self.num_batches = self.batches_per_replica * num_replicas
        # DistributedSampler's length attributes: indices per rank, and over all ranks.
        self.num_samples = self.batches_per_replica * batch_size
        self.total_size = self.num_samples * num_replicas
        self._shares = _capped_shares(
            [len(m) for m in self._members], self.num_batches * self.classes_per_batch, self.num_batches
        )

    def __iter__(self):
        batches = self.epoch_batches()[self.rank :: self.num_replicas]
        return iter(batches.reshape(-1).tolist())

    def epoch_batches(self) -> np.ndarray:
        """All ranks' batches of the current epoch, int64 ``[T, batch_size]``; rank r uses rows r::R."""
        rng = np.random.default_rng([self.seed, self.epoch])
        slots = _round_shares(self._shares, rng)
        m = self.samples_per_class
        # groups[c]: class c's u_c groups of m dataset positions, in the order they are used.
        groups = [
            members[_class_draws(len(members), int(u) * m, m, rng)].reshape(-1, m)
            for members, u in zip(self._members, slots, strict=True)
        ]
        used = np.zeros(len(groups), dtype=np.int64)
        remaining = slots.copy()
        batches = np.empty((self.num_batches, self.batch_size), dtype=np.int64)
        for t in range(self.num_batches):
            chosen = _choose_classes(remaining, self.num_batches - t, self.classes_per_batch, rng)
            batches[t] = np.concatenate([groups[c][used[c]] for c in chosen])
            used[chosen] += 1
            remaining[chosen] -= 1
        return rng.permuted(batches[rng.permutation(self.num_batches)], axis=1)


def _capped_shares(sizes: list[int], slots: int, cap: int) -> list[Fraction]:
    """Split ``slots`` among classes in proportion to ``sizes``, none above ``cap`` (exact fractions).

    Classes whose share exceeds ``cap`` get ``cap``; the rest is split again among the others, until no
    share exceeds it. Needs ``len(sizes) * cap >= slots``.
    """
    shares: list[Fraction] = [Fraction(0)] * len(sizes)
    free = set(range(len(sizes)))
    left = slots
    while free:
        mass = sum(sizes[c] for c in free)
        over = [c for c in free if left * sizes[c] > cap * mass]
        if not over:
            for c in free:
                shares[c] = Fraction(left * sizes[c], mass)
            break
        for c in over:
            shares[c] = Fraction(cap)
            free.remove(c)
            left -= cap
    return shares


def _round_shares(shares: list[Fraction], rng: np.random.Generator) -> np.ndarray:
    """Integers in {floor(s), ceil(s)} with the same (integer) sum, each with expected value s.

    Systematic sampling: lay the shares end to end in random order and count the points offset + k
    (k = 0, 1, ...) falling into each one's interval, for one random offset in [0, 1).
    """
    counts = np.zeros(len(shares), dtype=np.int64)
    position = Fraction(int(rng.integers(2**32)), 2**32)
    for c in rng.permutation(len(shares)):
        end = position + shares[c]
        counts[c] = int(end) - int(position)  # floor: both are non-negative
        position = end
    return counts


def _class_draws(n: int, draws: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` positions in [0, n) from successive random permutations, cut into groups of ``m``.

    Every position is drawn floor(draws / n) or ceil(draws / n) times, and none twice before all were
    drawn once. Where a permutation starts inside a group, the positions that group already holds
    least often come first, so a group repeats a position only if n < m (and then evenly).
    """
    out = np.empty(draws, dtype=np.int64)
    filled = 0
    while filled < draws:
        perm = rng.permutation(n)
        group_start = filled - filled % m
        if filled > group_start:
            held = np.bincount(out[group_start:filled], minlength=n)
            perm = perm[np.argsort(held[perm], kind="stable")]
        take = min(n, draws - filled)
        out[filled : filled + take] = perm[:take]
        filled += take
    return out


def _choose_classes(
    remaining: np.ndarray, batches_left: int, per_batch: int, rng: np.random.Generator
) -> np.ndarray:
    """The ``per_batch`` classes of the next batch, given each class's ``remaining`` slots.

    Classes with a slot in every remaining batch must be taken; the others are drawn without
    replacement with weights = their remaining slots. With sum(remaining) = batches_left * per_batch and
    every entry <= batches_left, both stay true for the next batch, so every batch can be filled.
    """
    forced = np.flatnonzero(remaining == batches_left)
    optional = np.flatnonzero((remaining > 0) & (remaining < batches_left))
    k = per_batch - len(forced)
    if k == 0:
        return forced
    weights = remaining[optional] / remaining[optional].sum()
    return np.concatenate([forced, rng.choice(optional, size=k, replace=False, p=weights)])
