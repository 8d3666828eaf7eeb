"""A hostile user's probe of the command line and the API: every case states its outcome.

Each case is a mistake a user can make (a damaged or foreign file in a run folder, a size no
machine has, a model that breaks the contract, two writers on one folder, a signal at a bad
moment) with the outcome it must have:

- ``refused``: ``onepixel`` exits with code 2 and exactly one line on stderr (``onepixel CMD:
  error: ...``, naming what the case says), no traceback, and the run's records unchanged;
- ``accepted``: a legitimate edge case that must work (exit 0) and leave the records intact;
- ``api``: a Python call that must raise ``ValueError`` / ``TypeError`` (or the host-model
  error, a ``RuntimeError``) with a one-line message naming the argument;
- ``interrupt``: SIGINT / SIGTERM at some moment of a real run: exit code 130 / 143, no
  traceback or crash, every record on disk readable;
- ``concurrent``: real processes on one folder: the records all come from one configuration.

An outcome other than the expected one is counted per family as ``traceback`` (an exception
escaped, a crash, an opaque error from deep inside), ``silent`` (a wrong input accepted),
``data`` (records lost, mixed, duplicated or overwritten), ``message`` (refused, but not with
one clear line and code 2) or ``wrong`` (a legitimate case refused). Command-line cases run
in this process through ``onepixel_jax.cli.main(argv)`` (as fast as the library allows);
interrupts and concurrent writers run as real processes.

Usage::

    python scripts/hostile_probe.py --out benchmarks/results/hostile_probe.json

It prints the counts per family and writes every case's outcome to the JSON file. It uses the
committed ``digits-cnn`` checkpoint on scikit-learn's digits with tiny budgets, so it needs no
data files and runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

FAMILIES = {
    "data": "data loss and corruption (writers, outputs over records, links, devices)",
    "sizes": "sizes beyond counters, memory or the file system",
    "records": "damaged or foreign run files on report and resume",
    "contract": "models that run but break the contract",
    "arguments": "arguments that cannot work (numbers, addresses, labels)",
    "interrupts": "SIGINT / SIGTERM at any moment of a real run",
    "api": "the Python API",
}
OUTCOMES = ("ok", "traceback", "silent", "data", "message", "wrong")

TINY = ["--popsize", "20", "--max-iters", "3", "--quiet"]


def attack_argv(out: str, *extra: str, n: int = 4) -> list[str]:
    return [
        "attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", str(n),
        "--chunk-size", "2", *TINY, "--no-report", "--out", out, *extra,
    ]  # fmt: skip


@dataclass
class Case:
    family: str
    id: str
    expect: str  # refused, accepted, api, interrupt, concurrent
    argv: list[str] | None = None  # "{tmp}" is the case's folder
    setup: Callable[[Path], None] | None = None
    needle: str = ""
    protect: tuple[str, ...] = ()  # paths under {tmp} whose bytes must not change
    check: Callable[[Path], str | None] | None = None  # a problem, or None
    call: Callable[[Path], object] | None = None  # api and custom cases
    run: Callable[[Path], dict] | None = None  # a custom runner (processes)


@dataclass
class Result:
    family: str
    id: str
    expect: str
    outcome: str
    code: int | None = None
    line: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Fixtures: built once, copied into each case's folder


class Fixtures:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._run: dict[str, Path] = {}

    def run(self, mode: str = "untargeted") -> Path:
        """A finished tiny run folder (4 images) of ``mode``."""
        if mode not in self._run:
            out = self.root / f"finished-{mode}"
            code, _, err, exc = run_cli(attack_argv(str(out), "--mode", mode), self.root)
            if code != 0:
                raise RuntimeError(f"cannot build the finished run: {err}{exc}")
            self._run[mode] = out
        return self._run[mode]


FIX: Fixtures


def copy_run(tmp: Path, mode: str = "untargeted") -> Path:
    shutil.copytree(FIX.run(mode), tmp / "run")
    return tmp / "run"


def finished(tmp: Path) -> None:
    copy_run(tmp)


def digest(path: Path) -> str | None:
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    if not path.is_file():
        return f"special:{path.stat().st_mode}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# Running one command in this process


@contextlib.contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_cli(argv: list[str], cwd: Path) -> tuple[int | None, str, str, str]:
    """``(exit code or None, stdout, stderr, traceback of an escaped exception)``."""
    from onepixel_jax.cli import main

    out, err = io.StringIO(), io.StringIO()
    tb = ""
    code = None
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
        chdir(cwd),
    ):
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except KeyboardInterrupt:
            raise
        except BaseException:
            tb = traceback.format_exc()
    return code, out.getvalue(), err.getvalue(), tb


def expand(argv: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in argv]


def judge_refusal(code, err: str, tb: str, needle: str, changed: list[str]) -> tuple[str, str]:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if tb or "Traceback" in err:
        return "traceback", (tb or err).strip().splitlines()[-1][:300]
    if changed:
        return "data", f"changed: {', '.join(changed)}"
    if code == 0:
        return "silent", "exit code 0"
    if code != 2 or len(lines) != 1 or not lines[0].startswith("onepixel"):
        return "message", f"exit code {code}, {len(lines)} stderr lines"
    if needle and needle not in lines[0]:
        return "message", f"the line does not name {needle!r}"
    return "ok", ""


def run_case(case: Case, tmp: Path) -> Result:
    t0 = time.perf_counter()
    res = Result(case.family, case.id, case.expect, "ok")
    try:
        if case.setup is not None:
            case.setup(tmp)
        if case.run is not None:
            out = case.run(tmp)
            res.outcome, res.code = out["outcome"], out.get("code")
            res.line, res.detail = out.get("line", ""), out.get("detail", "")
            res.extra = out.get("extra", {})
        elif case.expect == "api":
            res.outcome, res.line = judge_api(case, tmp)
        else:
            before = {p: digest(tmp / p) for p in case.protect}
            code, _, err, tb = run_cli(expand(case.argv, tmp), tmp)
            changed = [p for p in case.protect if digest(tmp / p) != before[p]]
            res.code = code
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            res.line = lines[-1][:400] if lines else ""
            if case.expect == "refused":
                res.outcome, res.detail = judge_refusal(code, err, tb, case.needle, changed)
                problem = case.check(tmp) if case.check else None
                if res.outcome == "ok" and problem:
                    res.outcome, res.detail = "data", problem
            else:  # accepted
                problem = case.check(tmp) if case.check else None
                if tb or "Traceback" in err:
                    res.outcome, res.detail = "traceback", tb.strip().splitlines()[-1][:300]
                elif code != 0:
                    res.outcome, res.detail = "wrong", f"exit code {code}"
                elif changed or problem:
                    res.outcome, res.detail = "data", problem or f"changed: {changed}"
    except Exception:  # the probe's own set-up: count it, do not stop
        res.outcome, res.detail = "traceback", "probe: " + traceback.format_exc()[-300:]
    res.seconds = round(time.perf_counter() - t0, 2)
    return res


def judge_api(case: Case, tmp: Path) -> tuple[str, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.call(tmp)
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if "\n" in text.strip():
            return "message", text.strip().splitlines()[0][:300]
        if case.needle and case.needle not in text:
            return "message", text[:300]
        return "ok", text[:300]
    except RuntimeError as exc:
        text = str(exc)
        if type(exc).__name__ == "HostModelError" and "\n" not in text:
            return ("ok" if case.needle in text else "message"), text[:300]
        return "traceback", f"{type(exc).__name__}: {text.strip().splitlines()[0][:200]}"
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return "traceback", f"{type(exc).__name__}: {first}"
    return "silent", "no error"


# --------------------------------------------------------------------------------------
# Helpers that damage files


def edit_record(line: int, fn: Callable[[dict], object], mode: str = "untargeted"):
    """Set-up: a finished run whose record ``line`` (0-based) is replaced by ``fn(record)``
    (a dict, or a str written as the raw line)."""

    def setup(tmp: Path) -> None:
        run = copy_run(tmp, mode)
        path = run / "results.jsonl"
        lines = path.read_text().splitlines()
        new = fn(json.loads(lines[line]))
        lines[line] = new if isinstance(new, str) else json.dumps(new)
        path.write_text("\n".join(lines) + "\n")

    return setup


def set_field(name: str, value):
    def fn(rec: dict) -> dict:
        rec = dict(rec)
        rec[name] = value
        return rec

    return fn


def drop_field(name: str):
    def fn(rec: dict) -> dict:
        rec = dict(rec)
        del rec[name]
        return rec

    return fn


def edit_info(fn: Callable[[dict], object]):
    def setup(tmp: Path) -> None:
        run = copy_run(tmp)
        path = run / "run.json"
        new = fn(json.loads(path.read_text()))
        path.write_text(new if isinstance(new, str) else json.dumps(new))

    return setup


def set_info(path: str, value):
    def fn(info: dict) -> dict:
        keys = path.split(".")
        d = info
        for k in keys[:-1]:
            d = d[k]
        if value is DELETE:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
        return info

    return fn


DELETE = object()


def deep(n: int) -> str:
    return "[" * n + "]" * n


def write_npz(**arrays):
    def setup(tmp: Path) -> None:
        run = copy_run(tmp)
        with open(run / "images.npz", "wb") as fh:
            np.savez(fh, **arrays)

    return setup


def raw_file(name: str, data: bytes):
    def setup(tmp: Path) -> None:
        run = copy_run(tmp)
        (run / name).unlink()
        (run / name).write_bytes(data)

    return setup


RECORD_FILES = ("run/run.json", "run/results.jsonl", "run/images.npz")


# --------------------------------------------------------------------------------------
# Models that break the contract


def onnx_model(path: Path, kind: str, batch: int | str = "N") -> Path:
    """A small ONNX classifier of 8x8x1 NCHW images in [0, 1] (the digits): a linear map to
    10 classes and a softmax, broken according to ``kind``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = 1 if kind == "k1" else 10
    w = np.random.default_rng(0).normal(size=(64, k)).astype(np.float32)
    if kind == "nan":
        w[:] = np.nan
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["z"]),
    ]
    out_shape: list = [batch, k]
    last = "z"
    if kind != "logits":
        nodes.append(helper.make_node("Softmax", ["z"], ["p"], axis=-1))
        last = "p"
    if kind == "rank3":
        nodes.append(helper.make_node("Unsqueeze", [last, "axes"], ["u"]))
        last, out_shape = "u", [batch, k, 1]
    inits = [numpy_helper.from_array(w, "w")]
    if kind == "rank3":
        inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes"))
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def zoo_variant(tmp: Path, kind: str) -> None:
    """A copy of digits-cnn under ``tmp/ckpt`` broken according to ``kind``."""
    from flax import serialization

    from onepixel_jax.zoo import models_dir

    src = models_dir() / "digits-cnn"
    dst = tmp / "ckpt"
    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    if kind in ("nan", "inf"):
        variables = serialization.msgpack_restore((dst / "params.msgpack").read_bytes())
        layer = next(iter(variables["params"].values()))
        name = "kernel" if "kernel" in layer else next(iter(layer))
        layer[name] = np.full_like(np.asarray(layer[name]), np.nan if kind == "nan" else np.inf)
        data = serialization.msgpack_serialize(variables)
        (dst / "params.msgpack").write_bytes(data)
        card["checkpoint_sha256"] = hashlib.sha256(data).hexdigest()
    elif kind == "k1":
        card["num_classes"] = 1
        card["class_names"] = ["only"]
        card["model_kwargs"].pop("num_classes", None)
    elif kind == "k3":
        card["num_classes"] = 3
        card["class_names"] = ["a", "b", "c"]
        card["model_kwargs"].pop("num_classes", None)
    elif kind == "deep":
        (dst / "card.json").write_text('{"a": ' + deep(100000) + "}")
        return
    (dst / "card.json").write_text(json.dumps(card))


