"""Measure the defences of onepixel_jax.defences with the project's own attacks (resumable).

    python benchmarks/defences_measure.py attack --model lenet-mnist --n-images 100 \
        --pixels 1 3 --out runs/defences/measure
    python benchmarks/defences_measure.py report --out runs/defences/measure \
        --doc-tables docs/figures/defences/tables.md

``attack`` runs, for one undefended checkpoint and the same images (the first ``n`` test
images it classifies correctly, outside the detector's calibration images):

* ``clean``: clean accuracy of the network and of every squeezed pipeline on ``--clean-images``
  test images, and the feature-squeezing detector calibrated for a 5 % false-positive rate on
  the calibration images (MNIST: test images 5,000-5,999; CIFAR-10: lossless test 500-999);
* ``base`` cells: the attack on the undefended network; from its adversarial images follow,
  with no further search, the non-adaptive effect of each squeezer (is the adversarial image
  still misclassified by the squeezed pipeline?) and of the detector (fooled and not flagged);
* ``adaptive`` cells: the attack run end to end on each squeezed pipeline, and on the
  detector-guarded system (:func:`onepixel_jax.defences.squeezing.detection_aware_target`,
  success = misclassified and not flagged, rechecked on the returned images);
* ``model`` cells: the attack on other checkpoints (dead-pixel / adversarially trained) with
  ``--defended NAME...``.

Every cell is one JSON line in ``OUT/<model>.jsonl`` with per-image success, written when it
is done; a cell already there is skipped, so an interrupted run resumes. ``report`` builds
the tables (Wilson 95 % intervals, exact McNemar p against the undefended network on the
same images) and the figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np

import onepixel_jax as opj
from onepixel_jax import metrics
from onepixel_jax.defences import squeezing

SETTINGS = {
    "mnist": {
        "squeezers": ("median2", "median3", "bits1"),
        "detector": ("bits1", "median2"),
        "calibration": (5000, 6000),
    },
    "cifar10": {
        "squeezers": ("median2", "median3", "bits5"),
        "detector": ("bits5", "median2"),
        "calibration": (500, 1000),
    },
}


def _done(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        out[rec["cell"]] = rec
    return out


def _append(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def _accuracy(predict_fn, x, y) -> float:
    probs = opj.targets.predict_in_batches(predict_fn, x.astype(np.float32), 250)
    return float(np.mean(probs.argmax(1) == y))


def _attack_cfg(strategy: str, pixels: int) -> opj.AttackConfig:
    if strategy == "fast":  # pinned to the settings the recorded cells were measured with
        return opj.AttackConfig(
            pixels=pixels, strategy="fast", popsize=128, stall=32, early_stop="success"
        )
    if strategy == "paper":  # the paper's DE at its budget: 400 x (1 + 100) evaluations
        return opj.AttackConfig(pixels=pixels, strategy="paper", early_stop="success")
    if strategy == "de-small":  # the paper's DE at a small budget (popsize 100, 10 generations)
        return opj.AttackConfig(pixels=pixels, popsize=100, max_iters=10, early_stop="success")
    raise ValueError(strategy)


def run_attacks(args: argparse.Namespace) -> None:
    predict_fn, card = opj.models.load(args.model)
    dataset = card.dataset
    setting = SETTINGS[dataset]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.model}.jsonl"
    done = _done(path)
    lo, hi = setting["calibration"]
    x_all, y_all, _ = opj.data.load(dataset, "test", limit=max(hi, args.clean_images))
    x_cal = x_all[lo:hi]
    pool_x, pool_y = x_all[:lo], y_all[:lo]
    clean_pred = opj.targets.predict_in_batches(predict_fn, pool_x.astype(np.float32), 250)
    correct = np.flatnonzero(clean_pred.argmax(1) == pool_y)[: args.n_images]
    x, y = pool_x[correct], pool_y[correct]
    log = print
    detector = squeezing.FeatureSqueezingDetector.calibrated(
        predict_fn, setting["detector"], x_cal, fpr=0.05
    )
    pipelines = {name: squeezing.squeezed(predict_fn, name) for name in setting["squeezers"]}

    if "clean" not in done:
        xc, yc = x_all[: args.clean_images], y_all[: args.clean_images]
        rec = {
            "cell": "clean",
            "model": args.model,
            "clean_images": len(xc),
            "accuracy": {"none": _accuracy(predict_fn, xc, yc)},
            "detector": {
                "squeezers": list(setting["detector"]),
                "threshold": detector.threshold,
                "calibration_images": [lo, hi],
                "fpr_calibration": float(np.mean(detector.flags(x_cal))),
                "fpr_clean_attack_images": float(np.mean(detector.flags(x))),
            },
            "image_ids": correct.tolist(),
        }
        for name, fn in pipelines.items():
            rec["accuracy"][name] = _accuracy(fn, xc, yc)
        # the detector rejects flagged inputs: accuracy among the accepted, and rejection rate
        flags = detector.flags(xc)
        rec["detector"]["fpr_clean_images"] = float(np.mean(flags))
        _append(path, rec)
        log(f"[clean] {json.dumps(rec['accuracy'])} detector {json.dumps(rec['detector'])}")

    for strategy in args.strategies:
        for d in args.pixels:
            cfg = _attack_cfg(strategy, d)
            cells = [("base", "none", predict_fn)]
            if args.adaptive:
                cells += [("adaptive", n, fn) for n, fn in pipelines.items()]
                cells.append(("adaptive", "detector", squeezing.detection_aware_target(detector)))
            for name in args.defended:
                cells.append(("model", name, opj.models.load(name)[0]))
            for kind, name, fn in cells:
                cell = f"{kind}:{name}:{strategy}:d{d}"
                if cell in done:
                    continue
                t0 = time.time()
                # the first m images only: image i's search depends on i and the key alone,
                # so these results equal the first m of a run on all images
                m = min(len(x), args.limit_images or len(x))
                xm, ym = x[:m], y[:m]
                res = opj.attack(jax.random.key(args.seed), fn, xm, ym, cfg, progress=False)
                rec = {
                    "cell": cell,
                    "kind": kind,
                    "defence": name,
                    "strategy": strategy,
                    "pixels": d,
                    "budget": cfg.budget,
                    "images": m,
                    "success": res.success.astype(int).tolist(),
                    "queries": res.queries.tolist(),
                    "seconds": round(time.time() - t0, 1),
                }
                adv = res.adversarial
                flags = detector.flags(adv)
                rec["flagged"] = flags.astype(int).tolist()
                if kind == "base":  # non-adaptive effect of every squeezer on these images
                    rec["squeezed_success"] = {}
                    for n, pfn in pipelines.items():
                        p = opj.targets.predict_in_batches(pfn, adv.astype(np.float32), 250)
                        rec["squeezed_success"][n] = (p.argmax(1) != ym).astype(int).tolist()
                if kind == "adaptive" and name != "detector":
                    rec["success_recheck"] = int(
                        np.sum(
                            opj.targets.predict_in_batches(fn, adv.astype(np.float32), 250).argmax(
                                1
                            )
                            != ym
                        )
                    )
                _append(path, rec)
                done[cell] = rec
                log(
                    f"[{cell}] success {np.mean(res.success):.3f} flagged "
                    f"{np.mean(flags[res.success]) if res.success.any() else float('nan'):.3f} "
                    f"mean queries {np.mean(res.queries):.0f} in {rec['seconds']:.0f}s"
                )


# --------------------------------------------------------------------------------------------
# report


def _rate(s) -> str:
    s = np.asarray(s, bool)
    lo, hi = metrics.wilson_interval(int(s.sum()), s.size)
    return f"{100 * s.mean():.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def _p(a, b) -> str:
    n = min(len(a), len(b))
    c = metrics.paired_comparison(np.asarray(a[:n], bool), np.asarray(b[:n], bool))
    return f"{c['p_value']:.3g} ({c['a_only']}/{c['b_only']})"


def report(args: argparse.Namespace) -> str:
    lines = []
    for path in sorted(Path(args.out).glob("*.jsonl")):
        recs = _done(path)
        if "clean" not in recs:
            continue
        model = path.stem
        clean = recs["clean"]
        acc = clean["accuracy"]
        det = clean["detector"]
        lines += [
            f"### {model}",
            "",
            f"Clean accuracy on the first {clean['clean_images']} test images: "
            + ", ".join(f"{k} {100 * v:.2f} %" for k, v in acc.items())
            + f". Detector ({' + '.join(det['squeezers'])}): threshold {det['threshold']:.4f} "
            f"(L1), flags {100 * det['fpr_calibration']:.1f} % of the calibration images, "
            f"{100 * det['fpr_clean_images']:.1f} % of the clean test images and "
            f"{100 * det['fpr_clean_attack_images']:.1f} % of the clean attacked images.",
            "",
            "| attack | d | defence | clean acc. | success [95 % CI] | McNemar p vs none "
            "(defended-only / none-only) | mean queries |",
            "|---|---|---|---|---|---|---|",
        ]
        rejected = f"{100 * acc['none']:.2f} % ({100 * det['fpr_clean_images']:.1f} % rejected)"
        bases = {k: r for k, r in recs.items() if k.startswith("base:")}
        for _bkey, base in sorted(
            bases.items(), key=lambda kv: (kv[1]["strategy"], kv[1]["pixels"])
        ):
            strat, d = base["strategy"], base["pixels"]
            s0 = base["success"]
            q = f"{np.mean(base['queries']):.0f}"
            lines.append(
                f"| {strat} | {d} | none | {100 * acc['none']:.2f} % | {_rate(s0)} | - | {q} |"
            )
            for n, s in base.get("squeezed_success", {}).items():
                lines.append(
                    f"| {strat} (non-adaptive: adv. of none) | {d} | {n} | {100 * acc[n]:.2f} % "
                    f"| {_rate(s)} | {_p(s, s0)} | - |"
                )
            und = np.asarray(s0, bool) & ~np.asarray(base["flagged"], bool)
            lines.append(
                f"| {strat} (non-adaptive: adv. of none) | {d} | detector, fooled & not flagged "
                f"| {rejected} | {_rate(und)} | {_p(und, s0)} | - |"
            )
            for key, r in sorted(recs.items()):
                if r.get("strategy") != strat or r.get("pixels") != d or key.startswith("base:"):
                    continue
                s = np.asarray(r["success"], bool)
                none_n = _rate(np.asarray(s0[: len(s)], bool)) if len(s) < len(s0) else None
                if r["kind"] == "adaptive" and r["defence"] == "detector":
                    s = s & ~np.asarray(r["flagged"], bool)
                    label = "detector, fooled & not flagged"
                    a = rejected
                elif r["kind"] == "adaptive":
                    label = r["defence"]
                    a = f"{100 * acc[label]:.2f} %"
                else:
                    label = r["defence"]
                    a = args_acc(label)
                if none_n is not None:
                    label += f" (first {len(s)} images; none on them: {none_n})"
                lines.append(
                    f"| {strat} ({'adaptive' if r['kind'] == 'adaptive' else 'trained'}) | {d} "
                    f"| {label} | {a} | {_rate(s)} | {_p(s, s0)} | {np.mean(r['queries']):.0f} |"
                )
        lines.append("")
    return "\n".join(lines)


def fooling_report(folders: list[str], figure: str | None = None) -> str:
    """Per round of fooling-class retraining: classes MAP-Elites reaches at the threshold,
    best confidences, generations needed, fooling-class rates and clean accuracy."""
    lines = [
        "| run | retraining | round | network attacked | classes >= 99.99 % | median / min best "
        "confidence | median generation reaching (reached classes) | fooling images so far "
        "| fooling class on them before -> after | clean test acc. after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    curves = {}
    for folder in folders:
        folder = Path(folder)
        rounds = [json.loads(x) for x in (folder / "rounds.jsonl").read_text().splitlines() if x]
        base = None
        mode = None
        for rec in rounds:
            mode = rec.get("mode", mode)  # an evolution-only record attacks the last mode's network
            r = rec["round"]
            summary = json.loads((folder / f"round{r}" / "evolve-0" / "summary.json").read_text())
            base = base or summary["model"].rsplit("-fooling-class", 1)[0]
            gens = [g for g in summary["first_generation_reaching"] if g >= 0]
            k = len(summary["classes"])
            attacked = base if r == 1 else f"round {r - 1} network"
            if rec.get("evolution_only"):
                after = "-"
            elif mode == "from_scratch":  # "before" is a fresh initialisation: not informative
                after = f"(fresh network) -> {100 * rec['fooling_rate_after']:.0f} %"
            else:
                after = (
                    f"{100 * rec['fooling_rate_before']:.0f} % -> "
                    f"{100 * rec['fooling_rate_after']:.0f} %"
                )
            acc = "-" if rec.get("evolution_only") else f"{100 * rec['test_accuracy']:.2f} %"
            n = "-" if rec.get("evolution_only") else str(rec["fooling_images"])
            lines.append(
                f"| {folder.name} | {(mode or '-').replace('_', ' ')} "
                f"| {r}{' (evolution only)' if rec.get('evolution_only') else ''} "
                f"| {attacked} | {summary['reached']}/{k} | {summary['median_confidence']:.4f} / "
                f"{summary['min_confidence']:.4f} | "
                f"{int(np.median(gens)) if gens else '-'} (of {summary['generations']}) | {n} "
                f"| {after} | {acc} |"
            )
            curves.setdefault(folder.name, []).append(sorted(summary["best_confidence"]))
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), squeeze=False)
        for ax, (name, per_round) in zip(axes[0], curves.items(), strict=True):
            for r, conf in enumerate(per_round, 1):
                ax.plot(range(len(conf)), conf, marker="o", label=f"evolution {r}")
            ax.axhline(0.9999, color="grey", lw=0.8, ls="--")
            ax.set_title(name)
            ax.set_xlabel("class (sorted by best confidence)")
            ax.set_ylabel("best MAP-Elites confidence")
            ax.legend(fontsize=8)
        fig.tight_layout()
        Path(figure).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(figure, dpi=110)
    return "\n".join(lines)


def success_figure(out: str, figure: str) -> None:
    """Bar chart of attack success with Wilson intervals, per model and cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = sorted(Path(out).glob("*.jsonl"))
    fig, axes = plt.subplots(1, len(paths), figsize=(6 * len(paths), 4), squeeze=False)
    for ax, path in zip(axes[0], paths, strict=True):
        recs = _done(path)
        labels, rates, errs = [], [], []
        cells = sorted(
            (r for key, r in recs.items() if key != "clean"),
            key=lambda r: (r["strategy"] != "fast", r["pixels"]),
        )
        for r in cells:
            s = np.asarray(r["success"], bool)
            if r["defence"] == "detector":
                s = s & ~np.asarray(r["flagged"], bool)
            lo, hi = metrics.wilson_interval(int(s.sum()), s.size)
            strat = "" if r["strategy"] == "fast" else f" {r['strategy']}"
            name = r["defence"].removeprefix(f"{path.stem}-")  # trained: the defence's name
            labels.append(f"{name} d{r['pixels']}{strat}")
            rates.append(s.mean())
            errs.append((s.mean() - lo, hi - s.mean()))
        ax.bar(range(len(rates)), rates, yerr=np.array(errs).T, capsize=3)
        ax.set_xticks(range(len(rates)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("attack success (Wilson 95 %)")
        ax.set_title(f"{path.stem} (fast preset unless 'paper')")
    fig.tight_layout()
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)


def args_acc(name: str) -> str:
    try:
        card = opj.models.load(name, verify=False)[1]
    except ValueError:
        return "?"
    acc = card.get("test_accuracy")
    return f"{100 * acc:.2f} %" if acc is not None else "?"


def promote(args: argparse.Namespace) -> None:
    """Copy a trained defence checkpoint into ``onepixel_jax/zoo/weights/NAME`` (loadable by
    name): the card
    gets the name, the command that made it, ``training_time_seconds`` (a fooling-class round
    records it as the round's seconds) and the spot check of 300 test images."""
    import shutil

    from onepixel_jax.files import write_json_atomic
    from onepixel_jax.zoo import checkpoints as ckpt_lib
    from onepixel_jax.zoo.training import spot_check

    src, dst = Path(args.source), ckpt_lib.models_dir() / args.name
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / ckpt_lib.CHECKPOINT_FILE, dst / ckpt_lib.CHECKPOINT_FILE)
    card = json.loads((src / ckpt_lib.CARD_FILE).read_text())
    card["name"] = args.name
    card["command"] = args.command or card.get("command")
    if "training_time_seconds" not in card:
        card["training_time_seconds"] = card["defence"]["round_record"]["seconds"]
    if card.get("status") is None:
        card["status"] = "complete"
    write_json_atomic(dst / ckpt_lib.CARD_FILE, card)
    predict_fn, _ = ckpt_lib.load(dst)
    card["spot_check"] = spot_check(predict_fn, card["dataset"])
    write_json_atomic(dst / ckpt_lib.CARD_FILE, card)
    print(f"{dst}: test accuracy {card['test_accuracy']}, spot check {card['spot_check']}")


