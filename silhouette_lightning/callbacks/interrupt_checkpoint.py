"""A checkpoint written when a run is stopped by SIGTERM (``scancel``, a pre-empted node) or Ctrl+C."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

INTERRUPTED_FILENAME = "interrupted.ckpt"


class InterruptCheckpoint(Callback):
    """Saves ``<checkpoint dir>/interrupted.ckpt`` when the run is stopped, so that
    ``silhouette-fit fit ... --ckpt_path last`` continues from the interrupted step.

    Lightning turns SIGTERM into a ``SIGTERMException`` at the next batch boundary (on every process under
    DDP: rank 0 broadcasts it), so every process reaches ``on_exception``, as the collective
    ``save_checkpoint`` requires. Other exceptions (a diverged loss, a bug) write nothing: resuming from
    them would repeat the failure. A run that ends normally removes the file (it is stale then).

    Unlike Lightning's ``OnExceptionCheckpoint`` this is not a ``Checkpoint``: ``trainer.checkpoint_callback``
    (the first ``Checkpoint``) must stay the ``ModelCheckpoint`` that knows the best model. The folder is
    that ``ModelCheckpoint``'s (``<run folder>/checkpoints``), known only once the trainer has set it up.
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            return
        path = interrupted_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        rank_zero_info(
            f"Interrupted: saved {path} (epoch {trainer.current_epoch}, step {trainer.global_step}). "
            "Continue with the same command and --ckpt_path last."
        )

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            interrupted_checkpoint_path(trainer).unlink(missing_ok=True)


def interrupted_checkpoint_path(trainer: Trainer) -> Path:
    """``<ModelCheckpoint dir>/interrupted.ckpt`` (``<default_root_dir>/`` without a ModelCheckpoint)."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    return Path(dirpath or trainer.default_root_dir) / INTERRUPTED_FILENAME
