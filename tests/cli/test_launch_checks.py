"""Launch configuration checks (silhouette_lightning.cli.launch_checks) and the SLURM job script's structure.

The checks are compared with Lightning itself: every configuration they accept builds a Trainer with the
expected cluster environment and a process count that matches the launcher's, and every one they reject
is one that Lightning either rejects only later or would run with the wrong number of processes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DDPStrategy

from silhouette_lightning.cli.launch_checks import check_launch, close_process_group
from silhouette_lightning.errors import ConfigError
from tests.cli_args import REPO

SBATCH = REPO / "docker" / "slurm" / "fit.sbatch"


def _slurm(ntasks: int, per_node: int | None, nodes: int = 1, job_name: str = "fit") -> dict[str, str]:
    env = {"SLURM_NTASKS": str(ntasks), "SLURM_NNODES": str(nodes), "SLURM_JOB_NAME": job_name}
    env.update(SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_JOB_ID="99")
    env.update(SLURM_NODELIST="localhost")
    if per_node is not None:
        env["SLURM_NTASKS_PER_NODE"] = str(per_node)
    return env


def _torchrun(world: int, local: int) -> dict[str, str]:
    return {
        "TORCHELASTIC_RUN_ID": "test",
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(local),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }


def _check_launch(*args, environ: dict[str, str], **kwargs):
    """check_launch in a process environment that holds only ``environ``."""
    with mock.patch.dict(os.environ, environ, clear=True):
        return check_launch(*args, **kwargs)


def _error(**kwargs) -> str:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        _check_launch(**kwargs)
    message = str(info.value)
    assert "\n" not in message  # the CLI prints it as one line
    return message


# ---------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    ("devices", "processes"), [(1, 1), (2, 2), ("2", 2), ("auto", 1), (None, 1), (64, 64)]
)
def test_cpu_devices_are_processes_and_may_exceed_the_cores(devices, processes):
    # 64 processes on any machine: DDP on the CPU oversubscribes the cores, it does not fail.
    assert _check_launch("cpu", devices, 1, environ={}) == processes


@pytest.mark.parametrize("devices", [-1, "-1", 0, [0, 1], "0,1", "two", True])
def test_cpu_devices_that_are_not_a_process_count(devices):
    message = _error(accelerator="cpu", devices=devices)
    assert "trainer.devices" in message


def test_cpu_accelerator_object_and_auto_without_gpu_are_the_cpu():
    assert _check_launch(CPUAccelerator(), 2, environ={}) == 2
    assert _check_launch("auto", 3, environ={}, cuda_count=0) == 3


@pytest.mark.parametrize(
    ("devices", "processes"),
    [(1, 1), (2, 2), ("2", 2), (-1, 4), ("-1", 4), ("auto", 4), ([0, 3], 2), ("0,1", 2), ("[1, 2]", 2)],
)
def test_gpu_devices_within_the_visible_gpus(devices, processes):
    for accelerator in ("gpu", "cuda", "auto"):
        assert _check_launch(accelerator, devices, environ={}, cuda_count=4) == processes


def test_more_gpus_than_visible_says_how_many_there_are():
    message = _error(accelerator="gpu", devices=8, cuda_count=2)
    assert "sees only 2 GPU(s)" in message and "--trainer.devices 2" in message and "-1" in message
    message = _error(accelerator="auto", devices="3", cuda_count=2)  # auto picks CUDA when there is one
    assert "--trainer.devices 2" in message


def test_gpu_ids_beyond_the_visible_ones():
    message = _error(accelerator="cuda", devices=[0, 2], cuda_count=2)
    assert "ids [0, 2]" in message and "0..1" in message
    assert "distinct" in _error(accelerator="cuda", devices=[1, 1], cuda_count=2)


def test_gpu_accelerator_without_any_gpu_suggests_the_cpu():
    message = _error(accelerator="gpu", devices=1, cuda_count=0)
    assert "--trainer.accelerator cpu" in message and "--gpus" in message


def test_slurm_task_that_sees_one_gpu_is_told_about_gpus_per_node():
    message = _error(accelerator="gpu", devices=4, cuda_count=1, environ=_slurm(4, 4))
    assert "--gpus-per-node" in message and "--gpus-per-task" in message


def test_torchrun_with_one_visible_gpu_per_process_is_allowed():
    # Lightning allows this layout (CUDA_VISIBLE_DEVICES narrowed per process), so do we.
    assert _check_launch("gpu", 4, environ=_torchrun(world=4, local=4), cuda_count=1) == 4


@pytest.mark.parametrize("num_nodes", [0, -1, "two", 1.5])
def test_num_nodes_must_be_a_positive_integer(num_nodes):
    assert "trainer.num_nodes" in _error(accelerator="cpu", devices=1, num_nodes=num_nodes)


# ----------------------------------------------------------------------------------------------- SLURM


def test_slurm_job_matching_the_trainer_passes():
    assert _check_launch("cpu", 2, 1, environ=_slurm(2, 2)) == 2
    assert _check_launch("gpu", -1, 2, environ=_slurm(8, 4, nodes=2), cuda_count=4) == 4


@pytest.mark.parametrize(
    ("env", "devices", "num_nodes", "fix"),
    [
        (_slurm(2, 2), 1, 1, "--trainer.num_nodes 1 --trainer.devices 2"),
        (_slurm(2, 2), "auto", 1, "--trainer.num_nodes 1 --trainer.devices 2"),  # auto is 1 on the CPU
        (_slurm(8, 4, nodes=2), 4, 1, "--trainer.num_nodes 2 --trainer.devices 4"),
        (_slurm(8, 4, nodes=2), 2, 4, "--trainer.num_nodes 2 --trainer.devices 4"),  # 2 x 4 = 8, wrong shape
        (_slurm(1, 1), 2, 1, "--trainer.num_nodes 1 --trainer.devices 1"),
    ],
)
def test_slurm_tasks_that_do_not_match_devices_times_num_nodes(env, devices, num_nodes, fix):
    message = _error(accelerator="cpu", devices=devices, num_nodes=num_nodes, environ=env)
    assert fix in message
    for setting in ("#SBATCH --nodes=", "--ntasks-per-node=", "srun"):
        assert setting in message


def test_slurm_ntasks_without_ntasks_per_node_is_refused():
    message = _error(accelerator="cpu", devices=2, environ=_slurm(2, None))
    assert "--ntasks-per-node" in message


def test_slurm_interactive_job_names_are_not_a_slurm_launch():
    # Lightning ignores SLURM for job names bash/interactive (processes are started another way).
    for name in ("bash", "interactive"):
        assert _check_launch("cpu", 1, 1, environ=_slurm(4, 4, job_name=name)) == 1


# --------------------------------------------------------------------------------------------- torchrun


def test_torchrun_matching_the_trainer_passes():
    assert _check_launch("cpu", 2, 1, environ=_torchrun(world=2, local=2)) == 2
    assert _check_launch("cpu", 1, 2, environ=_torchrun(world=2, local=1)) == 1


def test_torchrun_processes_per_node_must_equal_devices():
    message = _error(accelerator="cpu", devices=1, environ=_torchrun(world=2, local=2))
    assert "--nproc_per_node=2" in message and "--trainer.devices 2" in message


def test_torchrun_world_size_must_equal_devices_times_num_nodes():
    message = _error(accelerator="cpu", devices=1, num_nodes=1, environ=_torchrun(world=2, local=1))
    assert "--trainer.num_nodes 2" in message and "--nnodes=1" in message


def test_torchrun_takes_priority_over_slurm_as_in_lightning():
    # torchrun inside a SLURM allocation: the world is torchrun's (Lightning checks TorchElastic first).
    environ = {**_slurm(1, 1), **_torchrun(world=2, local=2)}
    assert _check_launch("cpu", 2, 1, environ=environ) == 2


# ------------------------------------------------------------------------------------------- no launcher


def test_several_nodes_without_a_launcher_would_wait_forever():
    message = _error(accelerator="cpu", devices=1, num_nodes=2)
    assert "--trainer.num_nodes 1" in message and "torchrun --nnodes" in message
    # Lightning's "general cluster" recipe: MASTER_ADDR/NODE_RANK set by hand on every node.
    assert _check_launch("cpu", 1, 2, environ={"MASTER_ADDR": "node0", "NODE_RANK": "1"}) == 1
    assert _check_launch("cpu", 1, 2, environ={"NODE_RANK": "0"}) == 1


def test_a_leftover_master_addr_is_not_a_launcher():
    # Without NODE_RANK, Lightning makes this node 0 and waits forever for node 1 (issue 10).
    message = _error(accelerator="cpu", devices=1, num_nodes=2, environ={"MASTER_ADDR": "10.0.0.7"})
    assert "MASTER_ADDR='10.0.0.7'" in message and "NODE_RANK" in message
    assert "--trainer.num_nodes 1" in message


def test_own_cluster_environment_switches_the_launcher_checks_off():
    plugin = LightningEnvironment()
    assert _check_launch("cpu", 1, 1, plugins=[plugin], environ=_slurm(2, 2)) == 1
    strategy = DDPStrategy(cluster_environment=plugin)
    assert _check_launch("cpu", 1, 1, strategy=strategy, environ=_slurm(2, 2)) == 1


def test_reads_the_process_environment_by_default(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("SLURM_", "TORCHELASTIC_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="--nproc_per_node=3"):
        check_launch("cpu", 2, 1)


def test_close_process_group_without_a_group_does_nothing():
    close_process_group()


# ---------------------------------------------------------------------- agreement with Lightning itself

_CASES = [
    # (environment, devices, num_nodes)
    (_slurm(2, 2), 2, 1),
    (_slurm(2, 2), 1, 1),
    (_slurm(4, 2, nodes=2), 2, 2),
    (_slurm(4, 2, nodes=2), 2, 1),
    (_slurm(4, 2, nodes=2), 4, 1),
    (_torchrun(world=2, local=2), 2, 1),
    (_torchrun(world=2, local=2), 1, 1),
    (_torchrun(world=2, local=1), 1, 2),
    (_torchrun(world=2, local=1), 1, 1),
    (_torchrun(world=4, local=2), 2, 1),
]


@pytest.mark.parametrize(("environ", "devices", "num_nodes"), _CASES)
def test_accepted_exactly_when_lightning_would_run_the_launcher_s_world(
    environ, devices, num_nodes, monkeypatch
):
    for key in list(os.environ):
        if key.startswith(("SLURM_", "TORCHELASTIC_")) or key in _torchrun(1, 1):
            monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    world = int(environ.get("WORLD_SIZE") or environ["SLURM_NTASKS"])

    lightning_rejects = None
    try:
        trainer = Trainer(
            accelerator="cpu", devices=devices, num_nodes=num_nodes, logger=False, enable_progress_bar=False
        )
        environment = getattr(trainer.strategy, "cluster_environment", None)
        runs_the_world = (
            environment is not None
            and trainer.num_nodes * trainer.num_devices == world
            and int(environ.get("LOCAL_WORLD_SIZE") or environ["SLURM_NTASKS_PER_NODE"])
            == trainer.num_devices
        )
        if environment is not None:
            # What Lightning checks only when fit() launches.
            environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
    except ValueError as error:
        lightning_rejects = error
        runs_the_world = False

    try:
        check_launch("cpu", devices, num_nodes)
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == runs_the_world, (accepted, lightning_rejects)
    if accepted:
        expected = "TorchElasticEnvironment" if "WORLD_SIZE" in environ else "SLURMEnvironment"
        assert type(environment).__name__ == expected


# ------------------------------------------------------------------------------ docker/slurm/fit.sbatch


def _sbatch_directives(text: str) -> dict[str, str]:
    """``#SBATCH`` options as sbatch reads them: only in the leading comment block, before any command."""
    options: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if stripped.startswith("#SBATCH"):
            for token in shlex.split(stripped[len("#SBATCH") :], comments=True):
                key, _, value = token.partition("=")
                options[key] = value
    return options


