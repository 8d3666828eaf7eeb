"""The report's figures (all of the package's attack-report matplotlib code).

Each function draws one figure into a PNG file; the backend is switched to Agg on first use,
so no display is needed.

- :func:`plot_class_pairs`: successes per (original, reached) class pair (paper Figs. 6, 12)
- :func:`plot_target_counts`: images per number of target classes reached (Figs. 5, 11)
- :func:`plot_per_class`: successes per class as original and as target (Figs. 8, 14)
- :func:`plot_fitness`: best fitness per generation, per attack and mean (Fig. 10)
- :func:`plot_examples`: clean and adversarial images side by side, changed pixels marked
- :func:`plot_robust_accuracy`: the L0 curve, robust accuracy against d (:mod:`.l0`)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

MAX_CURVES = 50
MAX_EXAMPLES = 8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_names(info: dict) -> list[str]:
    """The run's class names, or the class numbers when they are missing."""
    names = info.get("class_names") or []
    k = int(info["num_classes"])
    return list(names) if len(names) == k else [str(i) for i in range(k)]


def rebuild_adversarial(original: np.ndarray, pixels: list) -> np.ndarray:
    """The adversarial image from its clean image (H, W, C) and a record's pixel rows
    ``[row, col, value per channel]``."""
    adv = np.array(original, copy=True)
    for row in pixels:
        r, c, values = int(row[0]), int(row[1]), row[2:]
        adv[r, c] = np.asarray(values, adv.dtype).reshape(adv[r, c].shape)
    return adv


def plot_class_pairs(pairs: np.ndarray, names: list[str], path: Path, title: str) -> None:
    plt = _pyplot()

    pairs = np.asarray(pairs)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    im = ax.imshow(pairs, cmap="Reds")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if pairs[i, j]:
                    dark = pairs[i, j] > 0.6 * pairs.max()
                    ax.text(
                        j,
                        i,
                        str(pairs[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )
    ax.set_xticks(range(k), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("reached class")
    ax.set_ylabel("original class")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_target_counts(hist: np.ndarray, path: Path, title: str) -> None:
    plt = _pyplot()

    hist = np.asarray(hist, np.float64)
    pct = 100.0 * hist / max(hist.sum(), 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(np.arange(len(hist)), pct, color="0.35")
    for i, v in enumerate(pct):
        if v:
            ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(hist)))
    ax.set_xlabel("number of target classes reached")
    ax.set_ylabel("% of images")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class(as_original, as_target, names: list[str], path: Path, title: str) -> None:
    plt = _pyplot()

    k = len(names)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * k, 3.5))
    ax.bar(x - 0.2, as_original, 0.4, color="black", label="as original")
    ax.bar(x + 0.2, as_target, 0.4, color="0.6", label="as target")
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("successful attacks")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fitness(curves: np.ndarray, mean: np.ndarray, path: Path, ylabel: str, title: str):
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for c in curves[:MAX_CURVES]:
        ax.plot(c, color="tab:blue", alpha=0.35, linewidth=0.8)
    ax.plot(mean, "r--", linewidth=2, label=f"mean of {len(curves)}")
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(records, images_by_index, names, path: Path, title: str) -> int:
    """Grid of (clean, adversarial) pairs; returns the number of examples drawn."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    chosen = [r for r in records if r["success"] and r["index"] in images_by_index]
    chosen += [r for r in records if not r["success"] and r["index"] in images_by_index]
    chosen = chosen[:MAX_EXAMPLES]
    if not chosen:
        return 0
    cols = 4  # two examples per row
    rows = math.ceil(len(chosen) / 2)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for n, rec in enumerate(chosen):
        orig = images_by_index[rec["index"]]
        adv = rebuild_adversarial(orig, rec["pixels"])
        label, pred = rec["label"], rec["predicted"]
        p0 = rec["original_probs"][label]
        p1 = rec["probs"][pred]
        for j, (img, text) in enumerate(
            (
                (orig, f"{names[label]} ({100 * p0:.0f}%)"),
                (adv, f"-> {names[pred]} ({100 * p1:.0f}%){'' if rec['success'] else ', failed'}"),
            )
        ):
            ax = axes[n // 2, 2 * (n % 2) + j]
            shown = img[..., 0] if img.shape[-1] == 1 else img
            ax.imshow(
                shown,
                cmap="gray" if img.shape[-1] == 1 else None,
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            colour = "red" if (j == 1 and rec["success"]) else "black"
            ax.set_title(text, fontsize=8, color=colour)
            half = max(0.5, img.shape[0] / 20)  # the pixel itself on tiny images
            for row in rec["pixels"]:
                r, c = int(row[0]), int(row[1])
                ax.add_patch(
                    Rectangle(
                        (c - half, r - half), 2 * half, 2 * half, fill=False, ec="lime", lw=1.2
                    )
                )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(chosen)


# --------------------------------------------------------------------------------------
# The L0 robustness curve (onepixel_jax.experiments.l0)


def plot_robust_accuracy(curves: dict, path: Path, title: str) -> None:
    """Robust accuracy (%) against the number of pixels ``d``, one line per entry of
    ``curves`` (``{name: rows of l0.l0_summary}``), with Wilson 95 % bands."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, rows in curves.items():
        rows = [r for r in rows if r["images"]]
        if not rows:
            continue
        d = np.array([r["d"] for r in rows])
        acc = 100 * np.array([r["robust"] for r in rows])
        lo = 100 * np.array([r["robust_low"] for r in rows])
        hi = 100 * np.array([r["robust_high"] for r in rows])
        (line,) = ax.plot(d, acc, marker="o", label=f"{name} (n={rows[0]['images']})")
        ax.fill_between(d, lo, hi, color=line.get_color(), alpha=0.12)
    ax.set_xscale("log")
    ticks = sorted({r["d"] for rows in curves.values() for r in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("perturbed pixels d")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