# --------------------------------------------------------------------------------------
# Processes: interrupts and concurrent writers


def proc_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def cli_proc(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "onepixel_jax.cli", *argv],
        env=proc_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


CRASH_MARKS = ("Traceback", "pure virtual", "Segmentation fault", "core dumped", "Fatal Python")


def records_problem(run: Path) -> str | None:
    """None when every record of the folder reads back, checks and is there once."""
    from onepixel_jax.experiments import run_folder

    files = run_folder.results_files(run) if run.is_dir() else []
    if not (run / "run.json").exists():
        return "records without run.json" if files else None
    try:
        recs = run_folder.read_records(run)
    except Exception as exc:  # noqa: BLE001 - reported as data damage
        return f"{type(exc).__name__}: {exc}"[:300]
    lines = 0
    for path in files:
        complete = path.read_bytes().split(b"\n")[:-1]
        lines += sum(1 for ln in complete if ln.strip())
    if lines != len({run_folder.record_key(r) for r in recs}):
        return f"{lines} record lines for {len(recs)} distinct records (duplicates)"
    return None


def interrupt_case(sig: int, when: str, delay: float, resume: bool = False):
    """A real run interrupted by ``sig`` ``delay`` seconds after ``when`` ("start": the
    process started; "run.json": the run folder exists; "records": the first record is on
    disk; "done": every record is on disk, the report is being written). With ``resume``,
    the same command then runs to the end and every image must have its one record."""

    def run(tmp: Path) -> dict:
        out = tmp / "run"
        n = 6
        argv = [
            "attack", "--model", "digits-cnn", "--dataset", "digits", "--n-images", str(n),
            "--chunk-size", "2", *TINY, "--out", str(out),
        ]  # fmt: skip
        proc = cli_proc(argv)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if when == "start":
                break
            if when == "run.json" and (out / "run.json").exists():
                break
            res = out / "results.jsonl"
            lines = res.read_bytes().count(b"\n") if res.exists() else 0
            if when == "records" and lines >= 1:
                break
            if when == "done" and lines >= n:
                break
            time.sleep(0.01)
        time.sleep(delay)
        finished_first = proc.poll() is not None
        if not finished_first:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            return {"outcome": "traceback", "detail": "hung after the signal"}
        code = proc.returncode
        line = err.strip().splitlines()[-1] if err.strip() else ""
        problem = records_problem(out)
        extra = {"finished_before_the_signal": finished_first}
        if code == -sig and not err.strip() and not out.exists():
            # Ended by the signal's default action before the command started (while Python
            # imported the package): exit status 128 + sig for the shell, nothing written.
            return {"outcome": "ok", "code": 128 + sig, "line": "", "extra": extra}
        if any(m in err for m in CRASH_MARKS) or code < 0:
            return {"outcome": "traceback", "code": code, "line": line, "extra": extra}
        if problem:
            return {"outcome": "data", "code": code, "detail": problem, "extra": extra}
        want = 0 if finished_first else 128 + sig
        if code != want:
            return {"outcome": "message", "code": code, "line": line, "extra": extra}
        if resume:
            again = cli_proc(argv)
            _, err2 = again.communicate(timeout=300)
            problem = records_problem(out)
            done = (out / "results.jsonl").read_text().count("\n")
            if again.returncode != 0 or problem or done != n:
                detail = problem or f"resume: exit {again.returncode}, {done} records of {n}"
                return {"outcome": "data", "code": again.returncode, "detail": detail}
        return {"outcome": "ok", "code": code, "line": line, "extra": extra}

    return run


