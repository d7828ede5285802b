"""Pure functions behind the neuron modules: LIF step, spike nonlinearity, fused multi-step kernel."""

from nsnn.functional.fused import lif_multistep
from nsnn.functional.lif import FIRE_MODES, RESETS, LIFParameters, fire, lif_step, spike

__all__ = ["FIRE_MODES", "RESETS", "LIFParameters", "fire", "lif_multistep", "lif_step", "spike"]
