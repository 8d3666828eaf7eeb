import atexit
import functools
import os
import shutil
import tempfile

import pytest

# Tests run on the CPU; keep XLA from grabbing every core's worth of threads per process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# A persistent compilation cache for this test process and the subprocesses its tests start
# (CLI runs, sharded and multi-process sweeps compile the programs the test process compiled
# already): a fresh directory per process, removed at exit, so no state outlives the run.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="onepixel-tests-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@functools.cache
def _zoo_init(arch: str, shape: tuple, seed: int, kwargs: tuple):
    import jax

    from onepixel_jax import models

    module = models.create(arch, **dict(kwargs))
    return module, models.init_variables(module, shape, jax.random.PRNGKey(seed))


@pytest.fixture(scope="session")
def zoo_init():
    """``zoo_init(arch, shape=None, seed=0, **fields) -> (module, variables)``: the zoo module
    ``models.create(arch, **fields)`` and ``models.init_variables(module, shape,
    PRNGKey(seed))`` (``shape``: the architecture's input shape by default), computed once
    per argument set for the whole session. Compiling a module's initialisation costs
    seconds, and many tests only need some network's weights. The containers are fresh
    copies; the arrays are shared (and immutable)."""
    import jax

    from onepixel_jax import models

    def init(arch: str, shape=None, seed: int = 0, **fields):
        shape = tuple(models.ARCHITECTURES[arch].input_shape if shape is None else shape)
        module, variables = _zoo_init(arch, shape, seed, tuple(sorted(fields.items())))
        return module, jax.tree_util.tree_map(lambda a: a, variables)

    return init
