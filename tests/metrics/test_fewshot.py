"""N-way K-shot accuracy: against a naive loop, on obvious cases, and its configuration errors."""

import pytest
import torch

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.metrics.fewshot import (
    FewShotAccuracy,
    FewShotSettings,
    check_fewshot_feasible,
    fewshot_accuracy,
)


def naive_fewshot(embeddings, labels, ways, shots, queries, episodes, seed):
    """The documented episode protocol, written with Python lists and loops."""
    rows = [[float(v) for v in row] for row in embeddings.double()]
    samples = sorted(zip([int(v) for v in labels], rows, strict=True))  # label, then lexicographic row
    classes = sorted({label for label, _ in samples})
    members = {c: [row for label, row in samples if label == c] for c in classes}
    g = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(episodes):
        chosen = [classes[i] for i in torch.randperm(len(classes), generator=g)[:ways].tolist()]
        means, episode_queries = [], []
        for position, c in enumerate(chosen):
            perm = torch.randperm(len(members[c]), generator=g).tolist()
            support = [members[c][i] for i in perm[:shots]]
            means.append([sum(col) / shots for col in zip(*support, strict=True)])
            picked = perm[shots:] if queries is None else perm[shots : shots + queries]
            episode_queries += [(members[c][i], position) for i in picked]
        correct = 0
        for row, target in episode_queries:
            d = [sum((a - b) ** 2 for a, b in zip(row, mean, strict=True)) for mean in means]
            correct += d.index(min(d)) == target
        accuracies.append(correct / len(episode_queries))
    return sum(accuracies) / episodes


@pytest.mark.parametrize(("ways", "shots", "queries"), [(3, 1, 4), (5, 2, None), (2, 3, 1)])
def test_equals_a_naive_loop(ways, shots, queries):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (90,), generator=g)
    labels[:36] = torch.arange(6).repeat(6)  # every class has >= 6 samples
    embeddings = torch.randn(90, 4, generator=g) + labels[:, None].float() * 0.4
    got = fewshot_accuracy(embeddings, labels, ways, shots, queries, episodes=25, seed=7)
    assert got.dtype == torch.float64
    expected = naive_fewshot(embeddings, labels, ways, shots, queries, 25, 7)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    # Not a constant: the accuracy is neither chance nor perfect on these overlapping clusters.
    assert 1 / ways < got.item() < 1.0


def test_sample_order_does_not_matter_and_the_metric_matches_the_function():
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(5).repeat(8)
    embeddings = torch.randn(40, 3, generator=g) + labels[:, None].float() * 0.3
    settings = FewShotSettings(ways=[2, 5], shots=[1, 2], queries=3, episodes=30, seed=4)
    metric = FewShotAccuracy(settings)
    perm = torch.randperm(40, generator=g)
    metric.update(embeddings[perm[:17]], labels[perm[:17]])  # two "ranks'" batches in another order
    metric.update(embeddings[perm[17:]], labels[perm[17:]])
    values = metric.compute()
    assert (
        list(values)
        == settings.names
        == [
            "fewshot_2way_1shot",
            "fewshot_2way_2shot",
            "fewshot_5way_1shot",
            "fewshot_5way_2shot",
        ]
    )
    for n in (2, 5):
        for k in (1, 2):
            direct = fewshot_accuracy(embeddings, labels, n, k, 3, 30, 4)
            assert values[f"fewshot_{n}way_{k}shot"].item() == direct.item()


def test_separated_clusters_are_perfect_and_identical_points_are_chance():
    labels = torch.arange(6).repeat_interleave(5)
    noise = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    separated = torch.eye(6)[labels] * 10 + 0.01 * noise
    assert fewshot_accuracy(separated, labels, 5, 1, 4, 50, 0).item() == 1.0
    same = torch.zeros(30, 6)
    # All distances tie: every query goes to the first drawn class, right for 1 of the N classes.
    assert fewshot_accuracy(same, labels, 5, 1, 4, 50, 0).item() == pytest.approx(1 / 5)


def test_seed_changes_the_episodes_and_is_reproducible():
    g = torch.Generator().manual_seed(3)
    labels = torch.arange(8).repeat(6)
    embeddings = torch.randn(48, 2, generator=g) + labels[:, None].float() * 0.2
    a = fewshot_accuracy(embeddings, labels, 5, 1, 5, 20, seed=0)
    assert a.item() == fewshot_accuracy(embeddings, labels, 5, 1, 5, 20, seed=0).item()
    assert a.item() != fewshot_accuracy(embeddings, labels, 5, 1, 5, 20, seed=1).item()


def test_feasibility_errors_name_the_class_and_the_key():
    settings = FewShotSettings(ways=[5], shots=[5], queries=15, key="model.fewshot")
    counts = {f"class{i}": 30 for i in range(6)} | {"tiny": 12}
    message = r"class 'tiny' .* has 12 samples .* need 20 .*Lower model.fewshot.shots"
    with pytest.raises(ConfigError, match=message):
        check_fewshot_feasible(settings, counts)
    three = {"a": 50, "b": 50, "c": 50}
    message = r"model.fewshot.ways .* 7-way .*only 3 classes.*data.unseen_classes"
    with pytest.raises(ConfigError, match=message):
        check_fewshot_feasible(FewShotSettings(ways=[5, 7], key="model.fewshot"), three, "the unseen classes")
    check_fewshot_feasible(settings, {f"class{i}": 20 for i in range(5)})  # exactly enough


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ways": 1}, "ways must be >= 2"),
        ({"shots": [0]}, "shots must be a positive"),
        ({"queries": 0}, "queries must be a positive"),
        ({"episodes": -1}, "episodes must be a positive"),
        ({"way": 5}, r"unknown setting\(s\) \['way'\]"),
    ],
)
def test_bad_settings_are_config_errors(config, message):
    with pytest.raises(ConfigError, match="model.fewshot.*" + message):
        FewShotSettings.from_config(config, "model.fewshot")
