"""Callbacks: :class:`EmbeddingPlots` (embedding map and silhouette diagram, with its plotting functions),
:class:`EmbeddingWriter` (``predict`` -> ``predictions.npz``), :class:`EmbeddingProjector` (test and predict
embeddings in TensorBoard's Projector), :class:`EpochTimer` (seconds per training
epoch), and for resumable runs :class:`InterruptCheckpoint` (a checkpoint on SIGTERM / Ctrl+C) and
:class:`EpochSeed`."""

from silhouette_lightning.callbacks.embedding_map import (
    plot_embedding_map,
    project_embeddings,
    umap_available,
)
from silhouette_lightning.callbacks.embedding_plots import EmbeddingPlots
from silhouette_lightning.callbacks.embedding_projector import EmbeddingProjector
from silhouette_lightning.callbacks.embedding_writer import EmbeddingWriter
from silhouette_lightning.callbacks.epoch_seed import EpochSeed
from silhouette_lightning.callbacks.epoch_timer import EpochTimer
from silhouette_lightning.callbacks.interrupt_checkpoint import InterruptCheckpoint
from silhouette_lightning.callbacks.silhouette_diagram import plot_silhouette_diagram

__all__ = [
    "EmbeddingPlots",
    "EmbeddingProjector",
    "EmbeddingWriter",
    "EpochSeed",
    "EpochTimer",
    "InterruptCheckpoint",
    "plot_embedding_map",
    "plot_silhouette_diagram",
    "project_embeddings",
    "umap_available",
]
