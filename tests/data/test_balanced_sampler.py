"""The class-balanced DDP sampler and the seeded training order of ImageDataModule.

Oracles: label counts per batch, per-index counts over all ranks of an epoch compared with each class's
proportional share, the sampler's own documented ``(seed, epoch)`` scheme, and a real 2-process gloo run.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler, TensorDataset

from silhouette_lightning.cli import run_cli
from silhouette_lightning.data import ClassBalancedSampler, ImageDataModule
from silhouette_lightning.errors import ConfigError
from tests.cli_args import config_args
from tests.multiprocess import run_in_process_group

# Unequal classes, all with at least m = 4 samples; label values need not be contiguous.
SIZES = {0: 40, 1: 23, 2: 17, 5: 9, 7: 31, 9: 12}


def make_labels(sizes: dict[int, int], seed: int = 0) -> np.ndarray:
    """Labels with ``sizes[c]`` samples of class ``c``, in a shuffled order (so positions carry no class)."""
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    return np.random.default_rng(seed).permutation(labels)


def rank_streams(labels, batch_size: int, m: int, replicas: int, *, seed: int = 0, epoch: int = 0):
    """Each rank's index stream for ``epoch``, from samplers built with explicit ``num_replicas``/``rank``."""
    streams = []
    for rank in range(replicas):
        sampler = ClassBalancedSampler(labels, batch_size, m, num_replicas=replicas, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        streams.append(list(sampler))
        assert len(streams[-1]) == len(sampler)
    return streams


def batches_of(stream: list[int], batch_size: int) -> list[list[int]]:
    assert len(stream) % batch_size == 0
    return [stream[i : i + batch_size] for i in range(0, len(stream), batch_size)]


# --- the sampler on its own ---------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 2, 3])
@pytest.mark.parametrize(("batch_size", "m"), [(12, 4), (8, 2), (24, 4)])
def test_every_batch_holds_p_classes_with_m_distinct_samples_each(replicas, batch_size, m):
    labels = make_labels(SIZES)
    streams = rank_streams(labels, batch_size, m, replicas, seed=1, epoch=2)
    # Every rank: the same number of batches, floor(N / (B R)) (at least one).
    expected_batches = max(1, len(labels) // (batch_size * replicas))
    assert [len(s) for s in streams] == [expected_batches * batch_size] * replicas
    for stream in streams:
        for batch in batches_of(stream, batch_size):
            counts = Counter(labels[batch].tolist())
            assert len(counts) == batch_size // m and set(counts.values()) == {m}, counts
            assert len(set(batch)) == batch_size  # every class has >= m samples: no repeat in a batch


def test_the_draw_depends_only_on_seed_and_epoch():
    labels = make_labels(SIZES)
    first = rank_streams(labels, 12, 4, 2, seed=3, epoch=5)
    # Other global RNG states, fresh samplers: the same indices (what a resumed run relies on).
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002 (the legacy global RNG is what the draw must not depend on)
    torch.rand(10)
    assert rank_streams(labels, 12, 4, 2, seed=3, epoch=5) == first
    assert rank_streams(labels, 12, 4, 2, seed=3, epoch=6) != first
    assert rank_streams(labels, 12, 4, 2, seed=4, epoch=5) != first
    # Epochs differ in which samples meet in a batch, not just in the order of the batches.
    pairs = [
        {frozenset(b) for b in batches_of(s[0], 12)}
        for s in (first, rank_streams(labels, 12, 4, 2, seed=3, epoch=6))
    ]
    assert not pairs[0] & pairs[1]


def test_two_ranks_partition_an_epoch_that_divides_evenly():
    # 4 classes x 24 samples, 4 classes per batch, 2 ranks: 3 batches per rank use every sample once.
    labels = make_labels({0: 24, 1: 24, 2: 24, 3: 24})
    for epoch in range(3):
        rank0, rank1 = rank_streams(labels, 16, 4, 2, seed=0, epoch=epoch)
        assert len(rank0) == len(rank1) == 48
        assert sorted(rank0 + rank1) == list(range(96))


def _shares(sizes: dict[int, int], slots: int) -> dict[int, Fraction]:
    return {c: Fraction(slots * n, sum(sizes.values())) for c, n in sizes.items()}


def test_samples_repeat_only_as_far_as_the_m_per_class_quota_forces():
    # Classes below m (1 and 3 samples) must be drawn with replacement; the others are drawn in
    # proportion to their size, and a sample repeats only after all of its class were drawn.
    sizes = {0: 30, 1: 21, 2: 14, 3: 11, 4: 9, 5: 6, 6: 3, 7: 1}
    labels = make_labels(sizes)
    batch_size, m, replicas = 12, 4, 2
    batches_total = 2 * (len(labels) // (batch_size * replicas))  # T
    shares = _shares(sizes, batches_total * batch_size // m)  # s_c = T P n_c / N
    assert max(shares.values()) <= batches_total  # no class needs more than one slot per batch here
    mean_slots = Counter()
    epochs = 60
    for epoch in range(epochs):
        streams = rank_streams(labels, batch_size, m, replicas, seed=2, epoch=epoch)
        draws = Counter(i for s in streams for i in s)
        for c, n in sizes.items():
            members = np.flatnonzero(labels == c)
            d = sum(draws[i] for i in members)
            assert d % m == 0 and d // m in (math.floor(shares[c]), math.ceil(shares[c])), (c, d)
            # Each sample of the class is drawn floor(d / n) or ceil(d / n) times: no repeats before
            # the class is used up, and none at all where d <= n.
            assert {draws[i] for i in members} <= {d // n, -(-d // n)}, (c, d)
            mean_slots[c] += d // m / epochs
        for batch in (b for s in streams for b in batches_of(s, batch_size)):
            for c, k in Counter(labels[batch].tolist()).items():
                assert k == m
                held = Counter(i for i in batch if labels[i] == c).values()
                # n_c >= m: m different samples; n_c < m: every sample, each floor or ceil of m / n_c.
                expected = {1} if sizes[c] >= m else {m // sizes[c], -(-m // sizes[c])}
                assert set(held) <= expected and len(held) == min(m, sizes[c]), (c, held)
    # Rounding the shares is unbiased: over many epochs each class gets its share of the slots.
    for c in sizes:
        assert abs(mean_slots[c] - float(shares[c])) < 0.15, (c, mean_slots[c], shares[c])


def test_a_dominant_class_fills_one_slot_per_batch_and_the_others_share_the_rest():
    # Class 0 is 70 % of the data but can hold only one of the P = 3 slots of a batch.
    sizes = {0: 140, 1: 30, 2: 20, 3: 10}
    labels = make_labels(sizes)
    (stream,) = rank_streams(labels, 12, 4, 1, seed=0, epoch=0)
    batches = batches_of(stream, 12)
    assert all(Counter(labels[b].tolist())[0] == 4 for b in batches)
    rest = _shares({c: n for c, n in sizes.items() if c != 0}, 2 * len(batches))
    for c, share in rest.items():
        slots = sum(Counter(labels[b].tolist())[c] for b in batches) // 4
        assert slots in (math.floor(share), math.ceil(share)), (c, slots, share)


def test_a_split_smaller_than_one_batch_per_rank_still_gives_every_rank_one_batch():
    labels = make_labels({0: 5, 1: 4, 2: 6})
    streams = rank_streams(labels, 12, 4, 2)
    assert [len(s) for s in streams] == [12, 12]
    for stream in streams:
        assert sorted(Counter(labels[stream].tolist()).values()) == [4, 4, 4]


def test_without_a_process_group_the_sampler_is_one_replica():
    sampler = ClassBalancedSampler(torch.tensor(make_labels(SIZES)), 12, 4)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    assert isinstance(sampler, DistributedSampler) and len(sampler) == 132 // 12 * 12


@pytest.mark.parametrize(
    ("batch_size", "m", "sizes", "message"),
    [
        (30, 4, SIZES, r"data.batch_size \(30\) must be a multiple of data.samples_per_class \(4\)"),
        (8, 1, SIZES, r"data.samples_per_class must be >= 2"),
        (4, 4, SIZES, r"data.batch_size to at least 8"),
        (16, 4, {0: 10, 1: 10, 2: 10}, r"16 / 4 = 4 classes.*only 3 classes.*at most 12"),
    ],
)
def test_bad_batch_shapes_are_config_errors(batch_size, m, sizes, message):
    with pytest.raises(ConfigError, match=message):
        ClassBalancedSampler(make_labels(sizes), batch_size, m)


# --- two real processes -------------------------------------------------------------------------------

SPAWN_LABELS = make_labels({0: 13, 1: 9, 2: 11, 3: 6, 4: 8}, seed=4).tolist()  # 47 samples


def _spawned_rank(rank: int, world: int, out_file: str) -> None:
    sampler = ClassBalancedSampler(SPAWN_LABELS, batch_size=8, samples_per_class=2, seed=5)  # ranks from dist
    sampler.set_epoch(3)
    dataset = TensorDataset(torch.arange(len(SPAWN_LABELS)), torch.tensor(SPAWN_LABELS))
    batches = []
    for indices, _ in DataLoader(dataset, batch_size=8, sampler=sampler, drop_last=True):
        step = torch.ones(1)
        dist.all_reduce(step)  # one collective per step, like DDP's gradient all-reduce
        batches.append(indices.tolist())
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(batches)]))
    gathered = [None] * world
    dist.all_gather_object(
        gathered, {"rank": sampler.rank, "replicas": sampler.num_replicas, "batches": batches}
    )
    if rank == 0:
        Path(out_file).write_text(json.dumps({"counts": [int(c) for c in counts], "ranks": gathered}))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_iterate_equally_many_balanced_batches(tmp_path):
    out_file = tmp_path / "ranks.json"
    # A timeout turns a hang (ranks with different batch counts) into an error.
    run_in_process_group(_spawned_rank, str(out_file), timeout_s=30)
    result = json.loads(out_file.read_text())
    expected = rank_streams(SPAWN_LABELS, 8, 2, 2, seed=5, epoch=3)  # built with explicit ranks here
    assert result["counts"] == [47 // 16, 47 // 16]
    labels = np.asarray(SPAWN_LABELS)
    for rank, info in enumerate(result["ranks"]):
        assert (info["rank"], info["replicas"]) == (rank, 2)  # taken from the process group
        assert [i for b in info["batches"] for i in b] == expected[rank]
        for batch in info["batches"]:
            assert sorted(Counter(labels[batch].tolist()).values()) == [2, 2, 2, 2]
    # 2 x 2 x 8 = 32 of 47 samples, no class short of samples: no index on both ranks or twice.
    everything = [i for info in result["ranks"] for b in info["batches"] for i in b]
    assert len(everything) == len(set(everything)) == 32


# --- through the data module --------------------------------------------------------------------------


def loader_batches(loader: DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images, labels) for images, labels in loader]


@pytest.mark.parametrize("num_views", [1, 2])
def test_datamodule_balanced_train_batches_and_unchanged_eval_loaders(num_views):
    dm = ImageDataModule(
        "synthetic", batch_size=8, sampler="balanced", samples_per_class=4, num_views=num_views, image_size=8
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, ClassBalancedSampler)
    batches = loader_batches(loader)
    train_size = len(dm.split_dataset("train"))
    assert len(batches) == train_size // 8
    for images, labels in batches:
        assert images.shape == ((8, 3, 8, 8) if num_views == 1 else (8, num_views, 3, 8, 8))
        assert sorted(Counter(labels.tolist()).values()) == [4, 4]
    val = dm.val_dataloader()
    assert isinstance(val.sampler, SequentialSampler)
    assert torch.cat([y for _, y in val]).tolist() == dm.split_dataset("val").targets


@pytest.mark.parametrize("sampler", ["random", "balanced"])
def test_datamodule_shards_follow_the_attached_trainer(sampler):
    # 4 classes x 40 samples: 112 for training, 28 per class.
    options = {"num_classes": 4, "samples_per_class": 40}

    def shard(rank: int) -> tuple[list[int], list[list[int]], list[int]]:
        dm = ImageDataModule("synthetic", batch_size=8, sampler=sampler, samples_per_class=4, options=options)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = dm.train_dataloader()
        assert (loader.sampler.num_replicas, loader.sampler.rank) == (2, rank)
        return list(loader.sampler), [y.tolist() for _, y in loader], dm.split_dataset("train").targets

    (indices0, labels0, targets), (indices1, labels1, _) = shard(0), shard(1)
    assert len(labels0) == len(labels1) > 0 and len(indices0) == len(indices1)
    # Random: two disjoint shards of 56 that cover the split. Balanced: 2 x 7 batches of 2 classes, each
    # class's share is 7 groups of 4 = its 28 samples, so the ranks also split the data exactly.
    assert sorted(indices0 + indices1) == list(range(112)) and len(labels0) == 56 // 8
    if sampler == "balanced":
        assert all(sorted(Counter(batch).values()) == [4, 4] for batch in labels0 + labels1)
    assert [targets[i] for i in indices0[: 8 * len(labels0)]] == [y for b in labels0 for y in b]


def test_random_train_order_is_a_function_of_seed_and_epoch_only(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)

    def train_labels(epoch: int, *, torch_seed: int) -> list[int]:
        torch.manual_seed(torch_seed)
        dm = ImageDataModule("synthetic", batch_size=16, seed=3, augment=False)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    targets = torch.tensor(ImageDataModule("synthetic", seed=3).split_dataset("train").targets)
    first = train_labels(0, torch_seed=0)
    assert train_labels(0, torch_seed=99) == first
    assert train_labels(1, torch_seed=0) != first
    # DistributedSampler's documented order: randperm seeded with seed + epoch (here data.seed = 3).
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(3 + 1))
    assert train_labels(1, torch_seed=5) == targets[order][: len(first)].tolist()
    # seed_everything's seed (PL_GLOBAL_SEED) is the training seed when set.
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(11))
    assert train_labels(0, torch_seed=0) == targets[order][: len(first)].tolist()


def test_a_rank_share_smaller_than_one_batch_is_kept():
    dm = ImageDataModule("synthetic", batch_size=64)  # 90 training samples, 45 per rank
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    assert [len(y) for _, y in dm.train_dataloader()] == [45]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 30}, r"data.batch_size \(30\) must be a multiple of data.samples_per_class \(4\)"),
        ({"batch_size": 8, "samples_per_class": 1}, r"data.samples_per_class must be >= 2"),
        ({"batch_size": 4}, r"holds only one class.*at least 8"),
        # synthetic has 4 classes; 40 / 4 = 10 per batch: suggest m = 10 or a batch of at most 16.
        ({"batch_size": 40}, r"only 4 classes: raise data.samples_per_class to 10 .*at most 16"),
        ({"sampler": "shuffled"}, r"data.sampler must be 'random' or 'balanced'"),
    ],
)
def test_datamodule_rejects_unbalanceable_batches(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ImageDataModule("synthetic", **{"sampler": "balanced", **kwargs})


def test_datamodule_checks_the_classes_the_train_split_has_at_setup():
    # 4 classes of one sample: val and test take one each, training keeps 2 classes < 3 per batch.
    dm = ImageDataModule(
        "synthetic",
        sampler="balanced",
        batch_size=6,
        samples_per_class=2,
        val_fraction=0.25,
        test_fraction=0.25,
        options={"num_classes": 4, "samples_per_class": 1},
    )
    with pytest.raises(ConfigError, match=r"3 classes, but the training data has only 2 classes"):
        dm.setup("fit")


def test_samples_per_class_is_ignored_by_the_random_sampler():
    dm = ImageDataModule("synthetic", batch_size=30, samples_per_class=1)
    assert [len(y) for _, y in dm.train_dataloader()] == [30, 30, 30]


def test_shipped_config_trains_on_balanced_digits_batches(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # restored afterwards; seed_everything sets it to 42
    configs = config_args("data/digits.yaml", "data/balanced_sampler.yaml", "method/ce_silhouette.yaml")
    overrides = ["--trainer.fast_dev_run", "2", "--trainer.enable_progress_bar", "false"]
    cli = run_cli(["fit", *configs, *overrides, "--data.batch_size", "32"])
    loader = cli.trainer.train_dataloader
    assert isinstance(loader.sampler, ClassBalancedSampler) and loader.sampler.samples_per_class == 8
    assert loader.sampler.seed == 42  # seed_everything in digits.yaml
    for _, labels in loader:
        assert sorted(Counter(labels.tolist()).values()) == [8, 8, 8, 8]
    assert cli.trainer.callback_metrics["train/loss/silhouette"].isfinite()
