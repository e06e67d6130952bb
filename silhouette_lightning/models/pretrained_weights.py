"""torchvision's pretrained weights by name (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ...), with clear errors.

torchvision downloads a weights file on first use into ``<torch.hub.get_dir()>/checkpoints`` (``TORCH_HOME``
moves it; ``~/.cache/torch/hub/checkpoints`` by default) and reads it from there afterwards. On a machine
without internet the download fails; the error then says where the file is expected, so that it can be
copied there, or loaded as a local file instead (``TorchvisionBackbone(checkpoint=...)``).
"""

from __future__ import annotations

import os
import pickle
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from silhouette_lightning.errors import ConfigError


def resolve_weights(name: str, weights: str) -> WeightsEnum:
    """The weights enum member of model ``name`` called ``weights`` (``"IMAGENET1K_V1"``, ``"DEFAULT"``, or
    the full ``"ResNet18_Weights.IMAGENET1K_V1"``). An unknown name is a :class:`ConfigError` that lists the
    valid ones."""
    enum = torchvision.models.get_model_weights(name)
    key = weights.removeprefix(f"{enum.__name__}.")
    if key in enum.__members__:  # includes the alias DEFAULT
        return enum[key]
    choices = [f"DEFAULT (= {enum.DEFAULT.name})", *(member.name for member in enum)]
    raise ConfigError(
        f"Unknown weights {weights!r} for torchvision model {name!r}. Choose one of: {', '.join(choices)}; "
        "or weights: null for a random initialisation, or checkpoint: /path/file.pth for a local file."
    )


def cached_weights_file(weights: WeightsEnum) -> str:
    """Where torchvision keeps (or will keep) the downloaded file of ``weights`` (``torch.hub``'s naming)."""
    filename = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", filename)


def build_pretrained(name: str, weights: WeightsEnum) -> nn.Module:
    """``torchvision.models.get_model(name, weights=weights)``, downloading the file if it is not cached.

    Through ``get_model`` (rather than loading the file into a plain model) because some weights change
    the architecture they belong to (e.g. Inception's ``transform_input``, ViT's image size).

    Raises:
        ConfigError: the download failed (offline, proxy, server), or the cached file cannot be read.
    """
    cached = cached_weights_file(weights)
    try:
        return torchvision.models.get_model(name, weights=weights)
    except OSError as error:  # URLError, HTTPError, socket and SSL errors, a read-only cache folder
        raise ConfigError(
            f"Could not download the torchvision weights {weights} of {name!r} from {weights.url} ({error}). "
            f"torchvision caches weights in {os.path.dirname(cached)} (torch.hub.get_dir(); TORCH_HOME moves "
            f"it). Without internet access: download that file elsewhere and copy it to {cached}, or load "
            "a local file instead with model.backbone.init_args.checkpoint: /path/file.pth (and weights: "
            "null)."
        ) from error
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        # A hash mismatch, or a cached file that is not a readable PyTorch file (an interrupted copy).
        raise ConfigError(
            f"Could not load the torchvision weights {weights} of {name!r} ({error}). If {cached} is a "
            "partial or corrupt download, delete it and run again."
        ) from error
