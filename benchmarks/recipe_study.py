"""The recipe study of issue 11 (docs/results.md, "Recipe study (issue 11)"): seven methods and the Soft
Silhouette's options on digits, the CIFAR-10 subset and Omniglot, on seen and on unseen classes.

    python benchmarks/recipe_study.py prepare [digits cifar10 omniglot] [--archive ...]
    python benchmarks/recipe_study.py run [--data ...] [--part methods unseen options] [--seeds 0 1 2]
        [--option-seeds 0] [--folds ALPHABET ...] [--only ce softmax ...] [--option-sides unseen seen]
        [--runs runs/recipe] [--dry-run]
    python benchmarks/recipe_study.py report [--data ...]     # the Markdown tables
    python benchmarks/recipe_study.py diagnose RUN_FOLDER ... [--split val|test]   # soft vs exact silhouette

Data sets (DATASETS): ``digits`` (bundled; configs/data/digits.yaml + configs/study/digits_cpu.yaml),
``cifar10`` (data/cifar10_5k, made by cifar10_study.py's prepare; configs/study/cifar10_cpu.yaml) and
``omniglot`` (data/omniglot_small1; configs/study/omniglot_cpu.yaml).

Parts (every run: ``model.eval_output [embeddings, features]``, so both representations are measured):
  methods  the seven METHODS as configs/method/ships them, trained and tested on all classes (top-1 and the
           embedding metrics of seen classes); ``--seeds`` (default 0 1 2). runs/recipe/<data>/<method>/.
  unseen   the same methods trained on the seen classes, tested on every image of held-out ones
           (``data.unseen_test all``) with few-shot accuracy (``model.fewshot``): digits and CIFAR-10 hold
           out 5 classes drawn with data.seed 0 (the same split as configs/unseen/digits_5_5.yaml and
           cifar10_study's unseen part), 5-way 1-shot only;
           Omniglot holds out one whole alphabet per fold, rotating over ``--folds`` (default all 5;
           every alphabet has >= 22 characters, so 5-way and 20-way 1-shot).
           runs/recipe/<data>_unseen[_<alphabet>]/.
  options  the two recipes shipped before the study ended, both with a two-layer head, and one change each
           from them (``options``): the softmax recipe (relative softmax soft minimum, SOFTMAX) and its
           changes, and ``hard`` (hard minimum, HARD) with its changes as ``hard_<change>``; the shipped
           recipe (hard minimum, one-layer head) is the methods part's ce_silhouette. Seen and unseen
           classes (Omniglot: the first of ``--folds``); ``--option-seeds`` (default 0).
           runs/recipe/<data>_options[_unseen...]/ce_silhouette_<option>/.

Within a part the runs go seed by seed (every run of seed 0 first). Every run is resumable and skipped once
tested (benchmarks/study_plan.py); ``--dry-run`` prints the commands (``# finished:`` before done ones).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from study_plan import REPO, epoch_times, markdown_table, method_args, report_rows, study_run, time_table

from silhouette_lightning.experiments.sweep import Run

RUNS = Path("runs/recipe")
METHODS = ("ce", "ce_silhouette", "silhouette", "supcon", "hybrid", "proxy_anchor", "triplet")
RECOMMENDED = "ce_silhouette"
EVAL_OUTPUTS = ("--model.eval_output", json.dumps(["embeddings", "features"]))
OMNIGLOT_ARCHIVE = REPO.parent / "shared" / "data" / "omniglot-small1.tar.gz"
OMNIGLOT = Path("data/omniglot_small1")
# Omniglot class folders are <alphabet>__<character>.
ALPHABET_SEPARATOR = "__"


@dataclass(frozen=True)
class Option:
    """One change to a recipe: Soft Silhouette init arguments and/or other CLI arguments."""

    silhouette: dict = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A data set of the study: its configs, how to prepare it, its unseen-class splits and the few-shot
    settings those splits can serve, and its per-data-set option values."""

    configs: tuple[str, ...]
    # Fold label -> data.unseen_classes value (a count drawn with data.seed, or class names).
    folds: Callable[[], dict[str, int | list[str]]]
    fewshot: dict
    # Balanced batches: samples per class (batch_size / m classes must fit the seen classes).
    samples_per_class: int
    memory_size: int
    prepare: Callable[[Path | None], None] | None = None


