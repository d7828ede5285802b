"""Where a run executes: device, DDP process group, mixed precision, seeding, model (un)wrapping.

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :func:`setup_runtime` joins the process
group (``nccl`` on CUDA, ``gloo`` on CPU) and pins ``cuda:LOCAL_RANK``; each process then loads its
shard, DDP averages gradients, and only rank 0 logs and writes files::

    rt = setup_runtime("auto")
    model = wrap_model(model.to(rt.device), rt, compile=False)
    with rt.autocast(): logits = model(x)
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from nsnn.training.config import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Device and process-group facts for one process of a (possibly distributed) run."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    amp: bool = False
    owns_group: bool = False
    threads_before: int = 0  # torch's thread count before setup_runtime set one (0: it set none)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def amp_dtype(self) -> torch.dtype:
        """bf16 on CPU (no scaler needed), fp16 on CUDA (with a GradScaler)."""
        return torch.float16 if self.device.type == "cuda" else torch.bfloat16

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context when AMP is on, else a no-op."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 autocast on CUDA."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp and self.device.type == "cuda")


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:local_rank`` if CUDA is available else ``cpu``; ``cuda`` → ``cuda:local_rank``."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"bad device {spec!r}; use auto, cpu, cuda or cuda:N ({e})") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device {spec!r}; use auto, cpu, cuda or cuda:N")
    return device


def setup_runtime(device: str = "auto", amp: bool = False, threads: int = 0) -> Runtime:
    """Resolve the device and, under torchrun, initialise the process group from the environment;
    ``threads > 0`` sets torch's CPU thread count until :func:`teardown_runtime`."""
    threads_before = torch.get_num_threads() if threads > 0 else 0
    if threads > 0:
        torch.set_num_threads(threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    owns = world_size > 1 and not dist.is_initialized()
    if owns:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Runtime(
        device=dev,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        amp=amp,
        owns_group=owns,
        threads_before=threads_before,
    )


def say(rt: Runtime, *parts: object) -> None:
    """``print(*parts)`` on the main process only (flushed): one line per run, not per rank."""
    if rt.is_main:
        print(*parts, flush=True)


def warn_cpu_amp(rt: Runtime) -> None:
    """One warning line (stderr, main process) when mixed precision runs without CUDA: bf16 autocast on
    a CPU is several times slower than float32."""
    if rt.amp and rt.device.type != "cuda" and rt.is_main:
        print(
            "warning: mixed precision (--amp) on the CPU runs bf16 autocast, typically several times "
            "slower than float32; AMP speeds up CUDA GPUs only",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block is done, then raise KeyboardInterrupt (main thread only; a
    process that ignores SIGINT, e.g. a background job, keeps ignoring it)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def teardown_runtime(rt: Runtime, failed: bool = False) -> None:
    """Leave the process group if :func:`setup_runtime` created it (after a barrier, unless ``failed``),
    and give torch back the thread count it had before."""
    if rt.threads_before > 0:
        torch.set_num_threads(rt.threads_before)
    if rt.owns_group and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch's CPU and CUDA RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def wrap_model(model: nn.Module, rt: Runtime, compile: bool = False) -> nn.Module:
    """DDP-wrap (if distributed) and optionally ``torch.compile`` a model already on ``rt.device``."""
    if rt.distributed:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:
        model = torch.compile(model, dynamic=False)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / ``torch.compile`` wrappers (so state_dict keys carry no prefix)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def all_reduce_sum(values: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Sum ``values`` over all processes (identity when not distributed)."""
    if rt.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(obj: object, rt: Runtime) -> object:
    """Rank 0's ``obj`` on every process (identity when not distributed)."""
    if not rt.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object, rt: Runtime) -> list[object]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process (``[obj]`` when not distributed)."""
    if not rt.distributed:
        return [obj]
    out: list[object] = [None] * rt.world_size
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_first(rt: Runtime) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. a download), the other ranks after it finished."""
    if rt.distributed and not rt.is_main:
        dist.barrier()
    yield
    if rt.distributed and rt.is_main:
        dist.barrier()
