"""The optional C speed-up of the node scan (nsinspect/node/_scan.c).

Built when a C compiler and the Python headers are there; without them (or with
NSINSPECT_PURE_PYTHON=1 at install time) the install goes on and the same loop runs in
Python.  Everything else is declared in pyproject.toml.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing: the extension only makes the scan faster."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all (setuptools raises several kinds)
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # compiler or headers missing, compile error
            self._skip(e)

    @staticmethod
    def _skip(e: Exception) -> None:
        print(f"nsinspect: the C speed-up was not built ({e}); the pure-Python scan will be used.", file=sys.stderr)


ext_modules = []
if not os.environ.get("NSINSPECT_PURE_PYTHON"):
    ext_modules.append(Extension("nsinspect.node._scan", ["nsinspect/node/_scan.c"], extra_compile_args=["-O2"]))

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
