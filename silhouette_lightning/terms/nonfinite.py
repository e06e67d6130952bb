"""What a NaN or infinite training loss or gradient does (``model.on_nonfinite``): stop, or skip the step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from silhouette_lightning.errors import ConfigError, NonFiniteLossError
from silhouette_lightning.geometry.checks import check_choice

NonFinitePolicy = Literal["stop", "skip"]


class NonFiniteRule:
    """The rule for non-finite training losses and gradients, and its state across steps.

    A step goes through :meth:`losses_finite` (after the forward pass), :meth:`after_backward` and
    :meth:`before_optimizer_step`. With ``policy="stop"`` a non-finite value raises
    :class:`~silhouette_lightning.errors.NonFiniteLossError` naming the term and the step; with ``"skip"`` it
    warns and the step changes no parameter (it still counts in ``global_step``), until
    ``max_consecutive_skips`` steps in a row were skipped: then it raises too. Under DDP every decision is
    all-reduced (the ``trainer``'s ``strategy.reduce_boolean_decision``), so all processes stop or skip
    together instead of hanging. Messages name the trainer's step and epoch.

    Args:
        policy: ``"stop"`` or ``"skip"`` (``model.on_nonfinite``).
        max_consecutive_skips: with ``"skip"``, the skipped steps in a row that stop the run.
    """

    def __init__(self, policy: NonFinitePolicy = "stop", max_consecutive_skips: int = 10) -> None:
        check_choice("on_nonfinite", policy, ("stop", "skip"))
        skips = max_consecutive_skips
        if isinstance(skips, bool) or not isinstance(skips, int) or skips < 1:
            raise ConfigError(f"model.max_consecutive_skips must be an integer >= 1, got {skips!r}.")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.consecutive_skips = 0  # skipped training steps in a row; equal on every process under DDP
        self.skipping = False  # set by a non-finite loss, cleared before the (skipped) optimizer step

    def losses_finite(self, values: dict[str, Tensor], trainer: Any = None) -> bool:
        """True if every loss value is finite on every process; else stop (raise) or skip the step.

        One host synchronisation per step (and one all-reduce of a flag under DDP, so that all processes
        stop or skip together). ``trainer``: None outside a Lightning loop (one process, step 0).
        """
        flags = torch.stack([value.detach().float() for value in values.values()]).isfinite().tolist()
        finite = all(flags)
        if trainer is not None:
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        checked = zip(values.items(), flags, strict=True)
        bad = [f"'{name}' = {value.item()}" for (name, value), ok in checked if not ok]
        where = ", ".join(bad) if bad else "on another process"
        self._nonfinite(f"Non-finite loss at {_step(trainer)}: {where}.")
        self.skipping = True
        return False

    @staticmethod
    def skipped_step_loss(parameters: Iterable[nn.Parameter]) -> Tensor:
        """The loss of a skipped step: a zero on every trainable parameter.

        Not ``None``: Lightning refuses that under DDP. The zero keeps backward (and DDP's all-reduce)
        going; :meth:`after_backward` then drops the gradients, so the optimizer changes nothing.
        """
        return sum((p.sum() for p in parameters if p.requires_grad), torch.zeros(())) * 0.0

    def after_backward(self, parameters: Iterable[nn.Parameter]) -> None:
        if self.skipping:
            # No gradient, no update: optimizers skip parameters whose grad is None (no weight decay, no
            # momentum step either). The flag stays set until before_optimizer_step, which then neither
            # checks nor counts this step again.
            _drop_gradients(parameters)

    def before_optimizer_step(self, parameters: Iterable[nn.Parameter], trainer: Any) -> None:
        """Check the gradients of a step whose losses were finite; drop them all if one is not."""
        if self.skipping:  # a non-finite loss: already counted, gradients already dropped
            self.skipping = False
            return
        parameters = list(parameters)
        if not self._gradients_finite(parameters, trainer):
            _drop_gradients(parameters)
            return
        self.consecutive_skips = 0

    def _gradients_finite(self, parameters: list[nn.Parameter], trainer: Any) -> bool:
        """True if every gradient is finite (on every process); else stop (raise) or skip, by policy.

        Why, with the losses checked already: a loss can be finite while its gradient is not (an operation
        whose derivative is infinite where its value is not, a masked NaN), and one NaN gradient turns the
        parameters NaN for good. Gradients are all-reduced under DDP before this runs, so the processes
        agree; the decision is reduced anyway, at the cost of one flag. Under ``16-mixed`` an infinite
        gradient is routine (the gradient scaler skips the step and lowers its scale), so no check there.
        """
        precision = str(trainer.precision)
        if precision.startswith("16") and "mixed" in precision:
            return True
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return True
        # One norm per tensor (fused), then one host synchronisation: a norm is finite iff every entry is
        # (up to an overflow of the sum of squares above ~1e38, itself a diverged run).
        norms = torch.stack([n.float() for n in torch._foreach_norm(grads)])
        if trainer.strategy.reduce_boolean_decision(bool(norms.isfinite().all()), all=True):
            return True
        self._nonfinite(f"Non-finite gradient at {_step(trainer)} with finite losses.")
        return False

    def _nonfinite(self, message: str) -> None:
        """Stop the run (``stop``, or too many skips in a row), or warn: the step is skipped."""
        if self.policy == "skip":
            self.consecutive_skips += 1
            if self.consecutive_skips < self.max_consecutive_skips:
                rank_zero_warn(f"{message} The step is skipped (model.on_nonfinite: skip).")
                return
            raise NonFiniteLossError(
                f"{message} That is {self.consecutive_skips} skipped steps in a row "
                f"(model.max_consecutive_skips: {self.max_consecutive_skips}): the run has diverged and "
                "would skip to its end. Lower the learning rate, check the data, or resume from an earlier "
                "checkpoint in the run folder's checkpoints/."
            )
        raise NonFiniteLossError(
            f"{message} Training stops rather than train on NaN. Lower the learning rate, check the data "
            "(corrupt images, label range), try precision 32, or set model.on_nonfinite: skip to skip such "
            "steps. The last checkpoint is in the run folder's checkpoints/."
        )


def _drop_gradients(parameters: Iterable[nn.Parameter]) -> None:
    for parameter in parameters:
        parameter.grad = None


def _step(trainer: Any) -> str:
    """The step as messages name it."""
    return (
        "step 0 (epoch 0)"
        if trainer is None
        else f"step {trainer.global_step} (epoch {trainer.current_epoch})"
    )
