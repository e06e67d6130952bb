"""``silhouette-embed``: a trained checkpoint embeds any image folder and maps it (arrays, CSV, PNG, HTML).

Oracles: the embeddings equal the model's own forward pass on the images prepared by hand; the metrics
equal scikit-learn's silhouette score and a naive leave-one-out precision@1; the 2-D map of a 2-D model
is the embedding itself.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import silhouette_score

from silhouette_lightning.cli import main as fit_main
from silhouette_lightning.data.sources.image_folder import load_rgb_image
from silhouette_lightning.embed.checkpoint import load_trained_embedder
from silhouette_lightning.embed.command import main
from silhouette_lightning.embed.outputs import embedding_metrics
from silhouette_lightning.metrics import fewshot_accuracy
from tests.cli_args import TINY

# Class folders unlike the 3 synthetic training classes: 4 classes, names with spaces and non-ASCII.
CLASSES = {
    "red cat": (200, 40, 40),
    "grün": (40, 190, 40),
    "blue sky": (40, 40, 200),
    "ørange": (230, 140, 20),
}
PER_CLASS = 5


def _fit(root: Path, name: str, *extra: str) -> Path:
    fit_main(
        [
            "fit",
            *TINY,
            "--trainer.max_epochs",
            "1",
            "--test_after_fit",
            "false",
            "--trainer.callbacks",
            "[]",
            "--trainer.logger.init_args.save_dir",
            str(root / "runs"),
            "--trainer.logger.init_args.name",
            name,
            *extra,
        ]
    )
    return root / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Two checkpoints trained for one epoch on 3 synthetic classes: 8-D and 2-D embeddings."""
    root = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return {
            "8d": _fit(root, "eight"),
            "2d": _fit(root, "two", "--model.embedding_dim", "2"),
        }