@pytest.fixture(scope="module")
def sbatch_text() -> str:
    return SBATCH.read_text()


def test_sbatch_directives_describe_one_task_per_gpu_and_requeue(sbatch_text):
    assert sbatch_text.startswith("#!/bin/bash\n")
    options = _sbatch_directives(sbatch_text)
    assert int(options["--nodes"]) >= 2
    assert options["--ntasks-per-node"] == options["--gpus-per-node"]  # one task per GPU
    assert int(options["--cpus-per-task"]) >= 1
    assert options["--signal"] == "SIGUSR1@90"  # to every step's tasks (not B:, the batch shell only)
    assert "--requeue" in options and options["--open-mode"] == "append"
    assert "--ntasks" not in options  # Lightning refuses --ntasks without --ntasks-per-node
    # Commented-out site options (##SBATCH) are not read.
    assert "--partition" not in options


def test_sbatch_script_is_valid_bash_and_launches_with_srun(sbatch_text):
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    assert re.search(r"^\s*SRUN=\(srun ", sbatch_text, re.MULTILINE)
    assert '--trainer.num_nodes "${SLURM_NNODES' in sbatch_text
    assert '--trainer.devices "${SLURM_NTASKS_PER_NODE' in sbatch_text
    assert "--ckpt_path last" in sbatch_text
    default_config = re.search(r"CONFIG=\$\{CONFIG:-([^}]+)\}", sbatch_text).group(1)
    assert (REPO / default_config).is_file()