def concurrent_case(a: list[str], b: list[str], expect_both: bool = False):
    """Two real processes started together on one folder: unless ``expect_both`` (shares),
    exactly one is refused with code 2 and one line (or, for the same command, the second
    may resume the first's finished run); the records come from one config."""

    def run(tmp: Path) -> dict:
        procs = [cli_proc(expand(x, tmp)) for x in (a, b)]
        outs = [p.communicate(timeout=300) for p in procs]
        codes = [p.returncode for p in procs]
        errs = [e for _, e in outs]
        if any(any(m in e for m in CRASH_MARKS) for e in errs) or min(codes) < 0:
            return {"outcome": "traceback", "code": max(codes), "detail": str(codes)}
        run = tmp / "run"
        problem = records_problem(run)
        if problem:
            return {"outcome": "data", "detail": problem, "code": max(codes)}
        if expect_both:
            return {"outcome": "ok" if codes == [0, 0] else "wrong", "code": max(codes)}
        if codes == [0, 0] and a == b:
            return {"outcome": "ok", "code": 0, "detail": "the second resumed the first"}
        if sorted(codes) != [0, 2]:
            kind = "data" if codes == [0, 0] else "message"
            return {"outcome": kind, "code": max(codes), "detail": f"exit codes {codes}"}
        refused = errs[codes.index(2)].strip().splitlines()
        if len(refused) != 1:
            return {"outcome": "message", "code": 2, "detail": "not one line"}
        info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
        winner = expand(a if codes[0] == 0 else b, tmp)
        if "attack" in winner:
            seed = winner[winner.index("--seed") + 1] if "--seed" in winner else "0"
            if str(info.get("config", {}).get("seed")) != seed:
                return {"outcome": "data", "detail": "run.json is not the winner's", "code": 2}
        return {"outcome": "ok", "code": 2, "line": refused[0]}

    return run


def kill9_resume_case(tmp: Path) -> dict:
    out = tmp / "run"
    argv = attack_argv(str(out), n=10)
    proc = cli_proc(argv)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        res = out / "results.jsonl"
        if res.exists() and res.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = cli_proc(argv)
    _, err = again.communicate(timeout=300)
    if again.returncode != 0:
        return {"outcome": "wrong", "code": again.returncode, "line": err.strip()[-300:]}
    problem = records_problem(out)
    n = len((out / "results.jsonl").read_text().splitlines())
    if problem or n != 10:
        return {"outcome": "data", "detail": problem or f"{n} records for 10 images"}
    return {"outcome": "ok", "code": 0}


# --------------------------------------------------------------------------------------
# The cases


def data_cases() -> list[Case]:
    cases = []
    p = RECORD_FILES
    for name in ("run.json", "results.jsonl", "images.npz", ".lock"):
        cases.append(
            Case(
                "data",
                f"table-over-{name}",
                "refused",
                ["report", "{tmp}/run", "--table", f"{{tmp}}/run/{name}"],
                finished,
                "--table",
                p,
            )  # fmt: skip
        )
    for name in ("report.md", "summary.json"):
        cases.append(
            Case(
                "data",
                f"table-over-own-{name}",
                "refused",
                ["report", "{tmp}/run", "--table", f"{{tmp}}/run/{name}"],
                finished,
                "--table",
                p,
            )  # fmt: skip
        )

    def link(name: str, target: str):
        def setup(tmp: Path) -> None:
            copy_run(tmp)
            (tmp / name).symlink_to(tmp / target)

        return setup

    cases += [
        Case("data", "table-link-to-records", "refused",
             ["report", "{tmp}/run", "--table", "{tmp}/t.md"], link("t.md", "run/results.jsonl"),
             "--table", p),
        Case("data", "table-link-to-run-json", "refused",
             ["report", "{tmp}/run", "--table", "{tmp}/t.md"], link("t.md", "run/run.json"),
             "--table", p),
    ]  # fmt: skip

    def special(kind: str):
        def setup(tmp: Path) -> None:
            copy_run(tmp)
            if kind == "fifo":
                os.mkfifo(tmp / "t.md")
            elif kind == "chardev":
                os.mknod(tmp / "t.md", 0o644 | 0o020000, os.makedev(1, 3))
            elif kind == "socket":
                import socket

                s = socket.socket(socket.AF_UNIX)
                s.bind(str(tmp / "t.md"))
                s.close()

        return setup

    for kind in ("fifo", "chardev", "socket"):
        cases.append(
            Case(
                "data",
                f"table-{kind}",
                "refused",
                ["report", "{tmp}/run", "--table", "{tmp}/t.md"],
                special(kind),
                "not a regular file",
                (*p, "t.md"),
            )  # fmt: skip
        )
    cases.append(
        Case("data", "table-dev-null", "refused",
             ["report", "{tmp}/run", "--table", "/dev/null"], finished, "character device", p)
    )  # fmt: skip

    def outside_link(name: str):
        def setup(tmp: Path) -> None:
            run = copy_run(tmp)
            (tmp / "outside").write_text((run / name).read_text())
            (run / name).unlink()
            (run / name).symlink_to(tmp / "outside")

        return setup

    cases.append(
        Case(
            "data",
            "resume-results-symlink-outside",
            "refused",
            attack_argv("{tmp}/run"),
            outside_link("results.jsonl"),
            "symbolic link",
            ("outside", *p),
        )  # fmt: skip
    )

    def grow_link(tmp: Path) -> None:
        outside_link("results.jsonl")(tmp)

    cases.append(
        Case("data", "grow-results-symlink-outside", "refused",
             attack_argv("{tmp}/run", n=6), grow_link, "symbolic link", ("outside",))
    )  # fmt: skip
    cases.append(
        Case(
            "data",
            "report-reads-symlinked-results",
            "accepted",
            ["report", "{tmp}/run"],
            outside_link("results.jsonl"),
            protect=("outside",),
        )  # fmt: skip
    )

    def output_link(out_name: str, target: str):
        def setup(tmp: Path) -> None:
            run = copy_run(tmp)
            if (run / out_name).exists():
                (run / out_name).unlink()
            (run / out_name).symlink_to(run / target)

        return setup

    for out_name in ("fitness.png", "summary.json", "report.md", "examples.png"):
        cases.append(
            Case(
                "data",
                f"figure-link-{out_name}-to-records",
                "refused",
                ["report", "{tmp}/run"],
                output_link(out_name, "results.jsonl"),
                "symbolic link",
                p,
            )  # fmt: skip
        )

    def output_hardlink(out_name: str, target: str):
        def setup(tmp: Path) -> None:
            run = copy_run(tmp)
            if (run / out_name).exists():
                (run / out_name).unlink()
            os.link(run / target, run / out_name)

        return setup

    for out_name, target in (("fitness.png", "results.jsonl"), ("summary.json", "run.json")):
        cases.append(
            Case(
                "data",
                f"hardlink-{out_name}-to-{target}",
                "refused",
                ["report", "{tmp}/run"],
                output_hardlink(out_name, target),
                target,
                p,
            )  # fmt: skip
        )

    def fifo_in_run(name: str):
        def setup(tmp: Path) -> None:
            run = copy_run(tmp)
            (run / name).unlink()
            os.mkfifo(run / name)

        return setup

    for name in ("results.jsonl", "run.json", "images.npz"):
        cases.append(
            Case(
                "data",
                f"report-{name}-is-a-fifo",
                "refused",
                ["report", "{tmp}/run"],
                fifo_in_run(name),
                "fifo",
            )  # fmt: skip
        )
    cases.append(
        Case(
            "data",
            "resume-results-fifo",
            "refused",
            attack_argv("{tmp}/run"),
            fifo_in_run("results.jsonl"),
            "fifo",
        )  # fmt: skip
    )
    # Real processes on one folder.
    a = attack_argv("{tmp}/run", "--seed", "1", n=6)
    b = attack_argv("{tmp}/run", "--seed", "2", n=6)
    cases += [
        Case("data", "two-attacks-other-seeds", "concurrent", run=concurrent_case(a, b)),
        Case("data", "two-attacks-same-command", "concurrent", run=concurrent_case(a, a)),
        Case("data", "two-shares-side-by-side", "concurrent",
             run=concurrent_case(a + ["--shard", "0/2"], a + ["--shard", "1/2"], True)),
        Case("data", "same-share-twice", "concurrent",
             run=concurrent_case(a + ["--shard", "0/2"], a + ["--shard", "0/2"])),
        Case("data", "share-and-whole-folder", "concurrent",
             run=concurrent_case(a, a + ["--shard", "1/2"])),
        Case("data", "kill-9-then-resume", "concurrent", run=kill9_resume_case),
    ]  # fmt: skip
    fool = ["fool", "--model", "digits-cnn", "--generations", "3", "--popsize", "8",
            "--chunk", "1", "--out", "{tmp}/run"]  # fmt: skip
    cases.append(
        Case(
            "data",
            "two-fools-one-folder",
            "concurrent",
            run=concurrent_case(fool, fool + ["--seed", "3"]),
        )  # fmt: skip
    )
    return cases


