"""The PyTorch port of the zoo's networks, for benchmarks against PyTorch attack libraries on
identical weights: now :mod:`onepixel_jax.zoo.torch_port` (re-exported here for the scripts
in this folder).

``port(name) -> (torch.nn.Module, predict_fn, card)``: the module takes NCHW float images in
[0, 1] and returns logits; :func:`max_prob_difference` checks it against the JAX model.
"""

from __future__ import annotations

from onepixel_jax.zoo.torch_port import max_prob_difference, port, torch_twin

__all__ = ["max_prob_difference", "port", "torch_twin"]