def _dry_run(tmp_path: Path, **env: str) -> list[str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    variables.update(DRY_RUN="1", SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="4", SLURM_JOB_ID="77")
    variables.update(SLURM_JOB_NAME="silhouette-fit", SLURM_CPUS_PER_TASK="8", **env)
    result = subprocess.run(
        ["bash", str(SBATCH), "--trainer.max_epochs", "5"],
        cwd=tmp_path, env=variables, capture_output=True, text=True, check=True,
    )  # fmt: skip
    command = next(line for line in result.stdout.splitlines() if line.startswith("+ "))
    return shlex.split(command[2:])


@pytest.mark.parametrize(
    ("runtime", "prefix"),
    [
        ("pyxis", ["--container-image=", "--container-mounts=", "--container-workdir=/workspace"]),
        ("apptainer", ["apptainer", "exec", "--nv", "--bind", "--pwd"]),
        ("host", []),
    ],
)
def test_sbatch_builds_the_srun_command_for_each_runtime(tmp_path, runtime, prefix):
    args = _dry_run(tmp_path, RUNTIME=runtime)
    assert args[:3] == ["srun", "--kill-on-bad-exit=1", "--cpus-per-task=8"]
    fit = args.index("silhouette-fit")
    launcher = " ".join(args[3:fit])
    for piece in prefix:
        assert piece in launcher
    if runtime != "host":
        mounts = f"{tmp_path}/runs:/workspace/runs"
        assert mounts in launcher
    cli = args[fit + 1 :]
    assert cli[:3] == ["fit", "--config", "configs/quickstart.yaml"]
    pairs = dict(zip(cli[3::2], cli[4::2], strict=False))
    assert pairs["--trainer.num_nodes"] == "2" and pairs["--trainer.devices"] == "4"
    assert pairs["--trainer.logger.init_args.version"] == "silhouette-fit_77"  # same for every attempt
    assert pairs["--trainer.default_root_dir"] == "runs/slurm/silhouette-fit_77"  # hpc_ckpt_*.ckpt
    assert pairs["--ckpt_path"] == "last"
    assert cli[-2:] == ["--trainer.max_epochs", "5"]  # the script's arguments come last, so they win
    assert not (tmp_path / "runs").exists()  # a dry run creates nothing


def test_sbatch_rejects_an_unknown_runtime(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as info:
        _dry_run(tmp_path, RUNTIME="docker")
    assert "RUNTIME must be pyxis, apptainer or host" in info.value.stderr
