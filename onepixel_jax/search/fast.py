"""The ``fast`` preset: a query-efficient search that ends in a continuous-colour phase.

One strategy, two phases; the phase is part of its state (one compiled loop, no host logic):

1. **search**: at ``d = 1`` the exhaustive corner scan (:mod:`.corner_scan`: every pixel with
   every corner of the colour cube, the most promising pixels first); at ``d > 1`` Sparse-RS
   (:mod:`.sparse_rs`) with one chain that makes ``popsize`` proposals per step and keeps the
   best, its schedule running over the phase's ``search_queries``.
2. **colour**: the search hands over (``d = 1``: after ``switch`` generations without
   improving the image's best fitness by more than :data:`GAIN_EPS`, or once the corner scan
   is complete; ``d > 1``: after ``search_queries``). The ``anchors`` most promising candidates
   found so far keep their pixel positions and search their colours over the whole cube: at
   ``d = 1`` the pixels whose best corner scored lowest, at ``d > 1`` the chain's point. Each
   anchor runs a (1 + lambda) evolution strategy on the ``d * C`` colour values of its pixels:
   Gaussian steps of ``sigma * 255`` per channel, clipped to ``[0, 255]``; half of a
   generation's candidates go to the best anchor, the other half round-robin to all of them
   (:func:`owners`). An anchor moves to its best candidate when that is strictly better; its
   ``sigma`` then grows by :data:`SIGMA_UP`, otherwise it shrinks by :data:`SIGMA_DOWN`. A
   corner pixel is often close to fooling the model; a colour inside the cube (not a corner)
   sometimes does it, which the corner scan alone cannot find.

**Giving up.** At ``d = 1`` the objective's stall rule (``search.make("fast").stall``, 48
generations) ends an image once its best fitness has not improved for that long: the search
hands over after 32 of them, so an image is given up only after the colour phase has had 16
generations without a gain. At ``d > 1`` the stall rule is off and the budget ends the run
(Sparse-RS improves in rare, late steps, which a stall rule would cut): ``search_queries``
(10,000, Sparse-RS's published budget) and then the colour phase until the budget (12,096).
A run with fewer generations than the budget keeps that split: the search phase gets
``search_queries / budget`` of its queries (at least two generations), the colour phase the
rest, so the colour phase runs in short runs too.
With the stall rule off at ``d = 1`` the colour phase runs to the end of the budget. Fitness
is minimised; NaN counts as the worst value.

The constants (:data:`SETTINGS`) were chosen on CIFAR-10 *training* images; the claims of
``docs/search-results.md`` are measured on test images (see "`fast` tuned on training images, judged
on test images" there).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from ..objective import clean_fitness
from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec
from .corner_scan import corner_scan
from .sparse_rs import flat_positions, sparse_rs

FAST_POPSIZE = 64
COLOUR_KEY = 0x0C01  # folded into a generation's key for the colour phase's draws
GAIN_EPS = 1e-4  # an improvement of the best fitness larger than this counts as a gain
SIGMA_MIN, SIGMA_MAX = 1.0 / 255.0, 0.5
SIGMA_UP, SIGMA_DOWN = 1.25, 0.9  # the step after a generation with / without a better colour


@dataclasses.dataclass(frozen=True)
class FastSetting:
    """The constants of one ``d`` (see the module docstring).

    Attributes:
      switch: hand over to the colour phase after this many generations without gain
        (``None``: not on a stall).
      search_queries: hand over after this many queries at the latest (``None``: once the
        corner scan is complete); Sparse-RS's schedule runs over them.
      stall: the objective's stall rule in generations (``0``: off; the budget ends a run).
      budget: queries per image when no generation count is given.
      anchors: candidates whose colours the colour phase searches.
      chains: Sparse-RS chains (``d > 1``).
    """

    switch: int | None
    search_queries: int | None
    stall: int
    budget: int
    anchors: int
    chains: int | None = None


SETTINGS = {
    1: FastSetting(switch=32, search_queries=None, stall=48, budget=PAPER_BUDGET, anchors=8)
}
SPARSE_SETTING = FastSetting(
    switch=None, search_queries=10_000, stall=0, budget=12_096, anchors=1, chains=1
)


def setting(pixels: int) -> FastSetting:
    return SETTINGS.get(pixels, SPARSE_SETTING)


@struct.dataclass
class FastParams:
    sigma: jax.Array | float = 0.25  # shape=(), float32: first colour step, a fraction of 255


@struct.dataclass
class ColourState:
    anchors: jax.Array  # shape=(M, D), float32: each anchor's candidate
    fitness: jax.Array  # shape=(M,), float32; lower is better
    sigma: jax.Array  # shape=(M,), float32: step size, a fraction of 255


@struct.dataclass
class FastState:
    search: object  # the search phase's state (corner scan or Sparse-RS)
    colour: ColourState
    phase: jax.Array  # shape=(), int32: 0 search, 1 colour
    best: jax.Array  # shape=(), float32: the best fitness seen
    gained: jax.Array  # shape=(), float32: the best fitness at the last gain
    since: jax.Array  # shape=(), int32: generations since the last gain
    generation: jax.Array  # shape=(), int32: generations told so far
    pixel_fitness: jax.Array  # shape=(H*W,) (d = 1) or (0,): each pixel's best fitness
    pixel_genes: jax.Array  # shape=(H*W, 2 + C) (d = 1) or (0, 2 + C): its best candidate


def colour_mask(space: SearchSpace) -> jax.Array:
    """``(D,)`` bool: the colour genes of a candidate (not the positions)."""
    t = 2 + space.channels
    return jnp.tile(jnp.arange(t) >= 2, space.pixels)


def best_per_pixel(space: SearchSpace, genes, fitness, pixel_fitness, pixel_genes):
    """Each pixel's best fitness and candidate after one generation of one-pixel ``genes``."""
    hw = space.height * space.width
    pos = flat_positions(space, genes[:, None, :])[:, 0]
    i = jnp.arange(genes.shape[0])
    same = pos[:, None] == pos[None, :]
    first = (fitness[:, None] < fitness[None, :]) | (
        (fitness[:, None] == fitness[None, :]) & (i[:, None] <= i[None, :])
    )
    best_here = jnp.all(~same | first, axis=1)  # the best of its pixel in this generation
    better = best_here & (fitness < pixel_fitness[pos])
    slot = jnp.where(better, pos, hw)
    return (
        pixel_fitness.at[slot].set(fitness, mode="drop"),
        pixel_genes.at[slot].set(genes, mode="drop"),
    )


