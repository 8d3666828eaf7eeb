"""Results for a fixed key stay what they were when ``tests/golden/golden.json`` was made.

Each case (API: paper DE in several modes and stop rules, best/1 with crossover, random
search; CLI: ``onepixel attack`` in all three modes with the random baseline, and
``onepixel fool`` with both encodings) is recomputed and compared: structure, integers,
booleans, strings and pixel tuples must be equal, floats equal within a relative 1e-4 (or 1e-7
absolute, for probabilities near zero).

Floats are not compared to the last digit because XLA's CPU kernels pick different instruction
paths on different processors: the same revision gives probabilities that differ in the sixth or
seventh significant digit from one x86 machine to the next. Any change of behaviour (another
pixel, another generation count, another stop) changes integers or floats far beyond that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN_DIR))

import golden_cases  # noqa: E402

GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text())


REL, ABS = 1e-4, 1e-7


def _mismatch(got, want, path="$"):
    """The first place where ``got`` differs from ``want`` (None when they agree)."""
    if isinstance(want, bool) or isinstance(got, bool):
        return None if got is want else f"{path}: {got!r} != {want!r}"
    if isinstance(want, float) or isinstance(got, float):
        if not isinstance(got, (int, float)) or not isinstance(want, (int, float)):
            return f"{path}: {got!r} != {want!r}"
        ok = abs(got - want) <= max(ABS, REL * max(abs(got), abs(want)))
        return None if ok else f"{path}: {got!r} != {want!r}"
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(set(got) ^ set(want)) if isinstance(got, dict) else type(got)
            return f"{path}: keys differ ({keys})"
        for k in sorted(want):
            m = _mismatch(got[k], want[k], f"{path}.{k}")
            if m:
                return m
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path}: length {len(got) if isinstance(got, list) else got!r} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            m = _mismatch(g, w, f"{path}[{i}]")
            if m:
                return m
        return None
    return None if got == want else f"{path}: {got!r} != {want!r}"


def test_comparison_catches_changes():
    want = {"n": 3, "p": [0.5, 1e-12], "ok": True, "px": [[1, 2]]}
    assert _mismatch({"n": 3, "p": [0.50000004, 1.3e-12], "ok": True, "px": [[1, 2]]}, want) is None
    assert _mismatch({"n": 4, "p": [0.5, 1e-12], "ok": True, "px": [[1, 2]]}, want) == "$.n: 4 != 3"
    assert _mismatch({"n": 3, "p": [0.501, 1e-12], "ok": True, "px": [[1, 2]]}, want)
    assert _mismatch({"n": 3, "p": [0.5, 1e-12], "ok": 1, "px": [[1, 2]]}, want)
    assert _mismatch({"n": 3, "p": [0.5], "ok": True, "px": [[1, 2]]}, want)
    assert _mismatch({"n": 3, "p": [0.5, 1e-12], "ok": True, "px": [[1, 3]]}, want)


def _roundtrip(obj):
    """The case's output as it would be stored (floats through JSON)."""
    return json.loads(json.dumps(obj, sort_keys=True))


@pytest.mark.parametrize("name", sorted(golden_cases.api_cases()))
def test_api_golden(name):
    got = _roundtrip(golden_cases.api_cases()[name]())
    assert _mismatch(got, GOLDEN["api"][name]) is None


@pytest.mark.parametrize("name", sorted(golden_cases.cli_attack_cases()))
def test_cli_attack_golden(name, tmp_path):
    got = _roundtrip(golden_cases.cli_attack_cases()[name](tmp_path / name))
    want = GOLDEN["cli_attack"][name]
    assert _mismatch(got["run"], want["run"]) is None
    assert len(got["records"]) == len(want["records"])
    for g, w in zip(got["records"], want["records"], strict=True):
        assert _mismatch(g, w) is None, (g["method"], g["index"], g["target"])


@pytest.mark.parametrize("name", sorted(golden_cases.cli_fool_cases()))
def test_cli_fool_golden(name, tmp_path, capsys):
    got = _roundtrip(golden_cases.cli_fool_cases()[name](tmp_path / name))
    assert _mismatch(got, GOLDEN["cli_fool"][name]) is None
