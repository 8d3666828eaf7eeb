"""The paper's tables from run folders (onepixel_jax.experiments.reproduction, onepixel
reproduce): the seeded random image selection, the cells' run folders (resume, growth,
restore from committed records), the Section V architectures, and the tables against an
independent NumPy computation of the same figures from the committed-style records."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil

import jax
import numpy as np
import pytest

import onepixel_jax as opj
from onepixel_jax import data, models
from onepixel_jax.cli import main
from onepixel_jax.errors import UsageError
from onepixel_jax.experiments import reproduction as rep
from onepixel_jax.experiments import run_folder
from onepixel_jax.experiments.selection import (
    seeded_order,
    select_images,
    select_random_images,
)
from onepixel_jax.zoo import architectures


@pytest.fixture(scope="module")
def digits():
    predict_fn, card = models.load("digits-cnn")
    images, labels, names = data.load("digits", "test")
    return predict_fn, card, np.asarray(images), np.asarray(labels), names


# --------------------------------------------------------------------------------------
# Seeded random selection


def test_seeded_random_selection_same_seed_same_images_correct_only_and_growth(digits):
    predict_fn, _, images, labels, _ = digits
    idx, lab, probs = select_random_images(predict_fn, images, labels, 40, seed=3)
    again, _, _ = select_random_images(predict_fn, images, labels, 40, seed=3)
    np.testing.assert_array_equal(idx, again)
    # correctly classified only, attacked with the true label, probabilities of those images
    pred = np.asarray(predict_fn(images[idx].astype(np.float32))).argmax(1)
    np.testing.assert_array_equal(pred, labels[idx])
    np.testing.assert_array_equal(lab, labels[idx])
    np.testing.assert_allclose(probs, np.asarray(predict_fn(images[idx].astype(np.float32))))
    # random, not the dataset order: the first-N rule picks other images
    first, _, _ = select_images(predict_fn, images, labels, 40, False)
    assert len(set(idx.tolist()) - set(first.tolist())) > 10
    assert len(set(idx.tolist())) == 40
    # growth keeps the first images; another seed draws others
    grown, _, _ = select_random_images(predict_fn, images, labels, 60, seed=3)
    np.testing.assert_array_equal(grown[:40], idx)
    other, _, _ = select_random_images(predict_fn, images, labels, 40, seed=4)
    assert other.tolist() != idx.tolist()
    # the images skipped before the last one chosen are exactly the misclassified ones
    order = seeded_order(len(images), 3)
    upto = order[: int(np.flatnonzero(order == idx[-1])[0]) + 1]
    all_pred = np.asarray(predict_fn(images[upto].astype(np.float32))).argmax(1)
    np.testing.assert_array_equal(upto[all_pred == labels[upto]], idx)


def test_seeded_random_selection_with_misclassified_takes_the_order_and_predictions(digits):
    predict_fn, _, images, labels, _ = digits
    idx, lab, _ = select_random_images(predict_fn, images, labels, 25, 0, True)
    np.testing.assert_array_equal(idx, seeded_order(len(images), 0)[:25])
    pred = np.asarray(predict_fn(images[idx].astype(np.float32))).argmax(1)
    np.testing.assert_array_equal(lab, pred)


def test_seeded_order_is_a_fixed_permutation_and_checks_its_arguments():
    order = seeded_order(1000, 0)
    assert sorted(order.tolist()) == list(range(1000))
    np.testing.assert_array_equal(order, seeded_order(1000, 0))
    assert order[:20].tolist() != list(range(20))
    for bad in (-1, 1.5, True):
        with pytest.raises(UsageError, match="n must be"):
            seeded_order(bad, 0)
    with pytest.raises(UsageError, match="selection seed"):
        seeded_order(10, 2**32)


# --------------------------------------------------------------------------------------
# Cells and the command line


def _tiny(name: str, **fields) -> rep.ReproductionCell:
    base = dict(model="digits-cnn", popsize=8, max_iters=2, chunk_size=2)
    return rep.ReproductionCell(name, **{**base, **fields})


def test_cells_follow_the_paper_and_pair_across_folders():
    cells = rep.CELLS
    for net in (*rep.NETWORKS, *rep.SECTION_V):
        s = rep.SHORT[net]
        de, rnd = cells[f"{s}-d1-paper"], cells[f"{s}-d1-random"]
        assert (de.method, rnd.method, de.model) == ("paper", "random", net)
        assert de.n_images == 500
        if net in rep.NETWORKS:
            assert cells[f"{s}-d1-all-targets"].n_images == 300
        # the same images and random keys in both folders: only the method differs
        assert dataclasses.replace(de, name=rnd.name, method="random", tables=rnd.tables) == rnd
    cfg = cells["allconv-d1-paper"].sweep_config("cifar10")
    assert (cfg.popsize, cfg.max_iters, cfg.early_stop) == (400, 100, "target_over_true")
    assert cfg.shared_keys and not cfg.include_misclassified and cfg.split == "test"
    jpeg = cells["allconv-d1-jpeg"].sweep_config("cifar10")
    assert jpeg.split == "test-jpeg" and jpeg.include_misclassified
    assert cells["allconv-d1-paper-clip"].method == "paper-clip"
    assert cells["allconv-d3-paper"].pixels == 3 and cells["allconv-d5-paper"].pixels == 5
    with pytest.raises(UsageError, match="unknown reproduction cell 'nope'"):
        rep.cell("nope")
    with pytest.raises(UsageError, match="mode must be untargeted or all-targets"):
        rep.ReproductionCell("x", "digits-cnn", mode="targeted")


def test_paper_clip_differs_from_paper_only_by_the_bound_rule():
    from onepixel_jax.experiments import methods

    paper, clip = methods.attack_config("paper"), methods.attack_config("paper-clip")
    assert clip == dataclasses.replace(paper, options=(("bounds", "clip"),))
    assert methods.describe(clip)["settings"] == {"bounds": "clip"}


def _records(folder):
    return sorted(
        (r["method"], r["index"], r["success"], r["queries"], json.dumps(r["pixels"]))
        for r in run_folder.read_records(folder)
    )


def test_reproduce_run_resumes_grows_and_restores_without_duplicates(tmp_path, digits):
    predict_fn, _, images, labels, _ = digits
    root, records = tmp_path / "work", tmp_path / "committed"
    argv = ["reproduce", "run", "--root", str(root), "--records", "", "--model", "digits-cnn"]
    argv += ["--name", "tiny", "--popsize", "8", "--max-iters", "2", "--chunk-size", "2"]
    argv += ["--selection-seed", "5", "--quiet"]
    assert main([*argv, "--n-images", "3"]) == 0
    out = root / "tiny"
    first = _records(out)
    assert len(first) == 3
    info = run_folder.read_run_info(out)
    idx, _, _ = select_random_images(predict_fn, images, labels, 3, seed=5)
    np.testing.assert_array_equal(rep.dataset_indices(info, info["indices"]), idx)
    # the records' images are the selected dataset images
    saved = run_folder.read_images(out)
    for pos, dataset_index in zip(info["indices"], idx, strict=True):
        np.testing.assert_array_equal(saved[pos], images[dataset_index])

    assert main([*argv, "--n-images", "3"]) == 0  # resumed: nothing new
    assert _records(out) == first
    assert main([*argv, "--n-images", "5"]) == 0  # grown: the first records kept
    grown = _records(out)
    assert len(grown) == 5 and set(first) <= set(grown)
    assert len({r[1] for r in grown}) == 5
    info = run_folder.read_run_info(out)
    idx5, _, _ = select_random_images(predict_fn, images, labels, 5, seed=5)
    np.testing.assert_array_equal(rep.dataset_indices(info, info["indices"]), idx5)
    assert "--n-images 5" in info["command"] and "--name tiny" in info["command"]

    # committed copy (gzip), then a fresh working root continues from it
    assert main(["reproduce", "snapshot", "--root", str(root), "--records", str(records)]) == 0
    assert sorted(p.name for p in (records / "tiny").iterdir()) == ["results.jsonl.gz", "run.json"]
    shutil.rmtree(root)
    argv[argv.index("--records") + 1] = str(records)
    assert main([*argv, "--n-images", "5", "--shard", "0/2"]) == 2  # shares do not restore
    assert not root.exists()
    assert main([*argv, "--n-images", "5"]) == 0
    assert _records(out) == grown  # restored, nothing attacked again
    assert main([*argv, "--n-images", "6"]) == 0
    assert len(_records(out)) == 6


def test_a_folder_of_another_cell_is_refused(tmp_path, digits):
    predict_fn, card, images, labels, names = digits
    kwargs = dict(
        records=None, model=(predict_fn, card), data=(images, labels, names), attack_fn=FakeEngine()
    )
    rep.run_cell(_tiny("a", n_images=2), tmp_path, **kwargs)
    with pytest.raises(UsageError, match="holds cell 'a' with other settings"):
        rep.run_cell(_tiny("a", n_images=2, pixels=2), tmp_path, **kwargs)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cell", "nope"], "unknown reproduction cell 'nope'"),
        (["--method", "paper"], "describe a cell of your own: add --model"),
        (["--shard", "0/2"], "--shard runs a share of one cell"),
        (["--model", "digits-cnn"], "needs --n-images"),
        (["--model", "digits-cnn", "--n-images", "2", "--method", "nope"], "--methods"),
        (["--n-images", "0"], "--n-images"),
    ],
)
def test_reproduce_run_bad_input_is_one_line_with_exit_2(tmp_path, capsys, extra, message):
    code = main(["reproduce", "run", "--root", str(tmp_path / "r"), "--records", "", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("text", [None, "# no block here\n"])
def test_reproduce_tables_refuses_a_readme_without_its_block(tmp_path, capsys, text):
    readme = tmp_path / "README.md"
    if text is not None:
        readme.write_text(text)
    (tmp_path / "records").mkdir()
    code = main(["reproduce", "tables", "--records", str(tmp_path / "records"),
                 "--readme", str(readme)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--readme" in err and len(err.splitlines()) == 1
    assert readme.exists() == (text is not None) and not (tmp_path / "records/tables.json").exists()


# --------------------------------------------------------------------------------------
# Section V architectures


def test_section5_architectures_and_unchanged_defaults():
    key = jax.random.PRNGKey(0)
    x = np.zeros((2, 32, 32, 3), np.float32)
    base = architectures.create("allconv", batch_norm=True, width=0.25)
    sec5 = architectures.create("allconv-section5", width=0.25)
    vb = architectures.init_variables(base, (32, 32, 3), key)
    vs = architectures.init_variables(sec5, (32, 32, 3), key)
    # the first convolution: bias instead of BatchNorm (24 biases for 2 x 24 BN parameters)
    assert architectures.param_count(vs["params"]) == architectures.param_count(vb["params"]) - 24
    assert "bias" in vs["params"]["_ConvBNReLU_0"]["Conv_0"]
    assert "BatchNorm_0" not in vs["params"]["_ConvBNReLU_0"]
    assert "BatchNorm_0" in vs["params"]["_ConvBNReLU_1"]
    assert sec5.apply(vs, x).shape == (2, 10)

    nin = architectures.create("nin", batch_norm=True, width=0.25)
    nin5 = architectures.create("nin-section5", batch_norm=True, width=0.25)
    vn = architectures.init_variables(nin, (32, 32, 3), key)
    shapes = jax.tree_util.tree_map(np.shape, vn)
    assert (
        jax.tree_util.tree_map(np.shape, architectures.init_variables(nin5, (32, 32, 3), key))
        == shapes
    )
    # same parameters, another network: the third mlpconv sees 16x16 maps instead of 8x8
    rng = np.random.default_rng(0)
    xs = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(nin.apply(vn, xs), nin5.apply(vn, xs))
    _, state = nin5.apply(vn, xs, capture_intermediates=True, mutable=["intermediates"])
    third = state["intermediates"]["_ConvBNReLU_6"]["__call__"][0]
    assert third.shape == (2, 16, 16, 48)
    _, state = nin.apply(vn, xs, capture_intermediates=True, mutable=["intermediates"])
    assert state["intermediates"]["_ConvBNReLU_6"]["__call__"][0].shape == (2, 8, 8, 48)

    # defaults are the original networks: committed checkpoints load as before
    assert architectures.AllConv().first_batch_norm and architectures.NiN().second_pool
    predict_fn, card = models.load("allconv-cifar10")
    images, labels, _ = data.load("cifar10", "test", limit=300)
    acc = (np.asarray(predict_fn(images.astype(np.float32))).argmax(1) == labels).mean()
    assert acc == pytest.approx(card["spot_check"]["accuracy"])


# --------------------------------------------------------------------------------------
# Tables from committed-style records, against an independent NumPy computation


class FakeEngine:
    """An engine whose verdicts are fixed by the image, the method's settings and the
    target, with valid records (pixels applied, probabilities agreeing with success)."""

    def __call__(self, key, predict_fn, images, labels, cfg, targets=None, progress=None):
        images = np.asarray(images)
        n, h, w, c = images.shape
        k = 10
        shift = {"paper": 0, "random": 3, "paper-clip": 1}[
            cfg.strategy + ("-clip" if dict(cfg.options).get("bounds") == "clip" else "")
        ]
        seeds = images.reshape(n, -1).astype(np.int64).sum(1) * 7 + shift + 11 * cfg.pixels
        if targets is not None:
            seeds = seeds + 13 * np.asarray(targets)
        rng = np.random.default_rng(seeds % 1009)
        success = (seeds % 5) < (2 if targets is None else 1)
        probs = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
        if targets is None:
            reach = (np.asarray(labels) + 1 + seeds % 9) % k
        else:
            reach = np.asarray(targets)
        for i in range(n):
            top = reach[i] if success[i] else labels[i]
            probs[i, top] = probs[i].max() + 0.5
            probs[i] /= probs[i].sum()
        pixels = np.zeros((n, cfg.pixels, 2 + c), np.int32)
        adv = images.copy()
        for i in range(n):
            for j in range(cfg.pixels):
                r, col = (seeds[i] + j) % h, (seeds[i] * 3 + j) % w
                vals = (seeds[i] * (j + 5)) % 256
                pixels[i, j] = [r, col, *([vals] * c)]
                adv[i, r, col] = vals
        gens = 1 + seeds % (cfg.max_iters + 1)
        queries = np.where(success, gens * cfg.popsize, cfg.popsize * (cfg.max_iters + 1))
        hist = np.sort(rng.uniform(0, 1, (n, cfg.max_iters + 1)), axis=1)[:, ::-1]
        return opj.AttackResult(
            adversarial=adv, pixels=pixels, success=success, queries=queries.astype(np.int64),
            probs=probs, original_probs=probs, fitness_history=hist.astype(np.float32),
            labels=np.asarray(labels, np.int32),
            targets=None if targets is None else np.asarray(targets, np.int32),
        )  # fmt: skip


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _mcnemar(b: int, c: int) -> float:
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue


@pytest.fixture(scope="module")
def committed(tmp_path_factory, digits):
    predict_fn, card, images, labels, names = digits
    card = dict(card.to_dict(), dataset="digits") if hasattr(card, "to_dict") else dict(card)
    root = tmp_path_factory.mktemp("work")
    records = tmp_path_factory.mktemp("committed")
    sizes = {"allconv-d1-paper": 12, "allconv-d1-random": 10, "allconv-d1-paper-clip": 8,
             "allconv-d1-all-targets": 4, "allconv-d3-paper": 9, "allconv-d5-paper": 7,
             "allconv-d1-jpeg": 6}  # fmt: skip
    for name, n in sizes.items():
        c = dataclasses.replace(rep.CELLS[name], popsize=8, max_iters=3, chunk_size=2)
        rep.run_cell(c, root, n_images=n, records=None, model=(predict_fn, card),
                     data=(images, labels, names), attack_fn=FakeEngine())  # fmt: skip
    rep.snapshot(root, records)
    # the jpeg cell grown to 10 images and interrupted before a new record: run.json selects
    # 4 more images (here all misclassified), which Table IV must not count
    path = records / "allconv-d1-jpeg" / "run.json"
    info = json.loads(path.read_text())
    info["labels"] += [(y + 1) % 10 for y in info["true_labels"][:4]]
    info["true_labels"] += info["true_labels"][:4]
    info["indices"] += [max(info["indices"]) + 1 + k for k in range(4)]
    info["config"]["n_images"] = 10
    path.write_text(json.dumps(info))
    (records / rep.CLEAN).write_text(json.dumps({"allconv-cifar10": {
        "test": {"correct": 853, "total": 1000, "accuracy": 0.853},
        "test-jpeg": {"correct": 7760, "total": 10000, "accuracy": 0.776}}}))  # fmt: skip
    return records


def _raw(records, name):
    lines = gzip.decompress((records / name / rep.RECORDS_GZ).read_bytes()).decode().splitlines()
    return [json.loads(line) for line in lines]


def test_tables_match_an_independent_numpy_computation(committed, tmp_path, digits):
    images = digits[2]
    asked = []

    def load_images(dataset, split):
        asked.append((dataset, split))
        return images

    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n<!-- generated: readme -->\nold table\n<!-- /generated: readme -->\nend\n"
    )
    t = rep.write_tables(committed, markdown=tmp_path / "r.md", figures=tmp_path / "fig",
                         snippet=tmp_path / "snippet.md", load_images=load_images,
                         readme=readme)  # fmt: skip
    assert set(asked) == {("digits", "test")}
    de = {r["index"]: r for r in _raw(committed, "allconv-d1-paper")}
    rnd = {r["index"]: r for r in _raw(committed, "allconv-d1-random")}
    assert len(de) == 12 and len(rnd) == 10

    # Table VIII, Nontargeted2: every DE record; a retrained network not attacked has no row
    assert [r["network"] for r in t["viii"]] == list(rep.NETWORKS)
    row = t["viii"][0]
    ok = np.array([r["success"] for r in de.values()])
    got = row["nontargeted2"]["success"]
    assert (got["successes"], got["trials"]) == (ok.sum(), ok.size)
    assert (got["low"], got["high"]) == pytest.approx(_wilson(int(ok.sum()), ok.size))
    conf = [max(r["probs"]) for r in de.values() if r["success"]]
    assert row["nontargeted2"]["confidence"] == pytest.approx(np.mean(conf))
    evals = [r["queries"] for r in de.values() if r["success"]]
    assert row["nontargeted2"]["avg_evaluations"] == pytest.approx(np.mean(evals))
    assert row["original_acc"] == 0.853

    # Table VIII, targeted and Nontargeted1 from the all-targets cell
    at = _raw(committed, "allconv-d1-all-targets")
    assert len(at) == 4 * 9
    tg = np.array([r["success"] for r in at])
    assert row["targeted"]["success"]["successes"] == tg.sum()
    assert row["targeted"]["confidence"] == pytest.approx(
        np.mean([r["probs"][r["target"]] for r in at if r["success"]])
    )
    per_image: dict[int, int] = {}
    for r in at:
        per_image[r["index"]] = per_image.get(r["index"], 0) + r["success"]
    fooled = sum(v > 0 for v in per_image.values())
    assert row["nontargeted1"]["successes"] == fooled and row["nontargeted1"]["trials"] == 4
    assert row["target_counts"] == np.bincount(list(per_image.values()), minlength=10).tolist()
    true = [de[i]["success"] for i in sorted(per_image)]
    assert row["derived_vs_true"]["true"] == sum(true)
    pairs = np.zeros((10, 10), int)
    for r in at:
        if r["success"]:
            pairs[r["label"], r["target"]] += 1
    assert row["class_pairs"] == pairs.tolist()

    # Table VII: paired on the 10 images both cells finished
    vii = t["vii"][0]
    common = sorted(set(de) & set(rnd))
    assert vii["images"] == len(common) == 10
    a = np.array([de[i]["success"] for i in common])
    b = np.array([rnd[i]["success"] for i in common])
    assert (vii["a_only"], vii["b_only"]) == ((a & ~b).sum(), (~a & b).sum())
    assert vii["difference"] == pytest.approx(a.mean() - b.mean())
    assert vii["p_value"] == pytest.approx(_mcnemar(int((a & ~b).sum()), int((~a & b).sum())))
    fa = np.array([min(de[i]["fitness"]) for i in common])
    fb = np.array([min(rnd[i]["fitness"]) for i in common])
    assert vii["neither_a_lower"] == int((~a & ~b & (fa < fb)).sum())
    first = sum(de[i]["success"] and de[i]["queries"] <= 400 for i in common)
    assert vii["first_population"]["de"] == first

    # Table IV: the misclassified among the 6 images the jpeg cell attacked
    jp = _raw(committed, "allconv-d1-jpeg")
    assert len(jp) == 6
    info = json.loads((committed / "allconv-d1-jpeg" / "run.json").read_text())
    wrong = sum(info["true_labels"][r["position"]] != r["label"] for r in jp)
    assert t["iv"][0]["misclassified_attacked"] == wrong
    assert t["iv"][0]["nontargeted"]["success"]["trials"] == 6

    # the bound-handling comparison on the 8 images of all three cells
    clip = {r["index"]: r for r in _raw(committed, "allconv-d1-paper-clip")}
    bounds = t["bounds"]
    assert bounds["images"] == 8
    c = np.array([clip[i]["success"] for i in sorted(clip)])
    d = np.array([de[i]["success"] for i in sorted(clip)])
    assert bounds["redraw_vs_clip"]["a_only"] == (d & ~c).sum()
    assert bounds["redraw_vs_clip"]["b_only"] == (~d & c).sum()

    # Table V on the 7 images of the 1-, 3- and 5-pixel cells
    assert t["v"]["images"] == 7
    for v_row, name in zip(t["v"]["rows"], ["allconv-d1-paper", "allconv-d3-paper",
                                            "allconv-d5-paper"], strict=True):  # fmt: skip
        recs = sorted(_raw(committed, name), key=lambda r: r["index"])[:7]
        assert v_row["success"]["successes"] == sum(r["success"] for r in recs)
        dist = [r["distortion"] for r in recs if r["success"]]
        assert v_row["avg_distortion"] == pytest.approx(np.mean(dist) if dist else math.nan,
                                                        nan_ok=True)  # fmt: skip

    # the generated Markdown, the snippet and the figures
    text = (tmp_path / "r.md").read_text()
    k, n = int(ok.sum()), ok.size
    lo, hi = _wilson(k, n)
    assert f"{100 * k / n:.2f} % [{100 * lo:.2f}, {100 * hi:.2f}] ({k}/{n})" in text
    snippet = (tmp_path / "snippet.md").read_text()
    assert snippet.startswith("| network (width 0.25) |") and "| AllConv | 12 |" in snippet
    assert readme.read_text() == (
        f"# x\n\n<!-- generated: readme -->\n{snippet}<!-- /generated: readme -->\nend\n"
    )
    # fmt: skip
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "allconv-1px-examples.png", "allconv-1px-fitness.png", "allconv-3px-examples.png",
        "allconv-all-targets-class-pairs.png", "allconv-all-targets-target-counts.png",
        "de-vs-random.png",
    ]  # fmt: skip
    # the figure blocks link the figures that exist, relative to the Markdown file
    assert "![AllConv, 1 pixel: examples](fig/allconv-1px-examples.png)" in text
    assert "nin-1px-examples.png" not in text
    saved = json.loads((committed / "tables.json").read_text())
    assert saved["vii"][0]["a_only"] == vii["a_only"]


def test_fill_blocks_replaces_only_the_marked_text():
    text = "intro\n<!-- generated: v -->\nold\n<!-- /generated: v -->\nreading\n"
    out = rep.fill_blocks(text, {"v": "| new |", "vii": "unused"})
    assert out == "intro\n<!-- generated: v -->\n| new |\n<!-- /generated: v -->\nreading\n"
