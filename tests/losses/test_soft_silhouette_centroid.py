"""The centroid variant (simplified silhouette) and the memory shape of both variants."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from silhouette_lightning.losses import SoftSilhouetteLoss, silhouette_terms
from tests.oracles.centroid_oracle import centroid_terms

F64 = torch.float64
DISTANCES = ["euclidean", "sqeuclidean", "cosine"]
SOFT_MINS = ["softmax", "logsumexp", "hard"]


def _batch(seed=0, n=23, d=5):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([3] * 7 + [10] * 9 + [4] * 6 + [8])  # uneven classes, sparse labels, a singleton
    return torch.randn(n, d, dtype=F64, generator=g), y[torch.randperm(n, generator=g)]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("soft_min", SOFT_MINS)
def test_centroid_terms_match_loop_oracle(distance, soft_min):
    x, y = _batch()
    got = silhouette_terms(x, y, distance=distance, soft_min=soft_min, temperature=0.3, variant="centroid")
    s, a, b, valid = centroid_terms(x, y, metric=distance, kind=soft_min, temperature=0.3)
    assert got.valid.tolist() == valid and valid.count(False) == 1  # the singleton
    for ours, expected in ((got.s, s), (got.a, a), (got.b, b)):
        torch.testing.assert_close(ours, torch.tensor(expected, dtype=F64), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("distance", DISTANCES)
def test_centroid_loss_with_references_matches_oracle(distance):
    x, y = _batch(seed=1, n=23)
    ref_x, ref_y = _batch(seed=2, n=23)
    loss = SoftSilhouetteLoss(distance, "softmax", 0.2, normalize=False, reduction="none", variant="centroid")
    s, _, _, valid = centroid_terms(x, y, ref_x, ref_y, metric=distance, kind="softmax", temperature=0.2)
    expected = torch.tensor([(1 - si) / 2 if v else 0.0 for si, v in zip(s, valid, strict=True)], dtype=F64)
    torch.testing.assert_close(loss(x, y, ref_x, ref_y), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("soft_min", SOFT_MINS)
def test_centroid_gradcheck(distance, soft_min):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 3, dtype=F64, generator=g, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    loss = SoftSilhouetteLoss(distance, soft_min, 0.5, normalize=True, variant="centroid")
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,))


def test_centroid_self_index_equals_the_concatenated_batch():
    # The distributed case: the local anchors sit at an offset inside the gathered global batch; their
    # terms must equal those of the same samples in a single-process run on the whole batch.
    x, y = _batch(seed=4)
    others, others_y = _batch(seed=5)
    refs, ref_y = torch.cat([others[:10], x]), torch.cat([others_y[:10], y])
    kw = dict(variant="centroid", soft_min="softmax", self_index=torch.arange(10, 33))
    got = silhouette_terms(x, y, refs, ref_y, **kw)
    s, _, _, valid = centroid_terms(refs, ref_y, metric="euclidean", kind="softmax", temperature=0.1)
    torch.testing.assert_close(got.s, torch.tensor(s[10:], dtype=F64), rtol=1e-10, atol=1e-10)
    assert got.valid.tolist() == valid[10:]


@pytest.mark.parametrize(
    "case",
    ["duplicates", "identical", "single_class", "singletons", "norm_1e4", "norm_1e-6"],
)
@pytest.mark.parametrize("soft_min", ["hard", "softmax"])
def test_centroid_is_finite_on_degenerate_input(case, soft_min):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(12, 4, generator=g)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    if case == "duplicates":
        x[1] = x[0]
        x[5] = x[0]
    elif case == "identical":
        x = torch.ones(12, 4)
    elif case == "single_class":
        y = torch.zeros(12, dtype=torch.long)
    elif case == "singletons":
        y = torch.arange(12)
    elif case == "norm_1e4":
        x = x * 1e4
    elif case == "norm_1e-6":
        x = x * 1e-6
    for normalize in (True, False):
        x_ = x.clone().requires_grad_(True)
        loss = SoftSilhouetteLoss(normalize=normalize, variant="centroid", soft_min=soft_min)(x_, y)
        loss.backward()
        assert torch.isfinite(loss) and 0 <= loss <= 1
        assert torch.isfinite(x_.grad).all()


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("distance", DISTANCES)
def test_memory_shape_of_both_variants(distance):
    n, d, c = 600, 32, 6
    x = torch.randn(n, d, requires_grad=True)
    y = torch.arange(n) % c
    for variant, bound in (("pairwise", 2 * n * n), ("centroid", n * d + n * c)):
        with _LargestTensor() as probe:
            SoftSilhouetteLoss(distance, variant=variant)(x, y).backward()
        # pairwise: O(N^2), never N*N*D; centroid: nothing quadratic in N at all.
        assert probe.largest <= bound, (variant, probe.largest)
    assert n * n > n * d + n * c  # the centroid bound really excludes an N x N matrix


@pytest.mark.parametrize("soft_min", ["hard", "softmax"])
def test_chunked_centroid_equals_one_chunk_in_value_and_gradient(monkeypatch, soft_min):
    import silhouette_lightning.losses.soft_silhouette as module

    x, y = _batch(seed=7)
    loss = SoftSilhouetteLoss(variant="centroid", reduction="none", soft_min=soft_min)
    whole = x.clone().requires_grad_(True)
    expected = loss(whole, y)
    expected.sum().backward()
    monkeypatch.setattr(module, "_CENTROID_CHUNK_ELEMENTS", 8)  # 2 anchors per chunk with 4 classes
    chunked = x.clone().requires_grad_(True)
    got = loss(chunked, y)
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.grad, whole.grad, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # the no-grad path chunks without checkpointing
        torch.testing.assert_close(loss(x, y), expected.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["pairwise", "centroid"])
@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_embedding_gives_a_nan_loss_not_a_finite_one(variant, distance, bad):
    # The non-finite guard of the training loop reads the loss: a NaN embedding must not come out as a
    # finite loss with NaN gradients (the centroid variant's safe sqrt used to map NaN to a distance 0).
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    x[3, 1] = bad
    labels = torch.arange(12) % 3
    loss = SoftSilhouetteLoss(variant=variant, distance=distance, normalize=distance == "cosine")(x, labels)
    assert loss.isnan()
