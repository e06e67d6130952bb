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
used for both its rows and its columns: N^2*D/2 multiply-adds instead of N^2*D.

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
from silhouette_lightning.losses.checks import check_choice, check_embeddings_and_labels
from silhouette_lightning.metrics.embedding_metric import EmbeddingMetric

SilhouetteDistance = Literal["euclidean", "sqeuclidean", "cosine", "precomputed"]
EMBEDDING_DISTANCES: tuple[str, ...] = ("euclidean", "sqeuclidean", "cosine")
SILHOUETTE_DISTANCES: tuple[str, ...] = (*EMBEDDING_DISTANCES, "precomputed")

# Tile sides for chunk_size=None. CPU: a float64 tile of 1024 x 1024 (8 MB) stays in the L3 cache while
# it is scattered, and the matrix products still run at full speed (benchmarks/metrics.py sweeps 512 to
# 2048: 768-1024 is fastest at N = 2,000 and 20,000). Accelerators: larger tiles, fewer kernel launches.
CPU_CHUNK_SIZE = 1024
ACCELERATOR_CHUNK_SIZE = 4096
_CHECK_ROWS = 1024
# A computed distance (squared, for the Euclidean ones) below this many epsilons of its rounding-error
# scale is rounding noise of the expanded form: it is set to exactly 0. Without this, duplicate points
# and collapsed classes (a_i = b_i = 0 in exact arithmetic) would get silhouettes from noise.
_ROUNDING_FACTOR = 64


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


def _check_finite(values: Tensor, what: str) -> None:
    if not bool(torch.isfinite(values).all()):
        raise ValueError(
            f"{what} contain NaN or infinite values; the silhouette is undefined for them. "
            "Check the model's outputs (e.g. a diverged training run) before evaluating."
        )


def check_silhouette_inputs(values: Tensor, labels: Tensor, distance: str) -> None:
    """Raise a clear ``ValueError`` for inputs the silhouette cannot be computed on.

    ``values`` are embeddings ``[N, D]``, or for ``distance="precomputed"`` a distance matrix ``[N, N]``
    (non-negative, finite, zero diagonal, as scikit-learn requires); ``labels`` are integers ``[N]``.
    """
    if distance != "precomputed":
        check_embeddings_and_labels(values, labels)
        _check_finite(values, "embeddings")
        return
    if not isinstance(values, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"distances and labels must be torch.Tensors, got {type(values)} and {type(labels)}."
        )
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"precomputed distances must be a square [N, N] matrix, got {tuple(values.shape)}.")
    if values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"precomputed distances must be real numbers, got {values.dtype}.")
    if labels.ndim != 1 or labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels must have shape [N] = [{values.shape[0]}] to match the precomputed distances "
            f"{tuple(values.shape)}, got {tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (class indices), got {labels.dtype}.")
    # Row blocks, so that the checks' boolean temporaries stay small next to an [N, N] input.
    for start in range(0, values.shape[0], _CHECK_ROWS):
        block = values[start : start + _CHECK_ROWS]
        _check_finite(block, "precomputed distances")
        if bool((block < 0).any()):
            raise ValueError("precomputed distances must be non-negative.")
    # scikit-learn's tolerance for the diagonal: 100 machine epsilons (exactly 0 for integers).
    atol = 100 * torch.finfo(values.dtype).eps if values.is_floating_point() else 0
    if bool((values.diagonal().abs() > atol).any()):
        raise ValueError(
            "precomputed distances have non-zero entries on the diagonal (the distance of a sample to "
            "itself must be 0); set them with distances.fill_diagonal_(0)."
        )


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


def _augmented(x: Tensor, distance: str) -> tuple[Tensor, Tensor, float]:
    """``left`` ``[N, K]`` and ``right`` ``[N, K]`` with ``left[i] . right[j]`` = squared Euclidean
    distance (``[-2x, |x|^2, 1] . [x, 1, |x|^2]``) or cosine distance (``[-u, 1] . [u, 1]``, u = x/|x|):
    one matrix product per tile gives the distances, with no broadcast [tile, tile] temporaries. The
    float is the scale of the products' rounding error, in units of the dtype's epsilon."""
    ones = x.new_ones(x.shape[0], 1)
    if distance == "cosine":
        # Zero vectors stay zero (as in scikit-learn): distance 1 to every other point.
        unit = torch.nn.functional.normalize(x, dim=1)
        return torch.cat([-unit, ones], 1), torch.cat([unit, ones], 1), 1.0
    # Centring changes no distance but shrinks |x|^2, and with it the expanded form's rounding error.
    x = x - x.mean(dim=0, keepdim=True)
    squared_norms = (x * x).sum(dim=1, keepdim=True)
    scale = float(squared_norms.max()) if x.shape[0] else 0.0
    return torch.cat([x * -2.0, squared_norms, ones], 1), torch.cat([x, ones, squared_norms], 1), scale


