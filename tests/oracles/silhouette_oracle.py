"""Naive, loop-based reference implementation of the Soft Silhouette (README, "The loss").

Written from the specification only: it deliberately shares no code with
``silhouette_lightning.losses``. Every quantity is computed one sample / one class at a time with
plain Python arithmetic. By default the scalars are Python floats (float64, ``math`` functions); passing
``ops=TORCH_OPS`` and 0-dim float64 tensors makes the very same loops differentiable with autograd, which
gives an independent gradient oracle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import torch

FLOAT_OPS = SimpleNamespace(sqrt=math.sqrt, exp=math.exp, log=math.log)
TORCH_OPS = SimpleNamespace(sqrt=torch.sqrt, exp=torch.exp, log=torch.log)


def to_rows(x) -> list[list[float]]:
    """A ``[N, D]`` tensor / array / nested list as a list of lists of Python floats."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().tolist()
    return [[float(v) for v in row] for row in x]


def to_labels(y) -> list[int]:
    if isinstance(y, torch.Tensor):
        y = y.tolist()
    return [int(v) for v in y]


def distance(u: Sequence, v: Sequence, metric: str, ops=FLOAT_OPS):
    if metric in ("euclidean", "sqeuclidean"):
        sq = 0.0
        for ui, vi in zip(u, v, strict=True):
            sq = sq + (ui - vi) * (ui - vi)
        return ops.sqrt(sq) if metric == "euclidean" else sq
    if metric == "cosine":
        dot = uu = vv = 0.0
        for ui, vi in zip(u, v, strict=True):
            dot = dot + ui * vi
            uu = uu + ui * ui
            vv = vv + vi * vi
        return 1.0 - dot / (ops.sqrt(uu) * ops.sqrt(vv))
    raise ValueError(metric)


def soft_min(values: Sequence, kind: str, temperature: float, ops=FLOAT_OPS):
    """Soft minimum of a non-empty list of scalars."""
    lo = values[0]
    for v in values[1:]:
        if v < lo:
            lo = v
    if kind == "hard" or temperature == 0:
        return lo
    # Shift by the minimum for stability; it cancels exactly in both formulas.
    weights = [ops.exp(-(v - lo) / temperature) for v in values]
    total = 0.0
    for w in weights:
        total = total + w
    if kind == "softmax":
        out = 0.0
        for w, v in zip(weights, values, strict=True):
            out = out + (w / total) * v
        return out
    if kind == "logsumexp":
        # Clamped at 0 (a distance), per the loss's definition: unclamped it can go negative.
        value = lo - temperature * ops.log(total)
        return value if value > 0 else value * 0.0
    raise ValueError(kind)


def normalize_rows(x: Sequence[Sequence], ops=FLOAT_OPS) -> list[list]:
    out = []
    for row in x:
        sq = 0.0
        for v in row:
            sq = sq + v * v
        norm = ops.sqrt(sq)
        out.append([v / norm for v in row])
    return out


def silhouette_terms(
    x: Sequence[Sequence],
    y: Sequence[int],
    ref_x: Sequence[Sequence] | None = None,
    ref_y: Sequence[int] | None = None,
    *,
    metric: str,
    kind: str,
    temperature: float,
    exclude: Sequence[int] | None = None,
    ops=FLOAT_OPS,
    temperature_scale: str = "relative",
) -> list[tuple]:
    """Per-anchor ``(s, a, b, valid)``; ``s = a = b = 0`` for invalid anchors.

    ``temperature_scale="relative"`` (the loss's default): the soft minimum's temperature is
    ``temperature`` times the mean of the anchor's distances to the other classes; ``"absolute"``: it is
    ``temperature``.

    Without references, the anchors are the references and each anchor excludes itself. With references,
    nothing is excluded unless ``exclude[i]`` names the position of anchor ``i`` among the references.
    """
    if ref_x is None:
        ref_x, ref_y = x, y
        exclude = list(range(len(x)))
    out = []
    for i, xi in enumerate(x):
        per_class: dict[int, list] = {}
        for j, xj in enumerate(ref_x):
            if exclude is not None and exclude[i] == j:
                continue
            per_class.setdefault(ref_y[j], []).append(distance(xi, xj, metric, ops))
        delta = {}
        for c, ds in per_class.items():
            total = 0.0
            for d in ds:
                total = total + d
            delta[c] = total / len(ds)
        other = [delta[c] for c in sorted(delta) if c != y[i]]
        if y[i] not in delta or not other:
            out.append((0.0, 0.0, 0.0, False))
            continue
        a = delta[y[i]]
        t = temperature
        if temperature_scale == "relative":
            total = 0.0
            for v in other:
                total = total + v
            t = temperature * (total / len(other))
        b = soft_min(other, kind, t, ops)
        big = a if a > b else b
        s = 0.0 * (b - a) if big == 0 else (b - a) / big
        out.append((s, a, b, True))
    return out


def silhouette_samples(
    x, y, *, metric: str, kind: str, temperature: float, ops=FLOAT_OPS, temperature_scale: str = "relative"
) -> list:
    terms = silhouette_terms(
        x, y, metric=metric, kind=kind, temperature=temperature, ops=ops, temperature_scale=temperature_scale
    )
    return [t[0] for t in terms]


def loss(
    x,
    y,
    ref_x=None,
    ref_y=None,
    *,
    metric: str,
    kind: str,
    temperature: float,
    normalize: bool,
    reduction: str,
    ops=FLOAT_OPS,
    temperature_scale: str = "relative",
):
    """``"mean"`` / ``"sum"`` of ``(1 - s_i) / 2`` over valid anchors (0 if none); a list for ``"none"``."""
    if normalize:
        x = normalize_rows(x, ops)
        if ref_x is not None:
            ref_x = normalize_rows(ref_x, ops)
    terms = silhouette_terms(
        x,
        y,
        ref_x,
        ref_y,
        metric=metric,
        kind=kind,
        temperature=temperature,
        ops=ops,
        temperature_scale=temperature_scale,
    )
    per_anchor = [(1.0 - s) / 2.0 if valid else 0.0 for s, _, _, valid in terms]
    if reduction == "none":
        return per_anchor
    total = 0.0
    for v in per_anchor:
        total = total + v
    if reduction == "sum":
        return total
    n_valid = sum(1 for t in terms if t[3])
    return total / n_valid if n_valid else 0.0
