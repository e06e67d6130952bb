"""COREL: clustering-oriented representation learning with an attractive-repulsive loss.

Kenyon-Dean, Cianflone, Page-Caccia, Rabusseau, Cheung, Precup (2018), "Clustering-Oriented
Representation Learning with Attractive-Repulsive Loss" (arXiv:1812.07627). The softmax layer is replaced
by learnable class vectors ``w_1 .. w_C`` (``[C, D]``) and a similarity ``s(h, w)``; every embedding is
attracted to its own class vector and repelled from the others, so that the classes form clusters
under that similarity (cosine: directions; Gaussian: Euclidean balls).

For an embedding ``h_i`` with label ``y_i`` and the attraction weight ``lam`` (the paper's lambda):

    A_i = attraction to the own class vector w_{y_i}
    R_i = repulsion from the class vectors
    loss_i = 2 * (lam * A_i + (1 - lam) * R_i)                loss = mean_i loss_i

* Gaussian COREL: ``s(h, w) = -gamma * ||h - w||^2``, ``A_i = -s(h_i, w_{y_i}) = gamma ||h_i - w_{y_i}||^2``
  and ``R_i = log sum_c exp(s(h_i, w_c))`` (over all classes). With ``lam = 1/2`` the loss is exactly
  the cross-entropy of the logits ``-gamma ||h - w_c||^2``:
  ``-log(exp(-gamma ||h - w_y||^2) / sum_c exp(-gamma ||h - w_c||^2))``.
* Cosine COREL: ``s(h, w) = cos(h, w)``, ``A_i = 1 - cos(h_i, w_{y_i})`` and
  ``R_i = max(0, max_{c != y_i} cos(h_i, w_c))^2``: the squared similarity to the closest *other*
  class vector, and no repulsion once all the others are at 90 degrees or more. The loss lies in
  ``[0, 2]`` and is 0 exactly when every embedding points along its class vector and at least 90
  degrees away from all the others.

Where the formulas come from. The paper's full text was not available to us; its abstract names the
two variants, and the forms above are those of the authors' reference implementation
(github.com/kiankd/corel2019: ``corel/prediction_functions.py`` computes ``cos(h, w_c)`` and
``-gamma ||h - w_c||^2``; ``corel/loss_functions.py`` the attraction ``-s(h, w_y)``, the cosine
repulsion as the max over the row with the own class masked to 0, then squared (hence the floor at 0),
and the Gaussian repulsion as ``log sum_c exp``). Deliberate differences from that code:

* The cosine attraction is ``1 - cos`` instead of ``-cos``: a constant shift (same gradients) that
  makes the loss non-negative with 0 = perfect, like the project's other losses.
* ``lam`` is applied once (the reference applies it twice for the Gaussian variant, ``lam^2`` and
  ``(1 - lam)^2``, unless ``lam = 1/2``), and the factor 2 makes ``lam = 1/2`` the unweighted
  ``A + R`` (= plain cross-entropy for the Gaussian variant; the reference's ``lam = 1/2`` path
  averages over the ``N * C`` entries, i.e. cross-entropy / C). Overall scale is the term's ``weight``.
* The logsumexp is computed stably (the reference uses ``log(sum(exp(.)) + 1e-10)`` for ``lam != 1/2``).
* Class vectors are stored ``[C, D]`` (the reference stores ``[D, C]``), Xavier-normal initialised as
  there. The reference learns ``gamma`` (initialised to 0.5); here that is ``learn_gamma=True``, and a
  fixed ``gamma`` is the default.

The Gaussian loss is >= 0 for ``lam >= 1/2`` (``A_i >= 0`` and ``A_i + R_i`` is a cross-entropy); for
smaller ``lam`` the log-sum-exp, and so the loss, can be negative.

Numerics: everything runs in float32 (or float64) with autocast disabled, and the log-sum-exp is the
stable one. A zero embedding (or class vector) has no direction: its cosine to everything is 0, with a
zero gradient, as :func:`~silhouette_lightning.geometry.distances.safe_sqrt` does for distances (not NaN,
and not ``F.normalize``'s gradient of size 1/eps = 1e12).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.geometry.checks import check_choice, check_embeddings_and_labels, check_label_range
from silhouette_lightning.geometry.distances import as_compute_dtype, pairwise_distances
from silhouette_lightning.losses.reduction import REDUCTIONS, Reduction, reduce_anchors

CorelKind = Literal["cosine", "gaussian"]
COREL_KINDS: tuple[str, ...] = ("cosine", "gaussian")

# Rows with a norm at or below this have no direction (F.normalize's epsilon).
_NORM_EPS = 1e-12


def check_corel_options(
    *, kind: str, gamma: float | Tensor, lam: float, learn_gamma: bool = False, reduction: str = "mean"
) -> None:
    """The argument checks shared by :func:`corel_loss`, :class:`CorelLoss` and the COREL term."""
    check_choice("kind", kind, COREL_KINDS)
    check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(gamma, Tensor) and not (isinstance(gamma, int | float) and 0 < gamma < math.inf):
        raise ConfigError(f"gamma must be a finite number > 0, got {gamma!r}.")
    if not (isinstance(lam, int | float) and 0.0 <= lam <= 1.0):
        raise ConfigError(f"lam (the attraction weight) must lie in [0, 1], got {lam!r}.")
    if learn_gamma and kind != "gaussian":
        raise ConfigError("learn_gamma=True needs kind='gaussian' (the cosine variant has no gamma).")


def corel_similarities(
    embeddings: Tensor,
    class_vectors: Tensor,
    kind: CorelKind = "cosine",
    gamma: float | Tensor = 0.5,
) -> Tensor:
    """COREL similarities ``s(h_i, w_c)`` ``[N, C]`` of ``embeddings`` ``[N, D]`` to ``class_vectors``
    ``[C, D]``: ``cos(h, w)`` or ``-gamma ||h - w||^2``. Their argmax is COREL's class prediction.

    Computed in at least float32 with autocast disabled, whatever the input dtypes.
    """
    check_choice("kind", kind, COREL_KINDS)
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = as_compute_dtype(embeddings)
        w = as_compute_dtype(class_vectors)
        dtype = torch.promote_types(x.dtype, w.dtype)
        x, w = x.to(dtype), w.to(dtype)
        if kind == "cosine":
            return _unit_rows(x) @ _unit_rows(w).T
        if isinstance(gamma, Tensor):
            gamma = gamma.to(dtype)
        return -gamma * pairwise_distances(x, w, "sqeuclidean")


def _unit_rows(x: Tensor) -> Tensor:
    """Rows scaled to unit norm; rows of (numerically) zero norm become 0 with a zero gradient."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    # clamp first so the unused branch of `where` never divides by 0 (0 * inf = NaN in the backward).
    return torch.where(norm > _NORM_EPS, x / norm.clamp_min(_NORM_EPS), torch.zeros_like(x))


