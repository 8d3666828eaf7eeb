"""The ``fast`` preset: the query-efficient search chosen from the measurements of
``docs/search.md``.

At ``d = 1`` it is the exhaustive corner scan (:mod:`.corner_scan`, each pixel's farthest corner
first, the most promising pixels first); at ``d > 1`` Sparse-RS (:mod:`.sparse_rs`). Both run
64 candidates per image and generation, and give an image up after ``FAST_STALL`` generations
without improvement at ``d = 1`` (2,048 queries) and ``FAST_STALL_SPARSE`` at ``d > 1`` (4,096:
Sparse-RS chains improve in later, rarer steps).
"""

from __future__ import annotations

from ..types import Strategy
from .base import PAPER_BUDGET, SearchSpace, StrategySpec
from .corner_scan import corner_scan
from .sparse_rs import sparse_rs

FAST_POPSIZE = 64
FAST_STALL = 32
FAST_STALL_SPARSE = 64


def fast(space: SearchSpace) -> Strategy:
    """The corner scan at ``d = 1``, Sparse-RS over the run's generations at ``d > 1``."""
    return corner_scan(space) if space.pixels == 1 else sparse_rs(space)


def fast_stall(pixels: int) -> int:
    return FAST_STALL if pixels == 1 else FAST_STALL_SPARSE


SPEC = StrategySpec(
    name="fast",
    build=fast,
    description="the measured fast preset: corner scan at d=1, Sparse-RS at d>1, stall rule",
    popsize=FAST_POPSIZE,
    budget=PAPER_BUDGET,
    stall=fast_stall,
)
