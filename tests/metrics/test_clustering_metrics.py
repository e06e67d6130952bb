"""Tests of the k-means NMI/AMI metrics (README, "Evaluation metrics").

Oracles: torchmetrics' and scikit-learn's ``normalized_mutual_info_score`` /
``adjusted_mutual_info_score`` on the same assignment (the implementation uses scikit-learn's, so
torchmetrics' is the independent one), scikit-learn's ``KMeans`` inertia (10 restarts) for the quality
of the clustering, and well-separated blobs whose clustering is known. The DDP test is in
``test_retrieval_metrics.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.cluster
import sklearn.metrics
import torch
from threadpoolctl import threadpool_limits
from torchmetrics.functional import clustering as tm_clustering

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.clustering import ClusteringMetrics, clustering_metrics, kmeans_assignments

TOL = 1e-5  # float32 results and torchmetrics' float32 mutual information against float64


def make_data(sizes, dim: int = 4, seed: int = 0, spread: float = 2.0, noise: float = 1.0):
    """Gaussian classes of the given sizes, shuffled, with non-contiguous label values."""
    g = torch.Generator().manual_seed(seed)
    y = torch.repeat_interleave(torch.arange(len(sizes)) * 5 + 1, torch.tensor(sizes))
    centers = torch.randn(len(sizes), dim, generator=g) * spread
    x = centers[(y - 1) // 5] + noise * torch.randn(len(y), dim, generator=g)
    perm = torch.randperm(len(y), generator=g)
    return x[perm], y[perm]


def inertia(x: torch.Tensor, assignment: torch.Tensor) -> float:
    pts, a = x.double().numpy(), assignment.numpy()
    return sum(float(((pts[a == c] - pts[a == c].mean(axis=0)) ** 2).sum()) for c in np.unique(a))


@pytest.mark.parametrize(
    ("sizes", "num_classes"),
    [((30, 20, 5, 12), None), ((15, 15, 15), 5), ((40, 3, 1, 2), None), ((25, 25), 2)],
)
@pytest.mark.filterwarnings("ignore:Sparse invariant checks")  # torch, inside torchmetrics' contingency table
def test_nmi_ami_equal_torchmetrics_and_sklearn_on_the_same_assignment(sizes, num_classes):
    x, y = make_data(sizes, seed=len(sizes), spread=1.0)
    result = clustering_metrics(x, y, num_classes=num_classes, seed=4)
    k = num_classes or len(sizes)
    assignment = kmeans_assignments(x, k, seed=4)
    assert assignment.shape == y.shape and len(torch.unique(assignment)) == k
    assert set(result) == {"nmi", "ami"} and all(
        v.shape == () and v.dtype == torch.float32 for v in result.values()
    )
    expected_nmi = sklearn.metrics.normalized_mutual_info_score(y.numpy(), assignment.numpy())
    expected_ami = sklearn.metrics.adjusted_mutual_info_score(y.numpy(), assignment.numpy())
    assert 0.05 < expected_ami < 0.95  # overlapping classes: an intermediate value, not a trivial one
    assert float(result["nmi"]) == pytest.approx(expected_nmi, abs=TOL)
    assert float(result["ami"]) == pytest.approx(expected_ami, abs=TOL)
    assert float(result["nmi"]) == pytest.approx(
        float(tm_clustering.normalized_mutual_info_score(assignment, y)), abs=TOL
    )
    assert float(result["ami"]) == pytest.approx(
        float(tm_clustering.adjusted_mutual_info_score(assignment, y)), abs=TOL
    )


def test_well_separated_blobs_are_recovered():
    x, y = make_data((30, 10, 22, 5, 17), dim=6, spread=20.0, noise=0.5, seed=1)
    metric = ClusteringMetrics()
    metric.update(x, y)
    result = metric.compute()
    assert float(result["nmi"]) == pytest.approx(1.0, abs=1e-6)
    assert float(result["ami"]) == pytest.approx(1.0, abs=1e-6)
    assignment = kmeans_assignments(x, 5)
    assert sklearn.metrics.adjusted_rand_score(y.numpy(), assignment.numpy()) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_kmeans_is_as_good_as_sklearn_with_restarts(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 5, generator=g)
    assignment = kmeans_assignments(x, 6, seed=seed)
    with threadpool_limits(limits=1, user_api="openmp"):  # many threads on a busy machine: very slow
        reference = sklearn.cluster.KMeans(n_clusters=6, n_init=10, random_state=seed).fit(x.double().numpy())
    assert inertia(x, assignment) <= 1.03 * reference.inertia_


def test_seeded_and_independent_of_the_sample_order():
    x, y = make_data((20, 20, 20), seed=2, spread=0.8)
    assignment = kmeans_assignments(x, 3, seed=7)
    assert torch.equal(kmeans_assignments(x, 3, seed=7), assignment)
    reference = clustering_metrics(x, y, seed=7)
    for s in range(3):
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(s))
        assert torch.equal(kmeans_assignments(x[perm], 3, seed=7), assignment[perm])
        permuted = clustering_metrics(x[perm], y[perm], seed=7)
        for name in reference:
            assert float(permuted[name]) == pytest.approx(float(reference[name]), abs=1e-6), name


def test_metric_accumulates_several_updates_and_resets():
    x, y = make_data((25, 14, 9, 3), seed=3, spread=1.0)
    metric = ClusteringMetrics(seed=1, n_init=2)
    for part in torch.tensor_split(torch.arange(len(y)), [7, 8, 30]):
        metric.update(x[part].double(), y[part])
    result = metric.compute()
    expected = clustering_metrics(x, y, seed=1, n_init=2)
    for name in expected:
        assert float(result[name]) == pytest.approx(float(expected[name]), abs=1e-6)
    metric.reset()
    metric.update(x[:20], y[:20])
    expected = clustering_metrics(x[:20], y[:20], seed=1, n_init=2)
    assert float(metric.compute()["nmi"]) == pytest.approx(float(expected["nmi"]), abs=1e-6)


def test_normalize_clusters_directions():
    x, y = make_data((20, 15, 10), seed=4, spread=1.0)
    scaled = x * torch.rand(len(y), 1, generator=torch.Generator().manual_seed(0)).mul(10).add(0.1)
    result = clustering_metrics(scaled, y, normalize=True)
    expected = clustering_metrics(torch.nn.functional.normalize(x, dim=1), y)
    assert float(result["ami"]) == pytest.approx(float(expected["ami"]), abs=1e-6)
    assert float(result["ami"]) != pytest.approx(float(clustering_metrics(scaled, y)["ami"]), abs=1e-3)


def test_one_class_gives_zeros_and_a_warning():
    x = torch.randn(10, 3)
    with pytest.warns(UserWarning, match="all have the same label"):
        result = clustering_metrics(x, torch.full((10,), 4), num_classes=3)
    assert float(result["nmi"]) == 0.0 and float(result["ami"]) == 0.0


def test_more_clusters_than_samples_is_reduced_with_a_warning():
    x, y = make_data((2, 2, 1), seed=5, spread=30.0, noise=0.1)
    with pytest.warns(UserWarning, match="using k = 5"):
        result = clustering_metrics(x, y, num_classes=100)
    # 5 clusters for 5 points: every point alone; NMI = 2 I / (H(y) + H(c)), I = H(y).
    expected = sklearn.metrics.normalized_mutual_info_score(y.numpy(), np.arange(5))
    assert float(result["nmi"]) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize(
    "kwargs", [dict(num_classes=0), dict(n_init=0), dict(max_iter=-1), dict(num_classes=2.5)]
)
def test_bad_configuration(kwargs):
    with pytest.raises(ConfigError):
        ClusteringMetrics(**kwargs)


def test_kmeans_rejects_impossible_cluster_counts():
    with pytest.raises(ValueError, match="num_clusters"):
        kmeans_assignments(torch.randn(3, 2), 4)