# The recipes the options were measured against, both earlier versions of CE + Silhouette with the
# two-layer head: first the relative softmax soft minimum (SOFTMAX), then the hard minimum (HARD). The study
# moved the default to the hard minimum and then to a one-layer head (docs/results.md), which is
# configs/method/ce_silhouette.yaml now; the options stay one change from the recipe they were measured on.
SOFTMAX = {"soft_min": "softmax", "temperature": 0.1, "temperature_scale": "relative"}
HARD: dict = {}  # configs/method/ce_silhouette.yaml's term as it is
TWO_LAYER_HEAD = ("--model.head_layers", "2")


def _changes(data: Dataset) -> dict[str, Option]:
    """The changes that apply to either soft minimum: input, head depth, sampler, memory, weight."""
    return {
        "input_features": Option({"input": "features"}),
        "head1": Option(args=("--model.head_layers", "1")),
        "balanced": Option(
            args=("--data.sampler", "balanced", "--data.samples_per_class", str(data.samples_per_class)),
        ),
        "memory": Option({"memory_size": data.memory_size}),
        "w0.3": Option({"weight": 0.3}),
        "w3.0": Option({"weight": 3.0}),
    }


def options(data: Dataset) -> dict[str, Option]:
    """The silhouette options that matter, each one change from a recipe with the two-layer head.

    From the softmax recipe (SOFTMAX: relative softmax soft minimum, temperature 0.1, weight 1.0, input
    embeddings, 2 head layers, random batches, no memory), itself the option ``softmax``: every change and
    the temperatures. From the hard recipe (HARD: the same with the hard minimum), itself the option
    ``hard``, as ``hard_<change>``: every change except the temperatures, which the hard minimum does not
    have, and ``head1``: the hard minimum with one head layer is the shipped recipe (the methods part's
    ``ce_silhouette``). A change's arguments come after TWO_LAYER_HEAD, and the last value given wins.
    """
    changes = _changes(data)

    def changed(recipe: dict, change: Option) -> Option:
        return Option({**recipe, **change.silhouette}, (*TWO_LAYER_HEAD, *change.args))

    softmax = {label: changed(SOFTMAX, c) for label, c in changes.items()}
    temperatures = {f"T{t}": changed(SOFTMAX, Option({"temperature": t})) for t in (0.05, 0.2, 0.5)}
    hard = {f"hard_{label}": changed(HARD, c) for label, c in changes.items() if label != "head1"}
    unchanged = Option()
    return {
        "softmax": changed(SOFTMAX, unchanged),
        **softmax,
        **temperatures,
        "hard": changed(HARD, unchanged),
        **hard,
    }


def omniglot_classes(root: Path | None = None, archive: Path | None = None) -> list[str]:
    """The class folder names, from the extracted folder (default OMNIGLOT), else from the archive's
    member names (default OMNIGLOT_ARCHIVE)."""
    root, archive = root or OMNIGLOT, archive or OMNIGLOT_ARCHIVE
    if root.is_dir():
        return sorted(p.name for p in root.iterdir() if p.is_dir())
    if not archive.is_file():
        raise SystemExit(f"Neither {root} nor {archive} exists: run `prepare omniglot --archive PATH` first.")
    with tarfile.open(archive) as tar:
        names = {
            Path(m.name).parts[1] for m in tar.getmembers() if m.isdir() and len(Path(m.name).parts) == 2
        }
    return sorted(names)


def alphabet_folds(classes: Sequence[str]) -> dict[str, list[str]]:
    """Alphabet -> its class names (sorted): each fold holds one whole alphabet out as unseen classes."""
    folds: dict[str, list[str]] = {}
    for name in sorted(classes):
        alphabet, separator, _ = name.partition(ALPHABET_SEPARATOR)
        if not separator:
            raise ValueError(
                f"Omniglot class folder {name!r} is not <alphabet>{ALPHABET_SEPARATOR}<character>."
            )
        folds.setdefault(alphabet, []).append(name)
    return folds


def prepare_omniglot(archive: Path | None) -> None:
    """Extract the archive into data/ and list the alphabets and their character counts."""
    if not OMNIGLOT.is_dir():
        source = archive or OMNIGLOT_ARCHIVE
        print(f"extracting {source} -> data/")
        with tarfile.open(source) as tar:
            tar.extractall("data", filter="data")
    for alphabet, names in alphabet_folds(omniglot_classes()).items():
        drawings = sorted({sum(1 for _ in (OMNIGLOT / n).iterdir()) for n in names})
        print(f"{alphabet}: {len(names)} characters, {'/'.join(map(str, drawings))} drawings each")


