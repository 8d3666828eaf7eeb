"""Regenerate the golden records in this folder (``python tests/golden/make_golden.py``).

The golden set pins what the public API and the CLI produce for a fixed key on the bundled
``digits-cnn`` model and ``digits`` data: the paper DE, random search, all three sweep modes
and the fooling-image search, each on a few images at a tiny budget. ``test_golden.py``
recomputes every case and compares. Regenerate only when a change of results is intended,
and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from golden_cases import api_cases, cli_attack_cases, cli_fool_cases  # noqa: E402


def main() -> int:
    out = {"api": {}, "cli_attack": {}, "cli_fool": {}}
    for name, fn in api_cases().items():
        out["api"][name] = fn()
        print("api", name, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in cli_attack_cases().items():
            out["cli_attack"][name] = fn(Path(tmp) / name)
            print("cli attack", name, flush=True)
        for name, fn in cli_fool_cases().items():
            out["cli_fool"][name] = fn(Path(tmp) / ("fool-" + name))
            print("cli fool", name, flush=True)
    (HERE / "golden.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