def sizes_cases() -> list[Case]:
    big = [
        ("popsize-10**12", ["--popsize", str(10**12)], "--popsize"),
        ("popsize-2**31", ["--popsize", str(2**31)], "--popsize"),
        ("popsize-10**8", ["--popsize", str(10**8)], "--popsize"),
        ("max-iters-2**32", ["--max-iters", str(2**32)], "--max-iters"),
        ("max-iters-2**31", ["--max-iters", str(2**31 - 1)], "--max-iters"),
        ("max-iters-10**9", ["--max-iters", str(10**9)], "--max-iters"),
        ("chunk-size-10**9", ["--chunk-size", str(10**9)], "--chunk-size"),
        ("chunk-size-2**40", ["--chunk-size", str(2**40)], "--chunk-size"),
        ("n-images-10**12", ["--n-images", str(10**12)], "--n-images"),
        ("n-images-10**6", ["--n-images", str(10**6)], "--n-images"),
        ("batch-size-2**40", ["--batch-size", str(2**40)], "--batch-size"),
        ("pixels-10**9", ["--pixels", str(10**9)], "--pixels"),
        ("pixels-65", ["--pixels", "65"], "--pixels"),
        ("all-targets-chunk", ["--mode", "all-targets", "--chunk-size", str(10**8)], "--chunk"),
        ("seed-2**64", ["--seed", str(2**64)], "--seed"),
    ]
    cases = [
        Case("sizes", f"attack-{name}", "refused", attack_argv("{tmp}/run", *extra), None, needle)
        for name, extra, needle in big
    ]
    cases += [
        Case("sizes", "out-component-300", "refused", attack_argv("{tmp}/" + "x" * 300),
             None, "--out"),
        Case("sizes", "out-nested-component-256", "refused",
             attack_argv("{tmp}/a/" + "y" * 256 + "/run"), None, "--out"),
        Case("sizes", "out-path-5000", "refused",
             attack_argv("{tmp}/" + "/".join(["z" * 200] * 25)), None, "--out"),
        Case("sizes", "table-component-300", "refused",
             ["report", "{tmp}/run", "--table", "{tmp}/" + "t" * 300], finished, "--table"),
        Case("sizes", "demo-popsize-10**12", "refused",
             ["demo", "--popsize", str(10**12), "--out", "{tmp}/d"], None, "--popsize"),
        Case("sizes", "demo-max-iters-2**32", "refused",
             ["demo", "--max-iters", str(2**32), "--out", "{tmp}/d"], None, "--max-iters"),
    ]  # fmt: skip
    fool = ["fool", "--model", "digits-cnn", "--generations", "1", "--popsize", "4", "--chunk", "1"]
    for name, extra, needle in (
        ("max-hidden-10**9", ["--encoding", "cppn", "--max-hidden", str(10**9)], "--max-hidden"),
        ("max-hidden-5000", ["--encoding", "cppn", "--max-hidden", "5000"], "--max-hidden"),
        ("popsize-10**12", ["--popsize", str(10**12)], "--popsize"),
        ("cppn-popsize-10**9", ["--encoding", "cppn", "--popsize", str(10**9)], "--popsize"),
        ("chunk-2**40", ["--chunk", str(2**40)], "--chunk"),
        ("generations-2**40", ["--generations", str(2**40)], "--generations"),
    ):
        cases.append(
            Case(
                "sizes",
                f"fool-{name}",
                "refused",
                [*fool, *extra, "--out", "{tmp}/f"],
                None,
                needle,
            )  # fmt: skip
        )
    train = ["train", "--model", "digits-cnn", "--dataset", "digits", "--epochs", "1",
             "--train-limit", "64", "--eval-limit", "64"]  # fmt: skip
    for name, extra, needle in (
        ("dead-pixels-1000", ["--dead-pixels", "1000"], "--dead-pixels"),
        ("dead-pixels-65", ["--dead-pixel-rate", "0.5", "--dead-pixels", "65"], "--dead-pixels"),
        ("width-1e6", ["--width", "1e6"], "--width"),
        ("seed-2**40", ["--seed", str(2**40)], "--seed"),
    ):
        cases.append(
            Case(
                "sizes",
                f"train-{name}",
                "refused",
                [*train, *extra, "--out", "{tmp}/m"],
                None,
                needle,
            )  # fmt: skip
        )
    defend = ["defend", "fine-tune", "--model", "lenet-mnist", "--epochs", "1"]
    for name, extra, needle in (
        ("dead-pixels-1000", ["--dead-pixels", "1000", "--attack-images", "0"], "--dead-pixels"),
        ("attack-pixels-1000", ["--attack-pixels", "1000"], "--attack-pixels"),
        ("attack-popsize-10**12", ["--attack-popsize", str(10**12)], "--attack-popsize"),
        ("attack-iters-2**32", ["--attack-iters", str(2**32)], "--attack-iters"),
    ):
        cases.append(
            Case(
                "sizes",
                f"defend-{name}",
                "refused",
                [*defend, *extra, "--out", "{tmp}/d"],
                None,
                needle,
                check=None,
            )  # fmt: skip
        )
    return cases


