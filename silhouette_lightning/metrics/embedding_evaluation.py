"""The embedding metrics logged at validation and test, from one stored copy of the evaluated embeddings:
silhouette, retrieval, clustering and (optionally) few-shot accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from silhouette_lightning.metrics.clustering import clustering_metrics
from silhouette_lightning.metrics.embedding_metric import EmbeddingMetric
from silhouette_lightning.metrics.fewshot import FewShotSettings, fewshot_accuracy
from silhouette_lightning.metrics.retrieval import check_ks, metric_names, retrieval_metrics
from silhouette_lightning.metrics.silhouette_score import silhouette_score

SampleConsumer = Callable[[Tensor, Tensor], None]


class EmbeddingEvaluation(EmbeddingMetric):
    """Accumulates embeddings ``[B, D]`` and labels over an evaluation loop; ``compute()`` gives a flat dict.

    Keys: ``silhouette`` (exact, scikit-learn's definition, Euclidean: :func:`silhouette_score`),
    ``precision_at_1``, ``recall_at_<k>``, ``map_at_r``, ``r_precision`` (leave-one-out retrieval, cosine:
    :func:`retrieval_metrics`) and ``nmi``, ``ami`` (k-means with k = the number of classes present:
    :func:`clustering_metrics`), and with ``fewshot`` settings ``fewshot_<N>way_<K>shot`` (nearest class
    mean in seeded episodes, :func:`fewshot_accuracy`). The values equal the separate metrics
    (:class:`SilhouetteScore`, :class:`RetrievalMetrics`, :class:`ClusteringMetrics`,
    :class:`FewShotAccuracy`) on the same samples, but the samples are stored once and, under DDP, gathered
    from all processes once per ``compute()``. Without samples every value is 0 with a warning (few-shot
    accuracy, which needs episodes, raises). Input and state rules: :class:`EmbeddingMetric`.

    Those gathered samples can go to one more reader: :meth:`send_samples_to` (the plots callback).

    Args:
        normalize: L2-normalise the embeddings first, so the silhouette measures the geometry that the
            (normalising) losses shape.
        k: recall@k cut-offs (recall@1 would repeat precision@1).
        seed: of k-means.
        fewshot: few-shot settings, or None for no few-shot accuracy.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    #: The distance of the ``silhouette`` value (what a silhouette diagram of these samples must use).
    silhouette_distance = "euclidean"

    def __init__(
        self,
        normalize: bool = True,
        k: int | Sequence[int] = (5,),
        seed: int = 0,
        fewshot: FewShotSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.normalize = normalize
        self.k = check_ks(k)
        self.seed = seed
        self.fewshot = fewshot
        self._consumers: list[SampleConsumer] = []

    def names(self) -> list[str]:
        """The keys of :meth:`compute`, known before any sample (for checks such as
        ``checkpoint.monitor``)."""
        fewshot = self.fewshot.names if self.fewshot is not None else []
        return ["silhouette", *metric_names(self.k), "nmi", "ami", *fewshot]

    def update(self, embeddings: Tensor, labels: Tensor) -> None:
        embeddings = embeddings.detach().float()
        if self.normalize:
            embeddings = nn.functional.normalize(embeddings, dim=1)
        super().update(embeddings, labels)

    def send_samples_to(self, consumer: SampleConsumer) -> None:
        """Have the next :meth:`compute` call ``consumer(embeddings [N, D], labels [N])`` once, with the
        samples it computes on (gathered from every process, L2-normalised with ``normalize``; ``[0, 0]``
        and ``[0]`` when there are none), on every process, before the metrics. ``reset()`` cancels it."""
        self._consumers.append(consumer)

    def compute(self) -> dict[str, Tensor]:
        # torchmetrics runs this with the states gathered from all processes: one sync for all metrics.
        if not self.has_samples:
            empty = torch.zeros(0, 0, device=self.device)
            self._hand_out(empty, torch.zeros(0, dtype=torch.long, device=self.device))
            return self._no_samples()
        embeddings, labels = self.samples()
        self._hand_out(embeddings, labels)
        values = {
            "silhouette": silhouette_score(embeddings, labels, distance=self.silhouette_distance),
            **retrieval_metrics(embeddings, labels, k=self.k, distance="cosine"),
            **clustering_metrics(embeddings, labels, seed=self.seed),
        }
        if self.fewshot is not None:
            s = self.fewshot
            for name, (n, k) in zip(s.names, [(n, k) for n in s.ways for k in s.shots], strict=True):
                values[name] = fewshot_accuracy(embeddings, labels, n, k, s.queries, s.episodes, s.seed)
        return values

    def _hand_out(self, embeddings: Tensor, labels: Tensor) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer(embeddings, labels)

    def _no_samples(self) -> dict[str, Tensor]:
        self.warn_no_samples()
        if self.fewshot is not None:
            self.samples()  # raises: few-shot episodes cannot be drawn from nothing
        values = {"silhouette": torch.zeros((), dtype=torch.float64, device=self.device)}
        return {**values, **{name: torch.zeros((), device=self.device) for name in self.names()[1:]}}

    def reset(self) -> None:
        super().reset()
        self._consumers = []
