"""Where a result came from: machine, package versions, time and file checksums.

One place for the provenance fields that run folders, checkpoint cards, fooling runs and
benchmarks record. Pure standard library plus ``jax`` (imported lazily).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform

PACKAGES = ("onepixel-jax", "jax", "jaxlib", "flax", "optax", "numpy")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{"python": ..., package: version or "not installed"}``."""
    versions = {"python": platform.python_version()}
    for pkg in packages:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def machine_info() -> dict[str, object]:
    """Platform, processor, CPU count, JAX backend and devices of this process."""
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = ["machine_info", "package_versions", "sha256_bytes", "sha256_file", "utc_now"]
