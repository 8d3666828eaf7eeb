"""opj.verify against the truth: exhaustive enumeration of every one-pixel change of small
greyscale images (every position, every grey value), a fine colour grid plus dense random
colours on RGB images, the committed digits-cnn against its exhaustive enumeration, and the
project's attacks (no image an attack fools is ever called robust); budgets give "unknown",
never "robust"; bad input is one line naming the argument."""

from __future__ import annotations

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import onepixel_jax as opj
from onepixel_jax import verification
from onepixel_jax.errors import UsageError

DN = ("NHWC", "HWIO", "NHWC")


def tiny_net(seed, channels=1, hidden=6, classes=4, size=6, scale=0.3):
    """A random conv-conv-maxpool-dense network on ``size x size x channels`` pixels."""
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    w1 = jax.random.normal(k[0], (3, 3, channels, hidden)) * scale
    b1 = jax.random.normal(k[1], (hidden,)) * 0.1
    w2 = jax.random.normal(k[2], (3, 3, hidden, hidden)) * scale
    dense = jax.random.normal(k[3], (hidden * (size // 2) ** 2, classes)) * scale

    def predict(x):
        x = (x - 120.0) / 60.0
        x = jax.nn.relu(lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=DN) + b1)
        x = jax.nn.relu(lax.conv_general_dilated(x, w2, (1, 1), "SAME", dimension_numbers=DN))
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return jax.nn.softmax(x.reshape(x.shape[0], -1) @ dense)

    return predict


@functools.cache
def _changes(fn):
    @jax.jit
    def at(image, colours, p):
        batch = jnp.repeat(image[None], len(colours), 0)
        batch = batch.at[:, p[0], p[1]].set(colours)
        return jnp.argmax(fn(batch), axis=1)

    return at


def every_change(fn, image, colours):
    """Predicted class of ``image`` with each position set to each of ``colours`` ``(m, C)``:
    ``(H * W, m)``."""
    h, w, _ = image.shape
    at = _changes(fn)
    img, cols = jnp.asarray(image, jnp.float32), jnp.asarray(colours, jnp.float32)
    return np.stack([np.asarray(at(img, cols, jnp.asarray(divmod(p, w)))) for p in range(h * w)])


def check_counterexample(fn, image, label, target, px):
    """The counterexample ``(1, 2 + C)`` flips the plain forward pass."""
    assert px.shape == (1, 2 + image.shape[-1]) and px.dtype == np.int32
    patched = np.array(image)
    patched[px[0, 0], px[0, 1]] = px[0, 2:]
    pred = int(np.argmax(fn(jnp.asarray(patched)[None])[0]))
    assert pred != label if target is None else pred == target


GREY = np.arange(256, dtype=np.float32)[:, None]


@pytest.fixture(scope="module")
def grey_case():
    """A tiny greyscale net, 10 images, their labels and targets, and the exhaustive truth:
    the predicted class of every image with every position set to every grey value."""
    fn = tiny_net(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 6, 6, 1)).astype(np.float32)
    labels = np.asarray(fn(jnp.asarray(images))).argmax(1)
    targets = (labels + 1 + rng.integers(0, 3, len(labels))) % 4
    preds = np.stack([every_change(fn, image, GREY) for image in images])  # (N, 36, 256)
    return fn, images, labels, targets, preds


@pytest.mark.parametrize("probe", ["corners", "none"])
def test_greyscale_matches_exhaustive_enumeration_untargeted_and_targeted(grey_case, probe):
    fn, images, labels, targets, preds = grey_case
    res = verification.verify(fn, images, labels, probe=probe)
    tgt = verification.verify(fn, images, labels, targets=targets, probe=probe)
    seen = set()
    for i, image in enumerate(images):
        truth = "vulnerable" if np.any(preds[i] != labels[i]) else "robust"
        assert res.status[i] == truth, (probe, i)
        reach = "vulnerable" if np.any(preds[i] == targets[i]) else "robust"
        assert tgt.status[i] == reach, (probe, i, "targeted")
        seen.update((truth, reach))
        for r, t in ((res, None), (tgt, targets[i])):
            if r.status[i] == "vulnerable":
                check_counterexample(fn, image, labels[i], t, r.counterexample[i])
            else:
                assert np.all(r.counterexample[i] == -1)
                assert r.proven[i] == 36 and r.positions[i] == 36
    assert seen == {"robust", "vulnerable"}  # both answers occur, so the test can fail
    if probe == "none":  # some robust answers needed splitting (the branch and bound ran)
        assert np.any((res.status == "robust") & (res.boxes > 36))


def test_rgb_against_a_fine_grid_and_dense_random_colours():
    fn = tiny_net(5, channels=3, scale=0.15)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (6, 6, 6, 3)).astype(np.float32)
    labels = np.asarray(fn(jnp.asarray(images))).argmax(1)
    levels = np.arange(0, 256, 51)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    colours = np.concatenate([grid, rng.integers(0, 256, (800, 3))]).astype(np.float32)
    for over in ("grid", "reals"):
        res = verification.verify(fn, images, labels, over=over, probe="none")
        assert res.counterexample.shape == (6, 1, 5)
        statuses = set(res.status.tolist())
        assert statuses <= {"robust", "vulnerable", "unknown"}
        assert {"robust", "vulnerable"} <= statuses
        for i, image in enumerate(images):
            if res.status[i] == "robust":
                assert np.all(every_change(fn, image, colours) == labels[i]), (over, i)
            elif res.status[i] == "vulnerable":
                check_counterexample(fn, image, labels[i], None, res.counterexample[i])


