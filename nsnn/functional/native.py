"""Native (C++) fused multi-step LIF on CPU: loader, on/off switch and the autograd node.

:func:`nsnn.functional.lif_multistep` dispatches here whenever :func:`supports` holds: a CPU
float32/float64 input, one of the four built-in noise families (matched by exact class, so a new
family subclass simply runs on the pure-torch path) and the switch on. The extension ``nsnn._C`` is
compiled by ``pip install --no-build-isolation -e .`` (see ``setup.py``); when it is missing the
pure-torch path runs instead, with a one-time warning.

The recurrence, spikes, resets and gradients (reset path, ``detach_reset``, learnable decay
∂L/∂β = Σ_t ∂L/∂h_t·u_{t−1}) are exactly those of :mod:`nsnn.functional.fused`; the differences are

* bernoulli draws come from a counter-based generator: SplitMix64 outputs for a key and a counter
  (float32: counter t·⌈N/2⌉ + j, whose low/high 32 bits serve neurons 2j and 2j + 1; float64:
  counter t·N + i). The key is one integer drawn from ``generator`` (else the default CPU
  generator), so ``torch.manual_seed`` reproduces runs, results do not depend on the thread count,
  and the stream differs from the torch path's ``torch.rand``;
* float32 CDFs/PDFs use vectorised approximations (max abs error about 1e-7; float64 uses libm);
* saved for backward: the input ``x`` itself (1× the input, shared with whoever else keeps it) and
  bernoulli spikes as bits (1/32 of a float32 input). Backward replays the membrane ``h`` from ``x``
  and the bits in cache-sized slices instead of reading a saved ``h``, which spares the forward a
  full-size write; heaviside and expected spikes are recomputed from the replayed ``h``.

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
from typing import Any

import torch
from torch import Tensor

from nsnn.functional.kernel_spec import (
    FAMILY_IDS,
    MODE_IDS,
    KernelSpec,
    decay_grad,
    decay_like,
    dispatch,
    make_spec,
)
from nsnn.functional.lif import LIFParameters
from nsnn.noise import Noise

__all__ = ["enabled", "is_available", "is_enabled", "isa", "lif_multistep", "set_enabled", "supports"]

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
    if type(noise) not in FAMILY_IDS or mode not in MODE_IDS:
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


class _NativeLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, decay: Tensor | float, spec: KernelSpec) -> Tensor:
        out, bits = _C.forward(x, float(decay), *_forward_args(spec), True)
        ctx.save_for_backward(x, bits)
        ctx.beta, ctx.spec, ctx.decay_like = float(decay), spec, decay_like(decay)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, bits = ctx.saved_tensors
        s = ctx.spec
        want_decay = ctx.decay_like is not None and ctx.needs_input_grad[1]
        grad_x, total = _C.backward(
            grad_out.contiguous(), x, bits, ctx.beta, s.threshold, s.sigma, s.family, s.mode, s.hard,
            s.detach, want_decay,
        )  # fmt: skip
        return grad_x, decay_grad(total, ctx.decay_like), None


def _forward_args(spec: KernelSpec) -> tuple[float, float, int, int, bool, int]:
    return spec.threshold, spec.sigma, spec.family, spec.mode, spec.hard, spec.seed


def _run(x: Tensor, beta: float, spec: KernelSpec) -> Tensor:
    return _C.forward(x, beta, *_forward_args(spec), False)[0]


def lif_multistep(
    x: Tensor,
    params: LIFParameters,
    noise: Noise,
    mode: str,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Native twin of :func:`nsnn.functional.lif_multistep`: ``x`` ``[T, B, ...]`` → spikes, same shape.

    Called by :func:`nsnn.functional.lif_multistep` after it validated ``mode`` and the rank of ``x``.
    Requires :func:`supports(x, noise, mode) <supports>`; ``params.decay`` may be a 0-dim tensor
    requiring grad. Without autograd (no grad mode, or nothing requires grad) nothing is saved.
    """
    if not supports(x, noise, mode):
        raise ValueError(
            "native lif_multistep needs the built extension, the switch on, a CPU float32/float64 input "
            f"and a built-in noise family ({', '.join(sorted(c.name for c in FAMILY_IDS))}); "
            f"got {x.device.type} {x.dtype}, {type(noise).__name__}, enabled={is_enabled()}"
        )
    seed = int(torch.randint(0, 2**62, (), generator=generator)) if mode == "bernoulli" else 0
    return dispatch(x.contiguous(), params, make_spec(params, noise, mode, seed), _run, _NativeLIF)
