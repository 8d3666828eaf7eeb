"""Fooling images (Nguyen, Yosinski & Clune, CVPR 2015): MAP-Elites over classes.

Modules: :mod:`archive` (the per-class elite archive), :mod:`direct` (one gene per pixel,
polynomial mutation), :mod:`cppn` (fixed-capacity CPPN genomes), :mod:`map_elites` (the
compiled loop) and :mod:`run` (the resumable run behind ``onepixel fool``). Retraining with
an extra "fooling" class is a defence: :mod:`onepixel_jax.defences.fooling_class`.
"""

from onepixel_jax.fooling import archive, cppn, direct, map_elites
from onepixel_jax.fooling.archive import Archive
from onepixel_jax.fooling.cppn import CPPNGenome, CPPNParams, cppn_encoding
from onepixel_jax.fooling.direct import DirectParams, direct_encoding, polynomial_mutation
from onepixel_jax.fooling.encoding import Encoding
from onepixel_jax.fooling.map_elites import FoolingState, GenerationMetrics

__all__ = [
    "Archive",
    "CPPNGenome",
    "CPPNParams",
    "DirectParams",
    "Encoding",
    "FoolingState",
    "GenerationMetrics",
    "archive",
    "cppn",
    "cppn_encoding",
    "direct",
    "direct_encoding",
    "map_elites",
    "polynomial_mutation",
]
