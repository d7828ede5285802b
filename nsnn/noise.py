"""Membrane-noise families: one abstraction (``sample`` / ``cdf`` / ``pdf``) for every noise in nsnn.

A noisy neuron fires when its noisy membrane crosses threshold, ``u + ε > θ``. For zero-mean noise
symmetric about 0 the firing probability is the noise CDF and its derivative the noise PDF::

    P(s = 1 | u) = F_ε(u − θ),        ∂E[s]/∂u = f_ε(u − θ)

so the PDF *is* the surrogate gradient. The same objects give the surrogate of the deterministic
``LIF`` and the oracles of the tests, and ``sample`` draws the noise itself (``NILIF(double_noise=True)``
adds it to the membrane; any other noisy quantity can use it the same way)::

    noise = get_noise("logistic", sigma=0.3)
    p = noise.cdf(torch.linspace(-1, 1, 5))        # firing probability at u − θ

Every family is parametrised by a scale ``sigma`` and standardised ``z = x / sigma``:

=============  =====================================  =========================================
family         CDF F(x)                                PDF f(x) (the surrogate)
=============  =====================================  =========================================
gaussian       Φ(z) = ½·erfc(−z/√2)                    φ(z)/σ,  φ(z) = exp(−z²/2)/√(2π)
logistic       sigmoid(z)                              sigmoid(z)·sigmoid(−z)/σ
triangular     (1+z)²/2 on [−1,0), 1−(1−z)²/2 on [0,1)  max(1 − |z|, 0)/σ   (support [−σ, σ])
uniform        clamp((z+1)/2, 0, 1)                    1/(2σ) on |z| ≤ 1     (support [−σ, σ])
=============  =====================================  =========================================

Adding a family is one subclass with a ``name`` and the three standardised functions; it registers
itself and is available everywhere by name in the process that defines (imports) it: a run trained with
it is loaded by a program that imports that definition first. All math runs in at least float32
(bf16/fp16 inputs are upcast, results cast back), and every formula stays finite for any finite input:
σ must be at least float32's smallest normal number, 2⁻¹²⁶ ≈ 1.2e-38, so that the PDF's peak (≤ 1/σ)
fits float32 (in bf16/fp16 results, the peak must fit that dtype: σ ≳ 1.6e-5 for fp16).
"""

from __future__ import annotations

import inspect
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

__all__ = ["NOISES", "Gaussian", "Logistic", "Noise", "Triangular", "Uniform", "get_noise", "list_noises"]

NOISES: dict[str, type[Noise]] = {}

OWN_NOISE_HINT = (
    " (a noise family of your own: its Noise subclass registers it by name when defined, so import that "
    "definition before building, training or loading a network that uses it; the shipped scripts and "
    "python -m visualizer import only nsnn's families: call nsnn.training.cli.train_main / test_main or "
    "nsnn.training.load_model from a script of yours that imports it first)"
)

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_SMALLEST_SIGMA = torch.finfo(torch.float32).tiny


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in _LOW_PRECISION or not x.is_floating_point() else x.dtype


def _result_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def draw(
    fn: Callable[..., Tensor],
    shape: torch.Size | tuple[int, ...],
    generator: torch.Generator | None,
    **kwargs: object,
) -> Tensor:
    """``fn(shape, **kwargs)`` (``torch.rand`` / ``torch.randn``) from ``generator`` if one is given.

    No ``generator=None`` is passed: torch's overload that takes it rejects the symbolic sizes of
    ``torch.compile`` with dynamic shapes (e.g. after the batch size changes).
    """
    return fn(shape, **kwargs) if generator is None else fn(shape, generator=generator, **kwargs)


