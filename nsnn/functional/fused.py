"""Fused multi-step LIF: one autograd node for a whole ``[T, B, ...]`` sequence.

Forward runs the recurrence of :func:`nsnn.functional.lif.lif_step` under ``no_grad`` and keeps
only what backward needs: the pre-spike membrane ``h`` (input dtype, 1× the input's bytes) and, for
stochastic firing, the spikes as 1 byte each. Deterministic spikes are recomputed from ``h``, except
under bf16/fp16: there the stored ``h`` is rounded and could fall on the other side of θ, so those
spikes are kept as 1 byte too.
Backward walks time in reverse, exactly differentiating the same recurrence, the reset path included
unless ``detach_reset``::

    g_t   = pdf(h_t − θ)
    ∂L/∂h_t = (∂L/∂s_t + ∂L/∂u_t · ∂u_t/∂s_t) · g_t + ∂L/∂u_t · ∂u_t/∂h_t
    ∂L/∂x_t = ∂L/∂h_t,   ∂L/∂u_{t−1} = β · ∂L/∂h_t,   ∂L/∂β = Σ_t ∂L/∂h_t · u_{t−1}

with ∂u/∂h = 1 − s, ∂u/∂s = −h for the hard reset and 1, −θ for the soft one. Under bf16/fp16 the
membrane and the surrogate are computed in fp32. Works on any device (random draws happen on the
input's device)::

    s = lif_multistep(x, LIFParameters(0.5, 1.0), get_noise("gaussian", 0.3), "bernoulli")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nsnn.functional import native, ops, triton_lif
from nsnn.functional.lif import FIRE_MODES, LIFParameters, _work_dtype, fire
from nsnn.noise import Noise

__all__ = ["lif_multistep"]


class _MultiStepLIF(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        decay: Tensor | float,
        threshold: float,
        hard: bool,
        detach: bool,
        noise: Noise,
        mode: str,
        generator: torch.Generator | None,
    ) -> Tensor:
        beta = float(decay)
        work = _work_dtype(x)
        out = torch.empty_like(x)
        h_seq = torch.empty_like(x)
        stored = None
        if mode == "bernoulli" or (mode == "heaviside" and work != x.dtype):
            stored = torch.empty(x.shape, dtype=torch.bool, device=x.device)
        elif mode == "expected":
            stored = torch.empty_like(x)
        u: Tensor | None = None
        for t in range(x.shape[0]):
            h = x[t].to(work, copy=True) if u is None else torch.add(x[t].to(work), u, alpha=beta)
            h_seq[t] = h
            s = fire(h - threshold, noise, mode, generator)
            out[t] = s
            if stored is not None:
                stored[t] = s
            if hard:
                u = h.mul_(1.0 - s) if mode == "expected" else h.masked_fill_(s.bool(), 0.0)
            else:
                u = h.sub_(s, alpha=threshold)
        ctx.save_for_backward(h_seq, stored)
        ctx.params = (beta, threshold, hard, detach, noise)
        ctx.decay_dtype = decay.dtype if isinstance(decay, Tensor) else None
        return out

    @staticmethod
    @ops.no_double_backward
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        h_seq, stored = ctx.saved_tensors
        beta, threshold, hard, detach, noise = ctx.params
        work = _work_dtype(h_seq)
        want_decay = ctx.decay_dtype is not None and ctx.needs_input_grad[1]
        binary = stored is None or stored.dtype == torch.bool  # spikes 0/1 (not "expected")

        def spikes_at(t: int, h: Tensor) -> Tensor:
            return (h > threshold).to(work) if stored is None else stored[t].to(work)

        grad_x = torch.empty_like(h_seq)
        grad_u: Tensor | None = None
        grad_decay = torch.zeros((), dtype=torch.float64, device=h_seq.device) if want_decay else None
        for t in range(h_seq.shape[0] - 1, -1, -1):
            h = h_seq[t].to(work)
            g = noise.pdf(h - threshold)
            go = grad_out[t].to(work)
            if grad_u is None:
                grad_h = go * g
            else:
                s = spikes_at(t, h)
                if detach:
                    gs = go
                elif hard:
                    gs = torch.addcmul(go, grad_u, h, value=-1.0)
                else:
                    gs = torch.add(go, grad_u, alpha=-threshold)
                direct = grad_u * (1.0 - s) if hard else grad_u
                grad_h = torch.addcmul(direct, gs, g)
            grad_x[t] = grad_h
            if want_decay and t > 0:
                h_prev = h_seq[t - 1].to(work)
                s_prev = spikes_at(t - 1, h_prev)
                if hard and binary:  # as forward: a masked fill, no inf·0 at h = ±inf
                    u_prev = h_prev.masked_fill(s_prev.bool(), 0.0)
                elif hard:
                    u_prev = h_prev * (1.0 - s_prev)
                else:
                    u_prev = h_prev - threshold * s_prev
                grad_decay += (grad_h * u_prev).sum(dtype=torch.float64)
            grad_u = grad_h * beta
        d_decay = grad_decay.to(ctx.decay_dtype) if grad_decay is not None else None
        return grad_x, d_decay, None, None, None, None, None, None


def lif_multistep(
    x: Tensor,
    params: LIFParameters,
    noise: Noise,
    mode: str,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Run a LIF layer over ``x`` ``[T, B, ...]`` from rest; returns spikes ``[T, B, ...]`` (x's dtype).

    ``params.decay`` may be a 0-dim tensor requiring grad (learnable leak, PLIF). Calls with a
    built-in noise family run a fused kernel with the same math (the custom op of
    :mod:`nsnn.functional.ops`): CPU float32/float64 the C++ one of :mod:`nsnn.functional.native`,
    CUDA float32/float16/bfloat16 the Triton one of :mod:`nsnn.functional.triton_lif`. This torch
    code is the reference and the fallback for other devices, dtypes and families.
    """
    if mode not in FIRE_MODES:
        raise ValueError(f"unknown fire mode {mode!r}; valid: {', '.join(FIRE_MODES)}")
    if x.dim() < 2:
        raise ValueError(f"multi-step input must be [T, B, ...] (rank >= 2), got shape {tuple(x.shape)}")
    if native.supports(x, noise, mode) or triton_lif.supports(x, noise, mode):
        return ops.fused(x, params, noise, mode, generator)
    p = params
    args = (p.decay, float(p.threshold), p.hard_reset, p.detach_reset, noise, mode, generator)
    return _MultiStepLIF.apply(x, *args)
