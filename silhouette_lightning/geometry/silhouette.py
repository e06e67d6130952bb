"""The silhouette from per-class distances: ``a_i``, ``b_i`` and ``s_i``, for the loss and the exact metric.

For an anchor ``i`` of class ``y_i`` and the classes ``c`` present among the references (``n_c`` of them,
``m_i`` the members of the anchor's own class other than the anchor itself):

    delta(i, c) = sums[i, c] / n_c                 mean distance to class c (right for every c != y_i)
    a_i         = sums[i, y_i] / m_i               mean distance to the anchor's own class
    b_i         = min over c != y_i of delta(i, c)  nearest competing class (the loss may use a soft
                                                   minimum instead: ``minimum``)
    s_i         = (b_i - a_i) / max(a_i, b_i)      in [-1, 1]; 0 / 0 (a_i = b_i = 0) is 0

``s_i`` is defined (``valid``) when ``m_i >= 1`` and another class is present; elsewhere ``s``, ``a`` and
``b`` are 0 (scikit-learn's convention for a sample alone in its class). ``sums`` come from
:mod:`~silhouette_lightning.geometry.class_sums` (or, for the loss's centroid variant, ``delta`` directly
from the distances to the class centroids). Everything is ``[N, C]`` or ``[N]``: nothing here is
quadratic in the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class SilhouetteTerms(NamedTuple):
    """Per-anchor pieces of the silhouette, all ``[N]``.

    ``valid`` is True where the anchor's class has another member among the references and at least
    one other class is present; ``s``, ``a`` and ``b`` are 0 where it is False.
    """

    s: Tensor
    a: Tensor
    b: Tensor
    valid: Tensor


def mean_class_distances(
    sums: Tensor, anchor_class: Tensor, own_members: Tensor, class_counts: Tensor, out: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(delta [N, C], a [N])`` from the per-class distance sums ``[N, C]``, the anchors' classes ``[N]``
    in ``0..C-1``, their own-class members ``m_i`` ``[N]`` and the references per class ``n_c`` ``[C]``.

    ``delta``'s own-class column divides by ``n_{y_i}``, which counts the anchor itself when it is among
    the references; ``a`` divides by ``m_i``. Empty classes and ``m_i = 0`` divide by 1 (their sums are 0).
    ``out=sums`` writes ``delta`` over the sums (the exact metric's scratch buffer; not for autograd).
    """
    a = sums.gather(1, anchor_class.unsqueeze(1)).squeeze(1) / own_members.clamp_min(1).to(sums.dtype)
    return torch.div(sums, class_counts.clamp_min(1).to(sums.dtype), out=out), a


def masked_min(values: Tensor, mask: Tensor) -> Tensor:
    """Minimum of ``values`` ``[N, C]`` along the last axis over the entries where ``mask`` is True: the
    classical silhouette's ``b_i``. Rows without any True entry give 0 (callers mark them invalid).

    Masked entries are excluded with the dtype's largest finite value rather than ``inf``, so that a
    fully masked row stays finite (and so does its gradient).
    """
    result = values.masked_fill(~mask, torch.finfo(values.dtype).max).amin(dim=-1)
    return torch.where(mask.any(dim=-1), result, torch.zeros_like(result))


def silhouette_from_class_distances(
    delta: Tensor,
    a: Tensor,
    anchor_class: Tensor,
    own_members: Tensor,
    class_counts: Tensor,
    minimum: Callable[[Tensor, Tensor], Tensor] = masked_min,
    eps: float = 0.0,
) -> SilhouetteTerms:
    """``s``, ``a``, ``b`` and ``valid`` ``[N]`` from the anchor-to-class distances ``delta`` ``[N, C]``
    and the own-class distances ``a`` ``[N]`` (see the module docstring).

    Args:
        anchor_class, own_members, class_counts: as in :func:`mean_class_distances`; a class with
            ``n_c = 0`` (absent from the references) never competes for ``b_i``.
        minimum: ``b = minimum(delta, competing)`` over the ``[N, C]`` mask of the competing classes; the
            hard minimum (:func:`masked_min`) by default, a soft minimum for the loss.
        eps: floor of ``max(a_i, b_i)``, which turns ``0 / 0`` into 0 and keeps the gradient finite for
            the loss. The exact metric passes the dtype's smallest normal number: every ratio of real
            distances is then exact.
    """
    num_classes = class_counts.shape[0]
    competing = (class_counts > 0).unsqueeze(0) & (
        torch.arange(num_classes, device=delta.device).unsqueeze(0) != anchor_class.unsqueeze(1)
    )  # [N, C]
    b = minimum(delta, competing)
    valid = (own_members > 0) & competing.any(dim=1)
    zero = torch.zeros_like(a)
    return SilhouetteTerms(
        s=silhouette_ratio(a, b, valid, eps),
        a=torch.where(valid, a, zero),
        b=torch.where(valid, b, zero),
        valid=valid,
    )


def silhouette_ratio(a: Tensor, b: Tensor, valid: Tensor, eps: float) -> Tensor:
    """``s = (b - a) / max(a, b, eps)`` ``[N]`` where ``valid``, else 0: the one formula of ``s_i``."""
    s = (b - a) / torch.maximum(a, b).clamp_min(eps)
    return torch.where(valid, s, torch.zeros_like(s))


def exact_silhouette_from_sums(sums: Tensor, classes: Tensor, num_classes: int) -> Tensor:
    """Rousseeuw's ``s`` ``[N]`` of the samples whose per-class distance sums over each other are ``sums``
    ``[N, C]`` (overwritten; ``d(i, i)`` included as 0; ``classes`` ``[N]`` in ``0..C-1``, every class
    present): the hard minimum, an exact ratio, and 0 where it is undefined or not finite (scikit-learn's
    conventions: alone in its class, ``0 / 0``, and here also distances that overflowed)."""
    class_counts = torch.bincount(classes, minlength=num_classes)
    own_members = class_counts[classes] - 1  # every sample is among the references: not itself
    # In place over the caller's scratch sums, and b without an [N, C] mask (every class is present here,
    # so the competitors are all classes but the own one): on the CPU each fresh [N, C] buffer costs more
    # than the arithmetic on it, and the exact metric is timed in benchmarks/metrics.py.
    delta, a = mean_class_distances(sums, classes, own_members, class_counts, out=sums)
    b = delta.scatter_(1, classes.unsqueeze(1), torch.inf).amin(dim=1)
    s = silhouette_ratio(a, b, own_members > 0, torch.finfo(sums.dtype).tiny)
    return torch.where(torch.isfinite(s), s, torch.zeros_like(s))
