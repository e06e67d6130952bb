"""Soft minimum over a masked set of values (the ``b_i`` of the silhouette)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from silhouette_lightning.geometry.silhouette import masked_min

SoftMin = Literal["softmax", "logsumexp", "hard"]
SOFT_MINS: tuple[str, ...] = ("softmax", "logsumexp", "hard")
TemperatureScale = Literal["absolute", "relative"]
TEMPERATURE_SCALES: tuple[str, ...] = ("absolute", "relative")

# Floor of a row's mean value when it scales the temperature (all-zero rows stay finite).
_SCALE_FLOOR = 1e-12


def masked_soft_min(
    values: Tensor,
    mask: Tensor,
    soft_min: SoftMin,
    temperature: float,
    temperature_scale: TemperatureScale = "relative",
) -> Tensor:
    """Soft minimum of ``values`` ``[N, C]`` along the last axis over the entries where ``mask`` is True.

    * ``"hard"`` (or ``temperature == 0``): the plain minimum, the classical silhouette's ``b_i``
      (:func:`~silhouette_lightning.geometry.silhouette.masked_min`, which the exact metric uses); the
      losses' default. It is scale-invariant and not biased by the number of classes.
    * ``"softmax"``: ``sum_c w_c v_c`` with ``w = softmax(-v / temperature)``; between the minimum and
      the mean, tending to the minimum as ``temperature -> 0``. With many values per row it drifts
      towards the mean: the nearest value dominates only with a lead of about ``temperature * log C``,
      and training can arrange exactly that (see :class:`~silhouette_lightning.losses.SoftSilhouetteLoss`).
      Safe only with few classes per batch (about 10).
    * ``"logsumexp"``: ``-temperature * log sum_c exp(-v_c / temperature)``, clamped at 0; a lower
      bound of the minimum that tends to it as ``temperature -> 0``. The clamp keeps it a valid
      distance: unclamped it goes negative once the nearest value is below ``temperature * log C``,
      which would push the silhouette below -1. (Clamped entries pass no gradient: with many classes,
      prefer a small temperature or ``"hard"``.)

    ``temperature`` and ``temperature_scale`` apply to ``"softmax"`` and ``"logsumexp"`` only.
    ``temperature_scale="relative"`` (default) uses ``temperature * mean(row)`` (the mean over the row's
    True entries) as the temperature: the soft minimum then scales with the values (``f(k v) = k f(v)``
    for every ``k > 0``), so a ratio built on it, such as the silhouette, does not change when all
    distances are multiplied by ``k``. ``"absolute"`` uses ``temperature`` as it is: shrinking every
    distance then moves the softmax weights towards uniform and the soft minimum from the nearest value
    towards the mean, so a loss on the ratio gains by collapsing the embedding, which training does
    (measured on CIFAR-10, docs/results.md). The relative temperature removes that scale shortcut, not
    the many-class one above.

    Rows without any True entry return 0 (finite, with a finite gradient); callers mark them invalid.
    Masked entries are excluded with the dtype's most negative finite value rather than ``-inf``, so that
    a fully masked row stays finite.
    """
    if soft_min == "hard" or temperature == 0:
        return masked_min(values, mask)
    scale: Tensor | float = temperature
    if temperature_scale == "relative":
        row_mean = values.masked_fill(~mask, 0.0).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1)
        scale = temperature * row_mean.clamp_min(_SCALE_FLOOR).unsqueeze(-1)  # [N, 1]
    logits = (-values / scale).masked_fill(~mask, torch.finfo(values.dtype).min)
    if soft_min == "softmax":
        result = (torch.softmax(logits, dim=-1) * values.masked_fill(~mask, 0.0)).sum(dim=-1)
    else:
        # A fully masked row gives ~finfo.max here; it is replaced below.
        factor = scale.squeeze(-1) if isinstance(scale, Tensor) else scale
        result = (-factor * torch.logsumexp(logits, dim=-1)).clamp_min(0.0)
    return torch.where(mask.any(dim=-1), result, torch.zeros_like(result))
