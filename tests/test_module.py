import warnings

import pytest
import torch

from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses import SoftSilhouetteLoss
from silhouette_lightning.metrics import silhouette_score
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm

# Steps are called directly here, without a Trainer to log to.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _module(**kwargs):
    torch.manual_seed(0)
    defaults = dict(
        backbone=SmallCNN(width=4),
        num_classes=3,
        losses=[CrossEntropyTerm(weight=1.0), SoftSilhouetteTerm(weight=0.5)],
        embedding_dim=6,
    )
    return EmbeddingModule(**{**defaults, **kwargs})


def _batch(batch=8, views=None):
    g = torch.Generator().manual_seed(1)
    shape = (batch, 3, 8, 8) if views is None else (batch, views, 3, 8, 8)
    return torch.randn(*shape, generator=g), torch.arange(batch) % 3


def test_encode_shapes_single_and_multi_view():
    module = _module()
    out = module.encode(_batch()[0])
    assert (
        out.features.shape == (8, 1, 16)
        and out.embeddings.shape == (8, 1, 6)
        and out.logits.shape == (8, 1, 3)
    )
    out = module.encode(_batch(views=2)[0])
    assert out.embeddings.shape == (8, 2, 6)
    assert module(_batch()[0]).shape == (8, 6)


def test_training_step_is_weighted_sum_of_terms():
    module = _module().eval()  # eval: BatchNorm gives the same outputs on both passes
    images, labels = _batch()
    total = module.training_step((images, labels), batch_idx=1)
    with torch.no_grad():
        out = module.encode(images)
        ce = torch.nn.functional.cross_entropy(out.logits[:, 0], labels)
        sil = SoftSilhouetteLoss()(out.embeddings[:, 0], labels)
    assert torch.allclose(total, ce + 0.5 * sil, atol=1e-6)


def test_every_parameter_gets_a_gradient_with_ce_and_silhouette():
    # DDP fails on parameters that receive no gradient; CE + silhouette must reach head and classifier.
    module = _module()
    module.training_step(_batch(), batch_idx=1).backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    assert missing == []


@pytest.mark.parametrize(
    ("losses", "online", "frozen", "warning"),
    [
        ([CrossEntropyTerm()], False, "head.", "No loss term reads the embeddings"),
        ([SoftSilhouetteTerm()], False, "classifier.", "online_linear_eval: true"),
    ],
)
def test_parts_no_term_trains_are_frozen_and_left_out_of_the_optimizer(losses, online, frozen, warning):
    # Otherwise they get no gradient, and DDP fails on the first step (tests/test_ddp_trainer_parity.py).
    with pytest.warns(UserWarning, match=warning):
        module = _module(losses=losses, online_linear_eval=online)
    module.training_step(_batch(), batch_idx=1).backward()
    for name, p in module.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen)), name
        assert (p.grad is None) == name.startswith(frozen), name
    optimized = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.parameters() if p.requires_grad}


def test_out_of_range_labels_are_a_clear_error_on_the_first_batch():
    module = _module()
    images, _ = _batch()
    with pytest.raises(ConfigError, match=r"Labels must lie in \[0, 3\).*\[0, 5\]"):
        module.training_step((images, torch.tensor([0, 1, 2, 5, 0, 1, 2, 0])), batch_idx=0)
    with pytest.raises(ConfigError, match=r"\[-1, 2\]"):
        module.validation_step((images, torch.tensor([0, 1, 2, -1, 0, 1, 2, 0])), batch_idx=0)


def test_bad_module_arguments():
    with pytest.raises(ConfigError, match="unique"):
        _module(losses=[CrossEntropyTerm(), CrossEntropyTerm()])
    with pytest.raises(ConfigError, match="num_classes"):
        _module(num_classes=1)
    with pytest.raises(ConfigError, match="empty"):
        _module(losses=[])


def test_optimizer_and_scheduler_are_injected():
    module = _module(
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2),
    )
    config = module.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.SGD) and config["optimizer"].defaults["lr"] == 0.5
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert config["lr_scheduler"]["interval"] == "epoch"
    assert isinstance(_module().configure_optimizers(), torch.optim.AdamW)


def test_online_linear_eval_trains_only_the_classifier_on_detached_features():
    module = _module(losses=[SoftSilhouetteTerm()], online_linear_eval=True).eval()
    images, labels = _batch()
    total = module.training_step((images, labels), batch_idx=1)
    with torch.no_grad():
        out = module.encode(images)
        expected = SoftSilhouetteLoss()(out.embeddings[:, 0], labels) + torch.nn.functional.cross_entropy(
            out.logits[:, 0], labels
        )
    assert torch.allclose(total, expected, atol=1e-6)
    total.backward()
    # The classifier learns; the backbone's gradient comes from the silhouette alone.
    assert module.classifier.weight.grad.abs().sum() > 0
    backbone_grad = [p.grad.clone() for p in module.backbone.parameters()]
    module.zero_grad()
    SoftSilhouetteLoss()(module.encode(images).embeddings[:, 0], labels).backward()
    for with_eval, without in zip(backbone_grad, [p.grad for p in module.backbone.parameters()], strict=True):
        assert torch.allclose(with_eval, without, atol=1e-6)


