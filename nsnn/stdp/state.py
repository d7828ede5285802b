"""Network state as numpy arrays, input rates, and per-example spike counting (no Brian2 needed).

The learnable state of the Diehl & Cook network is the X→Ae weight matrix ``w`` ``[n_input, n_exc]``
(zeros where pruned), the alive-synapse ``mask`` (same shape, bool), the fixed per-synapse input
``delay_ms`` and the adaptive thresholds ``theta`` ``[n_exc]`` (volts). Brian2 objects are rebuilt from
it for every phase, so pruning, quantization and saving are plain numpy::

    config = STDPConfig(n_exc=100)
    state = init_state(config, seed=0)
    rates = image_rates(images, config)                 # [n, 784] Hz
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nsnn.stdp.config import STDPConfig, check_images_fit


@dataclass(frozen=True)
class NetworkState:
    """X→Ae ``w`` / ``mask`` / ``delay_ms`` ``[n_input, n_exc]``, thresholds ``theta`` ``[n_exc]`` (V)."""

    w: np.ndarray
    mask: np.ndarray
    delay_ms: np.ndarray
    theta: np.ndarray

    def __post_init__(self) -> None:
        shape = self.w.shape
        if self.w.ndim != 2 or self.mask.shape != shape or self.delay_ms.shape != shape:
            raise ValueError(
                f"w, mask and delay_ms must share one [n_input, n_exc] shape; got w {self.w.shape}, "
                f"mask {self.mask.shape}, delay_ms {self.delay_ms.shape}"
            )
        if self.theta.shape != (shape[1],):
            raise ValueError(f"theta must have shape [{shape[1]}], got {list(self.theta.shape)}")
        if self.mask.dtype != np.bool_:
            raise ValueError(f"mask must be bool (True = synapse alive), got {self.mask.dtype}")

    @property
    def synapses(self) -> int:
        """Number of surviving X→Ae synapses."""
        return int(self.mask.sum())

    @property
    def sparsity(self) -> float:
        return 1.0 - self.synapses / self.mask.size

    def connectivity(self) -> tuple[np.ndarray, np.ndarray]:
        """Pre (input) and post (Ae) indices of the surviving synapses, row-major order."""
        pre, post = np.nonzero(self.mask)
        return pre.astype(np.int32), post.astype(np.int32)

    def with_weights(self, w: np.ndarray, theta: np.ndarray | None = None) -> NetworkState:
        """A copy with new weights (forced to zero where pruned) and optionally new thresholds."""
        w = np.where(self.mask, w, 0.0)
        return replace(self, w=w, theta=self.theta if theta is None else np.asarray(theta, dtype=np.float64))

    def with_mask(self, mask: np.ndarray) -> NetworkState:
        """A copy keeping only synapses alive in both masks (pruned synapses never come back)."""
        mask = np.asarray(mask, dtype=bool) & self.mask
        return replace(self, mask=mask, w=np.where(mask, self.w, 0.0))


def init_state(config: STDPConfig, seed: int | None = None) -> NetworkState:
    """Diehl & Cook initial state: w = scale·(U(0,1) + floor), delays U(0, delay_max), θ = θ_init."""
    rng = np.random.default_rng(config.seed if seed is None else seed)
    shape = (config.n_input, config.n_exc)
    w = config.w_init_scale * (rng.random(shape) + config.w_init_floor)
    w = np.clip(w, 0.0, config.w_max)
    delay = rng.random(shape) * config.delay_max_ms
    theta = np.full(config.n_exc, config.theta_init_mv * 1e-3)
    return NetworkState(w=w, mask=np.ones(shape, dtype=bool), delay_ms=delay, theta=theta)


def image_rates(images: np.ndarray, config: STDPConfig, intensity: float | None = None) -> np.ndarray:
    """Poisson rates ``[n, n_input]`` in Hz: brightness · rate_per_intensity · intensity (pixel/4 at 2).

    ``images``: uint8 ``[n, ...]`` (0-255) or float in [0, 1]; any trailing shape with n_input pixels.
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must be a batch [n, ...] of n images; got shape {images.shape}")
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must be uint8 (0-255) or float in [0, 1]; got {images.dtype}")
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    check_images_fit(config, flat.shape[1])
    if images.dtype == np.uint8:
        flat /= 255.0
    elif flat.size and (flat.min() < 0.0 or flat.max() > 1.0):
        raise ValueError("float images must lie in [0, 1]; pass uint8 images for 0-255 pixels")
    level = config.intensity if intensity is None else intensity
    if not (np.isfinite(level) and level >= 0):
        raise ValueError(f"intensity must be a finite number >= 0, got {level}")
    return flat * config.rate_per_intensity_hz * level


def example_counts(
    spike_i: np.ndarray, spike_t_s: np.ndarray, n_examples: int, n_neurons: int, config: STDPConfig
) -> np.ndarray:
    """Spike counts ``[n_examples, n_neurons]``: spike at time t belongs to example ⌊t / T_example⌋."""
    example = np.floor(np.asarray(spike_t_s) * 1e3 / config.example_ms + 1e-9).astype(np.int64)
    keep = example < n_examples
    counts = np.zeros((n_examples, n_neurons), dtype=np.int32)
    np.add.at(counts, (example[keep], np.asarray(spike_i, dtype=np.int64)[keep]), 1)
    return counts


def normalize_columns(w: np.ndarray, config: STDPConfig) -> np.ndarray:
    """Scale each Ae neuron's input weights to sum to ``w_sum`` (then clip to [0, w_max]); numpy twin of
    the in-network normalisation, used by the classic per-example loop."""
    sums = w.sum(axis=0, keepdims=True)
    return np.clip(w * (config.w_sum / (sums + 1e-12)), 0.0, config.w_max)
