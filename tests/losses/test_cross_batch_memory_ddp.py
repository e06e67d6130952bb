"""Under DDP (2 CPU processes, gloo) the cross-batch memory holds the gathered global batches, identical on
every process, and the loss with memory equals one process's on the concatenated batches."""

import json
import os

import pytest
import torch
import torch.distributed as dist

from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss
from tests.multiprocess import loss_and_gradient, run_in_process_group

MEMORY = 20
STEPS = 4
SIZES = (5, 7)  # rank 0 and rank 1 hold different numbers of samples: 12 per global batch, so it wraps


def _loss(name):
    if name == "supcon":
        return SupConLoss(temperature=0.2, memory_size=MEMORY)
    return SoftSilhouetteLoss(soft_min="softmax", temperature=0.3, variant=name, memory_size=MEMORY)


def _global_batches():
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    inputs = [torch.randn(n, 6, dtype=torch.float64, generator=g) for _ in range(STEPS)]
    labels = [torch.randint(0, 4, (n,), generator=g) for _ in range(STEPS)]
    return inputs, labels, torch.randn(6, 4, dtype=torch.float64, generator=g)


def _worker(rank, world, out_dir):
    inputs, labels, weight = _global_batches()
    part = slice(0, SIZES[0]) if rank == 0 else slice(SIZES[0], None)
    results = {}
    for name in ("pairwise", "centroid", "supcon"):
        loss_fn = _loss(name)
        loss, grad = loss_and_gradient(
            loss_fn, [(x[part], y[part]) for x, y in zip(inputs, labels, strict=True)], weight
        )
        dist.all_reduce(grad)  # what DDP does with the parameter gradients
        dist.all_reduce(loss)
        rows, row_labels = loss_fn.memory.contents()
        results[name] = {
            "loss": (loss / world).item(),
            "grad": (grad / world).tolist(),
            "memory": rows.tolist(),
            "labels": row_labels.tolist(),
        }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_processes_hold_the_same_queue_of_gathered_batches_and_the_single_process_loss(tmp_path):
    run_in_process_group(_worker, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    inputs, labels, weight = _global_batches()
    # The queue: the newest MEMORY rows of the global batches in order (rank 0's rows, then rank 1's),
    # normalised, as the loss consumed them.
    embedded = torch.cat([x @ weight for x in inputs])
    expected_rows = (embedded / embedded.norm(dim=1, keepdim=True))[-MEMORY:]
    expected_labels = torch.cat(labels)[-MEMORY:].tolist()
    for name in ("pairwise", "centroid", "supcon"):
        assert ranks[0][name]["memory"] == ranks[1][name]["memory"], name  # identical, bit for bit
        assert ranks[0][name]["labels"] == ranks[1][name]["labels"] == expected_labels, name
        torch.testing.assert_close(torch.tensor(ranks[0][name]["memory"], dtype=torch.float64), expected_rows)
        # One process on the concatenated batches, with its own memory: the same loss and gradient.
        loss, grad = loss_and_gradient(_loss(name), list(zip(inputs, labels, strict=True)), weight)
        assert abs(ranks[0][name]["loss"] - loss.item()) <= 1e-10, name
        assert (torch.tensor(ranks[0][name]["grad"], dtype=torch.float64) - grad).abs().max() <= 1e-8, name
        assert grad.abs().max() > 1e-3
