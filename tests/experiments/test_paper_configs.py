"""configs/paper/: every data set config composes with every method config, and per data set the methods
share one protocol (backbone, optimizer, schedule, data, trainer) and differ only in their objective.

The data sets are not on disk here: the compositions are parsed by the CLI's own parser without
instantiating anything; one composition is instantiated on a tiny copy of DTD in DTD's own format.
"""

from pathlib import Path
from typing import Any

import pytest
import torchvision
import yaml

from silhouette_lightning.cli import SilhouetteCLI, main, run_cli
from silhouette_lightning.data.sources.torchvision_sets import TORCHVISION_SPECS
from silhouette_lightning.experiments.report import read_run
from silhouette_lightning.experiments.sweep import PAPER_METHODS, plan
from tests.cli_args import REPO
from tests.fake_torchvision_data import WRITERS

CONFIGS = REPO / "configs"
PAPER = sorted((CONFIGS / "paper").glob("*.yaml"))
DATASETS = [path.stem for path in PAPER]

# What a method config may change; everything else is the data set's fixed protocol.
METHOD_KEYS = {
    "model.losses",
    "model.online_linear_eval",
    "model.eval_output",
    "data.num_views",
    "trainer.logger.init_args.name",
}
TWO_VIEWS = {"supcon", "supcon_silhouette", "hybrid"}
# The recipe's own head: CE + Silhouette ships a one-layer head (docs/results.md), every other method the
# protocol's two-layer one.
RECIPE_KEYS = {"ce_silhouette": {"model.head_layers"}}


