"""Deterministic LIF (the DSNN baseline): s = H(u − θ), surrogate gradient from a noise family's PDF.

    h_t = (1 − 1/τ)·u_{t−1} + x_t,   s_t = [h_t > θ],   ∂s_t/∂h_t ≈ f(h_t − θ)

where f is the PDF of ``surrogate`` with scale ``sigma`` (Gaussian σ = 0.3 by default, so a LIF and a
NILIF with the same noise share the same backward shape)::

    lif = LIF(tau=2.0, surrogate="logistic", sigma=0.25)
    spikes = lif(torch.randn(4, 8, 100))        # [T, B, N] -> [T, B, N]
"""

from __future__ import annotations

from nsnn.neurons.base import SpikingNeuron
from nsnn.noise import Noise, get_noise

__all__ = ["LIF"]


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron with a Heaviside spike and a PDF-shaped surrogate.

    Args:
        tau, threshold, reset, detach_reset, step_mode: see :class:`SpikingNeuron`.
        surrogate: noise family (name or :class:`~nsnn.noise.Noise`) whose PDF is the surrogate.
        sigma: scale of that family (ignored when ``surrogate`` is already a ``Noise``).
    """

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        reset: str = "hard",
        detach_reset: bool = False,
        surrogate: str | Noise = "gaussian",
        sigma: float = 0.3,
        step_mode: str = "m",
    ) -> None:
        super().__init__(tau, threshold, reset, detach_reset, step_mode, stochastic=False)
        self.noise = get_noise(surrogate, sigma)
