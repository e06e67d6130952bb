"""Shared pieces of our study drivers (benchmarks/cifar10_study.py, benchmarks/recipe_study.py): how one
run of a study is spelled, how a method config's silhouette terms are adjusted, running or printing the
plan, and the report's tables.

Every run is ``silhouette-fit fit ... --ckpt_path last`` with its own logger version ``seed_<s>``, run one
after the other by ``silhouette-sweep``'s machinery, so rerunning a driver continues a killed run and
skips finished ones (those whose metrics.csv has test metrics).
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from silhouette_lightning.experiments.sweep import Run, run_sequentially

REPO = Path(__file__).resolve().parents[1]
SILHOUETTE_TERM = "silhouette_lightning.terms.SoftSilhouetteTerm"


def study_run(config: str, dataset: str, save_dir: Path, name: str, seed: int, args: Sequence[str]) -> Run:
    """One run of a study as a ``silhouette-sweep`` run (same resume and skip rules), in
    ``<save_dir>/<name>/seed_<seed>``; ``config`` is the study's base config, ``args`` come after it."""
    fit_args = (
        "fit", "--config", config, *args,
        "--seed_everything", str(seed),
        "--trainer.logger.init_args.save_dir", str(save_dir),
        "--trainer.logger.init_args.name", name,
        "--trainer.logger.init_args.version", f"seed_{seed}",
        "--trainer.enable_progress_bar", "false",
        "--ckpt_path", "last",
    )  # fmt: skip
    return Run(dataset, name, seed, save_dir / name / f"seed_{seed}", fit_args)


def method_args(method: str, silhouette_args: dict[str, Any] | None = None) -> tuple[str, ...]:
    """``--config configs/method/<method>.yaml``, and with ``silhouette_args`` also ``--model.losses``:
    the config's terms with those init arguments added to every Soft Silhouette term (a list replaces
    the config's list as a whole; jsonargparse cannot override one item of it)."""
    config = REPO / "configs" / "method" / f"{method}.yaml"
    args = ("--config", str(config.relative_to(REPO)))
    if not silhouette_args:
        return args
    terms = yaml.safe_load(config.read_text())["model"]["losses"]
    silhouettes = [term for term in terms if term["class_path"] == SILHOUETTE_TERM]
    if not silhouettes:
        return args
    for term in silhouettes:
        term.setdefault("init_args", {}).update(silhouette_args)
    return (*args, "--model.losses", json.dumps(terms))


def run_all(planned: Sequence[Run], dry_run: bool) -> int:
    """Run the plan one run after the other (finished runs are skipped), or print its commands."""
    if dry_run:
        for run in planned:
            print(("# finished: " if run.finished() else "") + shlex.join(run.command()))
        return 0
    return run_sequentially(list(planned), continue_on_error=True)


def report_rows(folders: Path | Sequence[Path], output: Path, chart_metric: str) -> list[dict[str, str]]:
    """silhouette-report's CSV rows (one per method: ``<metric> mean`` / ``std`` / ``n``) of the runs
    under ``folders``, its full report written to ``output``."""
    paths = [folders] if isinstance(folders, Path) else list(folders)
    command = [
        sys.executable,
        "-m",
        "silhouette_lightning.experiments.report",
        *map(str, paths),
        "--output",
        str(output),
    ]
    command += ["--metric", chart_metric]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    with (output / "report.csv").open(newline="") as file:
        return list(csv.DictReader(file))


def cell(row: dict[str, str], column: str, digits: int = 3) -> str:
    """``mean ± std`` of ``column`` in a report row, ``–`` where no run has it."""
    mean, std = row.get(f"{column} mean"), row.get(f"{column} std")
    if not mean:
        return "–"
    return f"{float(mean):.{digits}f}" + (f" ± {float(std):.{digits}f}" if std else "")


def markdown_table(rows: Sequence[dict[str, str]], columns: Sequence[str], headers: Sequence[str]) -> str:
    """One line per report row (method, run count n, then ``columns`` titled ``headers``)."""
    lines = [
        "| method | n | " + " | ".join(headers) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for row in rows:
        label = row["method"] + (f" {row['variant']}" if row.get("variant") else "")
        lines.append(f"| {label} | {row['n']} | " + " | ".join(cell(row, c) for c in columns) + " |")
    return "\n".join(lines)


def epoch_times(metrics_files: Sequence[Path]) -> dict[str, list[float]]:
    """Training-epoch seconds (EpochTimer's ``train/epoch_time_s``) per method (the run folder's parent),
    without each run's first epoch: it includes warm-up (allocator, first image reads)."""
    times: dict[str, list[float]] = {}
    for metrics in sorted(metrics_files):
        with metrics.open(newline="") as file:
            values = [
                float(r["train/epoch_time_s"]) for r in csv.DictReader(file) if r.get("train/epoch_time_s")
            ]
        times.setdefault(metrics.parent.parent.name, []).extend(values[1:])
    return times


def time_table(times: dict[str, list[float]], baseline: str = "ce") -> str:
    """Mean seconds per training epoch per method and the ratio to ``baseline``'s."""
    times = {method: values for method, values in times.items() if values}
    base = times.get(baseline)
    reference = sum(base) / len(base) if base else None
    lines = [
        f"| method | s / training epoch (mean over epochs 2+, all seeds) | × {baseline.upper()} |",
        "|---|---:|---:|",
    ]
    for method, values in times.items():
        mean = sum(values) / len(values)
        ratio = f"{mean / reference:.2f}" if reference else ""
        lines.append(f"| {method} | {mean:.1f} | {ratio} |")
    return "\n".join(lines)
