"""``silhouette-sweep``: methods x data sets x seeds of the paper protocol, one after the other or as a
SLURM array job.

Every run is one ``silhouette-fit`` command::

    silhouette-fit fit --config <configs>/paper/<dataset>.yaml --config <configs>/method/<method>.yaml
        --seed_everything <seed> --trainer.logger.init_args.version seed_<seed>
        --trainer.default_root_dir <run> [EXTRA...] --ckpt_path last

with ``<run> = <logger save_dir>/<logger name>/seed_<seed>`` as the two configs compose it
(``runs/paper/<dataset>/<method>/seed_<seed>``): ``silhouette-report`` reads the method (logger name),
data set (``data.dataset``) and seed (``seed_everything``) from the run's ``config.yaml``, so the seeds of a
(method, data set) form one row. The run-folder options make ``--ckpt_path last`` safe when the seeds
of one method run at the same time (array tasks): with a fixed logger version the CLI resumes only from
that version's folder, never another seed's, and ``default_root_dir`` keeps Lightning's SLURM requeue
checkpoints (``hpc_ckpt_*.ckpt``) per run too. A rerun therefore continues an interrupted run in its
own folder and skips a finished one (a ``metrics.csv`` with ``test/*`` columns); ``--fresh`` starts every
run over instead.

Modes: run sequentially here (each run a subprocess with this Python, output streamed, a summary at the
end, exit status 1 if any run failed), ``--dry-run`` (print the commands), or ``--slurm FILE`` (write an
sbatch array script, one run per ``$SLURM_ARRAY_TASK_ID``). This module imports nothing heavy: planning
and writing the script take no time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from silhouette_lightning.experiments.runs import (
    DEFAULT_LOGGER_NAME,
    DEFAULT_SAVE_DIR,
    ExperimentError,
    is_finished,
    logger_init_args,
    read_config,
    run_folder,
)

#: The methods of the paper comparison (configs/method/<name>.yaml), the default of ``--methods``.
PAPER_METHODS = (
    "ce",
    "ce_silhouette",
    "supcon",
    "supcon_silhouette",
    "hybrid",
    "triplet",
    "proxy_anchor",
)
DEFAULT_SEEDS = (0, 1, 2)
FIT_COMMAND = "silhouette-fit"
SAVE_DIR_KEY = "--trainer.logger.init_args.save_dir"
NAME_KEY = "--trainer.logger.init_args.name"

# Directives of the array script; the cluster-specific ones (GPU, CPUs, time) are meant to be edited, or
# overridden with --sbatch or on the sbatch command line. --signal + --requeue: Lightning saves an
# hpc_ckpt and requeues the task shortly before the time limit; --open-mode=append keeps the log of the
# earlier attempt.
SBATCH_DEFAULTS = (
    "--nodes=1",
    "--ntasks-per-node=1",
    "--gres=gpu:1",
    "--cpus-per-task=8",
    "--time=24:00:00",
    "--signal=SIGUSR1@90",
    "--requeue",
    "--open-mode=append",
)


class SweepError(ExperimentError):
    """A mistake in the command line or the configs; the message says what to change."""


@dataclass(frozen=True)
class Run:
    """One (data set, method, seed) and the ``silhouette-fit`` arguments (after the program name)."""

    dataset: str
    method: str
    seed: int
    folder: Path
    args: tuple[str, ...]

    def command(self) -> list[str]:
        return [FIT_COMMAND, *self.args]

    def finished(self) -> bool:
        """Whether the run was tested (:func:`~silhouette_lightning.experiments.runs.is_finished`)."""
        return is_finished(self.folder)


def available(configs_dir: Path, kind: str) -> list[str]:
    """The config names (file stems) in ``<configs_dir>/<kind>/``."""
    return sorted(path.stem for path in (configs_dir / kind).glob("*.yaml"))


def select(requested: Sequence[str], configs_dir: Path, kind: str) -> list[str]:
    """``requested`` checked against ``<configs_dir>/<kind>/*.yaml`` (``all``: every one), in order."""
    names = available(configs_dir, kind)
    folder = configs_dir / kind
    if not names:
        raise SweepError(f"No configs in '{folder}' (*.yaml); use --configs-dir to point at the configs.")
    chosen = list(names) if "all" in requested else list(dict.fromkeys(requested))
    unknown = [name for name in chosen if name not in names]
    if unknown:
        label = "data set" if kind == "paper" else "method"
        raise SweepError(
            f"Unknown {label}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: no "
            f"{', '.join(f'{folder / name}.yaml' for name in unknown)}. Available in '{folder}': "
            f"{', '.join(names)} (or 'all')."
        )
    return chosen


def _override(extra: Sequence[str], key: str) -> str | None:
    """The last value given to ``key`` in command-line arguments (``KEY VALUE`` or ``KEY=VALUE``)."""
    value = None
    for position, token in enumerate(extra):
        if token == key and position + 1 < len(extra):
            value = extra[position + 1]
        elif token.startswith(key + "="):
            value = token[len(key) + 1 :]
    return value


def run_location(configs: Sequence[Path], extra: Sequence[str]) -> tuple[str, str]:
    """The CSV logger's ``save_dir`` and ``name`` as the configs compose them (later ones win), then the
    extra arguments."""
    save_dir, name = DEFAULT_SAVE_DIR, DEFAULT_LOGGER_NAME
    for path in configs:
        init_args = logger_init_args(read_config(path))
        save_dir = str(init_args.get("save_dir", save_dir))
        name = str(init_args.get("name", name))
    return _override(extra, SAVE_DIR_KEY) or save_dir, _override(extra, NAME_KEY) or name


def plan(
    datasets: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    configs_dir: Path = Path("configs"),
    extra: Sequence[str] = (),
    resume: bool = True,
) -> list[Run]:
    """The runs, data set by data set, and within one data set seed by seed (every method of seed 0
    first), so an interrupted sweep leaves complete comparisons.

    Raises :class:`SweepError` for unknown names and for runs that would share a folder (two method
    configs with the same logger name).
    """
    datasets = select(datasets, configs_dir, "paper")
    methods = select(methods, configs_dir, "method")
    if not seeds:
        raise SweepError("--seeds is empty: give at least one seed.")
    runs: list[Run] = []
    for dataset in datasets:
        dataset_config = configs_dir / "paper" / f"{dataset}.yaml"
        for seed in dict.fromkeys(seeds):
            for method in methods:
                method_config = configs_dir / "method" / f"{method}.yaml"
                save_dir, name = run_location([dataset_config, method_config], extra)
                folder = run_folder(save_dir, name, f"seed_{seed}")
                args = [
                    "fit",
                    "--config", str(dataset_config),
                    "--config", str(method_config),
                    "--seed_everything", str(seed),
                    "--trainer.logger.init_args.version", f"seed_{seed}",
                    "--trainer.default_root_dir", str(folder),
                    *extra,
                ]  # fmt: skip
                if resume:
                    args += ["--ckpt_path", "last"]
                runs.append(Run(dataset, method, seed, folder, tuple(args)))
    _check_distinct_folders(runs)
    return runs


def _check_distinct_folders(runs: Sequence[Run]) -> None:
    seen: dict[Path, Run] = {}
    for run in runs:
        other = seen.setdefault(run.folder, run)
        if other is not run:
            raise SweepError(
                f"Runs ({other.dataset}, {other.method}) and ({run.dataset}, {run.method}), seed {run.seed}, "
                f"would both write '{run.folder}': every method config needs its own "
                "trainer.logger.init_args.name and every data set config its own "
                "trainer.logger.init_args.save_dir."
            )


def report_command(runs: Sequence[Run]) -> str:
    """The ``silhouette-report`` command over the runs' data set folders (``<save_dir>``)."""
    roots = list(dict.fromkeys(str(run.folder.parent.parent) for run in runs))
    # Next to the data set folders: runs/paper/report for runs/paper/<data set>.
    try:
        output = Path(os.path.commonpath([str(Path(root).parent) for root in roots])) / "report"
    except ValueError:  # absolute and relative folders mixed
        output = Path("report")
    return shlex.join(["silhouette-report", *roots, "--output", str(output)])


# --------------------------------------------------------------------------------------- SLURM array


def sbatch_script(
    runs: Sequence[Run],
    workdir: Path,
    log_dir: Path,
    script: str = "sweep.sbatch",
    job_name: str = "silhouette-sweep",
    directives: Sequence[str] = (),
    max_parallel: int | None = None,
) -> str:
    """An sbatch array script: task ``k`` runs ``runs[k]`` in ``workdir`` (where relative paths in the
    commands point from), unless that run has finished already. ``script`` names the file in its usage
    lines."""
    if not runs:
        raise SweepError("Nothing to run: the sweep is empty.")
    last = len(runs) - 1
    array = f"0-{last}" + (f"%{max_parallel}" if max_parallel else "")
    datasets = " ".join(dict.fromkeys(run.dataset for run in runs))
    methods = " ".join(dict.fromkeys(run.method for run in runs))
    seeds = " ".join(dict.fromkeys(str(run.seed) for run in runs))
    lines = [
        "#!/bin/bash",
        f"# Written by silhouette-sweep: {len(runs)} runs, one per array task (data sets: {datasets}; "
        f"methods: {methods}; seeds: {seeds}).",
        f"#   submit:             sbatch {script}    (tasks 0-{last}; their output: {log_dir})",
        f"#   one task, no SLURM: SLURM_ARRAY_TASK_ID=0 bash {script}",
        "# The job inherits the environment sbatch is called from: activate the environment that has",
        "# silhouette-fit (or load your modules) before submitting, or do it here after the #SBATCH lines.",
        "# Every run passes --ckpt_path last with its own checkpoint folder: a requeued or resubmitted task",
        "# continues its run, and a finished one (test metrics in its metrics.csv) is skipped.",
        "# Edit the resources below for your cluster (or override them: sbatch --time=48:00:00 ...).",
        f"# The table, when all tasks are done: {report_command(runs)}",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array={array}",
        *(f"#SBATCH {directive}" for directive in (*SBATCH_DEFAULTS, *directives)),
        f"#SBATCH --chdir={workdir}",
        f"#SBATCH --output={log_dir / '%x_%A_%a.out'}",
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        f': "${{SLURM_ARRAY_TASK_ID:?is not set: submit with sbatch, or set it to run one task (0-{last})}}"',
        "",
        'case "$SLURM_ARRAY_TASK_ID" in',
    ]
    for index, run in enumerate(runs):
        lines.append(f"  {index})  # {run.dataset} / {run.method} / seed {run.seed}")
        lines.append(f"    run={shlex.quote(str(run.folder))}")
        lines.append(f"    set -- {shlex.join(run.args)} ;;")
    lines += [
        f'  *) echo "silhouette-sweep: no task $SLURM_ARRAY_TASK_ID in this array (0-{last})" >&2; exit 2 ;;',
        "esac",
        "",
        "header=",
        'if [ -f "$run/metrics.csv" ]; then IFS= read -r header < "$run/metrics.csv" || true; fi',
        'if [[ "$header" == *test/* ]]; then',
        '  echo "$run: finished already (test metrics in its metrics.csv); nothing to do."',
        "  exit 0",
        "fi",
        f"if ! command -v {FIT_COMMAND} >/dev/null 2>&1; then",
        f'  echo "{FIT_COMMAND} is not on PATH: activate its environment before sbatch." >&2',
        "  exit 127",
        "fi",
        f'echo "task $SLURM_ARRAY_TASK_ID on $(hostname): {FIT_COMMAND} $(printf \'%q \' "$@")"',
        "# Under SLURM the run is a job step (srun), which --signal reaches: Lightning then saves an",
        "# hpc_ckpt in the run folder and requeues the task.",
        'if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then',
        f'  exec srun {FIT_COMMAND} "$@"',
        "fi",
        f'exec {FIT_COMMAND} "$@"',
    ]
    return "\n".join(lines) + "\n"


def write_sbatch(path: Path, runs: Sequence[Run], log_dir: Path, **kwargs: Any) -> None:
    workdir = Path.cwd().resolve()
    log_dir = (workdir / log_dir).resolve()
    text = sbatch_script(runs, workdir, log_dir, script=shlex.quote(str(path)), **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)  # SLURM does not create the folder of --output
    path.write_text(text)
    path.chmod(0o755)


# ------------------------------------------------------------------------------------- sequential


@dataclass
class Outcome:
    run: Run
    status: str  # "ok", "failed (exit N)", "interrupted", "finished already", "not run"
    seconds: float = 0.0


class _Stop(Exception):
    """The sweep was interrupted (Ctrl+C or SIGTERM); ``code`` is the exit status to report."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _run_one(run: Run) -> int:
    """Run ``run`` with this Python (``python -m silhouette_lightning`` is ``silhouette-fit``), its output
    streamed; on Ctrl+C / SIGTERM wait for it to save its interrupted checkpoint, then raise
    :class:`_Stop`."""
    process = subprocess.Popen([sys.executable, "-m", "silhouette_lightning", *run.args])

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)
        raise _Stop(128 + signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        return process.wait()
    except (KeyboardInterrupt, _Stop) as stop:
        # Ctrl+C reached the child too (same process group); SIGTERM was forwarded. Either way it saves
        # <run>/checkpoints/interrupted.ckpt and stops.
        try:
            process.wait(timeout=300)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        raise _Stop(stop.code if isinstance(stop, _Stop) else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sequentially(runs: Sequence[Run], continue_on_error: bool = False, resume: bool = True) -> int:
    """Run one after the other; print a summary; 0 if every run succeeded (or had finished before)."""
    outcomes = [Outcome(run, "not run") for run in runs]
    code = 0
    try:
        for index, outcome in enumerate(outcomes, start=1):
            run = outcome.run
            prefix = f"[silhouette-sweep {index}/{len(runs)}]"
            if resume and run.finished():
                outcome.status = "finished already"
                print(f"{prefix} {run.folder}: finished already (test metrics in metrics.csv); skipped.")
                continue
            print(f"{prefix} {shlex.join(run.command())}", flush=True)
            start = time.perf_counter()
            try:
                returncode = _run_one(run)
            except _Stop:
                outcome.status = "interrupted"
                raise
            outcome.seconds = time.perf_counter() - start
            outcome.status = "ok" if returncode == 0 else f"failed (exit {returncode})"
            if returncode != 0:
                code = 1
                if not continue_on_error:
                    print(f"{prefix} failed (exit {returncode}); stopping (--continue-on-error goes on).")
                    break
    except _Stop as stop:
        code = stop.code
        print("\nsilhouette-sweep: interrupted; run the same command again to continue.", file=sys.stderr)
    _print_summary(outcomes, runs)
    return code


def _print_summary(outcomes: Sequence[Outcome], runs: Sequence[Run]) -> None:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        key = "failed" if outcome.status.startswith("failed") else outcome.status
        counts[key] = counts.get(key, 0) + 1
    print("\nsilhouette-sweep summary: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for outcome in outcomes:
        if outcome.status not in ("ok", "finished already"):
            run = outcome.run
            print(f"  {outcome.status:<18} {run.dataset} / {run.method} / seed {run.seed}: {run.folder}")
            if outcome.status.startswith("failed"):
                print(f"    {shlex.join(run.command())}")
    print(f"\nThe table: {report_command(runs)}")


# ------------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="silhouette-sweep",
        description="Run methods x data sets x seeds of the paper protocol (configs/paper/<data set>.yaml "
        "+ configs/method/<method>.yaml): one after the other here, or as a SLURM array job (--slurm). "
        "Arguments after '--' (or in --extra) go to every silhouette-fit command.",
        epilog="Example: silhouette-sweep --datasets cifar10 dtd --methods ce hybrid --seeds 0 1 2 "
        '--extra "--trainer.max_epochs 5" --dry-run',
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["all"], metavar="NAME",
        help="data set configs in <configs-dir>/paper/ (default: all of them)",
    )  # fmt: skip
    parser.add_argument(
        "--methods", nargs="+", default=list(PAPER_METHODS), metavar="NAME",
        help=f"method configs in <configs-dir>/method/, or 'all' (default: {' '.join(PAPER_METHODS)})",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), metavar="SEED",
        help="training seeds, passed as --seed_everything (default: 0 1 2)",
    )  # fmt: skip
    parser.add_argument(
        "--configs-dir", type=Path, default=Path("configs"),
        help="folder holding paper/ and method/ (default: configs)",
    )  # fmt: skip
    parser.add_argument(
        "--extra", action="append", default=[], metavar="ARGS",
        help='arguments for every run, split like a shell: --extra "--trainer.max_epochs 5" (repeatable; '
        "write --extra=--key=value for a single token)",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--continue-on-error", action="store_true",
        help="go on with the next run after a failed one (default: stop at the first failure)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh", action="store_true",
        help="start every run over (no --ckpt_path last; finished runs are run again and overwritten); "
        "default: continue interrupted runs and skip finished ones",
    )  # fmt: skip
    slurm = parser.add_argument_group("SLURM")
    slurm.add_argument("--slurm", type=Path, metavar="FILE", help="write an sbatch array script instead")
    slurm.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION",
        help="extra #SBATCH option, e.g. --sbatch=--partition=gpu (repeatable)",
    )  # fmt: skip
    slurm.add_argument("--job-name", default="silhouette-sweep", help="SLURM job name")
    slurm.add_argument(
        "--max-parallel", type=int, metavar="K", help="at most K tasks at a time (--array=0-N%%K)"
    )
    slurm.add_argument(
        "--slurm-logs", type=Path, default=Path("runs/slurm"),
        help="folder of the tasks' output files (default: runs/slurm)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.slurm is not None and options.fresh:
        parser.error("--fresh is for sequential runs; array tasks always continue their own run.")
    if options.max_parallel is not None and options.max_parallel < 1:
        parser.error(f"--max-parallel must be >= 1, got {options.max_parallel}.")
    extra = [token for value in options.extra for token in shlex.split(value)] + passthrough
    try:
        runs = plan(
            options.datasets,
            options.methods,
            options.seeds,
            configs_dir=options.configs_dir,
            extra=extra,
            resume=not options.fresh,
        )
    except ExperimentError as error:
        print(f"silhouette-sweep: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error

    if options.dry_run:
        for run in runs:
            done = not options.fresh and options.slurm is None and run.finished()
            print(("# finished already, skipped: " if done else "") + shlex.join(run.command()))
        return
    if options.slurm is not None:
        directives = [d if d.startswith("-") else f"--{d}" for d in options.sbatch]
        write_sbatch(
            options.slurm,
            runs,
            options.slurm_logs,
            job_name=options.job_name,
            directives=directives,
            max_parallel=options.max_parallel,
        )
        print(f"Wrote {options.slurm}: an array of {len(runs)} tasks (0-{len(runs) - 1}), one run each.")
        print(f"Submit it with:  sbatch {shlex.quote(str(options.slurm))}")
        print(f"Try one task here:  SLURM_ARRAY_TASK_ID=0 bash {shlex.quote(str(options.slurm))}")
        print(f"When all tasks are done:  {report_command(runs)}")
        return
    raise SystemExit(run_sequentially(runs, options.continue_on_error, resume=not options.fresh))


if __name__ == "__main__":
    main()
