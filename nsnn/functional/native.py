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
* saved for backward: ``h`` (1× the input) and bernoulli spikes as bits (1/32 of a float32 input);
  heaviside and expected spikes are recomputed from ``h``.

Switch: environment variable ``NSNN_NATIVE=0`` (read at import), :func:`set_enabled`, or::

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

from nsnn.functional.lif import LIFParameters
from nsnn.noise import Gaussian, Logistic, Noise, Triangular, Uniform

__all__ = ["enabled", "is_available", "is_enabled", "isa", "lif_multistep", "set_enabled", "supports"]

try:
    from nsnn import _C  # type: ignore[attr-defined]

    _LOAD_ERROR: str | None = None
except (ImportError, OSError) as e:  # not built, or built against another torch
    _C = None
    _LOAD_ERROR = f"{type(e).__name__}: {e}"

# Integer ids shared with nsnn/csrc/lif_common.h (enum Family, enum Mode).
_FAMILY_IDS: dict[type[Noise], int] = {Gaussian: 0, Logistic: 1, Triangular: 2, Uniform: 3}
_MODE_IDS = {"heaviside": 0, "bernoulli": 1, "expected": 2}
_DTYPES = (torch.float32, torch.float64)
_STATE = {"enabled": os.environ.get("NSNN_NATIVE", "1") != "0", "warned": False}


def is_available() -> bool:
    """Whether the compiled extension ``nsnn._C`` could be imported."""
    return _C is not None


def is_enabled() -> bool:
    """Whether CPU calls may use the native kernels (they still need :func:`is_available`)."""
    return bool(_STATE["enabled"])


def set_enabled(flag: bool) -> None:
    """Turn the native path on or off for this process (``NSNN_NATIVE=0`` sets the default off)."""
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
    if type(noise) not in _FAMILY_IDS or mode not in _MODE_IDS:
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
    def forward(
        ctx: Any,
        x: Tensor,
        decay: Tensor | float,
        threshold: float,
        sigma: float,
        family: int,
        mode: int,
        hard: bool,
        detach: bool,
        seed: int,
    ) -> Tensor:
        beta = float(decay)
        out, h, bits = _C.forward(x, beta, threshold, sigma, family, mode, hard, seed, True)
        ctx.save_for_backward(h, bits)
        ctx.args = (beta, threshold, sigma, family, mode, hard, detach)
        ctx.decay_like = decay.detach() if isinstance(decay, Tensor) else None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        h, bits = ctx.saved_tensors
        beta, threshold, sigma, family, mode, hard, detach = ctx.args
        want_decay = ctx.decay_like is not None and ctx.needs_input_grad[1]
        grad_x, grad_decay = _C.backward(
            grad_out.contiguous(), h, bits, beta, threshold, sigma, family, mode, hard, detach, want_decay
        )
        if grad_decay is not None:
            grad_decay = grad_decay.to(ctx.decay_like.dtype).reshape(ctx.decay_like.shape)
        return grad_x, grad_decay, None, None, None, None, None, None, None


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
            f"and a built-in noise family ({', '.join(sorted(c.name for c in _FAMILY_IDS))}); "
            f"got {x.device.type} {x.dtype}, {type(noise).__name__}, enabled={is_enabled()}"
        )
    x = x.contiguous()
    family, mode_id = _FAMILY_IDS[type(noise)], _MODE_IDS[mode]
    seed = int(torch.randint(0, 2**62, (), generator=generator)) if mode == "bernoulli" else 0
    decay = params.decay
    decay_grad = isinstance(decay, Tensor) and decay.requires_grad
    threshold, sigma = float(params.threshold), float(noise.sigma)
    if not (torch.is_grad_enabled() and (x.requires_grad or decay_grad)):
        args = (float(decay), threshold, sigma, family, mode_id, params.hard_reset, seed, False)
        return _C.forward(x, *args)[0]
    return _NativeLIF.apply(
        x, decay, threshold, sigma, family, mode_id, params.hard_reset, params.detach_reset, seed
    )
