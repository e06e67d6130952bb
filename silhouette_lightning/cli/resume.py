"""``--ckpt_path last`` across runs: find the newest resumable checkpoint of a run name, and its folder.

Lightning resolves ``last`` only inside the *current* run's checkpoint folder, which for a logger with
versions (``runs/<name>/version_<n>``) is a new, empty one. A user who restarts a killed command means
"continue that run", so we look in every version folder of the logger's name (or in the configured
``checkpoint.dirpath``), take the newest of ``last*.ckpt`` (end of an epoch), ``interrupted.ckpt``
(written on SIGTERM / Ctrl+C) and Lightning's SLURM ``hpc_ckpt_*.ckpt`` (SIGUSR1 requeue), and keep
logging into that run's folder.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger

from silhouette_lightning.callbacks.interrupt_checkpoint import INTERRUPTED_FILENAME
from silhouette_lightning.experiments.runs import CHECKPOINTS_DIR, METRICS_FILE

RESUMABLE_PATTERNS = ("last*.ckpt", INTERRUPTED_FILENAME)
HPC_PATTERN = "hpc_ckpt_*.ckpt"


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to resume from and the logger version (folder name) it belongs to, if any."""

    checkpoint: Path
    version: str | None


def find_resume_point(
    run_root: Path | None,
    checkpoint_dirs: list[Path],
    hpc_dir: Path | None = None,
    version: str | None = None,
) -> ResumePoint | None:
    """The newest resumable checkpoint, or None (:func:`resume_candidates` lists them all)."""
    candidates = resume_candidates(run_root, checkpoint_dirs, hpc_dir, version)
    return candidates[0] if candidates else None


def resume_candidates(
    run_root: Path | None,
    checkpoint_dirs: list[Path],
    hpc_dir: Path | None = None,
    version: str | None = None,
) -> list[ResumePoint]:
    """The resumable checkpoints, newest (modification time) first.

    Args:
        run_root: the logger's ``<save_dir>/<name>``; its sub-folders are versions with ``checkpoints/``.
        checkpoint_dirs: further folders that hold checkpoints directly (a fixed ``checkpoint.dirpath``).
        hpc_dir: where Lightning's SLURM auto-requeue writes ``hpc_ckpt_<n>.ckpt`` (``default_root_dir``).
        version: the version folder the logger was told to use (``--trainer.logger.init_args.version``):
            then only that folder counts. (Runs that share a name but differ in, say, the seed must not
            resume each other's checkpoints.)
    """
    candidates: list[tuple[Path, str | None]] = []
    if run_root is not None and run_root.is_dir():
        folders = [run_root / version] if version is not None else sorted(run_root.iterdir())
        for version_dir in (folder for folder in folders if folder.is_dir()):
            candidates += [(path, version_dir.name) for path in _resumable(version_dir / CHECKPOINTS_DIR)]
    for folder in checkpoint_dirs:
        candidates += [(path, None) for path in _resumable(folder)]
    if hpc_dir is not None and hpc_dir.is_dir():
        candidates += [(path, None) for path in hpc_dir.glob(HPC_PATTERN)]
    candidates.sort(key=lambda candidate: candidate[0].stat().st_mtime_ns, reverse=True)
    return [ResumePoint(path, folder) for path, folder in candidates]


def _resumable(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [path for pattern in RESUMABLE_PATTERNS for path in folder.glob(pattern)]


def continue_metrics_csv(logger: CSVLogger, checkpoint: Path) -> int:
    """Keep the resumed run's earlier rows of ``metrics.csv``; returns how many were kept.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, which would lose the
    curves up to the checkpoint. The rows logged at or before the checkpoint's global step are written
    back at once (later rows belong to the interrupted part that is about to be redone). Call on rank 0,
    after the logger's version is set, before training starts.
    """
    path = Path(logger.log_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    step = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)["global_step"]
    kept = [row for row in rows if row.get("step", "").isdigit() and int(row["step"]) <= step]
    with warnings.catch_warnings():  # its "logs directory exists ... will be deleted" is expected here
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment  # creating it deletes metrics.csv
    writer.metrics.extend({key: value for key, value in row.items() if value != ""} for row in kept)
    writer.save()
    return len(kept)
