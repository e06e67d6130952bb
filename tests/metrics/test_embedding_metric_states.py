"""The state rules every embedding metric shares (SilhouetteScore, RetrievalMetrics, ClusteringMetrics):
no samples -> zeros with a warning, set_dtype keeps integer labels, a rejected forward() batch keeps the
earlier ones, clear errors for sparse / integer inputs, and a DDP process without samples (2 gloo
processes) gives the single-process value of the others' data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics
import torch
from torch import nn

from silhouette_lightning.metrics import (
    ClusteringMetrics,
    RetrievalMetrics,
    SilhouetteScore,
    clustering_metrics,
    retrieval_metrics,
    silhouette_score,
)
from tests.metrics import test_embedding_evaluation as embedding_evaluation
from tests.multiprocess import run_in_process_group

METRICS = (SilhouetteScore, RetrievalMetrics, ClusteringMetrics)
all_metrics = pytest.mark.parametrize("metric_class", METRICS, ids=lambda c: c.__name__)


def data(n: int = 60, dim: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g) * 7 - 3  # non-contiguous values
    centers = torch.randn(40, dim, generator=g) * 2
    return centers[labels + 3] + torch.randn(n, dim, generator=g), labels


def oracle(metric_class: type, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The value on ``x``, ``y`` alone: scikit-learn for the silhouette, the functionals (tested against
    pytorch-metric-learning / scikit-learn in their own files) for the others."""
    if metric_class is SilhouetteScore:
        return {"silhouette": float(sklearn.metrics.silhouette_score(x.double().numpy(), y.numpy()))}
    functional = retrieval_metrics if metric_class is RetrievalMetrics else clustering_metrics
    return {name: float(value) for name, value in functional(x, y).items()}


def as_dict(value) -> dict[str, float]:
    if isinstance(value, dict):
        return {name: float(v) for name, v in value.items()}
    return {"silhouette": float(value)}


def assert_close(result, expected: dict[str, float], tol: float = 1e-6) -> None:
    result = as_dict(result)
    assert set(result) == set(expected)
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, abs=tol), name


# --------------------------------------------------------------------------------------------------
# No samples
# --------------------------------------------------------------------------------------------------
@all_metrics
def test_no_samples_give_zeros_with_a_warning(metric_class):
    metric = metric_class()
    with pytest.warns(UserWarning, match="without any samples; returning 0"):
        result = as_dict(metric.compute())
    assert result and all(v == 0.0 for v in result.values())
    # An empty batch is no sample either (the silhouette's mean of nothing used to be NaN).
    metric = metric_class()
    metric.update(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.warns(UserWarning, match="without any samples"):
        assert all(v == 0.0 for v in as_dict(metric.compute()).values())


def test_functionals_without_samples_give_zeros_with_a_warning():
    x, y = torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)
    with pytest.warns(UserWarning, match="got 0 sample"):
        assert silhouette_score(x, y).item() == 0.0
    with pytest.warns(UserWarning, match="none of the 0 samples"):
        assert all(float(v) == 0.0 for v in retrieval_metrics(x, y).values())
    with pytest.warns(UserWarning, match="no samples"):
        assert all(float(v) == 0.0 for v in clustering_metrics(x, y).values())


# --------------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------------
@all_metrics
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_set_dtype_keeps_integer_labels(metric_class, dtype):
    x, y = data()
    metric = metric_class()
    metric.update(x[:35], y[:35])
    metric.set_dtype(dtype)
    metric.update(x[35:], y[35:])  # after the conversion too
    assert all(t.dtype == torch.int64 for t in metric.labels)
    assert metric.embeddings[0].dtype == dtype  # the embeddings do follow set_dtype
    # The stored embeddings were rounded to `dtype`: the oracle sees the same rounding.
    rounded = torch.cat([x[:35].to(dtype).float(), x[35:]])
    assert_close(metric.compute(), oracle(metric_class, rounded, y), tol=1e-5)


@all_metrics
def test_module_dtype_casts_leave_the_metric_working(metric_class):
    x, y = data()
    holder = nn.Module()
    holder.metric = metric_class()
    holder.metric.update(x, y)
    holder.double().half().float()  # torchmetrics ignores these for metric states
    holder.to(torch.float64)  # Module.to keeps integer tensors
    assert holder.metric.labels[0].dtype == torch.int64
    assert_close(holder.metric.compute(), oracle(metric_class, x, y), tol=1e-5)
    # Device moves still move the labels (the meta device stands in for an accelerator).
    holder.metric.set_dtype(torch.float64)
    holder.to("meta")
    assert holder.metric.labels[0].device.type == "meta" and holder.metric.labels[0].dtype == torch.int64
    assert holder.metric.embeddings[0].device.type == "meta"


