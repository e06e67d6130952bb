import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from matplotlib.figure import Figure
from PIL import Image

from silhouette_lightning.callbacks import (
    EmbeddingPlots,
    plot_embedding_map,
    plot_silhouette_diagram,
    project_embeddings,
)
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.metrics.silhouette_score import silhouette_samples_exact
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(does not have many workers|number of training batches|GPU available|TPU available)"
)


def _blobs(n_per_class=15, dim=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centers[labels] + torch.randn(len(labels), dim, generator=g), labels


def _not_blank(path):
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.std() > 0
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1


@pytest.mark.parametrize("method", ["pca", "tsne", "auto"])
def test_plot_embedding_map_returns_a_figure(method, tmp_path):
    x, y = _blobs()
    fig = plot_embedding_map(x, y, ["a", "b", "c"], method=method, seed=0)
    assert isinstance(fig, Figure)
    assert fig.projection_method in {"pca", "tsne", "umap"}
    fig.savefig(tmp_path / "map.png")
    _not_blank(tmp_path / "map.png")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["a", "b", "c"]


def test_two_dimensional_embedding_is_drawn_as_it_is():
    x, y = _blobs(dim=2)
    coords, method = project_embeddings(x, "tsne")
    assert method == "identity" and np.allclose(coords, x.numpy())
    fig = plot_embedding_map(x, y, method="pca")
    assert fig.projection_method == "identity"
    offsets = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert np.allclose(np.sort(offsets, axis=0), np.sort(x.numpy(), axis=0))


def test_unknown_projection_raises():
    x, y = _blobs()
    with pytest.raises(ValueError, match="Unknown projection"):
        project_embeddings(x, "mds")


def test_plot_silhouette_diagram_returns_a_figure(tmp_path):
    x, y = _blobs()
    s = silhouette_samples_exact(x, y)
    fig = plot_silhouette_diagram(s, y, ["a", "b", "c"])
    assert isinstance(fig, Figure)
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.isclose(dashed[0].get_xdata()[0], float(s.mean()))
    fig.savefig(tmp_path / "diagram.png")
    _not_blank(tmp_path / "diagram.png")
    with pytest.raises(ValueError, match="at least 2 classes"):
        plot_silhouette_diagram(s[:5], torch.zeros(5, dtype=torch.long))


def _fit_and_test(tmp_path, callback, embedding_dim=8):
    torch.manual_seed(0)
    model = EmbeddingModule(SmallCNN(width=4), num_classes=3, embedding_dim=embedding_dim)
    data = ImageDataModule(
        dataset="synthetic",
        image_size=8,
        batch_size=16,
        options={"num_classes": 3, "samples_per_class": 20},
    )
    trainer = Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data)
    return trainer


def test_callback_writes_pngs_during_fit_and_test(tmp_path):
    callback = EmbeddingPlots(every_n_epochs=1, projection="pca")
    trainer = _fit_and_test(tmp_path, callback)
    plots = tmp_path / "lightning_logs" / "version_0" / "plots"
    assert trainer.log_dir == str(plots.parent)
    expected = [
        f"val_{kind}_epoch{e}.png" for e in (0, 1) for kind in ("embedding_map", "silhouette_diagram")
    ]
    expected += [f"test_{kind}_epoch2.png" for kind in ("embedding_map", "silhouette_diagram")]
    assert sorted(p.name for p in plots.iterdir()) == sorted(expected)
    for name in expected:
        _not_blank(plots / name)
    assert callback.last_projection == "pca"


def test_callback_every_n_epochs_and_two_dimensional_embedding(tmp_path):
    callback = EmbeddingPlots(every_n_epochs=5, projection="tsne")
    _fit_and_test(tmp_path, callback, embedding_dim=2)
    plots = tmp_path / "lightning_logs" / "version_0" / "plots"
    names = {p.name for p in plots.iterdir()}
    # Not due at epoch 0, but epoch 1 is the last one.
    assert "val_embedding_map_epoch0.png" not in names and "val_embedding_map_epoch1.png" in names
    assert callback.last_projection == "identity"


def test_plotting_error_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no ink")

    monkeypatch.setattr("silhouette_lightning.callbacks.embedding_plots.plot_silhouette_diagram", broken)
    monkeypatch.setattr("silhouette_lightning.callbacks.embedding_plots.plot_embedding_map", broken)
    callback = EmbeddingPlots(every_n_epochs=1, projection="pca")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _fit_and_test(tmp_path, callback)
    assert trainer.state.finished
    messages = [str(w.message) for w in caught if "EmbeddingPlots" in str(w.message)]
    assert any("no ink" in m and "embedding map" in m for m in messages)
    assert any("no ink" in m and "silhouette diagram" in m for m in messages)
    assert callback.saved == []


def test_single_class_skips_the_diagram_with_a_warning(tmp_path):
    callback = EmbeddingPlots(projection="pca")
    x, y = _blobs()

    class FakeTrainer:
        current_epoch = 0
        global_step = 0
        loggers = []
        datamodule = None

    with pytest.warns(UserWarning, match="silhouette diagram is skipped"):
        callback._draw(FakeTrainer(), "val", x, torch.zeros_like(y), "euclidean", str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["val_embedding_map_epoch0.png"]


def test_invalid_arguments():
    with pytest.raises(ValueError):
        EmbeddingPlots(every_n_epochs=0)
    with pytest.raises(ValueError):
        EmbeddingPlots(projection="mds")


def test_figures_go_to_a_tensorboard_logger(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    calls = []

    class Experiment:
        def add_figure(self, tag, figure, global_step=None, close=True):
            calls.append((tag, type(figure), global_step, close))

    class FakeTensorBoard(TensorBoardLogger):  # no tensorboard install needed
        experiment = Experiment()

    class FakeTrainer:
        current_epoch = 3
        global_step = 12
        loggers = [object.__new__(FakeTensorBoard)]
        datamodule = None

    x, y = _blobs()
    EmbeddingPlots(projection="pca")._draw(FakeTrainer(), "test", x, y, "euclidean", str(tmp_path))
    assert calls == [
        ("test/embedding_map", Figure, 12, False),
        ("test/silhouette_diagram", Figure, 12, False),
    ]
    assert {p.name for p in tmp_path.iterdir()} == {
        "test_embedding_map_epoch3.png",
        "test_silhouette_diagram_epoch3.png",
    }
