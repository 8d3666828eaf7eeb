"""onepixel verify: exact one-pixel verification of dataset images, written to a run folder.

Per image the answer of opj.verify: robust (no single pixel of any colour changes the
label), vulnerable (with a checked counterexample) or unknown (a budget ran out). The images
are those onepixel attack selects with the same --model, --dataset, --split and --n-images
(the first images the model classifies correctly, in dataset order), and --mode targeted
draws the same target per image as the attack sweep, so an attack run and a verification run
can be compared image by image (--compare). See docs/verification.md.

The run folder:

    run.json        configuration, reproducing command, provenance, selected images
    results.jsonl   one JSON record per image (status, counterexample, seconds, boxes, ...)
    summary.json, report.md   written at the end (counts, times, the comparison)

Running the same command again resumes an interrupted run, or grows it (a larger
--n-images); any other changed setting is refused. One writer per folder (its lock file).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from onepixel_jax.cli import errors
from onepixel_jax.errors import UsageError
from onepixel_jax.files import (
    DamagedFileError,
    append_jsonl,
    read_json_object,
    read_jsonl_lines,
    write_bytes_atomic,
    write_json_atomic,
)

RUN_INFO = "run.json"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"
REPORT = "report.md"
KIND = "verification"
HINT = "delete the run folder or use another --out"
# run.json config fields a resumed run must share (n_images may grow).
FIXED = (
    "model",
    "model_sha256",
    "dataset",
    "split",
    "mode",
    "seed",
    "over",
    "max_boxes",
    "time_limit",
    "batch_size",
    "leaf_points",
    "probe",
    "atol",
    "rtol",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        type=errors.non_empty,
        help="committed checkpoint name (list them with: onepixel models) or checkpoint "
        "folder; a JAX model (host models such as ONNX are refused: they cannot be bounded)",
    )
    errors.add_image_flags(p)
    p.add_argument(
        "--mode",
        choices=("untargeted", "targeted"),
        default="untargeted",
        help="untargeted: can any pixel change the label; targeted: can it make one seeded "
        "random target (the attack sweep's) the label (default: untargeted)",
    )
    p.add_argument(
        "--seed", type=errors.seed, default=0, help="targets' seed in [0, 2**32) (default: 0)"
    )
    p.add_argument(
        "--over",
        choices=("grid", "reals"),
        default="grid",
        help="grid: integer colours, what an attack can write (default); reals: every real "
        "colour in [0, 255]",
    )
    p.add_argument(
        "--max-boxes",
        type=errors.int_at_least(1),
        default=200_000,
        help="colour boxes bounded per image before the answer is unknown (default: 200000)",
    )
    p.add_argument(
        "--time-limit",
        type=errors.finite_float,
        default=None,
        help="seconds per image before the answer is unknown (default: none); the answer "
        "then depends on the machine",
    )
    p.add_argument(
        "--batch-size",
        type=errors.int_at_least(1),
        default=64,
        help="boxes bounded per compiled call (default: 64)",
    )
    p.add_argument(
        "--probe",
        choices=("corners", "none"),
        default="corners",
        help="corners: first evaluate the colour cube's corners at every position and bound "
        "positions in the order of their lowest margin (default); none: bounds only",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=None,
        metavar="RUN",
        help="an onepixel attack run folder on the same model and images: the report counts, "
        "per method, the vulnerable images it fooled and missed (repeat for several)",
    )
    p.add_argument("--out", required=True, type=errors.non_empty, help="run folder, runs/NAME")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def config_from_args(args: argparse.Namespace, model_sha256: str = "") -> dict:
    """The run's configuration (what run.json records) from parsed arguments."""
    from onepixel_jax.verification import VerifyConfig

    if args.time_limit is not None and not args.time_limit > 0:
        raise UsageError(f"--time-limit must be > 0, got {args.time_limit}")
    try:
        cfg = VerifyConfig(
            over=args.over,
            max_boxes=args.max_boxes,
            time_limit=args.time_limit,
            batch_size=args.batch_size,
            probe=args.probe,
        )
    except ValueError as exc:
        raise UsageError(f"--{str(exc).replace('_', '-')}") from None
    return {
        "model": args.model,
        "model_sha256": model_sha256,
        "dataset": args.dataset,
        "split": args.split,
        "n_images": args.n_images,
        "mode": args.mode,
        "seed": args.seed,
        "over": cfg.over,
        "max_boxes": cfg.max_boxes,
        "time_limit": cfg.time_limit,
        "batch_size": cfg.batch_size,
        "leaf_points": cfg.leaf_points,
        "probe": cfg.probe,
        "atol": cfg.atol,
        "rtol": cfg.rtol,
    }


