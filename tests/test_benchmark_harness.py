"""The benchmark harness runs end to end (smoke settings) and reports sane figures."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


def test_bench_engine_quick(capsys):
    spec = importlib.util.spec_from_file_location("bench_engine", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [r.split("|")[2].strip() for r in rows] == ["2"]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        attack_s, bare_s, loop_s = (float(c) for c in cells[4:7])
        evals_per_s = float(cells[9].replace(",", ""))
        assert attack_s >= 0 and bare_s >= 0 and loop_s >= 0
        assert evals_per_s > 0
