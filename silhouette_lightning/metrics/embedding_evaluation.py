"""The embedding metrics logged at validation and test, as one module: silhouette, retrieval, clustering and
(optionally) few-shot accuracy."""

from __future__ import annotations

from torch import Tensor, nn

from silhouette_lightning.metrics.clustering import ClusteringMetrics
from silhouette_lightning.metrics.fewshot import FewShotAccuracy, FewShotSettings
from silhouette_lightning.metrics.retrieval import RetrievalMetrics, metric_names
from silhouette_lightning.metrics.silhouette_score import SilhouetteScore


class EmbeddingEvaluation(nn.Module):
    """Accumulates embeddings ``[B, D]`` and labels over an evaluation loop; ``compute()`` gives a flat dict.

    Keys: ``silhouette`` (exact, scikit-learn's definition), ``precision_at_1``, ``recall_at_<k>``,
    ``map_at_r``, ``r_precision`` (leave-one-out retrieval, cosine) and ``nmi``, ``ami`` (k-means with k =
    the number of classes present), and with ``fewshot`` settings ``fewshot_<N>way_<K>shot`` (nearest class
    mean in seeded episodes, :mod:`~silhouette_lightning.metrics.fewshot`). Every metric syncs across
    processes itself.

    Args:
        normalize: L2-normalise the embeddings first, so the silhouette measures the geometry that the
            (normalising) losses shape.
        k: recall@k cut-offs (recall@1 would repeat precision@1).
        seed: of k-means.
        fewshot: few-shot settings, or None for no few-shot accuracy.
    """

    def __init__(
        self,
        normalize: bool = True,
        k: tuple[int, ...] = (5,),
        seed: int = 0,
        fewshot: FewShotSettings | None = None,
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.silhouette = SilhouetteScore()
        self.retrieval = RetrievalMetrics(k=k, distance="cosine")
        self.clustering = ClusteringMetrics(seed=seed)
        self.fewshot = FewShotAccuracy(fewshot) if fewshot is not None else None

    def _metrics(self) -> list:
        optional = [self.fewshot] if self.fewshot is not None else []
        return [self.silhouette, self.retrieval, self.clustering, *optional]

    def names(self) -> list[str]:
        """The keys of :meth:`compute`, known before any sample (for checks such as
        ``checkpoint.monitor``)."""
        fewshot = self.fewshot.settings.names if self.fewshot is not None else []
        return ["silhouette", *metric_names(self.retrieval.k), "nmi", "ami", *fewshot]

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        embeddings = embeddings.detach().float()
        if self.normalize:
            embeddings = nn.functional.normalize(embeddings, dim=1)
        for metric in self._metrics():
            metric.update(embeddings, labels)

    def compute(self) -> dict[str, Tensor]:
        return {
            "silhouette": self.silhouette.compute(),
            **self.retrieval.compute(),
            **self.clustering.compute(),
            **(self.fewshot.compute() if self.fewshot is not None else {}),
        }

    def reset(self) -> None:
        for metric in self._metrics():
            metric.reset()
