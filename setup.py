"""Builds seismo's compiled core: every ``streams/_*.pyx`` (Cython -> C, gcc).

Everything else is in pyproject.toml. The compiled modules are required (the detector imports
them); each has a readable pure-Python reference in the module that owns it, which gives the
same results, slower, and which ``SEISMO_PURE_PYTHON=1`` selects (see ``streams.core``).
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
