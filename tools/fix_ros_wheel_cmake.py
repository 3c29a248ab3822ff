#!/usr/bin/env python3
"""Rewrite build-machine paths baked into the ROS 2 PyPI wheels' CMake files.

The manylinux wheels (ros-* on PyPI) were built in a container whose Python
lived in /opt/python/cpXY-cpXY; their exported CMake files keep those include
paths, so `find_package(rosidl_generator_py)` etc. point at directories that
do not exist here. This script replaces them with this interpreter's Python
include directory and numpy's include directory. It is idempotent and prints
how many files it changed.

Usage: python tools/fix_ros_wheel_cmake.py [PREFIX]   (PREFIX defaults to sys.prefix)
"""
import glob
import os
import re
import sys
import sysconfig

_PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+t?/include/python3\.\d+t?")
_NUMPY_INCLUDE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_core|core)/include")


def fix_prefix(prefix):
    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = []
    for path in sorted(glob.glob(os.path.join(prefix, "share", "*", "cmake", "*.cmake"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # numpy first: its pattern is longer and would otherwise be cut by the other
        new = _NUMPY_INCLUDE.sub(np_include, text)
        new = _PY_INCLUDE.sub(py_include, new)
        if new != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            changed.append(path)
    return changed


def main(argv):
    prefix = argv[1] if len(argv) > 1 else sys.prefix
    changed = fix_prefix(prefix)
    print("fix_ros_wheel_cmake: rewrote %d file(s) under %s" % (len(changed), prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
