"""``map.html``: one self-contained page with every image as a thumbnail at its 2-D position.

The thumbnails are packed into JPEG sheets (``columns`` x ``columns`` cells of ``thumb`` pixels each)
embedded as base64 data URIs, so the page needs no network and no other file, and 10,000 images are a
few sheets (a few MB) rather than 10,000 separate images. The page's script (vanilla JavaScript on a
canvas, in ``map_template.html``) draws, zooms, pans, shows the file and label on hover and filters by
file name or label.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from matplotlib.colors import to_hex
from PIL import Image, ImageOps

from silhouette_lightning.callbacks.embedding_map import class_colors
from silhouette_lightning.data.sources.image_folder import UnreadableImageError, load_rgb_image

THUMB = 48  # pixels per thumbnail cell
COLUMNS = 64  # cells per sheet row: a sheet is at most 3072 x 3072 pixels (4096 thumbnails)
_BACKGROUND = (235, 235, 235)


def thumbnail(path: str, size: int = THUMB) -> Image.Image:
    """The image at ``path`` scaled to fit ``size`` x ``size``, centred on a grey square."""
    cell = Image.new("RGB", (size, size), _BACKGROUND)
    try:
        image = load_rgb_image(path)
    except UnreadableImageError:
        return cell
    # Up or down: small images (digits, icons) would otherwise be specks in their cell.
    image = ImageOps.contain(image, (size, size), Image.Resampling.BILINEAR)
    cell.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return cell


def thumbnail_sheets(paths: Sequence[str], size: int = THUMB, columns: int = COLUMNS) -> list[str]:
    """JPEG data URIs of sheets holding the thumbnails of ``paths`` in order, ``columns**2`` per sheet."""
    per_sheet = columns * columns
    sheets = []
    for start in range(0, len(paths), per_sheet):
        chunk = paths[start : start + per_sheet]
        rows = -(-len(chunk) // columns)
        sheet = Image.new("RGB", (columns * size, rows * size), _BACKGROUND)
        for k, path in enumerate(chunk):
            sheet.paste(thumbnail(path, size), ((k % columns) * size, (k // columns) * size))
        buffer = io.BytesIO()
        sheet.save(buffer, format="JPEG", quality=85)
        sheets.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return sheets


def render_map_html(
    coords: np.ndarray,
    paths: Sequence[str],
    shown_paths: Sequence[str],
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    title: str = "Embedding map",
    size: int = THUMB,
    columns: int = COLUMNS,
) -> str:
    """The page for ``coords`` ``[N, 2]`` of the image files ``paths`` (read for the thumbnails);
    ``shown_paths`` are the names shown on hover and matched by the filter (e.g. relative to the folder).
    """
    n = len(paths)
    if coords.shape != (n, 2) or len(shown_paths) != n:
        raise ValueError(f"coords {coords.shape}, {n} paths and {len(shown_paths)} shown paths do not match.")
    data: dict = {
        "title": title,
        "x": [round(float(v), 5) for v in coords[:, 0]],
        "y": [round(float(v), 5) for v in coords[:, 1]],
        "path": [str(p) for p in shown_paths],
        "thumb": size,
        "columns": columns,
        "sheet": [i // (columns * columns) for i in range(n)],
        "cell": [i % (columns * columns) for i in range(n)],
        "sheets": thumbnail_sheets(paths, size, columns),
        "classes": None,
    }
    if labels is not None:
        names = (
            list(class_names) if class_names is not None else [str(k) for k in range(int(labels.max()) + 1)]
        )
        data["classes"] = names
        data["label"] = [int(v) for v in labels]
        data["colors"] = [to_hex(c) for c in class_colors(len(names))]
    # "</" inside the JSON would end the <script> element early (a file named "</script>.png").
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    template = resources.files("silhouette_lightning.embed").joinpath("map_template.html").read_text("utf-8")
    return template.replace("__TITLE__", _escape(title)).replace("__DATA__", payload)


def write_map_html(path: Path, **kwargs) -> Path:
    path.write_text(render_map_html(**kwargs), encoding="utf-8")
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
