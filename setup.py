"""The one compiled part: plait.store._copy (see its source). It is optional: where no C
compiler is at hand the install goes on without it and the store copies with numpy."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("plait.store._copy", ["plait/store/_copy.c"], optional=True)])
