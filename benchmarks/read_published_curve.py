"""Read the CornerSearch paper's CIFAR-10 robust-accuracy curve off its published figure.

Croce & Hein, "Sparse and Imperceivable Adversarial Attacks" (ICCV 2019), publish their CIFAR-10
L0 curve (robust accuracy against the number of changed pixels k, for CornerSearch and four
other attacks) as a PNG in the authors' repository. No table of those numbers is published, so
this script reads them off the figure, reproducibly:

    git clone https://github.com/fra31/sparse-imperceivable-attacks
    git -C sparse-imperceivable-attacks show \
        17b1c466db1863cb7d0321ef099585d59a581ef0:images/pl_robacc_cifar10_correct_3.png > cs.png
    python benchmarks/read_published_curve.py cs.png \
        --out benchmarks/results/search/published/cornersearch-cifar10.json

How: the plot box is found as the longest dark rows and columns (its frame), which fixes the
axes (k from 0 to 50 across, accuracy from 0 to 100 % up). The CornerSearch curve is the pure
blue line; at each k the reading is the middle of the blue pixels of that column (the legend's
area excluded). The figure's red markers (PGD_0, drawn at known k) check the k axis. Readings
are of a 560 x 420 raster: one pixel is 0.32 accuracy points and 0.11 of a pixel in k, and the
line is 3 pixels wide, so a reading carries about +-1 point; where the line is steep (k <= 3)
the column spans several points and the spread is recorded with each reading.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

EXPECTED_SHA256 = "45187a3039b32283dbf9d23aa540d89342d8badbe94b35c18f5134a038089f31"
KS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)


def _longest_run(line: np.ndarray) -> tuple[int, int]:
    """Start and length of the longest unbroken run of True."""
    best = (0, 0)
    start = run = 0
    for i, v in enumerate(line):
        if v:
            start = i if run == 0 else start
            run += 1
            if run > best[1]:
                best = (start, run)
        else:
            run = 0
    return best


def _frame(dark: np.ndarray) -> tuple[int, int, int, int]:
    """Left, right, top and bottom pixel of the plot box.

    The left and bottom axes are crossed by the coloured curves, so they are not found as
    unbroken lines; the top edge (the longest unbroken dark row) gives left and right, and the
    right edge (the longest unbroken dark column) gives top and bottom.
    """
    rows = [_longest_run(r) for r in dark]
    cols = [_longest_run(c) for c in dark.T]
    longest_row = max(n for _, n in rows)
    longest_col = max(n for _, n in cols)
    top = min(i for i, (_, n) in enumerate(rows) if n >= 0.95 * longest_row)
    right = max(i for i, (_, n) in enumerate(cols) if n >= 0.95 * longest_col)
    left = rows[top][0]
    bottom = cols[right][0] + cols[right][1] - 1
    return left, right, top, bottom


def read(png: Path) -> dict:
    from PIL import Image

    raw = png.read_bytes()
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    dark = rgb.sum(2) < 200
    left, right, top, bottom = _frame(dark)
    k_per_px = 50.0 / (right - left)
    pct_per_px = 100.0 / (bottom - top)

    def k_of(x: float) -> float:
        return (x - left) * k_per_px

    def acc_of(y: float) -> float:
        return (bottom - y) * pct_per_px

    blue = (rgb[:, :, 2] > 180) & (rgb[:, :, 0] < 80) & (rgb[:, :, 1] < 80)
    red = (rgb[:, :, 0] > 200) & (rgb[:, :, 1] < 60) & (rgb[:, :, 2] < 60)
    # the legend box (upper right): its blue sample line is not the curve
    legend = np.zeros_like(blue)
    legend[top : top + int(0.6 * (bottom - top)), left + int(0.35 * (right - left)) :] = True
    curve = blue & ~legend

    readings = []
    for k in KS:
        x = int(round(left + k / k_per_px))
        # where a marker hides the line, read the nearest columns beside it (at most 6 px,
        # 0.7 in k, away: the line is nearly flat there)
        for dx in (0, -3, 3, -4, 4, -5, 5, -6, 6):
            ys = np.nonzero(curve[:, max(x + dx - 1, 0) : x + dx + 2].any(1))[0]
            if len(ys):
                break
        if len(ys) == 0:
            readings.append({"k": k, "robust_accuracy_pct": None, "note": "line hidden"})
            continue
        reading = {
            "k": k,
            # the line lies on the k axis where it reaches 0: no reading below it
            "robust_accuracy_pct": max(0.0, round(acc_of(float(ys.mean())), 1)),
            "column_spans_pct": [
                max(0.0, round(acc_of(float(ys.max())), 1)),
                max(0.0, round(acc_of(float(ys.min())), 1)),
            ],
        }
        if dx:
            reading["read_at_k"] = round(k_of(x + dx), 2)
        readings.append(reading)

    from scipy import ndimage

    labels, n = ndimage.label(red & ~legend)
    markers = sorted(
        (round(k_of(cx), 2), round(acc_of(cy), 1))
        for cy, cx in ndimage.center_of_mass(red, labels, range(1, n + 1))
        if top < cy < bottom
    )
    # every curve starts at the network's clean accuracy (k = 0): the first columns of the
    # box, all colours together
    coloured = (np.abs(rgb - rgb.mean(2, keepdims=True)).sum(2) > 150) | dark
    start = np.nonzero(coloured[top + 3 : bottom - 3, left + 2])[0] + top + 3
    return {
        "source": {
            "paper": "Croce & Hein, Sparse and Imperceivable Adversarial Attacks, ICCV 2019",
            "repository": "https://github.com/fra31/sparse-imperceivable-attacks",
            "commit": "17b1c466db1863cb7d0321ef099585d59a581ef0",
            "path": "images/pl_robacc_cifar10_correct_3.png",
            "sha256": hashlib.sha256(raw).hexdigest(),
            "sha256_expected": EXPECTED_SHA256,
        },
        "calibration": {
            "plot_box_px": {"left": left, "right": right, "top": top, "bottom": bottom},
            "k_per_px": k_per_px,
            "accuracy_pct_per_px": pct_per_px,
        },
        "curve": (
            "CornerSearch (blue): robust accuracy in % of the test points"
            " (misclassified ones count as not robust)"
        ),
        "k0_clean_accuracy_pct": round(acc_of(float(start.min())), 1) if len(start) else None,
        "readings": readings,
        "check_markers_pgd0": [{"k": k, "acc_pct": a} for k, a in markers],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("png", type=Path, help="the figure, images/pl_robacc_cifar10_correct_3.png")
    ap.add_argument("--out", type=Path, help="write the readings here as JSON")
    args = ap.parse_args(argv)
    if not args.png.is_file():
        print(f"read_published_curve: png: no such file {args.png}", file=sys.stderr)
        return 2
    result = read(args.png)
    if result["source"]["sha256"] != EXPECTED_SHA256:
        print(
            "read_published_curve: png: not the published figure (SHA-256 differs)", file=sys.stderr
        )
        return 2
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
