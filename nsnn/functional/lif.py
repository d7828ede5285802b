"""Pure LIF step functions: charge → fire → reset, over small parameter tuples.

One step, for input current ``x_t`` and membrane ``u`` (shapes ``[B, ...]``)::

    h   = β·u + x_t                       β = 1 − 1/τ   (charge)
    s   = fire(h − θ)                     (fire: see FIRE_MODES)
    u'  = h·(1 − s)          reset="hard"  (to 0)
    u'  = h − θ·s            reset="soft"  (subtract)

``fire`` is one of

* ``"heaviside"``: s = H(h − θ) = [h > θ]; backward uses ``noise.pdf(h − θ)`` as surrogate;
* ``"bernoulli"``: s ~ Bernoulli(noise.cdf(h − θ)); backward ``noise.pdf(h − θ)`` (= ∂E[s]/∂h);
* ``"expected"``:  s = noise.cdf(h − θ) (real-valued); its exact derivative is the pdf.

With ``detach_reset`` the reset uses the spike value but passes no gradient through it. These
functions build an ordinary autograd graph; the fused multi-step kernel in
:mod:`nsnn.functional.fused` computes the same thing faster::

    params = LIFParameters(decay=0.5, threshold=1.0)
    s, u = lif_step(x_t, u, params, get_noise("gaussian", 0.3), "bernoulli")
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import torch
from torch import Tensor

from nsnn.noise import Noise, draw

__all__ = ["FIRE_MODES", "RESETS", "LIFParameters", "fire", "lif_step", "spike"]

FIRE_MODES = ("heaviside", "bernoulli", "expected")
RESETS = ("hard", "soft")


class LIFParameters(NamedTuple):
    """Constants of one LIF layer.

    Attributes:
        decay: membrane retention β = 1 − 1/τ per step (a float, or a 0-dim tensor when learnable).
        threshold: firing threshold θ.
        hard_reset: ``True`` → u ← h·(1 − s); ``False`` → u ← h − θ·s.
        detach_reset: stop the gradient through the spike in the reset term.
    """

    decay: float | Tensor = 0.5
    threshold: float = 1.0
    hard_reset: bool = True
    detach_reset: bool = False


def _work_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _times(gate: Tensor, value: Tensor) -> Tensor:
    """``gate · value``, but 0 wherever ``gate`` is 0 (even where ``value`` is ±inf or NaN)."""
    return torch.where(gate == 0, 0.0, gate * value)


def fire(z: Tensor, noise: Noise, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Spike values for ``z = h − θ`` (no gradient); float tensor of ``z``'s dtype."""
    if mode == "heaviside":
        return (z > 0).to(z.dtype)
    p = noise.cdf(z.to(_work_dtype(z)))  # bf16/fp16: the probability itself is not rounded
    if mode == "bernoulli":
        u = draw(torch.rand, z.shape, generator, device=z.device, dtype=p.dtype)
        return (u < p).to(z.dtype)
    if mode == "expected":
        return p.to(z.dtype)
    raise ValueError(f"unknown fire mode {mode!r}; valid: {', '.join(FIRE_MODES)}")


