"""Attacks spread over several devices and processes: the sharded form of the engine's loop.

:func:`onepixel_jax.attack` calls :func:`evolve_sharded` instead of the one-device loop when
its ``mesh`` holds more than one device. The images are dealt out round-robin (image ``i`` to
device ``i % D``), each device gets a padded block of ``ceil(N / D)`` images and runs the
engine's public single-share loop (:func:`onepixel_jax.engine.evolve_impl`) on it inside
``jax.shard_map``, with its own queue and slots: the loop has no collective, so no device
waits for another per generation. Padding images are never started (the block's ``count``
stops the queue), so they cost no model call. Results are gathered once, at the end. With
progress on, one process runs the sharded loop in segments of generations (each device's carry
stays on it; two numbers per device come back between segments), so the compiled loop holds
no host callback; several processes report from inside the loop instead.

Results equal those of one device bit for bit: image ``i`` still draws its randomness from
``fold_in(key, i)`` with ``i`` its index in the call (the share carries that index), and every
model call has the size it has on one device (``call_slots`` unchanged; a model's last bit
can depend on the call size, not on the other candidates of the call). A share smaller than
``call_slots`` therefore leaves slots of its calls idle; no device carries more work than
one device does alone.

Several processes (``jax.distributed.initialize()``): the mesh defaults to every device of
every process, each process computes the shares of its own devices, and every process gets
the full result (``multihost_utils.process_allgather``). A sweep run by several processes
(``onepixel attack`` with the cluster flags) instead gives each process its own share of the
chunks and passes ``mesh=jax.local_devices()``; see ``docs/scaling.md``.

Fitness is minimised (see :mod:`onepixel_jax.objective`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import engine
from . import progress as progress_lib

AXIS = "images"


def resolve_mesh(mesh: Any = None) -> Mesh | None:
    """The mesh an attack runs on, or ``None`` for the one-device loop.

    ``None`` means every device (``jax.devices()``: the local ones, or under
    ``jax.distributed`` those of all processes); a sequence of devices becomes a 1-D mesh
    over the axis ``"images"``; a ``Mesh`` is used as given, all its axes sharing the images.
    A single device gives ``None``.
    """
    if mesh is None:
        devices: Sequence = jax.devices()
    elif isinstance(mesh, Mesh):
        devices = list(mesh.devices.flat)
    elif isinstance(mesh, Sequence) and all(isinstance(d, jax.Device) for d in mesh):
        devices = list(mesh)
    else:
        raise TypeError(
            "mesh must be None, a jax.sharding.Mesh or a sequence of devices, "
            f"got {type(mesh).__name__}"
        )
    if len(devices) == 0:
        raise ValueError("mesh has no devices")
    if len(set(devices)) != len(devices):
        raise ValueError("mesh names a device twice")
    if len(devices) == 1:
        if devices[0].process_index != jax.process_index():
            raise ValueError("mesh holds one device of another process")
        return None
    if isinstance(mesh, Mesh):
        return mesh
    return Mesh(np.asarray(devices), (AXIS,))


class ShareLayout(NamedTuple):
    """How ``N`` images are dealt to ``D`` devices (NumPy, host side).

    ``order[k, j]`` is the call index of device ``k``'s ``j``-th image (``>= N``: padding);
    ``counts[k]`` is how many of device ``k``'s ``per_device`` images are real.
    """

    order: np.ndarray  # (D, per_device) int64
    counts: np.ndarray  # (D,) int32
    per_device: int


def share_layout(num_images: int, num_devices: int) -> ShareLayout:
    """Round-robin shares: image ``i`` goes to device ``i % D`` (counts differ by <= 1)."""
    per = -(-num_images // num_devices)
    k = np.arange(num_devices)
    order = np.arange(per)[None, :] * num_devices + k[:, None]
    counts = np.maximum(num_images - k + num_devices - 1, 0) // num_devices
    return ShareLayout(order, counts.astype(np.int32), per)


def device_plan(plan: engine.Plan, per_device: int) -> engine.Plan:
    """The loop plan of one device's share: model calls of the call's own ``call_slots``
    (the shape they have on one device, so the model's last bit cannot differ), and as many
    slots as the call has, but no more call groups than the share fills."""
    cs = plan.call_slots
    slots = -(-min(plan.slots, per_device) // cs) * cs
    return plan._replace(slots=slots)


def _global_array(x: Any, sharding: NamedSharding) -> jax.Array:
    """``x`` (the same host value on every process) as a global array with ``sharding``."""
    x = np.asarray(x)
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _host_value(x: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-process) global array, on every process."""
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _evolve_shards_impl(problem, *, target, plan, mesh):
    spec, in_specs = _problem_specs(problem, mesh)

    def local(problem):
        out = engine.evolve_impl(_local(problem), target=target, plan=plan)
        return out.genes, out.history, out.rounds, out.slots_evaluated[None]

    run = jax.shard_map(
        local, mesh=mesh, in_specs=(in_specs,), out_specs=(spec,) * 4, check_vma=False
    )
    return run(problem)


_evolve_shards = jax.jit(_evolve_shards_impl, static_argnames=("target", "plan", "mesh"))


def _problem_specs(problem, mesh):
    spec = P(tuple(mesh.axis_names))
    replicated = jax.tree_util.tree_map(lambda _: P(), (problem.method, problem.objective))
    return spec, engine.Problem(
        keys=spec,
        images=spec,
        labels=spec,
        targets=spec,
        count=spec,
        method=replicated[0],
        objective=replicated[1],
        channel=P(),
        device=spec,
    )


def _local(problem):
    return problem._replace(count=problem.count[0], device=problem.device[0])


def _stacked(tree):  # one device's carry -> a leading axis of length 1 (the mesh's)
    return jax.tree_util.tree_map(lambda a: a[None], tree)


def _unstacked(tree):
    return jax.tree_util.tree_map(lambda a: a[0], tree)


def _start_shards_impl(problem, *, target, plan, mesh):
    spec, specs = _problem_specs(problem, mesh)

    def local(problem):
        return _stacked(engine.initial_state(_local(problem), target=target, plan=plan))

    return jax.shard_map(local, mesh=mesh, in_specs=(specs,), out_specs=spec, check_vma=False)(
        problem
    )


def _advance_shards_impl(st, problem, steps, *, target, plan, mesh):
    """Up to ``steps`` generations on every device; returns the carry and each device's
    ``(images done, generations run)`` ``(D, 2)``."""
    spec, specs = _problem_specs(problem, mesh)

    def local(st, problem, steps):
        pr = _local(problem)
        st = engine.run_loop(_unstacked(st), pr, target=target, plan=plan, steps=steps)
        return _stacked(st), engine.status(st, pr.images.shape[0])[None]

    return jax.shard_map(
        local, mesh=mesh, in_specs=(spec, specs, P()), out_specs=(spec, spec), check_vma=False
    )(st, problem, steps)


def _outcome_shards_impl(st, *, mesh):
    spec = P(tuple(mesh.axis_names))

    def local(st):
        out = engine.outcome(_unstacked(st))
        return out.genes, out.history, out.rounds, out.slots_evaluated[None]

    return jax.shard_map(local, mesh=mesh, in_specs=(spec,), out_specs=(spec,) * 4,
                         check_vma=False)(st)  # fmt: skip


_start_shards = jax.jit(_start_shards_impl, static_argnames=("target", "plan", "mesh"))
_advance_shards = jax.jit(_advance_shards_impl, static_argnames=("target", "plan", "mesh"))
_outcome_shards = jax.jit(_outcome_shards_impl, static_argnames=("mesh",))


def _evolve_in_segments(problem, *, target, plan, mesh, reporter, total: int):
    """The sharded loop in segments of generations (as :func:`engine.evolve_in_segments` on
    one device): the carry stays on the devices; between segments only each device's two
    status numbers come back for the progress report, so the compiled loop holds no host
    callback."""
    p = problem.method.popsize
    per_step = plan.slots * p * len(mesh.devices.flat)
    st = _start_shards(problem, target=target, plan=plan, mesh=mesh)
    steps = 1
    while True:
        t0 = time.perf_counter()
        st, stat = _advance_shards(st, problem, jnp.int32(steps), target=target, plan=plan,
                                   mesh=mesh)  # fmt: skip
        done, rounds = (int(v) for v in np.asarray(stat).sum(axis=0))
        reporter.update(done, rounds * p, per_step)
        if done >= total:
            return _outcome_shards(st, mesh=mesh)
        took = time.perf_counter() - t0
        steps = max(1, min(steps * 4, int(steps * engine.SEGMENT_SECONDS / max(took, 1e-3))))


def evolve_sharded(problem: engine.Problem, *, target, plan, reporter=None, mesh: Mesh):
    """:func:`onepixel_jax.engine.evolve` over the devices of ``mesh``.

    Returns genes ``(N, D)``, history ``(N, G + 1)``, rounds ``(N,)`` (NumPy, every image,
    in call order, on every process) and the candidate evaluations carried by the model
    calls of all devices.
    """
    n = problem.images.shape[0]
    devices = list(mesh.devices.flat)
    layout = share_layout(n, len(devices))
    # Images from `count` on are padding: each device starts only its real ones.
    counts = share_layout(int(problem.count), len(devices)).counts
    flat = layout.order.reshape(-1)
    src = np.minimum(flat, n - 1)  # padding repeats the last image; it is never started
    sharded = NamedSharding(mesh, P(tuple(mesh.axis_names)))
    replicated = NamedSharding(mesh, P())

    def split(a):
        return _global_array(np.asarray(a)[src], sharded)

    def everywhere(tree):
        return jax.tree_util.tree_map(lambda a: _global_array(a, replicated), tree)

    if reporter is not None and jax.process_count() > 1:
        mine = [k for k, d in enumerate(devices) if d.process_index == jax.process_index()]
        reporter.num_images = int(counts[mine].sum())  # this process's share
    local_plan = device_plan(plan, layout.per_device)
    # One process reports between segments (no host callback in the loop); several
    # processes report from inside the loop, each its own devices' share.
    segments = reporter is not None and jax.process_count() == 1
    if segments:
        local_plan = local_plan._replace(progress=False)
    shares = None if reporter is None or segments else progress_lib.SumOfShares(reporter)
    with progress_lib.open_channel(shares) as channel:
        local_problem = engine.Problem(
            keys=split(problem.keys),
            images=split(problem.images),
            labels=split(problem.labels),
            targets=split(problem.targets),
            count=_global_array(counts, sharded),
            method=everywhere(problem.method),
            objective=everywhere(problem.objective),
            channel=_global_array(np.int32(channel), replicated),
            device=_global_array(np.arange(len(devices), dtype=np.int32), sharded),
        )
        if segments:
            try:
                out = _evolve_in_segments(
                    local_problem, target=target, plan=local_plan, mesh=mesh,
                    reporter=reporter, total=int(counts.sum()),
                )  # fmt: skip
            finally:
                reporter.close()
        else:
            out = _evolve_shards(local_problem, target=target, plan=local_plan, mesh=mesh)
        genes, history, rounds, carried = (_host_value(a) for a in out)
    real = flat < n
    where = flat[real]
    out_genes = np.empty((n,) + genes.shape[1:], genes.dtype)
    out_history = np.empty((n,) + history.shape[1:], history.dtype)
    out_rounds = np.empty((n,), rounds.dtype)
    out_genes[where], out_history[where], out_rounds[where] = (
        genes[real],
        history[real],
        rounds[real],
    )
    popsize = problem.method.popsize
    evaluations = int(carried.astype(np.int64).sum()) * popsize
    return jnp.asarray(out_genes), jnp.asarray(out_history), jnp.asarray(out_rounds), evaluations


__all__ = ["AXIS", "ShareLayout", "evolve_sharded", "resolve_mesh", "share_layout"]