def prepare_cifar10(archive: Path | None) -> None:
    import cifar10_study

    cifar10_study.prepare(archive or REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz")


DATASETS: dict[str, Dataset] = {
    "digits": Dataset(
        configs=("configs/data/digits.yaml", "configs/study/digits_cpu.yaml"),
        folds=lambda: {"": 5},
        fewshot={"ways": [5], "shots": [1]},
        samples_per_class=16,  # 64 / 16 = 4 classes per batch; the unseen split trains on 5
        memory_size=512,
    ),
    "cifar10": Dataset(
        configs=("configs/study/cifar10_cpu.yaml",),
        folds=lambda: {"": 5},
        fewshot={"ways": [5], "shots": [1]},
        samples_per_class=32,  # 128 / 32 = 4 classes per batch
        memory_size=1024,
        prepare=prepare_cifar10,
    ),
    "omniglot": Dataset(
        configs=("configs/study/omniglot_cpu.yaml",),
        folds=lambda: alphabet_folds(omniglot_classes()),
        # Every drawing of an unseen character (data.unseen_test all): 1 support, the other 19 are queries.
        fewshot={"ways": [5, 20], "shots": [1], "queries": None},
        samples_per_class=4,  # 128 / 4 = 32 classes per batch
        memory_size=512,
        prepare=prepare_omniglot,
    ),
}


def _run(name: str, data: Dataset, folder: str, run_name: str, seed: int, args: Sequence[str]) -> Run:
    config, *more = data.configs
    extra = [a for c in more for a in ("--config", c)]
    return study_run(config, name, RUNS / folder, run_name, seed, (*extra, *args, *EVAL_OUTPUTS))


def _unseen_args(data: Dataset, unseen: int | list[str]) -> tuple[str, ...]:
    """Hold ``unseen`` out and test on every image of it (``data.unseen_test all``: 4-7x the test
    images of the test split alone, so less noisy metrics); few-shot episodes of every ``ways`` the
    held-out classes can fill (an alphabet with fewer than 20 characters would get 5-way only; every
    alphabet of the archive has 22+)."""
    count = unseen if isinstance(unseen, int) else len(unseen)
    value = str(unseen) if isinstance(unseen, int) else json.dumps(unseen)
    ways = [n for n in data.fewshot["ways"] if n <= count]
    fewshot = ("--model.fewshot", json.dumps({**data.fewshot, "ways": ways})) if ways else ()
    return ("--data.unseen_classes", value, "--data.unseen_test", "all", *fewshot)


def _fold_folder(name: str, label: str) -> str:
    return f"{name}_unseen" + (f"_{label}" if label else "")


def plan(
    datasets: Sequence[str],
    parts: Sequence[str],
    seeds: Sequence[int],
    option_seeds: Sequence[int],
    folds: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    option_sides: Sequence[str] = ("unseen", "seen"),
) -> list[Run]:
    """Every run of the requested data sets and parts, in order (data set, part, seed, method/option);
    with ``only``, just the runs of those methods (``ce``) or options (``softmax``); the options part on
    ``option_sides`` (unseen and/or seen classes)."""
    planned: list[Run] = []
    for name in datasets:
        data = DATASETS[name]
        all_folds = data.folds() if "unseen" in parts or "options" in parts else {}
        chosen = {k: v for k, v in all_folds.items() if not k or folds is None}
        chosen.update({k: all_folds[k] for k in folds or () if k in all_folds})  # in --folds' order
        if folds is not None and all_folds and name == "omniglot" and set(folds) - set(chosen):
            raise SystemExit(f"--folds {sorted(set(folds) - set(chosen))}: not alphabets {sorted(all_folds)}")
        if "methods" in parts:
            for seed in seeds:
                for method in METHODS:
                    planned.append(_run(name, data, name, method, seed, method_args(method)))
        if "unseen" in parts:
            # Seed 0 of every fold first: the rotation is the costly part (see docs/results.md).
            for seed in seeds:
                for label, unseen in chosen.items():
                    for method in METHODS:
                        args = (*method_args(method), *_unseen_args(data, unseen))
                        planned.append(_run(name, data, _fold_folder(name, label), method, seed, args))
        if "options" in parts:
            first_label, first_unseen = next(iter(chosen.items()))
            # The unseen side first: which representation transfers is the open question.
            splits = {
                "unseen": (f"{_fold_folder(name, first_label).replace('_unseen', '_options_unseen')}",
                           _unseen_args(data, first_unseen)),
                "seen": (f"{name}_options", ()),
            }  # fmt: skip
            for seed in option_seeds:
                for folder, split_args in (splits[side] for side in option_sides):
                    for label, option in options(data).items():
                        args = (*method_args(RECOMMENDED, option.silhouette), *option.args, *split_args)
                        planned.append(_run(name, data, folder, f"{RECOMMENDED}_{label}", seed, args))
    if only:
        prefix = f"{RECOMMENDED}_"
        planned = [r for r in planned if r.method in only or r.method.removeprefix(prefix) in only]
    return planned


REPRESENTATIONS = ("embeddings", "features")
SHORT = {"embeddings": "emb", "features": "feat"}
EMBEDDING_METRICS = {"silhouette": "silhouette", "precision_at_1": "P@1", "map_at_r": "MAP@R", "nmi": "NMI"}


def _columns(representation_metrics: dict[str, str]) -> tuple[list[str], list[str]]:
    columns, headers = [], []
    for representation in REPRESENTATIONS:
        for metric, title in representation_metrics.items():
            columns.append(f"test/{representation}/{metric}")
            headers.append(f"{SHORT[representation]} {title}")
    return columns, headers


def _fewshot_metrics(data: Dataset) -> dict[str, str]:
    return {
        f"fewshot_{n}way_{k}shot": f"{n}-way {k}-shot"
        for n in data.fewshot["ways"]
        for k in data.fewshot["shots"]
    }


def _table(folders: Sequence[Path], output: Path, columns: list[str], headers: list[str], title: str) -> list:
    folders = [f for f in folders if f.exists()]
    if not folders:
        return []
    rows = report_rows(folders, output, "test/embeddings/precision_at_1")
    print(f"\n### {title} (full table: {output}/report.md)\n")
    print(markdown_table(rows, columns, headers))
    return rows


def _fold_mean_table(per_fold: list[list[dict]], columns: list[str], headers: list[str]) -> None:
    """Per method, the mean and std over folds of the per-fold means (each fold's mean over its seeds)."""
    values: dict[str, dict[str, list[float]]] = {}
    for rows in per_fold:
        for row in rows:
            for column in columns:
                if row.get(f"{column} mean"):
                    values.setdefault(row["method"], {}).setdefault(column, []).append(
                        float(row[f"{column} mean"])
                    )
    if not values:
        return
    print(f"\n### mean over held-out alphabets ({len(per_fold)} folds; ± = std over folds)\n")
    print("| method | " + " | ".join(headers) + " |\n|---|" + "---:|" * len(columns))
    for method, by_column in values.items():
        cells = [_fold_cell(by_column.get(column, []), len(per_fold)) for column in columns]
        print(f"| {method} | " + " | ".join(cells) + " |")


def _fold_cell(values: list[float], folds: int) -> str:
    if not values:
        return "–"
    text = f"{statistics.mean(values):.3f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.3f}"
    return text + ("" if len(values) == folds else f" ({len(values)} folds)")


# What the paired table subtracts: CE's backbone features, CE's best representation on unseen classes.
PAIRED_REFERENCE = ("ce", "features")


def _paired_cell(differences: list[float]) -> str:
    if not differences:
        return "–"
    ahead = sum(d > 0 for d in differences)
    spread = f" [{min(differences):+.3f}, {max(differences):+.3f}]" if len(differences) > 1 else ""
    return f"{statistics.mean(differences):+.3f}{spread}, {ahead}/{len(differences)}"


def paired_rows(
    folds: dict[str, dict[str, dict]], metrics: Sequence[str]
) -> list[tuple[str, str, list[str]]]:
    """``(method, representation, cells)`` for every method that ran on every fold: per metric, the
    method's fold mean minus CE's features' on the same fold, as mean [smallest, largest] over the folds
    and the number of folds it was ahead. ``folds``: fold -> method -> report row (``<column> mean``)."""
    reference, reference_output = PAIRED_REFERENCE
    folds = {label: rows for label, rows in folds.items() if reference in rows}
    if not folds:
        return []
    methods = [m for m in next(iter(folds.values())) if all(m in rows for rows in folds.values())]
    table = []
    for method in methods:
        for output in REPRESENTATIONS:
            cells = []
            for metric in metrics:
                column, base = f"test/{output}/{metric} mean", f"test/{reference_output}/{metric} mean"
                differences = [
                    float(rows[method][column]) - float(rows[reference][base])
                    for rows in folds.values()
                    if rows[method].get(column) and rows[reference].get(base)
                ]
                cells.append(_paired_cell(differences))
            table.append((method, output, cells))
    return table


def _paired_table(folds: dict[str, dict[str, dict]], metrics: dict[str, str]) -> None:
    rows = paired_rows(folds, list(metrics))
    if not rows:
        return
    reference, output = PAIRED_REFERENCE
    print(
        f"\n### paired against {reference}'s {output} on the same held-out alphabet ({len(folds)} folds: "
        "mean [smallest, largest], folds ahead)\n"
    )
    print(
        "| run | representation | " + " | ".join(metrics.values()) + " |\n|---|---|" + "---|" * len(metrics)
    )
    for method, output, cells in rows:
        print(f"| {method} | {output} | " + " | ".join(cells) + " |")


def report(datasets: Sequence[str]) -> None:
    """Per data set: seen classes (top-1, and per representation silhouette, P@1, MAP@R, NMI), unseen
    classes (the same embedding metrics and the few-shot accuracies; Omniglot per held-out alphabet and
    averaged over them), the options (with the shipped CE + Silhouette as the reference row), and the
    training-epoch time per method relative to CE's."""
    for name in datasets:
        data = DATASETS[name]
        print(f"\n## {name}")
        seen_columns, seen_headers = _columns(EMBEDDING_METRICS)
        seen_columns, seen_headers = ["test/acc", *seen_columns], ["top-1", *seen_headers]
        unseen_columns, unseen_headers = _columns({**EMBEDDING_METRICS, **_fewshot_metrics(data)})
        out = RUNS / "report"
        _table([RUNS / name], out / name, seen_columns, seen_headers, f"{name}: seen classes")
        fold_folders = sorted(RUNS.glob(f"{name}_unseen*"))
        per_fold = [
            _table([f], out / f.name, unseen_columns, unseen_headers, f"{f.name}: unseen classes")
            for f in fold_folders
        ]
        if len(fold_folders) > 1:
            _fold_mean_table([rows for rows in per_fold if rows], unseen_columns, unseen_headers)
        for folder in sorted(RUNS.glob(f"{name}_options*")):
            reference = RUNS / folder.name.replace("_options", "") / RECOMMENDED
            unseen = "_unseen" in folder.name
            columns, headers = (unseen_columns, unseen_headers) if unseen else (seen_columns, seen_headers)
            title = (
                f"{folder.name}: one change each from the softmax or (hard_*) the hard recipe, both with "
                f"two head layers; the shipped {RECOMMENDED} (hard minimum, one head layer) is its own row"
            )
            _table([folder, reference], out / folder.name, columns, headers, title)
        if len(fold_folders) > 1:  # the methods and the options that ran on every held-out alphabet
            pairs = zip(fold_folders, per_fold, strict=True)
            folds = {f.name: {row["method"]: row for row in rows} for f, rows in pairs}
            for f in fold_folders:
                options_folder = RUNS / f.name.replace("_unseen", "_options_unseen")
                if options_folder.exists():
                    output = out / f"{options_folder.name}_paired"  # not the options table's folder
                    rows = report_rows(options_folder, output, "test/embeddings/precision_at_1")
                    folds[f.name].update({row["method"]: row for row in rows})
            paired = {"precision_at_1": "P@1", "silhouette": "silhouette", **_fewshot_metrics(data)}
            _paired_table(folds, paired)
        times = epoch_times(list((RUNS / name).glob("*/seed_*/metrics.csv")))
        if any(times.values()):
            print(f"\n### {name}: cost per step\n\n" + time_table(times))


def diagnose(folders: Sequence[Path], split: str, temperature: float = 0.1) -> None:
    """Soft against exact silhouette of each run's head embedding (L2-normalised, as the loss sees it) on
    ``split`` of the run's own data (its config.yaml; ``val`` = seen classes, ``test`` = the unseen ones in
    an unseen-class run): the exact silhouette (hard minimum over whole classes), the soft one (relative
    softmax, ``temperature``) on the same points, and, per anchor, the softmax weight of its nearest
    other class and the number of other classes. A soft value far above the exact one means the soft
    minimum sits far above the nearest class: raising it then need not separate the classes."""
    import torch
    import yaml

    from silhouette_lightning.data import ImageDataModule
    from silhouette_lightning.losses import silhouette_terms
    from silhouette_lightning.module import EmbeddingModule

    print(
        f"| run | split | images | classes | exact silhouette | soft s (relative softmax, τ {temperature}) "
        "| weight of the nearest class |\n|---|---|---:|---:|---:|---:|---:|"
    )
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text())["data"]
        data = ImageDataModule(**{**config, "batch_size": 512})
        dataset = data.split_dataset(split)
        checkpoint = sorted((folder / "checkpoints").glob("best*.ckpt"))[-1]
        model = EmbeddingModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
        loader = torch.utils.data.DataLoader(dataset, batch_size=512)
        with torch.no_grad():
            batches = [(model.encode(images).get("embeddings")[:, 0], labels) for images, labels in loader]
        points = torch.nn.functional.normalize(torch.cat([b[0] for b in batches]).double(), dim=1)
        labels = torch.cat([b[1] for b in batches])
        hard = silhouette_terms(points, labels, soft_min="hard")
        soft = silhouette_terms(
            points, labels, soft_min="softmax", temperature=temperature, temperature_scale="relative"
        )
        # The nearest class's softmax weight, from the class distances the soft minimum saw.
        classes = torch.unique(labels)
        distances = torch.cdist(points, points)
        means = torch.stack([distances[:, labels == c].mean(dim=1) for c in classes], dim=1)  # [N, C]
        others = labels[:, None] != classes[None, :]
        row_mean = (means * others).sum(1, keepdim=True) / others.sum(1, keepdim=True)
        logits = (-means / (temperature * row_mean)).masked_fill(~others, float("-inf"))
        nearest = torch.softmax(logits, dim=1).amax(dim=1)
        print(
            f"| {folder} | {split} | {len(labels)} | {len(classes)} | {hard.s.mean():.3f} "
            f"| {soft.s.mean():.3f} | {nearest.mean():.3f} |"
        )


