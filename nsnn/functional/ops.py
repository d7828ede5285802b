"""The fused LIF kernels as torch custom ops: ``nsnn::lif_fused`` and ``nsnn::lif_fused_backward``.

Two backends implement them, each registering itself here at import: the C++ extension for CPU
float32/float64 (:mod:`nsnn.functional.native`) and Triton for CUDA float32/float16/bfloat16
(:mod:`nsnn.functional.triton_lif`). Both run the recurrence of :mod:`nsnn.functional.fused` for the
built-in noise families (matched by exact class, so a new family subclass runs on the pure-torch path).
As custom ops with fake (meta) implementations and a registered autograd formula they are opaque to
``torch.compile``: a compiled network traces each neuron as one node, with no graph break. Eager
calls run the same Python bodies through a plain ``autograd.Function`` (less host overhead).

``lif_fused(x, decay, threshold, sigma, family, mode, hard, detach, seed, save, drawn_key)`` returns
the spikes, what the backend saves besides ``x`` (CPU: the bernoulli spikes as bits; otherwise empty)
and the random key it used (a 0-dim int64 tensor). The key is ``drawn_key`` when given (graphs draw it
with ``torch.randint``, a random op that no graph pass merges or reorders), else ``seed``, else
(``seed = -1``) one drawn from torch's default CPU generator inside the op; seeded runs repeat either
way. Compiled graphs draw through inductor's own generator, so their spikes equal eager ones only with
``torch._inductor.config.fallback_random = True``, as for any random op::

    spikes = fused(x, LIFParameters(0.5, 1.0), get_noise("gaussian", 0.3), "bernoulli")
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.autograd import forward_ad

from nsnn.functional.lif import LIFParameters
from nsnn.noise import Gaussian, Logistic, Noise, Triangular, Uniform

__all__ = [
    "FAMILY_IDS",
    "MODE_IDS",
    "Backend",
    "KernelSpec",
    "fused",
    "has_kernel",
    "no_double_backward",
    "register_backend",
]

# Integer ids shared with nsnn/csrc/lif_common.h (enum Family, enum Mode) and the Triton kernels.
FAMILY_IDS: dict[type[Noise], int] = {Gaussian: 0, Logistic: 1, Triangular: 2, Uniform: 3}
MODE_IDS = {"heaviside": 0, "bernoulli": 1, "expected": 2}
BERNOULLI = MODE_IDS["bernoulli"]


def has_kernel(noise: Noise, mode: str) -> bool:
    """Whether the compiled kernels implement ``noise`` (a built-in family, matched by exact class, so
    a subclass runs on the torch path) and the fire ``mode``; each backend adds its device checks."""
    return type(noise) in FAMILY_IDS and mode in MODE_IDS


class KernelSpec(NamedTuple):
    """Constants of one fused call besides the input, the decay β and the random key."""

    threshold: float
    sigma: float
    family: int
    mode: int
    hard: bool
    detach: bool


class Backend(NamedTuple):
    """One device type's kernels.

    ``forward(x, beta, spec, key, save) -> (spikes, extra)``: ``extra`` is what backward needs
    besides ``x`` (an empty tensor when nothing). ``backward(grad_out, x, extra, beta, spec, key,
    want_decay) -> (grad_x, Σ ∂L/∂β as a 0-dim float64 tensor, or None)``. ``extra_shape(x, spec,
    save)`` gives the shape and dtype of ``extra`` for tracing.
    """

    forward: Callable[[Tensor, float, KernelSpec, int, bool], tuple[Tensor, Tensor]]
    backward: Callable[[Tensor, Tensor, Tensor, float, KernelSpec, int, bool], tuple[Tensor, Tensor | None]]
    extra_shape: Callable[[Tensor, KernelSpec, bool], tuple[tuple[int, ...], torch.dtype]]


_BACKENDS: dict[str, Backend] = {}


def register_backend(device_type: str, backend: Backend) -> None:
    """Make ``backend`` run the ops for tensors on ``device_type`` ("cpu", "cuda")."""
    _BACKENDS[device_type] = backend


def _backend(x: Tensor) -> Backend:
    try:
        return _BACKENDS[x.device.type]
    except KeyError:
        raise ValueError(f"no fused LIF kernel is registered for {x.device.type} tensors") from None


def _forward_impl(
    x: Tensor,
    decay: Tensor,
    threshold: float,
    sigma: float,
    family: int,
    mode: int,
    hard: bool,
    detach: bool,
    seed: int,
    save: bool,
    drawn_key: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    spec = KernelSpec(threshold, sigma, family, mode, hard, detach)
    if mode != BERNOULLI:
        key = 0
    elif drawn_key is not None:
        key = int(drawn_key)
    else:
        key = seed if seed >= 0 else int(torch.randint(0, 2**62, ()))
    out, extra = _backend(x).forward(x, float(decay), spec, key, save)
    return out, extra, torch.tensor(key, dtype=torch.int64)


_lif_fused = torch.library.custom_op("nsnn::lif_fused", _forward_impl, mutates_args=())


@_lif_fused.register_fake
def _(x, decay, threshold, sigma, family, mode, hard, detach, seed, save, drawn_key):
    spec = KernelSpec(threshold, sigma, family, mode, hard, detach)
    shape, dtype = _backend(x).extra_shape(x, spec, save)
    return torch.empty_like(x), x.new_empty(shape, dtype=dtype), torch.empty((), dtype=torch.int64)


def _backward_impl(
    grad_out: Tensor,
    x: Tensor,
    extra: Tensor,
    key: Tensor,
    decay: Tensor,
    threshold: float,
    sigma: float,
    family: int,
    mode: int,
    hard: bool,
    detach: bool,
    want_decay: bool,
) -> tuple[Tensor, Tensor]:
    spec = KernelSpec(threshold, sigma, family, mode, hard, detach)
    grad_x, total = _backend(x).backward(
        grad_out.contiguous(), x, extra, float(decay), spec, int(key), want_decay
    )
    if total is None:
        total = torch.zeros((), dtype=torch.float64)
    return grad_x, total.to(device=decay.device)


_lif_fused_backward = torch.library.custom_op("nsnn::lif_fused_backward", _backward_impl, mutates_args=())


@_lif_fused_backward.register_fake
def _(grad_out, x, extra, key, decay, threshold, sigma, family, mode, hard, detach, want_decay):
    return torch.empty_like(x), decay.new_empty((), dtype=torch.float64)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
    x, decay, *spec, _seed, _save, _drawn_key = inputs
    _, extra, key = output
    ctx.save_for_backward(x, extra, key, decay)
    ctx.spec = tuple(spec)


def _grads(
    ctx: Any, grad_out: Tensor, backward_op: Callable[..., tuple[Tensor, Tensor]]
) -> tuple[Tensor | None, ...]:
    x, extra, key, decay = ctx.saved_tensors
    want_decay = ctx.needs_input_grad[1]
    grad_x, total = backward_op(grad_out, x, extra, key, decay, *ctx.spec, want_decay)
    grad_decay = total.to(decay.dtype).reshape(decay.shape) if want_decay else None
    return grad_x, grad_decay, None, None, None, None, None, None, None, None, None


def _backward(ctx: Any, grad_out: Tensor, _grad_extra: Any, _grad_key: Any) -> tuple[Tensor | None, ...]:
    """Autograd formula of the op: the backward op, so compiled backward graphs keep it opaque."""
    return _grads(ctx, grad_out, torch.ops.nsnn.lif_fused_backward)


_lif_fused.register_autograd(_backward, setup_context=_setup_context)


def no_double_backward(
    backward: Callable[..., tuple[Tensor | None, ...]],
) -> Callable[..., tuple[Tensor | None, ...]]:
    """Decorate an autograd ``backward`` that autograd cannot differentiate (a kernel, or torch ops on
    membranes recomputed without a graph). Under ``create_graph=True`` its gradients come back marked so
    that differentiating them again raises, where they would otherwise be silently taken as constants
    (torch's ``once_differentiable`` marks them only when the incoming gradient requires grad).

    The mark (a ``DelayedError`` node) is linked to the graph of the op's saved tensors and incoming
    gradients by a sum over none of their elements (exactly 0, even for ±inf entries): the node then lies
    on every path from these gradients back to the op's inputs, so ``torch.autograd.grad(...,
    inputs=...)``, which only runs the nodes on paths to its inputs, raises too instead of dropping the
    second-order term (a MAML-style meta-gradient through the layer)."""

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> tuple[Tensor | None, ...]:
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outputs
        sources = [t for t in (*ctx.saved_tensors, *grads) if isinstance(t, Tensor) and t.requires_grad]
        error = torch._C._functions.DelayedError(
            b"the fused LIF backward of nsnn cannot be differentiated again (no double backward)",
            len(outputs),
        )

        def marked(g: Tensor | None) -> Tensor | None:
            if g is None:
                return None
            if not sources:
                return g.detach().requires_grad_(True)
            link = sum(t.reshape(-1)[:0].sum() for t in sources)
            return g.detach() + link.to(g.dtype)

        return error(*[marked(g) for g in outputs])

    return wrapper


class _EagerFused(torch.autograd.Function):
    """The op's forward and autograd formula without the custom-op dispatch, for eager calls: the
    dispatch costs about 0.4 ms per layer (forward + backward) of host time, which CUDA steps feel."""

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> tuple[Tensor, Tensor, Tensor]:
        output = _forward_impl(*inputs)
        _setup_context(ctx, inputs, output)
        ctx.mark_non_differentiable(output[1], output[2])
        return output

    @staticmethod
    @no_double_backward
    def backward(ctx: Any, grad_out: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        return _grads(ctx, grad_out, _backward_impl)


def _transformed(*tensors: Tensor) -> bool:
    """Whether forward-mode AD is active or a tensor is a ``torch.func`` wrapper (vmap, grad, jvp): the
    kernels would read the primal alone and drop the tangent or batch dimension."""
    is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return forward_ad._current_level >= 0 or any(is_wrapped(t) for t in tensors)


def fused(
    x: Tensor, params: LIFParameters, noise: Noise, mode: str, generator: torch.Generator | None = None
) -> Tensor:
    """Spikes of a LIF layer over ``x`` ``[T, B, ...]`` by the registered kernel for ``x``'s device.

    ``noise`` must be a built-in family and ``mode`` a fire mode (the callers' ``supports`` check).
    Nothing is saved unless autograd needs a graph for ``x`` or a learnable ``params.decay``. A
    ``torch.jit.trace`` records ``save`` as a constant of the graph, which must not depend on the grad
    mode of the tracing run (the trace check reruns under ``no_grad``, and a traced module may later
    train), so traced calls always save; the autograd formula keeps the result only when needed.
    """
    x = x.resolve_neg()  # a lazily negated view (x.is_neg()): the kernels read raw memory
    decay = params.decay
    if not isinstance(decay, Tensor):
        decay = torch.tensor(float(decay), dtype=torch.float64)
    save = torch.jit.is_tracing() or (torch.is_grad_enabled() and (x.requires_grad or decay.requires_grad))
    seed = -1
    if generator is not None and mode == "bernoulli":
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    spec = (float(params.threshold), float(noise.sigma), FAMILY_IDS[type(noise)], MODE_IDS[mode])
    resets = (params.hard_reset, params.detach_reset)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # graphs record the op itself
        # The key is drawn by a random op of the graph: a key drawn inside the op would make two calls
        # with equal inputs look identical to common-subexpression elimination, which merges them.
        drawn = torch.randint(0, 2**62, (), dtype=torch.int64) if seed < 0 and mode == "bernoulli" else None
        return torch.ops.nsnn.lif_fused(x.contiguous(), decay, *spec, *resets, seed, save, drawn)[0]
    args = (x.contiguous(), decay, *spec, *resets, seed, save, None)
    if save or _transformed(x, decay):  # the Function raises for transforms it has no rule for
        return _EagerFused.apply(*args)[0]
    return _forward_impl(*args)[0]  # no graph to record: skip the Function's ~25 µs per call
