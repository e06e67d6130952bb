"""The ``silhouette-fit`` command: LightningCLI over :class:`EmbeddingModule` and :class:`ImageDataModule`.

Subcommands ``fit``, ``validate``, ``test``, ``predict``; ``--config`` files compose left to right and
any key can be overridden on the command line (``--data.batch_size 64``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import lazy_instance
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    ModelCheckpoint,
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info

from silhouette_lightning.callbacks.embedding_writer import EmbeddingWriter
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.errors import ConfigError, NonFiniteLossError
from silhouette_lightning.module import EmbeddingModule

_TRAINER_DEFAULTS = {
    # Every run leaves runs/<name>/version_<n>/{config.yaml, metrics.csv, checkpoints/}.
    "logger": lazy_instance(CSVLogger, save_dir="runs", name="default"),
}


class SilhouetteCLI(LightningCLI):
    """LightningCLI with the data -> model links, a configurable checkpoint and ``test_after_fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # Checkpoints are configurable as `checkpoint.*` (monitor, save_top_k, every_n_epochs, ...).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                # '/' in a metric name would make a sub-folder, hence no automatic metric names.
                "checkpoint.filename": "best-epoch={epoch:03d}-val_acc={val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` on the best checkpoint (by checkpoint.monitor) in the same run "
            "folder. Ignored by the other subcommands.",
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """Rich progress bar and model summary by default, unless disabled or replaced in the config;
        for ``predict``, an :class:`EmbeddingWriter` unless the config has a prediction writer.

        (``trainer_defaults`` callbacks would be added unconditionally and clash with
        ``enable_progress_bar: false``.)
        """
        config = self._get(self.config_init, "trainer", default={})
        callbacks = list(config.get("callbacks") or [])
        if config.get("enable_progress_bar") is not False and not _has(callbacks, ProgressBar):
            callbacks.append(RichProgressBar())
        if config.get("enable_model_summary") is not False and not _has(callbacks, ModelSummary):
            callbacks.append(RichModelSummary(max_depth=2))
        if self.subcommand == "predict" and not _has(callbacks, BasePredictionWriter):
            # `predict` leaves <run folder>/predictions.npz unless the config brings its own writer.
            callbacks.append(EmbeddingWriter())
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    def after_fit(self) -> None:
        if self._get(self.config, "test_after_fit") and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")
        self._print_run_folder()

    def _print_run_folder(self) -> None:
        if self.trainer.log_dir is None:
            return
        run = Path(self.trainer.log_dir)
        lines = [f"Run folder: {run}", f"  config:      {run / 'config.yaml'}"]
        if self.trainer.logger is not None:
            lines.append(f"  metrics:     {run / 'metrics.csv'}")
        if (run / "plots").is_dir():
            lines.append(f"  plots:       {run / 'plots'}")
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            lines.append(f"  best ckpt:   {checkpoint.best_model_path}")
        if checkpoint is not None and checkpoint.last_model_path:
            lines.append(f"  last ckpt:   {checkpoint.last_model_path}")
        rank_zero_info("\n".join(lines))


def _has(callbacks: list, kind: type) -> bool:
    return any(isinstance(callback, kind) for callback in callbacks)


def run_cli(args: list[str] | None = None, run: bool = True) -> SilhouetteCLI:
    """Build (and with ``run``, execute) the CLI; returns it, so tests and scripts can reach the trainer."""
    return SilhouetteCLI(
        EmbeddingModule,
        ImageDataModule,
        trainer_defaults=_TRAINER_DEFAULTS,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``silhouette-fit`` and ``python -m silhouette_lightning``; ``args`` for in-process use.

    Returns None: console scripts pass the return value to ``sys.exit``.
    """
    try:
        run_cli(args)
    except Exception as error:
        user_error = _find_user_error(error)
        if user_error is None:
            raise
        # A user mistake or a diverged run: the message says what to change; a stack trace would bury it.
        print(f"silhouette-fit: error: {user_error}", file=sys.stderr)
        raise SystemExit(2 if isinstance(user_error, ConfigError) else 1) from error


def _find_user_error(error: BaseException | None) -> ConfigError | NonFiniteLossError | None:
    """The error with a user-facing message behind ``error`` (jsonargparse re-raises constructor errors as
    its own ValueError)."""
    while error is not None:
        if isinstance(error, ConfigError | NonFiniteLossError):
            return error
        error = error.__cause__ or error.__context__
    return None