def corel_loss(
    embeddings: Tensor,
    labels: Tensor,
    class_vectors: Tensor,
    kind: CorelKind = "cosine",
    gamma: float | Tensor = 0.5,
    lam: float = 0.5,
    reduction: Reduction = "mean",
) -> Tensor:
    """COREL loss of ``embeddings`` ``[N, D]`` with ``labels`` ``[N]`` in ``[0, C)`` against
    ``class_vectors`` ``[C, D]`` (see the module docstring for the formulas).

    Args:
        kind: ``"cosine"`` (default) or ``"gaussian"``.
        gamma: Gaussian width, ``> 0`` (a float, or a 0-dim tensor when it is learned); unused by the
            cosine variant.
        lam: attraction weight in ``[0, 1]``; ``1 - lam`` weighs the repulsion. ``1/2`` = unweighted.
        reduction: ``"mean"`` over samples (default), ``"sum"``, or ``"none"`` (per sample, ``[N]``).

    An empty batch gives a 0 that is still connected to the graph.
    """
    check_corel_options(kind=kind, gamma=gamma, lam=lam, reduction=reduction)
    return _corel_loss(embeddings, labels, class_vectors, kind, gamma, lam, reduction)


def _corel_loss(
    embeddings: Tensor,
    labels: Tensor,
    class_vectors: Tensor,
    kind: CorelKind,
    gamma: float | Tensor,
    lam: float,
    reduction: Reduction,
) -> Tensor:
    """:func:`corel_loss` with checked options (the inputs are checked here: they change every call)."""
    check_embeddings_and_labels(embeddings, labels)
    if not isinstance(class_vectors, Tensor) or class_vectors.ndim != 2:
        raise ValueError(
            f"class_vectors must be a [C, D] tensor, got {getattr(class_vectors, 'shape', None)}."
        )
    num_classes, dim = class_vectors.shape
    if dim != embeddings.shape[1]:
        raise ValueError(
            f"class_vectors have dimension {dim} but embeddings have {embeddings.shape[1]} "
            f"(embeddings {tuple(embeddings.shape)}, class_vectors {tuple(class_vectors.shape)})."
        )
    if isinstance(gamma, Tensor) and gamma.numel() != 1:
        raise ValueError(f"gamma must be a number or a one-element tensor, got shape {tuple(gamma.shape)}.")
    check_label_range(
        labels,
        num_classes,
        what="COREL labels",
        hint="There is one class vector per class: check num_classes and that the labels are class indices.",
    )

    if isinstance(gamma, Tensor):
        gamma = gamma.reshape(())
    sims = corel_similarities(embeddings, class_vectors, kind, gamma)
    labels = labels.long()
    own = sims.gather(1, labels.unsqueeze(1)).squeeze(1)
    if kind == "gaussian":
        repulsion = torch.logsumexp(sims, dim=1)
    else:
        # The own class is masked to 0 before the max (as in the reference code): the repulsion is the
        # closest other class vector's similarity, floored at 0, squared. No inf sentinels needed.
        own_mask = nn.functional.one_hot(labels, num_classes).bool()
        repulsion = sims.masked_fill(own_mask, 0.0).amax(dim=1).square()
    # Attraction: 1 - cos (a constant shift of the reference's -cos, so the loss is >= 0) or gamma d^2.
    attraction = 1.0 - own if kind == "cosine" else -own
    per_sample = 2.0 * (lam * attraction + (1.0 - lam) * repulsion)
    # Every sample counts (a graph-connected 0 for an empty batch).
    return reduce_anchors(per_sample, torch.ones_like(labels, dtype=torch.bool), reduction, distributed=False)


