"""Drive a strategy's ask/tell by hand (shared by the per-strategy test files)."""

import jax
import jax.numpy as jnp
import numpy as np


def drive(strategy, key, generations, popsize, fitness_fn=None, image=None):
    """Candidates of ``generations`` steps (initial included), told random fitness; an
    image-aware strategy reads the clean ``image``."""
    rng = np.random.default_rng(0)
    fit = fitness_fn or (lambda g: jnp.asarray(rng.random(popsize), jnp.float32))
    extra = (jnp.asarray(image, jnp.float32),) if strategy.image_aware else ()
    genes = strategy.initial(key, (), *extra)
    state = strategy.init(key, genes, fit(genes), (), *extra)
    out = [np.asarray(genes)]
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    for g in range(1, generations):
        k = jax.random.fold_in(key, g)
        genes, state = ask(k, state, ())
        state = tell(k, genes, fit(genes), state, ())
        out.append(np.asarray(genes))
    return np.concatenate(out), state


def rand_image(h, w, c, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(np.float32)