def main() -> int:
    global RUNS
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    names = list(DATASETS)
    prep = sub.add_parser("prepare")
    prep.add_argument("data", nargs="*", default=[n for n in names if DATASETS[n].prepare], choices=names)
    prep.add_argument(
        "--archive", type=Path, help="the archive (one data set at a time); default ../shared/data/"
    )
    run = sub.add_parser("run")
    run.add_argument("--data", nargs="+", default=names, choices=names)
    parts = ["methods", "unseen", "options"]
    run.add_argument("--part", nargs="+", default=parts, choices=parts)
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--option-seeds", nargs="+", type=int, default=[0])
    run.add_argument("--folds", nargs="+", help="Omniglot: the held-out alphabets (default: all 5)")
    run.add_argument("--only", nargs="+", help="just these methods (e.g. ce) and options (e.g. softmax)")
    run.add_argument(
        "--option-sides", nargs="+", choices=["unseen", "seen"], default=["unseen", "seen"],
        help="the options part on unseen and/or seen classes",
    )  # fmt: skip
    run.add_argument("--dry-run", action="store_true")
    rep = sub.add_parser("report")
    rep.add_argument("--data", nargs="+", default=names, choices=names)
    diag = sub.add_parser("diagnose", help="soft vs exact silhouette of run folders' head embeddings")
    diag.add_argument("folders", nargs="+", type=Path, help="run folders (<run>/<method>/seed_<s>)")
    diag.add_argument("--split", choices=["val", "test"], default="val", help="val: seen classes")
    for command in (run, rep):
        command.add_argument("--runs", type=Path, default=RUNS, help="the study's run folder")
    args = parser.parse_args()
    RUNS = getattr(args, "runs", RUNS)
    if args.command == "prepare":
        for name in args.data:
            if DATASETS[name].prepare is None:
                print(f"{name}: bundled, nothing to prepare")
            else:
                DATASETS[name].prepare(args.archive)
    elif args.command == "run":
        from study_plan import run_all

        planned = plan(
            args.data, args.part, args.seeds, args.option_seeds, args.folds, args.only, args.option_sides
        )
        return run_all(planned, args.dry_run)
    elif args.command == "diagnose":
        diagnose(args.folders, args.split)
    else:
        report(args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
