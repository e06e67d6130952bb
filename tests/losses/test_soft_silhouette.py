"""Tests of the Soft Silhouette (README, "The loss": the pairwise variant).

The main oracle is ``tests/oracles/silhouette_oracle.py``: plain Python loops over samples and classes,
written from the specification and sharing no code with the implementation. Exactness checks run in
float64; scikit-learn is the second oracle for the hard silhouette.
"""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import sklearn.metrics
import torch

from silhouette_lightning.losses import SoftSilhouetteLoss, silhouette_samples, silhouette_terms
from silhouette_lightning.losses.soft_min import masked_soft_min
from silhouette_lightning.terms import SoftSilhouetteTerm
from tests.losses.batches import F64, assert_close, bf16_autocast_run, uneven_batch
from tests.oracles import silhouette_oracle as oracle

DISTANCES = ("euclidean", "sqeuclidean", "cosine")
SOFT_MINS = ("softmax", "logsumexp", "hard")
REDUCTIONS = ("mean", "sum", "none")

all_metrics = pytest.mark.parametrize("distance", DISTANCES)
all_soft_mins = pytest.mark.parametrize("soft_min", SOFT_MINS)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def small_batch(seed: int = 1, n_per_class: int = 3, n_classes: int = 3, dim: int = 3):
    """N = 9, 3 classes: small enough for gradcheck, no ties between class means (checked in a test)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = torch.randn(n_classes * n_per_class, dim, generator=g, dtype=F64) + labels[:, None].to(F64)
    return x, labels


def _oracle_inputs(x, y, ref_x=None, ref_y=None):
    """Anchors, labels and optional references as the loop oracle's plain lists."""
    return (
        oracle.to_rows(x),
        oracle.to_labels(y),
        None if ref_x is None else oracle.to_rows(ref_x),
        None if ref_y is None else oracle.to_labels(ref_y),
    )


def oracle_terms(x, y, ref_x=None, ref_y=None, exclude=None, *, distance, soft_min, temperature):
    terms = oracle.silhouette_terms(
        *_oracle_inputs(x, y, ref_x, ref_y),
        metric=distance,
        kind=soft_min,
        temperature=temperature,
        exclude=exclude,
    )
    s, a, b, valid = zip(*terms, strict=True)
    return list(s), list(a), list(b), list(valid)


def oracle_loss(x, y, ref_x=None, ref_y=None, *, distance, soft_min, temperature, normalize, reduction):
    return oracle.loss(
        *_oracle_inputs(x, y, ref_x, ref_y),
        metric=distance,
        kind=soft_min,
        temperature=temperature,
        normalize=normalize,
        reduction=reduction,
    )


# --------------------------------------------------------------------------------------------------
# 1. Naive oracle vs implementation
# --------------------------------------------------------------------------------------------------
@all_metrics
@all_soft_mins
@pytest.mark.parametrize("temperature", [0.05, 0.7])
def test_samples_and_terms_match_oracle(distance, soft_min, temperature):
    x, y = uneven_batch()
    kw = dict(distance=distance, soft_min=soft_min, temperature=temperature)
    exp_s, exp_a, exp_b, exp_valid = oracle_terms(x, y, **kw)
    s = silhouette_samples(x, y, distance=distance, soft_min=soft_min, temperature=temperature)
    assert s.dtype == F64 and s.shape == (x.shape[0],)
    assert_close(s, exp_s)
    terms = silhouette_terms(x, y, distance=distance, soft_min=soft_min, temperature=temperature)
    assert_close(terms.s, exp_s)
    assert_close(terms.a, exp_a)
    assert_close(terms.b, exp_b)
    assert terms.valid.tolist() == exp_valid
    # The singleton class is the only invalid one here, and the data are not degenerate.
    assert terms.valid.tolist() == (y != 11).tolist()
    assert (s[terms.valid].abs() > 1e-3).all()


@all_metrics
@all_soft_mins
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_matches_oracle(distance, soft_min, normalize, reduction):
    x, y = uneven_batch(seed=3)
    # Normalised Euclidean class distances lie in [0, 2]; un-normalised ones are larger: a temperature
    # that keeps the soft minimum genuinely soft in both cases.
    temperature = 0.2 if normalize else 1.0
    loss_fn = SoftSilhouetteLoss(distance, soft_min, temperature, normalize=normalize, reduction=reduction)
    loss = loss_fn(x, y)
    expected = oracle_loss(
        x,
        y,
        distance=distance,
        soft_min=soft_min,
        temperature=temperature,
        normalize=normalize,
        reduction=reduction,
    )
    assert loss.dtype == F64
    assert loss.shape == ((x.shape[0],) if reduction == "none" else ())
    assert_close(loss, expected)
    if reduction == "none":
        assert (loss[y == 11] == 0).all()  # invalid anchors (the singleton) are marked with 0
        assert (loss[y != 11] > 0).all()