def verify_config(config: dict):
    from onepixel_jax.verification import VerifyConfig

    return VerifyConfig(
        over=config["over"],
        max_boxes=config["max_boxes"],
        time_limit=config["time_limit"],
        batch_size=config["batch_size"],
        leaf_points=config["leaf_points"],
        probe=config["probe"],
        atol=config["atol"],
        rtol=config["rtol"],
    )


# --------------------------------------------------------------------------------------
# The run folder


def read_run(out: Path) -> tuple[dict | None, list[dict]]:
    """``(run.json or None, records)`` of a verification run folder, checked: a record that is
    not one this run writes raises DamagedFileError naming the file, line and field. A torn
    last line (a kill mid-write) is cut off; a second record of an image is ignored."""
    info_path = out / RUN_INFO
    if not info_path.exists():
        return None, []
    info = read_json_object(info_path, what="run info")
    if info.get("kind") != KIND or not isinstance(info.get("config"), dict):
        raise UsageError(f"{out} holds another kind of run, not onepixel verify; use another --out")
    for key in ("indices", "labels", "targets"):
        if not isinstance(info.get(key), list) or len(info[key]) != len(info["indices"]):
            raise DamagedFileError(f"{info_path}: field {key!r} must be a list per image; {HINT}")
    shape = info.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(v) for v in shape)):
        raise DamagedFileError(f"{info_path}: field 'image_shape' must be [H, W, C]; {HINT}")
    h, w, c = shape
    expected = {
        i: (y, t) for i, y, t in zip(info["indices"], info["labels"], info["targets"], strict=True)
    }
    records, seen = [], set()
    path = out / RESULTS
    if path.exists():
        for n, rec in read_jsonl_lines(path, repair=True):
            where = f"{path} line {n}"
            index = rec.get("index")
            if index not in expected:
                raise DamagedFileError(f"{where}: not a record of an image of this run; {HINT}")
            if (rec.get("label"), rec.get("target")) != expected[index]:
                raise DamagedFileError(f"{where}: label or target differ from run.json; {HINT}")
            status, cx = rec.get("status"), rec.get("counterexample")
            if status not in ("robust", "vulnerable", "unknown"):
                raise DamagedFileError(f"{where}: field 'status' is {status!r}; {HINT}")
            limits = (h - 1, w - 1) + (255,) * c
            ok_cx = (
                isinstance(cx, list)
                and len(cx) == 2 + c
                and all(_is_int(v) and 0 <= v <= hi for v, hi in zip(cx, limits, strict=True))
            )
            if (status == "vulnerable") != ok_cx or (status != "vulnerable" and cx is not None):
                raise DamagedFileError(
                    f"{where}: field 'counterexample' must be [row, col, {c} colour values] for "
                    f"a vulnerable image and null otherwise; {HINT}"
                )
            for key in ("seconds", "boxes", "positions"):
                v = rec.get(key)
                if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0:
                    raise DamagedFileError(f"{where}: field {key!r} must be a number >= 0; {HINT}")
            if index not in seen:
                seen.add(index)
                records.append(rec)
    return info, records


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _record(position: int, index: int, label: int, target, answer) -> dict:
    cx = answer.counterexample
    return {
        "position": position,
        "index": index,
        "label": label,
        "target": target,
        "status": answer.status,
        "counterexample": None if cx is None else [int(v) for v in np.asarray(cx)[0]],
        "predicted": int(answer.predicted),
        "seconds": round(float(answer.seconds), 4),
        "positions": int(answer.positions),
        "proven": int(answer.proven),
        "boxes": int(answer.boxes),
        "evaluations": int(answer.evaluations),
        "lowest_bound": answer.lowest_bound,
    }


