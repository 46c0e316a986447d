"""Which implementation the detector's hot paths run: the compiled core or its reference.

Each hot path has a pure-Python reference (the readable definition, in the module that owns
it) and a compiled twin in ``streams/_*core.pyx`` (built by setup.py when seismo is
installed) that must give identical results; tests compare the two. ``SEISMO_PURE_PYTHON=1``
in the environment makes every hot path run its reference instead (for A/B benchmarks and
for checking a suspected difference), read once at import. The hot paths look it up as
``core.PURE_PYTHON`` at each call, so a test can switch it (tests.helpers.pure_python).
"""

from __future__ import annotations

import gc
import os

PURE_PYTHON = os.environ.get("SEISMO_PURE_PYTHON", "") == "1"


# Collect every 50,000 net allocations instead of 700 (CPython's default (700, 10, 10)).
GC_THRESHOLD = (50_000, 20, 20)


def tune_gc() -> None:
    """Make the cyclic garbage collector run less often, for a detecting process.

    The detector allocates many small, short-lived and acyclic objects per post (items,
    lists, post refs; reference counting frees them) while holding a large long-lived
    state (candidates, recent posts, the LSH index). At the default thresholds the
    collector ran every few posts and its full passes walked that state again and again:
    10-15% of the detector's CPU. ``gc.freeze()`` also moves everything alive at startup
    (modules, models, settings) out of the collector's sight. Cycles are still collected,
    later. Called once by the worker after it is built, and by the detector benchmarks.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
