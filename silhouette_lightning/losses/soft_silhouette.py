"""The Soft Silhouette: a differentiable silhouette coefficient over a batch, and the loss built on it.

For an anchor ``i`` with label ``y_i`` and each class ``c`` present among the references,

    delta(i, c) = mean of d(i, j) over references j != i with y_j = c
    a_i = delta(i, y_i)                            (own class; needs another member)
    b_i = min over c != y_i of delta(i, c)         (nearest competing class: the hard minimum by
                                                    default; optionally a soft minimum, softmax or
                                                    logsumexp, with a temperature relative to the
                                                    mean of those distances)
    s_i = (b_i - a_i) / max(a_i, b_i)              (in [-1, 1]; 1 = perfectly clustered)

and the loss is the mean of ``(1 - s_i) / 2`` over valid anchors, in ``[0, 1]``. With the default
``soft_min="hard"`` ``s_i`` is exactly Rousseeuw's silhouette (scikit-learn's ``silhouette_samples``).

``variant="centroid"`` is the simplified silhouette: ``delta(i, c)`` is the distance from ``i`` to the
centroid (mean) of class ``c``'s references, the anchor included in its own class's centroid.

Cost: the pairwise variant builds one ``[N, M]`` distance matrix and scatters it into ``[N, C]`` class
sums, O(N*M*D) time and O(N*M) memory, never an ``[N, M, D]`` tensor; the centroid variant builds
``[C, D]`` centroids and an ``[N, C]`` matrix, O((N + M)*D + N*C*D) time and no ``[N, M]`` matrix.
Everything runs in at least float32, also under autocast.

The distances, the per-class sums and ``a``/``b``/``s`` from them are the geometry floor that the exact
metric shares (:mod:`silhouette_lightning.geometry`); the references, checks and reduction are
:class:`~silhouette_lightning.losses.base.BatchLoss`'s. This file holds the choices of the loss: the
soft minimum, the centroid variant and ``(1 - s_i) / 2``.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from silhouette_lightning.geometry.checks import check_choice, check_temperature
from silhouette_lightning.geometry.class_sums import class_distance_sums
from silhouette_lightning.geometry.distances import DISTANCES, Distance, as_compute_dtype, pairwise_distances
from silhouette_lightning.geometry.silhouette import (
    SilhouetteTerms,
    mean_class_distances,
    silhouette_from_class_distances,
)
from silhouette_lightning.losses.base import BatchLoss, resolve_references
from silhouette_lightning.losses.reduction import Reduction
from silhouette_lightning.losses.soft_min import (
    SOFT_MINS,
    TEMPERATURE_SCALES,
    SoftMin,
    TemperatureScale,
    masked_soft_min,
)

Variant = Literal["pairwise", "centroid"]
VARIANTS: tuple[str, ...] = ("pairwise", "centroid")

# The centroid variant processes anchors in chunks of about this many [chunk, C] entries (16 MB in float32).
_CENTROID_CHUNK_ELEMENTS = 2**22

# Guards 0/0 in s_i when a_i = b_i = 0 (all points identical): s_i is then 0, the "undecided" value.
_RATIO_EPS = 1e-12


def silhouette_terms(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    distance: Distance = "euclidean",
    soft_min: SoftMin = "hard",
    temperature: float = 0.1,
    variant: Variant = "pairwise",
    self_index: Tensor | None = None,
    temperature_scale: TemperatureScale = "relative",
) -> SilhouetteTerms:
    """Differentiable ``s_i``, ``a_i``, ``b_i`` and the validity mask for every anchor.

    Args:
        embeddings: anchors ``[N, D]``.
        labels: anchor labels ``[N]``, any integers (they need not be contiguous).
        ref_embeddings: references ``[M, D]``; default: the anchors themselves (self pairs excluded).
        ref_labels: reference labels ``[M]``; required with ``ref_embeddings``.
        distance, soft_min, temperature, variant, temperature_scale: see :class:`SoftSilhouetteLoss`.
        self_index: ``[N]`` positions of the anchors inside the references, for references that contain
            the anchors (the distributed case: local anchors inside the gathered global batch). Those
            pairs are excluded. Default: the diagonal when no references are given, none otherwise.
    """
    check_silhouette_options(distance, soft_min, temperature, variant, temperature_scale)
    ref_embeddings, ref_labels, self_index = resolve_references(
        embeddings, labels, ref_embeddings, ref_labels, self_index
    )
    return _silhouette_terms(
        embeddings,
        labels,
        ref_embeddings,
        ref_labels,
        self_index,
        distance=distance,
        soft_min=soft_min,
        temperature=temperature,
        variant=variant,
        temperature_scale=temperature_scale,
    )


def check_silhouette_options(
    distance: str, soft_min: str, temperature: float, variant: str, temperature_scale: str
) -> None:
    """The option checks of :func:`silhouette_terms` and :class:`SoftSilhouetteLoss` (``ConfigError``)."""
    check_choice("variant", variant, VARIANTS)
    check_choice("temperature_scale", temperature_scale, TEMPERATURE_SCALES)
    check_choice("distance", distance, DISTANCES)
    check_choice("soft_min", soft_min, SOFT_MINS)
    check_temperature(temperature)


def _silhouette_terms(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor,
    ref_labels: Tensor,
    self_index: Tensor | None,
    *,
    distance: Distance,
    soft_min: SoftMin,
    temperature: float,
    variant: Variant,
    temperature_scale: TemperatureScale,
) -> SilhouetteTerms:
    """:func:`silhouette_terms` on checked inputs and options."""
    # Distances and ratios in float32 (or float64) even under fp16/bf16 autocast: the expanded squared
    # distance overflows and cancels in half precision.
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = as_compute_dtype(embeddings)
        # Without references the anchors are the references: one tensor (normalised once for cosine).
        ref = x if ref_embeddings is embeddings else as_compute_dtype(ref_embeddings).to(x.dtype)

        # Compact the labels to 0..C-1 over the classes present, so sparse label values cost nothing.
        classes, inverse = torch.unique(torch.cat([labels, ref_labels]), return_inverse=True)
        num_classes = classes.shape[0]
        if num_classes == 0:
            # No anchors and no references (an empty batch): no valid anchor. Empty terms that still
            # depend on both inputs, so the loss is a graph-connected 0 and a distributed gather's
            # backward still runs on this process.
            empty = x.sum(dim=1) * 0.0 + ref.sum() * 0.0
            return SilhouetteTerms(s=empty, a=empty, b=empty, valid=labels.new_zeros(0, dtype=torch.bool))
        anchor_class, ref_class = inverse[: labels.shape[0]], inverse[labels.shape[0] :]
        class_counts = torch.bincount(ref_class, minlength=num_classes)  # [C]
        # Members of the anchor's own class among the references, the anchor itself not counted.
        own_members = class_counts[anchor_class] - (0 if self_index is None else 1)  # [N]
        # b_i: the chosen (soft) minimum over the competing classes.
        minimum = partial(
            masked_soft_min, soft_min=soft_min, temperature=temperature, temperature_scale=temperature_scale
        )
        terms = partial(
            silhouette_from_class_distances, class_counts=class_counts, minimum=minimum, eps=_RATIO_EPS
        )

        if variant == "pairwise":
            if distance == "cosine":
                unit = nn.functional.normalize(x, dim=1)
                x, ref = unit, unit if ref is x else nn.functional.normalize(ref, dim=1)
            # Sum of distances from anchor i to the references of class c: [N, C], one fused O(N*M) step.
            sums = class_distance_sums(x, ref, ref_class, num_classes, distance, self_index)
            delta, a = mean_class_distances(sums, anchor_class, own_members, class_counts)
            return terms(delta, a, anchor_class, own_members)

        # The simplified silhouette: distances to class centroids, O(N*C*D), no [N, M] matrix.
        centroid_sums = ref.new_zeros(num_classes, ref.shape[1]).index_add(0, ref_class, ref)
        centroids = centroid_sums / class_counts.clamp_min(1).to(x.dtype).unsqueeze(1)

        def centroid_terms(rows: slice) -> SilhouetteTerms:
            delta = pairwise_distances(x[rows], centroids, distance)  # [n, C]
            a = delta.gather(1, anchor_class[rows].unsqueeze(1)).squeeze(1)
            return terms(delta, a, anchor_class[rows], own_members[rows])

        # Anchors are independent given the centroids: for very large batches, process them in chunks
        # and recompute each chunk's [n, C] temporaries in backward, so memory stays O(chunk * C).
        chunk = max(1, _CENTROID_CHUNK_ELEMENTS // num_classes)
        if x.shape[0] <= chunk:
            return centroid_terms(slice(None))
        run = centroid_terms
        if torch.is_grad_enabled():
            run = partial(checkpoint, centroid_terms, use_reentrant=False)
        parts = [run(slice(start, start + chunk)) for start in range(0, x.shape[0], chunk)]
        return SilhouetteTerms(*(torch.cat(field) for field in zip(*parts, strict=True)))


def silhouette_samples(
    embeddings: Tensor,
    labels: Tensor,
    distance: Distance = "euclidean",
    soft_min: SoftMin = "hard",
    temperature: float = 0.1,
    temperature_scale: TemperatureScale = "relative",
) -> Tensor:
    """Differentiable per-sample silhouette ``s_i`` ``[N]`` of ``embeddings`` ``[N, D]`` under ``labels``.

    Follows scikit-learn's convention: a sample whose class has no other member gets 0 (as does every
    sample when fewer than two classes are present, where scikit-learn raises instead). With the default
    ``soft_min="hard"`` this equals ``sklearn.metrics.silhouette_samples(X, labels, metric=distance)``.
    No normalisation is applied (the loss normalises; this function measures the points as given).
    """
    return silhouette_terms(
        embeddings,
        labels,
        distance=distance,
        soft_min=soft_min,
        temperature=temperature,
        temperature_scale=temperature_scale,
    ).s


class SoftSilhouetteLoss(BatchLoss):
    """Soft Silhouette loss: mean of ``(1 - s_i) / 2`` over valid anchors, in ``[0, 1]`` (0 = perfect).

    Args:
        distance: ``"euclidean"`` (default), ``"sqeuclidean"`` or ``"cosine"`` (``1 - cos``).
        soft_min: how ``b_i`` takes the minimum over the other classes. ``"hard"`` (default): the plain
            minimum, the classical silhouette's ``b_i``; scale-invariant, not biased by the number of
            classes, and (pairwise variant) equal to scikit-learn's silhouette of the batch.
            ``"softmax"``: the ``softmax(-delta/tau_i)``-weighted mean of the class distances. **It is
            gamed when a batch holds many classes**: the nearest class dominates the softmax only with a
            lead of about ``tau_i * log C``, and training learns an embedding without that lead. On
            Omniglot (96 training classes, batch 128, relative temperature 0.1) the nearest class kept
            ~4 % of the softmax weight, ``b_i`` sat near the mean other-class distance, and the in-batch
            soft silhouette reached 0.64 while the exact silhouette of the same points was 0.05 (CE's
            untrained head: 0.16); on unseen classes the embedding silhouette was 0.06 (3 seeds) against
            0.24 with ``"hard"`` (docs/results.md, recipe study). With 10 classes (CIFAR-10, digits) it is
            not gamed and was slightly better (CIFAR-10: 0.8 points of top-1). Use it only with few classes
            per batch (about 10); the relative temperature removes the scale shortcut, not this one.
            ``"logsumexp"``:
            ``-tau_i log sum_c exp(-delta/tau_i)``, a lower bound of the minimum.
        temperature: of ``"softmax"`` and ``"logsumexp"`` (ignored by ``"hard"``; > 0, 0 means hard),
            relative to the anchor's distances by default (see ``temperature_scale``): 0.1 makes the soft
            minimum weigh a class that is 10 % of the mean distance farther than another by ``e^-1``
            relative to it.
        temperature_scale: of ``"softmax"`` and ``"logsumexp"`` (ignored by ``"hard"``). ``"relative"``
            (default): the soft minimum of anchor ``i`` uses the temperature
            ``tau_i = temperature * mean_{c != y_i} delta(i, c)``, so multiplying every
            distance by ``k > 0`` leaves every ``s_i`` unchanged (scale-invariant, like the exact
            silhouette) and training cannot raise the loss's silhouette by shrinking the embedding.
            ``"absolute"``: ``tau_i = temperature`` as it is. **It rewards shrinking the embedding**: in a
            small region the softmax weights turn nearly uniform, ``b_i`` drifts from the *nearest* to the
            *mean* distance to the other classes, and ``s_i`` rises although the classes overlap. Training
            finds that shortcut: on CIFAR-10 every CE + Silhouette run with an absolute temperature
            collapsed its embedding to a spread of about 0.02 (L2-normalised; CE's: 0.93) and a
            precision@1 of 0.12 against CE's 0.47 (docs/results.md). Use it only to reproduce that study
            or the original definition.
        normalize: L2-normalise the embeddings (and references) first.
        reduction: ``"mean"`` over valid anchors (default), ``"sum"`` over valid anchors, or ``"none"``:
            the per-anchor loss ``[N]``, with 0 for invalid anchors (use :func:`silhouette_terms` for the
            validity mask).
        variant: ``"pairwise"`` (default; the silhouette) or ``"centroid"`` (the simplified silhouette,
            distances to class centroids: O(N*C*D) instead of O(N^2*D), for very large batches).
        gather_distributed: when torch.distributed is initialised with more than one process (DDP) and no
            references are given, compare the local anchors with the embeddings gathered from all
            processes, with gradient, so the loss and its gradient are those of the global batch.
        memory_size: keep the last ``memory_size`` embeddings and labels the loss consumed (after the
            normalisation, detached, in at least float32) in a FIFO :class:`CrossBatchMemory` and use
            them as extra references in training mode: the anchors (the batch) are compared with the
            batch and the memory, which equals this loss with ``references = concat(batch, memory)``
            and the anchors' self pairs excluded. The batch (under DDP the gathered global batch, so
            every process holds the same queue) is enqueued after the loss is computed. In eval mode
            the memory is neither used nor updated, so validation losses do not depend on it.
            0 (default) = no memory.

    An anchor is valid when its class has another member and at least two classes are present. A batch
    without valid anchors (one class, all singletons) gives a loss of 0 that is still connected to the
    graph, so ``backward()`` works and distributed ranks stay in step.
    """

    def __init__(
        self,
        distance: Distance = "euclidean",
        soft_min: SoftMin = "hard",
        temperature: float = 0.1,
        normalize: bool = True,
        reduction: Reduction = "mean",
        variant: Variant = "pairwise",
        gather_distributed: bool = True,
        temperature_scale: TemperatureScale = "relative",
        memory_size: int = 0,
    ) -> None:
        check_silhouette_options(distance, soft_min, temperature, variant, temperature_scale)
        super().__init__(normalize, reduction, gather_distributed, memory_size)
        self.distance = distance
        self.soft_min = soft_min
        self.temperature = float(temperature)
        self.temperature_scale = temperature_scale
        self.variant = variant

    def extra_repr(self) -> str:
        return (
            f"distance={self.distance!r}, soft_min={self.soft_min!r}, temperature={self.temperature}, "
            f"temperature_scale={self.temperature_scale!r}, "
            f"normalize={self.normalize}, variant={self.variant!r}, reduction={self.reduction!r}"
        )

    def per_anchor(
        self, embeddings: Tensor, labels: Tensor, refs: Tensor, ref_labels: Tensor, self_index: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(1 - s_i) / 2`` and the validity mask; see :class:`~silhouette_lightning.losses.base.BatchLoss`
        for the references, the checks and the reduction."""
        terms = _silhouette_terms(
            embeddings,
            labels,
            refs,
            ref_labels,
            self_index,
            distance=self.distance,
            soft_min=self.soft_min,
            temperature=self.temperature,
            variant=self.variant,
            temperature_scale=self.temperature_scale,
        )
        return torch.where(terms.valid, (1.0 - terms.s) / 2.0, torch.zeros_like(terms.s)), terms.valid
