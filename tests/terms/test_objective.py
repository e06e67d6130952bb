"""The objective (weighted sum of the terms, online linear evaluation, logged names) and its non-finite rule,
without Lightning: a stand-in trainer gives the step, the precision and the agreement of the processes.
(In real runs, DDP included: tests/test_nonfinite_and_precision.py, tests/test_ddp_trainer_parity.py.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from silhouette_lightning.errors import NonFiniteLossError
from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss
from silhouette_lightning.terms import SoftSilhouetteTerm, SupConTerm
from silhouette_lightning.terms.nonfinite import NonFiniteRule
from silhouette_lightning.terms.objective import Objective
from tests.terms.model_outputs import random_model_outputs

WIDTHS = {"features": 5, "embeddings": 4, "logits": 3}


def _trainer(step=7, epoch=1, precision="32-true", others_finite=True):
    """What the rule reads of a Trainer; ``others_finite=False``: another process saw a non-finite value."""
    decide = lambda flag, all=True: flag and others_finite  # noqa: E731
    strategy = SimpleNamespace(reduce_boolean_decision=decide)
    return SimpleNamespace(global_step=step, current_epoch=epoch, precision=precision, strategy=strategy)


def test_the_value_is_the_weighted_sum_and_the_linear_evaluation_is_added_for_backward_only():
    terms = [SoftSilhouetteTerm(weight=0.5), SupConTerm(weight=2.0, views="first")]
    objective = Objective(terms, WIDTHS, online_linear_eval=True)
    outputs, labels = random_model_outputs(), torch.tensor([0, 1, 2, 0, 1, 1])
    value = objective(outputs, labels)
    silhouette = SoftSilhouetteLoss()(outputs.embeddings.flatten(0, 1), labels.repeat_interleave(2))
    supcon = SupConLoss()(outputs.embeddings[:, 0], labels)
    linear = torch.nn.functional.cross_entropy(outputs.logits.flatten(0, 1), labels.repeat_interleave(2))
    torch.testing.assert_close(value.objective, 0.5 * silhouette + 2.0 * supcon)
    torch.testing.assert_close(value.total, 0.5 * silhouette + 2.0 * supcon + linear)
    assert list(value.logged()) == ["loss/silhouette", "loss/supcon", "loss", "loss/linear_eval"]
    assert set(value.logged()) == set(objective.logged_names())
    assert list(value.checked) == ["silhouette", "supcon", "linear_eval"]
    assert objective.reads("embeddings") and not objective.reads("logits")


def test_skip_counts_skipped_steps_in_a_row_and_a_good_step_starts_again():
    rule = NonFiniteRule("skip", max_consecutive_skips=2)
    parameter = torch.nn.Parameter(torch.ones(3))
    nan = {"ce": torch.tensor(1.0), "silhouette": torch.tensor(float("nan"))}
    with pytest.warns(UserWarning, match=r"step 7 \(epoch 1\): 'silhouette' = nan\. The step is skipped"):
        assert not rule.losses_finite(nan, _trainer())
    parameter.grad = torch.ones(3)
    rule.after_backward([parameter])
    assert parameter.grad is None and rule.skipping
    rule.before_optimizer_step([parameter], _trainer())
    assert not rule.skipping and rule.consecutive_skips == 1
    # A good step: finite losses and gradients reset the count.
    assert rule.losses_finite({"ce": torch.tensor(1.0)}, _trainer())
    parameter.grad = torch.ones(3)
    rule.before_optimizer_step([parameter], _trainer())
    assert rule.consecutive_skips == 0 and parameter.grad is not None
    with pytest.warns(UserWarning, match="on another process"):
        assert not rule.losses_finite({"ce": torch.tensor(1.0)}, _trainer(others_finite=False))
    rule.before_optimizer_step([parameter], _trainer())
    with pytest.raises(NonFiniteLossError, match=r"2 skipped steps in a row.*max_consecutive_skips: 2"):
        rule.losses_finite(nan, _trainer(step=9))


def test_stop_raises_and_a_nan_gradient_is_checked_except_under_16_mixed():
    with pytest.raises(NonFiniteLossError, match=r"Non-finite loss at step 0 \(epoch 0\): 'ce' = inf"):
        NonFiniteRule("stop").losses_finite({"ce": torch.tensor(float("inf"))})  # no trainer: one process
    parameter = torch.nn.Parameter(torch.ones(3))
    parameter.grad = torch.tensor([1.0, float("nan"), 0.0])
    NonFiniteRule("stop").before_optimizer_step([parameter], _trainer(precision="16-mixed"))
    assert parameter.grad is not None  # the gradient scaler's business
    rule = NonFiniteRule("skip")
    with pytest.warns(UserWarning, match=r"Non-finite gradient at step 7 \(epoch 1\) with finite losses"):
        rule.before_optimizer_step([parameter], _trainer())
    assert parameter.grad is None and rule.consecutive_skips == 1
    with pytest.raises(NonFiniteLossError, match="Non-finite gradient"):
        parameter.grad = torch.tensor([1.0, float("nan"), 0.0])
        NonFiniteRule("stop").before_optimizer_step([parameter], _trainer(precision="bf16-mixed"))
