"""PNG figures of a fooling run: the best image per class and the confidence curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confidence_label(p: float) -> str:
    """A confidence as a percentage with enough digits to tell 99.99 % from 99.989 %."""
    if not np.isfinite(p):
        return "empty"
    return f"{100.0 * p:.4f} %"


def save_best_grid(
    path: str | Path,
    images: np.ndarray,
    confidences: Sequence[float],
    class_names: Sequence[str],
    title: str = "",
    columns: int = 5,
) -> None:
    """Grid of ``images`` ``(K, H, W, C)`` (0-255), each titled with its class and confidence."""
    plt = _pyplot()
    k = images.shape[0]
    cols = min(columns, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= k:
            continue
        img = np.clip(images[i], 0, 255).astype(np.uint8)
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{class_names[i]}\n{confidence_label(float(confidences[i]))}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_confidence_curves(
    path: str | Path,
    curve: np.ndarray,
    class_names: Sequence[str],
    threshold: float,
    title: str = "",
) -> None:
    """Best confidence per class over generations (``curve`` ``(G, K)``, row g = generation g).

    Left: the confidence itself; right: ``1 - confidence`` on a log scale, where the
    threshold (e.g. 99.99 %) is a horizontal line.
    """
    plt = _pyplot()
    gens = np.arange(curve.shape[0])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("tab10" if curve.shape[1] <= 10 else "tab20")
    for k in range(curve.shape[1]):
        c = cmap(k % cmap.N)
        ax1.plot(gens, curve[:, k], color=c, lw=1.2, label=str(class_names[k]))
        gap = np.clip(1.0 - curve[:, k], 1e-8, 1.0)
        ax2.plot(gens, gap, color=c, lw=1.2)
    ax1.set_xlabel("generation")
    ax1.set_ylabel("best confidence")
    ax1.set_ylim(-0.02, 1.02)
    ax1.legend(fontsize=7, ncol=2, loc="lower right")
    ax2.axhline(1.0 - threshold, color="k", ls="--", lw=1, label=f"{100 * threshold:g} %")
    ax2.set_yscale("log")
    ax2.set_xlabel("generation")
    ax2.set_ylabel("1 - best confidence (log; 1e-8 floor)")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
