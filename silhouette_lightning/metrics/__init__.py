"""torchmetrics ``Metric``s for evaluating embeddings (rank-safe, synced across processes)."""

from silhouette_lightning.metrics.clustering import ClusteringMetrics, clustering_metrics, kmeans_assignments
from silhouette_lightning.metrics.embedding_evaluation import EmbeddingEvaluation
from silhouette_lightning.metrics.fewshot import FewShotAccuracy, FewShotSettings, fewshot_accuracy
from silhouette_lightning.metrics.retrieval import RetrievalMetrics, retrieval_metrics
from silhouette_lightning.metrics.silhouette_score import (
    SilhouetteScore,
    silhouette_samples_exact,
    silhouette_score,
)

__all__ = [
    "ClusteringMetrics",
    "EmbeddingEvaluation",
    "FewShotAccuracy",
    "FewShotSettings",
    "RetrievalMetrics",
    "SilhouetteScore",
    "clustering_metrics",
    "fewshot_accuracy",
    "kmeans_assignments",
    "retrieval_metrics",
    "silhouette_samples_exact",
    "silhouette_score",
]
