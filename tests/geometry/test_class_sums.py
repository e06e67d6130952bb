"""The fused class-distance sums against plain autograd through explicit distance loops."""

import pytest
import torch

from silhouette_lightning.geometry.class_sums import class_distance_sums

F64 = torch.float64


def _reference(x, ref, ref_class, num_classes, distance, self_index):
    """Loops over pairs with torch ops, differentiated by autograd (the oracle)."""
    sums = [[x.new_zeros(()) for _ in range(num_classes)] for _ in range(x.shape[0])]
    for i in range(x.shape[0]):
        for j in range(ref.shape[0]):
            if self_index is not None and j == int(self_index[i]):
                continue
            diff = x[i] - ref[j]
            if distance == "euclidean":
                d = diff.pow(2).sum().sqrt()
            elif distance == "sqeuclidean":
                d = diff.pow(2).sum()
            else:
                d = 1 - (x[i] * ref[j]).sum()
            sums[i][int(ref_class[j])] = sums[i][int(ref_class[j])] + d
    return torch.stack([torch.stack(row) for row in sums])


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("layout", ["shared", "separate", "offset"])
@pytest.mark.parametrize("sorted_blocks", [True, False], ids=["cpu-blocks", "scatter-gather"])
def test_values_and_gradients_match_autograd_loops(distance, layout, sorted_blocks):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, dtype=F64, generator=g)
    unit = torch.nn.functional.normalize if distance == "cosine" else (lambda t, dim: t)
    x = unit(x, dim=1)
    ref_class = torch.tensor([2, 0, 1, 2, 0, 2, 1])
    self_index = torch.arange(7)
    if layout == "shared":
        ref = x
    elif layout == "separate":
        ref, self_index = unit(torch.randn(5, 3, dtype=F64, generator=g), dim=1), None
        ref_class = torch.tensor([1, 0, 1, 2, 1])
    else:  # the anchors at an offset inside a larger reference set (distributed)
        extra = unit(torch.randn(4, 3, dtype=F64, generator=g), dim=1)
        ref, self_index = torch.cat([extra, x]), torch.arange(4, 11)
        ref_class = torch.cat([torch.tensor([0, 1, 1, 2]), ref_class])
    x = x.clone().requires_grad_(True)
    ref = x if layout == "shared" else ref.clone().requires_grad_(True)
    leaves = [x] if layout == "shared" else [x, ref]
    weights = torch.randn(7, 3, dtype=F64, generator=g)  # a generic upstream gradient

    ours = class_distance_sums(x, ref, ref_class, 3, distance, self_index, sorted_blocks=sorted_blocks)
    expected = _reference(x, ref, ref_class, 3, distance, self_index)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad((ours * weights).sum(), leaves)
    expected_grads = torch.autograd.grad((expected * weights).sum(), leaves)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sorted_blocks", [True, False])
def test_backward_twice_through_a_retained_graph_gives_the_same_gradient(sorted_blocks):
    x = torch.randn(6, 4, dtype=F64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    sums = class_distance_sums(x, x, labels, 3, "euclidean", torch.arange(6), sorted_blocks=sorted_blocks)
    first = torch.autograd.grad(sums.sum(), x, retain_graph=True)[0]
    second = torch.autograd.grad(sums.sum(), x)[0]
    torch.testing.assert_close(first, second)


def test_double_backward_is_refused_with_a_clear_error():
    x = torch.randn(6, 4, dtype=F64, requires_grad=True)
    sums = class_distance_sums(x, x, torch.tensor([0, 0, 1, 1, 2, 2]), 3, "euclidean", torch.arange(6))
    with pytest.raises(RuntimeError, match="do not support double backward"):
        torch.autograd.grad(sums.sum(), x, create_graph=True)


def test_coincident_points_have_zero_subgradient():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], dtype=F64, requires_grad=True)
    sums = class_distance_sums(x, x, torch.tensor([0, 0, 1]), 2, "euclidean", torch.arange(3))
    sums[:2, 0].sum().backward()  # the duplicates' distances to their own class: each other, 0 apart
    torch.testing.assert_close(x.grad, torch.zeros(3, 2, dtype=F64))  # subgradient 0, not NaN
