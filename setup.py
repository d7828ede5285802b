"""Build hook for the optional C++ extension ``nsnn._C`` (fused multi-step LIF kernels for CPU).

All package metadata lives in ``pyproject.toml``; this file only declares the extension. Building it
needs torch importable at build time (``pip install --no-build-isolation -e .``) and the C++
compiler torch's headers need (C++20, e.g. GCC >= 10). It is optional: without torch, without a
compiler, or on any compile error nsnn installs without it and :mod:`nsnn.functional.native` falls
back to the pure-torch kernel (warning once). ``NSNN_BUILD_NATIVE=0`` skips it on purpose.

Flags: ``-O3``, ``-g0`` (no debug info: a smaller library, a faster build), ``-fno-trapping-math``
(lets the compiler if-convert and vectorize the branch-free kernels; nsnn never inspects
floating-point exception flags) and OpenMP, which ``at::parallel_for`` uses. No ``-march``:
AVX2/AVX-512 variants are compiled per function and chosen at import time from the CPU's features,
so the build runs on any x86-64 machine.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import setup

CSRC = "nsnn/csrc"
SOURCES = [f"{CSRC}/{name}.cpp" for name in ("lif", "lif_isa_generic", "lif_isa_avx2", "lif_isa_avx512")]
HEADERS = sorted(glob.glob(f"{CSRC}/*.h"))  # every header: editing any one rebuilds the extension


def _skip(reason: str) -> None:
    print(
        f"[nsnn] WARNING: nsnn._C not built ({reason}); the pure-torch LIF kernel will be used",
        file=sys.stderr,
    )


def native_extension() -> dict[str, Any]:
    """``setup()`` keywords for ``nsnn._C``, or none when it cannot or should not be built."""
    if os.environ.get("NSNN_BUILD_NATIVE", "1") == "0":
        _skip("NSNN_BUILD_NATIVE=0")
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as e:  # torch missing or broken at build time
        _skip(f"torch is not importable at build time: {e}")
        return {}

    class OptionalBuildExtension(BuildExtension):
        """``BuildExtension`` whose failures are reported and skipped instead of failing the install."""

        def run(self) -> None:
            try:
                super().run()
            except Exception as e:
                _skip(f"{type(e).__name__}: {e}")

        def build_extension(self, ext: Any) -> None:
            try:
                super().build_extension(ext)
            except Exception as e:
                _skip(f"{type(e).__name__}: {e}")

    if sys.platform == "win32":
        compile_args, link_args = ["/O2", "/openmp"], []
    elif sys.platform == "darwin":  # Apple clang has no -fopenmp: kernels run single-threaded
        compile_args, link_args = ["-O3", "-g0", "-fno-trapping-math"], []
    else:
        compile_args, link_args = ["-O3", "-g0", "-fno-trapping-math", "-fopenmp"], ["-fopenmp"]
    ext = CppExtension(
        "nsnn._C",
        SOURCES,
        depends=HEADERS,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        optional=True,
    )
    return {"ext_modules": [ext], "cmdclass": {"build_ext": OptionalBuildExtension}}


setup(**native_extension())
