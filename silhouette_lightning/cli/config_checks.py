"""Checks of a parsed ``silhouette-fit`` config, run before anything trains.

Lightning accepts some settings that cannot do what the user meant and only notices late, if at all: a
``fit`` with ``max_epochs: 0`` or ``limit_train_batches: 0`` trains nothing (and ``test_after_fit`` then
fails on the missing best checkpoint), an unknown accelerator or strategy name is a ``ValueError`` deep in
the Trainer's constructor, an image too small for the backbone fails inside a convolution on the first
batch, a ``checkpoint.monitor`` that no metric logs fails at the end of the first epoch, and one on a
validation metric with ``limit_val_batches: 0`` ranks nothing (``test_after_fit`` then fails after the
whole training). Each function
here turns one of them into a :class:`~silhouette_lightning.errors.ConfigError` with a one-line message
that names the key and says what to change; :class:`silhouette_lightning.cli.SilhouetteCLI` runs them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from silhouette_lightning.errors import ConfigError

# Image sizes tried when the configured one does not fit the backbone, to name one that does.
_CANDIDATE_SIZES = (*range(1, 33), 48, 64, 96, 112, 128, 160, 192, 224, 256, 299, 384, 448, 512)


def check_config_files(args: Sequence[str]) -> None:
    """Raise if a ``--config`` / ``-c`` file in ``args`` is empty or its top level is not a mapping.

    (jsonargparse reports both as "Unexpected config" under a page of usage, without the file's name.)
    Values that are not existing files are left to jsonargparse: they may be inline YAML.
    """
    for path in _config_paths(args):
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ConfigError(f"--config {path}{line} is not valid YAML: {problem}.") from None
        if content is None:
            raise ConfigError(
                f"--config {path} is empty: a config file is a YAML mapping of keys such as `trainer:`, "
                "`model:`, `data:` (see configs/quickstart.yaml); remove the --config or fill it."
            )
        if not isinstance(content, dict):
            raise ConfigError(
                f"--config {path} holds a YAML {_yaml_kind(content)}, not a mapping: its top level must be "
                "keys such as `trainer:`, `model:`, `data:` (see configs/quickstart.yaml)."
            )


def _config_paths(args: Sequence[str]) -> list[Path]:
    paths = []
    for i, arg in enumerate(args):
        if not isinstance(arg, str):
            continue
        if arg in ("--config", "-c") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--config="):
            value = arg.removeprefix("--config=")
        else:
            continue
        if isinstance(value, str) and Path(value).is_file():
            paths.append(Path(value))
    return paths


def _yaml_kind(content: Any) -> str:
    if isinstance(content, list):
        return "list"
    return f"{type(content).__name__} ({content!r})"


def check_trainer_settings(subcommand: str | None, trainer: Mapping[str, Any]) -> None:
    """Raise if the ``trainer`` settings (as parsed, before the Trainer is built) cannot run ``subcommand``:
    an unknown ``accelerator`` or ``strategy`` name, and for ``fit``: ``max_epochs``/``max_steps`` that
    allow no step, or ``limit_train_batches`` 0 (or out of range)."""
    _check_registered("accelerator", trainer.get("accelerator"), _accelerator_names())
    _check_registered("strategy", trainer.get("strategy"), _strategy_names())
    if subcommand != "fit" or trainer.get("fast_dev_run"):
        return  # fast_dev_run overrides epochs, steps and batch limits
    for key in ("max_epochs", "max_steps"):
        value = trainer.get(key)
        if value is not None and (value == 0 or value < -1):
            raise ConfigError(
                f"trainer.{key} is {value}, so `fit` would train nothing: use a positive number, or -1 for "
                "no limit (then give max_steps, max_epochs or max_time)."
            )
    limit = trainer.get("limit_train_batches")
    if limit is None:
        return
    if limit == 0:
        raise ConfigError(
            f"trainer.limit_train_batches is {limit!r}, so `fit` would train on no batch: give a fraction in "
            "(0.0, 1.0] (1.0 = every batch) or a number of batches >= 1; to evaluate only, use "
            "`silhouette-fit validate` or `test` instead of `fit`."
        )
    if limit < 0 or (isinstance(limit, float) and limit > 1 and limit % 1):
        raise ConfigError(
            f"trainer.limit_train_batches is {limit!r}: give a fraction in (0.0, 1.0] (1.0 = every batch) or "
            "a whole number of batches >= 1."
        )


def _check_registered(key: str, value: Any, names: list[str]) -> None:
    if not isinstance(value, str) or value.lower() in names:
        return  # None is the default; objects are checked by Lightning
    close = difflib.get_close_matches(value.lower(), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"trainer.{key} {value!r} is unknown.{hint} Choose one of: {', '.join(names)}.")


def _accelerator_names() -> list[str]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def _strategy_names() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *sorted(StrategyRegistry.available_strategies())]


def check_image_size(backbone: nn.Module, image_size: int, in_channels: int = 3) -> None:
    """Raise if one image ``[1, in_channels, image_size, image_size]`` does not pass through ``backbone``.

    A dry forward in eval mode without gradients (the modules' train/eval modes are restored), on the
    backbone's device and dtype: it costs one image's forward pass. When it fails, the message names the
    smallest larger size that works (or, for models that need one exact size such as ViT, the nearest
    smaller one).
    """
    error = _forward_error(backbone, image_size, in_channels)
    if error is None:
        return
    name = _backbone_name(backbone)
    larger = (s for s in _CANDIDATE_SIZES if s > image_size)
    fits = next((s for s in larger if _forward_error(backbone, s, in_channels) is None), None)
    if fits is not None:
        advice = f"The smallest size it accepts is {fits}: set --data.image_size {fits} or larger."
    else:
        smaller = (s for s in reversed(_CANDIDATE_SIZES) if s < image_size)
        fits = next((s for s in smaller if _forward_error(backbone, s, in_channels) is None), None)
        advice = f"It accepts {fits}: set --data.image_size {fits}." if fits else "Choose another backbone."
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise ConfigError(
        f"data.image_size {image_size} is too small for model.backbone ({name}): one "
        f"{image_size}x{image_size} image fails in the backbone ({first_line}). {advice}"
    )


def _forward_error(backbone: nn.Module, size: int, in_channels: int) -> Exception | None:
    parameter = next(iter(backbone.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    modes = {module: module.training for module in backbone.modules()}
    try:
        backbone.eval()  # BatchNorm in training mode would refuse one image of 1x1 features
        with torch.no_grad():
            backbone(torch.zeros(1, in_channels, size, size, device=device, dtype=dtype))
    except (RuntimeError, ValueError, AssertionError, IndexError) as error:
        return error
    finally:
        for module, training in modes.items():
            module.training = training
    return None


def _backbone_name(backbone: nn.Module) -> str:
    name = getattr(backbone, "name", None)
    return f"{type(backbone).__name__} {name!r}" if isinstance(name, str) else type(backbone).__name__


def check_monitor(key: str, monitor: str | None, logged: Iterable[str]) -> None:
    """Raise if ``monitor`` (e.g. ``checkpoint.monitor``) is set but not among the ``logged`` metric names;
    the message lists them and suggests the closest."""
    if monitor is None:
        return
    names = list(dict.fromkeys(logged))
    if monitor in names:
        return
    close = difflib.get_close_matches(monitor, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(
        f"{key} is {monitor!r}, but no metric of that name is logged, so checkpoints could not be "
        f"ranked.{hint} Logged during fit: {', '.join(names)}."
    )


def check_config(
    subcommand: str | None,
    trainer: Mapping[str, Any],
    model: Any,
    datamodule: Any,
    checkpoint: Any = None,
) -> None:
    """All of the above on the CLI's instantiated model and data and its parsed ``trainer`` settings (the
    Trainer is not built yet). ``checkpoint``: the configured ``ModelCheckpoint``, if any."""
    check_trainer_settings(subcommand, trainer)
    backbone = getattr(model, "backbone", None)
    image_size = getattr(datamodule, "image_size", None)
    if isinstance(backbone, nn.Module) and isinstance(image_size, int):
        check_image_size(backbone, image_size)
    if subcommand != "fit" or not hasattr(model, "logged_metric_names"):
        return
    monitors = [("checkpoint.monitor", getattr(checkpoint, "monitor", None))]
    monitors += [
        (f"trainer.callbacks {type(callback).__name__}.monitor", getattr(callback, "monitor", None))
        for callback in trainer.get("callbacks") or []
    ]
    validation = model.logged_metric_names("val")
    logged = [*model.logged_metric_names("train"), *validation]
    if trainer.get("limit_val_batches") == 0 and not trainer.get("fast_dev_run"):
        # No validation loop: Lightning then saves no best checkpoint, and test_after_fit fails after
        # the whole training on `ckpt_path="best"`.
        for key, monitor in monitors:
            if monitor in validation:
                raise ConfigError(
                    f"{key} is {monitor!r}, a validation metric, but trainer.limit_val_batches is 0, so "
                    "validation never runs and nothing could be ranked by it: let validation run "
                    "(trainer.limit_val_batches > 0) or monitor a training metric, e.g. "
                    "--checkpoint.monitor train/loss --checkpoint.mode min."
                )
        logged = model.logged_metric_names("train")
    # ModelCheckpoint and EarlyStopping also accept the "epoch" and "step" that Lightning adds.
    for key, monitor in monitors:
        if isinstance(monitor, str) and monitor not in (*logged, "epoch", "step"):
            check_monitor(key, monitor, logged)
