"""The CLI in-process (``main([...])``), on synthetic data and digits, from the shipped configs."""

import csv
import subprocess
import sys

import pytest
import torch

from silhouette_lightning.cli import main, run_cli
from silhouette_lightning.module import EmbeddingModule
from tests.cli_args import CONFIGS, QUICKSTART, TINY

pytestmark = pytest.mark.usefixtures("in_tmp_path")


def _exit_code(args):
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


@pytest.mark.parametrize("dataset_args", [["--data.dataset", "digits"], TINY[2:]])
def test_fast_dev_run_fits_quickstart_config(dataset_args):
    main(["fit", "--config", QUICKSTART, *dataset_args, "--trainer.fast_dev_run", "2"])


def test_fit_writes_config_metrics_and_checkpoints_then_tests_best(tmp_path):
    main(["fit", *TINY, "--trainer.max_epochs", "2"])
    run = tmp_path / "runs" / "quickstart" / "version_0"
    assert (run / "config.yaml").is_file()
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("best-epoch=") for name in checkpoints)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    columns = set(rows[0])
    for key in ["train/loss", "train/loss/ce", "train/loss/silhouette", "train/acc", "val/acc", "test/acc"]:
        assert key in columns, key
    val_acc = [float(r["val/acc"]) for r in rows if r["val/acc"]]
    test_acc = [float(r["test/acc"]) for r in rows if r["test/acc"]]
    assert len(val_acc) == 2 and len(test_acc) == 1 and 0.0 <= test_acc[0] <= 1.0

    # The checkpoint rebuilds the configured model without the CLI (hparams hold the config).
    model = EmbeddingModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert model.num_classes == 3 and [t.name for t in model.losses] == ["ce", "silhouette"]

    # validate / test / predict from that checkpoint.
    ckpt = str(run / "checkpoints" / "last.ckpt")
    for subcommand in ("validate", "test", "predict"):
        main([subcommand, *TINY, "--ckpt_path", ckpt])
    saved = (tmp_path / "runs" / "quickstart" / "version_1" / "config.yaml").read_text()
    assert "synthetic" in saved


def test_predict_returns_embeddings_of_the_test_split():
    cli = run_cli(["--config", QUICKSTART, *TINY[2:], "--trainer.logger", "false"], run=False)
    predictions = cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    embeddings = torch.cat([p["embeddings"] for p in predictions])
    labels = torch.cat([p["labels"] for p in predictions])
    assert embeddings.shape == (len(cli.datamodule.split_dataset("test")), 8)
    assert sorted(labels.unique().tolist()) == [0, 1, 2]


def test_print_config_shows_the_composed_config(capsys):
    assert _exit_code(["fit", "--config", QUICKSTART, "--model.embedding_dim", "7", "--print_config"]) == 0
    out = capsys.readouterr().out
    assert "embedding_dim: 7" in out and "SoftSilhouetteTerm" in out and "dataset: digits" in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.embeding_dim", "3"], "embeding_dim"),  # unknown key
        (["--data.batch_size", "many"], "batch_size"),  # wrong type
    ],
)
def test_bad_key_or_type_names_the_key_and_exits_nonzero(override, message, capsys):
    assert _exit_code(["fit", "--config", QUICKSTART, *override]) != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--data.batch_size", "0"], "data.batch_size must be >= 1"),
        (["--data.dataset", "imagefolder", "--data.root", "no/such/folder"], "no/such/folder"),
        (["--data.dataset", "cifar10", "--data.root", "nowhere"], "download"),
        (["--data.dataset", "mnist"], "Unknown dataset 'mnist'"),
        (
            [
                "--model.losses+=silhouette_lightning.terms.SoftSilhouetteTerm",
                "--model.losses.temperature",
                "-1",
            ],
            "temperature must be >= 0",
        ),
        # Lightning would train nothing (then test_after_fit fails on the missing best checkpoint).
        (["--trainer.max_epochs", "0"], "trainer.max_epochs is 0"),
        (["--trainer.max_epochs", "-2"], "trainer.max_epochs is -2"),
        (["--trainer.limit_train_batches", "0"], "trainer.limit_train_batches is 0,"),
        (["--trainer.limit_train_batches", "0.0"], "trainer.limit_train_batches is 0.0,"),
        # Lightning: a ValueError from deep inside the Trainer's constructor.
        (["--trainer.accelerator", "gpux"], "trainer.accelerator 'gpux' is unknown. Did you mean 'gpu'?"),
        (["--trainer.strategy", "ddpx"], "trainer.strategy 'ddpx' is unknown. Did you mean 'ddp'?"),
        # Lightning: "Output size is too small" from a max-pool on the first batch.
        (["--data.image_size", "2"], "data.image_size 2 is too small for model.backbone (SmallCNN)"),
        # Lightning: a MisconfigurationException at the end of the first epoch.
        (["--checkpoint.monitor", "val/accuracy"], "checkpoint.monitor is 'val/accuracy'"),
        (["--model.report_accuracy", "false", "--checkpoint.monitor", "val/acc"], "Did you mean"),
        (
            [
                "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
                "--trainer.callbacks.monitor",
                "val/los",
            ],
            "trainer.callbacks EarlyStopping.monitor is 'val/los', but no metric of that name is logged",
        ),
        # Lightning: trains without validation, then test_after_fit fails on the missing best checkpoint.
        (["--trainer.limit_val_batches", "0"], "checkpoint.monitor is 'val/loss', a validation metric"),
        (["--data.batch_size", "-3"], "data.batch_size must be >= 1"),
        (["--data.num_workers", "-1"], "data.num_workers must be >= 0"),
    ],
)
def test_bad_values_are_a_short_error_before_training(override, message, capsys, tmp_path):
    assert _exit_code(["fit", "--config", QUICKSTART, *override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_python_dash_m_is_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "silhouette_lightning", "--help"], capture_output=True, text=True, check=True
    )
    assert "fit" in result.stdout and "predict" in result.stdout


@pytest.mark.parametrize(("text", "expected"), [("", "is empty"), ("- fit\n", "YAML list"), ("3\n", "int")])
def test_empty_or_non_mapping_config_file_is_one_line_naming_it(text, expected, capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert _exit_code(["fit", "--config", QUICKSTART, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"silhouette-fit: error: --config {path}" in err and expected in err
    assert "usage:" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--model.report_accuracy", "false", "--checkpoint.monitor", "val/loss"],
        ["--config", str(CONFIGS / "method" / "corel_cosine.yaml"), "--checkpoint.monitor", "val/loss"],
    ],
)
def test_logged_metric_names_are_what_a_run_logs(extra):
    args = [*TINY, *extra, "--trainer.fast_dev_run", "1", "--trainer.logger", "false"]
    cli = run_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    logged = set(cli.trainer.callback_metrics)
    expected = cli.model.logged_metric_names("train") + cli.model.logged_metric_names("val")
    assert len(expected) == len(set(expected)) and logged == set(expected)
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    assert set(cli.trainer.callback_metrics) == set(cli.model.logged_metric_names("test"))
