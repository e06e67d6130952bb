"""Argument and input checks shared by the losses: clear ``ValueError``s instead of deep torch errors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from silhouette_lightning.errors import ConfigError


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
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape [N] = [{embeddings.shape[0]}] to match {what} "
            f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer tensor (class indices), got {labels.dtype}; pass labels.long()."
        )
    if labels.device != embeddings.device:
        raise ValueError(
            f"labels are on device {labels.device} but {what} on device {embeddings.device}; "
            f"move them to one device (labels.to({what}.device))."
        )
    if anchors is not None:
        _check_reference_device(embeddings, anchors, what)


def _check_reference_device(references: Tensor, anchors: Tensor, what: str) -> None:
    if references.device != anchors.device:
        raise ValueError(
            f"{what} are on device {references.device} but embeddings on device {anchors.device}; "
            "move them to one device."
        )


def resolve_references(
    embeddings: Tensor,
    labels: Tensor,
    ref_embeddings: Tensor | None,
    ref_labels: Tensor | None,
    self_index: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Checked ``(references, reference labels, self_index)`` for a batch-level loss.

    Without references the anchors are their own references and ``self_index`` defaults to the diagonal
    (each anchor is excluded from its own comparisons). Given references are other samples unless
    ``self_index`` says where each anchor sits among them (the distributed case).
    """
    check_embeddings_and_labels(embeddings, labels)
    if ref_embeddings is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_embeddings.")
        ref_embeddings, ref_labels = embeddings, labels
        if self_index is None:
            self_index = torch.arange(embeddings.shape[0], device=embeddings.device)
    else:
        if ref_labels is None:
            raise ValueError("ref_embeddings needs ref_labels.")
        check_embeddings_and_labels(ref_embeddings, ref_labels, what="ref_embeddings")
        _check_reference_device(ref_embeddings, embeddings, "ref_embeddings")
        if ref_embeddings.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"ref_embeddings have dimension {ref_embeddings.shape[1]}, embeddings {embeddings.shape[1]}."
            )
    if self_index is not None and (
        self_index.shape != labels.shape or self_index.is_floating_point() or self_index.dtype == torch.bool
    ):
        raise ValueError(
            f"self_index must be an integer tensor of shape [N] = [{labels.shape[0]}], "
            f"got {self_index.dtype} {tuple(self_index.shape)}."
        )
    return ref_embeddings, ref_labels, self_index
