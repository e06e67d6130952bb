"""Tests of MetricLearningTerm: pytorch-metric-learning losses as terms (README, "Objectives").

The oracle is pytorch-metric-learning itself, called directly on the same flattened input; the CLI is
run in-process from YAML, as users configure it.
"""

from __future__ import annotations

import functools

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from silhouette_lightning.cli import main
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms.cross_entropy import CrossEntropyTerm
from silhouette_lightning.terms.metric_learning import MetricLearningTerm
from silhouette_lightning.terms.outputs import ModelOutputs
from tests.cli_args import QUICKSTART
from tests.terms.model_outputs import random_model_outputs

TERM = "silhouette_lightning.terms.metric_learning.MetricLearningTerm"
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _outputs(seed=0):
    return random_model_outputs(batch=12, dim=8, seed=seed), torch.arange(12) % 3


def _flat(outputs, labels, name="embeddings"):
    x = outputs.get(name)
    return x.flatten(0, 1), labels.repeat_interleave(x.shape[1])


# --------------------------------------------------------------------------------------------------
# Values: the term equals the pytorch-metric-learning loss on the flattened views
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: pml_losses.TripletMarginLoss(margin=0.1),
        lambda: pml_losses.ContrastiveLoss(pos_margin=0.1, neg_margin=0.8),
        lambda: pml_losses.MultiSimilarityLoss(),
    ],
)
def test_plain_loss_instance_equals_the_loss_called_directly(make_loss):
    outputs, labels = _outputs()
    term = MetricLearningTerm(make_loss(), weight=0.5)
    expected = make_loss()(*_flat(outputs, labels))
    assert expected > 0 and torch.allclose(term(outputs, labels), expected)


def test_miner_indices_are_passed_to_the_loss():
    outputs, labels = _outputs(seed=1)
    x, y = _flat(outputs, labels)
    loss = pml_losses.TripletMarginLoss(margin=0.1)
    miner = pml_miners.TripletMarginMiner(margin=0.1, type_of_triplets="semihard")
    term = MetricLearningTerm(loss, miner=miner, name="triplet")
    indices = miner(x, y)
    assert 0 < len(indices[0]) < 12 * 2 * 7 * 16  # mined: fewer than all triplets, not none
    expected = loss(x, y, indices)
    assert torch.allclose(term(outputs, labels), expected)
    assert not torch.allclose(expected, loss(x, y))  # the miner matters for this batch


def test_views_and_input_selection():
    outputs, labels = _outputs(seed=2)
    term = MetricLearningTerm(pml_losses.ContrastiveLoss(), input="features", views="first")
    expected = pml_losses.ContrastiveLoss()(outputs.features[:, 0], labels)
    assert torch.allclose(term(outputs, labels), expected)


def test_proxy_loss_is_built_in_bind_with_the_shapes_and_matches_the_loss_called_directly():
    outputs, labels = _outputs(seed=3)
    term = MetricLearningTerm(functools.partial(pml_losses.ProxyAnchorLoss, margin=0.2, alpha=16))
    with pytest.raises(RuntimeError, match="bind"):
        term(outputs, labels)
    term.bind(num_classes=3, input_dim=8)
    assert isinstance(term.loss, pml_losses.ProxyAnchorLoss) and term.loss.proxies.shape == (3, 8)
    reference = pml_losses.ProxyAnchorLoss(3, 8, margin=0.2, alpha=16)
    with torch.no_grad():
        reference.proxies.copy_(term.loss.proxies)
    assert torch.allclose(term(outputs, labels), reference(*_flat(outputs, labels)))
    proxies = term.loss.proxies
    term.bind(num_classes=3, input_dim=8)  # the same shapes again: the proxies are kept
    assert term.loss.proxies is proxies
    with pytest.raises(ConfigError, match="re-bound"):
        term.bind(num_classes=4, input_dim=8)


@pytest.mark.parametrize(
    ("loss_class", "weight_name", "shape"),
    [
        (pml_losses.ProxyNCALoss, "proxies", (4, 6)),
        (pml_losses.NormalizedSoftmaxLoss, "W", (6, 4)),
        (pml_losses.ArcFaceLoss, "W", (6, 4)),
        (pml_losses.CosFaceLoss, "W", (6, 4)),  # CosFaceLoss(*args, ...): shapes found via its parent
        (pml_losses.TripletMarginLoss, None, None),  # a class without shapes is called without them
    ],
)
def test_a_loss_class_gets_exactly_the_shape_arguments_it_takes(loss_class, weight_name, shape):
    term = MetricLearningTerm(loss_class)
    term.bind(num_classes=4, input_dim=6)
    assert type(term.loss) is loss_class and term.name == loss_class.__name__.lower()
    if weight_name is not None:
        assert getattr(term.loss, weight_name).shape == shape


