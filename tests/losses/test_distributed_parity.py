"""Under DDP the global-batch losses give exactly the single-process gradient (2 CPU processes, gloo)."""

import json

import pytest
import torch
import torch.distributed as dist

from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss
from tests.multiprocess import loss_and_gradient, run_in_process_group

CASES = {
    "pairwise-euclidean-softmax": dict(soft_min="softmax"),
    "pairwise-cosine-hard": dict(distance="cosine", soft_min="hard"),
    "pairwise-sqeuclidean-logsumexp": dict(distance="sqeuclidean", soft_min="logsumexp", temperature=0.5),
    "centroid": dict(variant="centroid", soft_min="softmax"),
    "supcon": dict(temperature=0.2),
}


def _loss(name):
    return SupConLoss(**CASES[name]) if name == "supcon" else SoftSilhouetteLoss(**CASES[name])


# Rank 0 holds 9 samples, rank 1 holds 14: different class mixes, class 7 a singleton on rank 1 only,
# class 5 only on rank 0 (its members are positives for each other across nothing but rank 0).
LABELS = [0, 0, 1, 5, 5, 2, 1, 0, 3] + [1, 2, 2, 3, 3, 7, 0, 1, 2, 3, 4, 4, 0, 1]
SPLIT = 9


def _problem():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(len(LABELS), 6, dtype=torch.float64, generator=g)
    weight = torch.randn(6, 4, dtype=torch.float64, generator=g)
    return inputs, torch.tensor(LABELS), weight


def _worker(rank, world, out_file):
    inputs, labels, weight = _problem()
    part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    results = {}
    for name in CASES:
        loss, grad = loss_and_gradient(_loss(name), [(inputs[part], labels[part])], weight)
        # What DDP does with the parameter gradients (and what logging with sync_dist does with the value).
        dist.all_reduce(grad)
        dist.all_reduce(loss)
        results[name] = {"loss": (loss / world).item(), "grad": (grad / world).tolist()}
    if rank == 0:
        with open(out_file, "w") as f:
            json.dump(results, f)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_gradients_equal_one_process_on_the_concatenated_batch(tmp_path):
    out_file = tmp_path / "ddp.json"
    run_in_process_group(_worker, str(out_file))
    ddp = json.loads(out_file.read_text())
    inputs, labels, weight = _problem()
    for name in CASES:
        loss, grad = loss_and_gradient(_loss(name), [(inputs, labels)], weight)
        assert abs(ddp[name]["loss"] - loss.item()) <= 1e-10, name
        assert (torch.tensor(ddp[name]["grad"], dtype=torch.float64) - grad).abs().max() <= 1e-8, name
        assert grad.abs().max() > 1e-3  # a real gradient, not two zeros agreeing
    # Without the gather, each process would see only its slice: the values differ (the test can fail).
    local, _ = loss_and_gradient(
        _loss("pairwise-euclidean-softmax"), [(inputs[:SPLIT], labels[:SPLIT])], weight
    )
    assert abs(local.item() - ddp["pairwise-euclidean-softmax"]["loss"]) > 1e-3