def evolve(args: argparse.Namespace) -> None:
    """A longer MAP-Elites run (direct encoding) against a (fooling-class) checkpoint; the
    archive's cells are the base network's real classes (an extra output is ignored)."""
    from onepixel_jax.fooling.run import FoolConfig, run_fooling

    predict_fn, card = opj.models.load(args.model)
    names = list(card.class_names)
    if names[-1] == "fooling":
        names = names[:-1]
    config = FoolConfig(
        model=card.name, encoding="direct", popsize=args.popsize, seed=args.seed, chunk=50
    )
    summary = run_fooling(
        config,
        predict_fn,
        card.input_shape,
        names,
        args.out,
        args.generations,
        stop_at_threshold=True,
    )
    print(
        f"{card.name}: {summary['reached']}/{len(names)} classes >= 0.9999 after "
        f"{summary['generations']} generations; median best {summary['median_confidence']:.4f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("attack")
    a.add_argument("--model", required=True)
    a.add_argument("--n-images", type=int, default=100)
    a.add_argument("--clean-images", type=int, default=1000)
    a.add_argument("--pixels", type=int, nargs="+", default=[1, 3])
    a.add_argument(
        "--strategies", nargs="+", default=["fast"], choices=["fast", "paper", "de-small"]
    )
    a.add_argument("--no-adaptive", dest="adaptive", action="store_false")
    a.add_argument("--defended", nargs="*", default=[])
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--limit-images",
        type=int,
        default=None,
        help="attack only the first M images in the "
        "cells not yet done (a cell done on more images pairs on its first M: image i's "
        "search depends only on i and the key)",
    )
    a.add_argument("--out", default="runs/defences/measure")
    r = sub.add_parser("report")
    r.add_argument("--out", default="runs/defences/measure")
    r.add_argument("--doc-tables", default=None)
    r.add_argument("--fooling", nargs="*", default=[], help="fooling-class work folders")
    r.add_argument("--figures", default=None, help="folder for the figures")
    m = sub.add_parser("promote")
    m.add_argument("source", help="checkpoint folder (params.msgpack + card.json)")
    m.add_argument("--name", required=True)
    m.add_argument("--command", default=None, help="the command that trained it")
    e = sub.add_parser("evolve")
    e.add_argument("--model", required=True)
    e.add_argument("--generations", type=int, default=1000)
    e.add_argument("--popsize", type=int, default=100)
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "evolve":
        evolve(args)
    elif args.cmd == "promote":
        promote(args)
    elif args.cmd == "attack":
        run_attacks(args)
    else:
        text = report(args)
        if args.fooling:
            fig = f"{args.figures}/fooling_class_rounds.png" if args.figures else None
            text += "\n### Fooling-class rounds\n\n" + fooling_report(args.fooling, fig) + "\n"
        if args.figures:
            success_figure(args.out, f"{args.figures}/attack_success.png")
        print(text)
        if args.doc_tables:
            Path(args.doc_tables).parent.mkdir(parents=True, exist_ok=True)
            Path(args.doc_tables).write_text(text + "\n")


if __name__ == "__main__":
    main()
