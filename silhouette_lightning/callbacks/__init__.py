"""Callbacks: :class:`EmbeddingPlots` (embedding map and silhouette diagram, with its plotting functions) and
:class:`EmbeddingWriter` (``predict`` -> ``predictions.npz``)."""

from silhouette_lightning.callbacks.embedding_map import (
    plot_embedding_map,
    project_embeddings,
    umap_available,
)
from silhouette_lightning.callbacks.embedding_plots import EmbeddingPlots
from silhouette_lightning.callbacks.embedding_writer import EmbeddingWriter
from silhouette_lightning.callbacks.silhouette_diagram import plot_silhouette_diagram

__all__ = [
    "EmbeddingPlots",
    "EmbeddingWriter",
    "plot_embedding_map",
    "plot_silhouette_diagram",
    "project_embeddings",
    "umap_available",
]
