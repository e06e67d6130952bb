"""The non-finite guard, the trainer configs, and bf16-mixed training on the CPU against float32."""

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from silhouette_lightning.cli import main
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.errors import NonFiniteLossError
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, ModelOutputs, SoftSilhouetteTerm
from tests.cli_args import QUICKSTART, REPO
from tests.oracles.centroid_oracle import centroid_terms
from tests.oracles.silhouette_oracle import TORCH_OPS
from tests.oracles.silhouette_oracle import loss as oracle_loss


class _NaNAtStep(SoftSilhouetteTerm):
    """The silhouette, but NaN from training step ``at`` on (a diverging run)."""

    def __init__(self, at: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.at = at
        self.calls = 0

    def compute(self, inputs, labels):
        value = super().compute(inputs, labels)
        self.calls += 1
        return value * float("nan") if self.training and self.calls > self.at else value


def _fit(on_nonfinite, tmp_path, max_steps=5, **module_kwargs):
    torch.manual_seed(0)
    model = EmbeddingModule(
        SmallCNN(width=4),
        3,
        losses=[CrossEntropyTerm(), _NaNAtStep(at=2)],
        embedding_dim=8,
        on_nonfinite=on_nonfinite,
        **module_kwargs,
    )
    data = ImageDataModule(
        "synthetic", image_size=8, batch_size=8, options={"num_classes": 3, "samples_per_class": 20}
    )
    trainer = Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    return model, trainer, data


def test_a_nan_loss_stops_the_run_naming_the_term_and_the_step(tmp_path):
    model, trainer, data = _fit("stop", tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"step 2 .*'silhouette' = nan.*on_nonfinite: skip"):
        trainer.fit(model, data)


def test_skip_leaves_the_weights_untouched_on_nan_steps(tmp_path):
    model, trainer, data = _fit("skip", tmp_path, max_steps=2)
    trainer.fit(model, data)  # two good steps
    before = [p.detach().clone() for p in model.parameters()]
    _, trainer, _ = _fit("skip", tmp_path, max_steps=4)  # a new run on the same model: all NaN steps
    with pytest.warns(UserWarning, match="The step is skipped"):
        trainer.fit(model, data)
    assert model.losses[1].calls > 3  # the NaN steps really ran
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new.detach())  # no update from a NaN step
        assert torch.isfinite(new).all()


def test_the_cli_turns_a_diverged_run_into_a_short_message(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", QUICKSTART, "--data.dataset", "synthetic", "--data.image_size", "8",
            "--model.backbone.init_args.width", "4", "--trainer.enable_progress_bar", "false",
            "--data.batch_size", "16",
            "--model.optimizer.init_args.lr", "1e30", "--trainer.max_epochs", "3"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Non-finite loss at step" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["cpu", "gpu", "gpu_ddp", "bf16", "fp16"])
def test_trainer_configs_parse(name, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config", QUICKSTART, "--config", str(REPO / "configs" / "trainer" / f"{name}.yaml"),
              "--print_config"])  # fmt: skip
    assert info.value.code == 0


@pytest.mark.parametrize("variant", ["pairwise", "centroid"])
def test_under_bf16_autocast_the_silhouette_is_float32_arithmetic_on_the_bf16_embeddings(variant):
    # The network runs in bf16 under autocast; the loss must not: given the bf16 embeddings it produced,
    # the term's value and gradient are those of exact (float64, naive-loop oracle) arithmetic on them, up
    # to float32 rounding (value) and the bf16 storage of the gradient itself. Independent of the thread
    # count, unlike a comparison of two training runs.
    torch.manual_seed(0)
    term = SoftSilhouetteTerm(variant=variant, soft_min="softmax", temperature=0.1)  # relative temperature
    model = EmbeddingModule(SmallCNN(width=4), 3, losses=[CrossEntropyTerm(), term], embedding_dim=8)
    images, labels = torch.randn(24, 3, 8, 8), torch.arange(24) % 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = model.encode(images).embeddings
        assert embeddings.dtype == torch.bfloat16  # the network really ran in bf16
        leaf = embeddings.detach().requires_grad_(True)
        value = term(ModelOutputs(features=leaf, embeddings=leaf, logits=leaf), labels)
    value.backward()
    assert value.dtype == torch.float32

    exact = leaf.detach()[:, 0].double().requires_grad_(True)
    if variant == "pairwise":  # the naive loops, differentiable through autograd: value and gradient
        rows = [[exact[i, j] for j in range(exact.shape[1])] for i in range(exact.shape[0])]
        expected = oracle_loss(
            rows, labels.tolist(), metric="euclidean", kind="softmax", temperature=0.1, normalize=True,
            reduction="mean", ops=TORCH_OPS,
        )  # fmt: skip
    else:  # the centroid loops give the value; the gradient is float64 autograd through our loss
        unit = (exact / exact.norm(dim=1, keepdim=True)).detach()
        s, *_ = centroid_terms(unit, labels, metric="euclidean", kind="softmax", temperature=0.1)
        assert abs(value.item() - sum((1 - v) / 2 for v in s) / len(s)) <= 1e-5
        expected = term.compute(exact, labels)
    expected.backward()
    assert abs(value.item() - expected.item()) <= 1e-5 * abs(expected.item()) + 1e-6
    grad, reference = leaf.grad[:, 0].double(), exact.grad
    assert (grad - reference).abs().max() <= 2 * 2**-8 * reference.abs().max() + 1e-12


