"""A persistent compilation cache for the attack loop, on by default.

Compiling the attack loop takes seconds (more than the attack itself for a few images on a
GPU); JAX can keep compiled programs on disk so that the next process reuses them.
:func:`enable` points JAX's persistent cache at ``$XDG_CACHE_HOME/onepixel_jax/jax-cache``
(``~/.cache/...``) unless the program has chosen a directory itself
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``,
which are respected) or ``ONEPIXEL_COMPILATION_CACHE=0`` turns it off. ``opj.attack`` and the
``onepixel`` command call it; it is idempotent. In its own directory it keeps every program
that took at least :data:`MIN_COMPILE_SECONDS` to compile (JAX's default is 1 s). Programs with
host callbacks are never cached, so one device reports progress between loop segments rather
than from inside the loop.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = "ONEPIXEL_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
MIN_COMPILE_SECONDS = 0.05


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onepixel_jax" / "jax-cache"


def enable(path: str | os.PathLike | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns its directory, or ``None`` when it
    is off (``ONEPIXEL_COMPILATION_CACHE=0``). A directory the program set already is kept.
    ``path`` forces a directory."""
    if path is None and os.environ.get(ENV_VAR, "").strip().lower() in _OFF:
        return None
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:
        return str(current)
    target = Path(path) if path is not None else default_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable home: run without the cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(target))
    # our own directory: keep also the small programs around the loop (clean predictions,
    # decoding), which together cost about as much as the loop's compilation
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return str(target)


__all__ = ["ENV_VAR", "default_dir", "enable"]
