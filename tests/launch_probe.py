"""A test-only callback for the multi-process launcher tests (tests/cli/test_launchers.py).

The launcher tests start ``silhouette-fit`` through torchrun or a faked SLURM job and pass this callback
with ``--trainer.callbacks``. Each process writes ``<folder>/rank<global rank>.json`` at the end of ``fit``
with what Lightning actually chose (the cluster environment, world size, ranks) and evidence that the
processes formed one process group and trained together: an all-reduce of ``rank + 1`` across the group and
a checksum of the trained parameters (equal on every rank under DDP). ``running<rank>`` (holding the process
id) marks a finished training epoch, for tests that signal a running job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from lightning.pytorch import Callback


class LaunchProbe(Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self._record: dict = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        environment = getattr(trainer.strategy, "cluster_environment", None)
        rank_sum = None
        if dist.is_available() and dist.is_initialized():
            value = torch.tensor([float(trainer.global_rank + 1)])
            dist.all_reduce(value)  # gloo on the CPU; a hang here would mean no common process group
            rank_sum = value.item()
        self._record = {
            "pid": os.getpid(),
            "cluster_environment": type(environment).__name__ if environment is not None else None,
            "strategy": type(trainer.strategy).__name__,
            "world_size": trainer.world_size,
            "process_group_size": dist.get_world_size() if dist.is_initialized() else 1,
            "global_rank": trainer.global_rank,
            "local_rank": trainer.local_rank,
            "node_rank": trainer.node_rank,
            "num_nodes": trainer.num_nodes,
            "num_devices": trainer.num_devices,
            "all_reduced_rank_sum": rank_sum,
        }

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # "Training is under way" for tests that signal a running job (after the first epoch's checkpoint).
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"running{trainer.global_rank}").write_text(str(os.getpid()))

    def on_fit_end(self, trainer, pl_module) -> None:
        checksum = sum(p.detach().double().sum().item() for p in pl_module.parameters())
        self._record.update(global_step=trainer.global_step, parameter_checksum=checksum)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self._record, indent=1))
