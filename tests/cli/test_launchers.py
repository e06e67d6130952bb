"""Multi-process launches of ``silhouette-fit`` on the CPU, end to end, each in real subprocesses.

torchrun with 2 processes, two torchrun "nodes" on one machine, a faked 2-task SLURM job (and the sbatch
script under a stand-in ``srun``), and launch mistakes that must stop with a clear message instead of
training the wrong thing or hanging. Nothing runs inside pytest's process (Lightning's own DDP launcher
re-executes ``sys.argv``). Each process writes what Lightning chose through ``tests/launch_probe.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli_args import QUICKSTART, REPO, TINY
from tests.multiprocess import child_env, free_port

SBATCH = REPO / "docker" / "slurm" / "fit.sbatch"
CPU_DDP = str(REPO / "configs" / "trainer" / "cpu_ddp.yaml")
TIMEOUT_S = 150  # per launch; the runs take 5-25 s on 2 cores


def _env(**extra: str) -> dict[str, str]:
    """A child's environment (:func:`tests.multiprocess.child_env`), CPU only, one thread per process."""
    return child_env(**{"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1", **extra})


def _fit_args(tmp_path: Path, *extra: str) -> list[str]:
    """A tiny DDP fit on the CPU (1 epoch of synthetic 8x8 images), probed, logging under tmp_path."""
    probe = {"class_path": "tests.launch_probe.LaunchProbe", "init_args": {"folder": str(tmp_path / "probe")}}
    return [
        "fit", *TINY,
        "--data.options", '{"num_classes": 3, "samples_per_class": 40}',
        "--trainer.max_epochs", "1",
        "--trainer.accelerator", "cpu",
        "--trainer.strategy", "ddp",
        "--test_after_fit", "false",
        "--trainer.callbacks", json.dumps([probe]),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        *extra,
    ]  # fmt: skip


def _start(command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    # Output to a file (a full pipe would block the child); a session of its own, so that a timeout can
    # kill the launcher together with the workers it started.
    with open(log, "w") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait(processes: list[subprocess.Popen], logs: list[Path], timeout: float = TIMEOUT_S) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    try:
        for process in processes:
            codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        _kill(processes)
        tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
        pytest.fail(f"launch did not finish within {timeout} s:\n{tails}")
    return codes


def _kill(processes: list[subprocess.Popen], sig: int = signal.SIGKILL) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    for process in processes:
        process.wait(timeout=30)


def _run(commands: list[list[str]], tmp_path: Path, envs: list[dict[str, str]], name: str) -> list[str]:
    """Start all commands at once, wait for all; returns their outputs (stdout + stderr)."""
    logs = [tmp_path / f"{name}{i}.log" for i in range(len(commands))]
    processes = [_start(c, log, tmp_path, env) for c, log, env in zip(commands, logs, envs, strict=True)]
    codes = _wait(processes, logs)
    outputs = [log.read_text() for log in logs]
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0, f"exit status {code}:\n{output[-4000:]}"
    return outputs


def _probes(tmp_path: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "probe").glob("rank*.json"))]
    assert [r["global_rank"] for r in records] == [0, 1], records
    return records


def _assert_one_ddp_run(records: list[dict], environment: str, num_nodes: int, devices: int) -> None:
    """Two processes of one DDP run: one process group that trained the same model in lockstep."""
    for record in records:
        assert record["cluster_environment"] == environment
        assert record["strategy"] == "DDPStrategy"
        assert record["world_size"] == record["process_group_size"] == 2
        assert (record["num_nodes"], record["num_devices"]) == (num_nodes, devices)
        assert record["all_reduced_rank_sum"] == 1 + 2  # rank + 1, summed over both processes
        assert record["global_step"] >= 1
    assert records[0]["pid"] != records[1]["pid"]
    assert records[0]["global_step"] == records[1]["global_step"]
    # DDP keeps replicas identical: same initial weights (broadcast), same averaged gradients.
    assert records[0]["parameter_checksum"] == pytest.approx(records[1]["parameter_checksum"], rel=1e-9)