@pytest.mark.filterwarnings("ignore:The `srun` command")
def test_a_short_bf16_mixed_run_stays_finite_and_learns(tmp_path):
    # 4 well-separated synthetic classes: the classifier goes from chance (25 %) to near 100 % in a few
    # epochs in float32 and bf16 alike; the margin does not depend on bf16's rounding or the thread count.
    torch.manual_seed(0)
    model = EmbeddingModule(
        SmallCNN(width=8), 4, losses=[CrossEntropyTerm(), SoftSilhouetteTerm(variant="pairwise")],
        embedding_dim=16, optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3),
    )  # fmt: skip
    data = ImageDataModule(
        "synthetic", image_size=8, batch_size=16, options={"num_classes": 4, "samples_per_class": 40}
    )
    trainer = Trainer(
        precision="bf16-mixed", accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )  # fmt: skip
    before = trainer.validate(model, data, verbose=False)[0]
    trainer.fit(model, data)
    after = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert all(torch.isfinite(torch.tensor(v)) for v in after.values()), after
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert after["val/loss"] < 0.7 * before["val/loss"], (before, after)
    assert after["val/acc"] >= 0.75, after


def test_skip_stops_after_max_consecutive_skips(tmp_path):
    model, trainer, data = _fit("skip", tmp_path, max_steps=20, max_consecutive_skips=3)
    with pytest.warns(UserWarning, match="The step is skipped"):  # steps 2 and 3
        with pytest.raises(
            NonFiniteLossError, match=r"step 4 .*3 skipped steps in a row.*max_consecutive_skips: 3"
        ):
            trainer.fit(model, data)
    assert all(torch.isfinite(p).all() for p in model.parameters())


class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class _NaNGradientAtStep(SoftSilhouetteTerm):
    def __init__(self, at: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.at, self.calls = at, 0

    def compute(self, inputs, labels):
        self.calls += 1
        bad = self.training and self.calls > self.at
        return super().compute(_NaNGradient.apply(inputs) if bad else inputs, labels)


def _tiny_fit(losses, on_nonfinite, tmp_path, images=None, max_steps=4):
    """A Trainer on 24 tiny images of 3 classes (``images`` replaces them), batches of 8."""
    torch.manual_seed(0)
    labels = torch.arange(24) % 3
    images = torch.randn(24, 3, 8, 8) if images is None else images
    loader = DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=False)
    model = EmbeddingModule(
        SmallCNN(width=4), 3, losses=losses, embedding_dim=8, on_nonfinite=on_nonfinite, report_accuracy=False
    )
    return model, _tiny_trainer(tmp_path, max_steps), loader


def _tiny_trainer(tmp_path, max_steps):
    return Trainer(
        max_steps=max_steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip


def _image_batches_with_a_nan():
    images = torch.randn(24, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    images[1, 0, 2, 2] = float("nan")  # one pixel of one image in the first batch
    return images


@pytest.mark.filterwarnings("ignore:No loss term reads the logits")
def test_a_nan_image_with_the_centroid_silhouette_stops_the_run(tmp_path):
    # Before: the centroid variant turned the NaN into a finite loss with NaN gradients, the guard never
    # fired and the parameters turned NaN.
    losses = [SoftSilhouetteTerm(variant="centroid")]
    model, trainer, loader = _tiny_fit(losses, "stop", tmp_path, images=_image_batches_with_a_nan())
    with pytest.raises(NonFiniteLossError, match=r"step 0 .*'silhouette' = nan"):
        trainer.fit(model, loader)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.filterwarnings("ignore:No loss term reads the logits")
def test_a_nan_image_with_the_centroid_silhouette_is_skipped_without_change(tmp_path):
    losses = [SoftSilhouetteTerm(variant="centroid")]
    model, trainer, loader = _tiny_fit(
        losses, "skip", tmp_path, images=_image_batches_with_a_nan(), max_steps=1
    )
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(UserWarning, match="step 0 .*The step is skipped"):
        trainer.fit(model, loader)
    assert trainer.global_step == 1
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new.detach())


def test_a_nan_gradient_with_finite_losses_stops_the_run(tmp_path):
    model, trainer, loader = _tiny_fit([CrossEntropyTerm(), _NaNGradientAtStep(at=2)], "stop", tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"Non-finite gradient at step 2 .*on_nonfinite: skip"):
        trainer.fit(model, loader)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_gradient_is_skipped_without_change(tmp_path):
    model, trainer, loader = _tiny_fit(
        [CrossEntropyTerm(), _NaNGradientAtStep(at=2)], "skip", tmp_path, max_steps=2
    )
    trainer.fit(model, loader)  # two good steps
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _tiny_trainer(tmp_path, max_steps=2)  # a new run on the same model: NaN gradients
    with pytest.warns(UserWarning, match="Non-finite gradient at step 1 .*The step is skipped"):
        trainer.fit(model, loader)
    assert model.losses[1].calls == 4 and trainer.global_step == 2
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new.detach())