@all_metrics
def test_zero_temperature_is_the_hard_minimum(distance):
    x, y = uneven_batch(seed=4)
    hard = silhouette_samples(x, y, distance=distance, soft_min="hard")
    expected, *_ = oracle_terms(x, y, distance=distance, soft_min="hard", temperature=0.0)
    assert_close(hard, expected)
    for soft_min in ("softmax", "logsumexp"):
        assert_close(silhouette_samples(x, y, distance, soft_min, temperature=0.0), expected)


def test_default_arguments_are_the_documented_ones():
    x, y = uneven_batch(seed=5)
    expected = oracle_loss(
        x, y, distance="euclidean", soft_min="hard", temperature=0.0, normalize=True, reduction="mean"
    )
    assert_close(SoftSilhouetteLoss()(x, y), expected)
    expected_s, *_ = oracle_terms(x, y, distance="euclidean", soft_min="hard", temperature=0.0)
    assert_close(silhouette_samples(x, y), expected_s)
    # The temperature's defaults (0.1, relative), on the soft minimum that uses them.
    expected = oracle_loss(
        x, y, distance="euclidean", soft_min="softmax", temperature=0.1, normalize=True, reduction="mean"
    )
    assert_close(SoftSilhouetteLoss(soft_min="softmax")(x, y), expected)
    expected_s, *_ = oracle_terms(x, y, distance="euclidean", soft_min="softmax", temperature=0.1)
    assert_close(silhouette_samples(x, y, soft_min="softmax"), expected_s)


def test_the_default_soft_min_is_the_hard_minimum_and_equals_sklearn():
    """The default ``b_i`` is the classical silhouette's nearest class: with every argument at its default
    ``silhouette_samples`` is scikit-learn's, on random data of many small classes (where a softmax soft
    minimum is furthest from it)."""
    assert SoftSilhouetteLoss().soft_min == "hard"
    assert SoftSilhouetteTerm().loss.soft_min == "hard"
    for function in (silhouette_samples, silhouette_terms):
        assert inspect.signature(function).parameters["soft_min"].default == "hard"
    g = torch.Generator().manual_seed(11)
    for classes, per_class in ((3, 7), (40, 3)):
        y = torch.arange(classes).repeat_interleave(per_class)[
            torch.randperm(classes * per_class, generator=g)
        ]
        y[0] = classes  # a singleton: 0 in both
        x = torch.randn(len(y), 6, generator=g, dtype=F64) + 0.3 * torch.randn(classes + 1, 6, generator=g)[y]
        expected = sklearn.metrics.silhouette_samples(x.numpy(), y.numpy())
        assert_close(silhouette_samples(x, y), expected, tol=1e-9)
        softmax = silhouette_samples(x, y, soft_min="softmax")
        assert (softmax - torch.as_tensor(expected)).abs().max() > 1e-2  # so the comparison can fail


# --------------------------------------------------------------------------------------------------
# 2. Hard minimum == scikit-learn
# --------------------------------------------------------------------------------------------------
@all_metrics
@pytest.mark.parametrize("seed", [0, 1])
def test_hard_silhouette_equals_sklearn(distance, seed):
    x, y = uneven_batch(seed=seed)
    expected = sklearn.metrics.silhouette_samples(x.numpy(), y.numpy(), metric=distance)
    s = silhouette_samples(x, y, distance=distance, soft_min="hard")
    assert_close(s, expected, tol=1e-9)
    assert (s[y == 11] == 0).all()  # singleton: 0 as in scikit-learn


@all_metrics
def test_hard_loss_equals_sklearn(distance):
    x, y = uneven_batch(seed=2)
    sk = sklearn.metrics.silhouette_samples(x.numpy(), y.numpy(), metric=distance)
    non_singleton = (y != 11).numpy()
    expected = np.mean((1.0 - sk[non_singleton]) / 2.0)
    loss = SoftSilhouetteLoss(distance, "hard", normalize=False)(x, y)
    assert_close(loss, expected, tol=1e-9)


