"""Checkpoints are the truth about a run: ``last.ckpt`` is the last finished epoch, writes are atomic (a
full disk leaves the previous file intact), bad or missing checkpoint files are one-line errors, and a
finished run is not retrained. Real ``python -m silhouette_lightning`` processes on tiny synthetic data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli_args import TINY
from tests.multiprocess import child_env

NAME = "tiny"


def _cli(cwd: Path, subcommand: str, *extra: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable, "-m", "silhouette_lightning", subcommand, *TINY,
        "--trainer.callbacks=[]",
        "--trainer.logger.init_args.save_dir", str(cwd / "runs"),
        "--trainer.logger.init_args.name", NAME,
        *extra,
    ]  # fmt: skip
    if subcommand == "fit":
        args += ["--test_after_fit", "false"] if "--test_after_fit" not in extra else []
    return subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=300)


def _epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


# Monitoring the smallest epoch: only epoch 0's checkpoint is a top-k improvement, every later epoch is not
# (the case in which Lightning's ModelCheckpoint left last.ckpt at the best epoch).
FROZEN = (
    "--checkpoint.monitor",
    "epoch",
    "--checkpoint.mode",
    "min",
    "--checkpoint.filename",
    "best-{epoch}",
)


def test_last_ckpt_is_the_last_epoch_and_a_finished_run_is_not_retrained(tmp_path):
    done = _cli(tmp_path, "fit", "--trainer.max_epochs", "3", *FROZEN)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = tmp_path / "runs" / NAME / "version_0" / "checkpoints"
    best = [p for p in checkpoints.glob("best-*.ckpt")]
    assert len(best) == 1 and _epoch(best[0]) == 0
    # Lightning 2.6's save_last rewrote last.ckpt only with an improving epoch: it held epoch 0.
    assert _epoch(checkpoints / "last.ckpt") == 2
    mtime = (checkpoints / "last.ckpt").stat().st_mtime_ns

    again = _cli(tmp_path, "fit", "--trainer.max_epochs", "3", *FROZEN, "--ckpt_path", "last")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "the run is finished" in again.stderr + again.stdout
    assert (checkpoints / "last.ckpt").stat().st_mtime_ns == mtime  # nothing retrained
    assert sorted(p.name for p in (tmp_path / "runs" / NAME).iterdir()) == ["version_0"]

    more = _cli(tmp_path, "fit", "--trainer.max_epochs", "4", *FROZEN, "--ckpt_path", "last")
    assert more.returncode == 0, more.stderr[-3000:]
    assert _epoch(checkpoints / "last.ckpt") == 3
    assert sorted(p.name for p in (tmp_path / "runs" / NAME).iterdir()) == ["version_0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch run; returns its checkpoints folder."""
    root = tmp_path_factory.mktemp("trained")
    done = _cli(root, "fit", "--trainer.max_epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / NAME / "version_0" / "checkpoints"


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    shutil.copytree(trained.parents[2], tmp_path / "runs")
    return tmp_path / "runs" / NAME / "version_0" / "checkpoints"


def test_resume_skips_a_torn_last_ckpt_for_the_newest_intact_one(trained, tmp_path):
    checkpoints = _copy_run(trained, tmp_path)
    last = checkpoints / "last.ckpt"
    intact = checkpoints / "interrupted.ckpt"
    shutil.copy(last, intact)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # torn
    now = time.time()
    os.utime(intact, (now - 60, now - 60))
    resumed = _cli(tmp_path, "fit", "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"skipping {last}" in resumed.stderr
    assert f"Resuming from {intact}" in resumed.stderr + resumed.stdout
    # (The copied run folder is not the one recorded in the checkpoint, so Lightning names the new last
    # checkpoint last-v1.ckpt rather than replace last.ckpt.)
    newest = max(checkpoints.glob("last*.ckpt"), key=lambda path: path.stat().st_mtime_ns)
    assert _epoch(newest) == 2


@pytest.mark.parametrize("subcommand", ["fit", "test"])
@pytest.mark.parametrize("kind", ["missing", "torn", "not a checkpoint"])
def test_a_bad_explicit_ckpt_path_is_one_line_exit_2(trained, tmp_path, subcommand, kind):
    path = tmp_path / "model.ckpt"
    if kind == "torn":
        path.write_bytes((trained / "last.ckpt").read_bytes()[:1000])
    elif kind == "not a checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)
    result = _cli(tmp_path, subcommand, "--ckpt_path", str(path))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"--ckpt_path {path}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_test_with_ckpt_path_last_and_no_run_is_an_error(tmp_path):
    result = _cli(tmp_path, "test", "--ckpt_path", "last")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--ckpt_path last: no intact checkpoint in" in result.stderr and "Traceback" not in result.stderr


def test_fit_with_ckpt_path_last_and_no_checkpoint_says_it_starts_anew(tmp_path):
    result = _cli(tmp_path, "fit", "--trainer.max_epochs", "1", "--ckpt_path", "last")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"no checkpoint in {tmp_path / 'runs' / NAME}/*/checkpoints" in result.stderr
    assert "starting a new run from scratch" in result.stderr


def test_sigterm_during_test_after_fit_stops_with_143(tmp_path):
    result = _cli(
        tmp_path, "fit", "--trainer.max_epochs", "1", "--test_after_fit", "true",
        "--trainer.callbacks+=tests.kill_probe.KillAtTest",
    )  # fmt: skip
    assert result.returncode == 143, result.stderr[-3000:]
    assert "stopped by SIGTERM" in result.stderr


def test_fast_dev_run_writes_nothing_into_the_current_folder(tmp_path):
    result = _cli(tmp_path, "fit", "--trainer.fast_dev_run", "true", "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """A 1 MiB tmpfs: a real file system that runs full."""
    return tmpfs("disk", "size=1m")


def test_a_full_disk_leaves_the_previous_last_ckpt_intact(small_disk):
    # FROZEN: no later epoch improves, so the failing write is the one that replaces last.ckpt.
    done = _cli(small_disk, "fit", "--trainer.max_epochs", "2", *FROZEN)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = small_disk / "runs" / NAME / "version_0" / "checkpoints"
    last = checkpoints / "last.ckpt"
    size = last.stat().st_size
    # Leave less free space than one checkpoint: the next save fails mid-write.
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * max(0, free - size // 2))
    result = _cli(small_disk, "fit", "--trainer.max_epochs", "3", *FROZEN, "--ckpt_path", "last")
    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    assert _epoch(last) == 1  # the previous end of epoch, readable
    assert [p.name for p in checkpoints.iterdir() if p.name.endswith(".tmp")] == []


def test_test_after_fit_plots_are_labelled_with_the_tested_checkpoints_epoch(tmp_path):
    # FROZEN: the best checkpoint is epoch 0, the last epoch is 2.
    result = _cli(
        tmp_path, "fit", "--trainer.max_epochs", "3", *FROZEN, "--test_after_fit", "true",
        "--trainer.callbacks+=silhouette_lightning.callbacks.EmbeddingPlots",
        "--trainer.callbacks.projection", "pca",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    plots = sorted(p.name for p in (tmp_path / "runs" / NAME / "version_0" / "plots").glob("test_*"))
    assert plots == ["test_embedding_map_epoch0.png", "test_silhouette_diagram_epoch0.png"]


def test_a_read_only_output_folder_is_one_line_before_training(tmp_path, tmpfs):
    # A read-only mount: root ignores chmod, not a read-only file system.
    mountpoint = tmpfs("readonly", "size=1m,ro")
    result = _cli(
        tmp_path, "fit", "--trainer.max_epochs", "1",
        "--trainer.logger.init_args.save_dir", str(mountpoint / "runs"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "trainer.logger.init_args.save_dir: cannot write into" in result.stderr
    assert "Traceback" not in result.stderr and "Epoch" not in result.stderr