class CorelLoss(nn.Module):
    """COREL loss with its own learnable class vectors (an ``nn.Parameter`` ``[C, D]``).

    Args:
        num_classes: number of classes ``C`` (>= 2); labels must lie in ``[0, C)``.
        embedding_dim: width ``D`` of the embeddings.
        kind: ``"cosine"`` (default) or ``"gaussian"``.
        gamma: Gaussian width ``> 0`` (the reference implementation starts from 0.5).
        lam: attraction weight in ``[0, 1]`` (1/2: attraction and repulsion unweighted).
        learn_gamma: learn ``gamma`` (kept positive as ``exp(log_gamma)``), as the reference code does.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    ``forward(embeddings [N, D], labels [N])``; :meth:`similarities` gives the ``[N, C]`` scores whose
    argmax is the predicted class.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        kind: CorelKind = "cosine",
        gamma: float = 0.5,
        lam: float = 0.5,
        learn_gamma: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_corel_options(kind=kind, gamma=gamma, lam=lam, learn_gamma=learn_gamma, reduction=reduction)
        if num_classes < 2:
            raise ConfigError(f"COREL needs num_classes >= 2, got {num_classes}.")
        if embedding_dim < 1:
            raise ConfigError(f"COREL needs embedding_dim >= 1, got {embedding_dim}.")
        self.num_classes = int(num_classes)
        self.embedding_dim = int(embedding_dim)
        self.kind = kind
        self.lam = float(lam)
        self.reduction = reduction
        self.learn_gamma = learn_gamma
        self.class_vectors = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        if learn_gamma:
            self.log_gamma = nn.Parameter(torch.tensor(math.log(gamma)))
        else:
            self._gamma = float(gamma)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier-normal as in the reference code: std sqrt(2 / (C + D)), random directions for the cosine
        # variant and class vectors near the origin, where fresh embeddings also start, for the Gaussian.
        nn.init.xavier_normal_(self.class_vectors)

    @property
    def gamma(self) -> float | Tensor:
        return self.log_gamma.exp() if self.learn_gamma else self._gamma

    def similarities(self, embeddings: Tensor) -> Tensor:
        return corel_similarities(embeddings, self.class_vectors, self.kind, self.gamma)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        # The options were checked in __init__.
        return _corel_loss(
            embeddings,
            labels,
            self.class_vectors,
            kind=self.kind,
            gamma=self.gamma,
            lam=self.lam,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        gamma = "learned" if self.learn_gamma else self._gamma
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, kind={self.kind!r}, "
            f"gamma={gamma}, lam={self.lam}, reduction={self.reduction!r}"
        )
