"""Command-line pieces shared by the in-process CLI tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
QUICKSTART = str(CONFIGS / "quickstart.yaml")

# A tiny model on tiny synthetic data, for runs that go through real epochs.
TINY = [
    "--config", QUICKSTART,
    "--data.dataset", "synthetic",
    "--data.image_size", "8",
    "--data.batch_size", "16",
    "--data.options", '{"num_classes": 3, "samples_per_class": 20}',
    "--model.backbone.init_args.width", "4",
    "--model.embedding_dim", "8",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def config_args(*names: str) -> list[str]:
    """``--config configs/<name>`` for each of ``names`` (e.g. ``"data/digits.yaml"``), in order: later files
    override earlier ones."""
    return [arg for name in names for arg in ("--config", str(CONFIGS / name))]
