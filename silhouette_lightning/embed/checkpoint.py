"""Rebuild a trained :class:`EmbeddingModule` and its evaluation transform from a checkpoint alone.

What a ``.ckpt`` written by ``silhouette-fit`` holds: the model's constructor arguments as LightningCLI
parsed them (``hyper_parameters``: ``class_path``/``init_args`` dicts, with Lightning's ``_instantiator``)
and the weights (``state_dict``). The data settings (image size, data set, hence normalisation) are not in
it: they are in the run folder's ``config.yaml`` (``<run>/checkpoints/x.ckpt`` -> ``<run>/config.yaml``),
or in a config file the user names.

The model is rebuilt *offline*: pretrained-weight downloads (``weights``), local weight files
(``checkpoint``) and ``freeze`` of a torchvision backbone are switched off before it is built, since the
checkpoint's own ``state_dict`` replaces those weights anyway. The classifier is rebuilt at the size the
checkpoint has, whatever classes the images to embed belong to.
"""

from __future__ import annotations

import functools
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from silhouette_lightning.data.image_split import Transform
from silhouette_lightning.data.registry import _REGISTRY
from silhouette_lightning.data.sources.in_memory import InMemorySource
from silhouette_lightning.data.transforms import IMAGENET_STATS, NormalizationStats, resize_center_crop
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.module import EmbeddingModule

# Backbone arguments that fetch or fix weights the checkpoint's state_dict overwrites anyway.
_OFFLINE_BACKBONE_ARGS = {"weights": None, "checkpoint": None, "freeze": False}


@dataclass
class TrainedEmbedder:
    """A trained model in eval mode, the transform its evaluation used, and what it was trained on."""

    model: EmbeddingModule
    transform: Transform
    eval_output: str  # "embeddings" or "features": the representation the run measured
    image_size: int
    config_path: Path  # the run config that gave the image size and normalisation


