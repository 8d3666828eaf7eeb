"""``python -m onepixel_jax.cli``: the ``onepixel`` command."""

import sys

from onepixel_jax.cli import main

sys.exit(main())
