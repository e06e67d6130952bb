"""Tests of the exact silhouette score metric (README, "Evaluation metrics").

The oracle is scikit-learn's ``silhouette_samples`` / ``silhouette_score`` on the same float64 data, plus
a single-process run for the DDP sync. Agreement is checked to 1e-10 in float64 (the implementation
differs from scikit-learn only in summation order).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics
import torch
from torch.overrides import TorchFunctionMode

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.silhouette_score import (
    SilhouetteScore,
    silhouette_samples_exact,
    silhouette_score,
)
from tests.multiprocess import run_in_process_group

DISTANCES = ("euclidean", "sqeuclidean", "cosine")
F64 = torch.float64
TOL = 1e-10
UNDEFINED = "needs 2 <= number of classes"

all_distances = pytest.mark.parametrize("distance", DISTANCES)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread, so that no op waits for a thread-pool worker on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clustered(n: int = 157, dim: int = 6, seed: int = 0, dtype: torch.dtype = F64):
    """Gaussian clusters with uneven sizes, shuffled, non-contiguous label values, two singletons."""
    g = torch.Generator().manual_seed(seed)
    label_values = torch.tensor([40, 3, 17, -2, 8])
    weights = torch.tensor([0.45, 0.25, 0.15, 0.1, 0.05])
    labels = label_values[torch.multinomial(weights, n - 2, replacement=True, generator=g)]
    labels = torch.cat([labels, torch.tensor([99, 123])])[torch.randperm(n, generator=g)]
    centers = {int(v): torch.randn(dim, generator=g, dtype=F64) * 2 for v in labels.unique()}
    x = torch.stack([centers[int(v)] for v in labels]) + torch.randn(n, dim, generator=g, dtype=F64)
    return (x + 1.5).to(dtype), labels


def sk_samples(x, labels, metric: str = "euclidean") -> np.ndarray:
    return sklearn.metrics.silhouette_samples(np.asarray(x), labels.numpy(), metric=metric)


def sk_score(x, labels, metric: str = "euclidean") -> float:
    return float(sklearn.metrics.silhouette_score(np.asarray(x), labels.numpy(), metric=metric))


# --------------------------------------------------------------------------------------------------
# Functional: equal to scikit-learn
# --------------------------------------------------------------------------------------------------
@all_distances
@pytest.mark.parametrize("chunk_size", [1, 16, 50, 157, 2048])
def test_samples_and_score_equal_sklearn(distance, chunk_size):
    # chunk sizes below N, not dividing N (157 is prime), equal to N and above it.
    x, y = clustered()
    samples = silhouette_samples_exact(x, y, distance, chunk_size=chunk_size)
    assert samples.dtype == F64 and samples.shape == (157,)
    np.testing.assert_allclose(samples.numpy(), sk_samples(x, y, distance), rtol=0, atol=TOL)
    # The singletons (labels 99, 123) count as 0 in the mean.
    assert samples[(y == 99) | (y == 123)].eq(0).all()
    score = silhouette_score(x, y, distance, chunk_size=chunk_size)
    assert score.ndim == 0
    assert abs(score.item() - sk_score(x, y, distance)) < TOL


@pytest.mark.parametrize("chunk_size", [1, 10, 64, 1000])
def test_precomputed_equals_sklearn(chunk_size):
    x, y = clustered(n=64)
    # Symmetric (real distances) and asymmetric (row i is what sample i sees, as in scikit-learn).
    euclidean = sklearn.metrics.pairwise_distances(x.numpy())
    g = torch.Generator().manual_seed(1)
    asymmetric = torch.rand(64, 64, generator=g, dtype=F64).fill_diagonal_(0).numpy()
    for matrix in (euclidean, asymmetric):
        distances = torch.from_numpy(matrix)
        samples = silhouette_samples_exact(distances, y, "precomputed", chunk_size=chunk_size)
        np.testing.assert_allclose(samples.numpy(), sk_samples(matrix, y, "precomputed"), atol=TOL, rtol=0)
        score = silhouette_score(distances, y, "precomputed", chunk_size=chunk_size)
        assert abs(score.item() - sk_score(matrix, y, "precomputed")) < TOL
    # Integer distances work as well.
    ints = torch.randint(1, 9, (64, 64), generator=g).fill_diagonal_(0)
    np.testing.assert_allclose(
        silhouette_samples_exact(ints, y, "precomputed").numpy(),
        sk_samples(ints.numpy(), y, "precomputed"),
        atol=TOL,
        rtol=0,
    )


@all_distances
def test_embeddings_equal_their_precomputed_distances(distance):
    # The two paths (symmetric tiles vs given rows) agree with each other, not only with scikit-learn.
    x, y = clustered(n=90)
    matrix = torch.from_numpy(sklearn.metrics.pairwise_distances(x.numpy(), metric=distance))
    matrix.fill_diagonal_(0)
    torch.testing.assert_close(
        silhouette_samples_exact(x, y, distance, chunk_size=32),
        silhouette_samples_exact(matrix, y, "precomputed"),
        atol=TOL,
        rtol=0,
    )


@all_distances
def test_duplicates_and_ties_equal_sklearn(distance):
    # Integer grid points: many tied distances; exact duplicates within and across classes; a class
    # collapsed onto one point; two classes on the same point (a = b = 0: 0/0 -> 0).
    g = torch.Generator().manual_seed(3)
    grid = torch.randint(1, 4, (40, 3), generator=g).to(F64)
    labels = torch.randint(0, 4, (40,), generator=g)
    collapsed = torch.tensor([[5.0, 5.0, 5.0]] * 4, dtype=F64)
    x = torch.cat([grid, grid[:10], collapsed, collapsed[:2]])
    y = torch.cat([labels, labels[:10].flip(0), torch.tensor([7, 7, 7, 7, 9, 9])])
    samples = silhouette_samples_exact(x, y, distance, chunk_size=17)
    np.testing.assert_allclose(samples.numpy(), sk_samples(x, y, distance), atol=1e-9, rtol=0)
    assert torch.isfinite(samples).all()


def test_cosine_zero_vector_is_at_distance_one():
    # A zero vector has cosine distance 1 to every other point (as in scikit-learn) and 0 to itself.
    x, y = clustered(n=30)
    x[4] = 0.0
    unit = torch.nn.functional.normalize(x, dim=1)
    matrix = (1 - unit @ unit.T).clamp(0, 2).fill_diagonal_(0)
    torch.testing.assert_close(
        silhouette_samples_exact(x, y, "cosine"), silhouette_samples_exact(matrix, y, "precomputed")
    )
    assert abs(silhouette_score(x, y, "cosine").item() - sk_score(x, y, "cosine")) < 0.05


def test_two_labels_for_three_samples_is_defined():
    # n_labels = n_samples - 1 is the largest count scikit-learn accepts.
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0]], dtype=F64)
    y = torch.tensor([1, 1, 5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples = silhouette_samples_exact(x, y)
    np.testing.assert_allclose(samples.numpy(), sk_samples(x, y), atol=TOL, rtol=0)
    assert samples[:2].abs().min() > 0.5


# --------------------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------------------
def test_float32_input_equals_sklearn():
    x32, y = clustered(n=200, dim=16, dtype=torch.float32)
    ours = silhouette_score(x32, y)
    assert ours.dtype == F64
    # float64 computation on the float32 values: exact against scikit-learn on the same values.
    assert abs(ours.item() - sk_score(x32.double(), y)) < TOL
    # scikit-learn on float32 input computes (partly) in float32.
    assert abs(ours.item() - sk_score(x32, y)) < 1e-5
    for distance in DISTANCES:
        fast = silhouette_samples_exact(x32, y, distance, dtype=torch.float32, chunk_size=64)
        assert fast.dtype == torch.float32
        reference = sk_samples(x32.double(), y, distance)
        np.testing.assert_allclose(fast.numpy(), reference, atol=1e-5, rtol=0)


def test_far_from_origin_is_exact():
    # Embeddings with a large common offset: centring keeps the expanded form's rounding error small.
    x, y = clustered(n=80)
    shifted = x + 1e4
    reference = sk_samples(x, y)
    np.testing.assert_allclose(silhouette_samples_exact(shifted, y).numpy(), reference, atol=1e-9, rtol=0)
    np.testing.assert_allclose(
        silhouette_samples_exact(shifted.float(), y, dtype=torch.float32).numpy(), reference, atol=1e-3
    )


class _LargestTensor(TorchFunctionMode):
    """Records the largest number of elements of any tensor a torch function returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, tuple | list) else (result,):
            if isinstance(value, torch.Tensor):
                self.largest = max(self.largest, value.numel())
        return result


