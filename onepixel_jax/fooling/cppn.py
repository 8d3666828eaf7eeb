"""CPPN encoding: fixed-capacity compositional pattern-producing networks, jittable.

A CPPN maps the coordinates of each pixel to its value. Inputs are ``(x, y, d, 1)``
with ``x, y`` in ``[-1, 1]`` and ``d`` the distance from the centre (scaled so the
corners have ``d = sqrt(2)``). Nodes are numbered in a fixed topological order::

    0..3 inputs | 4 .. 4 + max_hidden - 1 hidden slots | last C outputs

and a connection ``i -> j`` may exist only for ``i < j``, ``i`` an input or hidden node,
``j`` a hidden or output node; the network is therefore always acyclic and is evaluated
in one pass over the node order. A genome (:class:`CPPNGenome`) holds the dense weight
matrix, the connection mask, which hidden slots are in use and one activation id per node.
Rendering evaluates every pixel at once and maps each output ``a`` to ``round(255 (clip(a,
-1, 1) + 1) / 2)``, so images are integer-valued within ``[0, 255]`` (exactly a PNG's pixels).

Mutations (per child, each independently):

* every enabled weight is perturbed by ``N(0, weight_sigma)`` with probability
  ``weight_rate`` (weights are clipped to ``[-weight_limit, weight_limit]``);
* every in-use hidden or output node gets a new random activation with probability
  ``activation_rate``;
* with probability ``add_connection_rate`` one new connection between in-use nodes is
  enabled (uniformly among the allowed absent ones, if any);
* with probability ``add_node_rate`` one enabled connection ``i -> j`` that has a free hidden
  slot ``h`` with ``i < h < j`` is split into ``i -> h`` (weight 1) and ``h -> j`` (the old
  weight), ``h`` getting a random activation.

All of these are ``where``-selections over fixed-size arrays, so ``vary`` is jittable and
``vmap``-able and a genome's capacity never changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from onepixel_jax.fooling.encoding import Encoding, check_image_shape

NUM_INPUTS = 4  # x, y, distance from centre, bias

ACTIVATIONS: tuple[str, ...] = ("sine", "gaussian", "sigmoid", "tanh", "abs", "linear", "cosine")


def apply_activation(ids: jax.Array, z: jax.Array) -> jax.Array:
    """Apply activation ``ids`` (broadcastable against ``z``) elementwise; branch-free."""
    candidates = jnp.stack(
        [
            jnp.sin(z),
            jnp.exp(-2.0 * z * z),
            2.0 * jax.nn.sigmoid(z) - 1.0,  # centred so that every activation spans [-1, 1]
            jnp.tanh(z),
            jnp.abs(z),
            z,
            jnp.cos(z),
        ]
    )
    ids = jnp.broadcast_to(ids, z.shape)
    return jnp.take_along_axis(candidates, ids[None], axis=0)[0]


@struct.dataclass
class CPPNParams:
    """Traced mutation hyperparameters of the CPPN encoding."""

    weight_rate: jax.Array | float = 0.5  # shape=(), per enabled weight
    weight_sigma: jax.Array | float = 0.5  # shape=()
    weight_limit: jax.Array | float = 4.0  # shape=()
    activation_rate: jax.Array | float = 0.1  # shape=(), per in-use node
    add_connection_rate: jax.Array | float = 0.2  # shape=(), per child
    add_node_rate: jax.Array | float = 0.1  # shape=(), per child


@struct.dataclass
class CPPNGenome:
    """One CPPN (add a leading population axis for a batch). ``N = 4 + max_hidden + C``."""

    weights: jax.Array  # shape=(N, N), float32; weights[i, j] is the weight of i -> j
    connections: jax.Array  # shape=(N, N), bool; enabled connections
    active: jax.Array  # shape=(N,), bool; inputs and outputs always True
    activations: jax.Array  # shape=(N,), int32 in [0, len(ACTIVATIONS))


def allowed_connections(max_hidden: int, channels: int) -> jax.Array:
    """``(N, N)`` bool: the pairs ``i -> j`` a genome may ever enable."""
    n = NUM_INPUTS + max_hidden + channels
    idx = jnp.arange(n)
    source_ok = idx < NUM_INPUTS + max_hidden  # inputs and hidden
    target_ok = idx >= NUM_INPUTS  # hidden and outputs
    return (idx[:, None] < idx[None, :]) & source_ok[:, None] & target_ok[None, :]


def coordinate_inputs(height: int, width: int) -> jax.Array:
    """``(H * W, 4)`` float32 rows ``(x, y, d, 1)`` in row-major pixel order."""
    ys = jnp.linspace(-1.0, 1.0, height) if height > 1 else jnp.zeros((1,))
    xs = jnp.linspace(-1.0, 1.0, width) if width > 1 else jnp.zeros((1,))
    y, x = jnp.meshgrid(ys, xs, indexing="ij")
    d = jnp.sqrt(x * x + y * y)
    return jnp.stack([x, y, d, jnp.ones_like(x)], axis=-1).reshape(-1, 4).astype(jnp.float32)


def render_one(genome: CPPNGenome, coords: jax.Array, channels: int) -> jax.Array:
    """Evaluate one genome at ``coords`` ``(P, 4)``; returns ``(P, C)`` float32 in [0, 255]."""
    n = genome.weights.shape[0]
    w = jnp.where(genome.connections, genome.weights, 0.0)
    values = jnp.zeros((coords.shape[0], n), jnp.float32).at[:, :NUM_INPUTS].set(coords)

    def node_value(j, values):  # the node order is the topology: one pass suffices
        a = apply_activation(genome.activations[j], values @ w[:, j])
        return values.at[:, j].set(jnp.where(genome.active[j], a, 0.0))

    values = jax.lax.fori_loop(NUM_INPUTS, n, node_value, values)
    out = values[:, n - channels :]
    return jnp.round(127.5 * (jnp.clip(out, -1.0, 1.0) + 1.0))


def is_valid(genome: CPPNGenome, max_hidden: int, channels: int) -> jax.Array:
    """True iff ``genome`` (unbatched) satisfies every structural invariant."""
    allowed = allowed_connections(max_hidden, channels)
    n = allowed.shape[0]
    io = (jnp.arange(n) < NUM_INPUTS) | (jnp.arange(n) >= n - channels)
    ends_active = genome.active[:, None] & genome.active[None, :]
    return (
        jnp.all(~genome.connections | (allowed & ends_active))
        & jnp.all(genome.active | ~io)
        & jnp.all((genome.activations >= 0) & (genome.activations < len(ACTIVATIONS)))
        & jnp.all(jnp.isfinite(genome.weights))
    )


def _pick_one(scores: jax.Array, candidates: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A flat index among True ``candidates``, uniform when ``scores`` are i.i.d. uniform, and
    whether there was any candidate."""
    flat = candidates.reshape(-1)
    index = jnp.argmax(jnp.where(flat, scores.reshape(-1), -1.0))
    return index, jnp.any(flat)