# --------------------------------------------------------------------------------------------------
# 3. References (the distributed case)
# --------------------------------------------------------------------------------------------------
def anchors_and_refs(seed: int = 6):
    g = torch.Generator().manual_seed(seed)
    # Anchor classes: 0 (3), 1 (2), 4 (1; absent from the refs -> invalid), 2 (1; valid: refs are others).
    y = torch.tensor([0, 1, 0, 4, 1, 2, 0])
    # Reference classes: 0, 1, 2 (a singleton among the refs) and 3 (only in the refs).
    ref_y = torch.tensor([3, 0, 1, 1, 2, 0, 3, 3, 1])
    x = torch.randn(len(y), 3, generator=g, dtype=F64) + y[:, None].to(F64)
    ref_x = torch.randn(len(ref_y), 3, generator=g, dtype=F64) + ref_y[:, None].to(F64)
    return x, y, ref_x, ref_y


@all_metrics
@all_soft_mins
@pytest.mark.parametrize("normalize", [True, False])
def test_loss_with_references_matches_oracle(distance, soft_min, normalize):
    x, y, ref_x, ref_y = anchors_and_refs()
    temperature = 0.3
    for reduction in REDUCTIONS:
        loss = SoftSilhouetteLoss(distance, soft_min, temperature, normalize, reduction)(x, y, ref_x, ref_y)
        expected = oracle_loss(
            x,
            y,
            ref_x,
            ref_y,
            distance=distance,
            soft_min=soft_min,
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
        )
        assert_close(loss, expected)
    kw = dict(distance=distance, soft_min=soft_min, temperature=temperature)
    terms = silhouette_terms(x, y, ref_x, ref_y, **kw)
    exp_s, exp_a, exp_b, exp_valid = oracle_terms(x, y, ref_x, ref_y, **kw)
    assert terms.valid.tolist() == exp_valid == [True, True, True, False, True, True, True]
    assert_close(terms.s, exp_s)
    assert_close(terms.a, exp_a)
    assert_close(terms.b, exp_b)


def test_references_are_not_self_excluded():
    """Passing the batch itself as references keeps the zero self-distance in the own-class mean."""
    x, y = uneven_batch(seed=7)
    # sqeuclidean: the expanded-form Euclidean self-distance is sqrt(rounding) ~ 1e-8 in float64, not 0.
    kw = dict(distance="sqeuclidean", soft_min="hard", temperature=0.0)
    with_refs = silhouette_terms(x, y, x, y, **kw)
    exp_s, exp_a, _, exp_valid = oracle_terms(x, y, x, y, **kw)
    assert_close(with_refs.a, exp_a)
    assert_close(with_refs.s, exp_s)
    # Here the singleton is "valid": its own reference copy counts as a member.
    assert with_refs.valid.all() and all(exp_valid)
    plain = silhouette_terms(x, y, **kw)
    counts = {int(c): int((y == c).sum()) for c in y.unique()}
    n_own = torch.tensor([counts[int(c)] for c in y], dtype=F64)
    ok = plain.valid
    assert_close(with_refs.a[ok], plain.a[ok] * (n_own[ok] - 1) / n_own[ok])


@all_metrics
@all_soft_mins
@pytest.mark.parametrize("permute", [False, True])
def test_self_index_equals_plain_batch(distance, soft_min, permute):
    """Local anchors inside a (possibly permuted) global batch with self_index == the plain global result."""
    x_global, y_global = uneven_batch(seed=8)
    n = x_global.shape[0]
    offset, k = 5, 6
    local = torch.arange(offset, offset + k)
    if permute:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        ref_x, ref_y = x_global[perm], y_global[perm]
        self_index = torch.argsort(perm)[local]  # where each local anchor sits in the permuted refs
    else:
        ref_x, ref_y, self_index = x_global, y_global, local
    x_global = x_global.clone().requires_grad_(True)
    kw = dict(distance=distance, soft_min=soft_min, temperature=0.5)
    # Keep the graph: anchors and references are views of one leaf, as after a gather with gradient.
    ref = x_global[perm] if permute else x_global
    got = silhouette_terms(x_global[local], y_global[local], ref, ref_y, self_index=self_index, **kw)
    plain = silhouette_terms(x_global, y_global, **kw)
    for field in ("s", "a", "b"):
        assert_close(getattr(got, field), getattr(plain, field)[local])
    assert got.valid.tolist() == plain.valid[local].tolist()
    exp_s, *_ = oracle_terms(
        x_global[local], y_global[local], ref_x, ref_y, exclude=self_index.tolist(), **kw
    )
    assert_close(got.s, exp_s)
    # Same gradients w.r.t. the global batch (what DDP relies on).
    (g_got,) = torch.autograd.grad(got.s.sum(), x_global)
    (g_plain,) = torch.autograd.grad(plain.s[local].sum(), x_global)
    assert_close(g_got, g_plain)
    assert g_got.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# 4. Gradients