def test_memory_is_bounded_by_the_tiles():
    # No [N, N] tensor ever exists: only [chunk, chunk] tiles and [N, C] sums (N = 600, C = 7 here).
    x, y = clustered(n=600, dim=8)
    for distance in DISTANCES:
        with _LargestTensor() as mode:
            value = silhouette_score(x, y, distance, chunk_size=40)
        assert abs(value.item() - sk_score(x, y, distance)) < TOL
        # The largest: the [N, D + 2] augmented embeddings; a [N, N] matrix would have 360,000.
        assert mode.largest <= max(40 * 40, 600 * (8 + 2), 600 * 7), (distance, mode.largest)
    matrix = torch.from_numpy(sklearn.metrics.pairwise_distances(x.numpy()))
    with _LargestTensor() as mode:
        silhouette_score(matrix, y, "precomputed", chunk_size=40)
    # The input itself is N x N; the computation adds only row blocks.
    assert mode.largest <= 1024 * 600


# --------------------------------------------------------------------------------------------------
# The Metric
# --------------------------------------------------------------------------------------------------
@all_distances
def test_metric_batches_equal_one_update_and_sklearn(distance):
    x, y = clustered()
    whole = SilhouetteScore(distance=distance, chunk_size=32)
    whole.update(x, y)
    batched = SilhouetteScore(distance=distance, chunk_size=32)
    for start, stop in [(0, 1), (1, 40), (40, 41), (41, 120), (120, 157)]:  # uneven, incl. size 1
        batched.update(x[start:stop], y[start:stop])
    reference = sk_score(x, y, distance)
    assert abs(whole.compute().item() - reference) < TOL
    assert abs(batched.compute().item() - reference) < TOL
    # reset() forgets everything: a new epoch on other data.
    batched.reset()
    batched.update(x[:100], y[:100])
    assert abs(batched.compute().item() - sk_score(x[:100], y[:100], distance)) < TOL


