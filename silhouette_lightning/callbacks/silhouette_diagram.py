"""The silhouette diagram of Rousseeuw (1987): per class, the samples' silhouettes as sorted bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from silhouette_lightning.callbacks.embedding_map import _as_numpy, class_colors, class_name


def plot_silhouette_diagram(
    silhouettes: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Per class (in label order, top to bottom) the silhouette values ``[N]`` sorted in decreasing order
    as horizontal bars, classes stacked with a gap, and a dashed line at the mean silhouette.

    Raises:
        ValueError: mismatched sizes, no samples, or fewer than two classes (the silhouette is undefined).
    """
    s = _as_numpy(silhouettes).astype(np.float64).reshape(-1)
    y = _as_numpy(labels).astype(np.int64).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"{s.shape[0]} silhouette values but {y.shape[0]} labels.")
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"The silhouette diagram needs at least 2 classes, got {len(present)}.")
    colors = class_colors(len(present))
    fig = Figure(figsize=(7.0, max(4.0, min(12.0, 0.3 * len(present) + 3.0))), dpi=100)
    ax = fig.add_subplot()
    gap = max(2, len(s) // 100)
    top = 0
    ticks, tick_labels = [], []
    # Bars from the top down: the first class sits at the top of the plot.
    for color, label in zip(colors, present, strict=True):
        values = np.sort(s[y == label])[::-1]
        rows = np.arange(top, top + len(values))
        ax.fill_betweenx(-rows, 0, values, step="mid", color=color, linewidth=0, alpha=0.9)
        if len(values) == 1:
            ax.barh(-rows, values, height=1.0, color=color, linewidth=0)
        ticks.append(-(top + (len(values) - 1) / 2))
        tick_labels.append(f"{class_name(int(label), class_names)} ({values.mean():.2f})")
        top += len(values) + gap
    mean = float(s.mean())
    ax.axvline(mean, color="red", linestyle="--", linewidth=1.2, label=f"mean {mean:.3f}")
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(min(-0.1, float(s.min()) - 0.05), 1.0)
    ax.set_ylim(-(top - gap) - 1, 1)
    if len(present) <= 40:
        ax.set_yticks(ticks)
        ax.set_yticklabels(tick_labels, fontsize="small")
    else:
        ax.set_yticks([])
    ax.set_xlabel("silhouette value")
    ax.set_ylabel("class (mean silhouette)")
    ax.set_title(f"{title or 'Silhouette diagram'}: {len(s)} samples, mean {mean:.3f}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig
