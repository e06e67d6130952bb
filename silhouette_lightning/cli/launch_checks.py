"""Checks of the launch configuration, run before the Trainer is built.

A multi-process run is described twice: once by the launcher (``torchrun --nnodes/--nproc_per_node``,
``#SBATCH --nodes/--ntasks-per-node`` + ``srun``) and once by the Trainer (``devices``, ``num_nodes``).
When the two disagree, Lightning either fails late (``ValueError`` from the cluster environment's
``validate_settings``, raised only when ``fit`` launches, after data and model are built), or not at all:
a SLURM job of 2 tasks with ``devices=1`` trains two independent single-process runs that write into the
same run folder, and ``num_nodes=2`` without any launcher waits forever for a second node.
:func:`check_launch` turns every such mismatch into a :class:`~silhouette_lightning.errors.ConfigError`
whose one-line message names the setting to change on each side.

What is checked:

* GPUs (``accelerator`` ``gpu``/``cuda``, or ``auto`` on a machine with CUDA): ``devices`` as an int,
  ``-1``, ``"auto"``, a string (``"2"``, ``"0,1"``) or a list of ids must fit in
  ``torch.cuda.device_count()``. Under torchrun with one visible GPU per process the count is not checked
  (Lightning allows that layout too).
* CPU: ``devices`` is the number of processes and must be a positive int (``"auto"`` means 1, as in
  Lightning). More processes than ``os.cpu_count()`` are allowed on purpose: DDP on the CPU then simply
  oversubscribes the cores (slower, still correct), which is how multi-process runs are tested on small
  machines.
* Under torchrun (``TORCHELASTIC_RUN_ID`` set; it has priority over SLURM, as in Lightning):
  ``LOCAL_WORLD_SIZE`` (``--nproc_per_node``) must equal ``devices`` and ``WORLD_SIZE``
  (``--nnodes`` x ``--nproc_per_node``) must equal ``devices x num_nodes``.
* Inside a SLURM job step (as Lightning's ``SLURMEnvironment.detect()`` decides: ``SLURM_NTASKS`` set and
  ``SLURM_JOB_NAME`` not ``bash``/``interactive``): ``SLURM_NTASKS`` must equal
  ``devices x num_nodes``, ``SLURM_NTASKS_PER_NODE`` must equal ``devices`` and ``SLURM_NNODES`` must equal
  ``num_nodes``; ``--ntasks`` without ``--ntasks-per-node`` is refused (Lightning refuses it too).
* ``num_nodes > 1`` with no launcher at all (no torchrun, SLURM, LSF or MPI variables and no
  ``NODE_RANK``/``GROUP_RANK``): the run would wait for nodes that never come. A ``MASTER_ADDR`` alone
  does not count: it is often left over in a shell from an earlier job, and Lightning's "general cluster"
  recipe needs ``NODE_RANK`` on every node (without it every node is node 0, and node 0 waits forever).

An ``accelerator``, ``strategy`` or ``plugins`` given as objects that this module does not know (a custom
accelerator, a strategy or plugin that brings its own ``ClusterEnvironment``) switch the corresponding
check off rather than guess.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment

from silhouette_lightning.errors import ConfigError

# Variables of the launchers Lightning detects besides torchrun and SLURM (LSF, MPI), and of its own
# "general cluster" recipe (MASTER_ADDR, MASTER_PORT, NODE_RANK set by hand on every node). MASTER_ADDR is
# not among them: set alone (a leftover export), Lightning makes every node node 0, and a 2-node run waits
# forever for its second node.
_OTHER_LAUNCHER_VARIABLES = (
    "NODE_RANK",
    "GROUP_RANK",
    "LSB_JOBID",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
)


def check_launch(
    accelerator: Any = "auto",
    devices: Any = "auto",
    num_nodes: Any = 1,
    *,
    strategy: Any = None,
    plugins: Any = None,
    cuda_count: int | None = None,
) -> int | None:
    """Raise :class:`ConfigError` if the Trainer's ``accelerator``/``devices``/``num_nodes`` cannot run here.

    The launcher is read from the process environment (``os.environ``), the SLURM job step by Lightning's
    own ``SLURMEnvironment.detect()``, so that this check and the Trainer agree on it.

    Args:
        accelerator, devices, num_nodes, strategy, plugins: the Trainer arguments as configured (``None``
            means the Trainer default).
        cuda_count: the number of visible CUDA GPUs (default ``torch.cuda.device_count()``).

    Returns:
        The number of processes per node the Trainer will use, or ``None`` where it cannot be known
        before the Trainer is built (an accelerator other than CPU/CUDA).
    """
    environ = os.environ
    accelerator = "auto" if accelerator is None else accelerator
    devices = "auto" if devices is None else devices
    num_nodes = 1 if num_nodes is None else num_nodes
    if isinstance(num_nodes, str) and num_nodes.strip().isdigit():
        num_nodes = int(num_nodes)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"trainer.num_nodes must be a positive integer, got {num_nodes!r}.")

    kind = _accelerator_kind(accelerator, cuda_count)
    if kind == "cuda":
        count = torch.cuda.device_count() if cuda_count is None else cuda_count
        per_node = _cuda_processes(devices, count, environ)
    elif kind == "cpu":
        per_node = _cpu_processes(devices)
    else:
        per_node = (
            devices if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0 else None
        )

    if per_node is None or _brings_own_cluster_environment(strategy, plugins):
        return per_node
    if environ.get("TORCHELASTIC_RUN_ID") is not None:
        _check_torchrun(per_node, num_nodes, environ)
    elif SLURMEnvironment.detect():
        _check_slurm(per_node, num_nodes, environ)
    elif num_nodes > 1 and not any(name in environ for name in _OTHER_LAUNCHER_VARIABLES):
        leftover = (
            f" (MASTER_ADDR={environ['MASTER_ADDR']!r} is set, but without NODE_RANK every node would be "
            "node 0; unset it if it is left over from another job)"
            if "MASTER_ADDR" in environ
            else ""
        )
        raise ConfigError(
            f"trainer.num_nodes is {num_nodes}, but this process was not started by a multi-node launcher "
            f"(no torchrun or SLURM variables, no NODE_RANK){leftover}: it would wait for the other nodes "
            "forever. Start it on every node with `torchrun --nnodes=N --node_rank=R --nproc_per_node="
            "<devices> --master_addr=<node 0> --master_port=<port> -m silhouette_lightning fit ...` or with "
            "`srun` in an sbatch job (docker/slurm/fit.sbatch), or export MASTER_ADDR, MASTER_PORT and "
            "NODE_RANK on every node; or set --trainer.num_nodes 1."
        )
    return per_node


def _accelerator_kind(accelerator: Any, cuda_count: int | None) -> str | None:
    """'cuda', 'cpu' or None (anything else: MPS, TPU, custom accelerators are not checked)."""
    if not isinstance(accelerator, str):
        from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

        if isinstance(accelerator, CUDAAccelerator):
            return "cuda"
        return "cpu" if isinstance(accelerator, CPUAccelerator) else None
    name = accelerator.strip().lower()
    if name in ("gpu", "auto") and _mps_available():
        return None  # Lightning prefers Apple's MPS for both
    if name in ("gpu", "cuda"):
        return "cuda"
    if name == "auto":
        count = torch.cuda.device_count() if cuda_count is None else cuda_count
        return "cuda" if count > 0 else "cpu"
    return "cpu" if name == "cpu" else None


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_processes(devices: Any, count: int, environ: Mapping[str, str]) -> int:
    """Processes per node for CUDA ``devices``; raises if they ask for GPUs this process does not see."""
    if count == 0:
        raise ConfigError(
            "trainer.accelerator asks for a GPU, but no CUDA GPU is visible to this process (torch.cuda."
            f"device_count() == 0, CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r}). "
            "Use --trainer.accelerator cpu (or auto), or give the container its GPUs "
            "(`docker run --gpus all`, `apptainer exec --nv`, `#SBATCH --gpus-per-node=N`)."
        )
    requested = _parse_devices(devices)
    if requested in ("auto", -1):
        return count
    if isinstance(requested, list):
        ids = requested
        if not ids:
            raise ConfigError(
                "trainer.devices is an empty list; give GPU ids such as [0, 1], a count, or -1."
            )
        if len(set(ids)) != len(ids) or any(i < 0 for i in ids):
            raise ConfigError(f"trainer.devices {ids} must list distinct GPU ids >= 0.")
        if max(ids) >= count:
            raise ConfigError(
                f"trainer.devices asks for GPU ids {ids}, but this process sees {count} GPU(s), ids "
                f"0..{count - 1} (torch.cuda.device_count()). Use ids below {count}, --trainer.devices "
                f"{min(len(ids), count)}, or --trainer.devices -1 for all visible GPUs."
            )
        return len(ids)
    if requested < 1:
        raise ConfigError(
            f"trainer.devices must be >= 1, -1 (all GPUs) or 'auto' with a GPU accelerator, got {devices!r}."
        )
    if requested > count and not (environ.get("TORCHELASTIC_RUN_ID") is not None and count == 1):
        hint = ""
        if SLURMEnvironment.detect() and count == 1:
            hint = (
                " In a SLURM job every task must see all GPUs of its node: request them with "
                "#SBATCH --gpus-per-node=N (or --gres=gpu:N), not --gpus-per-task=1."
            )
        raise ConfigError(
            f"trainer.devices is {requested}, but this process sees only {count} GPU(s) "
            f"(torch.cuda.device_count(), CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r}). "
            f"Set --trainer.devices {count} (or -1 for all visible GPUs).{hint}"
        )
    return requested


def _cpu_processes(devices: Any) -> int:
    """Processes per node on the CPU: a positive int ('auto' is 1, as in Lightning)."""
    requested = _parse_devices(devices)
    if requested == "auto":
        return 1
    if isinstance(requested, int) and requested >= 1:
        return requested
    raise ConfigError(
        f"trainer.devices is {devices!r}, but with accelerator cpu it is the number of processes: use a "
        "positive integer such as --trainer.devices 2 (-1 and lists of ids only mean something for GPUs)."
    )


def _parse_devices(devices: Any) -> int | list[int] | str:
    """``devices`` as Lightning reads it: 'auto', an int (-1 = all) or a list of ids."""
    if isinstance(devices, bool):
        raise ConfigError(f"trainer.devices must be an integer, a list of ids or 'auto', got {devices!r}.")
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str):
        text = devices.strip().strip("[]").strip()
        if text.lower() == "auto":
            return "auto"
        try:
            if "," in text:
                return [int(part) for part in text.split(",") if part.strip()]
            return int(text)
        except ValueError:
            raise ConfigError(
                f"trainer.devices {devices!r} is not a number, a comma-separated list of GPU ids or 'auto'."
            ) from None
    if isinstance(devices, Sequence):
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in devices):
            raise ConfigError(f"trainer.devices {list(devices)!r} must be a list of integer GPU ids.")
        return list(devices)
    raise ConfigError(f"trainer.devices must be an integer, a list of ids or 'auto', got {devices!r}.")


def _brings_own_cluster_environment(strategy: Any, plugins: Any) -> bool:
    from lightning.fabric.plugins.environments import ClusterEnvironment

    if getattr(strategy, "cluster_environment", None) is not None:
        return True
    if plugins is None:
        return False
    plugins = plugins if isinstance(plugins, list | tuple) else [plugins]
    return any(isinstance(plugin, ClusterEnvironment) for plugin in plugins)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # e.g. heterogeneous layouts; SLURM_NTASKS is still checked


def _check_torchrun(per_node: int, num_nodes: int, environ: Mapping[str, str]) -> None:
    world = _int_or_none(environ.get("WORLD_SIZE"))
    local = _int_or_none(environ.get("LOCAL_WORLD_SIZE"))
    if local is not None and local != per_node:
        raise ConfigError(
            f"torchrun started {local} process(es) on this node (--nproc_per_node={local}), but "
            f"trainer.devices is {per_node}: make them equal, e.g. --trainer.devices {local} or "
            f"torchrun --nproc_per_node={per_node}."
        )
    if world is not None and world != per_node * num_nodes:
        nodes = f"{world // local}" if local else "--nnodes"
        raise ConfigError(
            f"torchrun's world size is {world} (--nnodes x --nproc_per_node), but trainer.devices x "
            f"trainer.num_nodes is {per_node} x {num_nodes} = {per_node * num_nodes}: set "
            f"--trainer.num_nodes {nodes} or start torchrun with --nnodes={num_nodes} "
            f"--nproc_per_node={per_node}."
        )


def _check_slurm(per_node: int, num_nodes: int, environ: Mapping[str, str]) -> None:
    ntasks = _int_or_none(environ.get("SLURM_NTASKS"))
    tasks_per_node = _int_or_none(environ.get("SLURM_NTASKS_PER_NODE"))
    nnodes = _int_or_none(environ.get("SLURM_NNODES") or environ.get("SLURM_JOB_NUM_NODES"))
    if ntasks is None:
        return
    if ntasks > 1 and tasks_per_node is None:
        raise ConfigError(
            f"This SLURM job runs {ntasks} tasks set with --ntasks, which Lightning does not support: use "
            f"#SBATCH --nodes=<N> --ntasks-per-node=<GPUs per node> instead (e.g. --ntasks-per-node={ntasks} "
            "on one node)."
        )
    mismatch = ntasks != per_node * num_nodes
    mismatch |= tasks_per_node is not None and tasks_per_node != per_node
    mismatch |= nnodes is not None and nnodes != num_nodes
    if not mismatch:
        return
    slurm_nodes = nnodes if nnodes is not None else max(1, ntasks // (tasks_per_node or ntasks))
    slurm_per_node = tasks_per_node if tasks_per_node is not None else ntasks // slurm_nodes
    raise ConfigError(
        f"This SLURM job runs {ntasks} task(s) ({slurm_nodes} node(s) x {slurm_per_node} per node: "
        f"#SBATCH --nodes={slurm_nodes} --ntasks-per-node={slurm_per_node}), but the trainer expects "
        f"trainer.num_nodes x trainer.devices = {num_nodes} x {per_node} = {num_nodes * per_node} "
        f"processes. Make them match: --trainer.num_nodes {slurm_nodes} --trainer.devices {slurm_per_node} "
        f"(as docker/slurm/fit.sbatch does with $SLURM_NNODES and $SLURM_NTASKS_PER_NODE), or "
        f"#SBATCH --nodes={num_nodes} --ntasks-per-node={per_node}. One task per device, started by srun."
    )


def close_process_group() -> None:
    """End a multi-process run cleanly: wait for every process, then destroy the process group.

    Call it once, after a run returned normally. Lightning leaves the default process group alive when
    ``fit``/``test`` return, and the processes then exit at different moments while the group's store is
    served by rank 0's process. On the CPU (gloo) this made a process abort at exit now and then ("terminate
    called without an active exception", SIGABRT, after training had finished): 5 of 8 two-"node" torchrun
    runs under CPU load, and then torchrun's agent on the other node waited 300 s at its exit barrier. With
    this barrier + destroy, 0 of 8. A no-op in a single process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def report_to_torchrun(message: str) -> None:
    """Hand a worker's one-line error to torchrun, if this process runs under it.

    When a worker exits with an error, torchrun's agent raises its own ``ChildFailedError``: a traceback of
    torchrun's code and a failure table whose ``traceback :`` field says "To enable traceback see: ..."
    unless the worker wrote the error file torchrun names in ``TORCHELASTIC_ERROR_FILE``. Written here as a
    plain message, that field (the last thing torchrun prints, under "Root Cause") is this message. The
    agent's own traceback above it cannot be switched off from the worker.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path or os.environ.get("TORCHELASTIC_RUN_ID") is None:
        return
    import json
    import time

    try:
        with open(path, "w") as file:
            json.dump({"message": message, "timestamp": int(time.time())}, file)
    except OSError:
        pass  # the message was printed already; the file only improves torchrun's summary
