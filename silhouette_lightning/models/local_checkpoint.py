"""A backbone's weights from a local file: a torchvision ``.pth`` or a Lightning ``.ckpt`` of this project.

Accepted contents (read with ``torch.load(weights_only=True)``: tensors and plain containers only, no
arbitrary Python objects are unpickled):

* a state dict as torchvision publishes it (``conv1.weight``, ..., ``fc.weight``);
* a Lightning checkpoint of :class:`~silhouette_lightning.module.EmbeddingModule` (``state_dict`` with keys
  ``backbone.model.*``; the head, classifier and loss terms are ignored);
* any dict with a ``state_dict`` or ``model`` entry holding such a state dict (the torchvision reference
  training scripts save ``{"model": ..., "optimizer": ...}``), whose keys may carry the ``module.`` prefix
  of a DDP-wrapped model or the ``model.`` prefix of a saved :class:`TorchvisionBackbone`.

The classifier the backbone removed (``fc.*`` for a ResNet) is dropped from the file; every other key
must match the model by name and shape, otherwise a :class:`ConfigError` lists the differences.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError

# Candidate prefixes of the backbone's keys in a file, chosen by which one matches the most model keys.
_PREFIXES = ("backbone.model.", "model.", "module.", "")
# Entries that hold the state dict (Lightning: "state_dict"; torchvision's reference scripts: "model").
_CONTAINER_KEYS = ("state_dict", "model")
_SHOWN = 5  # keys listed in an error message


def load_checkpoint_into(
    model: nn.Module, path: str | Path, removed_prefix: str | None = None, hint: str = ""
) -> None:
    """Load the weights in ``path`` into ``model`` (strictly, after the adjustments above).

    Args:
        model: the torchvision model, with its classifier already replaced.
        path: the file.
        removed_prefix: state-dict prefix of the removed classifier (``"fc."``): its keys are dropped.
        hint: appended to a shape-mismatch error (e.g. how ``small_images`` changes ``conv1``).

    Raises:
        ConfigError: the file is missing or unreadable, or its weights do not fit ``model``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Backbone checkpoint {path} does not exist (or is not a file).")
    state = _backbone_state_dict(_read(path), model, path)
    if removed_prefix:
        state = {key: value for key, value in state.items() if not key.startswith(removed_prefix)}
    expected = model.state_dict()
    mismatched = [
        f"{key}: {tuple(value.shape)} in the file, {tuple(expected[key].shape)} in the model"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if mismatched:
        raise ConfigError(
            f"Backbone checkpoint {path} does not fit the model: {len(mismatched)} tensor(s) differ in shape "
            f"({_few(mismatched)}).{(' ' + hint) if hint else ''}"
        )
    # strict=False only to report missing/unexpected keys ourselves; BatchNorm's load hook fills in a
    # missing num_batches_tracked (older torchvision files have none), so it is not reported as missing.
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        problems = []
        if result.missing_keys:
            problems.append(f"{len(result.missing_keys)} missing ({_few(result.missing_keys)})")
        if result.unexpected_keys:
            problems.append(f"{len(result.unexpected_keys)} unexpected ({_few(result.unexpected_keys)})")
        raise ConfigError(
            f"Backbone checkpoint {path} does not match the model's parameters: {'; '.join(problems)}. "
            "Check model.backbone.init_args.name (the file must come from the same architecture)."
        )


def _read(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"Cannot read the backbone checkpoint {path}: {first_line}. Expected a file written by "
            "torch.save: a state dict, or a Lightning .ckpt of this project. Files that need arbitrary "
            "Python objects to load (a whole pickled model) are refused: re-save them with "
            "torch.save(model.state_dict(), path)."
        ) from error


def _backbone_state_dict(content: object, model: nn.Module, path: Path) -> dict[str, Tensor]:
    """The backbone's entries of the file, with the keys the model uses."""
    for key in _CONTAINER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    tensors = (
        {k: v for k, v in content.items() if isinstance(k, str) and isinstance(v, Tensor)}
        if isinstance(content, Mapping)
        else {}
    )
    if not tensors:
        raise ConfigError(
            f"Backbone checkpoint {path} holds no state dict (no named tensors at the top level or under "
            f"{' / '.join(repr(k) for k in _CONTAINER_KEYS)})."
        )
    model_keys = set(model.state_dict())

    def matches(prefix: str) -> int:
        return sum(key.startswith(prefix) and key[len(prefix) :] in model_keys for key in tensors)

    prefix = max(_PREFIXES, key=matches)  # the first of equals wins
    if matches(prefix) == 0:
        raise ConfigError(
            f"Backbone checkpoint {path} has no weights of this model: none of its keys "
            f"({_few(list(tensors))}) names a parameter of the model ({_few(sorted(model_keys))}), also "
            f"after removing a prefix {' / '.join(repr(p) for p in _PREFIXES if p)}. Check "
            "model.backbone.init_args.name."
        )
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")
