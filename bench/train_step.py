"""Cost of the spiking neurons in a full training step: spiking ResNet-19 vs its ReLU twin.

    python bench/train_step.py [--steps 5] [--warmup 2] [--batch 16] [--timestep 4] [--threads N] [--json]

CPU comparison of two networks:

* ``spiking``: ``spiking_resnet19`` (NILIF, Gaussian σ=0.3), input ``[T, B, 3, 32, 32]``, T=4, B=16;
* ``relu``: the *same* network with every :class:`nsnn.neurons.SpikingNeuron` swapped for ``nn.ReLU``
  (:func:`relu_twin`), input ``[1, T·B, 3, 32, 32]``: the identical conv/BN/linear work, since
  stateless layers run on the flattened ``[T·B, ...]`` tensor.

One step = forward, per-step CE, backward, Adam update. Timing: both networks live in one process
and their steps alternate (spiking, relu, spiking, ...), so background load hits both alike; reported
are the medians over ``--steps`` steps after ``--warmup`` of the wall-clock time and of the process
CPU time, and the spiking/relu ratio of each (target ≤ 1.15). Memory: each network runs two steps in
its own subprocess, which reports its peak resident memory (``VmHWM``) and the growth over its
size just before the first step, and the bytes autograd saves for backward in one forward pass
(``torch.autograd.graph.saved_tensors_hooks``, unique storages). With CUDA, also the training
throughput (images/s) of ResNet-19 T=4 on CIFAR-sized input with AMP (fp16 + GradScaler); on a
CPU-only machine that part is skipped.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from saved_memory import held_for_backward

KINDS = ("spiking", "relu")


def relu_twin(model: nn.Module) -> nn.Module:
    """Replace, in place, every SpikingNeuron of ``model`` by ``nn.ReLU`` (works on ``[T, B, ...]``)."""
    from nsnn.neurons import SpikingNeuron

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SpikingNeuron):
                setattr(parent, name, nn.ReLU())
    return model


def build(kind: str, batch: int, timestep: int, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """The network and its input: spiking ``[T, B, 3, 32, 32]`` or ReLU twin ``[1, T·B, 3, 32, 32]``."""
    from nsnn.models import create

    torch.manual_seed(0)
    model = create("spiking_resnet19", num_classes=10, neuron="NILIF", sigma=0.3)
    if kind == "relu":
        model = relu_twin(model)
        x = torch.randn(1, timestep * batch, 3, 32, 32)
    else:
        x = torch.randn(timestep, batch, 3, 32, 32)
    return model.to(device), x.to(device)


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after one forward pass (:mod:`saved_memory`)."""
    return held_for_backward(lambda: model(x))


