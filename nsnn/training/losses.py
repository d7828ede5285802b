"""Training objectives on per-step logits ``[T, B, classes]`` and orthogonality regularizers.

Losses (registry :data:`LOSSES`, built by :func:`build_loss`), with ``ℓ`` the cross-entropy and
``o_t`` the logits at step t:

=============  ===================================================================================
name           objective
=============  ===================================================================================
per_step_ce    (1/T)·Σ_t ℓ(o_t, y)            NSNN's default since ``b0edc8f`` (TET's data term)
mean_ce        ℓ((1/T)·Σ_t o_t, y)            CE on the time-averaged logits (the prediction)
tet            (1 − λ)·(1/T)·Σ_t ℓ(o_t, y) + λ·mean((o − 1)²)   Deng et al. 2022, λ = ``lambda_tet``
=============  ===================================================================================

TET's second term is the mean squared distance of *every* logit (all t, b, classes) to 1.0, exactly
as in the TET and NSNN code (``MSELoss(outputs, ones)``).

Regularizers (registry :data:`REGULARIZERS`), summed over every Conv/Linear weight ``W`` reshaped
to a matrix ``[out, fan_in]``, with ``G`` the Gram matrix of its smaller side (``W Wᵀ`` if
``out ≤ fan_in``, else ``Wᵀ W``):

* ``gram``: Σ ‖G − I‖_F (Frobenius norm, not squared, as in NSNN's ``Gramian``);
* ``srip``: Σ ‖(G − I)·v̂‖², v̂ = (G − I)u/‖(G − I)u‖, u ~ U(0, 1): one power-iteration estimate of
  the squared spectral norm of ``G − I`` (Bansal et al. 2018; NSNN's ``SRIP``);
* ``no``: 0.

    loss_fn = build_loss("tet", lambda_tet=0.05)
    loss = loss_fn(net(x_seq), y) + 1e-4 * REGULARIZERS["gram"](net)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]


def _check_logits(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must be [T, B, classes], got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[1:2]:
        raise ValueError(f"target must be [B] = [{logits.shape[1]}], got shape {tuple(target.shape)}")


def per_step_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean over t of the batch-mean CE of ``logits[t]`` (logits ``[T, B, C]``) against ``target`` ``[B]``."""
    _check_logits(logits, target)
    T, B, C = logits.shape
    # One CE over T·B rows equals the mean over t of per-step batch means (every step has B rows).
    return F.cross_entropy(logits.float().reshape(T * B, C), target.repeat(T))


def mean_ce(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of the time-averaged logits ``logits.mean(0)`` ``[B, C]`` against ``target`` ``[B]``."""
    _check_logits(logits, target)
    return F.cross_entropy(logits.float().mean(0), target)


def tet_loss(logits: Tensor, target: Tensor, lambda_tet: float = 0.05) -> Tensor:
    """TET: ``(1 − λ)·per_step_ce + λ·mean((logits − 1)²)`` over all elements of ``[T, B, C]``."""
    data = per_step_ce(logits, target)
    if lambda_tet == 0:
        return data
    mse = (logits.float() - 1.0).pow(2).mean()
    return (1.0 - lambda_tet) * data + lambda_tet * mse


LOSSES: dict[str, Callable[..., Tensor]] = {
    "per_step_ce": per_step_ce,
    "mean_ce": mean_ce,
    "tet": tet_loss,
}


def build_loss(name: str, lambda_tet: float = 0.05) -> LossFn:
    """The loss ``name`` from :data:`LOSSES` as a ``(logits [T,B,C], target [B]) -> scalar`` function
    (``lambda_tet``: TET's MSE weight, defaulting to :func:`tet_loss`'s and ``TrainConfig``'s 0.05)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    if not 0.0 <= lambda_tet <= 1.0:
        raise ValueError(f"lambda_tet must be in [0, 1], got {lambda_tet}")
    if name == "tet":
        return lambda logits, target: tet_loss(logits, target, lambda_tet)
    return LOSSES[name]


def _weight_matrices(model: nn.Module) -> Iterator[Tensor]:
    """Every Conv/Linear weight as ``[out, fan_in]`` (convs of any dimension, fan_in = in·k...)."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.modules.conv._ConvNd) and m.weight is not None:
            yield m.weight.reshape(m.weight.shape[0], -1)


def _gram_minus_identity(w: Tensor) -> Tensor:
    w = w.float()
    g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return g - torch.eye(g.shape[0], device=g.device, dtype=g.dtype)


def _sum(terms: list[Tensor]) -> Tensor:
    return torch.stack(terms).sum() if terms else torch.zeros(())


def gram_penalty(model: nn.Module) -> Tensor:
    """Σ over Conv/Linear layers of ‖G − I‖_F (see module docstring); a 0-dim float32 tensor."""
    return _sum([torch.linalg.matrix_norm(_gram_minus_identity(w)) for w in _weight_matrices(model)])


def srip_penalty(model: nn.Module, generator: torch.Generator | None = None) -> Tensor:
    """Σ over Conv/Linear layers of ‖(G − I)v̂‖² (one power iteration from u ~ U(0,1)); 0-dim float32.

    ``u`` is drawn on the CPU from ``generator`` (a CPU generator) or the global CPU RNG, so the
    penalty is the same on every device.
    """
    terms = []
    for w in _weight_matrices(model):
        a = _gram_minus_identity(w)
        u = torch.rand(a.shape[1], 1, generator=generator, dtype=a.dtype).to(a.device)
        v = F.normalize(a @ u, dim=0)
        terms.append((a @ v).pow(2).sum())
    return _sum(terms)


def no_penalty(model: nn.Module) -> Tensor:
    """No regularization: a constant 0."""
    return torch.zeros(())


REGULARIZERS: dict[str, Callable[[nn.Module], Tensor]] = {
    "no": no_penalty,
    "gram": gram_penalty,
    "srip": srip_penalty,
}


def get_regularizer(name: str) -> Callable[[nn.Module], Tensor]:
    """Regularizer ``name`` from :data:`REGULARIZERS` (``"no"``, ``"gram"``, ``"srip"``)."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; choose from {sorted(REGULARIZERS)}")
    return REGULARIZERS[name]
