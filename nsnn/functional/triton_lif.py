"""Fused multi-step LIF on CUDA: two Triton kernels and their autograd node.

:func:`nsnn.functional.lif_multistep` dispatches here for CUDA float32/float16/bfloat16 inputs with
a built-in noise family when Triton is importable (it ships with CUDA builds of PyTorch) and the
compiled-kernel switch of :mod:`nsnn.functional.native` is on (``NSNN_NATIVE=0`` turns both the C++
and the Triton kernels off). Each Triton program owns a block of neurons and walks all T steps with
the membrane in registers, so one launch replaces the 5–8 small kernels per step of the pure-torch
path, forward and backward alike. Same recurrence and exact gradient as :mod:`nsnn.functional.fused`::

    h_t = β·u_{t−1} + x_t,   s_t = fire(h_t − θ),   u_t = h_t·(1 − s_t) | h_t − θ·s_t
    ∂L/∂h_t = ∂L/∂u_t·∂u_t/∂h_t + (∂L/∂s_t + ∂L/∂u_t·∂u_t/∂s_t)·pdf(h_t − θ)

Differences from the torch path: membrane and surrogate math in float32 for every input dtype;
bernoulli draws are Philox counter-based uniforms (``tl.rand``) keyed by one seed taken from the
torch generator, so ``torch.manual_seed`` reproduces runs; **only the input is saved for backward**:
the backward kernel replays the forward from ``x`` (the same draws, hence the same spikes) into a
float32 scratch buffer that lives only during that backward call, then runs time in reverse::

    spikes = lif_multistep(x.cuda(), LIFParameters(0.5, 1.0), get_noise("gaussian", 0.3), "bernoulli")
"""

from __future__ import annotations

import torch
from torch import Tensor

from nsnn.functional import native
from nsnn.functional.ops import Backend, KernelSpec, has_kernel, register_backend
from nsnn.noise import Noise

__all__ = ["is_available", "supports"]

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch wheels do not bring Triton
    triton = None

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_ELEMENTS = 2**31 - 1  # offsets and Philox counters are int32


def is_available() -> bool:
    """Whether Triton could be imported."""
    return triton is not None


def supports(x: Tensor, noise: Noise, mode: str) -> bool:
    """Whether :func:`lif_multistep` runs this call with the Triton kernels (else the torch path)."""
    return (
        triton is not None
        and native.is_enabled()
        and x.device.type == "cuda"
        and x.dtype in _DTYPES
        and x.numel() <= _MAX_ELEMENTS
        and has_kernel(noise, mode)
    )


