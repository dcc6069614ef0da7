"""Builds the optional C counting kernel; everything else is in pyproject.toml.

The extension is optional: without a compiler (or on an interpreter without the GIL) the build
skips it and concmon counts with its pure-Python kernel, the same numbers a little slower.
"""

import sysconfig

from setuptools import Extension, setup

kernel = Extension(
    "concmon._counting",
    sources=["concmon/_counting.c"],
    optional=True,
)
setup(ext_modules=[] if sysconfig.get_config_var("Py_GIL_DISABLED") else [kernel])
