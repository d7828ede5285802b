"""Noisy LIF (NILIF): firing probability = noise CDF, surrogate gradient = noise PDF.

    h_t = (1 − 1/τ)·u_{t−1} + x_t
    s_t ~ Bernoulli(F(h_t − θ))            (training; F = CDF of the membrane noise)
    ∂s_t/∂h_t := f(h_t − θ)                (f = PDF = dE[s_t]/dh_t)
    u_t = h_t·(1 − s_t)  or  h_t − θ·s_t   (reset with the *same* s_t)

The draw is made on the noise-free membrane, so the effective noise is exactly ``noise(sigma)``.
Outside training ``eval_mode`` chooses ``"stochastic"`` (as training), ``"deterministic"``
(s = H(h − θ)) or ``"expected"`` (s = F(h − θ), real-valued)::

    neuron = NILIF(noise="triangular", sigma=0.4)
    spikes = neuron(torch.randn(4, 32, 128))     # [T, B, N] -> [T, B, N], values in {0, 1}

``double_noise=True`` reproduces the reference repository (Ma et al. 2023): a noise sample is
subtracted from the membrane *and* the spike is drawn from Bernoulli(F(h − ξ − θ)), an effective
noise of σ√2 for Gaussian noise, with ξ persisting in the membrane. It is for comparison only.
"""

from __future__ import annotations

from torch import Tensor

from nsnn.neurons.base import SpikingNeuron, _Checked, _flag
from nsnn.noise import Noise, get_noise

__all__ = ["NILIF"]


class NILIF(SpikingNeuron):
    """Noise-driven-learning LIF neuron.

    Args:
        noise: membrane-noise family (name or :class:`~nsnn.noise.Noise`).
        sigma: its scale (ignored when ``noise`` is already a ``Noise``).
        tau, threshold, reset, detach_reset, step_mode: see :class:`SpikingNeuron`.
        eval_mode: firing outside training (settable later): stochastic | deterministic | expected.
        double_noise: reproduce the reference repository's doubled noise (stochastic firing only).
    """

    double_noise = _Checked(_flag)
    saved_settings = (*SpikingNeuron.saved_settings, "double_noise")

    def __init__(
        self,
        noise: str | Noise = "gaussian",
        sigma: float = 0.3,
        tau: float = 2.0,
        threshold: float = 1.0,
        reset: str = "hard",
        detach_reset: bool = False,
        eval_mode: str = "stochastic",
        step_mode: str = "m",
        double_noise: bool = False,
    ) -> None:
        super().__init__(tau, threshold, reset, detach_reset, step_mode, stochastic=True, eval_mode=eval_mode)
        self.noise = get_noise(noise, sigma)
        self.double_noise = double_noise

    def _drive(self, x: Tensor) -> Tensor:
        if self.double_noise and self.fire_mode == "bernoulli":
            return x - self.noise.sample(x.shape, device=x.device, dtype=x.dtype)
        return x

    def extra_repr(self) -> str:
        return super().extra_repr() + (", double_noise=True" if self.double_noise else "")
