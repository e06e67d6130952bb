"""The embedding metrics logged at validation and test, as one module: silhouette, retrieval, clustering."""

from __future__ import annotations

from torch import Tensor, nn

from silhouette_lightning.metrics.clustering import ClusteringMetrics
from silhouette_lightning.metrics.retrieval import RetrievalMetrics, metric_names
from silhouette_lightning.metrics.silhouette_score import SilhouetteScore


class EmbeddingEvaluation(nn.Module):
    """Accumulates embeddings ``[B, D]`` and labels over an evaluation loop; ``compute()`` gives a flat dict.

    Keys: ``silhouette`` (exact, scikit-learn's definition), ``precision_at_1``, ``recall_at_<k>``,
    ``map_at_r``, ``r_precision`` (leave-one-out retrieval, cosine) and ``nmi``, ``ami`` (k-means with k =
    the number of classes present). Every metric syncs across processes itself.

    Args:
        normalize: L2-normalise the embeddings first, so the silhouette measures the geometry that the
            (normalising) losses shape.
        k: recall@k cut-offs (recall@1 would repeat precision@1).
        seed: of k-means.
    """

    def __init__(self, normalize: bool = True, k: tuple[int, ...] = (5,), seed: int = 0) -> None:
        super().__init__()
        self.normalize = normalize
        self.silhouette = SilhouetteScore()
        self.retrieval = RetrievalMetrics(k=k, distance="cosine")
        self.clustering = ClusteringMetrics(seed=seed)

    def names(self) -> list[str]:
        """The keys of :meth:`compute`, known before any sample (for checks such as
        ``checkpoint.monitor``)."""
        return ["silhouette", *metric_names(self.retrieval.k), "nmi", "ami"]

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        embeddings = embeddings.detach().float()
        if self.normalize:
            embeddings = nn.functional.normalize(embeddings, dim=1)
        for metric in (self.silhouette, self.retrieval, self.clustering):
            metric.update(embeddings, labels)

    def compute(self) -> dict[str, Tensor]:
        return {
            "silhouette": self.silhouette.compute(),
            **self.retrieval.compute(),
            **self.clustering.compute(),
        }

    def reset(self) -> None:
        for metric in (self.silhouette, self.retrieval, self.clustering):
            metric.reset()