# --------------------------------------------------------------------------------------------------
def test_small_batch_has_no_ties():
    """gradcheck of the hard minimum needs a margin between class means well above its eps (1e-6)."""
    x, y = small_batch()
    for distance, normalize in itertools.product(DISTANCES, (False, True)):
        pts = oracle.to_rows(x)
        if normalize:
            pts = oracle.normalize_rows(pts)
        for i, xi in enumerate(pts):
            means = []
            for c in range(3):
                ds = [oracle.distance(xi, pts[j], distance) for j in range(9) if j != i and int(y[j]) == c]
                means.append(sum(ds) / len(ds))
            others = sorted(m for c, m in enumerate(means) if c != int(y[i]))
            assert others[1] - others[0] > 1e-3
            assert abs(max(others[0], means[int(y[i])]) - min(others[0], means[int(y[i])])) > 1e-3


@all_metrics
@all_soft_mins
def test_gradcheck(distance, soft_min):
    x, y = small_batch()
    x = x.requires_grad_(True)
    temperature = 0.3
    loss_fn = SoftSilhouetteLoss(distance, soft_min, temperature, normalize=True)
    assert torch.autograd.gradcheck(lambda e: loss_fn(e, y), (x,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(
        lambda e: silhouette_samples(e, y, distance, soft_min, temperature), (x,), eps=1e-6, atol=1e-7
    )
    # References: gradients w.r.t. both anchors and references.
    ref = (x.detach()[[1, 4, 7, 8]] + 0.3).requires_grad_(True)
    ref_y = y[[1, 4, 7, 8]]
    assert torch.autograd.gradcheck(lambda e, r: loss_fn(e, y, r, ref_y), (x, ref), eps=1e-6, atol=1e-7)


@all_metrics
@all_soft_mins
@pytest.mark.parametrize("normalize", [True, False])
def test_gradient_matches_autograd_of_loop_oracle(distance, soft_min, normalize):
    x, y = small_batch(seed=2)
    temperature = 0.3
    x_impl = x.clone().requires_grad_(True)
    loss = SoftSilhouetteLoss(distance, soft_min, temperature, normalize=normalize)(x_impl, y)
    loss.backward()
    x_or = x.clone().requires_grad_(True)
    rows = [list(row) for row in x_or.unbind(0)]  # 0-dim tensors: the loops become differentiable
    expected = oracle.loss(
        rows,
        y.tolist(),
        metric=distance,
        kind=soft_min,
        temperature=temperature,
        normalize=normalize,
        reduction="mean",
        ops=oracle.TORCH_OPS,
    )
    expected.backward()
    assert_close(loss, expected.detach())
    assert_close(x_impl.grad, x_or.grad)


def degenerate_batches():
    g = torch.Generator().manual_seed(9)
    base = torch.randn(8, 4, generator=g, dtype=F64)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    dup_within = base.clone()
    dup_within[1] = dup_within[0]  # exact duplicate inside class 0
    dup_across = base.clone()
    dup_across[3] = dup_across[0]  # exact duplicate across classes 0 and 1
    dup_across[7] = dup_across[6]  # and a duplicate pair forming a whole class
    identical = base[:1].repeat(8, 1)
    # Axis-aligned / small-integer points: |x|^2 + |y|^2 - 2 x.y is *exactly* 0 for duplicates, the case
    # where a plain sqrt has an infinite derivative (rounded random duplicates only give ~1e-16).
    e = torch.eye(4, dtype=F64)
    exact = torch.stack([e[0], e[0], -e[1], 2 * e[2], 2 * e[2], e[3], e[3], e[0]])
    singleton_y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3])
    return {
        "duplicate-within-class": (dup_within, y),
        "duplicate-across-classes": (dup_across, y),
        "all-identical": (identical, y),
        "exact-duplicates": (exact, y),
        "exact-all-identical": (e[:1].repeat(8, 1), y),
        "singleton-class": (base, singleton_y),
        "norm-1e4": (1e4 * base / base.norm(dim=1, keepdim=True), y),
        "norm-1e-6": (1e-6 * base / base.norm(dim=1, keepdim=True), y),
    }


DEGENERATE = degenerate_batches()