if triton is not None:

    @triton.jit
    def _cdf(d, inv, FAMILY: tl.constexpr):
        z = d * inv
        if FAMILY == 0:  # Gaussian: Φ(z)
            return 0.5 + 0.5 * tl.math.erf(z * 0.7071067811865476)
        elif FAMILY == 1:  # logistic: sigmoid, from e = exp(−|z|) so it never overflows
            e = tl.exp(-tl.abs(z))
            r = 1.0 / (1.0 + e)
            return tl.where(z >= 0, r, e * r)
        elif FAMILY == 2:  # triangular on [−1, 1]
            zc = tl.minimum(tl.maximum(z, -1.0), 1.0)
            return tl.where(zc < 0, 0.5 * (1.0 + zc) * (1.0 + zc), 1.0 - 0.5 * (1.0 - zc) * (1.0 - zc))
        else:  # uniform on [−1, 1]
            return tl.minimum(tl.maximum(z * 0.5 + 0.5, 0.0), 1.0)

    @triton.jit
    def _pdf(d, inv, FAMILY: tl.constexpr):
        z = d * inv
        if FAMILY == 0:
            return tl.exp(-0.5 * z * z) * (0.3989422804014327 * inv)
        elif FAMILY == 1:
            e = tl.exp(-tl.abs(z))
            r = 1.0 / (1.0 + e)
            return e * r * r * inv
        elif FAMILY == 2:
            return tl.maximum(1.0 - tl.abs(z), 0.0) * inv
        else:
            return tl.where(tl.abs(z) <= 1.0, 0.5 * inv, 0.0)

    @triton.jit
    def _fire(d, idx, inv, seed, FAMILY: tl.constexpr, MODE: tl.constexpr):
        """Spike at d = h − θ; bernoulli draws the uniform of counter ``idx`` (the same on replay)."""
        if MODE == 0:
            return tl.where(d > 0, 1.0, 0.0)
        elif MODE == 1:
            return tl.where(tl.rand(seed, idx) < _cdf(d, inv, FAMILY), 1.0, 0.0)
        else:
            return _cdf(d, inv, FAMILY)

    @triton.jit
    def _reset(h, s, theta, HARD: tl.constexpr, MODE: tl.constexpr):
        if not HARD:
            return h - theta * s
        elif MODE == 2:  # h = +inf: s = 1 and u = 0, not inf·0 = NaN
            return tl.where(h == float("inf"), 0.0, h) * (1.0 - s)
        else:
            return tl.where(s > 0, 0.0, h)

    @triton.jit
    def _advance(x_ptr, u, idx, mask, beta, theta, inv, seed, FAMILY: tl.constexpr, MODE: tl.constexpr,
                 HARD: tl.constexpr):  # fmt: skip
        """Step t from membrane u: (h_t, s_t, u_t). The forward and the backward's replay share it, so
        the replay reproduces the forward's membrane and draws bit for bit."""
        h = beta * u + tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        s = _fire(h - theta, idx, inv, seed, FAMILY, MODE)
        return h, s, _reset(h, s, theta, HARD, MODE)

    @triton.jit
    def _forward_kernel(
        x_ptr,
        out_ptr,
        T,
        N,
        beta,
        theta,
        inv,
        seed,
        FAMILY: tl.constexpr,
        MODE: tl.constexpr,
        HARD: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        u = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(T):
            idx = t * N + offs
            _h, s, u = _advance(x_ptr, u, idx, mask, beta, theta, inv, seed, FAMILY, MODE, HARD)
            tl.store(out_ptr + idx, s.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward_kernel(
        x_ptr,
        grad_out_ptr,
        grad_x_ptr,
        h_ptr,
        partial_ptr,
        T,
        N,
        beta,
        theta,
        inv,
        seed,
        FAMILY: tl.constexpr,
        MODE: tl.constexpr,
        HARD: tl.constexpr,
        DETACH: tl.constexpr,
        DECAY: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        u = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(T):  # replay: h_t (and the same spikes) from x
            idx = t * N + offs
            h, _s, u = _advance(x_ptr, u, idx, mask, beta, theta, inv, seed, FAMILY, MODE, HARD)
            tl.store(h_ptr + idx, h, mask=mask)
        grad_u = tl.zeros([BLOCK], dtype=tl.float32)
        grad_h_next = tl.zeros([BLOCK], dtype=tl.float32)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(T):
            idx = (T - 1 - i) * N + offs
            h = tl.load(h_ptr + idx, mask=mask, other=0.0)
            d = h - theta
            s = _fire(d, idx, inv, seed, FAMILY, MODE)
            go = tl.load(grad_out_ptr + idx, mask=mask, other=0.0).to(tl.float32)
            if DETACH:
                gs = go
            elif HARD:
                gs = go - grad_u * h
            else:
                gs = go - grad_u * theta
            direct = grad_u * (1.0 - s) if HARD else grad_u
            g = _pdf(d, inv, FAMILY)
            grad_h = direct + tl.where(g == 0.0, 0.0, gs * g)  # g = 0 at h = ±inf: no 0·inf = NaN
            tl.store(grad_x_ptr + idx, grad_h.to(grad_x_ptr.dtype.element_ty), mask=mask)
            if DECAY:  # Σ_t ∂L/∂h_{t+1}·u_t
                keep = (i > 0) & (grad_h_next != 0.0)  # ∂L/∂h_{t+1} = 0 drops u_t, even an infinite one
                acc += tl.where(keep, grad_h_next * _reset(h, s, theta, HARD, MODE), 0.0)
                grad_h_next = grad_h
            grad_u = grad_h * beta
        if DECAY:
            tl.store(partial_ptr + tl.program_id(0), tl.sum(tl.where(mask, acc, 0.0), axis=0))


def _block(n: int) -> int:
    """Neurons per program: enough programs to fill the GPU, wide enough for coalesced access."""
    return 128 if n <= 2**16 else (256 if n <= 2**19 else 512)


def _forward(x: Tensor, beta: float, spec: KernelSpec, key: int, save: bool) -> tuple[Tensor, Tensor]:
    """Spikes of ``x`` ``[T, ...]``; nothing besides ``x`` is needed for backward."""
    out = torch.empty_like(x)
    steps, n = x.shape[0], x.numel() // max(1, x.shape[0])
    if x.numel():
        block = _block(n)
        with torch.cuda.device(x.device):  # Triton launches on the current device
            _forward_kernel[(triton.cdiv(n, block),)](
                x, out, steps, n, beta, spec.threshold, 1.0 / spec.sigma, key,
                FAMILY=spec.family, MODE=spec.mode, HARD=spec.hard, BLOCK=block,
            )  # fmt: skip
    return out, x.new_empty((0,), dtype=torch.uint8)


def _backward(
    grad_out: Tensor, x: Tensor, extra: Tensor, beta: float, spec: KernelSpec, key: int, want_decay: bool
) -> tuple[Tensor, Tensor | None]:
    """Replay from ``x`` into a float32 scratch, then reverse time; ∂L/∂β from per-program partials."""
    s = spec
    steps, n = x.shape[0], x.numel() // max(1, x.shape[0])
    grad_x = torch.empty_like(x)
    block = _block(n)
    grid = (triton.cdiv(n, block),)
    scratch = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    partial = torch.zeros(grid[0] if want_decay else 1, dtype=torch.float32, device=x.device)
    if x.numel():
        with torch.cuda.device(x.device):
            _backward_kernel[grid](
                x, grad_out, grad_x, scratch, partial, steps, n, beta, s.threshold, 1.0 / s.sigma, key,
                FAMILY=s.family, MODE=s.mode, HARD=s.hard, DETACH=s.detach, DECAY=want_decay, BLOCK=block,
            )  # fmt: skip
    return grad_x, partial.sum(dtype=torch.float64) if want_decay else None


def _extra_shape(x: Tensor, spec: KernelSpec, save: bool) -> tuple[tuple[int, ...], torch.dtype]:
    return (0,), torch.uint8


if triton is not None:
    register_backend("cuda", Backend(_forward, _backward, _extra_shape))
