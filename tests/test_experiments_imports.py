"""Every module of the package imports on its own, no two modules import each other (imports
inside functions included), and no function shadows the module it lives in."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import onepixel_jax

PACKAGE = Path(onepixel_jax.__file__).resolve().parent
ROOT = PACKAGE.parent


def _modules() -> list[str]:
    names = ["onepixel_jax"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="onepixel_jax."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


def _path(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    pkg = PACKAGE / rel / "__init__.py"
    return pkg if pkg.exists() else (PACKAGE / rel).with_suffix(".py")


def _imports(module: str, known: set[str]) -> set[str]:
    """Package modules that ``module`` imports anywhere: at module level, inside functions,
    under ``try`` or ``if`` (an import deferred into a function still ties the two modules)."""
    tree = ast.parse(_path(module).read_text())
    is_pkg = _path(module).name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found: set[str] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Import):
            found.update(a.name for a in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                parent = ".".join(base[: len(base) - stmt.level + 1])
                target = f"{parent}.{stmt.module}" if stmt.module else parent
            else:
                target = stmt.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in stmt.names)
    return {m for m in found if m in known and m != module}


def _is_parent_package(parent: str, module: str) -> bool:
    return module.startswith(parent + ".") and _path(parent).name == "__init__.py"


def test_no_import_cycles_between_modules():
    names = _modules()
    known = set(names)
    graph = {m: _imports(m, known) for m in names}
    # A package's __init__ importing its own submodules is how packages expose their API;
    # only cycles through a module's own body count.
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not _is_parent_package(d, m)}
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in names:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def _all_imported_names(module: str) -> set[str]:
    """Every module name ``module`` imports anywhere, functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_report_and_sweep_do_not_import_each_other():
    report, sweep = "onepixel_jax.experiments.report", "onepixel_jax.experiments.sweep"
    assert sweep not in _all_imported_names(report)
    assert report not in _all_imported_names(sweep)
    assert not any(n.startswith("onepixel_jax.cli") for n in _all_imported_names(sweep))


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module imported first, with every package module unloaded before it (JAX and the
    other libraries stay loaded, so this is quick): no import works only in some order."""
    names = _modules()
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    for k in [k for k in sys.modules if k.split('.')[0] == 'onepixel_jax']:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad.append((name, repr(exc)))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_package_attribute_shadows_a_submodule():
    """``package.name`` is the submodule ``package/name.py`` wherever both exist (a function
    imported under a submodule's name, like ``search.jade``, hides the module)."""
    import importlib
    import types

    bad = []
    for name in _modules():
        if "." not in name:
            continue
        parent, _, last = name.rpartition(".")
        value = getattr(importlib.import_module(parent), last, None)
        if value is not None and not isinstance(value, types.ModuleType):
            bad.append(f"{parent}.{last} is a {type(value).__name__}, not the module")
    assert not bad, bad
