"""What ``silhouette-embed`` leaves in its output folder: arrays, a CSV, the map (PNG, HTML), metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from silhouette_lightning.callbacks.embedding_map import plot_projected_map
from silhouette_lightning.metrics import EmbeddingEvaluation
from silhouette_lightning.metrics.fewshot import FewShotSettings

NPZ = "embeddings.npz"
CSV = "embeddings.csv"
PNG = "map.png"
HTML = "map.html"
METRICS = "metrics.json"
ALL = (NPZ, CSV, PNG, HTML, METRICS)


def write_arrays(
    folder: Path,
    vectors: np.ndarray,
    paths: list[str],
    coords: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str] | None,
) -> tuple[Path, Path]:
    """``embeddings.npz`` (``embeddings`` [N, D] float32, ``paths`` [N] str, ``coords`` [N, 2], and
    ``labels`` [N] int64 + ``class_names`` [K] str when labelled) and ``embeddings.csv`` (path, label, x,
    y; label empty when unlabelled)."""
    arrays: dict[str, np.ndarray] = {
        "embeddings": vectors.astype(np.float32, copy=False),
        "paths": np.asarray(paths, dtype=str),
        "coords": coords.astype(np.float32),
    }
    if labels is not None:
        arrays["labels"] = labels.astype(np.int64)
        arrays["class_names"] = np.asarray(class_names, dtype=str)
    npz = folder / NPZ
    np.savez(npz, **arrays)
    table = folder / CSV
    # utf-8-sig: spreadsheet programs then read non-ASCII file names correctly.
    with table.open("w", newline="", encoding="utf-8-sig") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label", "x", "y"])
        for i, path in enumerate(paths):
            label = "" if labels is None else class_names[int(labels[i])]
            writer.writerow([path, label, f"{coords[i, 0]:.6g}", f"{coords[i, 1]:.6g}"])
    return npz, table


def write_png(
    folder: Path, coords: np.ndarray, used: str, labels: np.ndarray | None, class_names: list[str] | None
) -> Path:
    if labels is None:
        labels, class_names = np.zeros(len(coords), dtype=np.int64), ["unlabelled"]
    figure = plot_projected_map(coords, labels, used, class_names, title="Embedded images")
    path = folder / PNG
    figure.savefig(path)
    return path


def embedding_metrics(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The run's embedding metrics (:class:`EmbeddingEvaluation`: silhouette, precision@1, recall@k,
    MAP@R, R-precision, NMI, AMI) of ``vectors`` ``[N, D]`` with ``labels`` ``[N]``, and the 5-way and
    20-way 1-shot accuracy (nearest class mean, 500 seeded episodes, every other sample of a class a query)
    where the folder has that many classes and every class at least 2 images.

    Metrics that need two classes or two samples per class give NaN in the JSON as ``null``.
    """
    counts = np.bincount(labels.astype(np.int64))
    counts = counts[counts > 0]
    ways = [n for n in (5, 20) if n <= len(counts)]
    fewshot = FewShotSettings(ways=ways, shots=1, queries=None) if ways and counts.min() >= 2 else None
    evaluation = EmbeddingEvaluation(fewshot=fewshot)
    evaluation.update(torch.from_numpy(vectors), torch.from_numpy(labels.astype(np.int64)))
    return {name: float(value) for name, value in evaluation.compute().items()}


def write_metrics(folder: Path, metrics: dict[str, float], extra: dict) -> Path:
    path = folder / METRICS
    clean = {k: (None if v != v else v) for k, v in metrics.items()}  # NaN is not JSON
    path.write_text(json.dumps({**extra, "metrics": clean}, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path
