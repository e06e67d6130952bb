"""The introspection baseline (configs/method/introspection.yaml): a pretrained backbone's features,
evaluated with the embedding metrics and without training, from a local checkpoint file."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch
import torchvision
from sklearn.metrics import silhouette_score
from torch import nn

from silhouette_lightning.cli import main
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import SoftSilhouetteTerm
from tests.cli_args import CONFIGS, QUICKSTART

INTROSPECTION = str(CONFIGS / "method" / "introspection.yaml")
# Noisy enough that the random-init "pretrained" features are imperfect (precision@1 about 0.6, silhouette
# about 0): a check that could not pass with a different representation.
OPTIONS = {"num_classes": 4, "samples_per_class": 30, "noise": 0.3}
DATA = {"dataset": "synthetic", "image_size": 8, "options": OPTIONS}
ARGS = [
    "--config", QUICKSTART,
    "--config", INTROSPECTION,
    "--data.dataset", DATA["dataset"],
    "--data.image_size", str(DATA["image_size"]),
    "--data.batch_size", "16",
    "--data.options", json.dumps(OPTIONS),
    "--model.backbone.init_args.small_images", "true",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--trainer.callbacks", "[]",  # no t-SNE plots: seconds, and tested elsewhere
]  # fmt: skip
STAGE_SPLIT = {"test": "test", "validate": "val"}
METRICS = ["silhouette", "precision_at_1", "recall_at_5", "map_at_r", "r_precision", "nmi", "ami"]


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the logger writes to ./runs


def _pretrained_resnet18(seed=0):
    """Stands in for a pretrained network: a seeded ResNet-18 with the 3x3 stem (for 8x8 images), random
    BatchNorm statistics and a 1000-class classifier, as a torchvision-style state dict would hold it."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18()
    model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


def _reference_features(model, split):
    """The oracle: that network, classifier and max-pool removed, on the split's images, in eval mode."""
    model.fc, model.maxpool = nn.Identity(), nn.Identity()
    dataset = ImageDataModule(**DATA).split_dataset(split)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = np.array([int(dataset[i][1]) for i in range(len(dataset))])
    with torch.no_grad():
        features = model.eval()(images)
    return nn.functional.normalize(features, dim=1).double().numpy(), labels


def _naive_precision_at_1(x, labels):
    """Leave-one-out nearest neighbour by cosine distance, one query at a time."""
    hits = []
    for q in range(len(x)):
        distances = [1.0 - float(x[q] @ x[j]) if j != q else np.inf for j in range(len(x))]
        hits.append(labels[int(np.argmin(distances))] == labels[q])
    return float(np.mean(hits))


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_introspection_reports_the_metrics_of_the_raw_pretrained_features(tmp_path, subcommand):
    model = _pretrained_resnet18()
    checkpoint = tmp_path / "resnet18_small_stem.pth"
    torch.save(model.state_dict(), checkpoint)

    main([subcommand, *ARGS, "--model.backbone.init_args.checkpoint", str(checkpoint)])

    stage = STAGE_SPLIT[subcommand]  # the metric prefix is the split name
    rows = list(csv.DictReader(open(tmp_path / "runs" / "introspection" / "version_0" / "metrics.csv")))
    logged = {key: float(value) for row in rows for key, value in row.items() if value not in ("", None)}
    assert all(f"{stage}/{name}" in logged for name in METRICS), sorted(logged)
    # A random classifier's accuracy would be a misleading number in a results table: not logged at all.
    assert not any(key.endswith("/acc") for key in logged), sorted(logged)

    features, labels = _reference_features(model, stage)
    assert len(set(labels.tolist())) == 4 and len(labels) >= 12
    assert logged[f"{stage}/silhouette"] == pytest.approx(silhouette_score(features, labels), abs=1e-5)
    naive_precision = _naive_precision_at_1(features, labels)  # one hit is 1/18
    assert logged[f"{stage}/precision_at_1"] == pytest.approx(naive_precision, abs=1e-6)  # float32


def test_introspection_cannot_be_fitted(tmp_path, capsys):
    checkpoint = tmp_path / "resnet18_small_stem.pth"
    torch.save(_pretrained_resnet18().state_dict(), checkpoint)
    with pytest.raises(SystemExit) as info:
        main(["fit", *ARGS, "--model.backbone.init_args.checkpoint", str(checkpoint)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Nothing to train" in err and "silhouette-fit test" in err and "Traceback" not in err


def test_report_accuracy_false_drops_the_untrained_classifier_warning():
    kwargs = dict(backbone=SmallCNN(width=4), num_classes=3, losses=[SoftSilhouetteTerm(input="features")])
    with pytest.warns(UserWarning, match="accuracy is chance level"):
        EmbeddingModule(**kwargs, eval_output="features")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = EmbeddingModule(**kwargs, eval_output="features", report_accuracy=False)
    assert not module.classifier.weight.requires_grad  # still frozen: nothing trains it