BAD_RECORD_VALUES = {
    "method": [5, None, "", []],
    "index": ["abc", -1, 1.5, True, 99999, 2**40, None],
    "label": ["x", -1, 10, 2**32 + 3, None, 7.0],
    "target": [3, "x"],
    "success": ["no", "yes", 1, 0, None],
    "predicted": [10, -1, "0", 1.0, 2**32],
    "queries": [-5, "many", 1e3, None],
    "pixels": [[], [[8, 0, 1]], [[0, 8, 1]], [[0, 0, 300]], [[0, 0]], "x", [[0, 0, 1, 2]],
               [[0.5, 0, 1]], [[0, 0, -1]], None],
    "probs": [None, [], [0.5] * 10, [math.nan] * 10, [0.1] * 9, ["a"] * 10, [2.0] + [0.0] * 9,
              [-0.5, 1.5] + [0.0] * 8],
    "original_probs": [None, [], [1.0] * 10],
    "fitness": [[], None, "x", [math.nan], [1.0] * 1000, [[1.0]]],
    "distortion": [-1, "x"],
    "seconds": [-1, "x"],
    "position": [-1, "x"],
    "original_values": [[[300]], "x", [[1, 2]]],
}  # fmt: skip
RECORD_FIELDS = ("method", "index", "label", "target", "success", "predicted", "queries",
                 "pixels", "probs", "original_probs", "fitness")  # fmt: skip


def records_cases() -> list[Case]:
    report = ["report", "{tmp}/run"]
    resume = attack_argv("{tmp}/run")
    contexts = (("report", report), ("resume", resume))
    cases = []
    for fld, values in BAD_RECORD_VALUES.items():
        for i, value in enumerate(values):
            for ctx, argv in contexts:
                if ctx == "resume" and i % 2:  # every other value on resume as well
                    continue
                cases.append(
                    Case("records", f"{ctx}-record-{fld}-{i}", "refused", argv,
                         edit_record(0, set_field(fld, value)), "results.jsonl", RECORD_FILES)
                )  # fmt: skip
    # the label of image 0 changed to another class (not the run's label)
    cases.append(
        Case(
            "records",
            "report-record-foreign-label",
            "refused",
            report,
            edit_record(1, lambda r: dict(r, label=(r["label"] + 1) % 10)),
            "label",
            RECORD_FILES,
        )  # fmt: skip
    )
    for fld in RECORD_FIELDS:
        for ctx, argv in contexts:
            cases.append(
                Case(
                    "records",
                    f"{ctx}-record-lacks-{fld}",
                    "refused",
                    argv,
                    edit_record(0, drop_field(fld)),
                    fld,
                    RECORD_FILES,
                )  # fmt: skip
            )
    lines = {
        "not-an-object": "[1, 2, 3]",
        "a-string": '"record"',
        "a-number": "42",
        "garbage": "\x00{not json",
        "deep-100000": '{"index": ' + deep(100000) + "}",
        "deep-1000": '{"index": ' + deep(1000) + "}",
        "huge-int": '{"index": ' + "9" * 6000 + "}",
        "nan-token": '{"index": NaN}',
        "half-a-line": '{"method": "de", "index": 0, "lab',
    }
    for name, text in lines.items():
        for ctx, argv in contexts:
            cases.append(
                Case(
                    "records",
                    f"{ctx}-line-{name}",
                    "refused",
                    argv,
                    edit_record(0, lambda r, t=text: t),
                    "line 1",
                    RECORD_FILES,
                )  # fmt: skip
            )
    # targeted runs: the target field
    targ = attack_argv("{tmp}/run", "--mode", "targeted")
    for i, value in enumerate([None, "x", -1, 10, 2**32 + 1]):
        cases.append(
            Case("records", f"report-targeted-target-{i}", "refused", report,
                 edit_record(0, set_field("target", value), "targeted"), "target", RECORD_FILES)
        )  # fmt: skip
    cases.append(
        Case(
            "records",
            "report-targeted-target-is-label",
            "refused",
            report,
            edit_record(0, lambda r: dict(r, target=r["label"]), "targeted"),
            "target",
            RECORD_FILES,
        )  # fmt: skip
    )
    cases.append(
        Case("records", "resume-targeted-target-null", "refused", targ,
             edit_record(0, set_field("target", None), "targeted"), "target", RECORD_FILES)
    )  # fmt: skip
    # run.json
    info_cases = {
        "no-model": set_info("config.model", DELETE),
        "model-5": set_info("config.model", 5),
        "no-dataset": set_info("config.dataset", DELETE),
        "mode-sideways": set_info("config.mode", "sideways"),
        "n-images-string": set_info("config.n_images", "4"),
        "n-images-0": set_info("config.n_images", 0),
        "n-images-vs-indices": set_info("config.n_images", 3),
        "popsize-string": set_info("config.popsize", "20"),
        "seed-negative": set_info("config.seed", -1),
        "seed-2**40": set_info("config.seed", 2**40),
        "methods-empty": set_info("config.methods", []),
        "methods-twice": set_info("config.methods", ["de", "de"]),
        "methods-string": set_info("config.methods", "de"),
        "early-stop-never": set_info("config.early_stop", "never"),
        "threshold-2": set_info("config.threshold", 2.0),
        "config-list": set_info("config", [1, 2]),
        "indices-string": set_info("indices", "0,1,2,3"),
        "indices-duplicate": set_info("indices", [0, 0, 1, 2]),
        "indices-negative": set_info("indices", [-1, 1, 2, 3]),
        "indices-float": set_info("indices", [0.0, 1, 2, 3]),
        "labels-short": set_info("labels", [0, 8]),
        "labels-range": set_info("labels", [0, 8, 8, 2**32 + 3]),
        "num-classes-1": set_info("num_classes", 1),
        "num-classes-string": set_info("num_classes", "10"),
        "no-num-classes": set_info("num_classes", DELETE),
        "class-names-3": set_info("class_names", ["a", "b", "c"]),
        "image-shape-2d": set_info("image_shape", [8, 8]),
        "image-shape-string": set_info("image_shape", "8x8"),
        "split-size-2": set_info("split_size", 2),
        "true-labels-short": set_info("true_labels", [1]),
        "model-card-list": set_info("model_card", [1]),
        "sha-number": set_info("model_sha256", 5),
        "include-misclassified-yes": set_info("config.include_misclassified", "yes"),
        "deep": lambda info: '{"config": ' + deep(100000) + "}",
        "not-json": lambda info: "{oops",
        "a-list": lambda info: "[1, 2]",
        "empty": lambda info: "",
        "utf16": lambda info: json.dumps(info).encode("utf-16").decode("latin-1"),
    }
    for name, fn in info_cases.items():
        for ctx, argv in contexts:
            cases.append(
                Case(
                    "records",
                    f"{ctx}-run-json-{name}",
                    "refused",
                    argv,
                    edit_info(fn),
                    "run",
                    RECORD_FILES,
                )  # fmt: skip
            )
    npz = {
        "other-image-size": dict(indices=np.arange(4), images=np.zeros((4, 9, 9, 1), np.uint8)),
        "float-images": dict(indices=np.arange(4), images=np.zeros((4, 8, 8, 1), np.float32)),
        "foreign-indices": dict(
            indices=np.arange(100, 104), images=np.zeros((4, 8, 8, 1), np.uint8)
        ),
        "mismatched": dict(indices=np.arange(3), images=np.zeros((4, 8, 8, 1), np.uint8)),
        "float-indices": dict(indices=np.arange(4.0), images=np.zeros((4, 8, 8, 1), np.uint8)),
        "pickled-object": dict(indices=np.array([{"a": 1}], dtype=object), images=np.zeros(1)),
        "no-images": dict(indices=np.arange(4)),
    }  # fmt: skip
    for name, arrays in npz.items():
        for ctx, argv in contexts:
            cases.append(
                Case(
                    "records",
                    f"{ctx}-images-npz-{name}",
                    "refused",
                    argv,
                    write_npz(**arrays),
                    "images.npz",
                    RECORD_FILES,
                )  # fmt: skip
            )
    for name, data in (
        ("garbage", b"\x00garbage"),
        ("empty", b""),
        ("truncated-zip", b"PK\x03\x04"),
    ):
        for ctx, argv in contexts:
            cases.append(
                Case(
                    "records",
                    f"{ctx}-images-npz-{name}",
                    "refused",
                    argv,
                    raw_file("images.npz", data),
                    "images.npz",
                    RECORD_FILES,
                )  # fmt: skip
            )
    return cases