def mutate_one(
    key: jax.Array, genome: CPPNGenome, params: CPPNParams, max_hidden: int, channels: int
) -> CPPNGenome:
    """One mutated copy of an unbatched ``genome`` (see the module docstring)."""
    n = genome.weights.shape[0]
    num_act = len(ACTIVATIONS)
    # All randomness from one uniform and one normal draw (cheap to compile under vmap).
    k_u, k_n = jax.random.split(key)
    sizes = (n * n, n, n, n * n, 1, n * n * n, 1, 1)
    u = jax.random.uniform(k_u, (sum(sizes),))
    parts = jnp.split(u, np.cumsum(sizes)[:-1])
    u_perturb = parts[0].reshape(n, n)
    u_change, u_ids, u_conn_pick, u_conn, u_split_pick, u_node, u_node_act = parts[1:]
    normals = jax.random.normal(k_n, (n * n + 1,))
    noise = params.weight_sigma * normals[: n * n].reshape(n, n)
    new_weight = normals[n * n]
    allowed = allowed_connections(max_hidden, channels)
    node = jnp.arange(n)
    hidden = (node >= NUM_INPUTS) & (node < NUM_INPUTS + max_hidden)

    def random_ids(v):
        return jnp.minimum((v * num_act).astype(jnp.int32), num_act - 1)

    # Weights.
    perturb = genome.connections & (u_perturb < params.weight_rate)
    weights = jnp.where(perturb, genome.weights + noise, genome.weights)
    weights = jnp.clip(weights, -params.weight_limit, params.weight_limit)

    # Activations of in-use hidden and output nodes.
    change = (u_change < params.activation_rate) & genome.active & (node >= NUM_INPUTS)
    activations = jnp.where(change, random_ids(u_ids), genome.activations)
    connections = genome.connections
    active = genome.active

    # Add a connection between in-use nodes.
    absent = allowed & ~connections & active[:, None] & active[None, :]
    flat, any_absent = _pick_one(u_conn_pick, absent)
    do_conn = any_absent & (u_conn[0] < params.add_connection_rate)
    hit = (jnp.arange(n * n) == flat).reshape(n, n) & do_conn
    connections = connections | hit
    weights = jnp.where(
        hit, jnp.clip(new_weight, -params.weight_limit, params.weight_limit), weights
    )

    # Split a connection i -> j through a free hidden slot h with i < h < j.
    free = hidden & ~active
    # between[i, j, h]: i < h < j
    between = (node[:, None, None] < node[None, None, :]) & (
        node[None, None, :] < node[None, :, None]
    )
    splittable = connections[:, :, None] & between & free[None, None, :]
    flat3, any_split = _pick_one(u_split_pick, splittable)
    do_node = any_split & (u_node[0] < params.add_node_rate)
    i, rest = flat3 // (n * n), flat3 % (n * n)
    j, h = rest // n, rest % n
    old_w = weights[i, j]
    split_conn = connections.at[i, j].set(False).at[i, h].set(True).at[h, j].set(True)
    split_w = weights.at[i, h].set(1.0).at[h, j].set(old_w)
    connections = jnp.where(do_node, split_conn, connections)
    weights = jnp.where(do_node, split_w, weights)
    active = jnp.where(do_node, active.at[h].set(True), active)
    activations = jnp.where(do_node, activations.at[h].set(random_ids(u_node_act)[0]), activations)

    return CPPNGenome(
        weights=weights.astype(jnp.float32),
        connections=connections,
        active=active,
        activations=activations.astype(jnp.int32),
    )


