"""The optional C hot path of IntervalClock.now(); all other metadata is in pyproject.toml.

`optional=True`: without a compiler or Python's headers the install still succeeds and
IntervalClock uses its pure-Python path (`IntervalClock.accelerated` says which one runs).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("timekit.clock._fastclock", ["timekit/clock/_fastclock.c"], optional=True,
                             extra_compile_args=["-O2"])])
