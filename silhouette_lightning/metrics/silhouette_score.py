"""The exact silhouette score (Rousseeuw 1987) of embeddings under labels, as a torchmetrics ``Metric``.

For a sample ``i`` with label ``y_i``, with ``n_c`` the number of samples of class ``c``,

    a_i = sum of d(i, j) over j != i with y_j = y_i, divided by n_{y_i} - 1    (own class)
    b_i = min over c != y_i of (sum of d(i, j) over j with y_j = c) / n_c      (nearest other class)
    s_i = (b_i - a_i) / max(a_i, b_i)

and the score is the mean of ``s_i`` over all samples. This is exactly scikit-learn's
``silhouette_samples`` / ``silhouette_score`` (no sampling), including its conventions: a sample alone in
its class has ``s_i = 0`` and still counts in the mean, and ``0 / 0`` (``a_i = b_i = 0``) is 0.

Cost: the distances are computed tile by tile, ``[chunk_size, chunk_size]`` at a time, and each tile is
scattered into ``[N, C]`` per-class sums right away, so memory is O(chunk_size^2 + N*C) and never N^2.
The distance matrix is symmetric, so only the tiles on and above the diagonal are computed and each is
used for both its rows and its columns: N^2*D/2 multiply-adds instead of N^2*D. The sums and the
silhouette from them are the geometry floor that the Soft Silhouette loss shares
(:func:`~silhouette_lightning.geometry.class_sums.exact_class_distance_sums`,
:func:`~silhouette_lightning.geometry.silhouette.exact_silhouette_from_sums`).

Precision: everything runs in ``dtype`` (float64 by default, any input dtype), which matches
scikit-learn to about 1e-12. ``dtype=torch.float32`` (for accelerators with slow float64) uses the same
expanded form ``|x|^2 + |y|^2 - 2 x.y`` on centred data; expect about 1e-5 agreement for well-scaled
embeddings, worse for nearly coincident points (the rounding error of the expanded form is ~1e-7 |x|^2).

Coincident points: a computed distance within rounding error of 0 (squared Euclidean distance below
64 eps max|x - mean|^2, cosine distance below 64 eps) is exactly 0, so duplicates and collapsed classes
give ``a_i = 0`` and, for a collapsed embedding, ``0 / 0 -> 0``. scikit-learn keeps that rounding noise,
so in such degenerate cases it can return noise-driven values where this returns 0.

Undefined cases: the silhouette needs ``2 <= number of classes <= N - 1``, where scikit-learn raises. Here
every ``s_i`` is 0 then (no competing class, or every sample alone in its class; no sample at all), so the
score is **0.0**, with a warning that says why: a validation epoch that happens to hold one class must
not crash a training run.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.checks import check_choice, check_distance_matrix, check_finite_embeddings
from silhouette_lightning.geometry.class_sums import (
    exact_class_distance_sums,
    precomputed_class_distance_sums,
)
from silhouette_lightning.geometry.distances import DISTANCES
from silhouette_lightning.geometry.silhouette import exact_silhouette_from_sums
from silhouette_lightning.metrics.embedding_metric import EmbeddingMetric

SilhouetteDistance = Literal["euclidean", "sqeuclidean", "cosine", "precomputed"]
EMBEDDING_DISTANCES: tuple[str, ...] = DISTANCES
SILHOUETTE_DISTANCES: tuple[str, ...] = (*EMBEDDING_DISTANCES, "precomputed")

# Tile sides for chunk_size=None. CPU: a float64 tile of 1024 x 1024 (8 MB) stays in the L3 cache while
# it is scattered, and the matrix products still run at full speed (benchmarks/metrics.py sweeps 512 to
# 2048: 768-1024 is fastest at N = 2,000 and 20,000). Accelerators: larger tiles, fewer kernel launches.
CPU_CHUNK_SIZE = 1024
ACCELERATOR_CHUNK_SIZE = 4096


def _check_options(
    distance: str, chunk_size: int | None, dtype: torch.dtype, choices: tuple[str, ...]
) -> None:
    check_choice("distance", distance, choices)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}.")


def _undefined_reason(num_samples: int, num_classes: int) -> str | None:
    """Why the silhouette is undefined for these counts (scikit-learn raises), or None."""
    if 2 <= num_classes <= num_samples - 1:
        return None
    if num_samples < 2:
        what = f"{num_samples} sample(s)"
    elif num_classes < 2:
        what = f"only {num_classes} class among {num_samples} samples"
    else:
        what = f"every one of the {num_samples} samples in its own class"
    return (
        f"The silhouette score needs 2 <= number of classes <= number of samples - 1, got {what}; "
        "returning 0.0 (every sample's silhouette is 0). scikit-learn raises a ValueError here."
    )


@torch.no_grad()
def silhouette_samples_exact(
    embeddings: Tensor,
    labels: Tensor,
    distance: SilhouetteDistance = "euclidean",
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Per-sample silhouette ``s_i`` ``[N]``, equal to ``sklearn.metrics.silhouette_samples``.

    Args:
        embeddings: ``[N, D]`` points, or with ``distance="precomputed"`` an ``[N, N]`` distance matrix
            (non-negative, zero diagonal; row ``i`` holds the distances from sample ``i``).
        labels: ``[N]`` integer class labels, any values (they need not be contiguous).
        distance: ``"euclidean"`` (default), ``"sqeuclidean"``, ``"cosine"`` (``1 - cos``, zero vectors
            at distance 1 from every other point) or ``"precomputed"``.
        chunk_size: side of the distance tiles (rows per chunk for ``"precomputed"``); memory is
            O(chunk_size^2 + N*C), or O(chunk_size*N + N*C) for ``"precomputed"``. Default (None):
            1024 on the CPU, 4096 on accelerators.
        dtype: computation dtype, ``torch.float64`` (default, ~1e-12 from scikit-learn) or
            ``torch.float32`` (see the module docstring); also the dtype of the result.

    Returns ``s`` ``[N]`` in ``dtype`` on the input's device (the CPU for float64 on MPS, which has no
    float64). Samples alone in their class get 0. With fewer than two classes, or every sample in its own
    class, every value is 0 and a warning says so (scikit-learn raises).

    Raises:
        ValueError: wrong shapes or dtypes, NaN/inf values, or an invalid precomputed matrix.
    """
    _check_options(distance, chunk_size, dtype, SILHOUETTE_DISTANCES)
    if distance == "precomputed":
        check_distance_matrix(embeddings, labels, "silhouette_score")
    else:
        check_finite_embeddings(embeddings, labels, "silhouette_score")
    if embeddings.device.type == "mps" and dtype == torch.float64:
        embeddings = embeddings.cpu()
    labels = labels.to(embeddings.device)
    class_values, classes = torch.unique(labels, return_inverse=True)
    num_samples, num_classes = labels.shape[0], class_values.shape[0]
    reason = _undefined_reason(num_samples, num_classes)
    if reason is not None:
        rank_zero_warn(reason, UserWarning)
        return torch.zeros(num_samples, dtype=dtype, device=embeddings.device)
    if chunk_size is None:
        chunk_size = CPU_CHUNK_SIZE if embeddings.device.type == "cpu" else ACCELERATOR_CHUNK_SIZE
    if distance == "precomputed":
        sums = precomputed_class_distance_sums(embeddings, classes, num_classes, dtype, chunk_size)
    else:
        sums = exact_class_distance_sums(embeddings.to(dtype), classes, num_classes, distance, chunk_size)
    return exact_silhouette_from_sums(sums, classes, num_classes)


