"""Run folders: where a ``silhouette-fit`` run lives, what it holds, when it is finished, and its config.

A run is the folder of its CSV logger, ``<save_dir>/<name>/<version>`` (``runs/default/version_<n>`` with
``silhouette-fit``'s default logger), holding LightningCLI's ``config.yaml``, the logger's ``metrics.csv``
and ``checkpoints/``. The ``metrics.csv`` header names every metric logged so far (the CSV logger rewrites
the file when a run starts or resumes), which gives the two states the tools ask about:

* *finished*: the run was tested, its header has ``test/*`` columns (``silhouette-sweep`` skips it);
* *trained*: it has ``train/*`` columns; without them the folder is a ``test``/``validate`` call's
  (``silhouette-report`` does not average the two kinds together).

The method and data set of a run are read from its ``config.yaml``: the (first) logger's ``name`` and
``data.dataset``. This module imports nothing heavy (YAML only): planning a sweep takes no time.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

# silhouette-fit's default logger (cli.fit), for configs that do not set one.
DEFAULT_SAVE_DIR = "runs"
DEFAULT_LOGGER_NAME = "default"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CHECKPOINTS_DIR = "checkpoints"


class ExperimentError(Exception):
    """A mistake in the command line, the configs or the run folders; the message says what to change."""


def version_folder(version: int | str) -> str:
    """The folder name of a logger ``version`` (as CSVLogger/TensorBoardLogger name it)."""
    return version if isinstance(version, str) else f"version_{version}"


def logger_version(folder: str) -> int | str:
    """The logger ``version`` that names ``folder`` (``version_3`` -> 3; other names as they are)."""
    number = folder.removeprefix("version_")
    return int(number) if folder.startswith("version_") and number.isdigit() else folder


def run_folder(save_dir: str | Path, name: str, version: int | str) -> Path:
    """Where the logger ``<save_dir>/<name>`` writes its run ``version``."""
    return Path(save_dir) / name / version_folder(version)


def read_config(path: Path) -> dict[str, Any]:
    """A YAML config as a dict ({} for an empty or non-mapping file); :class:`ExperimentError` if it is not
    YAML."""
    try:
        with path.open() as file:
            loaded = yaml.safe_load(file)
    except yaml.YAMLError as error:
        raise ExperimentError(f"Cannot read '{path}': {error}") from error
    return loaded if isinstance(loaded, dict) else {}


def run_config(folder: Path) -> dict[str, Any]:
    """The run's ``config.yaml``; {} for a folder without one."""
    path = folder / CONFIG_FILE
    return read_config(path) if path.is_file() else {}


def _first_logger(config: dict[str, Any]) -> dict[str, Any] | None:
    """The (first) logger of a LightningCLI config: ``{class_path, init_args: {save_dir, name, ...}}``."""
    logger = (config.get("trainer") or {}).get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    return logger if isinstance(logger, dict) else None


def logger_init_args(config: dict[str, Any]) -> dict[str, Any]:
    """The (first) logger's ``init_args``; {} without a logger."""
    logger = _first_logger(config)
    return (logger.get("init_args") or {}) if logger is not None else {}


def logger_name(config: dict[str, Any]) -> str | None:
    """The (first) logger's ``name``: the method of a run (``runs/<data set>/<method>/<version>``)."""
    logger = _first_logger(config)
    if logger is None:
        return None
    return (logger.get("init_args") or {}).get("name") or logger.get("name")


def read_metrics(folder: Path) -> list[dict[str, str]]:
    """The rows of the run's ``metrics.csv``."""
    with open(folder / METRICS_FILE, newline="") as file:
        return list(csv.DictReader(file))


def is_finished(folder: Path) -> bool:
    """Whether the run was tested: its ``metrics.csv`` has ``test/*`` columns."""
    metrics = folder / METRICS_FILE
    if not metrics.is_file():
        return False
    with metrics.open() as file:
        return "test/" in file.readline()


def was_trained(rows: Sequence[dict[str, str]]) -> bool:
    """Whether ``metrics.csv`` rows are a training run's (``train/*`` columns), not a test/validate call's."""
    return any(column.startswith("train/") for row in rows[:1] for column in row)


def find_run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """The folders holding a ``metrics.csv``: each path itself, or anywhere below it (sorted, unique)."""
    folders: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ExperimentError(f"'{path}' does not exist.")
        found = [path / METRICS_FILE] if (path / METRICS_FILE).is_file() else sorted(path.rglob(METRICS_FILE))
        if not found:
            raise ExperimentError(
                f"No {METRICS_FILE} found under '{path}' (expected CSV-logger run folders)."
            )
        for metrics_file in found:
            folders.setdefault(metrics_file.parent.resolve(), None)
    return list(folders)
