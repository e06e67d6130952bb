"""Checks of a parsed config before anything trains (``cli.config_checks``), one by one."""

import pytest
import torch
from torch import nn

from silhouette_lightning.cli.config_checks import (
    check_config,
    check_config_files,
    check_image_size,
    check_monitor,
    check_trainer_settings,
)
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models import SmallCNN


def _error(check, *args) -> str:
    with pytest.raises(ConfigError) as info:
        check(*args)
    message = str(info.value)
    assert "\n" not in message  # the CLI prints it as one line
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "is empty"), ("# only a comment\n", "is empty"), ("- a\n- b\n", "YAML list"), ("hello\n", "str")],
)
def test_empty_or_non_mapping_config_file_names_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for args in (["fit", "--config", str(path)], ["fit", f"--config={path}"], ["-c", str(path), "fit"]):
        message = _error(check_config_files, args)
        assert str(path) in message and expected in message and "trainer:" in message


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("trainer:\n  max_epochs: [1\n")
    message = _error(check_config_files, ["fit", "--config", str(path)])
    assert str(path) in message and "line" in message


def test_a_mapping_or_inline_yaml_passes(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("trainer:\n  max_epochs: 1\n")
    check_config_files(["fit", "--config", str(path), "--config", "{trainer: {max_epochs: 2}}"])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"max_epochs": 0}, "trainer.max_epochs is 0"),
        ({"max_epochs": -2}, "trainer.max_epochs is -2"),
        ({"max_steps": 0}, "trainer.max_steps is 0"),
        ({"limit_train_batches": 0}, "trainer.limit_train_batches is 0,"),
        ({"limit_train_batches": 0.0}, "trainer.limit_train_batches is 0.0,"),
        ({"limit_train_batches": -0.5}, "whole number of batches"),
        ({"limit_train_batches": 1.5}, "whole number of batches"),
    ],
)
def test_fit_that_would_train_nothing(settings, expected):
    message = _error(check_trainer_settings, "fit", settings)
    assert expected in message
    # Only `fit` trains; fast_dev_run overrides these settings.
    check_trainer_settings("test", settings)
    check_trainer_settings("fit", {**settings, "fast_dev_run": 2})


def test_fit_settings_that_train():
    for settings in ({"max_epochs": -1, "max_steps": 10}, {"max_epochs": 1}, {"limit_train_batches": 3}, {}):
        check_trainer_settings("fit", {"limit_train_batches": 1.0, **settings})


@pytest.mark.parametrize(
    ("key", "value", "suggestion", "choice"),
    [("accelerator", "gpux", "'gpu'", "cuda"), ("strategy", "dpp", "'ddp'", "ddp_spawn")],
)
def test_unknown_accelerator_or_strategy_lists_the_choices(key, value, suggestion, choice):
    message = _error(check_trainer_settings, "validate", {key: value})
    assert f"trainer.{key} {value!r} is unknown" in message and suggestion in message and choice in message
    check_trainer_settings("fit", {key: choice.upper()})  # Lightning lower-cases the names


def test_image_too_small_for_the_backbone_names_the_smallest_size():
    backbone = SmallCNN(width=2)
    backbone.train()
    backbone.features[1].eval()  # a mixed state, which the check must leave as it was
    modes = [m.training for m in backbone.modules()]
    for size in (1, 2, 3):
        message = _error(check_image_size, backbone, size)
        assert f"data.image_size {size} is too small" in message and "SmallCNN" in message
        assert "--data.image_size 4" in message  # two 2x2 max-pools: 4 -> 2 -> 1
    check_image_size(backbone, 4)
    assert [m.training for m in backbone.modules()] == modes


def test_backbone_that_needs_one_exact_size_names_it():
    class ExactSize(nn.Module):
        def forward(self, images):
            if images.shape[-1] != 224:
                raise ValueError(f"Wrong image height! Expected 224 but got {images.shape[-1]}!")
            return images.mean((2, 3))

    message = _error(check_image_size, ExactSize(), 256)
    assert "Expected 224" in message and "--data.image_size 224" in message
    check_image_size(ExactSize(), 224)


def test_monitor_that_no_metric_logs_suggests_close_names():
    logged = ["train/loss", "val/loss", "val/acc", "val/silhouette"]
    message = _error(check_monitor, "checkpoint.monitor", "val/accuracy", logged)
    assert "checkpoint.monitor is 'val/accuracy'" in message and "Did you mean 'val/acc'" in message
    assert "val/silhouette" in message  # the full list
    check_monitor("checkpoint.monitor", "val/acc", logged)
    check_monitor("checkpoint.monitor", None, logged)


def test_dry_forward_needs_no_gradient():
    backbone = SmallCNN(width=2)
    check_image_size(backbone, 8)
    assert all(p.grad is None for p in backbone.parameters())
    assert torch.is_grad_enabled()


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = SmallCNN(width=2)

    def logged_metric_names(self, stage):
        return [f"{stage}/loss"] if stage == "train" else [f"{stage}/loss", f"{stage}/acc"]


class _Data:
    def __init__(self, image_size=8):
        self.image_size = image_size


class _Checkpoint:
    def __init__(self, monitor):
        self.monitor = monitor


def test_check_config_monitors_against_the_models_names():
    for monitor in ("val/acc", "train/loss", "epoch", "step", None):  # Lightning adds epoch and step
        check_config("fit", {}, _Model(), _Data(), _Checkpoint(monitor))
    message = _error(check_config, "fit", {}, _Model(), _Data(), _Checkpoint("val/accuracy"))
    assert "Did you mean 'val/acc'" in message
    check_config("test", {}, _Model(), _Data(), _Checkpoint("val/accuracy"))  # only fit ranks checkpoints
    # Without validation, only the training metrics are logged.
    no_validation = {"limit_val_batches": 0}
    message = _error(check_config, "fit", no_validation, _Model(), _Data(), _Checkpoint("val/acc"))
    assert "a validation metric, but trainer.limit_val_batches is 0" in message
    check_config("fit", no_validation, _Model(), _Data(), _Checkpoint("train/loss"))
    # The image size is checked for every subcommand.
    assert "--data.image_size 4" in _error(check_config, "predict", {}, _Model(), _Data(image_size=2))
