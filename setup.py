"""Builds seismo's compiled core: every ``streams/_*.pyx`` (Cython -> C, gcc).

Everything else is in pyproject.toml. The compiled modules are optional at import time: the
pure-Python reference in the same package gives the same results, slower (see
``streams.core``), so a machine without a C compiler still runs seismo.
"""

from Cython.Build import cythonize
from setuptools import setup

setup(
    ext_modules=cythonize(
        "streams/_*.pyx",
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
        quiet=True,
    )
)