def _image(path: Path, color: tuple[int, int, int], seed: int, size=(20, 14)) -> None:
    # Half class colour, half noise of its own: no two images (hence embeddings) tie.
    rng = np.random.default_rng(seed)
    pixels = 0.5 * np.asarray(color) + 0.5 * rng.integers(0, 256, (size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


@pytest.fixture
def labelled(tmp_path) -> Path:
    root = tmp_path / "new classes"
    for k, (name, color) in enumerate(CLASSES.items()):
        for i in range(PER_CLASS):
            _image(root / name / f"photo {i} ü.png", color, 10 * k + i)
    return root


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    root = tmp_path / "flat"
    for i in range(6):
        _image(root / f"img_{i}.jpg", (30 * i, 100, 200 - 30 * i), i)
    _image(root / "nested" / "deeper" / "été.png", (10, 10, 10), 99)
    return root


def _run(*args: str | Path) -> None:
    main([str(a) for a in args] + ["--quiet", "--num-workers", "0"])


def _csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "embeddings.csv", encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def _load(out: Path) -> dict[str, np.ndarray]:
    with np.load(out / "embeddings.npz") as data:
        return {key: data[key] for key in data.files}


def test_labelled_folder_of_other_classes(trained, labelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["8d"], labelled, "--output", out, "--projection", "pca")
    data = _load(out)
    expected_paths = sorted(str(p.relative_to(labelled).as_posix()) for p in labelled.rglob("*.png"))
    # Rows follow the scan order (class folders sorted, files sorted within each).
    assert sorted(data["paths"].tolist()) == expected_paths
    assert data["embeddings"].shape == (len(CLASSES) * PER_CLASS, 8)
    assert data["coords"].shape == (len(CLASSES) * PER_CLASS, 2)
    assert data["class_names"].tolist() == sorted(CLASSES)
    for path, label in zip(data["paths"], data["labels"], strict=True):
        assert path.split("/")[0] == data["class_names"][label]

    # Oracle: the model's forward pass on the images prepared by hand with the run's transform.
    embedder = load_trained_embedder(trained["8d"])
    images = torch.stack([embedder.transform(load_rgb_image(labelled / p)) for p in data["paths"]])
    with torch.no_grad():
        expected = embedder.model(images).numpy()
    np.testing.assert_allclose(data["embeddings"], expected, rtol=1e-4, atol=1e-5)

    rows = _csv_rows(out)
    assert [r["path"] for r in rows] == data["paths"].tolist()
    assert [r["label"] for r in rows] == [data["class_names"][k] for k in data["labels"]]
    np.testing.assert_allclose([float(r["x"]) for r in rows], data["coords"][:, 0], rtol=1e-5, atol=1e-6)

    # The metrics of the written embeddings (the metrics themselves: test_embedding_metrics_oracle).
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert set(metrics) >= {"silhouette", "precision_at_1", "map_at_r", "nmi"}
    expected_metrics = embedding_metrics(data["embeddings"], data["labels"])
    assert metrics == pytest.approx(expected_metrics, abs=1e-6)
    assert (out / "map.png").stat().st_size > 0
    html = (out / "map.html").read_text(encoding="utf-8")
    assert "grün" in html and "photo 0 ü.png" in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch: works offline


def test_embedding_metrics_oracle():
    """Clusters without near-ties: scikit-learn's silhouette of the L2-normalised vectors and
    a naive leave-one-out cosine precision@1."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 1.2  # overlapping a little: precision@1 below 1
    labels = np.repeat(np.arange(4), 10)
    vectors = (centres[labels] + rng.normal(size=(40, 6))).astype(np.float32)
    metrics = embedding_metrics(vectors, labels)
    normalized = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert metrics["silhouette"] == pytest.approx(silhouette_score(normalized, labels), abs=1e-5)
    similarity = normalized @ normalized.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    assert metrics["precision_at_1"] == pytest.approx(np.mean(labels[nearest] == labels), abs=1e-6)
    assert 0.3 < metrics["precision_at_1"] < 1.0


def test_embedding_metrics_include_the_few_shot_accuracy_the_folder_can_serve():
    """5-way 1-shot with 6 classes (no 20-way), equal to the few-shot metric's own function on the
    L2-normalised vectors; none with a class of a single image."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), 8)
    vectors = (rng.normal(size=(6, 5))[labels] + rng.normal(size=(48, 5))).astype(np.float32)
    metrics = embedding_metrics(vectors, labels)
    assert not any(name.startswith("fewshot_20way") for name in metrics)
    normalized = torch.nn.functional.normalize(torch.from_numpy(vectors), dim=1)
    direct = fewshot_accuracy(normalized, torch.from_numpy(labels), 5, 1, None, 500, 0)
    assert metrics["fewshot_5way_1shot"] == pytest.approx(float(direct), abs=1e-6)
    assert 0.2 < metrics["fewshot_5way_1shot"] < 1.0
    single = np.append(labels, 6)  # a seventh class with one image: no episode can use it as a query
    assert not any("fewshot" in name for name in embedding_metrics(np.vstack([vectors, vectors[:1]]), single))


def test_unlabelled_recursive_folder(trained, unlabelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["8d"], unlabelled, "--output", out, "--projection", "pca")
    data = _load(out)
    assert "labels" not in data and "class_names" not in data
    assert sorted(data["paths"].tolist()) == sorted(
        [f"img_{i}.jpg" for i in range(6)] + ["nested/deeper/été.png"]
    )
    rows = _csv_rows(out)
    assert len(rows) == 7 and all(r["label"] == "" for r in rows)
    assert not (out / "metrics.json").exists()
    assert (out / "map.html").is_file()


def test_class_folders_can_be_embedded_without_labels(trained, labelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["8d"], labelled, "--output", out, "--projection", "pca")
    assert (out / "metrics.json").is_file() and (out / "map.html").is_file()
    # Rerun into the same folder: no stale metrics or page of the earlier run stay behind.
    _run(trained["8d"], labelled, "--output", out, "--no-labels", "--no-html", "--projection", "pca")
    data = _load(out)
    assert "labels" not in data and len(data["paths"]) == len(CLASSES) * PER_CLASS
    assert not (out / "map.html").exists() and not (out / "metrics.json").exists()


def test_two_dimensional_model_is_drawn_as_is(trained, labelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["2d"], labelled, "--output", out)
    data = _load(out)
    assert data["embeddings"].shape[1] == 2
    np.testing.assert_array_equal(data["coords"], data["embeddings"])
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["projection"] == "identity"


def test_features_representation(trained, labelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["8d"], labelled, "--output", out, "--representation", "features", "--projection", "pca")
    embedder = load_trained_embedder(trained["8d"])
    assert _load(out)["embeddings"].shape[1] == embedder.model.backbone.num_features
    assert json.loads((out / "metrics.json").read_text(encoding="utf-8"))["representation"] == "features"


def test_corrupt_image_is_skipped_with_one_warning(trained, labelled, tmp_path, capsys):
    broken = [labelled / "grün" / "broken 1.png", labelled / "red cat" / "not an image.jpg"]
    for path in broken:
        path.write_bytes(b"this is not an image")
    out = tmp_path / "out"
    _run(trained["8d"], labelled, "--output", out, "--projection", "pca")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert all(str(path) in warnings[0] for path in broken)
    data = _load(out)
    assert len(data["paths"]) == len(CLASSES) * PER_CLASS  # every readable image is kept
    assert not any("broken" in p or "not an image" in p for p in data["paths"])


def _exit_message(capsys, *args) -> str:
    with pytest.raises(SystemExit) as stop:
        _run(*args)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("silhouette-embed: error: ")
    return err[0]


def test_bad_input_exits_2_with_one_line(trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No images" in _exit_message(capsys, trained["8d"], empty, "--output", tmp_path / "o")
    texts = tmp_path / "texts"
    (texts / "class").mkdir(parents=True)
    (texts / "class" / "notes.txt").write_text("no image here")
    assert "No images" in _exit_message(capsys, trained["8d"], texts, "--output", tmp_path / "o")
    missing = tmp_path / "nowhere"
    assert "does not exist" in _exit_message(capsys, trained["8d"], missing, "-o", tmp_path / "o")

    images = tmp_path / "images"
    _image(images / "a.png", (1, 2, 3), 0)
    not_ckpt = tmp_path / "notes.ckpt"
    not_ckpt.write_text("hello")
    assert "Cannot read" in _exit_message(capsys, not_ckpt, images, "--output", tmp_path / "o")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, foreign)
    assert "not a checkpoint of this project" in _exit_message(capsys, foreign, images, "-o", tmp_path / "o")
    assert "--batch-size must be >= 1" in _exit_message(
        capsys, trained["8d"], images, "-o", tmp_path / "o", "--batch-size", "0"
    )
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in _exit_message(
            capsys, trained["8d"], images, "-o", tmp_path / "o", "--device", "cuda"
        )
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_backbone_that_cannot_be_rebuilt_exits_2(trained, tmp_path, capsys):
    checkpoint = torch.load(trained["8d"], weights_only=False)
    checkpoint["hyper_parameters"]["backbone"]["class_path"] = "some_missing_package.FancyNet"
    broken = tmp_path / "broken.ckpt"
    torch.save(checkpoint, broken)
    images = tmp_path / "images"
    _image(images / "a.png", (1, 2, 3), 0)
    message = _exit_message(capsys, broken, images, "--output", tmp_path / "o")
    assert "Cannot rebuild the model" in message and "some_missing_package.FancyNet" in message


def test_checkpoint_without_run_folder_needs_config(trained, labelled, tmp_path, capsys):
    # The checkpoint copied away from its run folder: --config names the run's config.yaml.
    alone = tmp_path / "alone.ckpt"
    shutil.copy(trained["8d"], alone)
    assert "--config" in _exit_message(capsys, alone, labelled, "--output", tmp_path / "a")
    config = trained["8d"].parent.parent / "config.yaml"
    _run(alone, labelled, "--output", tmp_path / "a", "--config", config, "--projection", "pca", "--no-html")
    _run(trained["8d"], labelled, "--output", tmp_path / "b", "--projection", "pca", "--no-html")
    np.testing.assert_array_equal(_load(tmp_path / "a")["embeddings"], _load(tmp_path / "b")["embeddings"])


def test_fit_predict_on_other_classes_and_test_refuses(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = ["--data.options", '{"num_classes": 5, "samples_per_class": 20}', "--trainer.logger", "false"]
    output = tmp_path / "predictions.npz"
    fit_main(
        [
            "predict",
            *TINY,
            *other,
            "--ckpt_path",
            str(trained["8d"]),
            "--trainer.callbacks+=silhouette_lightning.callbacks.embedding_writer.EmbeddingWriter",
            f"--trainer.callbacks.output_path={output}",
        ]
    )
    with np.load(output) as data:
        assert data["embeddings"].shape[1] == 8 and set(data["labels"].tolist()) == set(range(5))
    with pytest.raises(SystemExit) as stop:
        fit_main(["test", *TINY, *other, "--ckpt_path", str(trained["8d"])])
    assert stop.value.code == 2
    assert "trained on 3 classes but the data now has 5" in capsys.readouterr().err


def _chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="no headless Chromium installed (apt-get install chromium)")
def test_map_page_in_a_headless_browser(trained, labelled, tmp_path):
    out = tmp_path / "out"
    _run(trained["8d"], labelled, "--output", out, "--projection", "pca")
    page = (out / "map.html").resolve()
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: every host name fails to resolve
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1000,700",
        "--virtual-time-budget=5000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ})
    body = result.stdout[result.stdout.find("<body") :][:300]
    assert 'data-ready="true"' in body, (body, result.stderr[-2000:])
    assert f'data-drawn="{len(CLASSES) * PER_CLASS}"' in body, body  # every thumbnail drawn
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console


def test_python_dash_m_embed_is_the_command(tmp_path):
    """A real process through ``python -m silhouette_lightning embed``: one line on stderr, status 2."""
    not_ckpt = tmp_path / "x.ckpt"
    not_ckpt.write_text("hello")
    (tmp_path / "images").mkdir()
    _image(tmp_path / "images" / "a.png", (1, 2, 3), 0)
    images, out = tmp_path / "images", tmp_path / "o"
    command = [sys.executable, "-m", "silhouette_lightning", "embed", not_ckpt, images, "-o", out]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().startswith("silhouette-embed: error: Cannot read")
    assert len(result.stderr.strip().splitlines()) == 1


def test_pretrained_backbone_is_rebuilt_offline(tmp_path, monkeypatch):
    """A run that started from downloaded ImageNet weights (frozen): its checkpoint rebuilds without them
    (no download; an empty TORCH_HOME), and the checkpoint's own weights are the ones loaded."""
    from silhouette_lightning.embed.checkpoint import read_checkpoint, rebuild_model
    from silhouette_lightning.models import TorchvisionBackbone
    from silhouette_lightning.module import EmbeddingModule

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty torch home"))
    torch.manual_seed(0)
    backbone = TorchvisionBackbone("resnet18")
    module = EmbeddingModule(backbone, num_classes=3, embedding_dim=4)
    backbone_config = {
        "class_path": "silhouette_lightning.models.TorchvisionBackbone",
        "init_args": {"name": "resnet18", "weights": "DEFAULT", "freeze": True},
    }
    hparams = {"_instantiator": "lightning.pytorch.cli.instantiate_module", "backbone": backbone_config}
    hparams.update(num_classes=3, embedding_dim=4)
    path = tmp_path / "pretrained.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": module.state_dict()}, path)
    rebuilt = rebuild_model(read_checkpoint(path), path)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), module.eval()(images))
    assert not (tmp_path / "empty torch home").exists()  # nothing was downloaded
