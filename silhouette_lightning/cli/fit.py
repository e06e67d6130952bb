"""The ``silhouette-fit`` command: LightningCLI over :class:`EmbeddingModule` and :class:`ImageDataModule`.

Subcommands ``fit``, ``validate``, ``test``, ``predict``; ``--config`` files compose left to right and
any key can be overridden on the command line (``--data.batch_size 64``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from jsonargparse import lazy_instance
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from silhouette_lightning.callbacks.embedding_projector import EmbeddingProjector
from silhouette_lightning.callbacks.embedding_writer import EmbeddingWriter
from silhouette_lightning.callbacks.epoch_seed import EpochSeed
from silhouette_lightning.callbacks.interrupt_checkpoint import InterruptCheckpoint
from silhouette_lightning.callbacks.stop_on_sigterm import StopOnSigterm
from silhouette_lightning.cli.checkpointing import (
    AtomicCheckpointIO,
    EpochEndCheckpoint,
    check_writable,
    checkpoint_problem,
)
from silhouette_lightning.cli.config_checks import check_config, check_config_files
from silhouette_lightning.cli.launch_checks import check_launch, close_process_group, report_to_torchrun
from silhouette_lightning.cli.resume import ResumePoint, continue_metrics_csv, resume_candidates
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.errors import ConfigError, NonFiniteLossError
from silhouette_lightning.experiments.runs import (
    CHECKPOINTS_DIR,
    CONFIG_FILE,
    DEFAULT_LOGGER_NAME,
    DEFAULT_SAVE_DIR,
    METRICS_FILE,
    logger_version,
    version_folder,
)
from silhouette_lightning.module import EmbeddingModule

_TRAINER_DEFAULTS = {
    # Every run leaves runs/<name>/version_<n>/{config.yaml, metrics.csv, checkpoints/}.
    "logger": lazy_instance(CSVLogger, save_dir=DEFAULT_SAVE_DIR, name=DEFAULT_LOGGER_NAME),
}


class SilhouetteCLI(LightningCLI):
    """LightningCLI with the data -> model links, a configurable checkpoint and ``test_after_fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # Checkpoints are configurable as `checkpoint.*` (monitor, save_top_k, every_n_epochs, ...).
        # EpochEndCheckpoint: last.ckpt is the end of the last finished epoch, not only of improving ones.
        parser.add_lightning_class_args(EpochEndCheckpoint, "checkpoint")
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

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # An empty or non-mapping --config file: one line naming it instead of jsonargparse's usage page.
        check_config_files(sys.argv[1:] if args is None else args if isinstance(args, list) else [])
        super().parse_arguments(parser, args)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """Rich progress bar and model summary by default, unless disabled or replaced in the config;
        for ``predict``, an :class:`EmbeddingWriter` unless the config has a prediction writer.

        (``trainer_defaults`` callbacks would be added unconditionally and clash with
        ``enable_progress_bar: false``.)
        """
        config = self._get(self.config_init, "trainer", default={})
        # Settings that would train nothing, fail late or with a misleading message (config_checks).
        checkpoint = self._get(self.config_init, "checkpoint", default=None)
        check_config(self.subcommand, config, self.model, self.datamodule, checkpoint)
        # Devices, nodes and the launcher (torchrun, SLURM) must agree before anything starts; Lightning
        # would otherwise fail late, hang waiting for a node, or silently run independent copies.
        check_launch(
            config.get("accelerator"),
            config.get("devices"),
            config.get("num_nodes"),
            strategy=config.get("strategy"),
            plugins=config.get("plugins"),
        )
        callbacks = list(config.get("callbacks") or [])
        if config.get("enable_progress_bar") is not False and not _has(callbacks, ProgressBar):
            callbacks.append(RichProgressBar())
        if config.get("enable_model_summary") is not False and not _has(callbacks, ModelSummary):
            callbacks.append(RichModelSummary(max_depth=2))
        if self.subcommand == "fit":
            # Resumable runs: a checkpoint on SIGTERM / Ctrl+C, and epochs whose randomness does not
            # depend on what ran before them (see --ckpt_path last in before_fit).
            for kind in (InterruptCheckpoint, EpochSeed):
                if not _has(callbacks, kind):
                    callbacks.append(kind())
        if not _has(callbacks, EmbeddingProjector):
            # Test/predict embeddings to TensorBoard's Projector; does nothing without a TensorBoardLogger.
            callbacks.append(EmbeddingProjector())
        if not _has(callbacks, StopOnSigterm):  # SIGTERM also stops test_after_fit, test, predict, ...
            callbacks.append(StopOnSigterm())
        if self.subcommand == "predict" and not _has(callbacks, BasePredictionWriter):
            # `predict` leaves <run folder>/predictions.npz unless the config brings its own writer.
            callbacks.append(EmbeddingWriter())
        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            # Checkpoints are written atomically: a full disk never leaves a torn last.ckpt.
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        if config.get("fast_dev_run") and config.get("default_root_dir") is None:
            # fast_dev_run disables the logger, so checkpoints/ and plots/ would land in the current folder.
            kwargs["default_root_dir"] = tempfile.mkdtemp(prefix="silhouette-fast-dev-run-")
            rank_zero_info(f"fast_dev_run: outputs (if any) go to {kwargs['default_root_dir']}")
        return super().instantiate_trainer(callbacks=callbacks, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """An explicit ``--ckpt_path`` file must be a readable checkpoint (one line, exit 2, else a deep
        torch traceback). Lightning then replaces the config's ``model`` by the checkpoint's hyperparameters
        (the weights need the model they were trained with); the keys that changed are named in a warning.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in _LIGHTNING_CKPT_NAMES or "://" in str(ckpt_path):
            return super()._parse_ckpt_path()
        problem = checkpoint_problem(Path(ckpt_path))
        if problem is not None:
            raise ConfigError(
                f"--ckpt_path {ckpt_path}: {problem}. Pass an intact .ckpt file (or `last` for the newest "
                "checkpoint of this run name)."
            )
        before = _flat(self.config[subcommand].get("model"))
        super()._parse_ckpt_path()
        after = _flat(self.config[subcommand].get("model"))
        changed = [
            f"model.{key}: {before.get(key)!r} -> {after.get(key)!r}"
            for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)
        ]
        if changed:
            rank_zero_warn(
                f"--ckpt_path {ckpt_path}: the model is built from the checkpoint's hyperparameters, which "
                f"override the config (config -> checkpoint): {'; '.join(changed)}"
            )

    def _run_subcommand(self, subcommand: str) -> None:
        """``--ckpt_path last`` outside ``fit`` must find a run (else validate/test/predict would use random
        weights with exit 0): the newest intact resumable checkpoint of this run name, else exit 2."""
        ckpt_path = self._get(self.config, "ckpt_path")
        if ckpt_path == "last" and subcommand != "fit":
            point = self._resume_point()
            if point is None:
                raise ConfigError(
                    f"--ckpt_path last: no intact checkpoint in {self._resume_folders()}; `{subcommand}` "
                    "needs trained weights: pass --ckpt_path <file.ckpt> or the config of the trained run."
                )
            rank_zero_info(f"{subcommand}: using {point.checkpoint}")
            self.config_init[subcommand]["ckpt_path"] = str(point.checkpoint)
        super()._run_subcommand(subcommand)

    def _resume_folders(self) -> str:
        """Where ``--ckpt_path last`` looks, for messages."""
        run_root, fixed_dirs, _, version = self._resume_search()
        if fixed_dirs:
            return ", ".join(str(d) for d in fixed_dirs)
        return f"{run_root}/{version or '*'}/checkpoints"

    def _resume_search(self) -> tuple[Path | None, list[Path], Path | None, str | None]:
        logger = self.trainer.logger
        run_root = getattr(logger, "root_dir", None)
        checkpoint = self.trainer.checkpoint_callback
        fixed_dirs = [Path(checkpoint.dirpath)] if getattr(checkpoint, "dirpath", None) else []
        if run_root is None and not fixed_dirs:  # no logger: checkpoints go to <default_root_dir>/checkpoints
            fixed_dirs = [Path(self.trainer.default_root_dir) / CHECKPOINTS_DIR]
        fixed_version = getattr(logger, "_version", None)  # set in the config, else chosen lazily
        return (
            Path(run_root) if run_root is not None and not fixed_dirs else None,
            fixed_dirs,
            # Lightning's SLURM requeue checkpoints live in default_root_dir, shared by every run started
            # there: only inside a SLURM job are they this run's (Lightning itself looks only then).
            Path(self.trainer.default_root_dir) if SLURMEnvironment.detect() else None,
            None if fixed_version is None else version_folder(fixed_version),
        )

    def _resume_point(self) -> ResumePoint | None:
        """The newest *intact* resumable checkpoint (:mod:`.resume`); a torn or corrupt
        newer one is named in a warning and skipped."""
        run_root, fixed_dirs, hpc_dir, version = self._resume_search()
        for point in resume_candidates(run_root, fixed_dirs, hpc_dir=hpc_dir, version=version):
            problem = checkpoint_problem(point.checkpoint)
            if problem is None:
                return point
            rank_zero_warn(f"--ckpt_path last: skipping {point.checkpoint}: {problem}")
        return None

    def before_fit(self) -> None:
        """The output folder must be writable (else the first checkpoint fails after an epoch of work);
        ``--ckpt_path last``: continue the newest run of this name (:mod:`.resume`)."""
        if not self.trainer.fast_dev_run:
            logger_dir = getattr(self.trainer.logger, "save_dir", None)
            checkpoint_dir = getattr(self.trainer.checkpoint_callback, "dirpath", None)
            check_writable(logger_dir or self.trainer.default_root_dir, "trainer.logger.init_args.save_dir")
            if checkpoint_dir:
                check_writable(checkpoint_dir, "checkpoint.dirpath")
        if self._get(self.config, "ckpt_path") != "last":
            return
        point = self._resume_point()
        subcommand_config = self.config_init[self.subcommand]
        if point is None:
            # Not an error, so a requeued job script can always pass --ckpt_path last.
            rank_zero_warn(
                f"--ckpt_path last: no checkpoint in {self._resume_folders()}; starting a new run from "
                "scratch."
                " (If a run should be there, check --trainer.logger.init_args.save_dir/name.)"
            )
            subcommand_config["ckpt_path"] = None
            return
        max_epochs = self.trainer.max_epochs
        if point.checkpoint.name.startswith("last") and max_epochs is not None and max_epochs >= 0:
            epoch = torch.load(point.checkpoint, map_location="cpu", weights_only=False, mmap=True)["epoch"]
            if epoch + 1 >= max_epochs:  # last*.ckpt is written at the end of its epoch
                rank_zero_info(
                    f"--ckpt_path last: {point.checkpoint} is the end of epoch {epoch + 1} of "
                    f"trainer.max_epochs={max_epochs}: the run is finished, nothing to do. "
                    "Raise --trainer.max_epochs to train further."
                )
                raise SystemExit(0)
        logger = self.trainer.logger
        if point.version is not None and hasattr(logger, "_version"):
            # Log into the resumed run's folder (metrics.csv continues, checkpoints are replaced there).
            # The logger computes its version lazily, so setting it before fit() starts is enough.
            logger._version = logger_version(point.version)
            if isinstance(logger, CSVLogger) and self.trainer.is_global_zero:
                continue_metrics_csv(logger, point.checkpoint)
        rank_zero_info(f"Resuming from {point.checkpoint}")
        subcommand_config["ckpt_path"] = str(point.checkpoint)

    def after_fit(self) -> None:
        if self._get(self.config, "test_after_fit") and not self.trainer.fast_dev_run:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")
        self._print_run_folder()

    def after_validate(self) -> None:
        self._print_outputs()

    def after_test(self) -> None:
        self._print_outputs()

    def after_predict(self) -> None:
        self._print_outputs()

    def _print_outputs(self) -> None:
        """validate / test / predict write a run folder of their own (next to the training run's): say so."""
        if self.trainer.log_dir is not None and self.trainer.logger is not None:
            rank_zero_info(f"Results of `{self.subcommand}`: {self.trainer.log_dir} (metrics.csv, plots/...)")

    def _print_run_folder(self) -> None:
        if self.trainer.log_dir is None:
            return
        run = Path(self.trainer.log_dir)
        lines = [f"Run folder: {run}", f"  config:      {run / CONFIG_FILE}"]
        if self.trainer.logger is not None:
            lines.append(f"  metrics:     {run / METRICS_FILE}")
        if (run / "plots").is_dir():
            lines.append(f"  plots:       {run / 'plots'}")
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            lines.append(f"  best ckpt:   {checkpoint.best_model_path}")
        if checkpoint is not None and checkpoint.last_model_path:
            lines.append(f"  last ckpt:   {checkpoint.last_model_path}")
        rank_zero_info("\n".join(lines))


# Names that Lightning resolves itself (not files).
_LIGHTNING_CKPT_NAMES = ("best", "last", "hpc", "registry")


def _flat(namespace) -> dict:
    """``{"a.b": value}`` for a (nested) jsonargparse Namespace; {} for None."""
    if namespace is None:
        return {}
    return dict(namespace.items()) if hasattr(namespace, "items") else {"": namespace}


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
        # Every process leaves the process group together (on the CPU, gloo otherwise sometimes aborts a
        # process at exit, after the work is done, and torchrun then waits minutes for it).
        close_process_group()
    except SIGTERMException as stop:
        # Lightning stops on SIGTERM with a SystemExit that would report success (status 0); a scheduler
        # must see that the job was terminated. The checkpoint was written by InterruptCheckpoint.
        print("silhouette-fit: stopped by SIGTERM; rerun with --ckpt_path last to continue.", file=sys.stderr)
        raise SystemExit(128 + 15) from stop
    except Exception as error:
        user_error = _find_user_error(error)
        if user_error is None:
            raise
        # A user mistake or a diverged run: the message says what to change; a stack trace would bury it.
        print(f"silhouette-fit: error: {user_error}", file=sys.stderr)
        report_to_torchrun(f"silhouette-fit: error: {user_error}")
        raise SystemExit(2 if isinstance(user_error, ConfigError) else 1) from error


def _find_user_error(error: BaseException | None) -> ConfigError | NonFiniteLossError | None:
    """The error with a user-facing message behind ``error`` (jsonargparse re-raises constructor errors as
    its own ValueError)."""
    while error is not None:
        if isinstance(error, ConfigError | NonFiniteLossError):
            return error
        error = error.__cause__ or error.__context__
    return None
