"""Tests of COREL (README, "Objectives"): the functional loss, CorelLoss and CorelTerm.

The oracle is a plain loop over samples and classes in float64, written from the formulas in
``silhouette_lightning/losses/corel.py`` and sharing no code with it; its gradients come from autograd
through the loop. The Gaussian variant at lam = 1/2 is also checked against torch's cross-entropy.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning
import pytest
import torch

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses.corel import CorelLoss, corel_loss, corel_similarities
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms.corel import CorelTerm
from silhouette_lightning.terms.outputs import ModelOutputs

F64 = torch.float64
KINDS = ("cosine", "gaussian")
all_kinds = pytest.mark.parametrize("kind", KINDS)
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


# --------------------------------------------------------------------------------------------------
# Oracle and data
# --------------------------------------------------------------------------------------------------
def oracle(h, y, w, kind, gamma=0.5, lam=0.5):
    """Mean over samples of 2 * (lam * A_i + (1 - lam) * R_i), one sample and one class at a time."""
    total = 0.0
    for i in range(h.shape[0]):
        sims = []
        for c in range(w.shape[0]):
            if kind == "cosine":
                sims.append(torch.dot(h[i], w[c]) / (torch.sqrt(torch.dot(h[i], h[i])) * w[c].norm()))
            else:
                diff = h[i] - w[c]
                sims.append(-gamma * torch.dot(diff, diff))
        own = int(y[i])
        if kind == "gaussian":
            attraction = -sims[own]
            repulsion = torch.log(sum(torch.exp(s) for s in sims))
        else:
            attraction = 1 - sims[own]
            closest_other = max((sims[c] for c in range(len(sims)) if c != own), key=lambda s: s.item())
            repulsion = torch.clamp(closest_other, min=0.0) ** 2
        total = total + 2 * (lam * attraction + (1 - lam) * repulsion)
    return total / h.shape[0]


def batch(n=9, dim=5, classes=4, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, dim, generator=g, dtype=dtype)
    w = torch.randn(classes, dim, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    return h, y, w


def _module(seed=0, **term_kwargs):
    torch.manual_seed(seed)
    return EmbeddingModule(
        backbone=SmallCNN(width=4), num_classes=3, losses=[CorelTerm(**term_kwargs)], embedding_dim=6
    )


def _images(batch_size=9):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch_size, 3, 8, 8, generator=g), torch.arange(batch_size) % 3


# --------------------------------------------------------------------------------------------------
# Values and gradients
# --------------------------------------------------------------------------------------------------
@all_kinds
@pytest.mark.parametrize(("gamma", "lam"), [(0.5, 0.5), (0.2, 0.8), (1.3, 0.1)])
def test_value_and_gradients_match_the_loop_oracle(kind, gamma, lam):
    h, y, w = batch(seed=3)
    h1, w1 = h.clone().requires_grad_(), w.clone().requires_grad_()
    h2, w2 = h.clone().requires_grad_(), w.clone().requires_grad_()
    value = corel_loss(h1, y, w1, kind=kind, gamma=gamma, lam=lam)
    expected = oracle(h2, y, w2, kind, gamma, lam)
    value.backward()
    expected.backward()
    assert value.dtype == F64
    assert torch.allclose(value, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(h1.grad, h2.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(w1.grad, w2.grad, rtol=1e-9, atol=1e-12)


@all_kinds
def test_reductions_agree_with_the_per_sample_oracle(kind):
    h, y, w = batch(seed=4)
    per_sample = corel_loss(h, y, w, kind=kind, reduction="none")
    assert per_sample.shape == (h.shape[0],)
    for i in range(h.shape[0]):
        assert torch.allclose(per_sample[i], oracle(h[i : i + 1], y[i : i + 1], w, kind), rtol=1e-10)
    assert torch.allclose(corel_loss(h, y, w, kind=kind, reduction="sum"), per_sample.sum())


def test_gaussian_at_half_lam_is_cross_entropy_of_negative_scaled_squared_distances():
    h, y, w = batch(seed=5)
    logits = -0.7 * torch.cdist(h, w) ** 2
    expected = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(corel_loss(h, y, w, kind="gaussian", gamma=0.7), expected, rtol=1e-10)


def test_cosine_values_by_hand():
    h = torch.tensor([[2.0, 0.0]], dtype=F64)
    y = torch.tensor([0])

    def loss(w, lam=0.5):
        return corel_loss(h, y, torch.tensor(w, dtype=F64), kind="cosine", lam=lam).item()

    # own class aligned (A = 1 - 1 = 0); others at 90 and 45 degrees: R = cos(45)^2 = 1/2.
    assert loss([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]]) == pytest.approx(0.5)
    # aligned, and all other class vectors beyond 90 degrees: no repulsion (floored at 0): perfect, 0.
    assert loss([[1.0, 0.0], [-1.0, 0.2], [-1.0, -0.5]]) == pytest.approx(0.0, abs=1e-15)
    # own class at 60 degrees (A = 1/2), others at 120 and 45 degrees (R = 1/2); lam weighs A against R.
    w = [[1.0, math.sqrt(3.0)], [-1.0, math.sqrt(3.0)], [1.0, -1.0]]
    assert loss(w) == pytest.approx(1.0)
    assert loss(w, lam=1.0) == pytest.approx(1.0) and loss(w, lam=0.0) == pytest.approx(1.0)
    assert loss([[1.0, math.sqrt(3.0)], [1.0, 0.0]], lam=0.25) == pytest.approx(2 * (0.25 * 0.5 + 0.75))


@all_kinds
def test_gradcheck(kind):
    h, y, w = batch(n=5, dim=3, classes=3, seed=6)
    gamma = torch.tensor(0.4, dtype=F64, requires_grad=True)
    inputs = (h.requires_grad_(), w.requires_grad_(), gamma)
    assert torch.autograd.gradcheck(lambda h, w, g: corel_loss(h, y, w, kind=kind, gamma=g, lam=0.3), inputs)


def test_similarities_argmax_is_the_nearest_class_vector():
    h, _, w = batch(n=12, seed=7)
    nearest = torch.cdist(h, w).argmin(dim=1)
    assert torch.equal(corel_similarities(h, w, "gaussian", 0.5).argmax(dim=1), nearest)
    cosines = torch.nn.functional.normalize(h, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    assert torch.equal(corel_similarities(h, w, "cosine").argmax(dim=1), cosines.argmax(dim=1))


# --------------------------------------------------------------------------------------------------
# The nn.Module: parameters and training
# --------------------------------------------------------------------------------------------------
def test_corel_loss_module_owns_xavier_initialised_class_vectors_and_optionally_gamma():
    torch.manual_seed(0)
    loss = CorelLoss(num_classes=50, embedding_dim=40, kind="gaussian", gamma=0.3, learn_gamma=True)
    names = dict(loss.named_parameters())
    assert set(names) == {"class_vectors", "log_gamma"} and names["class_vectors"].shape == (50, 40)
    assert abs(loss.class_vectors.std().item() - math.sqrt(2 / 90)) < 0.02
    assert torch.allclose(loss.gamma, torch.tensor(0.3))
    h, y = torch.randn(8, 40), torch.arange(8) % 50
    expected = corel_loss(h, y, loss.class_vectors, kind="gaussian", gamma=0.3)
    value = loss(h, y)
    value.backward()
    assert torch.allclose(value, expected) and loss.log_gamma.grad is not None and loss.log_gamma.grad != 0
    assert [n for n, _ in CorelLoss(3, 4).named_parameters()] == ["class_vectors"]


@all_kinds
def test_a_few_steps_on_separable_data_reduce_the_loss_and_classify(kind):
    torch.manual_seed(0)
    centers = torch.tensor([[4.0, 0.0], [-2.0, 3.5], [-2.0, -3.5]])
    y = torch.arange(60) % 3
    x = centers[y] + 0.5 * torch.randn(60, 2)
    embed = torch.nn.Linear(2, 4)
    loss = CorelLoss(3, 4, kind=kind)
    optimizer = torch.optim.Adam([*embed.parameters(), *loss.parameters()], lr=0.05)
    values = []
    for _ in range(40):
        value = loss(embed(x), y)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    assert values[-1] < values[0] - 0.3
    with torch.no_grad():
        accuracy = (loss.similarities(embed(x)).argmax(dim=1) == y).float().mean().item()
    assert accuracy > 0.95


# --------------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------------
@all_kinds
@pytest.mark.parametrize("scale", [0.0, 1e15])
def test_zero_and_huge_embeddings_give_finite_values_and_gradients(kind, scale):
    h = (torch.randn(6, 4) * scale).requires_grad_()
    w = torch.randn(3, 4, requires_grad=True)
    value = corel_loss(h, torch.arange(6) % 3, w, kind=kind)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
    if scale == 0.0 and kind == "cosine":
        # no direction: cos = 0 to every class vector (A = 1, no repulsion) and a zero, not huge, gradient
        assert value.item() == 1.0 and torch.equal(h.grad, torch.zeros_like(h))


@all_kinds
def test_bf16_autocast_runs_in_float32(kind):
    torch.manual_seed(0)
    layer, loss = torch.nn.Linear(5, 4), CorelLoss(3, 4, kind=kind)
    x, y = torch.randn(10, 5), torch.arange(10) % 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = layer(x)
        value = loss(h, y)
    assert h.dtype == torch.bfloat16 and value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(loss.class_vectors.grad).all()
    assert torch.allclose(value, loss(h.float(), y), rtol=1e-6, atol=1e-6)


def test_empty_batch_is_a_connected_zero():
    w = torch.randn(3, 4, requires_grad=True)
    value = corel_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), w, kind="gaussian")
    value.backward()
    assert value.item() == 0.0 and torch.equal(w.grad, torch.zeros_like(w))


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "euclidean"}, "kind='euclidean'"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"lam": 1.5}, "lam"),
        ({"reduction": "max"}, "reduction"),
    ],
)
def test_bad_options_are_config_errors(kwargs, message):
    h, y, w = batch()
    with pytest.raises(ConfigError, match=message):
        corel_loss(h, y, w, **kwargs)
    with pytest.raises(ConfigError, match=message):
        CorelLoss(3, 4, **kwargs)
    if "reduction" not in kwargs:
        with pytest.raises(ConfigError, match=message):
            CorelTerm(**kwargs)


def test_bad_shapes_and_labels_are_value_errors():
    h, y, w = batch(n=6, dim=5, classes=4)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        corel_loss(h[0], y, w)
    with pytest.raises(ValueError, match="dimension 3"):
        corel_loss(h, y, w[:, :3])
    with pytest.raises(ValueError, match="labels must have shape"):
        corel_loss(h, y[:5], w)
    with pytest.raises(ValueError, match="integer"):
        corel_loss(h, y.double(), w)
    for bad in (4, -1):
        labels = y.clone()
        labels[2] = bad
        with pytest.raises(ConfigError, match=r"\[0, 4\)"):
            corel_loss(h, labels, w)
    with pytest.raises(ConfigError, match="learn_gamma"):
        CorelTerm(kind="cosine", learn_gamma=True)
    with pytest.raises(ConfigError, match="num_classes"):
        CorelLoss(1, 4)


# --------------------------------------------------------------------------------------------------
# The term inside the module
# --------------------------------------------------------------------------------------------------
def test_term_before_bind_is_a_clear_error_and_bind_creates_the_class_vectors():
    term = CorelTerm(kind="gaussian", gamma=0.3, lam=0.6)
    outputs = ModelOutputs(torch.randn(4, 2, 5), torch.randn(4, 2, 6), torch.randn(4, 2, 3))
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(RuntimeError, match="bind"):
        term(outputs, labels)
    term.bind(num_classes=3, input_dim=6)
    vectors = term.loss.class_vectors
    expected = corel_loss(
        outputs.embeddings.flatten(0, 1), labels.repeat_interleave(2), vectors, "gaussian", 0.3, 0.6
    )
    assert term.name == "corel" and torch.allclose(term(outputs, labels), expected)
    term.bind(num_classes=3, input_dim=6)  # same shapes again: the vectors are kept
    assert term.loss.class_vectors is vectors
    with pytest.raises(ConfigError, match="re-bound"):
        term.bind(num_classes=4, input_dim=6)


@all_kinds
def test_class_vectors_are_module_parameters_in_the_optimizer_and_get_gradients(kind):
    module = _module(kind=kind)
    vectors = module.losses[0].loss.class_vectors
    assert vectors.shape == (3, 6)
    assert any(p is vectors for p in module.parameters())
    optimizer = module.configure_optimizers()
    assert any(p is vectors for group in optimizer.param_groups for p in group["params"])
    module.training_step(_images(), batch_idx=1).backward()
    assert vectors.grad is not None and vectors.grad.abs().sum() > 0
    before = vectors.detach().clone()
    optimizer.step()
    assert not torch.equal(before, vectors)


def test_state_dict_and_checkpoint_restore_the_class_vectors(tmp_path: Path):
    trained, fresh = _module(seed=0, kind="gaussian"), _module(seed=1, kind="gaussian")
    key = "losses.0.loss.class_vectors"
    assert key in trained.state_dict()
    assert not torch.equal(trained.state_dict()[key], fresh.state_dict()[key])
    fresh.load_state_dict(trained.state_dict())  # strict: same keys, shapes from bind
    assert torch.equal(fresh.losses[0].loss.class_vectors, trained.losses[0].loss.class_vectors)

    # A Lightning checkpoint: the module rebuilt from it (bind in __init__) gets the trained vectors.
    path = tmp_path / "corel.ckpt"
    checkpoint = {
        "state_dict": trained.state_dict(),
        "hyper_parameters": dict(trained.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    torch.save(checkpoint, path)
    torch.manual_seed(2)
    restored = EmbeddingModule.load_from_checkpoint(
        path, backbone=SmallCNN(width=4), losses=[CorelTerm(kind="gaussian")]
    )
    assert torch.equal(restored.losses[0].loss.class_vectors, trained.losses[0].loss.class_vectors)


def test_cli_config_gives_only_the_options_and_the_optimizer_trains_the_class_vectors(tmp_path, monkeypatch):
    from silhouette_lightning.cli import main
    from tests.cli_args import QUICKSTART as quickstart

    config = tmp_path / "corel.yaml"
    config.write_text(
        "model:\n"
        "  losses:\n"
        "    - class_path: silhouette_lightning.terms.corel.CorelTerm\n"
        "      init_args: {kind: gaussian, gamma: 0.25, weight: 0.5}\n"
    )
    seen = {}
    configure = EmbeddingModule.configure_optimizers

    def recording_configure(self):
        result = configure(self)
        optimizer = result["optimizer"] if isinstance(result, dict) else result
        vectors = self.losses[0].loss.class_vectors
        seen.update(module=self, initial=vectors.detach().clone(), optimizer=optimizer)
        return result

    monkeypatch.setattr(EmbeddingModule, "configure_optimizers", recording_configure)
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "--config", quickstart, "--config", str(config), "--trainer.fast_dev_run", "1"]
        + ["--data.image_size", "8", "--model.backbone.init_args.width", "4"]
        + ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    )
    term = seen["module"].losses[0]
    vectors = term.loss.class_vectors
    assert (term.kind, term.gamma, term.weight) == ("gaussian", 0.25, 0.5)
    assert vectors.shape == (10, 64)  # digits' 10 classes x quickstart's embedding_dim, never in the config
    assert any(p is vectors for g in seen["optimizer"].param_groups for p in g["params"])
    assert not torch.equal(seen["initial"], vectors.detach())  # one training step moved them
