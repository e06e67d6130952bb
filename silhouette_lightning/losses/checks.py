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
