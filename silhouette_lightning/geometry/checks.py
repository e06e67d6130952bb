"""The argument and input checks of the losses and the metrics: clear errors instead of deep torch errors.

Option values (a config's choices, temperatures) are :class:`~silhouette_lightning.errors.ConfigError`s;
tensors of the wrong kind are ``ValueError``s that say what to pass (``.to_dense()``, ``.float()``,
``.long()``, ...). Every check reads its inputs once and allocates nothing of their size, except the
finiteness check, which works in row blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from silhouette_lightning.errors import ConfigError

# Rows per block of the finiteness and sign checks, so that their boolean temporaries stay small next to
# a large input (an [N, N] precomputed distance matrix).
_CHECK_ROWS = 1024


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{name}={value!r} is not supported; expected one of {', '.join(map(repr, choices))}."
        )


def check_temperature(temperature: float, allow_zero: bool = True) -> None:
    if not (temperature > 0 or (allow_zero and temperature == 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"temperature must be {bound}, got {temperature!r}.")


def check_dense_tensor(value: object, name: str) -> None:
    """``value`` must be a dense (strided) ``torch.Tensor``: sparse layouts are refused, not converted,
    because densifying a large sparse matrix silently could exhaust memory; the caller decides."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value)}.")
    if value.layout != torch.strided:
        raise ValueError(
            f"{name} must be a dense tensor, got layout {value.layout}; pass {name}.to_dense() instead."
        )


def check_labels(labels: Tensor, n: int, what: str) -> None:
    """``labels`` must be an integer ``[n]`` tensor (class indices), one per row of ``what``."""
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape [N] = [{n}] to match {what}, got {tuple(labels.shape)}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor (class indices), got {labels.dtype}; pass labels.long()."
        )


def check_embeddings_and_labels(
    embeddings: Tensor, labels: Tensor, what: str = "embeddings", anchors: Tensor | None = None
) -> None:
    """``embeddings`` must be a dense float ``[N, D]`` tensor with ``D >= 1`` (``N = 0`` is allowed) and
    ``labels`` a dense integer ``[N]`` tensor on the same device.

    Refused with a ``ValueError`` that says what to pass: sparse tensors (``.to_dense()``), integer or
    bool embeddings (``.float()``), float labels (``.long()``), ``[N, 0]`` embeddings and labels on
    another device than the embeddings. References (``what="ref_embeddings"``) must also be on the
    device of the ``anchors`` when those are given.
    """
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"{what} and labels must be torch.Tensors, got {type(embeddings)} and {type(labels)}."
        )
    check_dense_tensor(embeddings, what)
    check_dense_tensor(labels, "labels")
    if embeddings.ndim != 2:
        raise ValueError(f"{what} must have shape [N, D], got {tuple(embeddings.shape)}.")
    if embeddings.shape[1] == 0:
        raise ValueError(
            f"{what} have dimension D = 0 (shape {tuple(embeddings.shape)}): there is nothing to measure "
            "distances on; pass [N, D] embeddings with D >= 1."
        )
    if not embeddings.is_floating_point():
        raise ValueError(
            f"{what} must be a floating-point tensor, got {embeddings.dtype}; pass {what}.float()."
        )
    check_labels(labels, embeddings.shape[0], f"{what} {tuple(embeddings.shape)}")
    if labels.device != embeddings.device:
        raise ValueError(
            f"labels are on device {labels.device} but {what} on device {embeddings.device}; "
            f"move them to one device (labels.to({what}.device))."
        )
    if anchors is not None and embeddings.device != anchors.device:
        raise ValueError(
            f"{what} are on device {embeddings.device} but embeddings on device {anchors.device}; "
            "move them to one device."
        )


def check_finite(values: Tensor, what: str, owner: str) -> None:
    """``ValueError`` naming ``owner`` and the number of rows of ``values`` with a NaN or an infinity:
    a metric would silently rank or score them (a NaN embedding comes last in every ranking)."""
    bad = 0
    for start in range(0, values.shape[0], _CHECK_ROWS):
        block = values[start : start + _CHECK_ROWS]
        bad += int((~torch.isfinite(block)).reshape(block.shape[0], -1).any(dim=1).sum())
    if bad:
        raise ValueError(
            f"{owner}: {what} contain NaN or infinite values in {bad} of {values.shape[0]} rows; the model "
            "diverged or the input is corrupt (metrics need finite values)."
        )


def check_finite_embeddings(embeddings: Tensor, labels: Tensor, owner: str) -> None:
    """:func:`check_embeddings_and_labels` and finite values: the inputs of a metric."""
    check_embeddings_and_labels(embeddings, labels)
    check_finite(embeddings, "embeddings", owner)


def check_distance_matrix(distances: Tensor, labels: Tensor, owner: str) -> None:
    """A precomputed ``[N, N]`` distance matrix as scikit-learn requires it (real, finite, non-negative,
    zero diagonal) and integer labels ``[N]``."""
    if not isinstance(distances, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"distances and labels must be torch.Tensors, got {type(distances)} and {type(labels)}."
        )
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(
            f"precomputed distances must be a square [N, N] matrix, got {tuple(distances.shape)}."
        )
    if distances.dtype == torch.bool or distances.is_complex():
        raise ValueError(f"precomputed distances must be real numbers, got {distances.dtype}.")
    check_labels(labels, distances.shape[0], f"the precomputed distances {tuple(distances.shape)}")
    check_finite(distances, "precomputed distances", owner)
    for start in range(0, distances.shape[0], _CHECK_ROWS):
        if bool((distances[start : start + _CHECK_ROWS] < 0).any()):
            raise ValueError("precomputed distances must be non-negative.")
    # scikit-learn's tolerance for the diagonal: 100 machine epsilons (exactly 0 for integers).
    atol = 100 * torch.finfo(distances.dtype).eps if distances.is_floating_point() else 0
    if bool((distances.diagonal().abs() > atol).any()):
        raise ValueError(
            "precomputed distances have non-zero entries on the diagonal (the distance of a sample to "
            "itself must be 0); set them with distances.fill_diagonal_(0)."
        )


def check_label_range(labels: Tensor, num_classes: int, what: str = "labels", hint: str = "") -> None:
    """``ConfigError`` unless every label lies in ``[0, num_classes)`` (class indices of a model with
    ``num_classes`` outputs); an empty tensor passes. ``hint`` says what to check."""
    if labels.numel() == 0:
        return
    low, high = (int(v) for v in torch.aminmax(labels))
    if low < 0 or high >= num_classes:
        raise ConfigError(
            f"{what} must lie in [0, {num_classes}) but they lie in [{low}, {high}]. {hint}".rstrip()
        )
