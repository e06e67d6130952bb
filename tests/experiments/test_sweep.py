"""``silhouette-sweep``: the command expansion, the SLURM array script (run with a fake silhouette-fit), the
sequential runner's failure handling, and a real tiny sweep whose runs ``silhouette-report`` tabulates."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from silhouette_lightning.cli import main as fit_main
from silhouette_lightning.experiments import sweep
from silhouette_lightning.experiments.report import build_report
from silhouette_lightning.experiments.sweep import main, plan
from tests.cli_args import REPO

CONFIGS = REPO / "configs"

# A run of a few seconds: synthetic data, a tiny CNN, one epoch of two batches, then the test.
TINY = {
    "seed_everything": 0,
    "test_after_fit": True,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "limit_train_batches": 2,
        "limit_val_batches": 1,
        "limit_test_batches": 1,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": "runs/paper/tiny", "name": "default"},
        },
    },
    "model": {
        "backbone": {"class_path": "silhouette_lightning.models.SmallCNN", "init_args": {"width": 4}},
        "embedding_dim": 8,
    },
    "data": {
        "dataset": "synthetic",
        "image_size": 8,
        "batch_size": 16,
        "options": {"num_classes": 3, "samples_per_class": 20},
    },
}


def _configs(root: Path, methods=("ce", "ce_silhouette")) -> Path:
    """<root>/configs with paper/tiny.yaml and copies of the given method configs."""
    configs = root / "configs"
    (configs / "paper").mkdir(parents=True)
    (configs / "method").mkdir()
    (configs / "paper" / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    for method in methods:
        shutil.copy(CONFIGS / "method" / f"{method}.yaml", configs / "method")
    return configs


# ----------------------------------------------------------------------------------- expansion


def test_dry_run_expands_datasets_x_seeds_x_methods_with_extra_arguments(capsys):
    main(
        [
            "--configs-dir", str(CONFIGS), "--datasets", "cifar10", "dtd", "--methods", "ce", "hybrid",
            "--seeds", "0", "1", "2", "--extra", "--trainer.max_epochs 5", "--dry-run",
            "--", "--data.num_workers", "2",
        ]
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 2 * 3
    expected = [(d, s, m) for d in ("cifar10", "dtd") for s in (0, 1, 2) for m in ("ce", "hybrid")]
    for line, (dataset, seed, method) in zip(lines, expected, strict=True):
        args = shlex.split(line)
        assert args[:2] == ["silhouette-fit", "fit"]
        assert args[2:6] == [
            "--config",
            f"{CONFIGS}/paper/{dataset}.yaml",
            "--config",
            f"{CONFIGS}/method/{method}.yaml",
        ]
        folder = f"runs/paper/{dataset}/{method}/seed_{seed}"
        option = dict(zip(args[6::2], args[7::2], strict=True))
        assert option == {
            "--seed_everything": str(seed),
            "--trainer.logger.init_args.version": f"seed_{seed}",
            "--trainer.default_root_dir": folder,
            "--trainer.max_epochs": "5",
            "--data.num_workers": "2",
            "--ckpt_path": "last",
        }


def test_default_methods_are_the_paper_comparison_and_fresh_drops_the_resume():
    runs = plan(["flowers102"], list(sweep.PAPER_METHODS), [0], configs_dir=CONFIGS, resume=False)
    assert [run.method for run in runs] == list(sweep.PAPER_METHODS)
    assert all("--ckpt_path" not in run.args for run in runs)
    assert {run.folder for run in runs} == {
        Path(f"runs/paper/flowers102/{m}/seed_0") for m in sweep.PAPER_METHODS
    }
    # An extra save_dir / name override moves the run folders with it.
    (run,) = plan(["dtd"], ["ce"], [1], CONFIGS, extra=["--trainer.logger.init_args.save_dir=/tmp/x"])
    assert run.folder == Path("/tmp/x/ce/seed_1")


def test_unknown_names_list_the_available_configs(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--configs-dir", str(CONFIGS), "--datasets", "cifar10", "imagenet", "--dry-run"])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "Unknown data set 'imagenet'" in error and "cifar10, cifar100, dtd" in error
    with pytest.raises(SystemExit):
        main(["--configs-dir", str(CONFIGS), "--datasets", "dtd", "--methods", "supcon", "simclr"])
    error = capsys.readouterr().err
    assert "Unknown method 'simclr'" in error and "hybrid" in error and "proxy_anchor" in error


def test_method_configs_that_share_a_run_name_are_refused(tmp_path):
    configs = _configs(tmp_path, methods=("ce",))
    (configs / "method" / "unnamed.yaml").write_text("model:\n  online_linear_eval: true\n")
    (configs / "method" / "unnamed2.yaml").write_text("data:\n  num_views: 1\n")
    with pytest.raises(sweep.SweepError, match="would both write 'runs/paper/tiny/default/seed_0'"):
        plan(["tiny"], ["ce", "unnamed", "unnamed2"], [0], configs_dir=configs)


# ----------------------------------------------------------------------------------- SLURM array


@pytest.fixture
def fake_fit(tmp_path) -> tuple[Path, dict[str, str]]:
    """A silhouette-fit on PATH that records its arguments, one per line, in <tmp>/fit_args."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "silhouette-fit"
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path / "fit_args"}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return tmp_path / "fit_args", env