@pytest.mark.parametrize("case", list(DEGENERATE))
@all_metrics
@all_soft_mins
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_finite_gradients_on_degenerate_inputs(case, distance, soft_min, normalize, dtype):
    x, y = DEGENERATE[case]
    x = x.to(dtype).requires_grad_(True)
    loss = SoftSilhouetteLoss(distance, soft_min, 0.1, normalize=normalize)(x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(x.grad).all(), x.grad
    if soft_min != "logsumexp":  # see test_loss_stays_in_unit_interval for logsumexp
        assert 0.0 <= loss.item() <= 1.0
    if case.endswith("all-identical") and soft_min != "logsumexp":
        # Every distance is 0: s = 0 for every anchor (the 0/0 guard), the loss is exactly 1/2.
        assert loss.item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("case", [c for c in DEGENERATE if not c.endswith("all-identical")])
@all_metrics
@all_soft_mins
def test_degenerate_values_match_oracle(case, distance, soft_min):
    x, y = DEGENERATE[case]
    expected, *_ = oracle_terms(x, y, distance=distance, soft_min=soft_min, temperature=0.3)
    # The expanded form |x|^2 + |y|^2 - 2 x.y gives exact duplicates a squared distance of the order of
    # the float64 rounding (|x|^2 * 1e-16), hence a Euclidean distance ~1e-8 * |x| instead of 0.
    scale = x.norm(dim=1).max().item()
    tol = 1e-6 * max(scale, 1.0) if distance == "euclidean" else 1e-9
    if case == "norm-1e-6" and distance != "cosine":
        # s is scale-free: compare with the oracle on the rescaled points (the oracle's own rounding).
        expected, *_ = oracle_terms(x * 1e6, y, distance=distance, soft_min="hard", temperature=0.0)
        got = silhouette_samples(x, y, distance, "hard")
    else:
        got = silhouette_samples(x, y, distance, soft_min, 0.3)
    assert_close(got, expected, tol=tol)


def _unit_interval_params():
    for case, distance, normalize in itertools.product(DEGENERATE, DISTANCES, (True, False)):
        for soft_min in SOFT_MINS:
            yield pytest.param(case, distance, soft_min, normalize)


@pytest.mark.parametrize(("case", "distance", "soft_min", "normalize"), list(_unit_interval_params()))
def test_loss_stays_in_unit_interval(case, distance, soft_min, normalize):
    """DESIGN item 7: the loss (and every per-anchor value) lies in [0, 1]."""
    x, y = DEGENERATE[case]
    per_anchor = SoftSilhouetteLoss(distance, soft_min, 0.1, normalize=normalize, reduction="none")(x, y)
    # 1e-12 slack: a cosine distance between exact duplicates rounds to about -1e-16, not 0.
    assert ((per_anchor >= -1e-12) & (per_anchor <= 1 + 1e-12)).all(), per_anchor


def test_logsumexp_loss_stays_in_unit_interval_for_tight_classes():
    """Minimal reproduction on ordinary (normalised) data: 3 tight, nearby classes."""
    angles = torch.tensor([0.0, 0.01, 0.05, 0.06, 0.10, 0.11], dtype=F64)
    x = torch.stack([angles.cos(), angles.sin()], dim=1)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    hard = silhouette_samples(x, y, soft_min="hard")
    assert (hard > 0).all()  # well clustered by the classical coefficient
    per_anchor = SoftSilhouetteLoss(soft_min="logsumexp", reduction="none")(x, y)
    assert (per_anchor <= 1).all(), per_anchor


def test_scale_invariance_of_unnormalised_silhouette():
    """s is a ratio of distances: scaling all points (also to norms 1e4 / 1e-6) leaves it unchanged."""
    x, y = uneven_batch(seed=10)
    for distance in ("euclidean", "cosine"):
        ref = silhouette_samples(x, y, distance, "hard")
        for scale in (1e4, 1e-6):
            assert_close(silhouette_samples(x * scale, y, distance, "hard"), ref, tol=1e-8)
    # sqeuclidean scales with scale**2; 1e-6 -> distances ~1e-12, still far from the 0/0 guard.
    ref = silhouette_samples(x, y, "sqeuclidean", "hard")
    for scale in (1e4, 1e-5):
        assert_close(silhouette_samples(x * scale, y, "sqeuclidean", "hard"), ref, tol=1e-8)


# --------------------------------------------------------------------------------------------------
# 5. No valid anchor
# --------------------------------------------------------------------------------------------------
NO_VALID = {
    "single-class": (torch.randn(5, 3, dtype=F64), torch.zeros(5, dtype=torch.long)),
    "all-singletons": (torch.randn(4, 3, dtype=F64), torch.tensor([3, 1, 0, 2])),
    "one-sample": (torch.randn(1, 3, dtype=F64), torch.tensor([4])),
    "empty-batch": (torch.randn(0, 3, dtype=F64), torch.zeros(0, dtype=torch.long)),
}


@pytest.mark.parametrize("case", list(NO_VALID))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@all_metrics
@pytest.mark.parametrize("soft_min", ["softmax", "logsumexp", "hard"])
def test_no_valid_anchor_gives_connected_zero(case, reduction, distance, soft_min):
    x, y = NO_VALID[case]
    x = x.clone().requires_grad_(True)
    loss = SoftSilhouetteLoss(distance, soft_min, 0.1, reduction=reduction)(x, y)
    assert loss.requires_grad and loss.grad_fn is not None
    assert (loss == 0).all()
    assert loss.shape == ((x.shape[0],) if reduction == "none" else ())
    loss.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert (silhouette_samples(x, y, distance, soft_min) == 0).all()
    terms = silhouette_terms(x, y, distance=distance, soft_min=soft_min, temperature=0.1)
    assert not terms.valid.any()


@pytest.mark.parametrize("variant", ["pairwise", "centroid"])
def test_empty_batch_gives_connected_zero_in_both_variants(variant):
    """N = 0 (DESIGN item 7: no valid anchor => a zero connected to the graph), with and without
    references; it used to fail inside torch.stack / with a ZeroDivisionError."""
    x = torch.zeros(0, 3, dtype=F64, requires_grad=True)
    none = torch.zeros(0, dtype=torch.long)
    loss = SoftSilhouetteLoss(variant=variant)(x, none)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert x.grad is not None and x.grad.shape == (0, 3)
    assert SoftSilhouetteLoss(variant=variant, reduction="none")(x, none).shape == (0,)
    ref = torch.randn(4, 3, dtype=F64, requires_grad=True)
    loss = SoftSilhouetteLoss(variant=variant)(x, none, ref, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(ref.grad, torch.zeros_like(ref))


def test_no_valid_anchor_with_references():
    """Anchor classes absent from the references: no valid anchor, connected zero."""
    x = torch.randn(3, 2, dtype=F64, requires_grad=True)
    ref = torch.randn(4, 2, dtype=F64, requires_grad=True)
    loss = SoftSilhouetteLoss()(x, torch.tensor([5, 5, 6]), ref, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == 0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(ref.grad, torch.zeros_like(ref))


# --------------------------------------------------------------------------------------------------
# 6. Soft minima: bounds and convergence to the hard minimum
# --------------------------------------------------------------------------------------------------
def normalized_batch(seed=11):
    x, y = uneven_batch(seed=seed, sizes=(6, 5, 4, 5, 3), dim=6)
    return torch.nn.functional.normalize(x, dim=1), y


def class_means(x, y):
    """Oracle deltas per anchor: {class: mean distance} (euclidean), via the loops."""
    pts, labels = oracle.to_rows(x), oracle.to_labels(y)
    out = []
    for i, xi in enumerate(pts):
        per = {}
        for j, xj in enumerate(pts):
            if j != i:
                per.setdefault(labels[j], []).append(oracle.distance(xi, xj, "euclidean"))
        out.append({c: sum(v) / len(v) for c, v in per.items() if c != labels[i]})
    return out


@pytest.mark.parametrize("soft_min", ["softmax", "logsumexp"])
def test_soft_minimum_tends_to_hard_minimum(soft_min):
    x, y = normalized_batch()
    hard = silhouette_terms(x, y, distance="euclidean", soft_min="hard", temperature=0.0)
    errors = []
    for temperature in (1.0, 0.1, 1e-2, 1e-3, 1e-4):
        soft = silhouette_terms(x, y, distance="euclidean", soft_min=soft_min, temperature=temperature)
        errors.append((soft.b - hard.b).abs().max().item())
        if temperature <= 1e-3:
            assert (soft.s - hard.s).abs().max() < (1e-3 if soft_min == "softmax" else 2e-3)
    assert errors == sorted(errors, reverse=True)  # monotone convergence
    assert errors[0] > 1e-2 and errors[-1] < 1e-3


def _one_near_class_and_k_far_ones(k: int):
    """Two anchors of class 0 at the origin, class 1 at distance 1, classes 2..k+1 at distance 1.3 (one
    point each, on orthogonal axes): for the anchors, delta = [1, 1.3, ..., 1.3] with k entries 1.3."""
    x = torch.zeros(k + 3, k + 1, dtype=F64)
    x[2, 0] = 1.0
    for c in range(k):
        x[3 + c, 1 + c] = 1.3
    return x, torch.tensor([0, 0, *range(1, k + 2)])


def test_the_softmax_soft_minimum_drifts_to_the_far_classes_as_their_number_grows():
    """Why the default is the hard minimum (docs/results.md, recipe study): with the relative temperature
    0.1 the nearest class dominates the softmax only with a lead of about ``tau_i * log C``. One class at
    distance 1 and K classes at 1.3: with K = 1 the softmax soft minimum is close to 1, with K = 80 it is
    near 1.3, so ``b_i`` no longer measures the nearest class. The hard minimum is 1 for every K."""
    softmax_b = {}
    for k in (1, 80):
        x, y = _one_near_class_and_k_far_ones(k)
        softmax = silhouette_terms(x, y, soft_min="softmax", temperature=0.1)
        hard = silhouette_terms(x, y)  # the default
        assert softmax.valid[:2].all() and hard.valid[:2].all()
        assert hard.b[:2].tolist() == [1.0, 1.0]
        softmax_b[k] = softmax.b[0].item()
        # The same on the soft minimum itself.
        values = torch.tensor([[1.0] + [1.3] * k], dtype=F64)
        mask = torch.ones_like(values, dtype=torch.bool)
        assert masked_soft_min(values, mask, "softmax", 0.1).item() == pytest.approx(softmax_b[k], abs=1e-9)
        assert masked_soft_min(values, mask, "hard", 0.1).item() == 1.0
    assert softmax_b[1] < 1.05
    assert softmax_b[80] > 1.2


def test_softmax_lies_between_minimum_and_mean_and_increases_with_temperature():
    x, y = normalized_batch()
    means = class_means(x, y)
    lo = torch.tensor([min(m.values()) for m in means], dtype=F64)
    hi = torch.tensor([sum(m.values()) / len(m) for m in means], dtype=F64)
    previous = lo
    for temperature in (1e-3, 1e-2, 0.1, 1.0, 10.0, 1e4):
        b = silhouette_terms(x, y, distance="euclidean", soft_min="softmax", temperature=temperature).b
        assert (b >= lo - 1e-12).all() and (b <= hi + 1e-12).all()
        assert (b >= previous - 1e-12).all()  # d/dtau of the softmax-weighted mean is Var_w / tau^2 >= 0
        previous = b
    assert_close(b, hi, tol=1e-4)  # tau -> inf: uniform weights, the plain mean


def test_logsumexp_is_a_lower_bound_within_tau_log_k():
    x, y = normalized_batch()
    means = class_means(x, y)
    lo = torch.tensor([min(m.values()) for m in means], dtype=F64)
    k = torch.tensor([len(m) for m in means], dtype=F64)
    mean = torch.tensor([sum(m.values()) / len(m) for m in means], dtype=F64)
    for temperature in (1e-3, 0.1, 1.0):
        # The bound is in units of the temperature actually used: tau_i = temperature * mean_c delta(i, c)
        # with the (default) relative scale, temperature itself with the absolute one.
        for scale, tau in (("relative", temperature * mean), ("absolute", temperature)):
            kwargs = dict(distance="euclidean", soft_min="logsumexp", temperature_scale=scale)
            b = silhouette_terms(x, y, temperature=temperature, **kwargs).b
            assert (b <= lo + 1e-12).all()
            assert (b >= lo - tau * torch.log(k) - 1e-12).all()
    # At large temperature the unclamped value -tau log K + mean is negative: it is clamped to 0.
    b = silhouette_terms(x, y, distance="euclidean", soft_min="logsumexp", temperature=1e3).b
    assert_close(b, torch.zeros_like(b), tol=0.0)


# --------------------------------------------------------------------------------------------------
# 7. Invariances
# --------------------------------------------------------------------------------------------------
@all_metrics
@all_soft_mins
def test_permutation_equivariance(distance, soft_min):
    x, y = uneven_batch(seed=12)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    s = silhouette_samples(x, y, distance, soft_min, 0.5)
    assert_close(silhouette_samples(x[perm], y[perm], distance, soft_min, 0.5), s[perm], tol=1e-12)
    loss_fn = SoftSilhouetteLoss(distance, soft_min, 0.5, reduction="none")
    assert_close(loss_fn(x[perm], y[perm]), loss_fn(x, y)[perm], tol=1e-12)


@all_metrics
@all_soft_mins
def test_relabelling_invariance(distance, soft_min):
    x, y = uneven_batch(seed=13, sizes=(5, 4, 3), label_values=(0, 1, 2))
    mapping = torch.tensor([17, 3, 100])
    s = silhouette_samples(x, y, distance, soft_min, 0.5)
    assert_close(silhouette_samples(x, mapping[y], distance, soft_min, 0.5), s, tol=1e-12)
    # int32 labels behave like int64 ones.
    assert_close(silhouette_samples(x, mapping[y].int(), distance, soft_min, 0.5), s, tol=1e-12)
    loss_fn = SoftSilhouetteLoss(distance, soft_min, 0.5)
    assert_close(loss_fn(x, mapping[y]), loss_fn(x, y), tol=1e-12)


# --------------------------------------------------------------------------------------------------
# 8. Mixed precision
# --------------------------------------------------------------------------------------------------
@all_metrics
@pytest.mark.parametrize("soft_min", ["softmax", "hard"])
def test_bf16_autocast(distance, soft_min):
    reference, loss, _ = bf16_autocast_run(SoftSilhouetteLoss(distance, soft_min))
    assert reference.item() < 0.4  # clearly clustered, not the ~1/2 of noise
    # Tolerance 3e-4: only the Linear output is rounded to bf16 (8-bit mantissa: relative error <= 2**-9
    # ~ 2e-3 per entry, nearly independent between entries); distances, soft minimum and ratio run in
    # float32. The loss averages (1 - s_i)/2 over 48 anchors, each s_i a ratio of *mean* distances over
    # ~12-36 points, so the rounding averages out: observed differences are ~3e-5 (10x margin). Running the
    # distances/ratios in bf16 as well was measured at 6e-4..1.3e-3 here, so this bound also separates the
    # two (besides the float32 dtype check in bf16_autocast_run).
    assert abs(loss.item() - reference.item()) < 3e-4


def test_half_precision_inputs_are_computed_in_float32():
    x, y = uneven_batch(seed=14)
    for dtype in (torch.bfloat16, torch.float16):
        loss = SoftSilhouetteLoss()(x.to(dtype), y)
        assert loss.dtype == torch.float32
        expected = SoftSilhouetteLoss()(x.to(dtype).float(), y)
        assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
        s = silhouette_samples(x.to(dtype) * 300, y)  # |x|^2 ~ 1e6: beyond float16's range of 65504
        assert s.dtype == torch.float32 and torch.isfinite(s).all()


# --------------------------------------------------------------------------------------------------
# 9. Bad input
# --------------------------------------------------------------------------------------------------
def test_bad_constructor_arguments():
    # The options every batch loss shares: tests/losses/test_batch_loss_inputs.py.
    with pytest.raises(ValueError, match=r"distance='manhattan'.*'euclidean'"):
        SoftSilhouetteLoss(distance="manhattan")
    with pytest.raises(ValueError, match=r"soft_min='softplus'.*'softmax'"):
        SoftSilhouetteLoss(soft_min="softplus")
    with pytest.raises(ValueError, match=r"temperature must be >= 0, got -0.1"):
        SoftSilhouetteLoss(temperature=-0.1)
    SoftSilhouetteLoss(temperature=0.0)  # 0 is allowed and means the hard minimum


def test_bad_function_arguments():
    x, y = uneven_batch()
    with pytest.raises(ValueError, match=r"distance='l1'"):
        silhouette_samples(x, y, distance="l1")
    with pytest.raises(ValueError, match=r"soft_min='max'"):
        silhouette_samples(x, y, soft_min="max")
    with pytest.raises(ValueError, match=r"temperature must be >= 0"):
        silhouette_samples(x, y, temperature=-1.0)
    with pytest.raises(ValueError, match=r"ref_labels was given without ref_embeddings"):
        silhouette_terms(x, y, None, y)
    with pytest.raises(ValueError, match=r"ref_embeddings have dimension 3, embeddings 4"):
        silhouette_terms(x, y, x[:, :3], y)


def test_one_dimensional_embeddings_raise_value_error_in_silhouette_samples():
    with pytest.raises(ValueError, match=r"embeddings must have shape \[N, D\], got \(15,\)"):
        silhouette_samples(torch.randn(15), torch.zeros(15, dtype=torch.long))
    with pytest.raises(ValueError, match=r"embeddings must have shape \[N, D\]"):
        SoftSilhouetteLoss(normalize=False)(torch.randn(15), torch.zeros(15, dtype=torch.long))


def test_one_dimensional_embeddings_raise_value_error_in_default_loss():
    with pytest.raises(ValueError, match=r"embeddings must have shape \[N, D\]"):
        SoftSilhouetteLoss()(torch.randn(15), torch.zeros(15, dtype=torch.long))


def test_integer_embeddings_raise_value_error_in_default_loss():
    with pytest.raises(ValueError, match=r"floating-point"):
        SoftSilhouetteLoss()(torch.ones(4, 2, dtype=torch.long), torch.tensor([0, 0, 1, 1]))


def test_integer_embeddings_raise_value_error_without_normalisation():
    with pytest.raises(ValueError, match=r"embeddings must be a floating-point tensor, got torch.int64"):
        SoftSilhouetteLoss(normalize=False)(torch.ones(4, 2, dtype=torch.long), torch.tensor([0, 0, 1, 1]))
