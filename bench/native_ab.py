"""Two builds of nsnn's C++ kernels side by side in one process: per-family time ratios new/old.

    python bench/native_ab.py OLD.so NEW.so [--shape 32,65536] [--rounds 40] [--threads 2] [--soft] [--cold]

Build each version (``python setup.py build_ext --inplace``) and copy its
``nsnn/_C.*.so`` aside; this script loads both as separate modules (the library is a plain pybind11
module, so two copies coexist) and, for the deterministic LIF (heaviside) and NILIF with each noise
family, calls the native forward and backward of the old and the new build in turn, ``--rounds``
times, alternating which goes first. It prints the median over rounds of the per-round ratio new/old
for the forward, the backward and their sum, and the old build's median total in ms. Ratios taken
this way cancel the slow drifts of a shared machine that separate runs of ``bench/neurons.py`` do not;
glibc is told to keep freed memory (no page faults on reuse). A layer of ``[T, N]`` (time first).
``--cold`` writes a 64 MiB buffer before each forward and each backward, so that both start with
their tensors out of the caches, as in a network whose other layers run in between.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path

import torch

# name: (family id, mode id) of nsnn/functional/kernel_spec.py: LIF fires by heaviside (mode 0)
CASES = {"lif": (3, 0), "gaussian": (0, 1), "logistic": (1, 1), "triangular": (2, 1), "uniform": (3, 1)}


def load(path: Path, package: str) -> types.ModuleType:
    """The extension at ``path`` imported as ``<package>._C`` (its init function is ``PyInit__C``)."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (copy a built nsnn/_C.*.so there)")
    parent = types.ModuleType(package)
    parent.__path__ = []
    sys.modules[package] = parent
    spec = importlib.util.spec_from_file_location(f"{package}._C", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--shape", default="32,65536", help="T,N (default: [32, 16, 4096] as [32, 65536])")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--soft", action="store_true", help="soft reset (default: hard)")
    ap.add_argument("--cold", action="store_true", help="evict the caches before each forward and backward")
    args = ap.parse_args()
    try:
        steps, neurons = (int(s) for s in args.shape.split(","))
    except ValueError:
        ap.error(f"--shape must be T,N; got {args.shape!r}")
    if steps < 1 or neurons < 1 or args.rounds < 1 or args.threads < 0:
        ap.error("--shape, --rounds must be positive and --threads >= 0")
    libc = ctypes.CDLL(None)
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: serve blocks below 32 MiB from the heap
    libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never give the heap back
    if args.threads:
        torch.set_num_threads(args.threads)
    builds = [load(args.old, "nsnn_ab_old"), load(args.new, "nsnn_ab_new")]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(steps, neurons, generator=gen) * 0.8 + 0.6
    grad = torch.randn(steps, neurons, generator=gen)
    hard = not args.soft
    evict = torch.zeros(16 << 20) if args.cold else None

    def run(native: types.ModuleType, family: int, mode: int, seed: int) -> tuple[float, float]:
        if evict is not None:
            evict.add_(1.0)
        t0 = time.perf_counter()
        _, bits = native.forward(x, 0.5, 1.0, 0.3, family, mode, hard, seed, True)
        forward = time.perf_counter() - t0
        if evict is not None:
            evict.add_(1.0)
        t1 = time.perf_counter()
        native.backward(grad, x, bits, 0.5, 1.0, 0.3, family, mode, hard, False, False)
        return forward, time.perf_counter() - t1

    cold = ", caches evicted before each pass" if args.cold else ""
    print(
        f"torch threads {torch.get_num_threads()}, [T, N] = [{steps}, {neurons}], {args.rounds} rounds{cold}"
    )
    print(f"{'layer':12s} {'fwd new/old':>12s} {'bwd new/old':>12s} {'total':>8s} {'old ms':>8s}")
    for name, (family, mode) in CASES.items():
        for native in builds:  # warm-up
            run(native, family, mode, 0)
        fwd, bwd, total, old_ms = [], [], [], []
        for r in range(args.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            times = {id(native): run(native, family, mode, r) for native in order}
            (f0, b0), (f1, b1) = times[id(builds[0])], times[id(builds[1])]
            fwd.append(f1 / f0)
            bwd.append(b1 / b0)
            total.append((f1 + b1) / (f0 + b0))
            old_ms.append((f0 + b0) * 1e3)
        med = statistics.median
        print(f"{name:12s} {med(fwd):12.3f} {med(bwd):12.3f} {med(total):8.3f} {med(old_ms):8.3f}")


if __name__ == "__main__":
    main()
