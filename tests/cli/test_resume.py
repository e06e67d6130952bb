"""Killed runs continue with ``--ckpt_path last``: SIGKILL (resume from the last epoch's checkpoint, exactly)
and SIGTERM (a checkpoint saved on the signal, mid-epoch, resumed within a stated tolerance).

The fits run as ``python -m silhouette_lightning`` subprocesses, so that the signals hit a real process.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from silhouette_lightning.cli.resume import continue_metrics_csv, find_resume_point
from tests.cli_args import QUICKSTART
from tests.multiprocess import child_env

EPOCHS = 3
STEPS_PER_EPOCH = 19  # digits: 1,257 training images / batch 64, last batch dropped
KILL_EPOCH, KILL_BATCH = 1, 7

# SIGTERM resumes mid-epoch: Lightning restarts the epoch's data from its beginning for the remaining
# steps, so the resumed run sees some batches twice and others not at all. Stated tolerance on digits
# after 3 epochs: final validation accuracy within 5 points, validation loss within 25 %.
SIGTERM_ACC_TOLERANCE = 0.05
SIGTERM_LOSS_RTOL = 0.25


def _fit(save_dir: Path, name: str, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "silhouette_lightning", "fit",
        "--config", QUICKSTART,
        "--trainer.max_epochs", str(EPOCHS),
        "--model.backbone.init_args.width", "8",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.callbacks=[]",
        "--test_after_fit", "false",
        "--trainer.logger.init_args.save_dir", str(save_dir),
        "--trainer.logger.init_args.name", name,
        *extra,
    ]  # fmt: skip
    env = child_env()  # the repository on PYTHONPATH, for tests.kill_probe
    return subprocess.Popen(
        args, cwd=save_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _kill_at(signal_name: str) -> tuple[str, ...]:
    return (
        "--trainer.callbacks+=tests.kill_probe.KillAt",
        "--trainer.callbacks.epoch", str(KILL_EPOCH),
        "--trainer.callbacks.batch", str(KILL_BATCH),
        "--trainer.callbacks.signal_name", signal_name,
    )  # fmt: skip


def _finish(run: subprocess.Popen) -> tuple[int, str]:
    output, _ = run.communicate(timeout=300)
    return run.returncode, output


def _epochs(metrics_csv: Path) -> dict[int, dict[str, float]]:
    """Per epoch, the epoch-level metrics (rows of one epoch merged)."""
    epochs: dict[int, dict[str, float]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            values = {k: float(v) for k, v in row.items() if v and k not in ("epoch", "step")}
            epochs.setdefault(int(row["epoch"]), {}).update(values)
    return epochs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, object]:
    """An uninterrupted fit, and the SIGKILL and SIGTERM runs before and after resuming."""
    root = tmp_path_factory.mktemp("resume")
    uninterrupted = _fit(root, "full")  # runs alongside the interrupted ones
    results: dict[str, object] = {}
    for signal_name in ("SIGKILL", "SIGTERM"):
        name = signal_name.lower()
        results[f"{name}_exit"] = _finish(_fit(root, name, *_kill_at(signal_name)))
        checkpoints = root / name / "version_0" / "checkpoints"
        results[f"{name}_checkpoints"] = sorted(p.name for p in checkpoints.glob("*.ckpt"))
        if (checkpoints / "interrupted.ckpt").exists():
            results[f"{name}_interrupted_step"] = torch.load(
                checkpoints / "interrupted.ckpt", map_location="cpu", weights_only=False
            )["global_step"]
        results[f"{name}_resume"] = _finish(_fit(root, name, "--ckpt_path", "last"))
        results[f"{name}_versions"] = sorted(p.name for p in (root / name).iterdir())
        results[f"{name}_checkpoints_after"] = sorted(p.name for p in checkpoints.glob("*.ckpt"))
        results[name] = _epochs(root / name / "version_0" / "metrics.csv")
    code, output = _finish(uninterrupted)
    assert code == 0, output[-3000:]
    results["full"] = _epochs(root / "full" / "version_0" / "metrics.csv")
    return results


def test_sigkill_then_resume_repeats_the_uninterrupted_run_exactly(runs):
    code, _ = runs["sigkill_exit"]
    assert code == -9
    # Killed in epoch 1: only epoch 0's end-of-epoch checkpoint exists, and nothing was saved on the kill.
    assert (
        "last.ckpt" in runs["sigkill_checkpoints"] and "interrupted.ckpt" not in runs["sigkill_checkpoints"]
    )
    code, output = runs["sigkill_resume"]
    assert code == 0, output[-3000:]
    assert "Resuming from" in output and "last.ckpt" in output
    assert runs["sigkill_versions"] == ["version_0"], "the resumed run must log into the killed run's folder"
    full, resumed = runs["full"], runs["sigkill"]
    # metrics.csv keeps epoch 0 from before the kill and continues; every epoch's metrics are equal (the
    # epoch's shuffle and augmentations depend on seed and epoch only; CPU arithmetic is deterministic).
    assert sorted(resumed) == sorted(full) == list(range(EPOCHS))
    for epoch in range(EPOCHS):
        for key in ("train/loss", "val/loss", "val/acc", "val/silhouette"):
            assert resumed[epoch][key] == pytest.approx(full[epoch][key], rel=1e-6, abs=1e-7), (epoch, key)


def test_sigterm_saves_a_checkpoint_exits_143_and_resume_continues(runs):
    code, output = runs["sigterm_exit"]
    assert code == 143, output[-3000:]
    assert "stopped by SIGTERM" in output and "--ckpt_path last" in output
    assert "interrupted.ckpt" in runs["sigterm_checkpoints"]
    # Lightning stops after the batch during which the signal arrived.
    assert runs["sigterm_interrupted_step"] == KILL_EPOCH * STEPS_PER_EPOCH + KILL_BATCH + 1
    code, output = runs["sigterm_resume"]
    assert code == 0, output[-3000:]
    assert "interrupted.ckpt" in output
    assert runs["sigterm_versions"] == ["version_0"]
    # A run that finishes removes the (now stale) interrupted checkpoint.
    assert "interrupted.ckpt" not in runs["sigterm_checkpoints_after"]
    full, resumed = runs["full"], runs["sigterm"]
    assert sorted(resumed) == list(range(EPOCHS))
    assert resumed[0] == full[0]  # epoch 0 was before the signal: kept as logged
    last = EPOCHS - 1
    assert abs(resumed[last]["val/acc"] - full[last]["val/acc"]) <= SIGTERM_ACC_TOLERANCE
    assert resumed[last]["val/loss"] == pytest.approx(full[last]["val/loss"], rel=SIGTERM_LOSS_RTOL)


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path


def test_find_resume_point_takes_the_newest_checkpoint_of_any_version(tmp_path):
    now = time.time()
    root = tmp_path / "runs" / "name"
    _touch(root / "version_0" / "checkpoints" / "last.ckpt", now - 30)
    newest = _touch(root / "version_1" / "checkpoints" / "interrupted.ckpt", now - 10)
    _touch(root / "version_1" / "checkpoints" / "last.ckpt", now - 20)
    _touch(root / "version_2" / "checkpoints" / "best-epoch=003.ckpt", now)  # not a resume point
    point = find_resume_point(root, [], hpc_dir=tmp_path)
    assert point is not None and point.checkpoint == newest and point.version == "version_1"
    hpc = _touch(tmp_path / "hpc_ckpt_2.ckpt", now - 5)  # Lightning's SLURM requeue checkpoint
    point = find_resume_point(root, [], hpc_dir=tmp_path)
    assert point is not None and point.checkpoint == hpc and point.version is None
    fixed = _touch(tmp_path / "fixed" / "last-v1.ckpt", now + 5)
    point = find_resume_point(None, [tmp_path / "fixed"])
    assert point is not None and point.checkpoint == fixed and point.version is None
    assert find_resume_point(tmp_path / "missing", [tmp_path / "nothing"]) is None


def test_a_fixed_logger_version_resumes_only_its_own_folder(tmp_path):
    # Runs of one name that differ in the seed (version seed_<s>) must not resume each other.
    now = time.time()
    root = tmp_path / "runs" / "ce"
    own = _touch(root / "seed_0" / "checkpoints" / "last.ckpt", now - 10)
    _touch(root / "seed_1" / "checkpoints" / "last.ckpt", now)
    point = find_resume_point(root, [], version="seed_0")
    assert point is not None and point.checkpoint == own and point.version == "seed_0"
    assert find_resume_point(root, [], version="seed_2") is None


def test_continue_metrics_csv_keeps_the_rows_up_to_the_checkpoint(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="run", version=0)
    run_dir = Path(logger.log_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss\n0,9,,1.5\n0,9,2.0,\n1,19,,1.0\n1,19,1.25,\n2,24,0.9,\n"
    )
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"global_step": 20}, checkpoint)
    assert continue_metrics_csv(logger, checkpoint) == 4
    with (run_dir / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["epoch"], r["step"], r["train/loss"], r["val/loss"]) for r in rows] == [
        ("0", "9", "", "1.5"),
        ("0", "9", "2.0", ""),
        ("1", "19", "", "1.0"),
        ("1", "19", "1.25", ""),
    ]