def eval_output_of(model: EmbeddingModule) -> str:
    """The representation the run evaluated; ``eval_output`` may be a str or a list (first = primary)."""
    value = getattr(model, "eval_output", "embeddings")
    if isinstance(value, list | tuple):
        value = value[0] if value else "embeddings"
    return str(value)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a ``.ckpt`` of this project; anything else -> :class:`ConfigError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Checkpoint '{path}' does not exist (or is not a file): give a .ckpt of a run.")
    try:
        # weights_only=False: Lightning checkpoints may hold plain objects (loop states) beyond tensors;
        # the user names the file, as with `silhouette-fit --ckpt_path`.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        raise ConfigError(
            f"Cannot read '{path}' as a checkpoint ({type(error).__name__}: {_first_line(error)}). Give a "
            ".ckpt written by silhouette-fit (runs/<name>/version_<n>/checkpoints/*.ckpt)."
        ) from error
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "backbone" not in hparams or "state_dict" not in checkpoint:
        raise ConfigError(
            f"'{path}' is not a checkpoint of this project: it has no saved model config (hyper_parameters "
            "with a backbone) and state_dict. Give a .ckpt written by silhouette-fit "
            "(runs/<name>/version_<n>/checkpoints/*.ckpt)."
        )
    if not isinstance(hparams["backbone"], dict):
        raise ConfigError(
            f"'{path}' was saved outside the silhouette-fit command (its backbone is not a config but an "
            "object), so its model cannot be rebuilt from the file alone. Train with silhouette-fit."
        )
    return checkpoint


def rebuild_model(checkpoint: dict[str, Any], path: str | Path) -> EmbeddingModule:
    """The module of ``checkpoint`` with its weights, in eval mode, built without network access."""
    from lightning.pytorch.cli import instantiate_module

    hparams = {key: value for key, value in checkpoint["hyper_parameters"].items() if not key.startswith("_")}
    backbone = dict(hparams["backbone"])
    init_args = dict(backbone.get("init_args") or {})
    for key, value in _OFFLINE_BACKBONE_ARGS.items():
        if key in init_args:
            init_args[key] = value
    hparams["backbone"] = {**backbone, "init_args": init_args}
    try:
        with warnings.catch_warnings():
            # The constructor's warnings are about training (an untrained head or classifier, frozen
            # parts); the run that wrote the checkpoint showed them already.
            warnings.simplefilter("ignore")
            model = instantiate_module(EmbeddingModule, hparams)
    except Exception as error:  # jsonargparse wraps constructor errors in its own types
        raise ConfigError(
            f"Cannot rebuild the model of '{path}' from its saved config "
            f"(backbone {backbone.get('class_path')}): {_first_line(error)}. Embedding runs offline: the "
            "backbone's class must be importable here (install the package that defines it) and must not "
            "need a download to be built."
        ) from error
    model.on_load_checkpoint(checkpoint)
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        raise ConfigError(
            f"The weights in '{path}' do not fit the model its config describes: {_first_line(error)}. "
            "The file may come from another version of this project."
        ) from error
    return model.eval()


def find_run_config(checkpoint_path: str | Path) -> Path | None:
    """The run's ``config.yaml``: next to the checkpoint or one folder up (``<run>/checkpoints/``)."""
    path = Path(checkpoint_path).expanduser().resolve()
    for folder in (path.parent, path.parent.parent):
        candidate = folder / "config.yaml"
        if candidate.is_file():
            return candidate
    return None


def read_data_config(config_path: Path) -> dict[str, Any]:
    """The ``data:`` section of a LightningCLI config file (``{}``, the defaults, when it has none)."""
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"Cannot read the run config '{config_path}': {_first_line(error)}.") from error
    data = config.get("data") if isinstance(config, dict) else None
    return data if isinstance(data, dict) else {}


def evaluation_transform(data: dict[str, Any]) -> tuple[Transform, int]:
    """The evaluation transform for image *files* that matches the run's data config, and its image size.

    Resize (shorter side) + centre crop to the run's ``image_size`` and the normalisation of its data set:
    the in-memory sets (digits, synthetic) use their own statistics, torchvision sets their spec's
    statistics and evaluation crop, image folders and anything else ImageNet's. Built from the registry
    without constructing the data set, which would need the training data to be present.
    """
    name = str(data.get("dataset", "digits")).lower()
    factory = _REGISTRY.get(name)
    stats: NormalizationStats = IMAGENET_STATS
    natural, crop = 224, 1.0
    if isinstance(factory, functools.partial) and "spec" in factory.keywords:
        spec = factory.keywords["spec"]
        stats, natural = spec.stats, spec.natural_image_size
        crop = getattr(spec, "eval_crop_fraction", 1.0) or 1.0
    elif isinstance(factory, type):
        stats = getattr(factory, "stats", IMAGENET_STATS)
        natural = getattr(factory, "natural_image_size", natural)
        if issubclass(factory, InMemorySource):
            crop = 1.0
    size = int(data.get("image_size") or natural)
    return resize_center_crop(size, stats, crop_fraction=crop), size


def load_trained_embedder(path: str | Path, config_path: str | Path | None = None) -> TrainedEmbedder:
    """Everything needed to embed new images with the checkpoint at ``path``.

    ``config_path``: the run's config file; default: the ``config.yaml`` of the checkpoint's run folder
    (:class:`ConfigError` when there is none).
    """
    checkpoint = read_checkpoint(path)
    model = rebuild_model(checkpoint, path)
    if config_path is not None:
        config_path = Path(config_path).expanduser()
        if not config_path.is_file():
            raise ConfigError(f"Config file '{config_path}' (--config) does not exist.")
    else:
        config_path = find_run_config(path)
    if config_path is None:
        # Guessing would embed images at the wrong size or normalisation without a word.
        raise ConfigError(
            f"No config.yaml next to '{path}' or in its run folder, so the image size and normalisation of "
            "its training are unknown. Pass the run's config with --config <run folder>/config.yaml."
        )
    data = read_data_config(config_path)
    transform, size = evaluation_transform(data)
    return TrainedEmbedder(
        model=model,
        transform=transform,
        eval_output=eval_output_of(model),
        image_size=size,
        config_path=config_path,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__