class _Spike(torch.autograd.Function):
    """s = fire(z) forward; ∂s/∂z = noise.pdf(z) backward (computed in ≥ fp32)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, noise: Noise, mode: str, generator: torch.Generator | None) -> Tensor:
        ctx.save_for_backward(z)
        ctx.noise = noise
        return fire(z, noise, mode, generator)

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor) -> tuple[Tensor, None, None, None]:
        (z,) = ctx.saved_tensors
        g = ctx.noise.pdf(z.to(_work_dtype(z)))
        # 0 wherever the pdf is 0, even where grad_s is ±inf or NaN: the hard reset's term −h·∂L/∂u of an
        # infinite membrane (where the pdf is 0) is chosen away, as in nsnn.functional.fused.
        return _times(g, grad_s.to(g.dtype)).to(z.dtype), None, None, None


class _Leak(torch.autograd.Function):
    """β·u for a learnable 0-dim β; ∂L/∂β = Σ ∂L/∂h·u counts 0 wherever ∂L/∂h is 0, even where u is
    infinite (a −inf input masks a neuron), as in nsnn.functional.fused."""

    @staticmethod
    def forward(ctx: Any, decay: Tensor, u: Tensor) -> Tensor:
        ctx.save_for_backward(decay, u)
        return decay * u

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor, Tensor]:
        decay, u = ctx.saved_tensors
        grad_decay = _times(grad_h, u).sum(dtype=torch.float64)
        return grad_decay.to(decay.dtype).reshape(decay.shape), (grad_h * decay).to(u.dtype)


def check_spike_args(noise: Any, mode: Any) -> None:
    """Refuse a fire ``mode`` that is not one of :data:`FIRE_MODES` (ValueError) and a ``noise`` that is
    not a :class:`~nsnn.noise.Noise` (TypeError: a family name would only fail in the backward pass)."""
    if mode not in FIRE_MODES:
        raise ValueError(f"unknown fire mode {mode!r}; valid: {', '.join(FIRE_MODES)}")
    if not isinstance(noise, Noise):
        raise TypeError(
            f"noise must be a Noise instance, e.g. nsnn.noise.get_noise('gaussian', 0.3); "
            f"got {type(noise).__name__} {noise!r}"
        )


def check_params(params: LIFParameters) -> None:
    """Refuse (ValueError) constants no LIF layer has: a decay outside [0, 1] or not 0-dim, a threshold
    that is not a finite number > 0 or that requires grad (thresholds are constants here)."""
    decay, threshold = params.decay, params.threshold
    if isinstance(decay, Tensor):
        if decay.dim() != 0:
            raise ValueError(
                f"params.decay must be a number or a 0-dim tensor, got shape {tuple(decay.shape)}"
            )
    elif isinstance(decay, bool) or not (isinstance(decay, numbers.Real) and 0.0 <= decay <= 1.0):
        raise ValueError(f"params.decay must be a number in [0, 1] (β = 1 − 1/τ), got {decay!r}")
    if isinstance(threshold, Tensor) and threshold.requires_grad:
        raise ValueError("params.threshold must be a constant: a threshold that requires grad is not learned")
    if isinstance(threshold, bool) or not (
        isinstance(threshold, numbers.Real | Tensor) and 0.0 < float(threshold) < math.inf
    ):
        raise ValueError(f"params.threshold must be a finite number > 0, got {threshold!r}")


def spike(z: Tensor, noise: Noise, mode: str, generator: torch.Generator | None = None) -> Tensor:
    """Differentiable spike nonlinearity: forward per ``mode``, backward ``noise.pdf(z)``."""
    check_spike_args(noise, mode)
    return _Spike.apply(z, noise, mode, generator)


def lif_step(
    x_t: Tensor,
    u: Tensor | None,
    params: LIFParameters,
    noise: Noise,
    mode: str,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """One LIF step. ``x_t``, ``u``: ``[B, ...]`` (``u=None`` means rest, u = 0).

    Returns ``(s, u_next)``, both shaped like ``x_t``: the spikes in ``x_t``'s dtype, the membrane in
    at least fp32 (under bf16/fp16 it is kept in fp32, as in :func:`nsnn.functional.lif_multistep`).
    """
    check_params(params)
    work = _work_dtype(x_t)
    x_w = x_t.to(work)
    if u is None or (isinstance(params.decay, numbers.Real) and params.decay == 0):
        h = x_w  # nothing carries over (β = 0 would give 0·u = NaN for a −inf membrane)
    elif isinstance(params.decay, Tensor) and params.decay.requires_grad:
        h = _Leak.apply(params.decay, u.to(work)) + x_w
    else:
        h = params.decay * u.to(work) + x_w
    s = spike(h - params.threshold, noise, mode, generator)
    r = s.detach() if params.detach_reset else s
    if not params.hard_reset:
        return s.to(x_t.dtype), h - params.threshold * r
    # A +inf membrane fires (s = 1) and is reset to 0, as on the multi-step paths, not to inf·0 = NaN.
    return s.to(x_t.dtype), torch.where(h == math.inf, 0.0, h) * (1.0 - r)