def test_sbatch_array_script_runs_the_task_of_its_index(tmp_path, monkeypatch, capsys, fake_fit):
    monkeypatch.chdir(tmp_path)
    recorded, env = fake_fit
    script = tmp_path / "jobs" / "sweep.sbatch"
    args = ["--configs-dir", str(CONFIGS), "--datasets", "cifar10", "dtd", "--methods", "ce", "supcon"]
    args += ["--seeds", "0", "1", "--slurm", str(script), "--sbatch=--partition=gpu", "--max-parallel", "3"]
    main(args)
    printed = capsys.readouterr().out
    assert f"sbatch {script}" in printed and "silhouette-report runs/paper/cifar10 runs/paper/dtd" in printed
    runs = plan(["cifar10", "dtd"], ["ce", "supcon"], [0, 1], configs_dir=CONFIGS)
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    directives = [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH")]
    assert f"--array=0-{len(runs) - 1}%3" in directives and len(runs) == 8
    assert "--partition=gpu" in directives and "--signal=SIGUSR1@90" in directives
    assert f"--chdir={tmp_path.resolve()}" in directives
    assert (tmp_path / "runs" / "slurm").is_dir()  # SLURM needs the --output folder to exist

    def task(index: int | None) -> subprocess.CompletedProcess:
        task_env = dict(env) if index is None else {**env, "SLURM_ARRAY_TASK_ID": str(index)}
        recorded.unlink(missing_ok=True)
        return subprocess.run(
            ["bash", str(script)], env=task_env, capture_output=True, text=True, check=False
        )

    done = task(1)
    assert done.returncode == 0, done.stderr
    assert recorded.read_text().splitlines() == list(runs[1].args)
    assert runs[1].args[-2:] == ("--ckpt_path", "last") and "seed_0" in str(runs[1].folder)
    assert task(7).returncode == 0 and recorded.read_text().splitlines() == list(runs[7].args)

    # A finished run (tested: test/* columns in its metrics.csv) is not started again.
    runs[7].folder.mkdir(parents=True)
    (runs[7].folder / "metrics.csv").write_text("epoch,step,test/acc,val/acc\n")
    skipped = task(7)
    assert skipped.returncode == 0 and "finished already" in skipped.stdout and not recorded.exists()
    # An index outside the array, or none, is an error that says what to do.
    outside = task(8)
    assert outside.returncode == 2 and "no task 8 in this array (0-7)" in outside.stderr
    unset = task(None)
    assert unset.returncode != 0 and "SLURM_ARRAY_TASK_ID" in unset.stderr


# ------------------------------------------------------------------------------ sequential runner


def test_sequential_runner_stops_at_a_failure_or_continues_and_summarises(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    configs = _configs(tmp_path)
    codes = iter([0, 3, 0, 0])
    started = []
    monkeypatch.setattr(sweep, "_run_one", lambda run: started.append(run) or next(codes))
    args = ["--configs-dir", str(configs), "--datasets", "tiny", "--seeds", "0", "1"]
    args += ["--methods", "ce", "ce_silhouette"]

    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr().out
    assert info.value.code == 1 and len(started) == 2
    assert "1 ok, 1 failed, 2 not run" in out and "failed (exit 3)" in out and "--continue-on-error" in out

    codes, started[:] = iter([0, 3, 0, 0]), []
    with pytest.raises(SystemExit) as info:
        main([*args, "--continue-on-error"])
    out = capsys.readouterr().out
    assert info.value.code == 1 and len(started) == 4 and "3 ok, 1 failed" in out
    assert "tiny / ce_silhouette / seed 0: runs/paper/tiny/ce_silhouette/seed_0" in out

    codes, started[:] = iter([0, 0, 0, 0]), []
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0 and "silhouette-report runs/paper/tiny" in capsys.readouterr().out


# The resumed run reopens its own folder, which Lightning mentions.
@pytest.mark.filterwarnings("ignore:Experiment logs directory", "ignore:Checkpoint directory")
def test_a_real_sweep_trains_every_run_and_the_report_groups_the_seeds(tmp_path, monkeypatch, capsys):
    """2 methods x 2 seeds through real silhouette-fit subprocesses; then a rerun skips them all, and
    resuming one run continues its own folder although another seed's checkpoint is newer."""
    monkeypatch.chdir(tmp_path)
    configs = _configs(tmp_path)
    args = ["--configs-dir", str(configs), "--datasets", "tiny", "--methods", "ce", "ce_silhouette"]
    args += ["--seeds", "0", "1"]
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr().out
    assert info.value.code == 0, out
    assert "summary: 4 ok" in out and "silhouette-report runs/paper/tiny --output runs/paper/report" in out

    table, groups = build_report([tmp_path / "runs" / "paper" / "tiny"])
    assert [(g.method, g.dataset, len(g.runs)) for g in groups] == [
        ("ce", "synthetic", 2),
        ("ce_silhouette", "synthetic", 2),
    ]
    assert all(sorted(run.seed for run in g.runs) == [0, 1] for g in groups)
    assert "| ce | synthetic | 2 | 0 1 |" in table

    with pytest.raises(SystemExit) as info:  # everything finished: nothing runs again
        main(args)
    assert info.value.code == 0 and capsys.readouterr().out.count("finished already (test metrics") == 4

    # Resume seed 0 for one more epoch while seed 1's checkpoint is the newest of the method.
    run0, run1 = plan(["tiny"], ["ce"], [0, 1], configs_dir=configs)
    os.utime(run1.folder / "checkpoints" / "last.ckpt")
    seed1_metrics = (run1.folder / "metrics.csv").read_text()
    fit_main([*run0.args, "--trainer.max_epochs", "2"])
    assert (run1.folder / "metrics.csv").read_text() == seed1_metrics
    epochs = {line.split(",")[0] for line in (run0.folder / "metrics.csv").read_text().splitlines()[1:]}
    assert "1" in epochs  # the second epoch was trained and logged in seed 0's own folder
    assert sorted(p.name for p in (run0.folder.parent).iterdir()) == ["seed_0", "seed_1"]
