"""``silhouette-embed`` throughput: images per second of the embedding loop, and the time of each 2-D
projection and of the HTML page, for a folder of ``--images`` (default 10,000) JPEG files.

    python benchmarks/embed.py                                   # CPU, SmallCNN(32) at 32 px
    python benchmarks/embed.py --backbone resnet18 --image-size 224 --device cuda --num-workers 8

Steps (each timed once, one after the other, in this process):

1. write ``--images`` random 64x64 JPEGs into 10 class folders of a temporary folder (not timed);
2. train for one step on synthetic data with ``silhouette-fit`` to get a real checkpoint (not timed);
3. ``embed``: the embedding loop of ``silhouette-embed`` (decode, evaluation transform, batches of
   ``--batch-size``, forward) over all files: images per second;
4. the 2-D projections of those embeddings: PCA, t-SNE, UMAP (when ``umap-learn`` is installed; its
   one-off numba compilation, tens of seconds, is done on 200 points before the timing);
5. ``map.html``: thumbnails, sheets and the page (and its size).

The figures depend on the machine's load: run it on an otherwise idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from silhouette_lightning.callbacks.embedding_map import project_embeddings, umap_available
from silhouette_lightning.cli import main as fit_main
from silhouette_lightning.embed.checkpoint import load_trained_embedder
from silhouette_lightning.embed.folder import EmbeddingImages, scan_image_collection
from silhouette_lightning.embed.html_map import render_map_html
from silhouette_lightning.embed.loop import embed_images, resolve_device

BACKBONES = {
    "small": ["--model.backbone.class_path", "silhouette_lightning.models.SmallCNN",
              "--model.backbone.init_args.width", "32"],
    "resnet18": ["--model.backbone.class_path", "silhouette_lightning.models.TorchvisionBackbone",
                 "--model.backbone.init_args.name", "resnet18"],
}  # fmt: skip


def write_images(root: Path, count: int, classes: int = 10, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class {i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image {i:05d}.jpg", quality=90)


def train_checkpoint(root: Path, backbone: str, image_size: int) -> Path:
    fit_main(
        [
            "fit",
            "--data.dataset", "synthetic",
            "--data.image_size", str(image_size),
            "--data.batch_size", "8",
            "--data.options", '{"num_classes": 3, "samples_per_class": 8}',
            *BACKBONES[backbone],
            "--model.embedding_dim", "128",
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "1",
            "--trainer.limit_val_batches", "1",
            "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--trainer.logger.init_args.save_dir", str(root / "runs"),
        ]
    )  # fmt: skip
    return root / "runs" / "default" / "version_0" / "checkpoints" / "last.ckpt"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="small")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--skip-tsne", action="store_true", help="t-SNE of 10,000 points takes minutes on 2 cores"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root / "images", args.images)
        checkpoint = train_checkpoint(root, args.backbone, args.image_size)
        embedder = load_trained_embedder(checkpoint)
        collection = scan_image_collection(root / "images")
        images = EmbeddingImages(collection.paths, embedder.transform, embedder.image_size)
        # Warm-up (worker start, first CUDA kernels) on one batch, not timed.
        first = EmbeddingImages(collection.paths[: args.batch_size], embedder.transform, embedder.image_size)
        embed_images(embedder.model, first, device=device, batch_size=args.batch_size, progress=False)
        result, seconds = timed(
            embed_images, embedder.model, images, "embeddings", device, args.batch_size, args.num_workers,
            progress=False,
        )  # fmt: skip
        rows.append(("embed", seconds, f"{len(result.kept) / seconds:,.0f} images/s"))
        methods = ["pca"] + ([] if args.skip_tsne else ["tsne"]) + (["umap"] if umap_available() else [])
        coords = None
        if "umap" in methods:
            project_embeddings(result.vectors[:200], "umap")  # numba compiles UMAP on first use: not timed
        for method in methods:
            (coords, used), seconds = timed(project_embeddings, result.vectors, method)
            rows.append(
                (f"projection {used}", seconds, f"{len(result.vectors):,} x {result.vectors.shape[1]}")
            )
        html, seconds = timed(
            render_map_html, coords=coords, paths=collection.paths, shown_paths=collection.paths,
            labels=np.asarray(collection.labels), class_names=collection.class_names,
        )  # fmt: skip
        rows.append(("map.html", seconds, f"{len(html.encode()) / 1e6:.1f} MB"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"\n{args.images:,} images, {args.backbone} at {args.image_size} px, batch {args.batch_size}, "
        f"{args.num_workers} workers, {device} ({where}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, UMAP {'installed' if umap_available() else 'not installed'}"
    )
    print(f"| {'step':<18} | {'seconds':>8} | {'':<22} |")
    print(f"|{'-' * 20}|{'-' * 10}|{'-' * 24}|")
    for name, seconds, note in rows:
        print(f"| {name:<18} | {seconds:8.2f} | {note:<22} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps([dict(step=n, seconds=s, note=t) for n, s, t in rows], indent=2)
        )


if __name__ == "__main__":
    main()