# --------------------------------------------------------------------------------------------------
# Rejected batches keep the state
# --------------------------------------------------------------------------------------------------
BAD_BATCHES = {
    "labels-length": (lambda x, y: (x, y[:-1]), r"labels must have shape \[N\]"),
    "dimension": (lambda x, y: (x[:, :3], y), "dimension 3 cannot be added to earlier ones of dimension 5"),
    "nan": (lambda x, y: (x.index_fill(0, torch.tensor([2]), float("nan")), y), "NaN"),
    "float-labels": (lambda x, y: (x, y.float()), "integer tensor"),
}


@all_metrics
@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_a_rejected_forward_batch_keeps_the_earlier_batches(metric_class, case):
    x, y = data()
    metric = metric_class()
    metric.update(x, y)
    make, message = BAD_BATCHES[case]
    with pytest.raises(ValueError, match=message):
        metric(*make(x[:20], y[:20]))
    assert_close(metric.compute(), oracle(metric_class, x, y), tol=1e-5)
    # forward() still accumulates good batches.
    metric(x[:20], y[:20])
    both = (torch.cat([x, x[:20]]), torch.cat([y, y[:20]]))
    assert_close(metric.compute(), oracle(metric_class, *both), tol=1e-5)


@all_metrics
def test_sparse_and_integer_embeddings_are_refused_clearly(metric_class):
    x, y = data(n=10)
    metric = metric_class()
    with pytest.raises(ValueError, match=r"must be a dense tensor.*sparse_coo.*embeddings.to_dense\(\)"):
        metric.update(x.to_sparse(), y)
    with pytest.raises(ValueError, match=r"labels must be a dense tensor.*labels.to_dense\(\)"):
        metric.update(x, y.to_sparse())
    with pytest.raises(ValueError, match=r"floating-point tensor, got torch.int64; pass embeddings\.float"):
        metric.update(x.long(), y)
    with pytest.raises(ValueError, match=r"dimension D = 0"):
        metric.update(x[:, :0], y)
    with pytest.raises(ValueError, match=r"labels are on device meta but embeddings on device cpu"):
        metric.update(x, y.to("meta"))
    assert not metric.has_samples


# --------------------------------------------------------------------------------------------------
# DDP: a process without samples
# --------------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, out_dir: str) -> None:
    warnings.simplefilter("ignore")  # "compute before update" on the empty rank
    x, y = data()
    metrics = [cls() for cls in METRICS]
    if rank == 0:  # rank 1 never calls update()
        for metric in metrics:
            metric.update(x[:30], y[:30])
            metric.update(x[30:].double(), y[30:])  # mixed dtypes: promoted on every rank
    results = {cls.__name__: as_dict(m.compute()) for cls, m in zip(METRICS, metrics, strict=True)}
    # Nobody has samples: zeros on both ranks, no crash, no hang.
    empty = {cls.__name__: as_dict(cls().compute()) for cls in METRICS}
    # Different dimensions: the same clear error on both ranks (no hang).
    mismatch = SilhouetteScore()
    mismatch.update(x[:, : 3 + rank], y)
    try:
        mismatch.compute()
        error = ""
    except ValueError as err:
        error = str(err)
    evaluation = embedding_evaluation.ddp_part(rank)  # one process group for both files
    torch.save(
        {"results": results, "empty": empty, "error": error, "evaluation": evaluation},
        f"{out_dir}/rank{rank}.pt",
    )


def test_ddp_process_without_samples_equals_the_others_data(tmp_path):
    run_in_process_group(_ddp_worker, str(tmp_path), start_method="forkserver")
    x, y = data()
    for rank in range(2):
        saved = torch.load(tmp_path / f"rank{rank}.pt")
        for cls in METRICS:
            assert_close(saved["results"][cls.__name__], oracle(cls, x, y), tol=1e-5)
            assert all(v == 0.0 for v in saved["empty"][cls.__name__].values())
        assert "different dimensions [3, 4]" in saved["error"], rank
        embedding_evaluation.check_ddp_part(saved["evaluation"])
    assert np.isfinite(oracle(SilhouetteScore, x, y)["silhouette"])