def run_verification(
    config: dict,
    out: str | Path,
    predict_fn,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    command: str = "",
    quiet: bool = False,
) -> tuple[dict, list[dict]]:
    """Verify the selected images into ``out``, resuming; returns ``(run info, records)``."""
    from onepixel_jax.experiments import run_folder
    from onepixel_jax.experiments.lock import RunFolderLock
    from onepixel_jax.experiments.selection import select_images, targets_for
    from onepixel_jax.verification import verify

    out = Path(out)
    with RunFolderLock(out):
        info, records = read_run(out)
        if info is not None:
            theirs = info["config"]
            diff = [k for k in FIXED if theirs.get(k) != config.get(k)]
            if diff:
                flags = ", ".join(
                    "--model (another checkpoint)" if k == "model_sha256" else f"--{k}"
                    for k in diff
                ).replace("_", "-")
                raise UsageError(
                    f"--out {out} holds a verification with other settings ({flags}); use the "
                    "same settings to resume or another --out"
                )
        indices, vlabels, probs = select_images(
            predict_fn, images, labels, config["n_images"], False
        )
        k = int(probs.shape[1])
        targets = [
            targets_for(config["mode"], int(y), k, config["seed"], int(i))[0]
            for i, y in zip(indices, vlabels, strict=True)
        ]
        new_info = {
            "kind": KIND,
            "config": config,
            "command": command,
            "indices": [int(i) for i in indices],
            "labels": [int(y) for y in vlabels],
            "targets": targets,
            "num_classes": k,
            "image_shape": list(images.shape[1:]),
            **run_folder.provenance_fields(),
        }
        if info is not None:
            m = min(len(info["indices"]), len(indices))
            if info["indices"][:m] != new_info["indices"][:m]:
                raise UsageError(f"--out {out}: the model selects other images than its run")
            new_info["created"] = info.get("created", new_info["created"])
            smaller = len(info["indices"]) > len(indices)
            if smaller or not command:
                # a smaller --n-images (or a call from Python) reproduces less than the run:
                # run.json keeps the command that made it
                new_info["command"] = info.get("command", command)
            if smaller:  # a smaller --n-images: keep the run's
                new_info.update({f: info[f] for f in ("indices", "labels", "targets")})
                new_info["config"] = dict(config, n_images=info["config"]["n_images"])
        write_json_atomic(out / RUN_INFO, new_info)
        done = {int(r["index"]) for r in records}
        todo = [p for p, i in enumerate(new_info["indices"]) if i not in done]
        if not quiet:
            print(
                f"[verify] {len(todo)} of {len(new_info['indices'])} images to verify "
                f"({len(done)} done) -> {out}",
                file=sys.stderr,
            )
        cfg = verify_config(config)
        x = images.astype(np.float32)
        channel = x.ndim == 4 and _takes_channels(predict_fn, x)
        counts = {s: 0 for s in ("robust", "vulnerable", "unknown")}
        for r in records:
            counts[r["status"]] += 1
        started = time.perf_counter()
        for n, p in enumerate(todo):
            i = new_info["indices"][p]
            y, t = new_info["labels"][p], new_info["targets"][p]
            img = x[i] if channel else x[i][..., 0]
            call = time.perf_counter()
            res = verify(
                predict_fn,
                img[None],
                np.array([y]),
                targets=None if t is None else np.array([t]),
                config=cfg,
            )
            rec = _record(p, i, y, t, res.images[0])
            # the whole call: the first of a process includes tracing and compiling the model
            rec["call_seconds"] = round(time.perf_counter() - call, 4)
            rec["first_in_process"] = n == 0
            rec["load_average"] = _load_average()
            append_jsonl(out / RESULTS, [rec])
            records.append(rec)
            counts[rec["status"]] += 1
            if not quiet:
                print(
                    f"[verify] {n + 1}/{len(todo)} image {i}: {rec['status']} "
                    f"{rec['seconds']:.2f}s boxes {rec['boxes']} | robust {counts['robust']} "
                    f"vulnerable {counts['vulnerable']} unknown {counts['unknown']} | "
                    f"{time.perf_counter() - started:.0f}s",
                    file=sys.stderr,
                )
        return new_info, records


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the system does not say)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _takes_channels(predict_fn, x: np.ndarray) -> bool:
    """Whether ``predict_fn`` takes ``(B, H, W, C)`` (else ``(B, H, W)`` for C = 1)."""
    if x.shape[-1] != 1:
        return True
    import jax

    try:
        jax.eval_shape(predict_fn, jax.ShapeDtypeStruct((1, *x.shape[1:]), np.float32))
        return True
    except Exception:  # noqa: BLE001 - the model rejects a channel axis
        return False


# --------------------------------------------------------------------------------------
# Summary and report


