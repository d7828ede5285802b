"""One spiking layer, forward + backward, side by side: nsnn vs snntorch vs spikingjelly vs a floor.

    python bench/neurons.py [--repeats 9] [--threads N] [--device cpu|cuda] [--keep-freed-memory]

For each shape (``[4, 32, 128, 16, 16]`` and ``[32, 16, 4096]``, time-first) it times, in this one
process, the median of ``--repeats`` forward+backward passes of:

* ``floor``: ``y = 2·x`` through the same harness (the cheapest possible elementwise layer);
* nsnn ``LIF`` and ``NILIF`` with each noise family (fused multi-step kernel);
* ``snntorch.Leaky`` (β = 0.5, reset to zero) stepped in the usual Python loop over T;
* spikingjelly ``LIFNode(step_mode="m")`` (τ = 2, hard reset to 0), when installed.

Two timings per layer: ``ms`` runs each layer back to back (its tensors and freed buffers stay hot
in cache and in the allocator: the best case, where the floor is cheapest), in 5 blocks per layer
that take turns with the other layers' blocks, so that a slow spell of the shared machine is spread
over all layers; ``in turn`` runs the layers one after another in each round, in a shuffled order
(every layer finds caches and allocator as the others left them, as inside a network). On the CPU
both depend on glibc's allocator, which may hand each freed 8-16 MiB buffer back to the OS, so that
the next layer's output page-faults in again (a few ms, in any layer, the floor included);
``--keep-freed-memory`` stops that (``mallopt``: no trimming, no ``mmap`` below 32 MiB), as a
caching allocator (jemalloc, tcmalloc) would. Also the bytes each layer saves for backward (via
``saved_tensors_hooks``; the input's storage counts when a layer keeps it), relative to the input's
bytes. Targets on a 2-core CPU: NILIF ≤ 2.0× the floor, ≤ 1/3 of snntorch's time, saved ≤ 1.25×.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

import nsnn

from saved_memory import held_for_backward

SHAPES = [(4, 32, 128, 16, 16), (32, 16, 4096)]


class Floor(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * 2.0


class SnntorchLoop(nn.Module):
    """snntorch's idiom: one ``Leaky`` call per time step, membrane threaded through the loop."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch

        self.lif = snntorch.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")

    def forward(self, x: Tensor) -> Tensor:
        mem = torch.zeros_like(x[0])
        out = []
        for t in range(x.shape[0]):
            spk, mem = self.lif(x[t], mem)
            out.append(spk)
        return torch.stack(out)


def spikingjelly_layer() -> nn.Module | None:
    try:
        from spikingjelly.activation_based import neuron
    except Exception:
        return None
    return neuron.LIFNode(tau=2.0, decay_input=False, v_reset=0.0, step_mode="m")


