"""The Python module's build for pip (pyproject.toml): python/brain_module.cpp against the torch
that this interpreter imports, with torch's extension builder. The project's CMake build makes the
same module for Debian's python3 (python/CMakeLists.txt)."""

import os
import pathlib
import re

import torch
from setuptools import setup
from setuptools.command.build_py import build_py
from torch.utils.cpp_extension import BuildExtension, CppExtension

root = pathlib.Path(__file__).resolve().parent
config = (root / "include" / "brain" / "config.hpp").read_text()
version = ".".join(re.search(rf"#define BRAIN_VERSION_{part} (\d+)", config).group(1)
                   for part in ("MAJOR", "MINOR", "PATCH"))


class build_py_recording_torch(build_py):
    """Writes brain/_build.py: the torch this build compiled against, which brain/__init__.py checks."""

    def run(self):
        super().run()
        path = os.path.join(self.build_lib, "brain", "_build.py")
        with open(path, "w") as f:
            f.write(f'"""Written by setup.py."""\nTORCH_VERSION = "{torch.__version__}"\n')


setup(
    version=version,
    # The module shares at::Tensor and autograd with torch._C: only the torch it was built against.
    install_requires=[f"torch=={torch.__version__}"],
    ext_modules=[
        CppExtension(
            "brain._brain",
            ["python/brain_module.cpp"],
            include_dirs=[str(root / "include")],
            define_macros=[("BRAIN_WITH_TORCH", None)],
            # Optimised as Python's own flags say (-O2 on Debian); CFLAGS adds to them.
            extra_compile_args=["-std=c++20", "-Wno-unused-parameter"],
        )
    ],
    cmdclass={"build_ext": BuildExtension, "build_py": build_py_recording_torch},
)
