"""`silhouette-fit predict` writes predictions.npz: checked against the model's own forward pass."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from silhouette_lightning.cli import main, run_cli
from silhouette_lightning.module import EmbeddingModule
from tests.cli_args import QUICKSTART, TINY

ONE_STEP = [
    "--test_after_fit",
    "false",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "1",
    "--trainer.limit_val_batches",
    "1",
]


pytestmark = pytest.mark.usefixtures("in_tmp_path")


def _forward(model: EmbeddingModule, split) -> np.ndarray:
    """Oracle: the test split's images one by one through the model, outside any trainer."""
    model.eval()
    with torch.no_grad():
        images = torch.stack([split[i][0] for i in range(len(split))])
        return model.encode(images).embeddings[:, 0].numpy()


def test_predict_writes_embeddings_equal_to_the_checkpoints_forward(tmp_path, caplog):
    main(["fit", *TINY, *ONE_STEP])
    ckpt = tmp_path / "runs" / "quickstart" / "version_0" / "checkpoints" / "last.ckpt"
    with caplog.at_level("INFO"):
        main(["predict", *TINY, "--ckpt_path", str(ckpt)])
    written = tmp_path / "runs" / "quickstart" / "version_1" / "predictions.npz"
    assert f"Predictions: {written.relative_to(tmp_path)} " in caplog.text

    data = np.load(written)
    assert sorted(data.files) == ["embeddings", "labels"]  # synthetic images have no files
    split = run_cli(["--config", QUICKSTART, *TINY[2:], "--trainer.logger", "false"], run=False)
    split = split.datamodule.split_dataset("test")
    assert data["embeddings"].dtype == np.float32 and data["labels"].dtype == np.int64
    assert data["embeddings"].shape == (len(split), 8)
    np.testing.assert_array_equal(data["labels"], split.targets)
    expected = _forward(EmbeddingModule.load_from_checkpoint(ckpt), split)
    np.testing.assert_allclose(data["embeddings"], expected, rtol=1e-5, atol=1e-6)


def _image_folder(root: Path) -> None:
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(6):
            color = (40 * i, 200 * label, 30)
            Image.new("RGB", (10, 10), color).save(root / name / f"{name}_{i}.png")


def test_predict_on_an_image_folder_writes_the_file_of_each_row(tmp_path):
    _image_folder(tmp_path / "images" / "train")
    args = [
        *TINY[:2],
        "--data.dataset",
        "imagefolder",
        "--data.root",
        "images",
        "--data.test_fraction",
        "0.5",
    ]
    args += ["--data.val_fraction", "0.2", "--data.image_size", "8", "--data.batch_size", "2"]
    args += [*TINY[10:], "--trainer.logger", "false"]
    cli = run_cli(["predict", *args])
    data = np.load(tmp_path / "predictions.npz")  # no logger: the default root dir
    split = cli.datamodule.split_dataset("test")
    paths = [Path(p) for p in data["paths"]]
    assert len(paths) == len(split) == len(set(paths)) >= 4
    # Each row's file is in the folder of its label, and the row's embedding is that file's.
    assert [p.parent.name for p in paths] == [["cat", "dog"][label] for label in data["labels"]]
    np.testing.assert_allclose(data["embeddings"], _forward(cli.model, split), rtol=1e-5, atol=1e-6)
    image = split.transform(Image.open(paths[-1]).convert("RGB"))
    np.testing.assert_allclose(
        data["embeddings"][-1], cli.model.encode(image[None]).embeddings[0, 0].detach().numpy(), atol=1e-6
    )


def test_a_configured_prediction_writer_replaces_the_default(tmp_path):
    writer = "silhouette_lightning.callbacks.embedding_writer.EmbeddingWriter"
    own = tmp_path / "own" / "emb.npz"
    main(["predict", *TINY, f"--trainer.callbacks+={writer}", "--trainer.callbacks.output_path", str(own)])
    assert np.load(own)["embeddings"].shape[1] == 8
    assert not list(tmp_path.rglob("predictions.npz"))
