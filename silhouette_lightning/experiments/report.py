"""``silhouette-report RUN_DIR...``: the final metrics of many runs as one table, mean ± std over seeds.

A run folder is a CSV-logger folder (``runs/<dataset>/<method>/version_<n>/``) with ``metrics.csv`` and
LightningCLI's ``config.yaml`` (:mod:`silhouette_lightning.experiments.runs`). Per run: method = the
logger's ``name`` in config.yaml (else the parent folder's name), dataset = ``data.dataset`` (else the
grandparent folder's name), seed = ``seed_everything``; its final metrics are the last non-empty value of
every ``test/*`` column, or of every ``val/*`` column for a run that was never tested. Runs are averaged
only when they are the same experiment: same method, dataset, the same config apart from the seed and the
run-folder keys (:data:`RUN_SPECIFIC_KEYS`), and the same kind (a trained run, or a folder of a
``test``/``validate`` call without training): mean and sample standard deviation (ddof = 1; none for a
single run), with the run count n. Rows of one (method, dataset) that differ in their config are told
apart by the differing keys (``ce [trainer.max_epochs=5]``), and the table is followed by the list of run
folders in each row.

Outputs: the Markdown table on stdout; with ``--output DIR`` also ``report.md``, ``report.csv`` and
``report.png`` (a bar chart of ``--metric`` grouped by dataset, error bars = std).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from silhouette_lightning.experiments.runs import (
    ExperimentError,
    find_run_folders,
    logger_name,
    read_metrics,
    run_config,
    was_trained,
)

DEFAULT_METRIC = "test/acc"

# Config keys that name the run rather than the experiment: seeds of one experiment differ in them.
RUN_SPECIFIC_KEYS = (
    "seed_everything",
    "ckpt_path",
    "trainer.logger.init_args.version",
    "trainer.logger.init_args.save_dir",
    "trainer.default_root_dir",
    "checkpoint.dirpath",
)
EVALUATION_ONLY = "evaluation only"


class ReportError(ExperimentError):
    """A mistake in the command line or the run folders; the message says what to change."""


@dataclass
class Run:
    """One run folder's identity and final metrics."""

    folder: Path
    method: str
    dataset: str
    seed: Any
    metrics: dict[str, float]
    # The experiment's config, flattened to dotted keys, without RUN_SPECIFIC_KEYS.
    setting: dict[str, str] = field(default_factory=dict)
    # "fit" for a trained run, EVALUATION_ONLY for a test/validate call's folder (no train/* column).
    kind: str = "fit"

    @property
    def experiment(self) -> tuple:
        return (self.dataset, self.method, self.kind, tuple(sorted(self.setting.items())))


@dataclass
class Group:
    """The runs of one experiment (method, dataset, config): per metric, the values over its runs."""

    method: str
    dataset: str
    runs: list[Run] = field(default_factory=list)
    # What tells this group apart from the other groups of its (method, dataset); empty if nothing.
    variant: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    def values(self, metric: str) -> np.ndarray:
        return np.asarray([run.metrics[metric] for run in self.runs if metric in run.metrics], dtype=float)

    def mean_std_n(self, metric: str) -> tuple[float, float, int]:
        """Mean, sample std (NaN for fewer than 2 runs) and count of ``metric`` over the group's runs."""
        values = self.values(metric)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        return mean, std, n


def final_metrics(rows: Sequence[dict[str, str]]) -> dict[str, float]:
    """The last non-empty value of each ``test/*`` column, or of each ``val/*`` column without tests, in
    the rows of a ``metrics.csv``."""
    last: dict[str, float] = {}
    for row in rows:
        for column, value in row.items():
            if column and value not in (None, ""):
                try:
                    last[column] = float(value)
                except ValueError:
                    continue
    for prefix in ("test/", "val/"):
        chosen = {name: value for name, value in last.items() if name.startswith(prefix)}
        if chosen:
            return chosen
    return {}


def read_run(folder: Path) -> Run:
    config = run_config(folder)
    method = logger_name(config) or folder.parent.name
    dataset = (config.get("data") or {}).get("dataset") or folder.parent.parent.name
    rows = read_metrics(folder)
    setting = {key: value for key, value in _flatten(config).items() if key not in RUN_SPECIFIC_KEYS}
    return Run(
        folder,
        str(method),
        str(dataset),
        config.get("seed_everything"),
        final_metrics(rows),
        setting,
        "fit" if was_trained(rows) else EVALUATION_ONLY,
    )


