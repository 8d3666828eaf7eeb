"""Attack experiments over many images: sweeps into run folders, their summaries and reports.

- :mod:`~onepixel_jax.experiments.run_folder`: the run folder's files and all their I/O
- :mod:`~onepixel_jax.experiments.selection`: which images are attacked, with which targets
- :mod:`~onepixel_jax.experiments.inputs`: loading the model and dataset, one-line errors
- :mod:`~onepixel_jax.experiments.sweep`: :class:`SweepConfig` and :func:`run_sweep`
- :mod:`~onepixel_jax.experiments.summary`: measurements per method, paired comparisons
- :mod:`~onepixel_jax.experiments.report`: ``report.md``/``summary.json``, comparison table
- :mod:`~onepixel_jax.experiments.plots`: the report's figures (matplotlib)
- :mod:`~onepixel_jax.experiments.methods`: named methods (strategies and presets)
- :mod:`~onepixel_jax.experiments.grids`: the search and defence measurement grids, one run
  folder per cell; :mod:`~onepixel_jax.experiments.grid_report`: their tables and figures
- :mod:`~onepixel_jax.experiments.corner_table`: the whole corner space of some images, and
  scan orders replayed on it; :mod:`~onepixel_jax.experiments.defence_models`: defended
  checkpoints for the grids
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
