"""The shared vocabulary of the package: model functions and the three plug-in protocols.

Fitness convention: **attacks minimise**. Untargeted, the paper's fitness is ``p_true``;
targeted, ``1 - p_target``. NaN counts as the worst value (``+inf``).

- :data:`PredictFn`: ``(B, H, W, C)`` float32 in pixel space [0, 255] -> ``(B, K)``
  probabilities. JAX-traceable; models normalise inside.
- :class:`Strategy`: a search method as a tuple of pure functions (the evosax ask/tell
  contract, packaged the optax way). Shapes are per image; the engine ``vmap``s over images.
- :class:`Target`: evaluates candidate pixel tuples on their images (the default patches the
  pixels in and calls a ``PredictFn``; an incremental or host-side evaluator plugs in here).
- the objective (fitness, success, stop, the stall rule) is
  :class:`onepixel_jax.objective.Objective`, built from criteria.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

PredictFn = Callable[[jax.Array], jax.Array]
PyTree = Any


class Strategy(NamedTuple):
    """A search strategy over the genes of one image (``P`` candidates of ``D`` genes).

    Attributes:
      initial: ``initial(key, params) -> genes (P, D)``: the first population.
      init: ``init(key, genes, fitness, params) -> state`` from the evaluated first population.
      ask: ``ask(key, state, params) -> (genes (P, D), state)``: the next candidates.
      tell: ``tell(key, genes, fitness, state, params) -> state`` after evaluation.
      default_params: a pytree of traced hyperparameters (changing them does not recompile).
      image_aware: when ``True``, ``initial`` and ``init`` take one more argument, the clean
        image ``(H, W, C)`` float32 in pixel space (the attacker's own input: reading it does
        not query the model), as ``initial(key, params, image)`` and ``init(key, genes,
        fitness, params, image)``; ``ask`` and ``tell`` keep what they need in the state.

    ``key`` is the image's key for the current generation (``fold_in(image_key, g)``); a
    strategy splits it as it needs (``initial`` conventionally draws from ``split(key)[0]``).
    The engine keeps the best candidate seen (successful ones first) itself, so a strategy
    only keeps what its own search needs.
    """

    initial: Callable[..., jax.Array]
    init: Callable[..., PyTree]
    ask: Callable[..., tuple[jax.Array, PyTree]]
    tell: Callable[..., PyTree]
    default_params: PyTree
    image_aware: bool = False


class Target(NamedTuple):
    """How candidates are evaluated; one call per generation covers every slot.

    Attributes:
      prepare: ``prepare(images (S, H, W, C)) -> cache``: per-slot data computed once when an
        image enters a slot (for instance clean activations); may return ``()``.
      evaluate: ``evaluate(cache, images (S, H, W, C), pixels (S, P, d, 2 + C) int32) ->
        outputs``: the probabilities ``(S, P, K)`` of every candidate applied to its slot's
        image, or a mapping with ``"probs"`` and whatever else the target observes (a
        detector's score ``(S, P)``, say) for the objective's criteria.
    """

    prepare: Callable[[jax.Array], PyTree]
    evaluate: Callable[[PyTree, jax.Array, jax.Array], jax.Array]
