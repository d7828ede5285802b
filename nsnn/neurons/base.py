"""Shared machinery of every nsnn neuron: validation, step modes, state, functional stepping.

Convention (all neurons): time-first multi-step input ``[T, B, ...]``; each multi-step call starts
from rest (u = 0). Leak ``h = (1 − 1/τ)·u + x`` (τ ≥ 1; τ = 2 gives the reference's 0.5), threshold θ,
reset ``"hard"`` (u ← h·(1 − s)) or ``"soft"`` (u ← h − θ·s), optional ``detach_reset``.

``step_mode="m"`` runs the fused multi-step kernel; ``step_mode="s"`` takes one ``[B, ...]`` step
per call and keeps the membrane in ``self.mem`` until :meth:`reset` (or :func:`nsnn.reset_net`).
:meth:`step` is the snntorch-style functional form, ``spk, mem = neuron.step(x_t, mem)``; its ``mem`` is
the state after the reset (snntorch returns the pre-reset ``h``), the same spikes either way.

The settings a neuron may be given after construction (τ, θ, reset rule, ``detach_reset``, ``eval_mode``,
the noise family and σ; NILIF's ``double_noise``) are :meth:`SpikingNeuron.settings`, plain values that
:meth:`SpikingNeuron.load_settings` applies; nsnn checkpoints keep them beside the ``state_dict``, which
holds tensors only, as PyTorch code expects. ``step_mode`` is how a network is run, as
``train()``/``eval()``, and is not a setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor, nn

from nsnn.functional import RESETS, LIFParameters, lif_multistep, lif_step
from nsnn.noise import NOISES, Noise, get_noise

__all__ = ["EVAL_MODES", "STEP_MODES", "SpikingNeuron"]

STEP_MODES = ("m", "s")
EVAL_MODES = {"stochastic": "bernoulli", "deterministic": "heaviside", "expected": "expected"}


def _choice(name: str, value: str, choices: tuple[str, ...] | dict[str, str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _number(name: str, value: Any, rule: str) -> float:
    if isinstance(value, bool | np.bool_):  # float(True) = 1.0: a flag passed by mistake
        raise ValueError(f"{name} must be {rule}; got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {rule}; got {value!r}") from None


def _tau(name: str, value: Any) -> float:
    rule = "a finite number >= 1 (retention 1 - 1/tau in [0, 1))"
    tau = _number(name, value, rule)
    if not math.isfinite(tau) or tau < 1.0:
        raise ValueError(f"{name} must be {rule}; got {tau}")
    return tau


def _threshold(name: str, value: Any) -> float:
    threshold = _number(name, value, "a finite number > 0")
    if not math.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {threshold}")
    return threshold


class _Checked:
    """An attribute validated on every assignment: ``check(name, value)`` returns what is stored or
    raises ValueError."""

    def __init__(self, check: Callable[[str, Any], Any]) -> None:
        self.check = check

    def __set_name__(self, owner: type, name: str) -> None:
        self.name, self.slot = name, f"_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj, self.slot, self.check(self.name, value))


def _choices(choices: tuple[str, ...] | dict[str, str]) -> _Checked:
    return _Checked(lambda name, value: _choice(name, value, choices))


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


class SpikingNeuron(nn.Module):
    """Base class of LIF-type neurons; subclasses define :attr:`noise`, :attr:`decay` and firing.

    Args:
        tau: membrane time constant in steps (≥ 1); retention per step β = 1 − 1/τ.
        threshold: firing threshold θ (finite, > 0).
        reset: ``"hard"`` or ``"soft"``.
        detach_reset: stop gradients through the reset term.
        step_mode: ``"m"`` (``[T, B, ...]`` per call) or ``"s"`` (``[B, ...]`` per call, stateful).
        stochastic: whether firing is Bernoulli(noise.cdf(h − θ)) in training.
        eval_mode: for stochastic neurons, firing outside training: ``"stochastic"``,
            ``"deterministic"`` (H(h − θ)) or ``"expected"`` (noise.cdf(h − θ)).
    """

    noise: Noise
    saved_settings: tuple[str, ...] = ("tau", "threshold", "reset_mode", "detach_reset", "eval_mode")
    """Attributes :meth:`settings` returns (with the noise family and σ)."""
    tau = _Checked(_tau)
    threshold = _Checked(_threshold)
    reset_mode = _choices(RESETS)
    detach_reset = _Checked(_flag)
    step_mode = _choices(STEP_MODES)
    eval_mode = _choices(EVAL_MODES)

    def __init__(
        self,
        tau: float = 2.0,
        threshold: float = 1.0,
        reset: str = "hard",
        detach_reset: bool = False,
        step_mode: str = "m",
        stochastic: bool = False,
        eval_mode: str = "stochastic",
    ) -> None:
        super().__init__()
        self.tau = tau
        self.threshold = threshold
        self.reset_mode = _choice("reset", reset, RESETS)
        self.detach_reset = detach_reset
        self.step_mode = step_mode
        self.stochastic = bool(stochastic)
        self.eval_mode = eval_mode
        self.mem: Tensor | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module files a Parameter away from the validated attributes and properties (PLIF's tau),
        # where it would be ignored.
        setting = getattr(type(self), name, None)
        if name == "reset" and not callable(value):
            raise AttributeError(
                f"reset() is the method that forgets the single-step state; the reset rule is "
                f"reset_mode (e.g. neuron.reset_mode = {value!r})"
            )
        if isinstance(value, nn.Parameter) and isinstance(setting, _Checked | property):
            raise ValueError(f"{name} is a fixed setting, not a learnable parameter (PLIF learns the leak)")
        super().__setattr__(name, value)

    @property
    def sigma(self) -> float:
        """Scale of :attr:`noise` (the firing noise, or the surrogate of deterministic neurons). Assigning
        one gives this neuron a new noise object of the same family at that scale (e.g. to anneal it)."""
        return self.noise.sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self.noise = type(self.noise)(value)

    @property
    def decay(self) -> float | Tensor:
        """Membrane retention per step, β = 1 − 1/τ."""
        return 1.0 - 1.0 / self.tau

    @property
    def fire_mode(self) -> str:
        """The :data:`nsnn.functional.FIRE_MODES` entry in force now (depends on train/eval)."""
        if not self.stochastic:
            return "heaviside"
        return "bernoulli" if self.training else EVAL_MODES[self.eval_mode]

    def parameters_tuple(self) -> LIFParameters:
        return LIFParameters(self.decay, self.threshold, self.reset_mode == "hard", self.detach_reset)

    def _drive(self, x: Tensor) -> Tensor:
        """Input current actually integrated (subclasses may perturb it)."""
        return x

    def _check_floating(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__} expects a torch.Tensor input, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{type(self).__name__} expects a floating-point input, got {x.dtype}")

    def forward(self, x: Tensor) -> Tensor:
        """Mode ``"m"``: ``[T, B, ...]`` → spikes ``[T, B, ...]``; mode ``"s"``: ``[B, ...]`` → same."""
        self._check_floating(x)
        if self.step_mode == "m":
            if x.dim() < 2:
                raise ValueError(
                    f"{type(self).__name__} (step_mode='m') expects [T, B, ...] with rank >= 2; "
                    f"got shape {tuple(x.shape)}"
                )
            return lif_multistep(self._drive(x), self.parameters_tuple(), self.noise, self.fire_mode)
        if self.mem is not None and self.mem.shape != x.shape:
            raise ValueError(
                f"input shape {tuple(x.shape)} differs from the stored membrane {tuple(self.mem.shape)}; "
                "call reset() (or nsnn.reset_net(model)) between sequences"
            )
        spk, self.mem = self.step(x, self.mem)
        return spk

    def step(self, x_t: Tensor, mem: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One step, functional: ``spk, mem = neuron.step(x_t, mem)`` (``mem=None``: from rest).

        ``mem`` is the membrane after the reset, u_t (what the next step decays), not snntorch's
        pre-reset h_t = β·u_{t−1} + x_t.
        """
        self._check_floating(x_t)
        if mem is not None and not isinstance(mem, Tensor):
            raise TypeError(f"mem must be a torch.Tensor or None, got {type(mem).__name__}")
        if mem is not None and mem.shape != x_t.shape:
            raise ValueError(
                f"mem has shape {tuple(mem.shape)} but x_t has {tuple(x_t.shape)}: pass the membrane "
                "the previous step returned (or None to start from rest)"
            )
        return lif_step(self._drive(x_t), mem, self.parameters_tuple(), self.noise, self.fire_mode)

    def reset(self) -> None:
        """Forget the single-step membrane state."""
        self.mem = None

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> SpikingNeuron:
        # .to(), .cuda(), .double(), .half() ... move or cast the single-step membrane with the
        # parameters, as they would a buffer (it is no buffer: it is not saved in the state_dict).
        super()._apply(fn, recurse)
        if self.mem is not None:
            self.mem = fn(self.mem)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # deepcopy/pickle keep the single-step membrane's value, not its autograd graph.
        state = dict(super().__getstate__())
        if state.get("mem") is not None:
            state["mem"] = state["mem"].detach()
        return state

    def settings(self) -> dict[str, Any]:
        """:attr:`saved_settings`, the noise family's registry name (None for a family that is not the one
        registered under its name) and class, and σ: plain Python values (``torch.load(weights_only=True)``
        reads them back), which :meth:`load_settings` applies::

            saved = neuron.settings()
            other.load_settings(saved)
        """
        family = type(self.noise)
        key = family.name.lower()
        state: dict[str, Any] = {name: getattr(self, name) for name in self.saved_settings}
        state["noise"] = key if NOISES.get(key) is family else None
        state["noise_class"] = family.__qualname__
        state["sigma"] = self.sigma
        return state

    def load_settings(self, state: Any) -> None:
        """Apply what :meth:`settings` returned (nsnn checkpoints call it); entries it lacks keep
        this neuron's value. The noise family is looked up by name in :data:`nsnn.noise.NOISES` (so a custom
        family's module must be imported first); ValueError if it is not there, or for an unknown entry."""
        if not isinstance(state, dict):
            raise ValueError(f"{type(self).__name__} settings must be a dict; got {type(state).__name__}")
        known = {*self.saved_settings, "noise", "noise_class", "sigma"}
        unknown = sorted(map(str, set(state) - known))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no setting {', '.join(map(repr, unknown))} (saved from another "
                f"kind of neuron?); its settings: {', '.join(sorted(known))}"
            )
        if "noise" in state or "sigma" in state:
            self.noise = self._saved_noise(state)
        for name in self.saved_settings:
            if name in state:
                setattr(self, name, state[name])

    def _saved_noise(self, state: dict[str, Any]) -> Noise:
        family = type(self.noise)
        sigma = state.get("sigma", self.sigma)
        if "noise" not in state:
            return family(sigma)
        key, qualname = state["noise"], state.get("noise_class", "")
        if key is None:
            if family.__qualname__ != qualname:
                raise ValueError(
                    f"the saved noise family {qualname} was not in the noise registry (nsnn.noise.NOISES) "
                    "when saved, so it cannot be restored by name: give it its own `name` (which registers "
                    f"it), or build the model with it before loading (this {type(self).__name__} has "
                    f"{family.__qualname__})"
                )
            return family(sigma)
        try:
            return get_noise(key, sigma)
        except ValueError as e:
            raise ValueError(
                f"cannot restore the saved noise family {qualname} ({key!r}): {e}; import the module that "
                "defines it before loading"
            ) from None

    def extra_repr(self) -> str:
        parts = [f"tau={self.tau:g}", f"threshold={self.threshold:g}", f"reset={self.reset_mode!r}"]
        if self.detach_reset:
            parts.append("detach_reset=True")
        parts.append(f"{'noise' if self.stochastic else 'surrogate'}={self.noise!r}")
        if self.stochastic:
            parts.append(f"eval_mode={self.eval_mode!r}")
        parts.append(f"step_mode={self.step_mode!r}")
        return ", ".join(parts)