class _FixedShapeProxyAnchor(pml_losses.ProxyAnchorLoss):
    """A subclass that fixes its own shapes: its __init__ takes neither, so the term must pass neither."""

    def __init__(self, margin=0.1):
        super().__init__(num_classes=3, embedding_size=8, margin=margin)


def test_a_subclass_that_fixes_the_shapes_is_called_without_them():
    term = MetricLearningTerm(functools.partial(_FixedShapeProxyAnchor, margin=0.3))
    term.bind(num_classes=3, input_dim=8)
    assert term.loss.proxies.shape == (3, 8) and term.loss.margin == 0.3


def test_bf16_autocast_computes_in_float32():
    outputs, labels = _outputs(seed=4)
    term = MetricLearningTerm(pml_losses.TripletMarginLoss(margin=0.1))
    half = ModelOutputs(outputs.features, outputs.embeddings.bfloat16(), outputs.logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = term(half, labels)
    x, y = _flat(half, labels)
    assert value.dtype == torch.float32
    assert torch.allclose(value, pml_losses.TripletMarginLoss(margin=0.1)(x.float(), y), atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Inside the module: the loss's parameters are the module's
# --------------------------------------------------------------------------------------------------
def test_proxies_are_module_parameters_in_the_optimizer_and_get_gradients():
    torch.manual_seed(0)
    module = EmbeddingModule(
        backbone=SmallCNN(width=4),
        num_classes=3,
        losses=[CrossEntropyTerm(), MetricLearningTerm(pml_losses.ProxyAnchorLoss, name="proxy")],
        embedding_dim=6,
    )
    proxies = module.losses[1].loss.proxies
    assert proxies.shape == (3, 6) and "losses.1.loss.proxies" in module.state_dict()
    assert any(p is proxies for p in module.parameters())
    optimizer = module.configure_optimizers()
    assert any(p is proxies for group in optimizer.param_groups for p in group["params"])
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(9, 3, 8, 8, generator=g), torch.arange(9) % 3
    module.training_step((images, labels), batch_idx=1).backward()
    assert proxies.grad is not None and proxies.grad.abs().sum() > 0
    assert [n for n, p in module.named_parameters() if p.grad is None] == []


# --------------------------------------------------------------------------------------------------
# Names and errors
# --------------------------------------------------------------------------------------------------
def test_default_names_come_from_the_loss_class():
    assert MetricLearningTerm(pml_losses.TripletMarginLoss()).name == "tripletmarginloss"
    assert MetricLearningTerm(pml_losses.ProxyAnchorLoss).name == "proxyanchorloss"
    assert MetricLearningTerm(functools.partial(pml_losses.ArcFaceLoss, margin=20)).name == "arcfaceloss"
    assert MetricLearningTerm(lambda num_classes, embedding_size: None).name == "metric_learning"
    assert MetricLearningTerm(pml_losses.ContrastiveLoss(), name="pairs").name == "pairs"


def test_bad_losses_and_miners_are_config_errors():
    with pytest.raises(ConfigError, match="pytorch-metric-learning loss"):
        MetricLearningTerm(torch.nn.CrossEntropyLoss())
    with pytest.raises(ConfigError, match="pytorch-metric-learning loss"):
        MetricLearningTerm("triplet")
    with pytest.raises(ConfigError, match="miner"):
        MetricLearningTerm(pml_losses.TripletMarginLoss(), miner=pml_losses.ContrastiveLoss())
    term = MetricLearningTerm(lambda num_classes, embedding_size: torch.nn.Linear(embedding_size, 1))
    with pytest.raises(ConfigError, match="not a pytorch-metric-learning loss"):
        term.bind(3, 4)
    term = MetricLearningTerm(lambda n, d: pml_losses.ProxyAnchorLoss(n, d))  # other parameter names
    with pytest.raises(ConfigError, match="could not build"):
        term.bind(3, 4)


# --------------------------------------------------------------------------------------------------
# From YAML through the real CLI, in-process
# --------------------------------------------------------------------------------------------------
def _fit(tmp_path, losses_yaml, *extra):
    config = tmp_path / "losses.yaml"
    config.write_text("model:\n  losses:\n" + losses_yaml)
    main(
        ["fit", "--config", QUICKSTART, "--config", str(config)]
        + ["--data.image_size", "8", "--model.backbone.init_args.width", "4"]
        + ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra]
    )


TRIPLET_YAML = f"""\
    - class_path: {TERM}
      init_args:
        name: triplet
        loss:
          class_path: pytorch_metric_learning.losses.TripletMarginLoss
          init_args: {{margin: 0.1}}
        miner:
          class_path: pytorch_metric_learning.miners.TripletMarginMiner
          init_args: {{margin: 0.1, type_of_triplets: semihard}}
"""
PROXY_YAML = f"""\
    - class_path: silhouette_lightning.terms.CrossEntropyTerm
    - class_path: {TERM}
      init_args:
        weight: 0.5
        loss:
          class_path: pytorch_metric_learning.losses.ProxyAnchorLoss
          init_args: {{margin: 0.2, alpha: 16}}
"""


@pytest.fixture
def record_terms(monkeypatch, tmp_path):
    """Records every MetricLearningTerm call with PML's own value on the same input, and the optimizer."""
    monkeypatch.chdir(tmp_path)
    seen = {"calls": []}
    compute = MetricLearningTerm.compute

    def recording_compute(self, inputs, labels):
        value = compute(self, inputs, labels)
        indices = None if self.miner is None else self.miner(inputs.detach(), labels)
        direct = self.loss(inputs.detach(), labels, indices)
        seen["calls"].append((self, value.detach(), direct.detach()))
        return value

    configure = EmbeddingModule.configure_optimizers

    def recording_configure(self):
        result = configure(self)
        seen["optimizer"] = result["optimizer"] if isinstance(result, dict) else result
        seen["initial"] = {k: v.detach().clone() for k, v in self.state_dict().items() if ".loss." in k}
        return result

    monkeypatch.setattr(MetricLearningTerm, "compute", recording_compute)
    monkeypatch.setattr(EmbeddingModule, "configure_optimizers", recording_configure)
    return seen


def test_cli_triplet_with_miner_from_yaml(tmp_path, record_terms):
    _fit(tmp_path, TRIPLET_YAML, "--trainer.fast_dev_run", "1")
    term, value, direct = record_terms["calls"][0]
    assert term.name == "triplet" and type(term.loss) is pml_losses.TripletMarginLoss
    assert term.loss.margin == 0.1 and term.miner.type_of_triplets == "semihard"
    assert torch.allclose(value, direct)
    assert len(record_terms["calls"]) == 2  # one training and one validation batch


def test_cli_proxy_anchor_from_yaml_trains_the_proxies(tmp_path, record_terms):
    _fit(tmp_path, PROXY_YAML, "--trainer.fast_dev_run", "1")
    term, value, direct = record_terms["calls"][0]
    proxies = term.loss.proxies
    assert term.name == "proxyanchorloss" and term.weight == 0.5 and term.loss.margin == 0.2
    assert proxies.shape == (10, 64)  # digits' classes x quickstart's embedding_dim: not in the YAML
    assert torch.allclose(value, direct)
    assert any(p is proxies for g in record_terms["optimizer"].param_groups for p in g["params"])
    assert not torch.equal(record_terms["initial"]["losses.1.loss.proxies"], proxies.detach())


def test_cli_checkpoint_holds_and_restores_the_proxies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fit(
        tmp_path,
        PROXY_YAML,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
    )
    checkpoint = next(tmp_path.glob("runs/**/last.ckpt"))
    saved = torch.load(checkpoint, weights_only=False)["state_dict"]["losses.1.loss.proxies"]
    restored = EmbeddingModule.load_from_checkpoint(checkpoint)
    assert torch.equal(restored.losses[1].loss.proxies, saved)


@pytest.mark.parametrize(
    ("class_path", "message"),
    [
        ("pytorch_metric_learning.losses.NoSuchLoss", "NoSuchLoss"),
        ("torch.nn.CrossEntropyLoss", "BaseMetricLossFunction"),
    ],
)
def test_cli_bad_loss_class_path_is_a_clear_error(tmp_path, monkeypatch, capsys, class_path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        _fit(tmp_path, f"    - class_path: {TERM}\n      init_args: {{loss: {{class_path: {class_path}}}}}\n")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert class_path in err and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_cli_loss_that_cannot_be_built_is_a_short_error(tmp_path, monkeypatch, capsys):
    # RankedListLoss needs `margin` and `Tn`, which only the user can give.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        loss = "pytorch_metric_learning.losses.RankedListLoss"
        _fit(tmp_path, f"    - class_path: {TERM}\n      init_args: {{loss: {loss}}}\n")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "silhouette-fit: error:" in err and "RankedListLoss" in err and "init_args" in err
