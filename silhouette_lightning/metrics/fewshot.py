"""N-way K-shot accuracy of an embedding: nearest-class-mean classification in seeded random episodes.

The usual few-shot protocol (Snell et al., "Prototypical Networks", 2017), applied to a *fixed* embedding,
typically on classes the model never saw (``data.unseen_classes``). One episode:

1. draw ``N`` of the ``C`` classes present;
2. for each of them draw ``K`` support and ``Q`` query samples (disjoint; ``queries=None``: all the class's
   other samples are queries);
3. class mean ``mu_c = (1/K) sum_{support s of c} x_s`` (float64);
4. each query ``q`` is classified as ``argmin_c ||x_q - mu_c||^2`` (ties: the class drawn first);
5. episode accuracy = correct queries / queries.

``fewshot_<N>way_<K>shot`` is the mean episode accuracy over ``episodes`` episodes. Chance level is 1/N.

Episode protocol (exact, so that a naive loop can reproduce it; ``tests/metrics/test_fewshot.py`` does):

* samples are first put in a *canonical order*: by label, then lexicographically by their embedding rows
  (so the result does not depend on the order in which processes gathered them: identical on every rank
  and equal to a single-process run on the same samples);
* ``classes = sorted(unique(labels))``; ``members[c]`` = positions of class ``c`` in the canonical order;
* for every (N, K) setting a fresh ``g = torch.Generator().manual_seed(seed)``; per episode
  ``chosen = torch.randperm(C, generator=g)[:N]`` (indices into ``classes``), then for each chosen class
  in that order ``p = torch.randperm(len(members[c]), generator=g)``; support = ``members[c][p[:K]]``,
  queries = ``members[c][p[K:K + Q]]`` (``p[K:]`` when ``queries`` is None).

Every class must have at least ``K + Q`` samples (``K + 1`` with ``queries=None``) and ``N <= C``;
otherwise :func:`check_fewshot_feasible` raises a ``ConfigError`` naming the class (the module runs it on
the test split before training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.embedding_metric import EmbeddingMetric


def _positive_ints(value: int | Sequence[int], key: str) -> tuple[int, ...]:
    values = (value,) if isinstance(value, int) else tuple(value)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"{key} must be a positive integer or a non-empty list of them, got {value!r}.")
    return tuple(dict.fromkeys(values))


class FewShotSettings:
    """Validated few-shot settings: ``ways`` (N values), ``shots`` (K values), ``queries`` per class (Q, or
    None for all remaining samples), ``episodes``, ``seed``, and ``val`` (also measure at validation, not only
    at test). ``key`` prefixes error messages."""

    def __init__(
        self,
        ways: int | Sequence[int] = (5,),
        shots: int | Sequence[int] = (1,),
        queries: int | None = 15,
        episodes: int = 500,
        seed: int = 0,
        val: bool = False,
        key: str = "fewshot",
    ) -> None:
        self.key = key
        self.ways = _positive_ints(ways, f"{key}.ways")
        if min(self.ways) < 2:
            raise ConfigError(f"{key}.ways must be >= 2 (a 1-way episode is always right), got {ways!r}.")
        self.shots = _positive_ints(shots, f"{key}.shots")
        if queries is not None:
            _positive_ints(queries, f"{key}.queries")
        self.queries = queries
        _positive_ints(episodes, f"{key}.episodes")
        self.episodes = episodes
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"{key}.seed must be an integer, got {seed!r}.")
        self.seed = seed
        if not isinstance(val, bool):
            raise ConfigError(f"{key}.val must be true or false, got {val!r}.")
        self.val = val

    @classmethod
    def from_config(cls, config: Mapping[str, Any], key: str) -> FewShotSettings:
        valid = ("ways", "shots", "queries", "episodes", "seed", "val")
        unknown = sorted(set(config) - set(valid))
        if unknown:
            raise ConfigError(f"{key}: unknown setting(s) {unknown}; valid: {list(valid)}.")
        return cls(**config, key=key)

    @property
    def names(self) -> list[str]:
        """The logged names, ``fewshot_<N>way_<K>shot``, in compute order."""
        return [f"fewshot_{n}way_{k}shot" for n in self.ways for k in self.shots]

    def samples_needed(self, shots: int) -> int:
        return shots + (1 if self.queries is None else self.queries)


def check_fewshot_feasible(
    settings: FewShotSettings, class_counts: Mapping[str, int], where: str = "the test split"
) -> None:
    """``ConfigError`` if some episode cannot be drawn: N larger than the number of classes, or a class
    with fewer samples than ``K + Q`` (named). ``class_counts``: class name -> number of samples."""
    key = settings.key
    if max(settings.ways) > len(class_counts):
        raise ConfigError(
            f"{key}.ways = {list(settings.ways)} asks for {max(settings.ways)}-way episodes but there are "
            f"only {len(class_counts)} classes in {where}: lower {key}.ways to at most {len(class_counts)}"
            + (" (or hold out more classes with data.unseen_classes)." if "unseen" in where else ".")
        )
    needed = settings.samples_needed(max(settings.shots))
    short = {name: n for name, n in class_counts.items() if n < needed}
    if short:
        name, count = min(short.items(), key=lambda item: item[1])
        queries = "1 query" if settings.queries is None else f"{key}.queries = {settings.queries}"
        raise ConfigError(
            f"{key}: class {name!r} of {where} has {count} samples but {max(settings.shots)}-shot episodes "
            f"with {queries} need {needed} per class ({len(short)} too small: {sorted(short)[:10]}). "
            f"Lower {key}.shots or {key}.queries (queries: null uses all remaining samples)."
        )


def canonical_order(embeddings: Tensor, labels: Tensor) -> Tensor:
    """Permutation sorting the samples by label, then lexicographically by embedding row (stable sorts from
    the last key to the first); equal rows are interchangeable, so any order among them gives one result."""
    order = torch.arange(labels.shape[0], device=labels.device)
    for column in range(embeddings.shape[1] - 1, -1, -1):
        order = order[torch.argsort(embeddings[order, column], stable=True)]
    return order[torch.argsort(labels[order], stable=True)]


def fewshot_accuracy(
    embeddings: Tensor, labels: Tensor, ways: int, shots: int, queries: int | None, episodes: int, seed: int
) -> Tensor:
    """Mean nearest-class-mean accuracy over seeded ``ways``-way ``shots``-shot episodes (module docstring).

    ``embeddings`` ``[S, D]``, ``labels`` ``[S]``; returns a float64 scalar on ``embeddings``' device.
    """
    order = canonical_order(embeddings, labels)
    x = embeddings[order].double()
    y = labels[order]
    classes = torch.unique(y)
    members = [torch.nonzero(y == c).flatten().cpu() for c in classes]
    if ways > len(members):
        raise ValueError(
            f"{ways}-way episodes need {ways} classes, only {len(members)} present in the evaluated samples "
            "(fewer batches than the split, e.g. trainer.limit_test_batches?)."
        )
    needed = shots + (1 if queries is None else queries)
    if min(len(m) for m in members) < needed:
        raise ValueError(
            f"{shots}-shot episodes need {needed} samples per class, a class has {min(map(len, members))} in "
            "the evaluated samples (fewer batches than the split, e.g. trainer.limit_test_batches?)."
        )
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for _ in range(episodes):
        chosen = torch.randperm(len(members), generator=generator)[:ways]
        supports, query_rows, query_targets = [], [], []
        for position, c in enumerate(chosen.tolist()):
            perm = members[c][torch.randperm(len(members[c]), generator=generator)]
            supports.append(perm[:shots])
            picked = perm[shots:] if queries is None else perm[shots : shots + queries]
            query_rows.append(picked)
            query_targets.append(torch.full((len(picked),), position))
        support_index = torch.stack(supports).to(x.device)  # [N, K]
        means = x[support_index].mean(dim=1)  # [N, D] float64
        query_x = x[torch.cat(query_rows).to(x.device)]
        # Squared distances [Qn, N], one class at a time (exact differences, not cdist's matmul form,
        # and memory Qn x D even when queries=None makes Qn large); argmin takes the first of ties.
        distances = torch.stack([(query_x - mean).square().sum(dim=1) for mean in means], dim=1)
        predicted = distances.argmin(dim=1)
        total += (predicted == torch.cat(query_targets).to(x.device)).double().mean()
    return total / episodes


class FewShotAccuracy(EmbeddingMetric):
    """``fewshot_<N>way_<K>shot`` for every N in ``ways`` and K in ``shots`` (see the module docstring).

    Stores the evaluated embeddings and labels (gathered across processes); ``compute`` draws the episodes
    with a seeded generator after the canonical ordering, so every rank computes the same value.
    """

    def __init__(self, settings: FewShotSettings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or FewShotSettings()

    def compute(self) -> dict[str, Tensor]:
        embeddings, labels = self.samples()
        s = self.settings
        values = [
            fewshot_accuracy(embeddings, labels, n, k, s.queries, s.episodes, s.seed)
            for n in s.ways
            for k in s.shots
        ]
        return dict(zip(s.names, values, strict=True))