def silhouette_score(
    embeddings: Tensor,
    labels: Tensor,
    distance: SilhouetteDistance = "euclidean",
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Mean silhouette over all samples, a scalar tensor equal to ``sklearn.metrics.silhouette_score``
    (without its ``sample_size`` subsampling). Arguments and conventions as in
    :func:`silhouette_samples_exact`; the undefined cases (fewer than two classes, every sample in its
    own class, N < 2, including N = 0) give 0.0 with a warning."""
    samples = silhouette_samples_exact(embeddings, labels, distance, chunk_size, dtype)
    # The mean of no samples would be NaN; the documented value of the undefined cases is 0.
    return samples.mean() if samples.numel() else samples.new_zeros(())


class SilhouetteScore(EmbeddingMetric):
    """Exact silhouette score of all embeddings seen since the last ``reset()``, synced across processes.

    ``update(embeddings [B, D], labels [B])`` stores the batch; ``compute()`` runs
    :func:`silhouette_score` on the concatenation over all batches and, under DDP, all processes
    (the states are lists with ``dist_reduce_fx="cat"``; ranks may hold different numbers of samples).
    The result equals ``sklearn.metrics.silhouette_score(X, labels, metric=distance)`` on the same data,
    as a float64 (or ``dtype``) scalar tensor; the undefined cases give 0.0 with a warning (see
    :func:`silhouette_samples_exact`), and so does ``compute()`` without any sample (on any process).
    See :class:`EmbeddingMetric` for the input and state rules (sparse/integer inputs refused,
    ``set_dtype``, rejected batches, processes without samples).

    Args:
        distance: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"``. ``"precomputed"`` is not
            accepted here: a distance matrix cannot be accumulated batch by batch (the blocks between
            batches are missing); call the functional :func:`silhouette_score` with the full matrix.
        chunk_size: side of the distance tiles, see :func:`silhouette_samples_exact`.
        dtype: computation dtype (``torch.float64`` default, or ``torch.float32``).
        kwargs: passed to ``torchmetrics.Metric`` (e.g. ``compute_on_cpu=True`` to keep the stored
            embeddings off the GPU, ``sync_on_compute``, ``process_group``).

    Memory: the stored embeddings (N*D) plus O(chunk_size^2 + N*C) during ``compute()``.
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        distance: Literal["euclidean", "sqeuclidean", "cosine"] = "euclidean",
        chunk_size: int | None = None,
        dtype: torch.dtype = torch.float64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if distance == "precomputed":
            raise ConfigError(
                "SilhouetteScore accumulates embeddings batch by batch, so distance='precomputed' is not "
                "supported (the distances between batches would be missing). Use one of "
                f"{', '.join(map(repr, EMBEDDING_DISTANCES))}, or call "
                "silhouette_lightning.metrics.silhouette_score(distances, labels, distance='precomputed')."
            )
        _check_options(distance, chunk_size, dtype, EMBEDDING_DISTANCES)
        self.distance = distance
        self.chunk_size = chunk_size
        self.compute_dtype = dtype

    def compute(self) -> Tensor:
        if not self.has_samples:
            self.warn_no_samples()
            return torch.zeros((), dtype=self.compute_dtype, device=self.device)
        return silhouette_score(
            *self.samples(),
            distance=self.distance,
            chunk_size=self.chunk_size,
            dtype=self.compute_dtype,
        )