def _compare(info: dict, records: list[dict], run_dir: str) -> dict:
    """Per method of an attack run: images it fooled among those verified here."""
    from onepixel_jax.experiments import run_folder

    theirs, attacks = run_folder.load_run(run_dir)
    if not attacks:
        raise UsageError(f"--compare {run_dir}: no attack records (results.jsonl) in it")
    if theirs["config"].get("pixels", 1) != 1:
        raise UsageError(f"--compare {run_dir}: an attack with more than one pixel")
    ours = info["config"]
    for key, flag in (("model_sha256", "checkpoint"), ("dataset", "dataset"), ("split", "split")):
        mine = ours.get(key)
        other = theirs.get(key) if key == "model_sha256" else theirs["config"].get(key)
        if mine and other and mine != other:
            raise UsageError(f"--compare {run_dir}: another {flag} than this verification's")
    status = {(r["index"], r["target"]): r["status"] for r in records}
    label = {r["index"]: r["label"] for r in records}
    methods: dict[str, dict] = {}
    for rec in attacks:
        key = (int(rec["index"]), rec.get("target"))
        if key not in status or label[key[0]] != rec["label"]:
            continue
        m = methods.setdefault(
            rec["method"],
            {"attacked": 0, "fooled": 0, "fooled_robust": 0, "missed_vulnerable": 0},
        )
        m["attacked"] += 1
        fooled = bool(rec["success"])
        m["fooled"] += fooled
        m["fooled_robust"] += fooled and status[key] == "robust"
        m["missed_vulnerable"] += (not fooled) and status[key] == "vulnerable"
    if not methods:
        raise UsageError(f"--compare {run_dir}: no attack on the images verified here")
    return {"run": str(run_dir), "model": theirs["config"].get("model"), "methods": methods}


def summarise(info: dict, records: list[dict], compare: list[str] | None = None) -> dict:
    by = {s: [r for r in records if r["status"] == s] for s in ("robust", "vulnerable", "unknown")}
    secs = np.array([r["seconds"] for r in records], np.float64)
    warm = np.array([r["seconds"] for r in records if not r.get("first_in_process")], np.float64)

    def stats(v):
        if not len(v):
            return None
        return {
            "n": len(v),
            "median": float(np.median(v)),
            "mean": float(v.mean()),
            "max": float(v.max()),
        }

    summary = {
        "images": len(records),
        "selected": len(info["indices"]),
        "counts": {s: len(v) for s, v in by.items()},
        "seconds": stats(secs),
        "seconds_warm": stats(warm),
        # per status without the first image of each process (its time includes compiling)
        "seconds_by_status": {
            s: stats(np.array([r["seconds"] for r in v if not r.get("first_in_process")]))
            for s, v in by.items()
        },
        "boxes_median": float(np.median([r["boxes"] for r in records])) if records else None,
        "load_average": stats(
            np.array([r["load_average"] for r in records if r.get("load_average") is not None])
        ),
        "first_calls": [r["call_seconds"] for r in records if r.get("first_in_process")],
        "machine": info.get("machine"),
        "config": info["config"],
        "comparisons": [_compare(info, records, d) for d in compare or ()],
    }
    return summary


FIGURE = "counterexamples.png"


def write_figure(out: Path, info: dict, records: list[dict], predict_fn, images, names) -> int:
    """``counterexamples.png``: the vulnerable images, clean and with their counterexample
    pixel (framed), titled with the model's class and probability; returns how many."""
    from onepixel_jax.experiments import plots

    found = [r for r in records if r["status"] == "vulnerable" and r["counterexample"]]
    found = sorted(found, key=lambda r: r["position"])[: plots.MAX_EXAMPLES]
    if not found:
        (out / FIGURE).unlink(missing_ok=True)
        return 0
    x = np.asarray(images)  # as loaded (uint8): what imshow draws in [0, 255] for RGB too
    shown = x if x.ndim == 4 else x[..., None]
    channel = x.ndim == 4 and _takes_channels(predict_fn, x.astype(np.float32))
    clean = np.stack([shown[r["index"]] for r in found])
    patched = np.stack([plots.rebuild_adversarial(c, [r["counterexample"]]) for c, r in
                        zip(clean, found, strict=True)])  # fmt: skip
    batch = np.concatenate([clean, patched]).astype(np.float32)
    probs = np.asarray(predict_fn(batch if channel else batch[..., 0]), np.float64)
    n = len(found)
    as_attack = [
        {
            "index": r["index"],
            "label": r["label"],
            "predicted": int(probs[n + j].argmax()),
            "success": True,
            "pixels": [r["counterexample"]],
            "original_probs": probs[j].tolist(),
            "probs": probs[n + j].tolist(),
        }
        for j, r in enumerate(found)
    ]
    by_index = {r["index"]: shown[r["index"]] for r in found}
    c = info["config"]
    title = f"{c['model']}: one-pixel counterexamples found by the verifier ({c['mode']})"
    return plots.plot_examples(as_attack, by_index, names, out / FIGURE, title)


