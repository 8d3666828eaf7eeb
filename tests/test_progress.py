"""Progress channels: two attacks reporting at once (threads) never see each other's reports,
and a compiled loop that reports through a channel number is compiled once for any reporter."""

import threading

import jax
import jax.numpy as jnp
import numpy as np

from onepixel_jax import progress


class Recorder:
    def __init__(self):
        self.updates, self.closed = [], False

    def update(self, done, useful, per_step, *device):
        self.updates.append((done, useful, per_step, *device))

    def close(self):
        self.closed = True


TRACES = []


@jax.jit
def loop(channel, tag):
    """A compiled loop that reports ``(step, tag, 1, 0)`` on ``channel`` at each of 50 steps."""
    TRACES.append(1)  # runs once per compilation

    def body(i, acc):
        jax.debug.callback(progress.report, channel, i, tag, jnp.int32(1), jnp.int32(0))
        return acc + i

    return jax.lax.fori_loop(0, 50, body, jnp.int32(0))


def test_two_threads_report_on_their_own_channels():
    recorders = [Recorder(), Recorder()]
    channels = {}
    barrier = threading.Barrier(2)

    def attack(k):
        with progress.open_channel(recorders[k]) as channel:
            channels[k] = channel
            barrier.wait()  # both channels open before either loop runs
            for _ in range(3):
                jax.block_until_ready(loop(jnp.int32(channel), jnp.int32(100 + k)))
            jax.effects_barrier()

    threads = [threading.Thread(target=attack, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert channels[0] != channels[1] and 0 not in channels.values()
    for k, rec in enumerate(recorders):
        assert rec.closed
        assert len(rec.updates) == 150, len(rec.updates)
        assert {u[1] for u in rec.updates} == {100 + k}  # only its own tag
        assert sorted(u[0] for u in rec.updates) == sorted(list(range(50)) * 3)
    assert len(TRACES) == 1  # the channel is data: one compilation for both reporters
    # a closed channel drops late reports instead of delivering them to someone else
    progress.report(np.int32(channels[0]), 1, 1, 1, 0)
    assert len(recorders[0].updates) == 150


def test_no_reporter_is_channel_zero_and_drops_reports():
    with progress.open_channel(None) as channel:
        assert channel == 0
        progress.report(0, 1, 2, 3, 0)  # nothing registered: no error, nothing delivered
