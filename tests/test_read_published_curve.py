"""The figure reader recovers a known curve from a drawn plot of the published figure's layout."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "read_published_curve.py"


def _load():
    spec = importlib.util.spec_from_file_location("read_published_curve", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _truth(k):
    # a steep start and a long tail, like an L0 curve; 90 % at k = 0
    return 90.0 * np.exp(-0.55 * k) + 1.5 * np.exp(-0.05 * k)


def _figure(path, left=73, right=507, top=48, bottom=364):
    img = Image.new("RGB", (560, 420), "white")
    d = ImageDraw.Draw(img)
    ks = np.linspace(0, 50, 2000)
    xs = left + ks / 50 * (right - left)
    # another curve from the same start, crossing the left axis as in the published figure
    other = 91.5 * np.exp(-0.02 * ks)
    d.line(
        [(x, bottom - a / 100 * (bottom - top)) for x, a in zip(xs, other, strict=True)],
        fill=(0, 200, 0),
        width=3,
    )
    d.line(
        [(x, bottom - a / 100 * (bottom - top)) for x, a in zip(xs, _truth(ks), strict=True)],
        fill=(0, 0, 255),
        width=3,
    )
    d.rectangle([left, top, right, bottom], outline=(0, 0, 0), width=1)
    # red markers at known k (the x axis check)
    for k in (1, 2, 3, 6, 10):
        x = left + k / 50 * (right - left)
        y = bottom - 50 / 100 * (bottom - top)
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(255, 0, 0))
    img.save(path)


def test_reads_a_known_curve(tmp_path):
    png = tmp_path / "fig.png"
    _figure(png)
    out = _load().read(png)
    box = out["calibration"]["plot_box_px"]
    assert box == {"left": 73, "right": 507, "top": 48, "bottom": 364}
    assert out["k0_clean_accuracy_pct"] == pytest.approx(91.5, abs=1.5)
    for r in out["readings"]:
        want = _truth(r.get("read_at_k", r["k"]))
        # steep columns span several points; the reading is their middle
        tol = 1.0 + (r["column_spans_pct"][1] - r["column_spans_pct"][0]) / 2
        assert r["robust_accuracy_pct"] == pytest.approx(want, abs=tol), r
    assert [m["k"] for m in out["check_markers_pgd0"]] == pytest.approx([1, 2, 3, 6, 10], abs=0.15)


def test_refuses_a_missing_or_other_file(tmp_path, capsys):
    mod = _load()
    assert mod.main([str(tmp_path / "absent.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    png = tmp_path / "fig.png"
    _figure(png)
    assert mod.main([str(png)]) == 2
    assert "not the published figure" in capsys.readouterr().err