class Noise(ABC):
    """A zero-mean noise distribution, symmetric about 0, with scale ``sigma``.

    Subclasses set ``name`` and implement the *standardised* (σ = 1) ``_cdf``, ``_pdf`` and
    ``_icdf`` (inverse CDF, used for sampling); scaling, dtype handling and validation live here.

    Args:
        sigma: scale of the noise (> 0, finite); its meaning per family is in the module table.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or inspect.isabstract(cls):
            return
        key = cls.name.lower()  # looked up case-insensitively
        taken = NOISES.get(key)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            warnings.warn(
                f"noise family {cls.__qualname__} replaces {taken.__module__}.{taken.__qualname__} as "
                f"{cls.name!r} everywhere (and built-in families lose their compiled kernels)",
                stacklevel=2,
            )
        NOISES[key] = cls

    def __init__(self, sigma: float) -> None:
        if isinstance(sigma, bool | np.bool_):
            raise ValueError(f"noise sigma must be a finite number, got {sigma!r}")
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise ValueError(f"noise sigma must be a finite number, got {sigma!r}") from None
        if not math.isfinite(sigma) or sigma < _SMALLEST_SIGMA:
            raise ValueError(
                f"noise sigma must be a finite number >= {_SMALLEST_SIGMA:.4g} (float32's smallest normal "
                f"number: the PDF's peak 1/sigma must stay finite), got {sigma}"
            )
        self._sigma = sigma

    @property
    def sigma(self) -> float:
        """Scale σ; read-only, since neurons may share one noise object (``neuron.sigma = s`` gives a
        neuron a new one)."""
        return self._sigma

    @staticmethod
    @abstractmethod
    def _cdf(z: Tensor) -> Tensor:
        """Standardised CDF F(z)."""

    @staticmethod
    @abstractmethod
    def _pdf(z: Tensor) -> Tensor:
        """Standardised PDF f(z) = F'(z)."""

    @staticmethod
    @abstractmethod
    def _icdf(p: Tensor) -> Tensor:
        """Standardised inverse CDF, for p in (0, 1)."""

    def cdf(self, x: Tensor) -> Tensor:
        """P(ε ≤ x), elementwise; same shape and dtype as ``x`` (float32 for integer or bool ``x``)."""
        z = x.to(_compute_dtype(x)) / self.sigma
        return self._cdf(z).to(_result_dtype(x))

    def pdf(self, x: Tensor) -> Tensor:
        """Density of ε at ``x`` (the surrogate gradient); same shape and dtype as ``x`` (float32 for
        integer or bool ``x``)."""
        z = x.to(_compute_dtype(x)) / self.sigma
        return (self._pdf(z) / self.sigma).to(_result_dtype(x))

    def sample(
        self,
        shape: torch.Size | tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw i.i.d. noise of ``shape`` by inverse-CDF sampling (subclasses may override)."""
        dtype = dtype or torch.get_default_dtype()
        work = torch.float32 if dtype in _LOW_PRECISION else dtype
        return (self._standard_sample(shape, generator, device, work) * self.sigma).to(dtype)

    def _standard_sample(
        self,
        shape: torch.Size | tuple[int, ...],
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype,
    ) -> Tensor:
        """Unit-scale samples; inverse-CDF of uniforms unless a family knows a faster way."""
        u = draw(torch.rand, shape, generator, device=device, dtype=dtype)
        return self._icdf(u.clamp_(torch.finfo(dtype).tiny, 1.0 - torch.finfo(dtype).eps))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma:g})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.sigma == other.sigma  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.sigma))


class Gaussian(Noise):
    """Normal noise N(0, σ²): Bernoulli(Φ((u − θ)/σ)) firing, Gaussian-bump surrogate."""

    name = "gaussian"

    @staticmethod
    def _cdf(z: Tensor) -> Tensor:
        return 0.5 * torch.erfc(z * -math.sqrt(0.5))

    @staticmethod
    def _pdf(z: Tensor) -> Tensor:
        return torch.exp(-0.5 * z * z) * (1.0 / math.sqrt(2.0 * math.pi))

    @staticmethod
    def _icdf(p: Tensor) -> Tensor:
        return torch.special.ndtri(p)

    def _standard_sample(
        self,
        shape: torch.Size | tuple[int, ...],
        generator: torch.Generator | None,
        device: torch.device | str | None,
        dtype: torch.dtype,
    ) -> Tensor:
        return draw(torch.randn, shape, generator, device=device, dtype=dtype)


class Logistic(Noise):
    """Logistic noise with scale σ (std σπ/√3): sigmoid firing, sigmoid-derivative surrogate.

    The PDF is computed as sigmoid(z)·sigmoid(−z), which never overflows (the reference's
    exp(−z)/(1 + exp(−z))² turns into NaN for very negative z).
    """

    name = "logistic"

    @staticmethod
    def _cdf(z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    @staticmethod
    def _pdf(z: Tensor) -> Tensor:
        return torch.sigmoid(z) * torch.sigmoid(-z)

    @staticmethod
    def _icdf(p: Tensor) -> Tensor:
        return torch.logit(p)


class Triangular(Noise):
    """Symmetric triangular noise on [−σ, σ]: piecewise-quadratic firing, triangle surrogate."""

    name = "triangular"

    @staticmethod
    def _cdf(z: Tensor) -> Tensor:
        zc = z.clamp(-1.0, 1.0)
        return torch.where(zc < 0, 0.5 * (1.0 + zc) ** 2, 1.0 - 0.5 * (1.0 - zc) ** 2)

    @staticmethod
    def _pdf(z: Tensor) -> Tensor:
        return (1.0 - z.abs()).clamp_min(0.0)

    @staticmethod
    def _icdf(p: Tensor) -> Tensor:
        return torch.where(p < 0.5, torch.sqrt(2.0 * p) - 1.0, 1.0 - torch.sqrt(2.0 * (1.0 - p)))


class Uniform(Noise):
    """Uniform noise on [−σ, σ]: linear-ramp firing, rectangular surrogate of height 1/(2σ)."""

    name = "uniform"

    @staticmethod
    def _cdf(z: Tensor) -> Tensor:
        return ((z + 1.0) * 0.5).clamp(0.0, 1.0)

    @staticmethod
    def _pdf(z: Tensor) -> Tensor:
        return (z.abs() <= 1.0).to(z.dtype) * 0.5

    @staticmethod
    def _icdf(p: Tensor) -> Tensor:
        return 2.0 * p - 1.0


def list_noises() -> list[str]:
    """Names of the registered noise families."""
    return sorted(NOISES)


def get_noise(name: str | Noise | type[Noise], sigma: float = 0.3) -> Noise:
    """Build a noise family by name (``"gaussian"``, ``"logistic"``, ``"triangular"``, ``"uniform"``) or
    class (``Gaussian``) at scale ``sigma``.

    A :class:`Noise` instance is returned unchanged. Unknown names and σ ≤ 0 or non-finite raise
    ``ValueError`` listing the valid choices.
    """
    if isinstance(name, Noise):
        return name
    if isinstance(name, type) and issubclass(name, Noise) and not inspect.isabstract(name):
        family, key = name, name.name
    else:
        key = str(name).lower()
        if key not in NOISES:
            raise ValueError(
                f"unknown noise {name!r}; valid choices: {', '.join(list_noises())}{OWN_NOISE_HINT}"
            )
        family = NOISES[key]
    try:
        return family(sigma)
    except ValueError as e:
        raise ValueError(f"{e} (noise {key!r}; valid noises: {', '.join(list_noises())})") from None