def test_metric_is_a_well_behaved_torchmetric():
    x, y = clustered()
    metric = SilhouetteScore()
    assert metric.higher_is_better and not metric.is_differentiable
    # forward() returns the batch value and accumulates for the epoch.
    first = metric(x[:80], y[:80])
    assert abs(first.item() - sk_score(x[:80], y[:80])) < TOL
    metric(x[80:], y[80:])
    assert abs(metric.compute().item() - sk_score(x, y)) < TOL
    # Gradients of the inputs are not tracked.
    metric.reset()
    metric.update(x.clone().requires_grad_(True), y)
    assert not metric.compute().requires_grad


# --------------------------------------------------------------------------------------------------
# Bad input and undefined cases
# --------------------------------------------------------------------------------------------------
def test_bad_embeddings_raise_clear_errors():
    x, y = clustered(n=20)
    metric = SilhouetteScore()
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[20\]"):
        metric.update(x, y[:-1])
    with pytest.raises(ValueError, match=r"must have shape \[N, D\]"):
        metric.update(x.unsqueeze(0), y)
    with pytest.raises(ValueError, match=r"must have shape \[N, D\]"):
        metric.update(x[:, 0], y)
    for bad in (float("nan"), float("inf"), -float("inf")):
        corrupted = x.clone()
        corrupted[3, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            metric.update(corrupted, y)
        with pytest.raises(ValueError, match="NaN or infinite"):
            silhouette_score(corrupted, y)
    with pytest.raises(ValueError, match="integer tensor"):
        metric.update(x, y.float())
    metric.update(x, y)
    with pytest.raises(ValueError, match="dimension 5 cannot be added to earlier ones of dimension 6"):
        metric.update(x[:, :5], y)
    # Nothing bad was stored: the metric still gives the value of the one good batch.
    assert abs(metric.compute().item() - sk_score(x, y)) < TOL


def test_bad_precomputed_matrices_raise_clear_errors():
    x, y = clustered(n=20)
    matrix = torch.from_numpy(sklearn.metrics.pairwise_distances(x.numpy()))
    with pytest.raises(ValueError, match="square"):
        silhouette_score(matrix[:, :10], y, "precomputed")
    with pytest.raises(ValueError, match="diagonal"):
        silhouette_score(matrix + 1.0, y, "precomputed")
    with pytest.raises(ValueError, match="non-negative"):
        silhouette_score(matrix - 0.5 * matrix.max(), y, "precomputed")
    corrupted = matrix.clone()
    corrupted[2, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        silhouette_score(corrupted, y, "precomputed")
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[20\]"):
        silhouette_score(matrix, y[:5], "precomputed")


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="precomputed"):
        SilhouetteScore(distance="precomputed")
    with pytest.raises(ConfigError, match="distance='manhattan'"):
        SilhouetteScore(distance="manhattan")
    with pytest.raises(ConfigError, match="chunk_size"):
        SilhouetteScore(chunk_size=0)
    with pytest.raises(ConfigError, match="dtype"):
        silhouette_score(*clustered(n=10), dtype=torch.float16)


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        (torch.full((12,), 4), "only 1 class among 12"),  # one class
        (torch.arange(12) * 3, "every one of the 12 samples in its own class"),  # all singletons
    ],
)
def test_undefined_label_counts_give_zero_with_a_warning(labels, why):
    x, _ = clustered(n=12)
    with pytest.raises(ValueError):  # the documented difference: scikit-learn raises
        sk_score(x, labels)
    with pytest.warns(UserWarning, match=f"{UNDEFINED}.*{why}.*returning 0.0"):
        samples = silhouette_samples_exact(x, labels)
    assert samples.shape == (12,) and samples.eq(0).all()
    metric = SilhouetteScore()
    metric.update(x, labels)
    with pytest.warns(UserWarning, match=UNDEFINED):
        value = metric.compute()
    assert value.item() == 0.0 and value.dtype == F64


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric SilhouetteScore was called before")
def test_single_sample_and_no_sample_give_zero_with_a_warning():
    metric = SilhouetteScore()
    with pytest.warns(UserWarning, match="without any samples"):
        assert metric.compute().item() == 0.0
    metric.update(torch.ones(1, 3), torch.tensor([2]))
    with pytest.warns(UserWarning, match=rf"{UNDEFINED}.*got 1 sample"):
        assert metric.compute().item() == 0.0


