"""Checkpoint files that are never torn and a ``last.ckpt`` that is always the last finished epoch.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the target's own folder and
  renames it over the target (``os.replace``, atomic on POSIX). Lightning's own writer stages the file in
  the system temp folder and *moves* it, which across file systems is a copy: a full disk then leaves a
  truncated ``last.ckpt`` in place of the previous good one.
* :class:`EpochEndCheckpoint` is Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` is rewritten at the end
  of every training epoch. Lightning 2.6 rewrites ``last`` only when a top-k checkpoint was saved in the
  same step, i.e. when the monitored metric improved: ``last.ckpt`` then holds the *best* epoch, ``test
  --ckpt_path last.ckpt`` tests the best model and a killed run resumes from an old epoch.
* :func:`checkpoint_problem` says why a file cannot be resumed from (missing, torn, not a checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``<folder>/.<name>.<random>.tmp``, fsync, then ``os.replace`` onto the target.

    On any error (a full disk: ``ENOSPC``/``EFBIG``) the temporary file is removed and the error raised:
    the previous checkpoint of that name stays intact. Remote paths (``s3://``) use Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) or storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            # mkstemp creates 0600; give the file the usual permissions (0666 less the umask).
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class EpochEndCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``save_last`` checkpoint is written at the end of *every* training epoch
    (after its validation), whether or not the monitored metric improved; top-k saving is unchanged.

    Its state in a checkpoint is stored under ``ModelCheckpoint``'s key, so checkpoints of either class
    restore the best-model bookkeeping of the other.
    """

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def _save_last_if_not_saved(self, trainer: Trainer) -> None:
        # Skipped when this step was already saved (then Lightning wrote `last` with it), in fast_dev_run,
        # in the sanity check and outside fit.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def check_writable(folder: str | os.PathLike, key: str) -> None:
    """Raise a ConfigError naming ``key`` unless files can be created in ``folder`` (or its nearest
    existing parent, where it will be created). A real file is created and removed: ``os.access`` says yes
    to root on a read-only mount."""
    from silhouette_lightning.errors import ConfigError

    if "://" in str(folder):
        return
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(
            f"{key}: cannot write into {existing} ({error.strerror}); choose a writable folder for the run."
        ) from error


def checkpoint_problem(path: Path) -> str | None:
    """None if ``path`` loads as a Lightning checkpoint, else what is wrong with it (for a message)."""
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # noqa: BLE001 - any load failure means "not usable"; say which
        return f"cannot be read as a checkpoint (truncated or corrupt?): {type(error).__name__}: {error}"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return "is not a Lightning checkpoint (no state_dict)"
    return None
