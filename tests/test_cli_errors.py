"""The command line's one error helper, its argument types, and its help texts."""

from __future__ import annotations

import argparse
import re

import pytest

from onepixel_jax.cli import build_parser, errors, main
from onepixel_jax.errors import UsageError
from onepixel_jax.files import DamagedFileError


def _run(func, capsys):
    code = errors.run_command("onepixel x", func, argparse.Namespace())
    return code, capsys.readouterr().err


def _raiser(exc):
    def func(args):
        raise exc

    return func


@pytest.mark.parametrize(
    "exc, line",
    [
        (UsageError("--n-images must be at least 1"), "--n-images must be at least 1"),
        (DamagedFileError("runs/a/run.json is not a JSON object"), "run.json is not a JSON"),
        (FileNotFoundError(2, "No such file or directory", "/x/y"), "/x/y: No such file"),
        (PermissionError(13, "Permission denied", "/root/z"), "/root/z: Permission denied"),
        (
            UsageError("dataset not found; looked in:\n  - /a\n  - /b\nPut files there."),
            "dataset not found; looked in: /a /b Put files there.",
        ),  # fmt: skip
    ],
)
def test_input_errors_are_one_line_and_exit_2(capsys, exc, line):
    code, err = _run(_raiser(exc), capsys)
    assert code == 2
    assert err == f"onepixel x: error: {line}\n" or (
        err.startswith("onepixel x: error: ") and line in err and err.count("\n") == 1
    )


def test_internal_errors_keep_their_traceback(capsys):
    with pytest.raises(RuntimeError, match="bug"):
        errors.run_command("onepixel x", _raiser(RuntimeError("bug")), argparse.Namespace())
    with pytest.raises(ValueError, match="plain"):  # a bare ValueError is not an input error
        errors.run_command("onepixel x", _raiser(ValueError("plain")), argparse.Namespace())
    assert capsys.readouterr().err == ""


def test_return_codes_and_interrupts(capsys):
    assert _run(lambda a: None, capsys) == (0, "")
    assert _run(lambda a: 3, capsys) == (3, "")
    code, err = _run(_raiser(KeyboardInterrupt()), capsys)
    assert code == 130 and err == "onepixel x: interrupted\n"


def test_wrapped_command_reports_like_main(capsys):
    wrapped = errors.command("onepixel y", _raiser(UsageError("bad")))
    assert wrapped(argparse.Namespace()) == 2
    assert capsys.readouterr().err == "onepixel y: error: bad\n"


def test_argparse_errors_are_one_line(capsys):
    assert main(["attack", "--model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("onepixel attack: error: argument --model")
    assert "(see onepixel attack --help)" in err


def test_help_exits_0_and_no_command_exits_2(capsys):
    assert main(["--help"]) == 0
    assert "attack" in capsys.readouterr().out
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, value",
    [("0", 0), ("4294967295", 2**32 - 1), (" 7 ", 7)],
)
def test_seed_accepts_uint32(text, value):
    assert errors.seed(text) == value


@pytest.mark.parametrize("text", ["-1", "4294967296", str(2**64), "1.5", "x", ""])
def test_seed_rejects_what_does_not_fit_uint32(text):
    with pytest.raises(argparse.ArgumentTypeError):
        errors.seed(text)


def test_int_at_least_and_finite_float():
    assert errors.int_at_least(1)("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1, got 0"):
        errors.int_at_least(1)("0")
    with pytest.raises(argparse.ArgumentTypeError, match="integer"):
        errors.int_at_least(1)("1e3")
    assert errors.finite_float("0.5") == 0.5
    for bad in ("nan", "inf", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            errors.finite_float(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="empty"):
        errors.non_empty("  ")


def test_check_output_dir(tmp_path):
    assert errors.check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        errors.check_output_dir(tmp_path / "f")
    with pytest.raises(UsageError, match=r"cannot be created \(.*f is not a directory\)"):
        errors.check_output_dir(tmp_path / "f" / "sub" / "run")
    with pytest.raises(UsageError, match="--out must not be empty"):
        errors.check_output_dir("")
    with pytest.raises(UsageError, match="--table .* is a directory"):
        errors.check_output_file(tmp_path, "--table")
    with pytest.raises(UsageError, match="cannot be created"):
        errors.check_output_file(tmp_path / "f" / "t.md", "--table")
    errors.check_output_file(tmp_path / "new" / "t.md", "--table")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_texts_have_no_markup_and_name_only_real_commands():
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) >= {"attack", "report", "demo", "models", "train", "fool"}
    texts = {"onepixel": parser.format_help()}
    texts.update({name: p.format_help() for name, p in commands.items()})
    for name, text in texts.items():
        assert "`" not in text, name
        assert ":func:" not in text and ":mod:" not in text, name
        for mentioned in re.findall(r"\bonepixel (\w+)", text):
            assert mentioned in commands, (name, mentioned)