def contract_cases() -> list[Case]:
    cases = []

    def zoo(kind: str):
        return lambda tmp: zoo_variant(tmp, kind)

    for kind, needle in (("nan", "NaN"), ("inf", "NaN or infinite"), ("k1", "num_classes"),
                         ("k3", "num_classes"), ("deep", "card")):  # fmt: skip
        cases.append(
            Case("contract", f"attack-zoo-{kind}", "refused",
                 attack_argv("{tmp}/run", "--model", "{tmp}/ckpt"), zoo(kind), needle)
        )  # fmt: skip
        cases.append(
            Case(
                "contract",
                f"fool-zoo-{kind}",
                "refused",
                [
                    "fool",
                    "--model",
                    "{tmp}/ckpt",
                    "--generations",
                    "1",
                    "--popsize",
                    "4",
                    "--out",
                    "{tmp}/f",
                ],
                zoo(kind),
                needle,
            )  # fmt: skip
        )
    have_onnx = True
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        have_onnx = False
    if have_onnx:
        for kind, batch, needle in (
            ("probs", 1, "fixed batch size of 1"),
            ("k1", "N", "class"),
            ("rank3", "N", "shape"),
            ("logits", "N", "logits"),
            ("nan", "N", "NaN"),
        ):
            name = f"{kind}-batch{batch}"
            setup = lambda tmp, k=kind, b=batch: onnx_model(tmp / "m.onnx", k, b)  # noqa: E731
            cases.append(
                Case("contract", f"attack-onnx-{name}", "refused",
                     attack_argv("{tmp}/run", "--model", "{tmp}/m.onnx"), setup, needle)
            )  # fmt: skip
        cases.append(
            Case(
                "contract",
                "attack-onnx-good",
                "accepted",
                attack_argv("{tmp}/run", "--model", "{tmp}/m.onnx"),
                lambda tmp: onnx_model(tmp / "m.onnx", "probs"),
                check=lambda tmp: records_problem(tmp / "run"),
            )  # fmt: skip
        )
        cases.append(
            Case("contract", "attack-onnx-not-onnx", "refused",
                 attack_argv("{tmp}/run", "--model", "{tmp}/m.onnx"),
                 lambda tmp: (tmp / "m.onnx").write_bytes(b"\x00not a model"), "ONNX")
        )  # fmt: skip
    # the API: from_numpy / check_model / HostTarget
    import onepixel_jax as opj
    from onepixel_jax.targets.contract import check_model

    x = np.zeros((2, 8, 8, 1), np.uint8)

    def numpy_fn(kind: str):
        def fn(b):
            n = len(b)
            if kind == "k1":
                return np.ones((n, 1), np.float32)
            if kind == "rank3":
                return np.full((n, 10, 1), 0.1, np.float32)
            if kind == "nan":
                return np.full((n, 10), np.nan, np.float32)
            if kind == "inf":
                return np.full((n, 10), np.inf, np.float32)
            if kind == "logits":
                return np.full((n, 10), 3.0, np.float32)
            if kind == "negative":
                return np.tile(np.array([-0.5, 1.5] + [0.0] * 8, np.float32), (n, 1))
            if kind == "batch1":
                if n != 1:
                    raise ValueError("this model takes one image at a time")
                return np.full((1, 10), 0.1, np.float32)
            if kind == "wrong-batch":
                return np.full((n + 1, 10), 0.1, np.float32)
            if kind == "list":
                return [["a"] * 10] * n
            if kind == "none":
                return None
            return np.full((n, 10), 0.1, np.float32)

        fn.__name__ = f"probe_{kind}"
        return fn

    for kind, needle in (("k1", "class"), ("rank3", "shape"), ("nan", "NaN"), ("inf", "NaN"),
                         ("logits", "logits"), ("negative", "probabilities"),
                         ("batch1", "batch"), ("wrong-batch", "shape"), ("list", "probe_list"),
                         ("none", "probe_none")):  # fmt: skip
        cases.append(
            Case("contract", f"api-check-from-numpy-{kind}", "api", needle=needle,
                 call=lambda tmp, k=kind: check_model(opj.targets.from_numpy(numpy_fn(k)), x))
        )  # fmt: skip
        cases.append(
            Case("contract", f"api-attack-from-numpy-{kind}", "api", needle="",
                 call=lambda tmp, k=kind: opj.attack(
                     opj_key(), opj.targets.from_numpy(numpy_fn(k)), x, np.array([0, 1]),
                     opj.AttackConfig(popsize=8, max_iters=1), progress=False))
        )  # fmt: skip
    cases.append(
        Case("contract", "api-from-numpy-num-classes-1", "api", needle="num_classes",
             call=lambda tmp: opj.targets.from_numpy(numpy_fn("k1"), num_classes=1))
    )  # fmt: skip
    cases.append(
        Case("contract", "api-card-mismatch", "api", needle="num_classes",
             call=lambda tmp: check_model(opj.targets.from_numpy(numpy_fn("ok")), x,
                                          num_classes=3))
    )  # fmt: skip
    if have_onnx:
        for kind, batch, needle in (("k1", "N", "num_classes"),):
            cases.append(
                Case("contract", f"api-from-onnx-{kind}", "api", needle=needle,
                     call=lambda tmp, k=kind, b=batch: opj.targets.from_onnx(
                         onnx_model(tmp / "m.onnx", k, b)))
            )  # fmt: skip
        for kind, batch, needle in (("probs", 1, "fixed batch"), ("logits", "N", "logits"),
                                    ("rank3", "N", "shape")):  # fmt: skip
            cases.append(
                Case("contract", f"api-onnx-{kind}-batch{batch}-check", "api", needle=needle,
                     call=lambda tmp, k=kind, b=batch: opj.targets.from_onnx(
                         onnx_model(tmp / "m.onnx", k, b)).check(x))
            )  # fmt: skip

    def raising(after: int):
        calls = {"n": 0}

        def fn(b):
            calls["n"] += 1
            if calls["n"] > after:
                raise RuntimeError("the model server went away")
            return np.full((len(b), 10), 0.1, np.float32)

        fn.__name__ = "flaky_model"
        return fn

    for after in (0, 2, 4):
        cases.append(
            Case("contract", f"api-host-model-raises-after-{after}", "api", needle="flaky_model",
                 call=lambda tmp, a=after: opj.attack(
                     opj_key(), opj.targets.from_numpy(raising(a)), x, np.array([0, 1]),
                     opj.AttackConfig(popsize=8, max_iters=3), progress=False))
        )  # fmt: skip
    return cases