def init_one(key: jax.Array, max_hidden: int, channels: int) -> CPPNGenome:
    """A minimal genome: every input connected to every output, weights ``N(0, 1)``."""
    n = NUM_INPUTS + max_hidden + channels
    node = jnp.arange(n)
    is_out = node >= n - channels
    k_w, k_a = jax.random.split(key)
    connections = (node[:, None] < NUM_INPUTS) & is_out[None, :]
    weights = jnp.where(connections, jax.random.normal(k_w, (n, n)), 0.0)
    activations = jax.random.randint(k_a, (n,), 0, len(ACTIVATIONS), dtype=jnp.int32)
    return CPPNGenome(
        weights=weights.astype(jnp.float32),
        connections=connections,
        active=(node < NUM_INPUTS) | is_out,
        activations=activations,
    )


def cppn_encoding(
    image_shape: tuple[int, int, int],
    max_hidden: int = 12,
    params: CPPNParams | None = None,
    init_mutations: int = 8,
):
    """The CPPN encoding for images of ``image_shape`` ``(H, W, C)``.

    ``max_hidden`` fixes the capacity (static). The initial population is made of minimal
    genomes each mutated ``init_mutations`` times, so that it starts with some structure.
    """
    height, width, channels = check_image_shape(image_shape)
    if not isinstance(max_hidden, int) or max_hidden < 0:
        raise ValueError(f"max_hidden must be a non-negative int, got {max_hidden!r}")
    if not isinstance(init_mutations, int) or init_mutations < 0:
        raise ValueError(f"init_mutations must be a non-negative int, got {init_mutations!r}")
    params = CPPNParams() if params is None else params
    if not isinstance(params, CPPNParams):
        raise TypeError(f"params must be CPPNParams, got {type(params).__name__}")
    coords = coordinate_inputs(height, width)

    def mutate_batch(key, genomes, params):
        keys = jax.random.split(key, genomes.weights.shape[0])
        return jax.vmap(lambda k, g: mutate_one(k, g, params, max_hidden, channels))(keys, genomes)

    def init(key: jax.Array, num: int) -> CPPNGenome:
        k_init, k_mut = jax.random.split(key)
        genomes = jax.vmap(lambda k: init_one(k, max_hidden, channels))(
            jax.random.split(k_init, num)
        )
        if init_mutations == 0:
            return genomes
        genomes, _ = jax.lax.scan(
            lambda g, k: (mutate_batch(k, g, params), None),
            genomes,
            jax.random.split(k_mut, init_mutations),
        )
        return genomes

    def vary(key, parents, mates, params: CPPNParams, generation) -> CPPNGenome:
        del mates, generation  # CPPNs are mutated only
        return mutate_batch(key, parents, params)

    def render(genomes: CPPNGenome) -> jax.Array:
        flat = jax.vmap(lambda g: render_one(g, coords, channels))(genomes)
        return flat.reshape(-1, height, width, channels)

    return Encoding("cppn", (height, width, channels), init, vary, render, params)