def _assert_logged_once(tmp_path: Path) -> Path:
    """Rank 0 alone logs: exactly one run folder with a metrics.csv of train and val metrics."""
    metrics = list((tmp_path / "runs").rglob("metrics.csv"))
    assert len(metrics) == 1, metrics
    header = metrics[0].read_text().splitlines()[0].split(",")
    assert "train/loss" in header and "val/acc" in header
    assert (metrics[0].parent / "checkpoints" / "last.ckpt").is_file()
    return metrics[0].parent


def test_torchrun_two_processes_on_one_node(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "silhouette_lightning",
        *_fit_args(tmp_path, "--config", CPU_DDP, "--test_after_fit", "true"),  # cpu_ddp: devices 2
    ]  # fmt: skip
    (output,) = _run([command], tmp_path, [_env()], "torchrun")
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in output
    records = _probes(tmp_path)
    _assert_one_ddp_run(records, "TorchElasticEnvironment", num_nodes=1, devices=2)
    assert [(r["node_rank"], r["local_rank"]) for r in records] == [(0, 0), (0, 1)]
    run = _assert_logged_once(tmp_path)
    # test_after_fit: both processes load the same "best" checkpoint (the ranks agree on which it is).
    assert "test/acc" in (run / "metrics.csv").read_text().splitlines()[0]


def test_torchrun_two_nodes_on_localhost(tmp_path):
    port = str(free_port())
    commands = [
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}",
            "-m", "silhouette_lightning",
            *_fit_args(tmp_path, "--trainer.devices", "1", "--trainer.num_nodes", "2"),
        ]
        for node in (0, 1)
    ]  # fmt: skip
    _run(commands, tmp_path, [_env(), _env()], "node")
    records = _probes(tmp_path)
    _assert_one_ddp_run(records, "TorchElasticEnvironment", num_nodes=2, devices=1)
    assert [(r["node_rank"], r["local_rank"]) for r in records] == [(0, 0), (1, 0)]
    _assert_logged_once(tmp_path)


def _slurm_env(rank: int, port: int, ntasks: int = 2, **extra: str) -> dict[str, str]:
    """The variables srun gives task ``rank`` of a one-node job with ``ntasks`` tasks."""
    return _env(
        SLURM_NTASKS=str(ntasks),
        SLURM_NTASKS_PER_NODE=str(ntasks),
        SLURM_NNODES="1",
        SLURM_PROCID=str(rank),
        SLURM_LOCALID=str(rank),
        SLURM_NODEID="0",
        SLURM_NODELIST="localhost",
        SLURM_JOB_ID="4242",
        SLURM_JOB_NAME="fit",  # not bash/interactive, for which Lightning ignores SLURM
        MASTER_PORT=str(port),
        **extra,
    )


def test_faked_slurm_job_of_two_tasks_uses_slurm_environment_and_trains(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "silhouette_lightning", *_fit_args(tmp_path, "--trainer.devices", "2")]
    outputs = _run([command, command], tmp_path, [_slurm_env(0, port), _slurm_env(1, port)], "task")
    assert "SLURM auto-requeueing enabled" in outputs[0]
    records = _probes(tmp_path)
    _assert_one_ddp_run(records, "SLURMEnvironment", num_nodes=1, devices=2)
    assert [r["local_rank"] for r in records] == [0, 1]
    _assert_logged_once(tmp_path)


_FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for srun on one machine: SLURM_NTASKS copies of the command with their task variables. Its own
# folder leaves PATH for the tasks: like a container, they do not see the host's SLURM commands.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done  # srun's own options (all written as --opt=value)
export PATH=${PATH#"$(dirname "$0")":}
pids=()
for ((rank = 0; rank < SLURM_NTASKS; rank++)); do
  SLURM_PROCID=$rank SLURM_LOCALID=$rank SLURM_NODEID=0 "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""
_FAKE_SCONTROL = """#!/usr/bin/env bash
echo "$@" >> "$(dirname "$0")/scontrol.calls"
"""


def _batch_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The batch shell of a one-node, 2-task job (id 4242), with stand-ins for srun and scontrol."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", _FAKE_SRUN), ("scontrol", _FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = _slurm_env(0, free_port(), ACCELERATOR="cpu", CONFIG=QUICKSTART, **extra)
    for task_variable in ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID"):
        del env[task_variable]  # the batch shell has none; srun sets them per task
    env.update(SLURM_CPUS_PER_TASK="1", PATH=os.pathsep.join([str(bin_dir), env["PATH"]]))
    return env


def test_sbatch_script_runs_under_a_stand_in_srun_and_a_requeued_attempt_continues(tmp_path):
    env = _batch_env(tmp_path, RUNTIME="host")
    args = _fit_args(tmp_path)[3:]  # the script says `fit --config $CONFIG` itself
    (first,) = _run([["bash", str(SBATCH), *args]], tmp_path, [env], "job")
    assert "--trainer.num_nodes 1 --trainer.devices 2" in first
    records = _probes(tmp_path)
    _assert_one_ddp_run(records, "SLURMEnvironment", num_nodes=1, devices=2)
    run = _assert_logged_once(tmp_path)
    assert run.name == "fit_4242"  # the job's run folder, the same for every attempt
    first_steps = records[0]["global_step"]

    # A requeued attempt is the same job (same SLURM_JOB_ID): it continues that run from its checkpoint.
    env["SLURM_RESTART_COUNT"] = "1"
    (second,) = _run([["bash", str(SBATCH), *args, "--trainer.max_epochs", "2"]], tmp_path, [env], "requeued")
    assert "attempt 2" in second and "Resuming from" in second
    records = _probes(tmp_path)
    _assert_one_ddp_run(records, "SLURMEnvironment", num_nodes=1, devices=2)
    assert records[0]["global_step"] == 2 * first_steps  # epoch 2 only, on top of epoch 1
    assert _assert_logged_once(tmp_path) == run


@pytest.mark.slow  # ~16 s
def test_sigusr1_in_a_slurm_job_saves_an_hpc_checkpoint_that_resumes(tmp_path):
    """What ``#SBATCH --signal=SIGUSR1@90`` relies on: Lightning's handler saves ``hpc_ckpt_1.ckpt`` in
    ``default_root_dir`` on every task's SIGUSR1 (its ``scontrol requeue`` fails here: there is no SLURM),
    and ``--ckpt_path last`` continues from it."""
    port = free_port()
    root = tmp_path / "root"
    args = _fit_args(
        tmp_path, "--trainer.devices", "2", "--trainer.max_epochs", "100000",
        "--trainer.default_root_dir", str(root),
        "--checkpoint.save_last", "false", "--checkpoint.save_top_k", "0",  # only the hpc checkpoint
    )  # fmt: skip
    command = [sys.executable, "-m", "silhouette_lightning", *args]
    logs = [tmp_path / f"task{rank}.log" for rank in (0, 1)]
    processes = [_start(command, logs[r], tmp_path, _slurm_env(r, port)) for r in (0, 1)]
    try:
        hpc = root / "hpc_ckpt_1.ckpt"
        running = [tmp_path / "probe" / f"running{r}" for r in (0, 1)]
        _poll(lambda: all(path.exists() for path in running), processes, logs)
        for process in processes:
            process.send_signal(signal.SIGUSR1)  # what SLURM sends every task 90 s before the limit
        _poll(lambda: hpc.is_file() and "Requeuing SLURM job" in logs[0].read_text(), processes, logs)
    finally:
        _kill(processes)  # as the requeue would
    saved = torch.load(hpc, map_location="cpu", weights_only=False)
    assert "Handling auto-requeue signal" in logs[0].read_text()

    resume = [*command, "--trainer.max_epochs", str(saved["epoch"] + 2), "--ckpt_path", "last"]
    port = free_port()
    _run([resume, resume], tmp_path, [_slurm_env(0, port), _slurm_env(1, port)], "resumed")
    output = (tmp_path / "resumed0.log").read_text()
    assert f"Resuming from {hpc}" in output
    records = _probes(tmp_path)
    assert records[0]["global_step"] > saved["global_step"]


def _poll(condition, processes: list[subprocess.Popen], logs: list[Path], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        exited = [p.returncode for p in processes if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
            pytest.fail(f"condition not met (exited: {exited}):\n{tails}")
        time.sleep(0.2)


# Launch mistakes (these need the launch check that `SilhouetteCLI.instantiate_trainer` runs).


@pytest.mark.parametrize(
    ("env_kind", "override", "messages"),
    [
        # Without the check Lightning trains two independent single-process runs into one folder.
        ("slurm", ["--trainer.devices", "1"], ["--ntasks-per-node", "--trainer.devices 2", "--nodes"]),
        # Without the check rank 0 waits forever for a second node.
        (
            "plain",
            ["--trainer.devices", "1", "--trainer.num_nodes", "2"],
            ["--trainer.num_nodes 1", "torchrun"],
        ),
        ("plain", ["--trainer.accelerator", "gpu", "--trainer.devices", "2"], ["--trainer.accelerator cpu"]),
        # A MASTER_ADDR left over in the shell (no NODE_RANK): without the check this waits forever too.
        (
            "leftover",
            ["--trainer.devices", "1", "--trainer.num_nodes", "2"],
            ["MASTER_ADDR='127.0.0.1' is set", "--trainer.num_nodes 1"],
        ),
    ],
)
def test_launch_mistake_is_a_one_line_error_before_anything_starts(tmp_path, env_kind, override, messages):
    environments = {
        "slurm": lambda: _slurm_env(0, free_port()),
        "plain": _env,
        "leftover": lambda: _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port())),
    }
    env = environments[env_kind]()
    command = [sys.executable, "-m", "silhouette_lightning", *_fit_args(tmp_path, *override)]
    process = _start(command, tmp_path / "out.log", tmp_path, env)
    (code,) = _wait([process], [tmp_path / "out.log"], timeout=90)
    output = (tmp_path / "out.log").read_text()
    assert code == 2, output[-3000:]
    assert "silhouette-fit: error:" in output and "Traceback" not in output
    for message in messages:
        assert message in output
    assert not (tmp_path / "runs").exists()  # nothing was trained or logged


def test_torchrun_with_fewer_devices_than_processes_stops_before_training(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "silhouette_lightning", *_fit_args(tmp_path, "--trainer.devices", "1"),
    ]  # fmt: skip
    process = _start(command, tmp_path / "out.log", tmp_path, _env())
    (code,) = _wait([process], [tmp_path / "out.log"], timeout=90)
    output = (tmp_path / "out.log").read_text()
    assert code != 0
    # (torchrun may stop the second process before it gets there)
    line = "silhouette-fit: error: torchrun started 2 process(es) on this node"
    assert line in output
    assert "--nproc_per_node" in output and "--trainer.devices 2" in output
    # torchrun's own traceback follows; its closing summary names the mistake (the workers' error file),
    # not "To enable traceback see ...".
    root_cause = output.rpartition("Root Cause")[2]
    assert f"traceback : {line}" in root_cause and "To enable traceback" not in root_cause
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # ~35 s
def test_sbatch_requeues_from_the_batch_shell_when_the_container_has_no_scontrol(tmp_path):
    """RUNTIME=pyxis (the stand-in srun ignores the container options): on SIGUSR1 Lightning saves the hpc
    checkpoint but cannot run scontrol inside the task; the batch shell sees the checkpoint and requeues."""
    env = _batch_env(tmp_path, RUNTIME="pyxis", IMAGE="unused.sqsh")
    args = _fit_args(tmp_path, "--trainer.max_epochs", "100000")[3:]
    log = tmp_path / "job.log"
    job = _start(["bash", str(SBATCH), *args], log, tmp_path, env)
    calls = tmp_path / "bin" / "scontrol.calls"
    try:
        running = [tmp_path / "probe" / f"running{rank}" for rank in (0, 1)]
        _poll(lambda: all(path.exists() for path in running), [job], [log])
        for path in running:
            os.kill(int(path.read_text()), signal.SIGUSR1)  # what SLURM sends every task
        _poll(calls.exists, [job], [log])
    finally:
        _kill([job])
    assert calls.read_text().split() == ["requeue", "4242"]
    output = log.read_text()
    assert "Requeuing SLURM job 4242 failed with error code 127" in output  # Lightning's own try
    assert "fit.sbatch: runs/slurm/fit_4242/hpc_ckpt_1.ckpt saved; requeueing job 4242" in output
    assert (tmp_path / "runs" / "slurm" / "fit_4242" / "hpc_ckpt_1.ckpt").is_file()
