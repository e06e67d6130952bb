"""2-D map of embeddings coloured by class: UMAP (if ``umap-learn`` is installed), t-SNE or PCA.

Pure functions on arrays; figures are ``matplotlib.figure.Figure`` objects rendered with Agg (never pyplot,
so nothing opens a window and the global backend is left alone).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

Projection = Literal["auto", "umap", "tsne", "pca"]
PROJECTIONS = ("auto", "umap", "tsne", "pca")


def umap_available() -> bool:
    """Whether ``umap-learn`` (the ``umap`` package) can be imported."""
    return importlib.util.find_spec("umap") is not None


def _as_numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _pca(x: np.ndarray) -> np.ndarray:
    t = torch.as_tensor(x, dtype=torch.float64)
    t = t - t.mean(dim=0, keepdim=True)
    if t.shape[0] < 2:
        return np.zeros((t.shape[0], 2))
    q = min(2, t.shape[0], t.shape[1])
    _, _, v = torch.pca_lowrank(t, q=q, center=False)
    coords = (t @ v[:, :q]).numpy()
    if q < 2:
        coords = np.pad(coords, ((0, 0), (0, 2 - q)))
    return coords


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(1.0, (x.shape[0] - 1) / 3))  # must stay < n_samples
    init = "pca" if x.shape[0] > 2 else "random"
    return TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed).fit_transform(x)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap

    n_neighbors = max(2, min(15, x.shape[0] - 1))
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed).fit_transform(x)


def project_embeddings(
    embeddings: Tensor | np.ndarray, method: Projection = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """Project ``[N, D]`` embeddings to ``[N, 2]``; returns the coordinates and the method used.

    An embedding with 2 dimensions is returned as it is (method ``"identity"``), one with 1 dimension is
    drawn on a line (``"identity"``, y = 0). Otherwise ``"auto"`` is UMAP when ``umap-learn`` is installed,
    else t-SNE; too few samples for t-SNE/UMAP (N < 5) fall back to PCA.

    Raises:
        ValueError: an unknown method, ``"umap"`` without ``umap-learn``, or not a 2-D array.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"Unknown projection {method!r}: choose one of {', '.join(map(repr, PROJECTIONS))}.")
    x = _as_numpy(embeddings).astype(np.float64, copy=False)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {x.shape}.")
    if x.shape[1] == 2:
        return x.copy(), "identity"
    if x.shape[1] == 1:
        return np.concatenate([x, np.zeros_like(x)], axis=1), "identity"
    if method == "umap" and not umap_available():
        raise ValueError("projection='umap' needs umap-learn (pip install umap-learn); use 'tsne' or 'pca'.")
    if method == "auto":
        method = "umap" if umap_available() else "tsne"
    if method != "pca" and x.shape[0] < 5:
        method = "pca"
    if method == "umap":
        return _umap(x, seed), "umap"
    if method == "tsne":
        return _tsne(x, seed), "tsne"
    return _pca(x), "pca"


def class_colors(num_classes: int) -> list:
    """Distinct colours: tab10 up to 10 classes, tab20 up to 20, then evenly spaced hues."""
    from matplotlib import colormaps

    if num_classes <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(num_classes)]
    if num_classes <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(num_classes)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(1, num_classes - 1)) for i in range(num_classes)]


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


_MAX_LEGEND_ENTRIES = 30


def plot_embedding_map(
    embeddings: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    method: Projection = "auto",
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Scatter plot of the 2-D projection of ``embeddings`` ``[N, D]``, coloured by ``labels`` ``[N]``.

    ``class_names[k]`` names label ``k`` in the legend (the label itself when missing). The method used
    (see :func:`project_embeddings`) is in the title and in ``figure.projection_method``.
    """
    coords, used = project_embeddings(embeddings, method, seed)
    return plot_projected_map(coords, labels, used, class_names, title)


def plot_projected_map(
    coords: np.ndarray,
    labels: Tensor | np.ndarray,
    used: str,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Scatter plot of coordinates ``[N, 2]`` already projected by method ``used`` (see
    :func:`project_embeddings`), coloured by ``labels`` ``[N]``."""
    labels_np = _as_numpy(labels).astype(np.int64).reshape(-1)
    if coords.shape[0] != labels_np.shape[0]:
        raise ValueError(f"{coords.shape[0]} embeddings but {labels_np.shape[0]} labels.")
    present = np.unique(labels_np)
    colors = class_colors(len(present))
    fig = Figure(figsize=(7.5, 6.0), dpi=100)
    ax = fig.add_subplot()
    size = 12 if len(labels_np) <= 2000 else 5
    for color, label in zip(colors, present, strict=True):
        mask = labels_np == label
        ax.scatter(
            coords[mask, 0],
            coords[mask, 1],
            s=size,
            color=color,
            alpha=0.8,
            linewidths=0,
            label=class_name(int(label), class_names),
        )
    names = {"identity": "embedding (2-D)", "umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
    ax.set_title(f"{title or 'Embedding map'}: {names[used]}, {len(labels_np)} samples")
    if used == "identity":
        ax.set_xlabel("dim 0")
        ax.set_ylabel("dim 1")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if len(present) <= _MAX_LEGEND_ENTRIES:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize="small",
            markerscale=2,
            frameon=False,
            ncol=1 if len(present) <= 15 else 2,
        )
    fig.tight_layout()
    fig.projection_method = used  # type: ignore[attr-defined]
    return fig
