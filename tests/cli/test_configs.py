"""Every shipped config parses, composes and trains a step (fast_dev_run) on digits."""

import pytest
import yaml

from silhouette_lightning.cli import main, run_cli
from tests.cli_args import REPO

DIGITS = str(REPO / "configs" / "data" / "digits.yaml")
METHODS = sorted((REPO / "configs" / "method").glob("*.yaml"))
# Introspection evaluates a frozen pretrained backbone without training (tests/models/test_introspection.py).
TRAINED_METHODS = [method for method in METHODS if method.stem != "introspection"]
FAST = ["--trainer.fast_dev_run", "2", "--trainer.enable_progress_bar", "false", "--data.batch_size", "32"]

EXPECTED_METHODS = {
    "ce",
    "ce_silhouette",
    "silhouette",
    "supcon",
    "supcon_silhouette",
    "hybrid",
    "triplet",
    "corel_cosine",
    "corel_gaussian",
}


pytestmark = pytest.mark.usefixtures("in_tmp_path")


def test_all_method_configs_are_shipped():
    assert {path.stem for path in METHODS} >= EXPECTED_METHODS


@pytest.mark.parametrize("method", TRAINED_METHODS, ids=lambda path: path.stem)
def test_method_config_trains_on_digits(method):
    cli = run_cli(["fit", "--config", DIGITS, "--config", str(method), *FAST])
    logged = cli.trainer.callback_metrics
    for term in cli.model.losses:
        value = logged[f"train/loss/{term.name}"]
        assert value.isfinite() and value > 0, (term.name, value)
    assert "val/acc" in logged
    if cli.model.online_linear_eval:
        assert "train/loss/linear_eval" in logged


def _soft_silhouette_terms(node):
    """Every ``init_args`` of a SoftSilhouetteTerm anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        if str(node.get("class_path", "")).endswith(".SoftSilhouetteTerm"):
            yield node.get("init_args") or {}
        for value in node.values():
            yield from _soft_silhouette_terms(value)
    elif isinstance(node, list):
        for value in node:
            yield from _soft_silhouette_terms(value)


def _configs_with_a_soft_silhouette() -> dict[str, list[dict]]:
    """Shipped YAML config (relative path) -> the ``init_args`` of its SoftSilhouetteTerms, as written."""
    configs = sorted((REPO / "configs").rglob("*.yaml"))
    found = {
        path.relative_to(REPO).as_posix(): list(_soft_silhouette_terms(yaml.safe_load(path.read_text())))
        for path in configs
    }
    return {path: terms for path, terms in found.items() if terms}


def test_every_shipped_soft_silhouette_is_scale_invariant():
    """Scale invariance (README, "The loss"): the quick start and every method config use the hard minimum
    (scale-invariant, like the relative temperature; the absolute one collapsed the embedding on CIFAR-10,
    and a softmax soft minimum is gamed with many classes per batch), and say so explicitly."""
    with_silhouette = _configs_with_a_soft_silhouette()
    assert {
        "configs/quickstart.yaml",
        "configs/method/ce_silhouette.yaml",
        "configs/method/hybrid.yaml",
    } <= set(with_silhouette)
    for path, terms in with_silhouette.items():
        assert all(args.get("soft_min") == "hard" for args in terms), path
        assert all(args.get("temperature_scale", "relative") == "relative" for args in terms), path


@pytest.mark.parametrize("path", sorted(_configs_with_a_soft_silhouette()))
def test_every_shipped_soft_silhouette_parses_to_the_hard_minimum(path, capsys):
    """After parsing (a method config composed after the digits recipe, as it runs), every Soft Silhouette
    term of the resolved config has ``soft_min: hard``."""
    configs = [DIGITS, str(REPO / path)] if path.startswith("configs/method/") else [str(REPO / path)]
    with pytest.raises(SystemExit) as info:
        main(["fit", *(arg for config in configs for arg in ("--config", config)), "--print_config"])
    assert info.value.code == 0
    terms = list(_soft_silhouette_terms(yaml.safe_load(capsys.readouterr().out)))
    assert terms and all(args["soft_min"] == "hard" for args in terms), (path, terms)


@pytest.mark.parametrize("method", METHODS, ids=lambda path: path.stem)
def test_method_config_sets_the_run_name_and_terms(method, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", DIGITS, "--config", str(method), "--print_config"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert f"name: {method.stem}" in printed and "save_dir: runs/digits" in printed
    assert printed.count("class_path: silhouette_lightning.terms.") >= 1