def test_online_linear_eval_rejects_a_term_on_the_logits():
    with pytest.raises(ConfigError, match="online_linear_eval"):
        _module(online_linear_eval=True)  # the default terms include CrossEntropyTerm


def test_validation_logs_the_embedding_metrics_of_the_configured_output():
    module = _module(eval_output="features").eval()
    images, labels = _batch(batch=12)
    module.validation_step((images, labels), batch_idx=1)
    values = module.evaluation("val").compute()
    assert set(values) >= {"silhouette", "precision_at_1", "map_at_r", "nmi", "ami"}
    # They describe the backbone features (L2-normalised), not the head's embeddings.
    features = torch.nn.functional.normalize(module.encode(images).features[:, 0].detach(), dim=1)
    torch.testing.assert_close(values["silhouette"], silhouette_score(features, labels), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="eval_output"):
        _module(eval_output="logits")


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
def test_a_learning_rate_that_cannot_train_is_a_config_error(lr):
    module = _module(optimizer=lambda params: torch.optim.SGD(params, lr=lr))
    with pytest.raises(ConfigError, match=r"model\.optimizer\.init_args\.lr must be a finite number > 0"):
        module.configure_optimizers()


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_max_consecutive_skips_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match="model.max_consecutive_skips"):
        _module(max_consecutive_skips=value)


@pytest.mark.parametrize(("t_max", "warns"), [(7, True), (3, False)])
def test_a_cosine_schedule_longer_than_the_run_warns(t_max, warns, tmp_path):
    from lightning.pytorch import Trainer

    module = _module(lr_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max))
    module.trainer = Trainer(max_epochs=3, logger=False, default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module.configure_optimizers()
    messages = [str(w.message) for w in caught if "T_max" in str(w.message)]
    if warns:
        assert len(messages) == 1
        assert "T_max is 7 but trainer.max_epochs is 3" in messages[0]
        assert "--model.lr_scheduler.init_args.T_max 3" in messages[0]
    else:
        assert messages == []


def test_a_list_of_eval_outputs_logs_each_under_its_name_and_few_shot_at_test(tmp_path):
    from lightning.pytorch import Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from silhouette_lightning.metrics import fewshot_accuracy

    g = torch.Generator().manual_seed(2)
    labels = torch.arange(24) % 3
    images = torch.randn(24, 3, 8, 8, generator=g) + labels[:, None, None, None]
    loader = DataLoader(TensorDataset(images, labels), batch_size=12)
    fewshot = {"ways": 3, "shots": [1, 2], "queries": 2, "episodes": 10, "val": True}
    module = _module(eval_output=["embeddings", "features"], fewshot=fewshot)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer = Trainer(fast_dev_run=True, **quiet)
    trainer.validate(module, loader, verbose=False)
    logged = trainer.callback_metrics
    for output in ("embeddings", "features"):
        for name in ("silhouette", "map_at_r", "fewshot_3way_1shot", "fewshot_3way_2shot"):
            assert f"val/{output}/{name}" in logged
    assert "val/silhouette" not in logged
    # The names the module says it logs (checkpoint.monitor is checked against them) are what it logs.
    assert set(module.logged_metric_names("val")) == {key for key in logged if key.startswith("val/")}
    # Equal to a direct computation on each representation (L2-normalised; fast_dev_run: one batch of 12).
    with torch.no_grad():
        encoded = module.eval().encode(images[:12])
    for output in ("embeddings", "features"):
        x = torch.nn.functional.normalize(encoded.get(output)[:, 0], dim=1)
        torch.testing.assert_close(
            logged[f"val/{output}/silhouette"], silhouette_score(x, labels[:12]).float(), rtol=1e-5, atol=1e-6
        )
        direct = fewshot_accuracy(x, labels[:12], 3, 1, 2, 10, 0).float()
        torch.testing.assert_close(logged[f"val/{output}/fewshot_3way_1shot"], direct)
    # A single name keeps the historical names; few-shot is logged at validation only with val: true.
    single = _module(fewshot={"ways": 3, "queries": 3, "episodes": 10})
    trainer.validate(single, loader, verbose=False)
    assert "val/silhouette" in trainer.callback_metrics
    assert not any("fewshot" in key for key in trainer.callback_metrics)
    trainer.test(single, loader, verbose=False)
    assert "test/fewshot_3way_1shot" in trainer.callback_metrics


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("logits", "'logits'"),
        (["embeddings", "embeddings"], r"\['embeddings', 'embeddings'\]"),
        ([], r"\[\]"),
    ],
)
def test_bad_eval_outputs_name_the_key_and_the_choices(value, message):
    with pytest.raises(ConfigError, match=rf"model.eval_output={message}.*\['embeddings', 'features'\]"):
        _module(eval_output=value)
