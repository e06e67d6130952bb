"""The non-finite guard, the trainer configs, and bf16-mixed training on the CPU against float32."""

import pytest
import torch
from lightning.pytorch import Trainer

from silhouette_lightning.cli import main, run_cli
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.errors import NonFiniteLossError
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm
from tests.cli_args import QUICKSTART, REPO
from tests.oracles import silhouette_oracle as oracle


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


def _fit(on_nonfinite, tmp_path, max_steps=5):
    torch.manual_seed(0)
    model = EmbeddingModule(
        SmallCNN(width=4),
        3,
        losses=[CrossEntropyTerm(), _NaNAtStep(at=2)],
        embedding_dim=8,
        on_nonfinite=on_nonfinite,
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


def test_under_bf16_mixed_the_module_computes_the_silhouette_term_in_float32():
    """Under bf16 autocast the network's outputs are bf16, and the silhouette term on them equals float64
    arithmetic (a naive loop) on those same rounded embeddings: the term itself adds no bf16 rounding.

    (It replaces comparing a bf16 training run with a float32 one: two runs' trajectories drift apart by
    the network's own rounding, 3-36 % on the silhouette term after two epochs depending on the thread
    count, which says nothing about our arithmetic.)
    """
    torch.manual_seed(0)
    for temperature_scale in ("relative", "absolute"):
        term = SoftSilhouetteTerm(temperature=0.1, temperature_scale=temperature_scale)
        model = EmbeddingModule(SmallCNN(width=8), 10, losses=[CrossEntropyTerm(), term], embedding_dim=16)
        data = ImageDataModule("digits", image_size=16, batch_size=64)
        data.setup("fit")
        images, labels = next(iter(data.train_dataloader()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model.encode(images)
            value = term(outputs, labels)
        assert outputs.embeddings.dtype == torch.bfloat16  # autocast really ran the network in bf16
        assert value.dtype == torch.float32
        x = oracle.normalize_rows(oracle.to_rows(outputs.embeddings[:, 0].detach().double()))
        terms = oracle.silhouette_terms(
            x, oracle.to_labels(labels), metric="euclidean", kind="softmax", temperature=0.1,
            temperature_scale=temperature_scale,
        )  # fmt: skip
        expected = sum((1 - t[0]) / 2 for t in terms if t[3]) / sum(1 for t in terms if t[3])
        assert abs(value.item() - expected) <= 1e-5 * abs(expected) + 1e-7, (temperature_scale, value)


def test_a_short_bf16_mixed_run_stays_finite_and_learns(tmp_path, monkeypatch):
    """Two epochs of the quick start in bf16-mixed: every logged value finite, and the embedding and the
    classifier far above chance (10 classes). Measured: val/acc 0.84-0.88, precision@1 0.94-0.95 with 1 and
    2 threads; float32 0.89 / 0.94."""
    monkeypatch.chdir(tmp_path)
    cli = run_cli(
        ["fit", "--config", QUICKSTART, "--config", str(REPO / "configs" / "trainer" / "cpu.yaml"),
         "--config", str(REPO / "configs" / "trainer" / "bf16.yaml"),
         "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
         "--test_after_fit", "false",
         "--model.backbone.init_args.width", "8", "--trainer.deterministic", "false"]
    )  # fmt: skip
    assert cli.trainer.precision == "bf16-mixed"
    logged = {key: float(value) for key, value in cli.trainer.callback_metrics.items()}
    assert {"val/loss", "val/loss/silhouette", "val/acc", "val/precision_at_1"} <= set(logged)
    assert all(torch.isfinite(torch.tensor(value)) for value in logged.values()), logged
    assert logged["val/acc"] > 0.5 and logged["val/precision_at_1"] > 0.5, logged
    assert logged["val/loss/silhouette"] < 0.4, logged  # 0.5 = no structure at all