@pytest.fixture(scope="module")
def composed() -> dict[tuple[str, str], dict[str, Any]]:
    """(data set, method) -> the resolved config of ``--config paper/<d>.yaml --config method/<m>.yaml``,
    from the CLI's parser (one parser for all: classes are resolved and checked, nothing is built)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SilhouetteCLI, "instantiate_classes", lambda self: None)
        parser = run_cli(["--config", str(PAPER[0]), "--config", _method("ce")], run=False).parser
    configs = {}
    for dataset in DATASETS:
        for method in PAPER_METHODS:
            namespace = parser.parse_args(["--config", _paper(dataset), "--config", _method(method)])
            config = namespace.as_dict()
            del config["config"]  # the paths of the config files themselves
            configs[dataset, method] = config
    return configs


def _paper(dataset: str) -> str:
    return str(CONFIGS / "paper" / f"{dataset}.yaml")


def _method(method: str) -> str:
    return str(CONFIGS / "method" / f"{method}.yaml")


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in METHOD_KEYS:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def test_a_paper_config_for_every_torchvision_data_set_and_every_paper_method_exists():
    assert set(DATASETS) == set(TORCHVISION_SPECS)
    assert all((CONFIGS / "method" / f"{method}.yaml").is_file() for method in PAPER_METHODS)


def test_every_composition_names_its_run_paper_dataset_method(composed):
    for (dataset, method), config in composed.items():
        logger = config["trainer"]["logger"]
        assert logger["class_path"] == "lightning.pytorch.loggers.CSVLogger"
        assert logger["init_args"]["save_dir"] == f"runs/paper/{dataset}"
        assert logger["init_args"]["name"] == method
        assert config["data"]["dataset"] == dataset
        assert config["data"]["num_views"] == (2 if method in TWO_VIEWS else 1), (dataset, method)
        assert config["test_after_fit"] is True
        assert config["checkpoint"]["monitor"] == "val/acc" and config["checkpoint"]["mode"] == "max"


def test_methods_share_the_data_sets_protocol_and_differ_only_in_the_objective(composed):
    for dataset in DATASETS:
        reference = _flatten(composed[dataset, "ce"])
        for method in PAPER_METHODS:
            flat = _flatten(composed[dataset, method])
            assert flat.keys() == reference.keys()
            differing = {key for key in flat if flat[key] != reference[key]}
            allowed = METHOD_KEYS | RECIPE_KEYS.get(method, set())
            assert differing <= allowed, (dataset, method, differing - allowed)
            assert flat["model.head_layers"] == (1 if method == "ce_silhouette" else 2), (dataset, method)
        # The protocol keys the issue names are set in the data set config itself, not left to defaults.
        protocol = yaml.safe_load(Path(_paper(dataset)).read_text())
        assert (
            protocol["model"]["backbone"]["class_path"] == "silhouette_lightning.models.TorchvisionBackbone"
        )
        for key in ("embedding_dim", "optimizer", "lr_scheduler"):
            assert key in protocol["model"], (dataset, key)
        for key in ("batch_size", "num_workers", "image_size", "root"):
            assert key in protocol["data"], (dataset, key)
        assert protocol["model"]["lr_scheduler"]["init_args"]["T_max"] == protocol["trainer"]["max_epochs"]


def test_every_soft_silhouette_of_the_protocol_is_scale_invariant(composed):
    """Scale invariance (README, "The loss"): the absolute temperature collapsed the embedding on CIFAR-10,
    so no paper run may use it, and a softmax soft minimum is gamed with many classes per batch (CIFAR-100,
    the fine-grained sets), so every paper run uses the hard minimum (resolved values, defaults included)."""
    silhouettes = 0
    for key, config in composed.items():
        for term in config["model"]["losses"]:
            if term["class_path"].endswith(".SoftSilhouetteTerm"):
                silhouettes += 1
                assert term["init_args"]["temperature_scale"] == "relative", key
                assert term["init_args"]["soft_min"] == "hard", key
    assert silhouettes >= 3 * len(DATASETS)  # ce_silhouette, supcon_silhouette, hybrid


def test_backbones_image_sizes_and_weights_fit_each_data_set(composed):
    for dataset in DATASETS:
        config = composed[dataset, "hybrid"]
        backbone = config["model"]["backbone"]["init_args"]
        spec = TORCHVISION_SPECS[dataset]
        assert config["data"]["image_size"] == spec.natural_image_size
        # The 32-px stem exactly for the small-image sets; ImageNet weights exactly for the photos.
        assert backbone["small_images"] is spec.small_images, dataset
        assert (backbone["weights"] is None) is spec.small_images, dataset
        if backbone["weights"] is not None:
            # A weights name torchvision knows for that model (checked without downloading anything).
            enum = torchvision.models.get_model_weights(backbone["name"])
            assert backbone["weights"] in enum.__members__, (dataset, backbone)


def test_each_header_says_how_to_run_it_and_where_the_data_must_be():
    for path in PAPER:
        dataset = path.stem
        header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
        assert f"silhouette-fit fit --config configs/paper/{dataset}.yaml --config configs/method/" in header
        assert f"silhouette-sweep --datasets {dataset}" in header
        assert f"data/{TORCHVISION_SPECS[dataset].extracted_folder}" in header
        assert "data.download" in header
        assert "our fixed protocol" in header.lower().replace("\n# ", " ")


def test_report_reads_method_and_dataset_of_a_composed_run(composed, tmp_path):
    for (dataset, method), config in [(key, composed[key]) for key in (("dtd", "supcon"), ("cifar10", "ce"))]:
        logger = config["trainer"]["logger"]["init_args"]
        folder = tmp_path / logger["save_dir"] / logger["name"] / "version_0"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "metrics.csv").write_text("epoch,test/acc\n0,0.5\n")
        run = read_run(folder)
        assert (run.method, run.dataset, run.seed) == (method, dataset, 0)


def test_a_composition_and_a_sweep_command_build_their_run_folders(tmp_path, monkeypatch, capsys):
    """On a tiny DTD copy: the plain composition logs to runs/paper/dtd/<method>/version_0, the sweep's
    command to runs/paper/dtd/<method>/seed_<s> with that folder's checkpoints; the fit subcommand accepts
    the sweep's arguments (--ckpt_path last included)."""
    monkeypatch.chdir(tmp_path)
    WRITERS["dtd"](tmp_path / "data")
    small = [  # no download (random weights), and batches the 3 fake classes can fill
        "--model.backbone.init_args.weights", "null",
        "--data.batch_size", "8",
        "--data.num_workers", "0",
    ]  # fmt: skip
    cli = run_cli(["--config", _paper("dtd"), "--config", _method("hybrid"), *small], run=False)
    assert Path(cli.trainer.log_dir) == Path("runs/paper/dtd/hybrid/version_0")
    assert cli.datamodule.num_views == 2 and cli.model.num_classes == 3

    (run,) = plan(["dtd"], ["triplet"], [3], configs_dir=CONFIGS)
    fit_args = list(run.args[1:-2])  # without "fit" and "--ckpt_path last"
    assert run.args[0] == "fit" and run.args[-2:] == ("--ckpt_path", "last")
    cli = run_cli([*fit_args, *small], run=False)
    assert Path(cli.trainer.log_dir) == Path("runs/paper/dtd/triplet/seed_3")
    # No fixed checkpoint folder: ModelCheckpoint uses <log_dir>/checkpoints, the seed's own folder.
    assert cli.trainer.checkpoint_callback.dirpath is None
    with pytest.raises(SystemExit) as info:
        main([*run.args, *small, "--print_config"])
    assert info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["ckpt_path"] == "last" and printed["seed_everything"] == 3
    assert printed["trainer"]["logger"]["init_args"]["version"] == "seed_3"
