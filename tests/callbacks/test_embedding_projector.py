"""TensorBoard's Projector gets the test and predict embeddings (labels as metadata, an image sprite)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from silhouette_lightning.callbacks import EmbeddingProjector
from silhouette_lightning.cli import main, run_cli
from tests.cli_args import TINY

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")

TENSORBOARD = [
    "--trainer.logger",
    "lightning.pytorch.loggers.TensorBoardLogger",
    "--trainer.logger.save_dir",
    "tb",
]


def _projector_entries(folder):
    config = (folder / "projector_config.pbtxt").read_text()
    return config, sorted(p.parent for p in folder.rglob("tensors.tsv"))


def test_test_and_predict_send_embeddings_to_the_projector(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY, *TENSORBOARD, "--trainer.max_epochs", "1", "--test_after_fit", "false"])
    checkpoint = next((tmp_path / "tb").rglob("last.ckpt"))
    main(["test", *TINY, *TENSORBOARD, "--ckpt_path", str(checkpoint)])
    main(["predict", *TINY, *TENSORBOARD, "--ckpt_path", str(checkpoint)])
    runs = sorted(p for p in (tmp_path / "tb").rglob("projector_config.pbtxt"))
    assert len(runs) == 2  # the test run's folder and the predict run's folder
    for config_path, stage in zip(runs, ["test", "predict"], strict=True):
        config, folders = _projector_entries(config_path.parent)
        assert f'tensor_name: "{stage}/embeddings' in config and "sprite" in config
        tensors = np.loadtxt(folders[0] / "tensors.tsv", delimiter="\t", ndmin=2)
        metadata = (folders[0] / "metadata.tsv").read_text().split()
        assert tensors.shape[1] == 8 and len(metadata) == len(tensors)
        assert set(metadata) <= {"0", "1", "2"} or set(metadata) <= {f"class_{k}" for k in range(3)}
        assert (folders[0] / "sprite.png").is_file()


def test_projector_embeddings_are_the_evaluated_representation(tmp_path, monkeypatch):
    """Oracle: the sent vectors are the model's eval_output of the first test images, in order."""
    monkeypatch.chdir(tmp_path)
    cli = run_cli(["--config", *TINY[1:], *TENSORBOARD, "--model.eval_output", "features"], run=False)
    projector = next(c for c in cli.trainer.callbacks if isinstance(c, EmbeddingProjector))
    sent = {}
    monkeypatch.setattr(
        type(cli.trainer.logger.experiment),
        "add_embedding",
        lambda self, mat, metadata=None, label_img=None, global_step=None, tag="default": sent.update(
            mat=mat, metadata=metadata, label_img=label_img, tag=tag
        ),
    )
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    dataset = cli.datamodule.split_dataset("test")
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        expected = cli.model.eval().backbone(images)  # as in the test loop (BatchNorm statistics)
    torch.testing.assert_close(sent["mat"], expected, rtol=1e-4, atol=1e-5)
    assert sent["tag"] == "test/embeddings" and projector.sent == ["test/embeddings"]
    assert sent["label_img"].shape == (len(dataset), 3, 32, 32)
    assert float(sent["label_img"].min()) >= 0.0 and float(sent["label_img"].max()) <= 1.0