def owners(popsize: int, anchors: int) -> jax.Array:
    """The anchor of each candidate ``(P,)`` int32: the first half of a generation goes to the
    best anchor (anchor 0), the other half is shared round-robin by all of them."""
    i = jnp.arange(popsize)
    return jnp.where(i < popsize // 2, 0, i % anchors).astype(jnp.int32)


def colour_candidates(key, space: SearchSpace, colour: ColourState) -> jax.Array:
    """``(P, D)``: each candidate is its anchor (:func:`owners`) with Gaussian colour steps."""
    owner = owners(space.popsize, colour.anchors.shape[0])
    base = colour.anchors[owner]
    step = 255.0 * colour.sigma[owner][:, None] * jax.random.normal(key, base.shape)
    moved = jnp.clip(base + step, 0.0, 255.0)
    return jnp.where(colour_mask(space)[None, :], moved, base)


def colour_update(colour: ColourState, genes, fitness) -> ColourState:
    """Each anchor moves to the best of its candidates when that is strictly better and adapts
    its step; the anchors are then sorted by fitness (the best first)."""
    p, m = genes.shape[0], colour.anchors.shape[0]
    mine = owners(p, m)[None, :] == jnp.arange(m)[:, None]  # (M, P)
    masked = jnp.where(mine, fitness[None, :], jnp.inf)
    pick = jnp.argmin(masked, axis=1)
    best = jnp.min(masked, axis=1)
    win = best < colour.fitness
    sigma = jnp.clip(colour.sigma * jnp.where(win, SIGMA_UP, SIGMA_DOWN), SIGMA_MIN, SIGMA_MAX)
    updated = ColourState(
        anchors=jnp.where(win[:, None], genes[pick], colour.anchors),
        fitness=jnp.where(win, best, colour.fitness),
        sigma=sigma.astype(jnp.float32),
    )
    order = jnp.argsort(updated.fitness, stable=True)
    return jax.tree_util.tree_map(lambda a: a[order], updated)


def fast(space: SearchSpace, anchors: int | None = None, switch: int | None = None) -> Strategy:
    """The two-phase search of the module docstring over ``space`` (``anchors`` and ``switch``
    default to :func:`setting` of ``space.pixels``)."""
    one = space.pixels == 1
    s = setting(space.pixels)
    p = space.popsize
    # the last generation of the search phase (None: the corner scan's end or a stall); a run
    # shorter than the declared budget gives the search phase the same share of its queries
    last = None
    if s.search_queries is not None:
        share = (space.generations + 1) * s.search_queries // s.budget
        last = max(min(s.search_queries // p, share) - 1, 1)
    if one:
        inner = corner_scan(space)
    else:
        horizon = (last or space.generations) + 1
        inner = sparse_rs(space, horizon=horizon, chains=s.chains)
    switch = s.switch if switch is None else int(switch)
    hw, t = space.height * space.width, 2 + space.channels
    pool_size = hw if one else min(s.chains or space.popsize, space.popsize)
    m = min(s.anchors if anchors is None else int(anchors), space.popsize, pool_size)
    n_pix = hw if one else 0
    scan_end = -(-hw // p) * p + hw * (2**space.channels - 1)  # the corner scan is complete

    def pool(state):
        """The candidates anchors are chosen from: ``(N, D)`` genes and ``(N,)`` fitness."""
        if one:
            return state.pixel_genes, state.pixel_fitness
        return state.search.current, state.search.fitness

    def initial(key, params, image):
        return inner.initial(key, params, image)

    def init(key, genes, fitness, params, image):
        fit = clean_fitness(fitness)
        colour = ColourState(
            anchors=jnp.zeros((m, space.num_genes), jnp.float32),
            fitness=jnp.full((m,), jnp.inf, jnp.float32),
            sigma=jnp.full((m,), params.sigma, jnp.float32),
        )
        state = FastState(
            search=inner.init(key, genes, fitness, (), image),
            colour=colour,
            phase=jnp.int32(0),
            best=jnp.min(fit),
            gained=jnp.min(fit),
            since=jnp.int32(0),
            generation=jnp.int32(0),
            pixel_fitness=jnp.full((n_pix,), jnp.inf, jnp.float32),
            pixel_genes=jnp.zeros((n_pix, t), jnp.float32),
        )
        if one:
            pf, pg = best_per_pixel(space, genes, fit, state.pixel_fitness, state.pixel_genes)
            state = state.replace(pixel_fitness=pf, pixel_genes=pg)
        return state

    def ask(key, state, params):
        searched, search_state = inner.ask(key, state.search, ())  # the search's own keys
        coloured = colour_candidates(jax.random.fold_in(key, COLOUR_KEY), space, state.colour)
        genes = jnp.where(state.phase == 0, searched, coloured)
        return genes, state.replace(search=search_state)

    def tell(key, genes, fitness, state, params):
        fit = clean_fitness(fitness)
        in_search = state.phase == 0
        told = inner.tell(key, genes, fitness, state.search, ())
        search_state = jax.tree_util.tree_map(
            lambda a, b: jnp.where(in_search, a, b), told, state.search
        )
        colour = colour_update(state.colour, genes, fit)
        colour = jax.tree_util.tree_map(
            lambda a, b: jnp.where(in_search, a, b), state.colour, colour
        )
        pf, pg = state.pixel_fitness, state.pixel_genes
        if one:
            pf, pg = best_per_pixel(space, genes, fit, pf, pg)
        best = jnp.minimum(state.best, jnp.min(fit))
        gain = best < state.gained - GAIN_EPS
        since = jnp.where(gain, 0, state.since + 1)
        gained = jnp.where(gain, best, state.gained)
        generation = state.generation + 1
        state = state.replace(
            search=search_state, colour=colour, best=best, gained=gained, since=since,
            generation=generation, pixel_fitness=pf, pixel_genes=pg,
        )  # fmt: skip
        done = jnp.zeros((), bool) if switch is None else since >= switch
        if one:
            done = done | (search_state.asked >= scan_end)
        if last is not None:
            done = done | (generation >= last)
        switching = in_search & done
        cand, cand_fit = pool(state)
        order = jnp.argsort(cand_fit, stable=True)[:m]
        start = ColourState(
            anchors=cand[order],
            fitness=cand_fit[order],
            sigma=jnp.full((m,), params.sigma, jnp.float32),
        )
        colour = jax.tree_util.tree_map(
            lambda a, b: jnp.where(switching, a, b), start, state.colour
        )
        return state.replace(colour=colour, phase=jnp.where(switching, 1, state.phase))

    return Strategy(initial, init, ask, tell, FastParams(), image_aware=True)


def fast_stall(pixels: int) -> int:
    """The objective's stall rule at ``pixels`` (see :data:`SETTINGS`)."""
    return setting(pixels).stall


def fast_budget(pixels: int) -> int:
    """Queries per image at ``pixels`` when no generation count is given."""
    return setting(pixels).budget


def fast_settings(anchors=None, switch=None, sigma=0.25):
    """``anchors`` and ``switch`` (static; ``None``: the tuned value of the run's ``d``) and
    ``sigma`` (traced), the colour phase's first step as a fraction of 255."""
    for name, value in (("anchors", anchors), ("switch", switch)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int or None, got {value!r}")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 < sigma <= 1:
        raise ValueError(f"sigma must be a number in (0, 1], got {sigma!r}")
    return {"anchors": anchors, "switch": switch}, FastParams(sigma=jnp.float32(sigma))


SPEC = StrategySpec(
    name="fast",
    build=fast,
    settings=fast_settings,
    description="corner scan (d=1) or Sparse-RS (d>1), then a colour search on the best pixels",
    popsize=FAST_POPSIZE,
    budget=fast_budget,
    stall=fast_stall,
)
