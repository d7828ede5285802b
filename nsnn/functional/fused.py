"""Fused multi-step LIF: one autograd node for a whole ``[T, B, ...]`` sequence.

Forward runs the recurrence of :func:`nsnn.functional.lif.lif_step` under ``no_grad`` and keeps
only what backward needs: the input ``x`` (which its producer usually holds anyway) and, for
stochastic firing, the spikes as 1 bit each. Backward first replays the membrane ``h`` from ``x``
(in the same work dtype and with the same operations as forward, so bit for bit the same ``h`` and
deterministic or expected spikes), then walks time in reverse, exactly differentiating the
recurrence, the reset path included unless ``detach_reset``::

    g_t   = pdf(h_t − θ)
    ∂L/∂h_t = (∂L/∂s_t + ∂L/∂u_t · ∂u_t/∂s_t) · g_t + ∂L/∂u_t · ∂u_t/∂h_t
    ∂L/∂x_t = ∂L/∂h_t,   ∂L/∂u_{t−1} = β · ∂L/∂h_t,   ∂L/∂β = Σ_t ∂L/∂h_t · u_{t−1}

with ∂u/∂h = 1 − s, ∂u/∂s = −h for the hard reset and 1, −θ for the soft one. A product whose
gradient factor is exactly 0 is 0 even when the other factor is infinite (g_t = 0 at h_t = ±inf, as
in the limit, since the pdf decays faster than h grows), so an infinite membrane (a −inf input used
as a mask) gives no NaN. Under bf16/fp16 the membrane and the surrogate are computed in fp32. Works on
any device (random draws happen on the input's device)::

    s = lif_multistep(x, LIFParameters(0.5, 1.0), get_noise("gaussian", 0.3), "bernoulli")
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from nsnn.functional import native, ops, triton_lif
from nsnn.functional.lif import LIFParameters, _times, _work_dtype, check_params, check_spike_args, fire
from nsnn.noise import Noise

__all__ = ["lif_multistep"]


def _membrane(x_t: Tensor, u: Tensor | None, beta: float | Tensor, work: torch.dtype) -> Tensor:
    """h_t = β·u_{t−1} + x_t in the work dtype (a new tensor). β is a number, or a 0-dim tensor in
    the work dtype (a learned leak, read without a host sync, so that it also runs on the meta
    device)."""
    if u is None:
        return x_t.to(work, copy=True)
    if isinstance(beta, Tensor):
        return torch.addcmul(x_t.to(work), u, beta)
    return torch.add(x_t.to(work), u, alpha=beta)


def _reset(h: Tensor, s: Tensor, threshold: float, hard: bool, binary: bool) -> Tensor:
    """u_t from h_t (overwritten) and s_t: a masked fill for 0/1 spikes (no inf·0 at h = ±inf); an
    expected spike at h = +inf (s = cdf(inf) = 1) resets to 0, not to inf·0 = NaN."""
    if not hard:
        return h.sub_(s, alpha=threshold)
    if binary:
        return h.masked_fill_(s.bool(), 0.0)
    return h.masked_fill_(h == math.inf, 0.0).mul_(1.0 - s)


def _pack(s: Tensor) -> Tensor:
    """One step's spikes {0, 1} (any shape, n neurons) as bits: uint8 ``[ceil(n / 8)]``, 8 a byte."""
    flat = s.reshape(-1).to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    shifts = torch.arange(8, dtype=torch.uint8, device=s.device)
    return (flat.view(-1, 8) << shifts).sum(1, dtype=torch.uint8)


def _unpack(bits: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """The spikes :func:`_pack` packed, as ``dtype`` of ``shape``."""
    shifts = torch.arange(8, dtype=torch.uint8, device=bits.device)
    return ((bits.unsqueeze(1) >> shifts) & 1).view(-1)[: shape.numel()].view(shape).to(dtype)


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
        work = _work_dtype(x)
        beta = decay.detach().to(work) if isinstance(decay, Tensor) else float(decay)
        out = torch.empty_like(x)
        steps, neurons = x.shape[0], math.prod(x.shape[1:])  # T = 0: no x[0] to count
        # the draws, for backward: one bit a spike (the byte of a bool would save 1.5x a bf16 input)
        drawn = x.new_empty((steps, -(-neurons // 8)), dtype=torch.uint8) if mode == "bernoulli" else None
        u: Tensor | None = None
        for t in range(steps):
            h = _membrane(x[t], u, beta, work)
            s = fire(h - threshold, noise, mode, generator)
            out[t] = s
            if drawn is not None:
                drawn[t] = _pack(s)
            u = _reset(h, s, threshold, hard, mode != "expected")
        ctx.save_for_backward(x, drawn)
        ctx.params = (beta, threshold, hard, detach, noise, mode)
        ctx.decay_dtype = decay.dtype if isinstance(decay, Tensor) else None
        return out

    @staticmethod
    @ops.no_double_backward
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        x, drawn = ctx.saved_tensors
        beta, threshold, hard, detach, noise, mode = ctx.params
        work = _work_dtype(x)
        binary = mode != "expected"
        want_decay = ctx.decay_dtype is not None and ctx.needs_input_grad[1]

        # Replay: h_t and s_t of every step, exactly as forward computed them.
        h_seq = torch.empty(x.shape, dtype=work, device=x.device)
        s_seq = torch.empty(x.shape, dtype=work, device=x.device)
        u: Tensor | None = None
        for t in range(x.shape[0]):
            h = _membrane(x[t], u, beta, work)
            h_seq[t] = h
            s_seq[t] = fire(h - threshold, noise, mode) if drawn is None else _unpack(drawn[t], h.shape, work)
            u = _reset(h, s_seq[t], threshold, hard, binary)

        grad_x = torch.empty_like(x)
        grad_u: Tensor | None = None
        grad_decay = torch.zeros((), dtype=torch.float64, device=x.device) if want_decay else None
        for t in range(x.shape[0] - 1, -1, -1):
            h, s = h_seq[t], s_seq[t]
            g = noise.pdf(h - threshold)
            go = grad_out[t].to(work)
            if grad_u is None:
                grad_h = go * g
            else:
                if detach:
                    gs = go
                elif hard:
                    gs = go - grad_u * h
                else:
                    gs = torch.add(go, grad_u, alpha=-threshold)
                direct = grad_u * (1.0 - s) if hard else grad_u
                grad_h = direct + _times(g, gs)
            grad_x[t] = grad_h
            if want_decay and t > 0:
                u_prev = _reset(h_seq[t - 1].clone(), s_seq[t - 1], threshold, hard, binary)
                grad_decay += _times(grad_h, u_prev).sum(dtype=torch.float64)
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
    check_spike_args(noise, mode)
    if x.dim() < 2:
        raise ValueError(f"multi-step input must be [T, B, ...] (rank >= 2), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"multi-step input must be a floating-point tensor, got {x.dtype}")
    check_params(params)
    if isinstance(params.decay, numbers.Real) and params.decay == 0 and x.shape[0] > 1:
        # β = 0 (τ = 1): no membrane carries over, so the T steps are one step of T·B neurons; step by
        # step, the β·u of a −inf membrane would be 0·(−inf) = NaN.
        one_step = x.reshape(1, x.shape[0] * x.shape[1], *x.shape[2:])
        return lif_multistep(one_step, params, noise, mode, generator).view(x.shape)
    if native.supports(x, noise, mode) or triton_lif.supports(x, noise, mode):
        return ops.fused(x, params, noise, mode, generator)
    p = params
    args = (p.decay, float(p.threshold), p.hard_reset, p.detach_reset, noise, mode, generator)
    return _MultiStepLIF.apply(x, *args)
