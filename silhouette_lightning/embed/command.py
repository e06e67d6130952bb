"""The ``silhouette-embed`` command: a trained checkpoint + a folder of images -> embeddings and a map.

    silhouette-embed runs/quickstart/version_0/checkpoints/last.ckpt my_images/ --output my_map/

Also ``python -m silhouette_lightning.embed ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from silhouette_lightning.callbacks.embedding_map import PROJECTIONS, project_embeddings, umap_available
from silhouette_lightning.embed import outputs
from silhouette_lightning.embed.checkpoint import load_trained_embedder
from silhouette_lightning.embed.folder import EmbeddingImages, scan_image_collection
from silhouette_lightning.embed.html_map import write_map_html
from silhouette_lightning.embed.loop import REPRESENTATIONS, embed_images, resolve_device
from silhouette_lightning.errors import ConfigError

_SHOWN_SKIPPED = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="silhouette-embed",
        description="Embed every image under FOLDER with a trained checkpoint and map them in 2-D: "
        "embeddings.npz, embeddings.csv, map.png, map.html (and metrics.json when FOLDER has class folders).",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by silhouette-fit")
    parser.add_argument(
        "folder",
        help="images to embed: FOLDER/<class>/<image> (labelled), or images anywhere under FOLDER "
        "(unlabelled)",
    )
    parser.add_argument("--output", "-o", required=True, help="folder for the results (created)")
    parser.add_argument(
        "--representation",
        choices=REPRESENTATIONS,
        default=None,
        help="the head's embeddings or the backbone's features (default: the one the run evaluated, "
        "model.eval_output)",
    )
    parser.add_argument(
        "--projection",
        choices=PROJECTIONS,
        default="auto",
        help="2-D map of >2-D embeddings: auto = UMAP if installed (pip install '.[umap]'), else t-SNE",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument(
        "--config",
        default=None,
        help="the run's config.yaml, for the image size and normalisation (default: the one in the "
        "checkpoint's run folder)",
    )
    parser.add_argument("--no-labels", action="store_true", help="ignore class folders: embed unlabelled")
    parser.add_argument("--no-html", action="store_true", help="skip map.html")
    parser.add_argument("--seed", type=int, default=0, help="seed of the projection")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace, console: Console) -> dict:
    """Do the work of one command; returns a summary (paths written, counts, metrics)."""
    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output '{output}' is a file: give a folder for the results.")
    collection = scan_image_collection(args.folder, labels=not args.no_labels)
    device = resolve_device(args.device)
    embedder = load_trained_embedder(args.checkpoint, args.config)
    representation = args.representation or embedder.eval_output
    what = f"{len(collection.class_names)} classes" if collection.labelled else "no labels"
    console.print(
        f"Embedding {len(collection.paths)} images ({what}) from {collection.root} with {args.checkpoint}: "
        f"{representation}, {embedder.image_size} px, on {device}."
    )
    images = EmbeddingImages(collection.paths, embedder.transform, embedder.image_size)
    started = time.perf_counter()
    result = embed_images(
        embedder.model,
        images,
        representation,
        device,
        args.batch_size,
        args.num_workers,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - started
    if result.skipped:
        shown = ", ".join(result.skipped[:_SHOWN_SKIPPED])
        more = (
            f" and {len(result.skipped) - _SHOWN_SKIPPED} more"
            if len(result.skipped) > _SHOWN_SKIPPED
            else ""
        )
        # One line for all of them, on stderr next to the progress bar (not one per file).
        print(
            f"silhouette-embed: warning: skipped {len(result.skipped)} unreadable image file(s) (corrupt, "
            f"truncated or not an image): {shown}{more}. Every other image is embedded.",
            file=sys.stderr,
        )
    if len(result.kept) == 0:
        raise ConfigError(
            f"None of the {len(collection.paths)} image files under '{collection.root}' could be read."
        )
    paths = [collection.paths[i] for i in result.kept]
    labels = None if collection.labels is None else np.asarray(collection.labels)[result.kept]
    output.mkdir(parents=True, exist_ok=True)
    for name in outputs.ALL:
        # A rerun into the same folder must not leave, say, an older metrics.json next to new embeddings.
        (output / name).unlink(missing_ok=True)
    coords, used = project_embeddings(result.vectors, args.projection, args.seed)
    relative = [_relative(p, collection.root) for p in paths]
    npz, table = outputs.write_arrays(
        output, result.vectors, relative, coords, labels, collection.class_names
    )
    png = outputs.write_png(output, coords, used, labels, collection.class_names)
    written = [npz, table, png]
    if not args.no_html:
        written.append(
            write_map_html(
                output / outputs.HTML,
                coords=coords,
                paths=paths,
                shown_paths=relative,
                labels=labels,
                class_names=collection.class_names,
                title=f"{collection.root.name or collection.root}: {len(paths)} images ({used})",
            )
        )
    summary = {
        "checkpoint": str(args.checkpoint),
        "folder": str(collection.root),
        "representation": representation,
        "projection": used,
        "images": len(paths),
        "skipped": result.skipped,
        "images_per_second": len(collection.paths) / seconds if seconds > 0 else None,
    }
    if labels is not None:
        if len(np.unique(labels)) >= 2:
            metrics = outputs.embedding_metrics(result.vectors, labels)
            written.append(outputs.write_metrics(output, metrics, summary))
            summary["metrics"] = metrics
            _print_metrics(console, metrics, representation)
        else:
            console.print("[yellow]One class only: no embedding metrics (they compare classes).")
    summary["written"] = [str(p) for p in written]
    console.print("Written:\n" + "\n".join(f"  {p}" for p in written))
    return summary


def _print_metrics(console: Console, metrics: dict[str, float], representation: str) -> None:
    table = Table(title=f"Embedding metrics ({representation})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``silhouette-embed``; a user mistake prints one line and exits with status 2."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=False, highlight=False)
    try:
        run(args, console)
    except ConfigError as error:
        print(f"silhouette-embed: error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


__all__ = ["build_parser", "main", "run", "umap_available"]