def opj_key():
    import jax

    return jax.random.key(0)


def arguments_cases() -> list[Case]:
    cases = []
    for name, value in (("garbage", "garbage"), ("no-port", "localhost"), ("port-0", "host:0"),
                        ("port-big", "host:99999"), ("port-text", "host:http"),
                        ("empty-host", ":1234"), ("spaces", "my host:1234"),
                        ("url", "http://host:1234")):  # fmt: skip
        cases.append(
            Case(
                "arguments",
                f"coordinator-{name}",
                "refused",
                attack_argv("{tmp}/run", "--distributed", "--coordinator-address", value),
                None,
                "--coordinator-address",
            )  # fmt: skip
        )
    cases.append(
        Case(
            "arguments",
            "process-id-above-count",
            "refused",
            attack_argv("{tmp}/run", "--num-processes", "2", "--process-id", "5"),
            None,
            "--process-id",
        )  # fmt: skip
    )
    fool = ["fool", "--model", "digits-cnn", "--generations", "1", "--popsize", "4", "--chunk", "1"]
    for flag in (
        "--eta",
        "--weight-sigma",
        "--mutation-rate",
        "--rate-decay",
        "--min-rate",
        "--crossover-rate",
        "--add-node-rate",
        "--add-connection-rate",
        "--threshold",
    ):
        for value in ("nan", "inf", "-inf"):
            cases.append(
                Case("arguments", f"fool{flag}-{value}", "refused",
                     [*fool, flag, value, "--out", "{tmp}/f"], None, flag)  # fmt: skip
            )  # fmt: skip
    for flag, value, needle in (("--mutation-rate", "2", "mutation_rate"),
                                ("--eta", "-1", "eta"), ("--weight-sigma", "0", "weight_sigma"),
                                ("--rate-decay", "0", "rate_decay"),
                                ("--threshold", "0", "threshold"),
                                ("--max-hidden", "-1", "--max-hidden")):  # fmt: skip
        cases.append(
            Case(
                "arguments",
                f"fool{flag}-{value}",
                "refused",
                [*fool, flag, value, "--out", "{tmp}/f"],
                None,
                needle,
            )  # fmt: skip
        )
    train = ["train", "--model", "digits-cnn", "--dataset", "digits", "--epochs", "1",
             "--train-limit", "64", "--eval-limit", "64"]  # fmt: skip
    for flag, value in (("--lr", "nan"), ("--width", "inf"), ("--dropout", "1.5"),
                        ("--input-dropout", "-0.1"), ("--label-smoothing", "1"),
                        ("--dead-pixel-rate", "2"), ("--weight-decay", "-1"),
                        ("--time-budget", "-5")):  # fmt: skip
        cases.append(
            Case(
                "arguments",
                f"train{flag}-{value}",
                "refused",
                [*train, flag, value, "--out", "{tmp}/m"],
                None,
                "",
                check=None,
            )  # fmt: skip
        )

    def leaves_nothing(tmp: Path) -> str | None:
        return None if not (tmp / "m").exists() else "left files behind"

    cases.append(
        Case(
            "arguments",
            "train-mnist-missing-leaves-nothing",
            "refused",
            [
                "train",
                "--model",
                "lenet",
                "--dataset",
                "mnist",
                "--epochs",
                "1",
                "--data-dir",
                "{tmp}/empty",
                "--out",
                "{tmp}/m",
            ],
            lambda tmp: (tmp / "empty").mkdir(),
            "not found",
        )  # fmt: skip
    )

    def damaged_cifar(tmp: Path) -> None:
        (tmp / "data" / "cifar10").mkdir(parents=True)
        (tmp / "data" / "cifar10" / "test_first1000.npz").write_bytes(b"\x00not an npz")

    cases.append(
        Case(
            "arguments",
            "demo-damaged-cifar10-is-named",
            "refused",
            ["demo", "--data-dir", "{tmp}/data", "--out", "{tmp}/d", "--quiet"],
            damaged_cifar,
            "CIFAR-10",
        )  # fmt: skip
    )

    def damaged_python_batch(tmp: Path) -> None:
        folder = tmp / "data" / "cifar10" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        (folder / "test_batch").write_bytes(b"\x80\x03garbage")

    cases.append(
        Case(
            "arguments",
            "attack-damaged-cifar10-python-batch-is-named",
            "refused",
            [
                "attack",
                "--model",
                "allconv-cifar10",
                "--dataset",
                "cifar10",
                "--data-dir",
                "{tmp}/data",
                "--n-images",
                "1",
                "--popsize",
                "8",
                "--max-iters",
                "1",
                "--quiet",
                "--out",
                "{tmp}/run",
            ],
            damaged_python_batch,
            "test_batch: corrupt pickle",
        )  # fmt: skip
    )

    def idx(path: Path, array: np.ndarray, code: int) -> None:
        dtype = {0x08: ">u1", 0x0C: ">i4", 0x0E: ">f8"}[code]
        dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        header = bytes([0, 0, code, array.ndim]) + dims
        path.write_bytes(header + np.asarray(array).astype(dtype).tobytes())

    def mnist_labels(value: float, code: int):
        def setup(tmp: Path) -> None:
            d = tmp / "data" / "mnist"
            d.mkdir(parents=True)
            idx(d / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), 0x08)
            idx(d / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, value]), code)

        return setup

    for value, code in ((2**40, 0x0E), (2**32 + 3, 0x0E), (3.5, 0x0E), (-1, 0x0C), (10, 0x08),
                        (255, 0x08), (2**31 - 1, 0x0C)):  # fmt: skip
        cases.append(
            Case("arguments", f"dataset-label-{value}", "refused",
                 attack_argv("{tmp}/run", "--model", "lenet-mnist", "--dataset", "mnist",
                             "--data-dir", "{tmp}/data"), mnist_labels(value, code), "label")
        )  # fmt: skip
    cases.append(
        Case(
            "arguments",
            "defend-fine-tune-refused-leaves-nothing",
            "refused",
            [
                "defend",
                "fine-tune",
                "--model",
                "lenet-mnist",
                "--data-dir",
                "{tmp}/empty",
                "--out",
                "{tmp}/d",
            ],
            lambda tmp: (tmp / "empty").mkdir(),
            "",
            check=None,
        )  # fmt: skip
    )

    def nothing_left(name: str):
        def check(tmp: Path) -> str | None:
            return f"{name} left behind" if (tmp / name).exists() else None

        return check

    # refusals must not leave folders behind: checked through protect on the parent
    for case in cases:
        if case.id.startswith(("train", "defend")) and case.check is None:
            case.check = nothing_left("m" if case.id.startswith("train") else "d")
    return cases


