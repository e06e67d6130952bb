"""Our CPU study on CIFAR-10 (docs/results.md): every run, in order, and the tables.

    python benchmarks/cifar10_study.py prepare          # data/cifar10_5k from ../shared/data (or --archive)
    python benchmarks/cifar10_study.py run [--part main unseen ...] [--seeds 0 1 2] [--dry-run]
    python benchmarks/cifar10_study.py report           # the Markdown tables (silhouette-report + timings)

Parts:
  main    CE, CE + Silhouette, SupCon (2 views), hybrid; 3 seeds; configs/study/cifar10_cpu.yaml. The
          silhouette terms of CE + Silhouette and of the hybrid use the softmax soft minimum with the
          *absolute* temperature (the loss's default when the study ran; set explicitly here, the
          default is now the hard minimum).
  unseen  CE and CE + Silhouette (absolute) trained on 5 classes (drawn with data.seed 0), test = the
          other 5.
  sweep   CE + Silhouette (absolute), seed 0: silhouette temperature 0.05 / 0.2 / 0.5 and weight 0.3 / 3.0
          (the main runs use temperature 0.1, weight 1.0).
  relative  CE + Silhouette as configs/method/ce_silhouette.yaml shipped it then: the softmax soft
          minimum with temperature_scale "relative" (the temperature scales with the anchor's
          distances; see docs/results.md for why), 3 seeds, seen and unseen classes; its runs are named
          ce_silhouette_relative.
  relative_sweep  the sweep's five settings with temperature_scale "relative", seed 0.

Every run is ``silhouette-fit fit ... --ckpt_path last`` with its own logger version ``seed_<s>``, run one
after the other by ``silhouette-sweep``'s machinery, so rerunning the script continues a killed run and
skips finished ones (those whose metrics.csv has test metrics); the shared pieces are in
benchmarks/study_plan.py (benchmarks/recipe_study.py uses them too).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

from study_plan import (
    REPO,
    SILHOUETTE_TERM,
    epoch_times,
    markdown_table,
    method_args,
    report_rows,
    study_run,
    time_table,
)
from study_plan import run_all as run_plan

from silhouette_lightning.experiments.sweep import Run

CONFIG = "configs/study/cifar10_cpu.yaml"
RUNS = Path("runs/study")
DATA = Path("data/cifar10_5k")
# Images per class in the subset: the first 500 training and 1,000 test JPEGs of every class, a budget
# that lets the whole study run in about an hour on 2 CPU cores.
PER_CLASS = {"train": 500, "test": 1000}

MAIN_METHODS = ("ce", "ce_silhouette", "supcon", "hybrid")
UNSEEN_METHODS = ("ce", "ce_silhouette")
# Silhouette term settings of the sweep (ce_silhouette.yaml's defaults are temperature 0.1, weight 1.0).
SWEEP = {
    "T0.05": {"temperature": 0.05},
    "T0.2": {"temperature": 0.2},
    "T0.5": {"temperature": 0.5},
    "w0.3": {"weight": 0.3},
    "w3.0": {"weight": 3.0},
}
# The study's silhouette runs without "relative" in their name used the softmax soft minimum with the
# absolute temperature, then the default; the runs with "relative" used the softmax with the relative
# one. Both are set explicitly so that they still reproduce (the default is now the hard minimum).
ABSOLUTE = {"soft_min": "softmax", "temperature_scale": "absolute"}
RELATIVE = {"soft_min": "softmax", "temperature_scale": "relative"}


def _ce_silhouette_losses(silhouette_args: dict[str, float]) -> str:
    """``--model.losses`` value: CE + Silhouette with the given silhouette arguments (a list replaces the
    config's list as a whole; jsonargparse cannot override one item of it)."""
    terms = [
        {"class_path": "silhouette_lightning.terms.CrossEntropyTerm"},
        {"class_path": SILHOUETTE_TERM, "init_args": silhouette_args},
    ]
    return json.dumps(terms)


def _study_run(save_dir: Path, name: str, seed: int, args: tuple[str, ...]) -> Run:
    """One run of the study in ``<save_dir>/<name>/seed_<seed>``."""
    return study_run(CONFIG, "cifar10_5k", save_dir, name, seed, args)


def _method_args(method: str) -> tuple[str, ...]:
    """A method config as the study ran it: its Soft Silhouette term (if any) with the softmax soft
    minimum and the absolute temperature, the other terms as the config sets them."""
    return method_args(method, ABSOLUTE)


def runs(parts: list[str], seeds: list[int]) -> list[Run]:
    planned: list[Run] = []
    if "main" in parts:
        for seed in seeds:
            for method in MAIN_METHODS:
                planned.append(_study_run(RUNS / "cifar10", method, seed, _method_args(method)))
    if "unseen" in parts:
        for seed in seeds:
            for method in UNSEEN_METHODS:
                args = (*_method_args(method), "--data.unseen_classes", "5")
                planned.append(_study_run(RUNS / "cifar10_unseen", method, seed, args))
    if "sweep" in parts:
        for label, silhouette_args in SWEEP.items():
            args = (
                "--config", "configs/method/ce_silhouette.yaml",
                "--model.losses", _ce_silhouette_losses({**silhouette_args, **ABSOLUTE}),
            )  # fmt: skip
            planned.append(_study_run(RUNS / "cifar10_sweep", f"ce_silhouette_{label}", 0, args))
    if "relative" in parts:
        for save_dir, extra in (
            (RUNS / "cifar10", ()),
            (RUNS / "cifar10_unseen", ("--data.unseen_classes", "5")),
        ):
            for seed in seeds:
                args = (*method_args("ce_silhouette", RELATIVE), *extra)  # relative softmax, as shipped then
                planned.append(_study_run(save_dir, "ce_silhouette_relative", seed, args))
    if "relative_sweep" in parts:
        for label, silhouette_args in SWEEP.items():
            args = (
                "--config", "configs/method/ce_silhouette.yaml",
                "--model.losses", _ce_silhouette_losses({**silhouette_args, **RELATIVE}),
            )  # fmt: skip
            planned.append(_study_run(RUNS / "cifar10_sweep", f"ce_silhouette_relative_{label}", 0, args))
    return planned


def prepare(archive: Path) -> None:
    """Extract the JPEG archive into data/ and link the first PER_CLASS[split] images of every class."""
    full = Path("data/cifar10")
    if not full.is_dir():
        print(f"extracting {archive} -> data/")
        with tarfile.open(archive) as tar:
            tar.extractall("data", filter="data")
    for split in ("train", "test"):
        for class_dir in sorted((full / split).iterdir()):
            out = DATA / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for image in sorted(class_dir.iterdir())[: PER_CLASS[split]]:
                link = out / image.name
                if not link.exists():
                    link.symlink_to(image.resolve())
    print(f"{DATA}: {sum(1 for _ in DATA.rglob('*.jpg'))} images")


def run_all(parts: list[str], seeds: list[int], dry_run: bool) -> int:
    return run_plan(runs(parts, seeds), dry_run)


COLUMNS = ("test/acc", "test/silhouette", "test/precision_at_1", "test/nmi", "test/recall_at_5")


def report() -> None:
    """Per part, the main test metrics (mean ± std over seeds, from silhouette-report's CSV), then the mean
    training-epoch time per method and its ratio to CE's."""
    for part in ("cifar10", "cifar10_unseen", "cifar10_sweep"):
        folder = RUNS / part
        if not folder.is_dir():
            continue
        output = RUNS / "report" / part
        # The chart: precision@1, since unseen-class runs have no accuracy.
        rows = report_rows(folder, output, "test/precision_at_1")
        columns = [c for c in COLUMNS if any(row.get(f"{c} mean") for row in rows)]
        print(f"\n### {part} (full table: {output}/report.md)\n")
        print(markdown_table(rows, columns, columns))
    times = epoch_times(list((RUNS / "cifar10").glob("*/seed_*/metrics.csv")))
    if times:
        print("\n" + time_table(times))


def diagnose(folders: list[Path], samples: int = 2000) -> None:
    """Why a run's embedding scores what it scores: on a seeded subset of the test images, the exact
    silhouette, the softmax soft one (absolute and relative temperature), the nearest and mean distance to the
    other classes and the spread of the embedding (mean distance between any two samples)."""
    import torch

    from silhouette_lightning.data import ImageDataModule
    from silhouette_lightning.losses import silhouette_terms
    from silhouette_lightning.metrics import silhouette_score
    from silhouette_lightning.module import EmbeddingModule

    data = ImageDataModule(
        dataset="imagefolder",
        root=str(DATA),
        image_size=32,
        batch_size=500,
        val_fraction=0.1,
        test_fraction=0.0,
    )
    data.setup("test")
    test = data.split_dataset("test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:samples].tolist()
    images = torch.stack([test[i][0] for i in order])
    labels = torch.tensor([int(test[i][1]) for i in order])
    print(
        "| run | exact silhouette | soft s (absolute T) | soft s (relative T) | a (own class) | nearest other"
        " class | mean other class | mean pair distance |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for folder in folders:
        checkpoint = sorted((folder / "checkpoints").glob("best*.ckpt"))[-1]
        model = EmbeddingModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
        with torch.no_grad():
            outputs = model.encode(images)
            points = torch.nn.functional.normalize(outputs.get(model.eval_output)[:, 0].double(), dim=1)
            hard = silhouette_terms(points, labels, soft_min="hard")
            soft = silhouette_terms(points, labels, **ABSOLUTE, temperature=0.1)
            relative = silhouette_terms(points, labels, **RELATIVE, temperature=0.1)
            # Mean distance to every other class = the softmax soft minimum with an infinite temperature.
            mean_other = silhouette_terms(points, labels, **ABSOLUTE, temperature=1e9).b
            exact = float(silhouette_score(points, labels))
            spread = torch.cdist(points, points).mean()
        print(
            f"| {folder} | {exact:.3f} | {soft.s.mean():.3f} | {relative.s.mean():.3f} | {hard.a.mean():.3f} "
            f"| {hard.b.mean():.3f} | {mean_other.mean():.3f} | {spread:.3f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("--archive", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz")
    run = sub.add_parser("run")
    parts = ["main", "unseen", "sweep", "relative", "relative_sweep"]
    run.add_argument("--part", nargs="+", default=parts, choices=parts)
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--dry-run", action="store_true")
    sub.add_parser("report")
    diag = sub.add_parser("diagnose", help="distances and soft vs exact silhouette of run folders")
    diag.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.archive)
    elif args.command == "run":
        return run_all(args.part, args.seeds, args.dry_run)
    elif args.command == "diagnose":
        diagnose(args.folders)
    else:
        report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