def _flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists and scalars are leaves (as JSON text)."""
    if isinstance(config, dict) and config:
        flat: dict[str, str] = {}
        for key, value in config.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): json.dumps(config, sort_keys=True, default=str)} if prefix else {}


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by experiment, sorted by dataset, method, then variant."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        groups.setdefault(run.experiment, Group(run.method, run.dataset)).runs.append(run)
    by_name: dict[tuple[str, str], list[Group]] = {}
    for group in groups.values():
        by_name.setdefault((group.dataset, group.method), []).append(group)
    for siblings in by_name.values():
        if len(siblings) > 1:
            _name_variants(siblings)
    return sorted(groups.values(), key=lambda group: (group.dataset, group.method, group.variant))


def _name_variants(siblings: list[Group]) -> None:
    """Label groups of one (method, dataset) by the config keys whose values differ among them."""
    settings = [group.runs[0].setting for group in siblings]
    keys = sorted({key for setting in settings for key in setting})
    differing = [key for key in keys if len({setting.get(key, "–") for setting in settings}) > 1]
    for group, setting in zip(siblings, settings, strict=True):
        parts = [f"{key}={setting.get(key, '–')}" for key in differing]
        if group.runs[0].kind == EVALUATION_ONLY:
            parts.append(EVALUATION_ONLY)
        group.variant = ", ".join(parts)


def metric_names(runs: Sequence[Run]) -> list[str]:
    """Every final metric of any run: ``test/*`` before ``val/*``, alphabetical within each."""
    names = {name for run in runs for name in run.metrics}
    return sorted(names, key=lambda name: (not name.startswith("test/"), name))


def _cell(mean: float, std: float, n: int, runs: int) -> str:
    if n == 0:
        return "–"
    text = f"{mean:.4f}" if math.isnan(std) else f"{mean:.4f} ± {std:.4f}"
    # The metric is missing in some runs of the group: say over how many it was averaged.
    return text if n == runs else f"{text} (n={n})"


def _seeds(group: Group) -> str:
    return " ".join(str(run.seed) for run in sorted(group.runs, key=lambda run: str(run.seed)))


def markdown_table(groups: Sequence[Group], metrics: Sequence[str]) -> str:
    header = ["method", "dataset", "n", "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * len(metrics)) + "|"]
    for group in groups:
        runs = len(group.runs)
        cells = [_cell(*group.mean_std_n(metric), runs) for metric in metrics]
        lines.append("| " + " | ".join([group.label, group.dataset, str(runs), _seeds(group), *cells]) + " |")
    return "\n".join(lines) + "\n"


def grouped_folders(groups: Sequence[Group]) -> str:
    """Which run folders each row averages (so that nothing is averaged unseen)."""
    lines = ["", "Run folders per row:"]
    for group in groups:
        lines.append(f"- {group.label} / {group.dataset}:")
        lines += [f"  - {run.folder}" for run in sorted(group.runs, key=lambda run: str(run.folder))]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, groups: Sequence[Group], metrics: Sequence[str]) -> None:
    """One row per (method, dataset): ``<metric> mean``, ``<metric> std``, ``<metric> n`` per metric
    (std empty for a single run)."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["method", "variant", "dataset", "n", "seeds"]
            + [f"{m} {s}" for m in metrics for s in ("mean", "std", "n")]
        )
        for group in groups:
            row: list[Any] = [group.method, group.variant, group.dataset, len(group.runs), _seeds(group)]
            for metric in metrics:
                mean, std, n = group.mean_std_n(metric)
                row += ["" if math.isnan(mean) else repr(mean), "" if math.isnan(std) else repr(std), n]
            writer.writerow(row)


def bar_chart(path: Path, groups: Sequence[Group], metric: str) -> None:
    """``metric`` per dataset (x groups) and method (bars), error bars = sample std over runs."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed (clusters, CI)
    import matplotlib.pyplot as plt

    datasets = sorted({group.dataset for group in groups})
    methods = sorted({group.label for group in groups})
    by_key = {(group.dataset, group.label): group for group in groups}
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(max(4.0, 1.5 * len(datasets) * max(1, len(methods) / 2)), 4))
    x = np.arange(len(datasets))
    for position, method in enumerate(methods):
        missing = (math.nan, math.nan, 0)  # no run of this method on that data set: no bar
        stats = [by_key[d, method].mean_std_n(metric) if (d, method) in by_key else missing for d in datasets]
        means = np.asarray([s[0] for s in stats])
        stds = np.nan_to_num(np.asarray([s[1] for s in stats]))
        axes.bar(
            x + (position - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=method
        )
    axes.set_xticks(x, datasets)
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} (mean ± std over runs)")
    axes.legend(title="method", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_report(
    paths: Sequence[str | Path], output: str | Path | None = None, metric: str | None = None
) -> tuple[str, list[Group]]:
    """Read the runs under ``paths``; returns the Markdown table (and the groups), and writes
    ``report.{md,csv,png}`` to ``output`` when given (the chart shows ``metric``, default ``test/acc``)."""
    runs = [read_run(folder) for folder in find_run_folders(paths)]
    metrics = metric_names(runs)
    if not metrics:
        folders = ", ".join(str(run.folder) for run in runs)
        raise ReportError(f"No test/* or val/* values in the metrics.csv of: {folders}")
    if (metric is not None or output is not None) and (metric or DEFAULT_METRIC) not in metrics:
        metric = metric or DEFAULT_METRIC
        raise ReportError(f"No run has the metric '{metric}' for --metric. Available: {', '.join(metrics)}")
    groups = group_runs(runs)
    table = markdown_table(groups, metrics) + grouped_folders(groups)
    if output is not None:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.md").write_text(table)
        write_csv(folder / "report.csv", groups, metrics)
        bar_chart(folder / "report.png", groups, metric or DEFAULT_METRIC)
    return table, groups


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="silhouette-report",
        description="Final metrics of many runs as one table (method x dataset, mean ± std over seeds).",
    )
    parser.add_argument("runs", nargs="+", help="run folders, or folders to search for metrics.csv")
    parser.add_argument("--output", "-o", help="folder for report.md, report.csv and report.png")
    parser.add_argument("--metric", help=f"metric of the bar chart (default: {DEFAULT_METRIC})")
    options = parser.parse_args(args)
    try:
        table, _ = build_report(options.runs, options.output, options.metric)
    except ExperimentError as error:
        print(f"silhouette-report: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    print(table, end="")
    if options.output is not None:
        print(f"\nWritten: {Path(options.output) / 'report.md'}, report.csv, report.png")


if __name__ == "__main__":
    main()