def api_cases() -> list[Case]:
    import onepixel_jax as opj
    from onepixel_jax.experiments import SweepConfig, load_run, run_sweep
    from onepixel_jax.experiments.lock import RunFolderLock
    from onepixel_jax.fooling.run import FoolConfig

    images, labels, _ = opj.data.load("digits", "test", limit=4)
    predict_fn, card = opj.models.load("digits-cnn")
    cfg = opj.AttackConfig(popsize=8, max_iters=1)

    def attack_labels(values):
        return lambda tmp: opj.attack(
            opj_key(),
            predict_fn,
            images[: len(values)],
            np.array(values, np.int64),
            cfg,
            progress=False,
        )

    cases = [
        Case("api", "attack-labels-2**32+3", "api", needle="labels",
             call=attack_labels([2**32 + 3, 0, 0, 0])),
        Case("api", "attack-labels-2**40", "api", needle="labels",
             call=attack_labels([2**40, 0, 0, 0])),
        Case("api", "attack-labels-float", "api", needle="labels",
             call=lambda tmp: opj.attack(opj_key(), predict_fn, images, labels + 0.5, cfg)),
        Case("api", "attack-targets-2**32+1", "api", needle="targets",
             call=lambda tmp: opj.attack(
                 opj_key(), predict_fn, images, labels,
                 opj.AttackConfig(popsize=8, max_iters=1, targeted=True),
                 targets=np.array([2**32 + 1] * 4, np.int64), progress=False)),
    ]  # fmt: skip
    sweep_cfg = SweepConfig("digits-cnn", "digits", n_images=2, popsize=8, max_iters=1)

    def sweep_labels(value):
        def call(tmp: Path):
            bad = np.array(labels, np.int64)
            bad[0] = value
            run_sweep(sweep_cfg, tmp / "run", predict_fn, images, bad, card=card)

        return call

    for value in (2**32 + 3, 2**40, -1, 10):
        cases.append(
            Case("api", f"run-sweep-label-{value}", "api", needle="label",
                 call=sweep_labels(value))
        )  # fmt: skip
    cases.append(
        Case("api", "run-sweep-nan-model", "api", needle="NaN",
             call=lambda tmp: run_sweep(sweep_cfg, tmp / "run",
                                        lambda b: predict_fn(b) * np.nan, images, labels))
    )  # fmt: skip

    def locked_twice(tmp: Path):
        with RunFolderLock(tmp / "run"):
            run_sweep(sweep_cfg, tmp / "run", predict_fn, images, labels, card=card)

    cases.append(Case("api", "run-sweep-folder-in-use", "api", needle="being written",
                      call=locked_twice))  # fmt: skip

    def load_damaged(tmp: Path):
        edit_record(0, set_field("success", "no"))(tmp)
        load_run(tmp / "run")

    cases.append(Case("api", "load-run-success-no", "api", needle="success", call=load_damaged))
    for name, kwargs in (("seed", {"seed": 2**32}), ("mode", {"mode": "sideways"}),
                         ("n_images", {"n_images": "4"}), ("popsize", {"popsize": 2.5}),
                         ("methods", {"methods": ("de", "nope")})):  # fmt: skip
        cases.append(
            Case("api", f"sweep-config-{name}", "api", needle=name,
                 call=lambda tmp, k=kwargs: SweepConfig("m", "d", **k))
        )  # fmt: skip
    for name, value in (("eta", math.nan), ("eta", math.inf), ("weight_sigma", math.nan),
                        ("mutation_rate", math.nan), ("max_hidden", 10**9),
                        ("popsize", 2.5), ("threshold", math.nan)):  # fmt: skip
        cases.append(
            Case("api", f"fool-config-{name}-{value}", "api", needle=name,
                 call=lambda tmp, n=name, v=value: FoolConfig(model="m", **{n: v}).validate())
        )  # fmt: skip
    cases.append(
        Case("api", "attack-images-nan", "api", needle="images",
             call=lambda tmp: opj.attack(opj_key(), predict_fn, images * np.nan, labels))
    )  # fmt: skip
    return cases


def interrupt_cases() -> list[Case]:
    cases = []
    plan = [
        ("start", 0.15, False), ("start", 0.5, False), ("start", 1.0, False),
        ("run.json", 0.0, False), ("run.json", 0.3, False), ("records", 0.0, True),
        ("records", 0.2, False), ("done", 0.0, False), ("done", 0.2, False),
    ]  # fmt: skip
    for sig in (signal.SIGINT, signal.SIGTERM):
        for when, delay, resume in plan:
            name = f"{signal.Signals(sig).name}-{when}+{delay:g}s" + ("-resumed" if resume else "")
            case = Case(
                "interrupts", name, "interrupt", run=interrupt_case(sig, when, delay, resume)
            )
            cases.append(case)
    return cases


# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="write every case's outcome to this JSON file")
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these")
    p.add_argument("-k", default=None, help="only cases whose id contains this")
    p.add_argument("--list", action="store_true", help="list the cases and stop")
    args = p.parse_args(argv)

    global FIX
    work = Path(tempfile.mkdtemp(prefix="hostile-probe-"))
    FIX = Fixtures(work / "fixtures")
    FIX.root.mkdir()
    builders = {
        "data": data_cases,
        "sizes": sizes_cases,
        "records": records_cases,
        "contract": contract_cases,
        "arguments": arguments_cases,
        "interrupts": interrupt_cases,
        "api": api_cases,
    }
    cases = [
        c for fam, build in builders.items() if fam in (args.family or FAMILIES) for c in build()
    ]
    if args.k:
        cases = [c for c in cases if args.k in c.id]
    if args.list:
        for c in cases:
            print(f"{c.family:10s} {c.expect:10s} {c.id}")
        print(f"{len(cases)} cases")
        return 0
    results: list[Result] = []
    t0 = time.perf_counter()
    try:
        for i, case in enumerate(cases):
            tmp = work / f"case-{i:04d}"
            tmp.mkdir()
            res = run_case(case, tmp)
            res.line = res.line.replace(str(tmp), "{tmp}").replace(str(work), "{work}")
            res.detail = res.detail.replace(str(tmp), "{tmp}").replace(str(work), "{work}")
            results.append(res)
            mark = "." if res.outcome == "ok" else res.outcome[0].upper()
            print(mark, end="", flush=True)
            if res.outcome != "ok":
                print(f"\n  {res.family}/{res.id}: {res.outcome} ({res.detail or res.line})")
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    wall = time.perf_counter() - t0
    print()
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        counts[r.family][r.outcome] += 1
    header = f"{'family':12s} {'cases':>5s} " + " ".join(f"{o:>9s}" for o in OUTCOMES)
    print(header)
    total: Counter = Counter()
    for fam in FAMILIES:
        if fam not in counts:
            continue
        c = counts[fam]
        total.update(c)
        row = " ".join(f"{c.get(o, 0):9d}" for o in OUTCOMES)
        print(f"{fam:12s} {sum(c.values()):5d} {row}")
    print(
        f"{'all':12s} {sum(total.values()):5d} "
        + " ".join(f"{total.get(o, 0):9d}" for o in OUTCOMES)
    )
    print(f"{len(results)} cases in {wall:.0f} s")
    if args.out:
        from onepixel_jax import provenance

        report = {
            "command": "python scripts/hostile_probe.py --out " + args.out,
            "created": provenance.utc_now(),
            "machine": provenance.machine_info(),
            "seconds": round(wall, 1),
            "families": FAMILIES,
            "outcomes": list(OUTCOMES),
            "counts": {fam: {o: counts[fam].get(o, 0) for o in OUTCOMES} for fam in counts},
            "total": {o: total.get(o, 0) for o in OUTCOMES},
            "cases": [r.__dict__ for r in results],
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if total.get("ok", 0) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
