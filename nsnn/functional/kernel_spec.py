"""What the fused LIF kernels (C++ on CPU, Triton on CUDA) share: ids, the call spec and the dispatch.

Both backends run the recurrence of :mod:`nsnn.functional.fused` for the built-in noise families,
matched by exact class, so a new family subclass runs on the pure-torch path. A backend provides a
forward-only launcher ``run(x, beta, spec) -> spikes`` and an autograd ``Function`` applied as
``apply(x, decay, spec)``; :func:`dispatch` picks between them::

    spec = make_spec(params, noise, "bernoulli", seed=7)
    spikes = dispatch(x, params, spec, launch_forward, _KernelFunction)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from nsnn.functional.lif import LIFParameters
from nsnn.noise import Gaussian, Logistic, Noise, Triangular, Uniform

__all__ = ["FAMILY_IDS", "MODE_IDS", "KernelSpec", "decay_grad", "decay_like", "dispatch", "make_spec"]

# Integer ids shared with nsnn/csrc/lif_common.h (enum Family, enum Mode) and the Triton kernels.
FAMILY_IDS: dict[type[Noise], int] = {Gaussian: 0, Logistic: 1, Triangular: 2, Uniform: 3}
MODE_IDS = {"heaviside": 0, "bernoulli": 1, "expected": 2}


class KernelSpec(NamedTuple):
    """Constants of one fused call besides the input and the decay β."""

    threshold: float
    sigma: float
    family: int
    mode: int
    hard: bool
    detach: bool
    seed: int


def make_spec(params: LIFParameters, noise: Noise, mode: str, seed: int) -> KernelSpec:
    """The spec of a call; ``noise`` must be a built-in family and ``mode`` a fire mode."""
    return KernelSpec(
        float(params.threshold),
        float(noise.sigma),
        FAMILY_IDS[type(noise)],
        MODE_IDS[mode],
        params.hard_reset,
        params.detach_reset,
        seed,
    )


def dispatch(
    x: Tensor,
    params: LIFParameters,
    spec: KernelSpec,
    run: Callable[[Tensor, float, KernelSpec], Tensor],
    function: type[torch.autograd.Function],
) -> Tensor:
    """Forward only (nothing saved) unless autograd needs a graph for ``x`` or a learnable decay."""
    decay = params.decay
    decay_needs_grad = isinstance(decay, Tensor) and decay.requires_grad
    if torch.is_grad_enabled() and (x.requires_grad or decay_needs_grad):
        return function.apply(x, decay, spec)
    return run(x, float(decay), spec)


def decay_like(decay: Tensor | float) -> Tensor | None:
    """What backward keeps of the decay to shape ∂L/∂β: a detached tensor, or None for a float."""
    return decay.detach() if isinstance(decay, Tensor) else None


def decay_grad(total: Tensor | None, like: Tensor | None) -> Tensor | None:
    """∂L/∂β (``total``, any float dtype) shaped and typed like the decay tensor; None if not computed."""
    if total is None or like is None:
        return None
    return total.to(like.dtype).reshape(like.shape)
