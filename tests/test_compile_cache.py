"""The persistent compilation cache: on by default in the user's cache directory, a second
process reuses the attack loop's compilation, and ONEPIXEL_COMPILATION_CACHE=0 turns it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import json, jax
from jax import monitoring
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None
)
import onepixel_jax as opj
p, _ = opj.models.load("digits-cnn")
x, y, _ = opj.data.load("digits", "test", limit=3)
res = opj.attack(jax.random.key(0), p, x, y, opj.AttackConfig(popsize=12, max_iters=3),
                 progress=lambda stats: None)
print(json.dumps({"hits": len(hits), "compile": res.compile_seconds,
                  "dir": jax.config.jax_compilation_cache_dir,
                  "pixels": res.pixels.tolist()}))
"""


def _run(env):
    proc = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_reuses_the_compiled_loop(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    first = _run(env)
    cache = tmp_path / "onepixel_jax" / "jax-cache"
    assert first["dir"] == str(cache)
    assert any(p.name.startswith("jit_run_loop") for p in cache.iterdir())  # the loop is kept
    second = _run(env)
    assert second["hits"] > first["hits"]  # read back from the cache
    assert second["pixels"] == first["pixels"]  # the same program, the same result
    assert second["compile"] < first["compile"]
    off = _run({**env, "ONEPIXEL_COMPILATION_CACHE": "0", "XDG_CACHE_HOME": str(tmp_path / "o")})
    assert off["dir"] is None and not (tmp_path / "o").exists()


def test_a_directory_the_program_chose_is_kept(tmp_path):
    import jax

    from onepixel_jax import compile_cache

    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        assert compile_cache.enable() == str(tmp_path / "mine")
        assert compile_cache.enable(tmp_path / "forced") == str(tmp_path / "forced")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
