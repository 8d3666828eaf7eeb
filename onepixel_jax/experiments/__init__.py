"""Attack experiments over many images: sweeps into run folders, their summaries and reports.

- :mod:`~onepixel_jax.experiments.run_folder`: the run folder's files and all their I/O
- :mod:`~onepixel_jax.experiments.selection`: which images are attacked, with which targets
- :mod:`~onepixel_jax.experiments.inputs`: loading the model and dataset, one-line errors
- :mod:`~onepixel_jax.experiments.sweep`: :class:`SweepConfig` and :func:`run_sweep`
- :mod:`~onepixel_jax.experiments.summary`: measurements per method, paired comparisons
- :mod:`~onepixel_jax.experiments.report`: ``report.md``/``summary.json``, comparison table
- :mod:`~onepixel_jax.experiments.plots`: the report's figures (matplotlib)
"""

from __future__ import annotations

from onepixel_jax.experiments.report import comparison_table, write_report
from onepixel_jax.experiments.run_folder import load_run
from onepixel_jax.experiments.summary import summarize
from onepixel_jax.experiments.sweep import SweepConfig, SweepOutcome, run_sweep

__all__ = [
    "SweepConfig",
    "SweepOutcome",
    "comparison_table",
    "load_run",
    "run_sweep",
    "summarize",
    "write_report",
]