def report_markdown(info: dict, summary: dict, figure: bool = False) -> str:
    c = summary["config"]
    lines = [
        f"# One-pixel verification: {c['model']} on {c['dataset']} {c['split']}",
        "",
        f"`{info.get('command', '')}`",
        "",
        f"{summary['images']} of {summary['selected']} selected images verified, {c['mode']}, "
        f"over the {'integer colour grid' if c['over'] == 'grid' else 'real colours'}, "
        f"at most {c['max_boxes']} boxes"
        + ("" if c["time_limit"] is None else f" and {c['time_limit']} s")
        + " per image.",
        "",
        "Seconds per image, without the first image of each process (compilation):",
        "",
        "| status | images | median s | max s |",
        "|---|---:|---:|---:|",
    ]
    for s, n in summary["counts"].items():
        st = summary["seconds_by_status"][s]
        med = "-" if st is None else f"{st['median']:.2f}"
        mx = "-" if st is None else f"{st['max']:.2f}"
        lines.append(f"| {s} | {n} | {med} | {mx} |")
    w = summary["seconds_warm"]
    if w is not None:
        lines += [
            "",
            f"Time per image without compilation: median {w['median']:.2f} s, mean "
            f"{w['mean']:.2f} s over {w['n']} images; first image of a process (compilation "
            f"included): {', '.join(f'{s:.1f}' for s in summary['first_calls'])} s.",
        ]
    for comp in summary["comparisons"]:
        lines += [
            "",
            f"Compared with the attack run `{comp['run']}`:",
            "",
            "| method | attacked | fooled | vulnerable not fooled | fooled but robust |",
            "|---|---:|---:|---:|---:|",
        ]
        for m, v in comp["methods"].items():
            lines.append(
                f"| {m} | {v['attacked']} | {v['fooled']} | {v['missed_vulnerable']} | "
                f"{v['fooled_robust']} |"
            )
    if figure:
        lines += [
            "",
            "Vulnerable images, clean and with the counterexample pixel (framed):",
            "",
            f"![one-pixel counterexamples]({FIGURE})",
        ]
    m = summary.get("machine") or {}
    load = summary.get("load_average")
    if m:
        text = f"Machine: {json.dumps(m, sort_keys=True)}"
        if load is not None:
            text += (
                f"; 1-minute load average {load['median']:.1f} (median), {load['max']:.1f} (max)"
            )
        lines += ["", text + "."]
    return "\n".join(lines) + "\n"


def write_report(out: Path, info: dict, records: list[dict], compare=None, figure=None) -> dict:
    """``summary.json`` and ``report.md``; with ``figure`` ``(predict_fn, images,
    class_names)`` also ``counterexamples.png``."""
    summary = summarise(info, records, compare)
    drawn = 0 if figure is None else write_figure(out, info, records, *figure)
    write_json_atomic(out / SUMMARY, summary)
    write_bytes_atomic(out / REPORT, report_markdown(info, summary, drawn > 0).encode("utf-8"))
    return summary


# --------------------------------------------------------------------------------------
# The command


def _run_cli(args: argparse.Namespace) -> int:
    from onepixel_jax.experiments.inputs import load_dataset, load_model

    config_from_args(args)  # argument errors before loading anything
    out = errors.check_output_dir(args.out)
    errors.check_input_dir(args.data_dir, "--data-dir")
    for d in args.compare or ():
        errors.check_input_dir(d, "--compare")
    predict_fn, card = load_model(args.model)
    if callable(getattr(predict_fn, "host_fn", None)):
        raise UsageError(
            f"--model {args.model} is a host model (ONNX Runtime, NumPy or PyTorch through a "
            "callback): its operations cannot be bounded; verify needs a JAX model"
        )
    config = config_from_args(args, str(card.get("checkpoint_sha256", "")))
    images, labels, names = load_dataset(args.dataset, args.split, args.data_dir, args.download)
    command = "onepixel " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["verify"] else ""
    with errors.removed_on_failure(out):
        info, records = run_verification(
            config, out, predict_fn, images, labels, command=command, quiet=args.quiet
        )
    if not args.no_report:
        names = list(names) if names is not None else [str(k) for k in range(info["num_classes"])]
        summary = write_report(out, info, records, args.compare, (predict_fn, images, names))
        counts = summary["counts"]
        print(
            f"[verify] robust {counts['robust']}, vulnerable {counts['vulnerable']}, unknown "
            f"{counts['unknown']} of {summary['images']} -> {out / REPORT}"
        )
    return 0


def register_cli(subparsers: Any) -> None:
    """Add the ``verify`` sub-command."""
    p = subparsers.add_parser(
        "verify",
        help="exact one-pixel verification: robust, vulnerable or unknown per image",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=errors.command("onepixel verify", _run_cli))