def saved_bytes(layer: nn.Module, x: Tensor) -> int:
    """Bytes autograd keeps for ``layer``'s backward (:func:`saved_memory.held_for_backward`): nsnn
    keeps ``x`` itself and replays the membrane from it."""
    if hasattr(layer, "reset"):
        layer.reset()
    return held_for_backward(lambda: layer(x))


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse: serve blocks below 32 MiB from the heap, never trim it."""
    import ctypes

    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 2**31 - 1)):
        raise SystemExit("--keep-freed-memory needs glibc's mallopt")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timer(layer: nn.Module, x: Tensor, grad: Tensor) -> Callable[[], float]:
    """A closure timing one forward+backward pass of ``layer`` (seconds)."""

    def once() -> float:
        xi = x.detach().requires_grad_(True)
        if hasattr(layer, "reset"):  # spikingjelly keeps the membrane between calls
            layer.reset()
        sync(x.device)
        t0 = time.perf_counter()
        layer(xi).backward(grad)
        sync(x.device)
        return time.perf_counter() - t0

    return once


def time_back_to_back(
    timers: dict[str, Callable[[], float]], repeats: int, rounds: int = 5
) -> dict[str, float]:
    """Median ms per layer over ``repeats`` runs, each timed right after a run of the same layer: its
    tensors and freed buffers stay hot in cache and in the allocator (the best case for every layer).
    The runs come in up to ``rounds`` blocks per layer (a warm-up run, then the block's share of the
    ``repeats`` timed runs), the layers' blocks taking turns, so that a slow spell of a shared machine
    falls on every layer rather than on whichever layer happened to be running."""
    rounds = min(rounds, repeats)
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for block in range(rounds):
        timed = repeats // rounds + int(block < repeats % rounds)
        for name, once in timers.items():
            once()
            samples[name] += [once() for _ in range(timed)]
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def time_in_turn(timers: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median ms per layer, the layers run in turn within each round (after 2 warm-up rounds): every
    layer starts after the others have used the caches and the allocator, as inside a network. The
    order is shuffled every round (seeded), so that no layer always inherits the same predecessor's
    heap: with glibc's defaults a layer's frees can hand memory back to the OS and the next layer's
    allocations page-fault it in again, which in a fixed order fell on the same layers every round."""
    samples: dict[str, list[float]] = {name: [] for name in timers}
    order = random.Random(0)
    names = list(timers)
    for r in range(repeats + 2):
        order.shuffle(names)
        for name in names:
            dt = timers[name]()
            if r >= 2:
                samples[name].append(dt)
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="timed runs per layer (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the targets are for the CPU)")
    ap.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="stop glibc from returning freed buffers to the OS (no page faults on reuse)",
    )
    args = ap.parse_args()
    if args.repeats < 1 or args.threads < 0:
        ap.error(f"--repeats must be >= 1 and --threads >= 0, got {args.repeats} and {args.threads}")
    if args.repeats < 7:
        print(f"note: {args.repeats} repeats; the targets are stated for the median of at least 7")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        ap.error(f"--device {args.device!r}: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: no CUDA device is available")
    if args.keep_freed_memory:
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers: dict[str, Callable[[], nn.Module | None]] = {"floor (2x)": Floor, "nsnn LIF": nsnn.LIF}
    for family in nsnn.list_noises():
        layers[f"nsnn NILIF {family}"] = lambda f=family: nsnn.NILIF(noise=f, sigma=0.3)
    layers["snntorch Leaky loop"] = SnntorchLoop
    layers["spikingjelly LIFNode m"] = spikingjelly_layer
    threads = f"threads {torch.get_num_threads()}"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    allocator = ", freed memory kept" if args.keep_freed_memory else ""
    print(f"torch {torch.__version__}, {where}, repeats {args.repeats}{allocator}")
    for shape in SHAPES:
        x = (torch.randn(shape) * 0.8 + 0.6).to(device)
        grad = torch.randn(shape).to(device)
        print(f"\nshape {list(shape)}  ({x.numel() / 1e6:.2f} M elements, input {x.nbytes / 2**20:.1f} MiB)")
        print(
            f"{'layer':26s} {'ms':>8s} {'x floor':>8s} {'x snntorch':>11s}"
            f" {'in turn ms':>11s} {'x floor':>8s} {'saved/input':>12s}"
        )
        timers, saved = {}, {}
        for name, make in layers.items():
            layer = make()
            if layer is None:
                print(f"{name:26s} {'(not installed)':>8s}")
                continue
            layer = layer.to(device)
            timers[name] = timer(layer, x, grad)
            saved[name] = saved_bytes(layer, x.detach().requires_grad_(True)) / x.nbytes
        hot = time_back_to_back(timers, args.repeats)
        turn = time_in_turn(timers, args.repeats)
        snn = next(ms for name, ms in hot.items() if name.startswith("snntorch"))
        for name in timers:
            print(
                f"{name:26s} {hot[name]:8.2f} {hot[name] / hot['floor (2x)']:8.2f} {hot[name] / snn:11.3f}"
                f" {turn[name]:11.2f} {turn[name] / turn['floor (2x)']:8.2f} {saved[name]:12.2f}"
            )


if __name__ == "__main__":
    main()