class Stepper:
    """Training steps (forward, per-step CE, backward, Adam) of one network on a fixed batch."""

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model.train(), x
        self.y = torch.arange(x.shape[1], device=x.device) % 10
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []

    def step(self, record: bool = True) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        logits = self.model(self.x)
        loss = F.cross_entropy(logits.flatten(0, 1), self.y.repeat(logits.shape[0]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if record:
            self.wall_ms.append(1000 * (time.perf_counter() - wall))
            self.cpu_ms.append(1000 * (time.process_time() - cpu))


def interleaved_timing(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Alternate spiking and ReLU-twin steps in this process; median wall and CPU ms of each."""
    steppers = {kind: Stepper(*build(kind, args.batch, args.timestep, torch.device("cpu"))) for kind in KINDS}
    for i in range(args.warmup + args.steps):
        for stepper in steppers.values():
            stepper.step(record=i >= args.warmup)
    return {
        kind: {
            "input_shape": list(s.x.shape),
            "wall_ms": s.wall_ms,
            "cpu_ms": s.cpu_ms,
            "median_wall_ms": statistics.median(s.wall_ms),
            "median_cpu_ms": statistics.median(s.cpu_ms),
        }
        for kind, s in steppers.items()
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` of a child process can
    include its parent's size at fork time, so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_worker(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS over two training steps of one network, and its saved-for-backward bytes."""
    model, x = build(kind, args.batch, args.timestep, torch.device("cpu"))
    stepper = Stepper(model, x)
    rss_before = peak_rss_mb()
    stepper.step()
    stepper.step()
    rss_peak = peak_rss_mb()
    return {
        "peak_rss_mb": rss_peak,
        "rss_growth_mb": rss_peak - rss_before,
        "saved_for_backward_mb": saved_bytes(model, x) / 2**20,
    }


def _cuda_steps(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Median AMP (fp16 + GradScaler) training step of one network kind on CUDA."""
    device = torch.device("cuda")
    model, x = build(kind, args.cuda_batch, args.timestep, device)
    model.train()
    y = torch.arange(x.shape[1], device=device) % 10
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.warmup + 3 * args.steps):
        torch.cuda.synchronize()
        tick = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.repeat(logits.shape[0]))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - tick)
    median = statistics.median(times[args.warmup :])
    return {
        "median_step_ms": 1000 * median,
        "images_per_second": args.cuda_batch / median,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
    }


def cuda_throughput(args: argparse.Namespace) -> dict[str, Any] | None:
    """Training images/s of ResNet-19 (T=4, batch 64, 32×32) with fp16 AMP on CUDA, next to the ReLU
    twin at batch T·64 (same conv work); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    spiking, relu = _cuda_steps("spiking", args), _cuda_steps("relu", args)
    return {
        "device": torch.cuda.get_device_name(0),
        "batch": args.cuda_batch,
        "timestep": args.timestep,
        **spiking,
        "relu_twin_step_ms": relu["median_step_ms"],
        "relu_twin_peak_memory_mb": relu["peak_memory_mb"],
        "ratio_vs_relu_twin": spiking["median_step_ms"] / relu["median_step_ms"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per network (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batch", type=int, default=16, help="spiking batch B (the ReLU twin gets T·B)")
    p.add_argument("--timestep", "-T", type=int, default=4, help="time steps T")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--cuda-batch", type=int, default=64, help="batch of the CUDA throughput run")
    p.add_argument("--skip-cpu", action="store_true", help="only the CUDA throughput")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    args = p.parse_args()
    counts = {"--steps": args.steps, "--batch": args.batch, "--timestep": args.timestep}
    counts["--cuda-batch"] = args.cuda_batch
    bad = [f"{flag} {value}" for flag, value in counts.items() if value < 1]
    if bad or args.warmup < 0 or args.threads < 0:
        p.error(f"counts must be >= 1 and --warmup/--threads >= 0; got {', '.join(bad) or 'a negative one'}")
    if args.skip_cpu and not torch.cuda.is_available():
        p.error("--skip-cpu leaves only the CUDA throughput, and no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(memory_worker(args.worker, args)))
        return 0

    report: dict[str, Any] = {}
    if not args.skip_cpu:
        memory = {}
        for kind in KINDS:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", kind, *sys.argv[1:]], capture_output=True, text=True
            )
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            memory[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        report = interleaved_timing(args)
        for kind in KINDS:
            report[kind].update(memory[kind])
        s, r = report["spiking"], report["relu"]
        report["ratio_wall"] = s["median_wall_ms"] / r["median_wall_ms"]
        report["ratio_cpu"] = s["median_cpu_ms"] / r["median_cpu_ms"]
        report["threads"] = torch.get_num_threads()
        print(
            f"spiking_resnet19 training step on CPU ({report['threads']} threads), networks alternating, "
            f"median of {args.steps} steps after {args.warmup} warm-up:"
        )
        for kind in KINDS:
            row = report[kind]
            print(
                f"  {kind:8s} input {row['input_shape']}: wall {row['median_wall_ms']:8.1f} ms, "
                f"CPU {row['median_cpu_ms']:8.1f} ms | peak RSS {row['peak_rss_mb']:6.0f} MB "
                f"(+{row['rss_growth_mb']:.0f} MB in training) | saved for backward "
                f"{row['saved_for_backward_mb']:.0f} MB"
            )
        verdict = "meets" if report["ratio_wall"] <= 1.15 else "misses"
        print(
            f"  ratio spiking / relu: wall {report['ratio_wall']:.3f} ({verdict} the ≤ 1.15 target), "
            f"CPU time {report['ratio_cpu']:.3f}"
        )
    gpu = cuda_throughput(args)
    if gpu is None:
        print("CUDA not available: skipping the GPU throughput (ResNet-19, T=4, AMP) measurement")
    else:
        report["cuda"] = gpu
        print(
            f"CUDA {gpu['device']}: ResNet-19 T={gpu['timestep']} batch {gpu['batch']} AMP fp16: "
            f"{gpu['images_per_second']:.0f} images/s ({gpu['median_step_ms']:.1f} ms/step, "
            f"peak {gpu['peak_memory_mb']:.0f} MB); ReLU twin at batch {gpu['timestep'] * gpu['batch']}: "
            f"{gpu['relu_twin_step_ms']:.1f} ms/step, ratio {gpu['ratio_vs_relu_twin']:.2f}"
        )
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
