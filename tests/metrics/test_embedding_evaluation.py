"""EmbeddingEvaluation: one stored copy of the samples gives exactly the values of the separate metrics
(SilhouetteScore, RetrievalMetrics, ClusteringMetrics, FewShotAccuracy, each fed the same L2-normalised
batches), hands its gathered samples to a consumer once, and under DDP (2 gloo processes, in
``test_embedding_metric_states.py``) equals one process on the concatenated data."""

from __future__ import annotations

import warnings

import pytest
import torch

from silhouette_lightning.metrics import (
    ClusteringMetrics,
    EmbeddingEvaluation,
    FewShotAccuracy,
    FewShotSettings,
    RetrievalMetrics,
    SilhouetteScore,
)

FEWSHOT = FewShotSettings(ways=[2, 3], shots=[1, 2], queries=3, episodes=20)


def data(n: int = 48, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centers = 2 * torch.randn(4, dim, generator=g)
    return centers[labels] + torch.randn(n, dim, generator=g), labels


def separate_metrics(batches, fewshot: FewShotSettings | None) -> dict[str, torch.Tensor]:
    """The oracle: one metric object per family, each keeping its own copy (the former composition)."""
    metrics = [SilhouetteScore(), RetrievalMetrics(k=(5,), distance="cosine"), ClusteringMetrics(seed=0)]
    metrics += [FewShotAccuracy(fewshot)] if fewshot is not None else []
    for x, y in batches:
        unit = torch.nn.functional.normalize(x.float(), dim=1)
        for metric in metrics:
            metric.update(unit, y)
    values = {"silhouette": metrics[0].compute()}
    for metric in metrics[1:]:
        values.update(metric.compute())
    return values


@pytest.mark.parametrize("fewshot", [None, FEWSHOT], ids=["plain", "fewshot"])
def test_values_equal_the_separate_metrics_exactly(fewshot):
    x, y = data()
    batches = [(x[:20], y[:20]), (x[20:].double(), y[20:])]
    evaluation = EmbeddingEvaluation(fewshot=fewshot)
    for batch in batches:
        evaluation.update(*batch)
    values = evaluation.compute()
    expected = separate_metrics(batches, fewshot)
    assert list(values) == list(expected) == evaluation.names()
    for name, value in expected.items():
        assert values[name].dtype == value.dtype and torch.equal(values[name], value), name


def test_the_consumer_gets_the_samples_once_and_reset_cancels_it():
    x, y = data()
    evaluation = EmbeddingEvaluation()
    seen = []
    evaluation.send_samples_to(lambda embeddings, labels: seen.append((embeddings, labels)))
    evaluation.update(x, y)
    evaluation.compute()
    assert len(seen) == 1
    torch.testing.assert_close(seen[0][0], torch.nn.functional.normalize(x, dim=1))
    assert torch.equal(seen[0][1], y)
    evaluation.reset()
    evaluation.update(x, y)
    evaluation.compute()
    assert len(seen) == 1  # once per request
    evaluation.send_samples_to(lambda embeddings, labels: seen.append((embeddings, labels)))
    evaluation.reset()
    evaluation.update(x, y)
    evaluation.compute()
    assert len(seen) == 1  # reset() cancelled the request


def test_no_samples_give_zeros_with_a_warning_and_an_empty_consumer_call():
    evaluation = EmbeddingEvaluation()
    seen = []
    evaluation.send_samples_to(lambda embeddings, labels: seen.append((embeddings.shape, labels.shape)))
    with pytest.warns(UserWarning, match="without any samples; returning 0"):
        values = evaluation.compute()
    assert list(values) == evaluation.names() and all(float(v) == 0.0 for v in values.values())
    assert values["silhouette"].dtype == torch.float64 and values["nmi"].dtype == torch.float32
    assert seen == [((0, 0), (0,))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="has no samples"):  # few-shot episodes need samples
            EmbeddingEvaluation(fewshot=FEWSHOT).compute()


def ddp_part(rank: int) -> dict[str, object]:
    """Rank ``rank``'s part of a 2-process run (called by the DDP worker of
    ``test_embedding_metric_states.py``, which starts the processes once for both files)."""
    x, y = data()
    part = slice(0, 30) if rank == 0 else slice(30, None)
    evaluation = EmbeddingEvaluation(fewshot=FEWSHOT)
    seen = []
    evaluation.send_samples_to(lambda embeddings, labels: seen.append((embeddings, labels)))
    evaluation.update(x[part], y[part])
    return {"values": evaluation.compute(), "seen": seen}


def check_ddp_part(saved: dict) -> None:
    """Every rank gets the single-process values, and its consumer the samples of both ranks."""
    x, y = data()
    single = EmbeddingEvaluation(fewshot=FEWSHOT)
    single.update(x, y)
    for name, value in single.compute().items():
        torch.testing.assert_close(saved["values"][name], value, msg=name)
    [(embeddings, labels)] = saved["seen"]
    torch.testing.assert_close(embeddings, torch.nn.functional.normalize(x, dim=1))
    assert torch.equal(labels, y)
