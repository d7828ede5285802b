"""Parametric LIF (PLIF, Fang et al. 2021): the leak is learned, firing deterministic or noisy.

    1/τ = sigmoid(w),   h_t = (1 − sigmoid(w))·u_{t−1} + x_t,   w initialised to −log(τ₀ − 1)

With ``noise=None`` firing is H(h − θ) with the ``surrogate`` PDF; with a noise family it is NILIF's
Bernoulli(F(h − θ)) firing (and ``eval_mode``). The gradient with respect to ``w`` is exact::

    plif = PLIF(tau=2.0, noise="gaussian", sigma=0.3)
    spikes = plif(torch.randn(4, 8, 64)); plif.w        # learnable scalar
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from nsnn.neurons.base import SpikingNeuron
from nsnn.noise import Noise, get_noise

__all__ = ["PLIF"]


def _w_for(tau: float) -> float:
    """The ``w`` with 1/sigmoid(w) = ``tau``; ``tau`` must be finite and > 1."""
    rule = "PLIF needs a finite number tau > 1 (1/tau = sigmoid(w) < 1)"
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"{rule}; got {tau!r}") from None
    if isinstance(tau, bool | np.bool_):
        raise ValueError(f"{rule}; got {tau!r}")
    if not (math.isfinite(value) and value > 1.0):
        raise ValueError(f"{rule}; got {value}")
    return -math.log(value - 1.0)


class PLIF(SpikingNeuron):
    """LIF with a learnable membrane time constant (one scalar per layer).

    Args:
        tau: initial time constant (> 1, since 1/τ = sigmoid(w) < 1).
        noise: ``None`` for deterministic firing, or a noise family for stochastic firing.
        sigma: scale of ``noise`` or of ``surrogate``.
        surrogate: PDF used as surrogate when ``noise`` is ``None``.
        threshold, reset, detach_reset, eval_mode, step_mode: see :class:`SpikingNeuron`.
    """

    saved_settings = tuple(name for name in SpikingNeuron.saved_settings if name != "tau")  # tau: in w

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        reset: str = "hard",
        detach_reset: bool = False,
        noise: str | Noise | None = None,
        sigma: float = 0.3,
        surrogate: str | Noise = "gaussian",
        eval_mode: str = "stochastic",
        step_mode: str = "m",
    ) -> None:
        super().__init__(tau, threshold, reset, detach_reset, step_mode, noise is not None, eval_mode)
        self.noise = get_noise(noise if noise is not None else surrogate, sigma)
        self.w = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``w`` back to its initial value, for τ = ``initial_tau`` (as ``nn.Linear.reset_parameters``;
        e.g. after ``to_empty()`` of a model built on the meta device)."""
        with torch.no_grad():
            self.w.fill_(_w_for(self.initial_tau))

    @property
    def tau(self) -> float:
        """Current (learned) time constant 1/sigmoid(w); assigning one re-initialises ``w`` to it and makes
        it the ``initial_tau`` that :meth:`reset_parameters` returns to."""
        return self.learned_tau

    @tau.setter
    def tau(self, value: float) -> None:
        w = _w_for(value)  # validates, also when the base class sets tau before w exists
        self.initial_tau = float(value)
        if "w" in self._parameters:
            with torch.no_grad():
                self.w.fill_(w)

    @property
    def decay(self) -> Tensor:
        return torch.sigmoid(-self.w)

    @property
    def learned_tau(self) -> float:
        """Current time constant 1/sigmoid(w) (NaN while ``w`` is on the meta device, without a value)."""
        if self.w.is_meta:
            return math.nan
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def extra_repr(self) -> str:
        return super().extra_repr().replace(f"tau={self.tau:g}", f"tau={self.tau:.4g} (learned)", 1)
