"""The compiled generation loop: every generation of every image inside one ``lax.while_loop``.

The engine receives built objects and names none of their kinds:

- a :class:`~onepixel_jax.search.SearchMethod` (the strategy, its traced hyperparameters and
  its budget: ``popsize`` candidates per generation, ``max_iters`` generations);
- a :class:`~onepixel_jax.types.Target` (what evaluates candidates);
- an :class:`~onepixel_jax.objective.Objective` (fitness, success, stop, the stall rule);
- a :class:`Plan` (slots, call sizes; from :mod:`onepixel_jax.planner`).

Images go through ``plan.slots`` *slots*; one loop step reads as four stages over all slots:

1. :func:`ask`: the strategy proposes ``popsize`` candidates per slot;
2. :func:`evaluate`: the target evaluates them, one model call per call group;
3. :func:`score`: the objective turns the outputs into fitness, success and stop;
4. :func:`tell`: the strategy is told the fitness, and the slot's bookkeeping is updated
   (best fitness, the returned candidate, history, finished images out, waiting images in).

Image ``i`` draws its randomness from ``problem.keys[i]`` (``fold_in(key, i)`` for a plain
attack), folded with its generation, so its result depends neither on the other images nor on
the number of slots. :func:`evolve` is the public single-share loop; :mod:`onepixel_jax.runner`
drives it for :func:`onepixel_jax.attack`, and :mod:`onepixel_jax.distributed` wraps it per
device. Fitness is minimised.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import progress as progress_lib
from .perturb import decode_candidate
from .types import Target


class Plan(NamedTuple):
    """What fixes the loop's shapes and control flow besides the problem's pytrees (static).

    Attributes:
      slots: images evolved side by side (a multiple of ``call_slots``).
      call_slots: slots per model call: the ``slots`` are evaluated in ``slots / call_slots``
        calls of ``call_slots * popsize`` candidates.
      compact: pack busy slots first and skip the model calls of all-idle call groups.
      tail_slots: with ``compact``, the one call group that is only partly busy is evaluated
        in calls of this many slots covering its busy slots, instead of one full call (``0``:
        off). :func:`tail_slots` picks it from ``call_slots``.
      progress: report per generation to the problem's progress channel from inside the
        loop (a host callback; the sharded loop of a multi-process run uses it). One process
        reports between segments instead (:func:`evolve_in_segments`).
      key_impl: the PRNG implementation of ``Problem.keys`` (``jax.random.key_impl``).
    """

    slots: int
    call_slots: int
    compact: bool = True
    progress: bool = False
    key_impl: Any = None
    tail_slots: int = 0


TAIL_SPLIT = 8  # a partly busy call group is evaluated in calls of 1/8 of its slots


def tail_slots(call_slots: int) -> int:
    """The tail unit for groups of ``call_slots`` slots: ``ceil(call_slots / TAIL_SPLIT)``, so a
    partly busy group makes at most :data:`TAIL_SPLIT` smaller calls, for groups of
    :data:`TAIL_SPLIT` slots or more; ``0`` (off) for smaller groups, where splitting a call
    does not pay."""
    return -(-call_slots // TAIL_SPLIT) if call_slots >= TAIL_SPLIT else 0


class Problem(NamedTuple):
    """What one loop call needs besides its carry (all traced; ``method`` and ``objective``
    are pytrees whose structure is static)."""

    keys: jax.Array  # (N, ...) uint32: key data of each image's key
    images: jax.Array  # (N, H, W, C) float32 in [0, 255]
    labels: jax.Array  # (N,) int32
    targets: jax.Array  # (N,) int32 (the labels again when untargeted)
    count: jax.Array  # () int32: the first `count` images are attacked; the rest is padding
    method: Any  # SearchMethod
    objective: Any  # Objective
    channel: jax.Array  # () int32: progress channel (onepixel_jax.progress; 0: none)
    device: jax.Array  # () int32: the share's position, which tags its progress reports


class Outcome(NamedTuple):
    """Per image: the returned genes ``(N, D)``, the best fitness per generation ``(N, G + 1)``
    and the generations run ``(N,)`` (queries = rounds * popsize); and the slots the model
    calls carried (busy or not; ``* popsize`` candidates each)."""

    genes: jax.Array
    history: jax.Array
    rounds: jax.Array
    slots_evaluated: jax.Array  # () int32


class LoopState(NamedTuple):
    """The carry. ``S`` slots, ``P`` popsize, ``D`` genes, ``N`` images, ``G`` = max_iters."""

    slot_image: jax.Array  # (S,) int32: image in each slot; N = empty
    generation: jax.Array  # (S,) int32: generation of each slot's image (0 = fresh)
    next_image: jax.Array  # () int32: first image not yet started
    search: Any  # strategy state, leading axis S
    cache: Any  # target cache, leading axis S
    best_fitness: jax.Array  # (S,) float32: best fitness seen for the slot's image
    champion: jax.Array  # (S, D) float32: the candidate returned for the slot's image
    champion_score: jax.Array  # (S,) float32: its score (success first, then fitness)
    history: jax.Array  # (S, G + 1) float32: best fitness per generation
    out_genes: jax.Array  # (N, D) float32
    out_history: jax.Array  # (N, G + 1) float32
    out_rounds: jax.Array  # (N,) int32: generations run
    slots_evaluated: jax.Array  # () int32: slots carried by the model calls so far


_PER_SLOT = (
    "slot_image",
    "generation",
    "search",
    "cache",
    "best_fitness",
    "champion",
    "champion_score",
    "history",
)


def _where_slots(mask: jax.Array, a: Any, b: Any) -> Any:
    """Per-slot select between two pytrees whose leaves have a leading slot axis."""

    def pick(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree_util.tree_map(pick, a, b)


def _image_hooks(strategy):
    """``initial(key, params, image)`` and ``init(key, genes, fitness, params, image)`` for
    every strategy: the clean image reaches only those that declare ``image_aware``."""
    if strategy.image_aware:
        return strategy.initial, strategy.init
    return (
        lambda key, params, image: strategy.initial(key, params),
        lambda key, genes, fitness, params, image: strategy.init(key, genes, fitness, params),
    )


def _strategy(problem: Problem):
    h, w, c = problem.images.shape[1:]
    return problem.method.build(h, w, c)


def initial_state(problem: Problem, *, target: Target, plan: Plan) -> LoopState:
    """The carry before the first generation: slots hold images ``0 .. S-1``."""
    n = problem.images.shape[0]
    s, p, g = plan.slots, problem.method.popsize, problem.method.max_iters
    strategy = _strategy(problem)
    initial, init = _image_hooks(strategy)
    params = problem.method.params
    key = jax.random.key(0)

    def first_state(k):
        image = jnp.zeros(problem.images.shape[1:], jnp.float32)
        genes = initial(k, params, image)
        return init(k, genes, jnp.zeros((p,), jnp.float32), params, image)

    def zeros(tree):
        return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), tree)

    slot_shape = jax.ShapeDtypeStruct((s,) + problem.images.shape[1:], problem.images.dtype)
    d = problem.method.pixels * (2 + problem.images.shape[-1])
    count = problem.count
    return LoopState(
        slot_image=jnp.where(jnp.arange(s) < count, jnp.arange(s, dtype=jnp.int32), n),
        generation=jnp.zeros((s,), jnp.int32),
        next_image=jnp.minimum(s, count).astype(jnp.int32),
        search=zeros(jax.eval_shape(jax.vmap(first_state), jax.random.split(key, s))),
        cache=zeros(jax.eval_shape(target.prepare, slot_shape)),
        best_fitness=jnp.full((s,), jnp.inf, jnp.float32),
        champion=jnp.zeros((s, d), jnp.float32),
        champion_score=jnp.full((s,), jnp.inf, jnp.float32),
        history=jnp.zeros((s, g + 1), jnp.float32),
        out_genes=jnp.zeros((n, d), jnp.float32),
        out_history=jnp.zeros((n, g + 1), jnp.float32),
        out_rounds=jnp.zeros((n,), jnp.int32),
        slots_evaluated=jnp.int32(0),
    )


def ask(strategy, keys, st: LoopState, params, fresh, clean):
    """Stage 1: ``(S, P, D)`` candidates; slots starting an image get an initial population
    (computed only in the steps where some slot starts one)."""
    asked, asked_state = jax.vmap(strategy.ask, in_axes=(0, 0, None))(keys, st.search, params)
    first_genes, _ = _image_hooks(strategy)
    initial = jax.lax.cond(
        jnp.any(fresh),
        lambda: jax.vmap(first_genes, in_axes=(0, None, 0))(keys, params, clean),
        lambda: jnp.zeros_like(asked),
    )
    return jnp.where(fresh[:, None, None], initial, asked), asked_state


def evaluate(target: Target, plan: Plan, cache, slot_images, pixels, busy):
    """Stage 2: the target's outputs ``(S, P, ...)`` (a mapping with ``"probs"``), one model
    call per group of ``call_slots`` slots. With ``compact``, an all-idle group makes no call
    and (with ``tail_slots``) the partly busy group makes calls of ``tail_slots`` slots over
    its busy ones only. Also returns the number of slots the calls carried."""

    def call(*args):
        out = target.evaluate(*args)
        return out if isinstance(out, dict) else {"probs": out}

    s, cs, unit = plan.slots, plan.call_slots, plan.tail_slots
    groups = s // cs
    if groups == 1 and not plan.compact:
        return call(cache, slot_images, pixels), jnp.int32(cs)

    def split(a, parts, size):
        return a.reshape((parts, size) + a.shape[1:])

    args = jax.tree_util.tree_map(lambda a: split(a, groups, cs), (cache, slot_images, pixels))
    shapes = jax.eval_shape(lambda a: call(*a), jax.tree_util.tree_map(lambda a: a[0], args))

    def zeros(tree):
        return jax.tree_util.tree_map(lambda o: jnp.zeros(o.shape, o.dtype), tree)

    def tail(arg, group_busy):
        """The busy slots of a partly busy group (packed first), in calls of ``unit`` slots."""
        parts = -(-cs // unit)
        pad = parts * unit - cs

        def padded(a):  # repeat the group's first slot; padding results are dropped
            return jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a

        sub = jax.tree_util.tree_map(lambda a: split(padded(a), parts, unit), arg)
        busy_padded = jnp.concatenate([group_busy, jnp.zeros((pad,), bool)])
        sub_busy = jnp.any(split(busy_padded, parts, unit), axis=1)
        unit_shapes = jax.tree_util.tree_map(
            lambda o: jax.ShapeDtypeStruct((unit,) + o.shape[1:], o.dtype), shapes
        )

        def one_unit(item):
            part, any_busy = item
            return jax.lax.cond(any_busy, lambda: call(*part), lambda: zeros(unit_shapes))

        out = jax.lax.map(one_unit, (sub, sub_busy))
        out = jax.tree_util.tree_map(lambda a: a.reshape((parts * unit,) + a.shape[2:])[:cs], out)
        return out, jnp.sum(sub_busy).astype(jnp.int32) * unit

    def one(group):
        arg, group_busy = group
        if not plan.compact:
            return call(*arg), jnp.int32(cs)
        n_busy = jnp.sum(group_busy)
        if not unit:
            return jax.lax.cond(
                n_busy > 0,
                lambda: (call(*arg), jnp.int32(cs)),
                lambda: (zeros(shapes), jnp.int32(0)),
            )
        branch = jnp.where(n_busy == 0, 0, jnp.where(n_busy == cs, 2, 1))
        return jax.lax.switch(
            branch,
            [
                lambda: (zeros(shapes), jnp.int32(0)),
                lambda: tail(arg, group_busy),
                lambda: (call(*arg), jnp.int32(cs)),
            ],
        )

    out, carried = jax.lax.map(one, (args, split(busy, groups, cs)))
    out = jax.tree_util.tree_map(lambda a: a.reshape((s,) + a.shape[2:]), out)
    return out, jnp.sum(carried).astype(jnp.int32)


def score(objective, outputs, labels, targets):
    """Stage 3: ``(fitness, success, stop)``, each ``(S, P)``."""
    return objective.score(outputs, labels[:, None], targets[:, None])


def tell(strategy, keys, st: LoopState, cand, fit, asked_state, params, fresh, clean):
    """Stage 4a: the strategy state after the generation (a fresh slot starts its state from
    the evaluated initial population; computed only in steps where some slot starts one)."""
    told = jax.vmap(strategy.tell, in_axes=(0, 0, 0, 0, None))(keys, cand, fit, asked_state, params)
    _, first_state = _image_hooks(strategy)
    started = jax.lax.cond(
        jnp.any(fresh),
        lambda: jax.vmap(first_state, in_axes=(0, 0, 0, None, 0))(keys, cand, fit, params, clean),
        lambda: told,
    )
    return _where_slots(fresh, started, told)


def run_loop(
    st: LoopState, problem: Problem, *, target: Target, plan: Plan, steps: Any = None
) -> LoopState:
    """Run generations until every image is done, or for at most ``steps`` generations (a
    traced int; ``None``: no limit) so that a caller can report progress between segments
    without a host callback inside the loop."""
    images, labels, targets = problem.images, problem.labels, problem.targets
    method, objective = problem.method, problem.objective
    n, h, w, c = images.shape
    s, p, g = plan.slots, method.popsize, method.max_iters
    strategy = _strategy(problem)
    params = method.params
    decode = jax.vmap(jax.vmap(lambda genes: decode_candidate(genes, h, w, c)))
    count = problem.count

    def image_keys(slot_image, generation):
        data = problem.keys[jnp.minimum(slot_image, n - 1)]
        keys = jax.random.wrap_key_data(data, impl=plan.key_impl)
        return jax.vmap(jax.random.fold_in)(keys, generation)

    def body(st: LoopState) -> LoopState:
        valid = st.slot_image < n
        fresh = st.generation == 0
        idx = jnp.minimum(st.slot_image, n - 1)
        slot_images = images[idx]
        keys = image_keys(st.slot_image, st.generation)
        cache = jax.lax.cond(
            jnp.any(fresh),
            lambda: _where_slots(fresh, target.prepare(slot_images), st.cache),
            lambda: st.cache,
        )
        clean = slot_images.astype(jnp.float32)
        cand, asked_state = ask(strategy, keys, st, params, fresh, clean)
        outputs, carried = evaluate(target, plan, cache, slot_images, decode(cand), valid)
        fit, succ, stop = score(objective, outputs, labels[idx], targets[idx])
        search_state = tell(strategy, keys, st, cand, fit, asked_state, params, fresh, clean)

        # Bookkeeping: best fitness, the returned candidate (successful ones first), history.
        gen_best = jnp.min(fit, axis=1)
        best_fitness = jnp.where(fresh, gen_best, jnp.minimum(st.best_fitness, gen_best))
        ranked = jnp.where(succ, fit - 2.0, fit)
        best = jnp.argmin(ranked, axis=1)
        best_score = jnp.take_along_axis(ranked, best[:, None], axis=1)[:, 0]
        better = fresh | (best_score < st.champion_score)
        winner = jnp.take_along_axis(cand, best[:, None, None], 1)[:, 0]
        champion = jnp.where(better[:, None], winner, st.champion)
        champion_score = jnp.where(better, best_score, st.champion_score)
        rnd = st.generation
        history = st.history.at[jnp.arange(s), rnd].set(best_fitness)
        finished = valid & (jnp.any(stop, axis=1) | (rnd == g))
        finished = finished | (valid & objective.gives_up(history, rnd, best_fitness))

        # Write finished images out; rows of unfinished slots go out of bounds and are dropped.
        out_idx = jnp.where(finished, st.slot_image, n)
        steps = jnp.arange(g + 1)[None, :]
        last = jnp.take_along_axis(history, rnd[:, None], axis=1)
        filled = jnp.where(steps > rnd[:, None], last, history)
        out_genes = st.out_genes.at[out_idx].set(champion, mode="drop")
        out_history = st.out_history.at[out_idx].set(filled, mode="drop")
        out_rounds = st.out_rounds.at[out_idx].set(rnd + 1, mode="drop")

        # Refill finished slots with the next waiting images, in slot order.
        order = jnp.cumsum(finished) - 1
        refill = jnp.where(st.next_image + order < count, st.next_image + order, n)
        slot_image = jnp.where(finished, refill, st.slot_image)
        next_image = jnp.minimum(st.next_image + jnp.sum(finished), count)
        generation = jnp.where(finished | ~valid, 0, rnd + 1)
        if plan.progress:
            busy = slot_image < n
            done = next_image - jnp.sum(busy)
            useful = jnp.sum(out_rounds) + jnp.sum(jnp.where(busy, generation, 0))
            jax.debug.callback(
                progress_lib.report, problem.channel, done, useful * p, s * p, problem.device
            )
        new = LoopState(
            slot_image=slot_image,
            generation=generation,
            next_image=next_image,
            search=search_state,
            cache=cache,
            best_fitness=best_fitness,
            champion=champion,
            champion_score=champion_score,
            history=history,
            out_genes=out_genes,
            out_history=out_history,
            out_rounds=out_rounds,
            slots_evaluated=st.slots_evaluated + carried,
        )
        if plan.compact and (s // plan.call_slots > 1 or plan.tail_slots):
            new = _pack_busy_first(new, n)
        return new

    if steps is None:
        return jax.lax.while_loop(lambda st: jnp.any(st.slot_image < n), body, st)

    def limited(carry):
        st, i = carry
        return jnp.any(st.slot_image < n) & (i < steps)

    return jax.lax.while_loop(limited, lambda c: (body(c[0]), c[1] + 1), (st, jnp.int32(0)))[0]


def _pack_busy_first(st: LoopState, num_images: int) -> LoopState:
    """Move busy slots before idle ones (stable). While images wait, every slot is busy and
    this is the identity; once the queue is empty, finished slots gather at the end, so
    whole call groups go idle and their model calls are skipped."""
    order = jnp.argsort(st.slot_image >= num_images, stable=True)
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[order], tree)  # noqa: E731
    return st._replace(**{name: take(getattr(st, name)) for name in _PER_SLOT})


def outcome(st: LoopState) -> Outcome:
    return Outcome(st.out_genes, st.out_history, st.out_rounds, st.slots_evaluated)


def evolve_impl(problem: Problem, *, target: Target, plan: Plan) -> Outcome:
    """Run every image of ``problem`` to completion (traceable; :func:`evolve` is its jitted
    form, :mod:`onepixel_jax.distributed` runs it per device)."""
    st = initial_state(problem, target=target, plan=plan)
    return outcome(run_loop(st, problem, target=target, plan=plan))


def status(st: LoopState, num_images: int) -> jax.Array:
    """``(images done, generations run)`` of a carry, int32 ``(2,)`` (for progress reports:
    useful evaluations are generations * popsize)."""
    busy = st.slot_image < num_images
    done = st.next_image - jnp.sum(busy)
    rounds = jnp.sum(st.out_rounds) + jnp.sum(jnp.where(busy, st.generation, 0))
    return jnp.stack([done, rounds]).astype(jnp.int32)


evolve = jax.jit(evolve_impl, static_argnames=("target", "plan"))
start = jax.jit(initial_state, static_argnames=("target", "plan"))
advance = jax.jit(run_loop, static_argnames=("target", "plan"))


def evolve_in_segments(problem: Problem, *, target: Target, plan: Plan, report) -> Outcome:
    """:func:`evolve` in segments of generations, calling ``report(done, evaluations,
    per_step)`` between them (the carry stays on the device; only two numbers come back).
    Segments start at one generation and grow to about ``SEGMENT_SECONDS`` each. The compiled
    programs hold no host callback, so the persistent compilation cache can keep them."""
    n = problem.images.shape[0]
    p = problem.method.popsize
    st = start(problem, target=target, plan=plan)
    steps = 1
    while True:
        t0 = time.perf_counter()
        st = advance(st, problem, target=target, plan=plan, steps=jnp.int32(steps))
        done, rounds = (int(v) for v in status(st, n))
        report(done, rounds * p, plan.slots * p)
        if done >= int(problem.count):
            return outcome(st)
        took = time.perf_counter() - t0
        steps = max(1, min(steps * 4, int(steps * SEGMENT_SECONDS / max(took, 1e-3))))


SEGMENT_SECONDS = 1.0


__all__ = [
    "LoopState",
    "Outcome",
    "Plan",
    "Problem",
    "ask",
    "evaluate",
    "advance",
    "evolve",
    "evolve_impl",
    "evolve_in_segments",
    "outcome",
    "start",
    "status",
    "initial_state",
    "run_loop",
    "score",
    "tell",
]