def test_budgets_give_unknown_never_robust(grey_case):
    fn, images, labels, _, _ = grey_case
    full = verification.verify(fn, images, labels, probe="none")
    robust = np.flatnonzero((full.status == "robust") & (full.boxes > 36))
    assert len(robust)  # robust images whose proof needed splitting
    cut = verification.verify(fn, images[robust], labels[robust], probe="none", max_boxes=8)
    assert set(cut.status.tolist()) == {"unknown"}
    assert np.all(cut.proven < 36)
    # reals: a minimum width no box can reach below
    wide = verification.verify(
        fn, images[robust], labels[robust], probe="none", over="reals", min_width=300.0
    )
    assert set(wide.status.tolist()) == {"unknown"}


def test_misclassified_images_and_hints(grey_case):
    fn, images, labels, _, _ = grey_case
    wrong = (labels + 1) % 4
    res = verification.verify(fn, images, wrong, probe="none")
    assert set(res.status.tolist()) == {"misclassified"}
    # a hint that flips the label is returned as the counterexample at once
    base = verification.verify(fn, images, labels)
    i = int(np.flatnonzero(base.status == "vulnerable")[0])
    hints = np.tile(base.counterexample, (1, 2, 1))
    hinted = verification.verify(fn, images, labels, hints=hints, probe="none")
    assert hinted.status[i] == "vulnerable" and hinted.boxes[i] == 0
    np.testing.assert_array_equal(hinted.counterexample[i], base.counterexample[i])


@pytest.fixture(scope="module")
def digits():
    fn, _ = opj.models.load("digits-cnn")
    images, labels, _ = opj.data.load("digits", "test")
    images = np.asarray(images, np.float32).reshape(-1, 8, 8, 1)[:12]
    return fn, images, np.asarray(labels)[:12]


def test_digits_cnn_matches_exhaustive_and_no_fooled_image_is_robust(digits):
    fn, images, labels = digits
    res = verification.verify(fn, images, labels)
    for i, image in enumerate(images):
        clean = int(np.argmax(fn(jnp.asarray(image)[None])[0]))
        if clean != labels[i]:
            assert res.status[i] == "misclassified"
            continue
        preds = every_change(fn, image, GREY)
        assert res.status[i] == ("vulnerable" if np.any(preds != labels[i]) else "robust")
        if res.status[i] == "vulnerable":
            check_counterexample(fn, image, labels[i], None, res.counterexample[i])
    ok = res.status != "misclassified"
    assert {"robust", "vulnerable"} <= set(res.status.tolist())
    # the paper's DE (a short run): whatever it fools is vulnerable here
    cfg = opj.AttackConfig(strategy="paper", popsize=100, max_iters=10, early_stop="success")
    out = opj.attack(jax.random.PRNGKey(0), fn, images[ok], labels[ok], cfg)
    fooled = np.asarray(out.success)
    assert fooled.any()
    assert np.all(res.status[ok][fooled] == "vulnerable")


def test_zoo_allconv_is_covered_by_the_bounds():
    """The CIFAR-10 AllConv traces and every operation has a bound rule (nothing compiled)."""
    fn, _ = opj.models.load("allconv-cifar10")
    model = verification.prepare_model(fn, (32, 32, 3))
    assert model.logits and model.num_classes == 10  # the softmax was dropped
    assert model.plan.steps  # the pixel's cone runs on windows


