"""Which implementation the detector's hot paths run: the compiled core or its reference.

Each hot path has a pure-Python reference (the readable definition, in the module that owns
it) and a compiled twin in ``streams/_*core.pyx`` (built by setup.py when seismo is
installed) that must give identical results; tests compare the two. ``SEISMO_PURE_PYTHON=1``
in the environment makes every hot path run its reference instead (for A/B benchmarks and
for checking a suspected difference), read once at import. The hot paths look it up as
``core.PURE_PYTHON`` at each call, so a test can switch it (tests.helpers.pure_python).
"""

from __future__ import annotations

import os

PURE_PYTHON = os.environ.get("SEISMO_PURE_PYTHON", "") == "1"
