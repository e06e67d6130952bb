"""Evaluation (``validate``, ``test``, ``predict``, ``test_after_fit``) that stops on SIGTERM."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException


class StopOnSigterm(Callback):
    """Raises Lightning's ``SIGTERMException`` after the evaluation batch during which SIGTERM arrived.

    Lightning's SIGTERM handler only sets ``trainer.received_sigterm``, and only the training loop looks at
    it: a scheduler's ``scancel`` during ``test`` would otherwise be ignored until the test ends. The
    CLI turns the exception into exit status 143. (Under DDP a scheduler signals every process, so each
    stops at its next batch; training itself is stopped by Lightning, which shares the signal.)
    """

    def _stop_if_signalled(self, trainer: Trainer) -> None:
        if trainer.received_sigterm:
            raise SIGTERMException

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        self._stop_if_signalled(trainer)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        self._stop_if_signalled(trainer)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        self._stop_if_signalled(trainer)