def test_bad_input_is_one_line_naming_the_argument():
    fn = tiny_net(0)
    images = np.zeros((2, 6, 6, 1), np.float32)
    labels = np.zeros(2, np.int64)
    cases = [
        (dict(images=images[0]), "images .* labels"),  # (6, 6, 1): six 6 x 1 images
        (dict(images=images + 300), "images"),
        (dict(labels=np.zeros(3, np.int64)), "labels"),
        (dict(labels=np.full(2, 9)), "labels"),
        (dict(targets=labels), "targets"),
        (dict(over="ints"), "over"),
        (dict(max_boxes=0), "max_boxes"),
        (dict(probe="all"), "probe"),
        (dict(hints=np.zeros((2, 1, 4))), "hints"),
    ]
    for change, name in cases:
        kw = dict(images=images, labels=labels) | change
        with pytest.raises(ValueError, match=name) as err:
            verification.verify(fn, kw.pop("images"), kw.pop("labels"), **kw)
        assert "\n" not in str(err.value)
    host = opj.targets.from_numpy(lambda x: np.full((len(x), 4), 0.25), num_classes=4)
    with pytest.raises(UsageError, match="host model"):
        verification.verify(host, images, labels)

    def thresholded(x):  # a comparison of the pixels: no bound rule
        return jax.nn.softmax(jnp.where(x > 100, 1.0, 0.0).reshape(len(x), -1)[:, :4], axis=1)

    with pytest.raises(UsageError, match="'gt'"):
        verification.verify(thresholded, images, labels)
    assert opj.verify is verification.verify


def test_cli_writes_a_run_folder_resumes_grows_and_compares(tmp_path, capsys, monkeypatch):
    from onepixel_jax.cli import main

    out = tmp_path / "verify"
    base = ["verify", "--model", "digits-cnn", "--dataset", "digits", "--quiet"]
    first = [*base, "--n-images", "3", "--out", str(out), "--no-report"]
    monkeypatch.setattr(sys, "argv", ["onepixel", *first])
    assert main(first) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["command"].startswith("onepixel verify ") and "--n-images 3" in info["command"]
    # a smaller --n-images resumes nothing and keeps the command that made the run
    smaller = [*base, "--n-images", "2", "--out", str(out), "--no-report"]
    monkeypatch.setattr(sys, "argv", ["onepixel", *smaller])
    assert main(smaller) == 0
    assert json.loads((out / "run.json").read_text())["command"] == info["command"]
    monkeypatch.setattr(sys, "argv", ["pytest"])
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["index"] for r in recs] == info["indices"] and len(recs) == 3
    # the same answers as the library on the same images
    fn, _ = opj.models.load("digits-cnn")
    images, _, _ = opj.data.load("digits", "test")
    x = np.asarray(images, np.float32)[info["indices"]].reshape(-1, 8, 8, 1)
    lib = verification.verify(fn, x, np.asarray(info["labels"]))
    assert [r["status"] for r in recs] == lib.status.tolist()
    for r, cx in zip(recs, lib.counterexample, strict=True):
        assert r["counterexample"] == (cx[0].tolist() if r["status"] == "vulnerable" else None)
    # grow: only the new image is verified; then compare with an attack run on the same images
    attack = tmp_path / "attack"
    assert main([*base, "--n-images", "4", "--out", str(out), "--no-report"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert (
        main(
            ["attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", "4"]
            + ["--popsize", "50", "--max-iters", "5", "--early-stop", "success"]
            + ["--out", str(attack), "--no-report", "--quiet"]
        )
        == 0
    )
    assert main([*base, "--n-images", "4", "--out", str(out), "--compare", str(attack)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (comp,) = summary["comparisons"]
    de = comp["methods"]["de"]
    counts = summary["counts"]
    assert de["attacked"] == 4 and de["fooled_robust"] == 0
    assert de["fooled"] + de["missed_vulnerable"] == counts["vulnerable"]
    assert "| de | 4 |" in (out / "report.md").read_text()
    # the report draws the vulnerable images with their counterexample pixel
    assert counts["vulnerable"] >= 1  # the 4th digits image is (see the records)
    assert (out / "counterexamples.png").stat().st_size > 0
    assert "](counterexamples.png)" in (out / "report.md").read_text()
    capsys.readouterr()
    # another setting is refused, and so is a bad argument: one line, exit code 2
    for bad in (["--over", "reals"], ["--max-boxes", "0"], ["--time-limit", "-1"]):
        assert main([*base, "--n-images", "4", "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and bad[0] in err, err
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    # a damaged record is refused with one line naming the file and the line
    lines = (out / "results.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"status":"', '"status":"maybe-')
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")
    assert main([*base, "--n-images", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "results.jsonl line 2" in err and "status" in err, err
