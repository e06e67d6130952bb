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


def check_embeddings_and_labels(embeddings: Tensor, labels: Tensor, what: str = "embeddings") -> None:
    """``embeddings`` must be a float ``[N, D]`` tensor and ``labels`` an integer ``[N]`` tensor."""
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise ValueError(
            f"{what} and labels must be torch.Tensors, got {type(embeddings)} and {type(labels)}."
        )
    if embeddings.ndim != 2:
        raise ValueError(f"{what} must have shape [N, D], got {tuple(embeddings.shape)}.")
    if not embeddings.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {embeddings.dtype}.")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape [N] = [{embeddings.shape[0]}] to match {what} "
            f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor (class indices), got {labels.dtype}.")


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
