"""The one harness of the multi-process tests.

* :func:`run_in_process_group`: ``worker(rank, world_size, *args)`` in ``nprocs`` CPU processes that form a
  gloo process group (a file store in a temporary folder), for tests that compare a 2-process result with
  one process on the concatenated data.
* :func:`loss_and_gradient`: what each process (and the single-process oracle) computes in those tests.
* :func:`child_env` and :func:`free_port`: the environment and a port for ``silhouette-fit`` (or Lightning)
  child processes, free of the launcher variables of whatever runs the tests.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.cli_args import REPO

# Variables that would make Lightning or torch.distributed believe they are inside another launch.
_LAUNCH_VARIABLES = {
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
    "MASTER_PORT", "JSM_NAMESPACE_SIZE", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK",
}  # fmt: skip
_LAUNCH_PREFIXES = ("SLURM_", "SRUN_", "SBATCH_", "TORCHELASTIC_", "PL_")


def run_in_process_group(
    worker: Callable[..., None],
    *args: Any,
    nprocs: int = 2,
    start_method: str = "spawn",
    timeout_s: float | None = None,
) -> None:
    """Run ``worker(rank, nprocs, *args)`` in ``nprocs`` processes joined by a gloo process group; return
    when all of them have (an exception in one is raised here).

    ``worker`` must be a module-level function (the processes import its module). ``start_method``
    ``"forkserver"`` imports the worker's module once in the fork server instead of once per process (most
    of a short test's time). ``timeout_s`` turns a hang in a collective into an error.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if start_method == "forkserver":
        multiprocessing.get_context("forkserver").set_forkserver_preload([worker.__module__, __name__])
    with tempfile.TemporaryDirectory(prefix="gloo-") as store:
        mp.start_processes(
            _in_process_group,
            args=(nprocs, str(Path(store) / "store"), timeout_s, worker, args),
            nprocs=nprocs,
            join=True,
            start_method=start_method,
        )


def _in_process_group(
    rank: int, world_size: int, store: str, timeout_s: float | None, worker: Callable[..., None], args: tuple
) -> None:
    torch.set_num_threads(1)
    timeout = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size, **timeout
    )
    try:
        worker(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def loss_and_gradient(
    loss_fn: Callable[..., torch.Tensor],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``loss_fn(inputs @ weight, labels)`` on each batch in turn, with a gradient on ``weight``: the last
    batch's loss and gradient (earlier batches only fill a loss's cross-batch memory)."""
    for inputs, labels in batches:
        w = weight.clone().requires_grad_(True)
        loss = loss_fn(inputs @ w, labels)
        loss.backward()
    return loss.detach(), w.grad


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without launcher variables, the repository first on ``PYTHONPATH`` (child
    processes import ``tests.*`` callbacks) and this Python's folder first on ``PATH``; then ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _LAUNCH_VARIABLES and not key.startswith(_LAUNCH_PREFIXES)
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
