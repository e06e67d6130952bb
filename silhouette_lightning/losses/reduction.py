"""How the batch-level losses turn per-anchor values into the loss, locally and on the global batch."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from silhouette_lightning.distributed import valid_anchor_count

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def reduce_anchors(per_anchor: Tensor, valid: Tensor, reduction: Reduction, distributed: bool) -> Tensor:
    """``per_anchor`` ``[N]`` (0 at invalid anchors) -> the loss.

    ``"mean"`` is over the valid anchors (of the global batch when ``distributed``, in DDP's averaging
    convention), ``"sum"`` over them, ``"none"`` returns ``per_anchor``. With no valid anchor every entry is
    a masked 0, so the result is a graph-connected 0, never a constant or NaN.
    """
    if reduction == "none":
        return per_anchor
    total = per_anchor.sum()
    if reduction == "mean":
        total = total / valid_anchor_count(valid, distributed).clamp_min(1)
    return total
