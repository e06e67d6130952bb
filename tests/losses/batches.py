"""The test batches and the comparison shared by the batch losses' tests."""

from __future__ import annotations

import torch

F64 = torch.float64
TOL = 1e-10  # float64 matrix form vs float64 loops: only rounding differences remain.


def uneven_batch(seed: int = 0, sizes=(5, 3, 1, 4, 2), dim: int = 4, label_values=(7, 2, 11, 0, 5), views=0):
    """Random float64 points; uneven, shuffled, non-contiguous classes incl. a singleton (label 11).

    ``views=0`` gives ``[N, D]``, otherwise ``[N, views, D]`` (the views of an image near each other)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([v for v, n in zip(label_values, sizes, strict=True) for _ in range(n)])
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    # Class-dependent offsets so that the silhouettes are not all ~0 and the classes differ in distance.
    centers = {v: 1.5 * torch.randn(dim, generator=g, dtype=F64) for v in label_values}
    noise = torch.randn(labels.numel(), dim, generator=g, dtype=F64)
    x = torch.stack([centers[int(c)] for c in labels]) + noise
    if views:
        x = x[:, None] + 0.5 * torch.randn(labels.numel(), views, dim, generator=g, dtype=F64)
    return x, labels


def assert_close(actual, expected, tol: float = TOL):
    actual = torch.as_tensor(actual, dtype=F64).detach()
    expected = torch.as_tensor(expected, dtype=F64).detach()
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def bf16_autocast_run(loss_fn):
    """``(reference, loss, layer)``: ``loss_fn`` on a ``Linear(16, 8)``'s output for 48 samples of 4 well
    separated classes, in float32 (``reference``) and under CPU bf16 autocast (``loss``, whose embeddings
    are checked to arrive in bfloat16; it is checked to be a finite float32, and ``backward()`` has run
    and left finite gradients on ``layer``)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    y = torch.arange(48) % 4
    inputs = 0.5 * torch.randn(48, 16) + 2.0 * torch.randn(4, 16)[y]  # well separated classes
    reference = loss_fn(layer(inputs), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = layer(inputs)
        assert emb.dtype == torch.bfloat16
        loss = loss_fn(emb, y)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    return reference, loss, layer
