"""The README's examples run as written: its Python blocks, and the `onepixel` lines of its
command-line example (in a scratch folder, so `runs/` is created there)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def example_blocks() -> list[str]:
    part = README.split("## Three examples", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|bash)\n(.*?)```", part, flags=re.S)


def test_the_readme_has_three_examples():
    kinds = [k for k, _ in example_blocks()]
    assert kinds == ["python", "bash", "python"], kinds


@pytest.mark.parametrize("index", [0, 2])
def test_python_example_runs(index, tmp_path, monkeypatch, capsys):
    kind, code = example_blocks()[index]
    assert kind == "python"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md example {index + 1}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out.split()
    assert printed, "the example prints its results"
    float(printed[0])  # a success rate comes first


def test_command_line_example_runs(tmp_path):
    kind, code = example_blocks()[1]
    assert kind == "bash"
    lines = code.replace("\\\n", " ").splitlines()
    commands = [shlex.split(line.split("#", 1)[0]) for line in lines if line.startswith("onepixel")]
    assert [c[1] for c in commands] == ["attack", "report"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for command in commands:
        argv = [sys.executable, "-m", "onepixel_jax.cli", *command[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "runs" / "digits-quick"
    assert (run / "report.md").is_file()
    assert len((run / "results.jsonl").read_text().splitlines()) == 40  # 20 images x 2 methods
