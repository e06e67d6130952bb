"""Tests of the leave-one-out retrieval metrics (README, "Evaluation metrics").

Oracles: pytorch-metric-learning's ``AccuracyCalculator`` (precision@1, MAP@R, R-precision; its
query == reference mode, brute-force kNN through ``CustomKNN`` instead of faiss) on data without distance
ties, and a plain Python loop written from the definitions (also recall@k, and the documented
"pessimistic" tie order). The DDP test at the end covers both retrieval and clustering metrics.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

import silhouette_lightning.metrics.retrieval as retrieval_module
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.clustering import ClusteringMetrics, clustering_metrics
from silhouette_lightning.metrics.retrieval import RetrievalMetrics, retrieval_metrics
from tests.multiprocess import run_in_process_group

TOL = 1e-6  # float32 results against float64 oracles
PML_KEYS = {
    "precision_at_1": "precision_at_1",
    "map_at_r": "mean_average_precision_at_r",
    "r_precision": "r_precision",
}


# --------------------------------------------------------------------------------------------------
# Oracles and data
# --------------------------------------------------------------------------------------------------
def pml_oracle(x: torch.Tensor, y: torch.Tensor, distance: str) -> dict[str, float]:
    """AccuracyCalculator in query == reference mode, per-query averages, k = largest class size - 1."""
    pml_distance = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False)
    calculator = AccuracyCalculator(
        include=tuple(PML_KEYS.values()),
        avg_of_avgs=False,
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(pml_distance),
    )
    result = calculator.get_accuracy(x, y)  # reference=None: the query set is its own reference set
    return {ours: result[theirs] for ours, theirs in PML_KEYS.items()}


def loop_oracle(x: torch.Tensor, y: torch.Tensor, ks, distance: str) -> dict[str, float] | None:
    """Definitions as loops in float64; equal distances: other-class samples first. None: no valid query."""
    pts = x.double().numpy()
    labels = y.tolist()
    n = len(labels)

    def dist(a, b):
        if distance == "cosine":
            return 1.0 - float(pts[a] @ pts[b]) / (np.linalg.norm(pts[a]) * np.linalg.norm(pts[b]))
        return math.sqrt(float(((pts[a] - pts[b]) ** 2).sum()))

    rows = []
    for q in range(n):
        others = [j for j in range(n) if j != q]
        r = sum(labels[j] == labels[q] for j in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda j, q=q: (dist(q, j), labels[j] == labels[q]))
        hits = [labels[j] == labels[q] for j in ranked]
        ap = sum(sum(hits[: i + 1]) / (i + 1) for i in range(r) if hits[i]) / r
        rows.append([hits[0]] + [any(hits[:k]) for k in ks] + [ap, sum(hits[:r]) / r])
    if not rows:
        return None
    means = np.asarray(rows, dtype=np.float64).mean(axis=0)
    names = ["precision_at_1", *(f"recall_at_{k}" for k in ks), "map_at_r", "r_precision"]
    return dict(zip(names, means.tolist(), strict=True))


def assert_matches(result: dict, expected: dict, tol: float = TOL) -> None:
    for name, value in expected.items():
        assert float(result[name]) == pytest.approx(value, abs=tol), name


def make_data(sizes, dim: int = 5, seed: int = 0, spread: float = 1.0, label_values=None):
    """Gaussian classes of the given sizes (shuffled, non-contiguous labels): no distance ties."""
    g = torch.Generator().manual_seed(seed)
    label_values = label_values or [3 * i + 2 for i in range(len(sizes))]
    y = torch.tensor([v for v, s in zip(label_values, sizes, strict=True) for _ in range(s)])
    centers = torch.randn(len(sizes), dim, generator=g) * spread
    index = {v: i for i, v in enumerate(label_values)}
    x = centers[[index[int(v)] for v in y]] + torch.randn(len(y), dim, generator=g)
    perm = torch.randperm(len(y), generator=g)
    return x[perm], y[perm]


DATASETS = {
    "uneven_with_singletons": dict(sizes=(20, 7, 1, 13, 1, 3)),
    "one_class": dict(sizes=(17,)),
    "mostly_singletons": dict(sizes=(1, 1, 2, 1, 3, 1, 1)),
    "balanced": dict(sizes=(10, 10, 10, 10)),
}


# --------------------------------------------------------------------------------------------------
# Agreement with pytorch-metric-learning and with the loops
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_matches_accuracy_calculator_and_loops(distance, dataset, chunk_size):
    x, y = make_data(**DATASETS[dataset], seed=len(dataset))
    ks = (1, 2, 5, 11)
    result = retrieval_metrics(x, y, k=ks, distance=distance, chunk_size=chunk_size)
    assert list(result) == ["precision_at_1", "recall_at_1", "recall_at_2", "recall_at_5", "recall_at_11"] + [
        "map_at_r",
        "r_precision",
    ]
    assert all(v.shape == () and v.dtype == torch.float32 for v in result.values())
    assert_matches(result, pml_oracle(x, y, distance))
    assert_matches(result, loop_oracle(x, y, ks, distance))
    assert float(result["recall_at_1"]) == float(result["precision_at_1"])


def test_values_are_not_trivial():
    """The data sets above give intermediate values, so the comparisons can tell implementations apart."""
    x, y = make_data(**DATASETS["uneven_with_singletons"], seed=3)
    result = retrieval_metrics(x, y, k=(1, 5))
    for name, value in result.items():
        assert 0.05 < float(value) < 0.99, name


def test_one_class_is_perfect():
    x, y = make_data(sizes=(9,), seed=1)
    result = retrieval_metrics(x, y, k=(1, 3))
    assert all(float(v) == 1.0 for v in result.values())


def test_singletons_are_left_out_of_every_mean():
    """Adding far-away singleton classes changes nothing (AccuracyCalculator's "lone queries")."""
    x, y = make_data(sizes=(6, 5, 4), seed=2)
    base = retrieval_metrics(x, y, k=(1, 2), distance="euclidean")
    extra_x = torch.cat([x, torch.full((3, x.shape[1]), 50.0) + torch.arange(3.0)[:, None] * 20])
    extra_y = torch.cat([y, torch.tensor([100, 101, 102])])
    with_singletons = retrieval_metrics(extra_x, extra_y, k=(1, 2), distance="euclidean")
    for name in base:
        assert float(with_singletons[name]) == pytest.approx(float(base[name]), abs=TOL), name


def test_no_query_with_a_positive_gives_zeros_and_a_warning():
    x, y = make_data(sizes=(1, 1, 1, 1), seed=4)
    assert all(math.isnan(v) for v in pml_oracle(x, y, "cosine").values())  # the oracle's NaN ...
    with pytest.warns(UserWarning, match="no query has a correct answer"):
        result = retrieval_metrics(x, y, k=(1, 2))  # ... is our documented 0
    assert set(result) == {"precision_at_1", "recall_at_1", "recall_at_2", "map_at_r", "r_precision"}
    assert all(float(v) == 0.0 for v in result.values())
    with pytest.warns(UserWarning, match="no query has a correct answer"):
        single = retrieval_metrics(x[:1], y[:1])
    assert all(float(v) == 0.0 for v in single.values())


def test_k_larger_than_the_set_acts_as_n_minus_1():
    x, y = make_data(sizes=(3, 2), seed=5)
    result = retrieval_metrics(x, y, k=(4, 100))
    assert float(result["recall_at_100"]) == 1.0 == float(result["recall_at_4"])


def test_all_distances_agree_on_the_ranking():
    x, y = make_data(sizes=(8, 6, 5), seed=6)
    euclidean = retrieval_metrics(x, y, distance="euclidean")
    squared = retrieval_metrics(x, y, distance="sqeuclidean")
    assert_matches(squared, {k: float(v) for k, v in euclidean.items()}, tol=0)
    normalized = torch.nn.functional.normalize(x, dim=1)
    assert_matches(
        retrieval_metrics(normalized, y, distance="euclidean"),
        {k: float(v) for k, v in retrieval_metrics(x, y, distance="cosine").items()},
    )


# --------------------------------------------------------------------------------------------------
# Ties
# --------------------------------------------------------------------------------------------------
def lattice_data(seed: int = 0, n: int = 60):
    """Points on {0, 1, 2}^3 with 3 random classes: many duplicates and exactly equal distances."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 3, (n, 3), generator=g).float(), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_ties_rank_other_classes_first(seed):
    x, y = lattice_data(seed)
    ks = (1, 3, 10)
    assert_matches(
        retrieval_metrics(x, y, k=ks, distance="euclidean", chunk_size=13), loop_oracle(x, y, ks, "euclidean")
    )
    # Cosine: duplicated random prototypes, so ties come from the duplicates only.
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(8, 4, generator=g)
    which = torch.randint(0, 8, (50,), generator=g)
    xc, yc = prototypes[which], torch.randint(0, 3, (50,), generator=g)
    assert_matches(retrieval_metrics(xc, yc, k=ks, distance="cosine"), loop_oracle(xc, yc, ks, "cosine"))


def test_collapsed_embedding_scores_like_the_worst_order():
    """All points equal, classes A (3) and B (5): every query sees the other class first."""
    x = torch.ones(8, 4)
    y = torch.tensor([0, 1, 1, 0, 1, 1, 0, 1])
    result = retrieval_metrics(x, y, k=(1, 5, 6), distance="euclidean")
    # A query: 5 B then 2 A. B query: 3 A then 4 B (R = 4, first hit at rank 4: AP = (1/4) / 4).
    expected = {
        "precision_at_1": 0.0,
        "recall_at_5": 5 / 8,  # B queries hit at rank 4, A queries only at rank 6
        "recall_at_6": 1.0,
        "map_at_r": (3 * 0.0 + 5 * (1 / 16)) / 8,
        "r_precision": (3 * 0.0 + 5 * (1 / 4)) / 8,
    }
    assert_matches(result, expected)


def test_results_do_not_depend_on_the_sample_order():
    x, y = lattice_data(2)
    reference = retrieval_metrics(x, y, k=(1, 4), distance="euclidean")
    for seed in range(3):
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        permuted = retrieval_metrics(x[perm], y[perm], k=(1, 4), distance="euclidean", chunk_size=9)
        for name in reference:
            # Only the float summation order changes; a different tie order would move a value by >= 1e-3.
            assert float(permuted[name]) == pytest.approx(float(reference[name]), abs=1e-6), name


# --------------------------------------------------------------------------------------------------
# The Metric: accumulation, chunking, dtypes
# --------------------------------------------------------------------------------------------------
def test_metric_accumulates_several_updates():
    x, y = make_data(sizes=(12, 9, 1, 7, 2), seed=7)
    metric = RetrievalMetrics(k=(1, 3), distance="euclidean", chunk_size=4)
    for part in torch.tensor_split(torch.arange(len(y)), [5, 6, 20]):
        metric.update(x[part], y[part])
    metric.update(x[:0], y[:0])  # an empty batch is fine
    result = metric.compute()
    assert_matches(result, pml_oracle(x, y, "euclidean"))
    assert_matches(result, loop_oracle(x, y, (1, 3), "euclidean"))
    metric.reset()
    metric.update(x[:10], y[:10])
    assert_matches(metric.compute(), loop_oracle(x[:10], y[:10], (1, 3), "euclidean"))


def test_queries_are_processed_in_bounded_blocks(monkeypatch):
    x, y = make_data(sizes=(20, 15, 1, 14), seed=8)  # N = 50, 49 queries with a positive
    blocks = []
    original = retrieval_module.pairwise_distances

    def recording(a, b, distance):
        blocks.append(tuple(a.shape[:1]) + tuple(b.shape[:1]))
        return original(a, b, distance)

    monkeypatch.setattr(retrieval_module, "pairwise_distances", recording)
    retrieval_metrics(x, y, chunk_size=8)
    assert blocks == [(8, 50)] * 6 + [(1, 50)]
    blocks.clear()
    monkeypatch.setattr(retrieval_module, "_CHUNK_ELEMENTS", 50 * 10)  # automatic size: 10 queries per block
    assert_matches(retrieval_metrics(x, y), pml_oracle(x, y, "cosine"))
    assert blocks == [(10, 50)] * 4 + [(9, 50)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_other_float_dtypes(dtype):
    x, y = make_data(sizes=(10, 8, 6), seed=9)
    x = x.to(dtype)
    result = RetrievalMetrics(k=2)
    result.update(x, y.to(torch.int32))
    assert_matches(result.compute(), loop_oracle(x.float(), y, (2,), "cosine"), tol=1e-5)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("embeddings", "labels", "message"),
    [
        (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), "labels must have shape"),
        (torch.randn(5), torch.zeros(5, dtype=torch.long), r"shape \[N, D\]"),
        (torch.randn(5, 3, 2), torch.zeros(5, dtype=torch.long), r"shape \[N, D\]"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), torch.zeros(2, dtype=torch.long), "NaN or inf"),
        (torch.tensor([[0.0, float("inf")], [1.0, 0.0]]), torch.zeros(2, dtype=torch.long), "NaN or inf"),
        (torch.randn(3, 2), torch.zeros(3), "integer tensor"),
        (torch.ones(3, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), "floating-point"),
    ],
)
@pytest.mark.parametrize("metric_class", [RetrievalMetrics, ClusteringMetrics])
def test_bad_input_is_a_clear_value_error(embeddings, labels, message, metric_class):
    metric = metric_class()
    with pytest.raises(ValueError, match=message):
        metric.update(embeddings, labels)


@pytest.mark.parametrize("metric_class", [RetrievalMetrics, ClusteringMetrics])
def test_empty_and_inconsistent_state(metric_class):
    metric = metric_class()
    with pytest.warns(UserWarning, match="without any samples; returning 0"):
        assert all(float(v) == 0.0 for v in metric.compute().values())
    metric.update(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="dimension 5 cannot be added to earlier ones of dimension 3"):
        metric.update(torch.randn(4, 5), torch.tensor([0, 0, 1, 1]))
    with pytest.warns(UserWarning, match="no samples|none of the 0 samples"):
        values = (retrieval_metrics if metric_class is RetrievalMetrics else clustering_metrics)(
            torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
        )
    assert all(float(v) == 0.0 for v in values.values())


@pytest.mark.parametrize(
    "kwargs", [dict(k=0), dict(k=()), dict(k=(1, 2.5)), dict(distance="manhattan"), dict(chunk_size=0)]
)
def test_bad_configuration(kwargs):
    with pytest.raises(ConfigError):
        RetrievalMetrics(**kwargs)


# --------------------------------------------------------------------------------------------------
# DDP: 2 CPU processes on gloo, uneven shards with different class mixes == one process on all data
# --------------------------------------------------------------------------------------------------
def ddp_data():
    x, y = make_data(sizes=(25, 18, 1, 12, 9, 2), dim=4, seed=11, spread=1.5)
    # Rank 0: mostly the first classes, rank 1: the rest (uneven: 40 / 27 samples).
    order = torch.argsort(y * 1000 + torch.arange(len(y)) % 7)
    return x, y, [order[:40], order[40:]]


def _ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    x, y, shards = ddp_data()
    retrieval = RetrievalMetrics(k=(1, 3), distance="euclidean", chunk_size=16)
    clustering = ClusteringMetrics(seed=3)
    for batch in torch.tensor_split(shards[rank], 3):
        retrieval.update(x[batch], y[batch])
        clustering.update(x[batch], y[batch])
    torch.save({**retrieval.compute(), **clustering.compute()}, f"{out_dir}/rank{rank}.pt")


def test_ddp_sync_matches_a_single_process(tmp_path):
    # A fork server imports torch/torchmetrics once, instead of once per spawned process (most of the
    # test's time); its children are forked before any OpenMP thread pool exists, unlike a plain fork.
    run_in_process_group(_ddp_worker, str(tmp_path), start_method="forkserver")
    x, y, shards = ddp_data()
    assert [len(s) for s in shards] == [40, 27] and set(y[shards[0]].tolist()) != set(y[shards[1]].tolist())
    expected = {
        **retrieval_metrics(x, y, k=(1, 3), distance="euclidean"),
        **clustering_metrics(x, y, seed=3),
    }
    assert 0.1 < float(expected["map_at_r"]) < 0.95 and 0.1 < float(expected["nmi"]) < 0.99  # not trivial
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(result) == set(expected)
        for name, value in expected.items():
            assert float(result[name]) == pytest.approx(float(value), abs=TOL), (rank, name)
