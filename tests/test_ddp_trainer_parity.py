"""One optimizer step through ``Trainer(strategy="ddp", devices=2)`` equals one process on the whole batch.

The runs happen in ``tests/ddp_trainer_step.py`` subprocesses: Lightning's ``ddp`` launcher starts rank 1
by re-running the command line, which must not be pytest's.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_trainer_step import CASES
from tests.multiprocess import child_env

SCRIPT = Path(__file__).with_name("ddp_trainer_step.py")


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("ddp_trainer_step")
    runs = {
        devices: subprocess.Popen(
            [sys.executable, str(SCRIPT), str(out / devices), "--devices", devices],
            cwd=out,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for devices in ("1", "2")
    }
    for devices, run in runs.items():
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, f"devices={devices} failed:\n{output[-4000:]}"
    return {
        case: {devices: torch.load(out / devices / f"{case}.pt") for devices in ("1", "2")} for case in CASES
    }


@pytest.mark.parametrize("case", [case for case in CASES if case != "nonfinite_skip"])
def test_ddp_step_equals_single_process_step(steps, case):
    single, ddp = steps[case]["1"], steps[case]["2"]
    assert (single["world_size"], ddp["world_size"]) == (1, 2)
    moved = [name for name, step in single["step"].items() if step.abs().max() > 1e-6]
    assert any(name.startswith("backbone.") for name in moved), "the step did not train the backbone"
    for name, step in single["step"].items():
        assert step.dtype == torch.float64
        torch.testing.assert_close(ddp["step"][name], step, rtol=0, atol=1e-8, msg=f"{case}: {name}")


def test_parts_no_term_trains_stay_frozen_under_ddp(steps):
    """CE alone leaves the head, a pure silhouette run the classifier without gradient: DDP must not fail
    (the run above succeeded) and those parameters must not move."""
    for case, frozen in (("ce_only", "head."), ("silhouette_only", "classifier.")):
        for name, step in steps[case]["2"]["step"].items():
            if name.startswith(frozen):
                assert torch.count_nonzero(step) == 0, f"{case}: {name} moved"


def test_a_nan_on_one_rank_makes_every_rank_skip_the_step(steps):
    """model.on_nonfinite: skip under DDP: the NaN is only in rank 1's batch, yet rank 0 skips too (the
    finite flag is all-reduced), nothing moves, and the run ends instead of hanging."""
    for devices in ("1", "2"):
        for name, step in steps["nonfinite_skip"][devices]["step"].items():
            assert torch.count_nonzero(step) == 0, f"devices={devices}: {name} moved"
