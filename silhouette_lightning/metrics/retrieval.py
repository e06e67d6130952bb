"""Leave-one-out retrieval metrics of an embedding: precision@1, recall@k, MAP@R and R-precision.

Every sample is a query against all *other* samples of the evaluated set (the query itself is never
retrieved). For a query ``q`` with label ``y_q`` let ``R_q`` be the number of other samples with label
``y_q`` and ``hit_q(i)`` be 1 when the ``i``-th nearest other sample has label ``y_q``. Then

    precision_at_1 = mean_q hit_q(1)
    recall_at_k    = mean_q [ sum_{i <= k} hit_q(i) > 0 ]          (metric-learning recall@k, Recall@K of
                                                                   Song et al. 2016; k > N - 1 acts as N - 1)
    r_precision    = mean_q (1 / R_q) sum_{i <= R_q} hit_q(i)
    map_at_r       = mean_q (1 / R_q) sum_{i <= R_q} hit_q(i) * P_q(i)
                     with P_q(i) = (1 / i) sum_{j <= i} hit_q(j)

(MAP@R and R-precision: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020.)

Queries without a positive (``R_q = 0``: the only sample of their class) are left out of *every* mean,
exactly like pytorch-metric-learning's ``AccuracyCalculator`` ("lone query labels"), and the means are
over queries, not over classes (its ``avg_of_avgs=False``). If no query has a positive (every class is a
singleton, a single sample, or no sample at all), all values are 0 and a warning says why: a
documented value instead of pytorch-metric-learning's NaN, so that logging and checkpoint monitoring keep
working.

Ties. When several samples are at exactly the same distance from a query, samples of *other* classes
are ranked first ("pessimistic" ties). The values then depend only on the multiset of (distance,
same-class) pairs of each query, so they are deterministic and do not change when the samples are
reordered (as the gather across DDP ranks does), and a collapsed embedding (all points equal) gets the
worst score of any order (precision@1 = 0), not whatever the data order happens to give. Without exact
ties this is the plain nearest-neighbour order and the values equal ``AccuracyCalculator``'s (which
breaks ties in ``torch.topk``'s unspecified order). Distances are computed in float32 (like
``AccuracyCalculator``); the tie-breaking key is the float64 distance, moved up by one float64 ulp for
same-class samples, which is below the spacing of float32 values and therefore never reorders two
different float32 distances.

Cost: queries are processed in chunks, each with one ``[chunk, N]`` distance block and one top-K per
chunk (``K = max(max k, largest R_q)``): O(N^2 D) time, O(chunk * N) memory, no faiss and never an
``N x N`` matrix at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.checks import check_choice, check_finite_embeddings
from silhouette_lightning.geometry.distances import DISTANCES, Distance, pairwise_distances
from silhouette_lightning.metrics.embedding_metric import EmbeddingMetric

# Default query chunk: about this many [chunk, N] entries per block (float32 distances + float64 keys:
# ~50 MB). Chosen for bounded memory; the value does not change any result.
_CHUNK_ELEMENTS = 2**22


def check_ks(k: int | Sequence[int]) -> tuple[int, ...]:
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ks):
        raise ConfigError(f"k must be a positive integer or a non-empty list of them, got {k!r}.")
    return tuple(sorted(set(ks)))


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ConfigError(f"chunk_size must be a positive integer or None (automatic), got {chunk_size!r}.")


def metric_names(k: Sequence[int]) -> list[str]:
    """The keys of the result dict, in order."""
    return ["precision_at_1", *(f"recall_at_{v}" for v in k), "map_at_r", "r_precision"]


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    k: int | Sequence[int] = (1, 5),
    distance: Distance = "cosine",
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """Leave-one-out precision@1, recall@k, MAP@R and R-precision (see the module docstring).

    Args:
        embeddings: ``[N, D]`` float tensor, finite.
        labels: ``[N]`` integer class labels (any values; they need not be contiguous).
        k: the cut-off(s) of recall@k.
        distance: ``"cosine"`` (``1 - cosine similarity``), ``"euclidean"`` or ``"sqeuclidean"`` (same
            ranking as ``"euclidean"``).
        chunk_size: queries per distance block; ``None`` picks about ``2**22 / N``.

    Returns:
        ``{"precision_at_1", "recall_at_<k>" for each k, "map_at_r", "r_precision"}``: float32 scalar
        tensors on the embeddings' device, means over the queries that have a positive.
    """
    ks = check_ks(k)
    check_choice("distance", distance, DISTANCES)
    _check_chunk_size(chunk_size)
    check_finite_embeddings(embeddings, labels, "retrieval_metrics")
    n = embeddings.shape[0]
    device = embeddings.device
    # MPS has no float64 (the tie-breaking key below), so there the ranking runs on the CPU.
    work = torch.device("cpu") if device.type == "mps" else device
    x = embeddings.detach().to(work, torch.float32)
    labels = labels.detach().to(work, torch.long)

    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    positives = counts[inverse] - 1  # R_q: other samples of the query's class
    queries = torch.nonzero(positives > 0).flatten()
    names = metric_names(ks)
    if queries.numel() == 0:
        rank_zero_warn(
            f"Retrieval metrics: none of the {n} samples has another sample of its class, so no query has "
            "a correct answer; all retrieval metrics are set to 0."
        )
        return {name: torch.zeros((), device=device) for name in names}

    cut_offs = [min(v, n - 1) for v in ks]
    depth = max(max(cut_offs), int(positives.max()))  # <= n - 1, so the excluded self is never retrieved
    chunk = chunk_size or max(1, _CHUNK_ELEMENTS // n)
    ranks = torch.arange(1, depth + 1, device=work, dtype=torch.float64)
    sums = torch.zeros(len(names), dtype=torch.float64, device=work)
    for start in range(0, queries.numel(), chunk):
        q = queries[start : start + chunk]
        rows = torch.arange(q.numel(), device=work)
        same = labels[q, None] == labels[None, :]  # [c, N]
        key = pairwise_distances(x[q], x, distance).double()
        # Pessimistic ties: a same-class sample goes behind any other-class sample at the same distance.
        key = torch.where(same, torch.nextafter(key, torch.full_like(key, torch.inf)), key)
        key[rows, q] = torch.inf  # leave-one-out: the query itself
        nearest = torch.topk(key, depth, dim=1, largest=False, sorted=True).indices
        hits = same.gather(1, nearest)  # [c, depth]: hit_q(i)
        r = positives[q]
        relevant = hits & (ranks[None, :] <= r[:, None])  # hits among the first R_q
        precision = relevant.cumsum(dim=1) / ranks  # P_q(i) restricted to the first R_q
        chunk_sums = [hits[:, 0].sum()]
        chunk_sums += [hits[:, :v].any(dim=1).sum() for v in cut_offs]
        chunk_sums += [((precision * relevant).sum(dim=1) / r).sum(), (relevant.sum(dim=1) / r).sum()]
        sums += torch.stack([s.double() for s in chunk_sums])
    values = (sums / queries.numel()).float().to(device)
    return dict(zip(names, values.unbind(), strict=True))


class RetrievalMetrics(EmbeddingMetric):
    """Leave-one-out retrieval metrics over all embeddings seen since the last ``reset()``.

    ``update(embeddings [N, D], labels [N])`` stores detached copies (list states, ``cat``-synced,
    so under DDP ``compute()`` sees the embeddings of every rank); ``compute()`` returns the dict of
    :func:`retrieval_metrics`: ``precision_at_1``, ``recall_at_<k>`` for each ``k``, ``map_at_r`` and
    ``r_precision`` (float32 scalars). The values do not depend on the order of the samples, so they are
    the same for any split of the data across ranks and batches.

    ``compute()`` without any sample (on any process) returns zeros with a warning, like the case where
    no query has a positive. See :class:`EmbeddingMetric` for the input and state rules (sparse/integer
    inputs refused, ``set_dtype``, rejected batches, processes without samples).
    Memory: all embeddings are kept (``N x D`` floats); set ``compute_on_cpu=True`` to keep them on the
    CPU.

    Args:
        k: cut-off(s) of recall@k.
        distance: ``"cosine"``, ``"euclidean"`` or ``"sqeuclidean"``.
        chunk_size: queries per distance block in ``compute()``; ``None``: about ``2**22 / N``.
        kwargs: passed to :class:`torchmetrics.Metric` (``compute_on_cpu``, ``process_group``, ...).
    """

    higher_is_better = True

    def __init__(
        self,
        k: int | Sequence[int] = (1, 5),
        distance: Distance = "cosine",
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.k = check_ks(k)
        check_choice("distance", distance, DISTANCES)
        _check_chunk_size(chunk_size)
        self.distance = distance
        self.chunk_size = chunk_size

    def compute(self) -> dict[str, Tensor]:
        if not self.has_samples:
            self.warn_no_samples()
            return {name: torch.zeros((), device=self.device) for name in metric_names(self.k)}
        return retrieval_metrics(
            *self.samples(),
            k=self.k,
            distance=self.distance,
            chunk_size=self.chunk_size,
        )
