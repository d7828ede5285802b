"""Native (C++) fused multi-step LIF on CPU: loader, on/off switch and the autograd node.

:func:`nsnn.functional.lif_multistep` dispatches here whenever :func:`supports` holds: a CPU
float32/float64 input, one of the four built-in noise families (matched by exact class, so a new
family subclass simply runs on the pure-torch path) and the switch on. The extension ``nsnn._C`` is
compiled by ``pip install --no-build-isolation -e .`` (see ``setup.py``); when it is missing the
pure-torch path runs instead, with a one-time warning.

The recurrence, spikes, resets and gradients (reset path, ``detach_reset``, learnable decay
∂L/∂β = Σ_t ∂L/∂h_t·u_{t−1}) are exactly those of :mod:`nsnn.functional.fused`; the differences are

* bernoulli draws come from nsnn's own generators, keyed by one integer drawn from ``generator``
  (else the default CPU generator): float32 runs 64 xoshiro128++ streams per chunk of neurons,
  seeded by SplitMix64 from the key and the chunk's position; float64 uses SplitMix64 outputs for
  the key and the counter t·N + i. Chunks depend on N only, so ``torch.manual_seed`` reproduces runs,
  results do not depend on the thread count, and the stream differs from the torch path's
  ``torch.rand``;
* float32 CDFs/PDFs use vectorised approximations (max abs error about 1e-7; float64 uses libm);
* saved for backward: the input ``x`` itself (1× the input, shared with whoever else keeps it) and
  bernoulli spikes as bits (1/32 of a float32 input). Backward replays the membrane ``h`` from ``x``
  and the bits, slice by slice of each chunk of neurons, instead of reading a saved ``h``, which
  spares the forward a full-size write; heaviside and expected spikes are recomputed from the
  replayed ``h``.

Switch: environment variable ``NSNN_NATIVE=0`` (read at import), :func:`set_enabled`, or the
context manager below. It governs every compiled kernel: this C++ one on CPU and the Triton one of
:mod:`nsnn.functional.triton_lif` on CUDA::

    with nsnn.functional.native.enabled(False):
        reference = neuron(x)             # pure-torch path
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor

from nsnn.functional.ops import BERNOULLI, Backend, KernelSpec, has_kernel, register_backend
from nsnn.noise import Noise

__all__ = ["enabled", "is_available", "is_enabled", "isa", "set_enabled", "supports"]

try:
    from nsnn import _C  # type: ignore[attr-defined]

    _LOAD_ERROR: str | None = None
except (ImportError, OSError) as e:  # not built, or built against another torch
    _C = None
    _LOAD_ERROR = f"{type(e).__name__}: {e}"

_DTYPES = (torch.float32, torch.float64)
_STATE = {"enabled": os.environ.get("NSNN_NATIVE", "1") != "0", "warned": False}


def is_available() -> bool:
    """Whether the compiled extension ``nsnn._C`` could be imported."""
    return _C is not None


def is_enabled() -> bool:
    """Whether CPU calls may use the native kernels (they still need :func:`is_available`)."""
    return bool(_STATE["enabled"])


def set_enabled(flag: bool) -> None:
    """Turn the compiled kernels (C++ on CPU, Triton on CUDA) on or off for this process
    (``NSNN_NATIVE=0`` sets the default off)."""
    _STATE["enabled"] = bool(flag)


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Context manager: native path on/off inside the block, previous setting restored after."""
    previous = _STATE["enabled"]
    _STATE["enabled"] = bool(flag)
    try:
        yield
    finally:
        _STATE["enabled"] = previous


def isa() -> str | None:
    """Instruction set of the float32 kernels in use ("avx512", "avx2", "generic"), None if unbuilt."""
    return None if _C is None else str(_C.isa())


def supports(x: Tensor, noise: Noise, mode: str) -> bool:
    """Whether :func:`lif_multistep` handles this call natively (else the torch path runs)."""
    if not _STATE["enabled"] or x.device.type != "cpu" or x.dtype not in _DTYPES:
        return False
    if not has_kernel(noise, mode):
        return False
    if _C is None:
        if not _STATE["warned"]:
            _STATE["warned"] = True
            warnings.warn(
                f"nsnn._C is not available ({_LOAD_ERROR}); using the slower pure-torch LIF kernel. "
                "Rebuild it with `pip install --no-build-isolation --no-deps -e .`.",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    return True


def _forward(x: Tensor, beta: float, spec: KernelSpec, key: int, save: bool) -> tuple[Tensor, Tensor]:
    out, bits = _C.forward(x, beta, spec.threshold, spec.sigma, spec.family, spec.mode, spec.hard, key, save)
    return out, bits if bits is not None else x.new_empty((0,), dtype=torch.uint8)


def _backward(
    grad_out: Tensor, x: Tensor, bits: Tensor, beta: float, spec: KernelSpec, key: int, want_decay: bool
) -> tuple[Tensor, Tensor | None]:
    s = spec
    packed = bits if s.mode == BERNOULLI else None
    return _C.backward(
        grad_out, x, packed, beta, s.threshold, s.sigma, s.family, s.mode, s.hard, s.detach, want_decay
    )


def _extra_shape(x: Tensor, spec: KernelSpec, save: bool) -> tuple[tuple[int, ...], torch.dtype]:
    """Packed bernoulli spikes: one row of ⌈N/8⌉ bytes per step (N = neurons per step)."""
    if not (save and spec.mode == BERNOULLI) or x.dim() == 0:
        return (0,), torch.uint8
    steps = x.shape[0]
    return (steps, -(-(x.numel() // max(1, steps)) // 8)), torch.uint8


if _C is not None:
    register_backend("cpu", Backend(_forward, _backward, _extra_shape))
