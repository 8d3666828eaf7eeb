"""Results for a fixed key stay what they were when ``tests/golden/golden.json`` was made.

Each case (API: paper DE in several modes and stop rules, best/1 with crossover, random
search; CLI: ``onepixel attack`` in all three modes with the random baseline, and
``onepixel fool`` with both encodings) is recomputed and compared exactly: integers, booleans
and pixel tuples must be equal, and floats equal to the last stored digit.
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


def _roundtrip(obj):
    """The case's output as it would be stored (floats through JSON)."""
    return json.loads(json.dumps(obj, sort_keys=True))


@pytest.mark.parametrize("name", sorted(golden_cases.api_cases()))
def test_api_golden(name):
    got = _roundtrip(golden_cases.api_cases()[name]())
    assert got == GOLDEN["api"][name]


@pytest.mark.parametrize("name", sorted(golden_cases.cli_attack_cases()))
def test_cli_attack_golden(name, tmp_path):
    got = _roundtrip(golden_cases.cli_attack_cases()[name](tmp_path / name))
    want = GOLDEN["cli_attack"][name]
    assert got["run"] == want["run"]
    assert len(got["records"]) == len(want["records"])
    for g, w in zip(got["records"], want["records"], strict=True):
        assert g == w, (g["method"], g["index"], g["target"])


@pytest.mark.parametrize("name", sorted(golden_cases.cli_fool_cases()))
def test_cli_fool_golden(name, tmp_path, capsys):
    got = _roundtrip(golden_cases.cli_fool_cases()[name](tmp_path / name))
    assert got == GOLDEN["cli_fool"][name]