def _class_distance_sums(x: Tensor, classes: Tensor, num_classes: int, distance: str, chunk: int) -> Tensor:
    """``[N, C]``: ``sums[i, c]`` = sum of ``d(x_i, x_j)`` over samples ``j`` of class ``c`` (d(i, i) = 0).

    Walks the upper triangle of the distance matrix in ``[chunk, chunk]`` tiles; tile ``(I, J)`` adds
    its rows to the sums of the samples in ``I`` and, by symmetry, its columns to those in ``J``.
    """
    n = x.shape[0]
    left, right, scale = _augmented(x, distance)
    noise = _ROUNDING_FACTOR * torch.finfo(x.dtype).eps * scale
    sums = x.new_zeros(n, num_classes)
    # One buffer for every tile: the CPU pays page faults for each fresh [chunk, chunk] allocation.
    buffer = x.new_empty(min(chunk, n) ** 2)
    for start_i in range(0, n, chunk):
        rows = slice(start_i, min(start_i + chunk, n))
        for start_j in range(start_i, n, chunk):
            cols = slice(start_j, min(start_j + chunk, n))
            tile = buffer[: (rows.stop - rows.start) * (cols.stop - cols.start)]
            tile = tile.view(rows.stop - rows.start, cols.stop - cols.start)
            torch.mm(left[rows], right[cols].T, out=tile)
            # Values within rounding error of 0, and the slightly negative ones, become exactly 0.
            torch.nn.functional.threshold_(tile, noise, 0.0)
            if distance == "cosine":
                tile.clamp_max_(2.0)
            if start_i == start_j:
                tile.diagonal().zero_()  # d(i, i) = 0 exactly, not a rounding error
            if distance == "euclidean":
                tile.sqrt_()
            sums[rows].index_add_(1, classes[cols], tile)
            if start_i != start_j:
                # [C, n_J] scatter over contiguous tile rows, then one transposed add: faster than a
                # scatter into the strided columns of sums[cols].
                column_sums = tile.new_zeros(num_classes, tile.shape[1]).index_add_(0, classes[rows], tile)
                sums[cols] += column_sums.T
    return sums


def _precomputed_class_distance_sums(
    distances: Tensor, classes: Tensor, num_classes: int, dtype: torch.dtype, chunk: int
) -> Tensor:
    """``[N, C]`` per-class sums of the rows of a given distance matrix, ``chunk`` rows at a time (the
    matrix need not be symmetric: row ``i`` is what sample ``i`` sees, as in scikit-learn)."""
    n = distances.shape[0]
    sums = torch.zeros(n, num_classes, dtype=dtype, device=distances.device)
    for start in range(0, n, chunk):
        rows = slice(start, min(start + chunk, n))
        sums[rows].index_add_(1, classes, distances[rows].to(dtype))
    return sums


def _silhouette_from_sums(sums: Tensor, classes: Tensor, class_counts: Tensor) -> Tensor:
    """``s`` ``[N]`` from the per-class distance sums ``[N, C]`` (overwritten)."""
    own_count = class_counts[classes]
    own = classes.unsqueeze(1)
    a = sums.gather(1, own).squeeze(1) / (own_count - 1).clamp_min(1).to(sums.dtype)
    mean_distances = sums.div_(class_counts.to(sums.dtype))
    b = mean_distances.scatter_(1, own, torch.inf).amin(dim=1)
    s = (b - a) / torch.maximum(a, b)
    # Alone in its class: 0 (scikit-learn's convention); a = b = 0 (coincident points): 0 / 0 -> 0.
    return torch.where((own_count > 1) & torch.isfinite(s), s, torch.zeros_like(s))


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
    check_silhouette_inputs(embeddings, labels, distance)
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
        sums = _precomputed_class_distance_sums(embeddings, classes, num_classes, dtype, chunk_size)
    else:
        sums = _class_distance_sums(embeddings.to(dtype), classes, num_classes, distance, chunk_size)
    return _silhouette_from_sums(sums, classes, torch.bincount(classes, minlength=num_classes))


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

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        check_silhouette_inputs(embeddings, labels, self.distance)

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
