"""One configuration object for the Diehl & Cook (2015) STDP network, its run schedule and compression.

Every constant of the model lives here, as a plain float with its unit in the field name (JSON-able:
a run's ``config.json`` is :meth:`STDPConfig.to_dict` plus a ``run`` record, and ``from_dict`` reads
it back); :mod:`nsnn.stdp.equations` turns them into
Brian2 quantities, where Brian2 checks the units of every equation. Defaults follow the original code
(Diehl & Cook 2015, ``Diehl&Cook_spiking_MNIST.py``), with four deliberate choices:

* ``method="exponential_euler"``: the membrane equation is stiff in ``g_i``; forward Euler (every
  Brian2 port) blows up for N ≥ 1600.
* ``method_inh="euler"`` for Ai: its only input is its partner's jump (g_e ≤ w_exc_inh = 10.4, one
  spike per ≥ 50 ms), so forward Euler stays stable there (dt·(1 + g_e)/τ_i ≈ 0.57 < 2) and saves an
  ``exp`` per neuron and step.
* STDP depresses on *pre* spikes (``w -= nu_pre·x_post1``), as in the Brian1 original.
* ``input_sampler="countdown"``: the Poisson inputs draw geometric gaps between spikes instead of one
  Bernoulli draw per input and step; the same process in distribution (:mod:`nsnn.stdp.equations`).

Example::

    cfg = STDPConfig(n_exc=400, prune=0.75, prune_every=2000, bits=4)
    cfg2 = STDPConfig.from_dict(cfg.to_dict())          # round-trips through config.json
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

TARGETS = ("standalone", "cython", "numpy")
METHODS = ("exponential_euler", "euler", "rk2", "rk4")
PRUNE_SCOPES = ("neuron", "global")
INPUT_SAMPLERS = ("countdown", "bernoulli")
FULL_PRECISION_BITS = 32
# Beyond 16 bits (65,536 levels, finer than any device) the listed levels would grow to gigabytes.
MAX_LEVEL_BITS = 16


def _integer(name: str, value: Any) -> int:
    """``value`` as an int if it is one (or an integral float); else ValueError."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _finite(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite real number (not a bool, not a string); else ValueError."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class STDPConfig:
    """Diehl & Cook network, schedule and compression settings (all times in ms, voltages in mV).

    Retry (Diehl & Cook): an example that drew fewer than ``retry_min_spikes`` Ae spikes is presented
    again at intensity + ``retry_intensity_step`` (then + 2 steps, ...), up to ``retry_max`` times; always
    in the frozen label/test passes, in training with ``train_retry`` (default on, as in the original;
    done at the end of each block, see :mod:`nsnn.stdp.pipeline`).

    Compression: ``prune`` is the fraction of X→Ae synapses removed (0 ≤ prune < 1); ``prune_every`` > 0
    prunes every that many training examples and at the end of training, to sparsity ``prune·b/n``
    after b of n examples (each prune only removes more), 0 prunes once after training. Or
    ``prune_threshold`` (a weight, instead of ``prune``): at the same points every synapse whose weight
    is ≤ it dies (the seed's loop: threshold → zero → keep training → quantize). ``bits`` = 32
    means full precision, 1…16 means 2**bits uniform levels over [0, w_max]; ``levels`` (explicit
    device conductance levels) overrides ``bits`` for the deployed weights.
    """

    # sizes and input
    n_input: int = 784
    n_exc: int = 400
    intensity: float = 2.0
    rate_per_intensity_hz: float = 31.875
    t_present_ms: float = 350.0
    t_rest_ms: float = 150.0
    dt_ms: float = 0.5
    retry_min_spikes: int = 5
    retry_intensity_step: float = 1.0
    retry_max: int = 3
    train_retry: bool = True
    # excitatory neurons
    v_rest_e_mv: float = -65.0
    v_reset_e_mv: float = -65.0
    v_thresh_e_mv: float = -52.0
    e_inh_e_mv: float = -100.0
    tau_e_ms: float = 100.0
    refrac_e_ms: float = 5.0
    spike_block_ms: float = 50.0
    theta_plus_mv: float = 0.05
    tau_theta_ms: float = 1e7
    theta_init_mv: float = 20.0
    theta_offset_mv: float = 20.0
    v_init_below_rest_mv: float = 40.0
    # inhibitory neurons
    v_rest_i_mv: float = -60.0
    v_reset_i_mv: float = -45.0
    v_thresh_i_mv: float = -40.0
    e_inh_i_mv: float = -85.0
    tau_i_ms: float = 10.0
    refrac_i_ms: float = 2.0
    # shared
    e_exc_mv: float = 0.0
    tau_ge_ms: float = 1.0
    tau_gi_ms: float = 2.0
    method: str = "exponential_euler"
    method_inh: str = "euler"
    # synapses and STDP
    w_max: float = 1.0
    w_init_scale: float = 0.3
    w_init_floor: float = 0.01
    w_sum: float = 78.0
    delay_max_ms: float = 10.0
    w_exc_inh: float = 10.4
    w_inh_exc: float = 17.0
    nu_pre: float = 1e-4
    nu_post: float = 1e-2
    tau_pre_ms: float = 20.0
    tau_post1_ms: float = 20.0
    tau_post2_ms: float = 40.0
    # compression
    prune: float = 0.0
    prune_threshold: float | None = None
    prune_every: int = 0
    prune_scope: str = "neuron"
    bits: int = FULL_PRECISION_BITS
    levels: tuple[float, ...] | None = None
    # execution
    input_sampler: str = "countdown"
    target: str = "standalone"
    chunk: int = 500
    seed: int = 0
    n_classes: int = 10
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.levels is not None:
            try:
                if isinstance(self.levels, str):
                    raise TypeError
                levels = tuple(float(v) for v in self.levels)
            except (TypeError, ValueError):
                raise ValueError(
                    f"levels must be a list of conductance levels (numbers), got {self.levels!r}"
                ) from None
            object.__setattr__(self, "levels", levels)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int":  # counts: an integral float (a hand-edited 4.0) is taken as 4
                object.__setattr__(self, f.name, _integer(f.name, value))
            elif f.type == "float":  # every constant: a finite number (a NaN threshold never fires)
                object.__setattr__(self, f.name, _finite(f.name, value))
            elif f.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"{f.name} must be True or False, got {value!r}")
            elif f.type == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, got {value!r}")
        self._validate()

    def _validate(self) -> None:
        if self.n_input < 1 or self.n_exc < 1:
            raise ValueError(
                f"n_input and n_exc must be >= 1, got n_input={self.n_input}, n_exc={self.n_exc}"
            )
        for name in ("intensity", "rate_per_intensity_hz", "retry_intensity_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} is a rate and must be a finite number >= 0, got {value}")
        positive = (
            "t_present_ms",
            "dt_ms",
            "tau_e_ms",
            "tau_i_ms",
            "tau_ge_ms",
            "tau_gi_ms",
            "tau_theta_ms",
            "tau_pre_ms",
            "tau_post1_ms",
            "tau_post2_ms",
            "w_max",
            "w_sum",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        non_negative = (
            "t_rest_ms",
            "refrac_e_ms",
            "refrac_i_ms",
            "spike_block_ms",
            "theta_plus_mv",
            "delay_max_ms",
            "w_exc_inh",
            "w_inh_exc",
            "nu_pre",
            "nu_post",
            "w_init_scale",
            "w_init_floor",
            "retry_min_spikes",
            "retry_max",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        steps = self.example_ms / self.dt_ms
        if (
            abs(steps - round(steps)) > 1e-6
            or abs(self.t_present_ms / self.dt_ms - round(self.t_present_ms / self.dt_ms)) > 1e-6
        ):
            raise ValueError(f"t_present_ms and t_rest_ms must be multiples of dt_ms={self.dt_ms}")
        if not 0.0 <= self.prune < 1.0:
            raise ValueError(
                f"prune is the fraction of synapses removed and must be in [0, 1), got {self.prune}"
            )
        if self.prune_threshold is not None:
            threshold = _finite("prune_threshold", self.prune_threshold)
            if not 0.0 <= threshold < self.w_max:
                raise ValueError(
                    f"prune_threshold is a weight in [0, w_max={self.w_max:g}) (None: prune by the fraction "
                    f"prune), got {threshold}"
                )
            if self.prune > 0:
                raise ValueError("give prune (a fraction) or prune_threshold (a weight), not both")
            object.__setattr__(self, "prune_threshold", threshold)
        if self.prune_every < 0:
            raise ValueError(
                f"prune_every must be >= 0 (0 = prune once after training), got {self.prune_every}"
            )
        if self.prune_scope not in PRUNE_SCOPES:
            raise ValueError(f"prune_scope must be one of {list(PRUNE_SCOPES)}, got {self.prune_scope!r}")
        check_bits(self.bits)
        if self.levels is not None and (
            len(set(self.levels)) < 2 or any(not 0.0 <= v <= self.w_max for v in self.levels)
        ):
            raise ValueError(
                f"levels must list >= 2 distinct conductance levels in [0, w_max={self.w_max}], "
                f"got {self.levels}"
            )
        if self.input_sampler not in INPUT_SAMPLERS:
            raise ValueError(
                f"input_sampler must be one of {list(INPUT_SAMPLERS)}, got {self.input_sampler!r}"
            )
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {list(TARGETS)}, got {self.target!r}")
        for name in ("method", "method_inh"):
            if getattr(self, name) not in METHODS:
                raise ValueError(f"{name} must be one of {list(METHODS)}, got {getattr(self, name)!r}")
        if self.chunk < 1:
            raise ValueError(f"chunk (examples per compiled run) must be >= 1, got {self.chunk}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")

    @property
    def n_inh(self) -> int:
        return self.n_exc

    @property
    def example_ms(self) -> float:
        """Presentation + rest: the period of one example in a continuous run."""
        return self.t_present_ms + self.t_rest_ms

    @property
    def steps_per_example(self) -> int:
        """Time steps of ``dt_ms`` in one example (a whole number, checked at construction)."""
        return round(self.example_ms / self.dt_ms)

    @property
    def quantized(self) -> bool:
        return self.levels is not None or self.bits < FULL_PRECISION_BITS

    @property
    def compressed(self) -> bool:
        return self.prunes or self.quantized

    @property
    def prunes(self) -> bool:
        """Whether the X→Ae synapses are pruned: by the fraction ``prune`` or by ``prune_threshold``."""
        return self.prune > 0 or self.prune_threshold is not None

    def weight_levels(self) -> tuple[float, ...] | None:
        """The deployed X→Ae conductance levels, or None at full precision."""
        if self.levels is not None:
            return tuple(sorted(self.levels))
        return levels_for_bits(self.bits, self.w_max)

    def replace(self, **changes: Any) -> STDPConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["levels"] = None if self.levels is None else list(self.levels)
        data["n_inh"] = self.n_inh
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> STDPConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are kept in ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "n_inh"}
        known["extra"] = {**known.get("extra", {}), **extra}
        return cls(**known)


def check_bits(bits: int) -> None:
    """ValueError unless ``bits`` is 1…:data:`MAX_LEVEL_BITS` (uniform levels, listed one by one) or
    :data:`FULL_PRECISION_BITS` (no quantization)."""
    if not (1 <= bits <= MAX_LEVEL_BITS or bits == FULL_PRECISION_BITS):
        raise ValueError(
            f"bits must be 1..{MAX_LEVEL_BITS} (2**bits uniform levels) or {FULL_PRECISION_BITS} "
            f"(full precision), got {bits}"
        )


def check_grid(sparsities: Any, bits: Any) -> None:
    """ValueError unless a sweep grid lists >= 1 sparsity in [0, 1) and >= 1 valid bit width
    (:func:`check_bits`): checked before any training or simulation, whose work a bad cell would lose."""
    sparsities, bits = list(sparsities), list(bits)
    if not sparsities or not bits:
        raise ValueError(f"a sweep needs >= 1 sparsity and >= 1 bit width, got {sparsities} and {bits}")
    for sparsity in sparsities:
        if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0 <= sparsity < 1:
            raise ValueError(f"sweep sparsities must be numbers in [0, 1), got {sparsity!r} in {sparsities}")
    for b in bits:
        check_bits(_integer("sweep bits", b))


def levels_for_bits(bits: int, w_max: float) -> tuple[float, ...] | None:
    """2**bits uniform levels over [0, w_max], or None for ``bits == 32`` (full precision)."""
    bits = _integer("bits", bits)
    check_bits(bits)
    if bits == FULL_PRECISION_BITS:
        return None
    n = 2**bits
    return tuple(w_max * k / (n - 1) for k in range(n))


def check_images_fit(config: STDPConfig, n_pixels: int) -> None:
    """Raise ValueError unless the images have ``config.n_input`` pixels."""
    if n_pixels != config.n_input:
        side = math.isqrt(n_pixels)
        raise ValueError(f"images have {n_pixels} pixels ({side}x{side}) but config.n_input={config.n_input}")