# --------------------------------------------------------------------------------------------------
# DDP: two CPU processes on gloo give the single-process value
# --------------------------------------------------------------------------------------------------
def _ddp_rank_data(rank: int):
    """Rank 0 and rank 1 hold different class mixes and numbers of samples (classes 40 and 3 only on
    rank 0, class 8 only on rank 1), fed in uneven batches."""
    x, y = clustered()
    on_rank0 = torch.isin(y, torch.tensor([40, 3, 99])) | (torch.arange(len(y)) % 5 == 0)
    mine = on_rank0 if rank == 0 else ~on_rank0
    return x[mine], y[mine]


def _ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    x, y = _ddp_rank_data(rank)
    metric = SilhouetteScore(chunk_size=24)
    step = 17 if rank == 0 else 29  # different batch sizes and counts per rank
    for start in range(0, len(y), step):
        metric.update(x[start : start + step], y[start : start + step])
    torch.save(metric.compute(), Path(out_dir) / f"rank{rank}.pt")


def test_ddp_sync_equals_single_process(tmp_path):
    x0, y0 = _ddp_rank_data(0)
    x1, y1 = _ddp_rank_data(1)
    assert len(y0) != len(y1) and set(y0.tolist()) != set(y1.tolist())
    run_in_process_group(_ddp_worker, str(tmp_path))
    single = SilhouetteScore()
    single.update(torch.cat([x0, x1]), torch.cat([y0, y1]))
    expected = single.compute().item()
    assert abs(expected - sk_score(torch.cat([x0, x1]), torch.cat([y0, y1]))) < TOL
    # Neither rank's own data gives that value: the sync really happened.
    assert abs(silhouette_score(x0, y0).item() - expected) > 1e-3
    for rank in (0, 1):
        value = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(value.item() - expected) < TOL, rank


# --------------------------------------------------------------------------------------------------
# Accelerators (skipped on the CPU-only test machine)
# --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@all_distances
def test_cuda_equals_sklearn(distance):
    x, y = clustered(n=300)
    metric = SilhouetteScore(distance=distance, chunk_size=64).cuda()
    metric.update(x[:100].cuda(), y[:100].cuda())
    metric.update(x[100:].cuda(), y[100:].cuda())
    value = metric.compute()
    assert value.device.type == "cuda"
    assert abs(value.item() - sk_score(x, y, distance)) < TOL
    fast = silhouette_score(x.float().cuda(), y.cuda(), distance, dtype=torch.float32)
    assert abs(fast.item() - sk_score(x, y, distance)) < 1e-5
