"""Evaluation-time perturbations: the extension point for robustness studies.

:func:`nsnn.training.evaluate` accepts one :class:`Perturbation`. A perturbation may change the input
batch (:meth:`Perturbation.perturb_input`, e.g. additive noise, EventDrop or an adversarial attack;
it gets a ``forward`` callable so attacks can differentiate through the SNN) and/or the model while
it runs (:meth:`Perturbation.patch`, e.g. forward hooks flipping spikes or perturbing membranes).
Subclasses register themselves by ``name``; :data:`PERTURBATIONS` maps names to classes::

    class AddGaussian(Perturbation):
        name = "add_gaussian"
        def perturb_input(self, x, y, forward):
            return x + self.strength * torch.randn_like(x)

    acc = evaluate(model, loader, timestep=4, perturbation=get_perturbation("add_gaussian", 0.1))

The base class is the clean evaluation (``"clean"``, identity).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

PERTURBATIONS: dict[str, type[Perturbation]] = {}


class Perturbation:
    """Identity perturbation; subclasses override one or both hooks and set a unique ``name``.

    Args:
        strength: the perturbation's magnitude (its meaning is the subclass's; ≥ 0, finite).
    """

    name: ClassVar[str] = "clean"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            raise ValueError(f"perturbation class {cls.__qualname__} must set its own name = '...'")
        known = PERTURBATIONS.get(cls.name)
        # Re-running the same class definition (a notebook cell) replaces it; another class may not.
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"perturbation {cls.name!r} is already registered by {known.__qualname__}")
        PERTURBATIONS[cls.name] = cls

    def __init__(self, strength: float = 0.0) -> None:
        number = isinstance(strength, numbers.Real) and not isinstance(strength, bool)
        if not (number and math.isfinite(strength) and strength >= 0):
            raise ValueError(f"perturbation strength must be a finite number >= 0, got {strength!r}")
        if type(self) is Perturbation and strength != 0:  # it would be recorded, yet change nothing
            others = [n for n in list_perturbations() if n != Perturbation.name]
            choice = (
                f"choose a perturbation: {others}"
                if others
                else "none is registered yet (subclass nsnn.training.perturbations.Perturbation)"
            )
            raise ValueError(f"the clean evaluation takes no strength (got {strength:g}); {choice}")
        self.strength = float(strength)

    def perturb_input(self, x: Tensor, y: Tensor, forward: Callable[[Tensor], Tensor]) -> Tensor:
        """The batch to evaluate instead of ``x`` (``[B, ...]`` as the loader yields it, labels ``y``).

        ``forward(x)`` returns logits ``[T, B, classes]`` (encoding included) with gradients enabled.
        """
        return x

    def patch(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """A context manager active while the (perturbed) batch runs through ``model``."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, strength={self.strength:g})"


PERTURBATIONS[Perturbation.name] = Perturbation


def list_perturbations() -> list[str]:
    """Registered perturbation names, sorted."""
    return sorted(PERTURBATIONS)


def get_perturbation(name: str, strength: float = 0.0) -> Perturbation:
    """An instance of the perturbation registered as ``name`` with the given ``strength``."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {list_perturbations()}")
    return PERTURBATIONS[name](strength)
