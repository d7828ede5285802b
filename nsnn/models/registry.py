"""Model registry: build any zoo network by name, and rebuild it later from its recorded config.

A factory registered with ``@register_model`` takes ``neuron: NeuronSpec`` plus keyword-only
architecture arguments (``num_classes``, ``in_channels``, ``image_size``, ...). :func:`create` splits
the neuron keywords (``neuron``, ``noise``, ``sigma``, ``tau``, ``threshold``, ``reset``,
``detach_reset``) from the rest, validates both, and stores every constructor argument, defaults
included, as ``model.config = {"name": ..., "kwargs": {...}}`` (JSON-able), so that
``create(cfg["name"], **cfg["kwargs"])`` rebuilds the same network::

    net = create("spiking_resnet19", num_classes=100, neuron="NILIF", sigma=0.3)
    twin = create(net.config["name"], **net.config["kwargs"])
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
from collections.abc import Callable
from typing import Any

from torch import nn

from nsnn.models.common import NEURON_KWARGS, NeuronSpec

ModelFactory = Callable[..., nn.Module]

#: Architecture keywords every model takes: positive integers (``image_size`` also an [H, W] pair).
_COUNT_KWARGS = ("num_classes", "in_channels", "image_size")

#: Neuron keywords of :func:`create` that take a real number (stored as a float).
_REAL_NEURON_KWARGS = ("sigma", "tau", "threshold")

_MODELS: dict[str, ModelFactory] = {}


OWN_MODEL_HINT = (
    " (a network of your own: register its factory with @nsnn.models.register_model, and import that "
    "definition before building, training or loading it by name)"
)


def _origin(factory: ModelFactory) -> str:
    return f"{factory.__module__}.{factory.__qualname__}"


def register_model(factory: ModelFactory) -> ModelFactory:
    """Decorator: register ``factory`` under its function name.

    The factory's first parameter must be ``neuron`` (a :class:`NeuronSpec`); all others keyword-only.
    A name taken by another factory is a ValueError; the same definition run again (a re-run notebook
    cell: same module and qualified name) replaces the old one.
    """
    name = factory.__name__
    taken = _MODELS.get(name)
    if taken is not None and _origin(taken) != _origin(factory):
        raise ValueError(f"model {name!r} is already registered (by {_origin(taken)})")
    params = list(inspect.signature(factory).parameters.values())
    if not params or params[0].name != "neuron" or any(p.kind is not p.KEYWORD_ONLY for p in params[1:]):
        raise ValueError(f"factory {name!r} must have the signature (neuron, *, arch_kwargs...)")
    _MODELS[name] = factory
    return factory


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_MODELS)


def arch_kwargs(name: str) -> dict[str, Any]:
    """The architecture keywords of model ``name`` and their defaults (neuron keywords excluded); a
    keyword without a default (which :func:`create` then requires) maps to ``inspect.Parameter.empty``.
    Training's ``--arch`` takes these less ``num_classes``, ``in_channels`` and ``image_size`` (the
    dataset sets them)."""
    factory = _get(name)
    params = list(inspect.signature(factory).parameters.values())[1:]
    return {p.name: p.default for p in params}


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build zoo model ``name``: input ``[T, B, C, H, W]`` (encoded), output logits ``[T, B, classes]``.

    Keywords: the model's architecture arguments (see :func:`arch_kwargs`; every model takes
    ``num_classes``, ``in_channels`` and ``image_size``, with per-model defaults, e.g. 1×28×28 for the
    MNIST nets) and the neuron arguments of :class:`NeuronSpec` (``neuron="NILIF"|"LIF"|"PLIF"|"NIPLIF"``,
    ``noise``, ``sigma``, ``tau``, ``threshold``, ``reset``, ``detach_reset``), applied to every
    spiking layer. Unknown names or keywords raise ValueError listing the valid ones, and so do
    keywords of the wrong type: ``sigma``, ``tau`` and ``threshold`` must be finite real numbers (ints
    and numpy floats included; recorded as floats), ``num_classes``, ``in_channels`` and ``image_size``
    positive integers, other architecture keywords with an integer default integers (numpy integers
    included; recorded as ints; the factory checks their range), ``detach_reset`` and boolean
    architecture keywords ``True`` or ``False``.

        net = create("vgg11", num_classes=10, image_size=32, neuron="LIF")
        logits = net(encode(images, T=4))                     # [4, B, 10]
    """
    arch = arch_kwargs(name)
    unknown = sorted(set(kwargs) - set(arch) - set(NEURON_KWARGS))
    if unknown:
        raise ValueError(
            f"unknown keyword(s) {unknown} for model {name!r}; valid: architecture {sorted(arch)}, "
            f"neuron {list(NEURON_KWARGS)}"
        )
    neuron_kw = {k: kwargs[k] for k in NEURON_KWARGS if k in kwargs}
    if "neuron" in neuron_kw:
        neuron_kw["kind"] = neuron_kw.pop("neuron")
    _check_neuron_kwargs(name, neuron_kw)
    spec = NeuronSpec(**neuron_kw)
    for key, value in kwargs.items():
        default = arch.get(key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{key} of model {name!r} must be true or false, got {value!r}")
        if key in _COUNT_KWARGS and not _is_count(value):
            sizes = key == "image_size" and isinstance(value, (list, tuple)) and len(value) == 2
            if not (sizes and all(_is_count(v) for v in value)):
                pair = " (or an [H, W] pair of them)" if key == "image_size" else ""
                raise ValueError(f"{key} of model {name!r} must be a positive integer{pair}, got {value!r}")
            kwargs[key] = [int(v) for v in value]  # numpy integers as ints
        elif _is_integer(default):
            if not _is_integer(value):
                raise ValueError(
                    f"{key} of model {name!r} must be an integer like its default {default!r}, got "
                    f"{value!r} (a factory that takes fractions declares a float default, e.g. 1.0)"
                )
            kwargs[key] = int(value)  # numpy integers as ints
    arch.update({k: v for k, v in kwargs.items() if k in arch})
    missing = [k for k, v in arch.items() if v is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"model {name!r} needs the keyword(s) {missing}, which have no default")
    try:
        config = json.loads(json.dumps({"name": name, "kwargs": {**arch, **spec.as_kwargs()}}))
    except TypeError as err:
        raise ValueError(f"model keywords must be JSON-able (numbers, strings, lists): {err}") from err
    model = _MODELS[name](spec, **arch)
    model.config = config
    return model


def _check_neuron_kwargs(name: str, neuron_kw: dict[str, Any]) -> None:
    """ValueError unless ``detach_reset`` is a bool and ``sigma``, ``tau``, ``threshold`` are finite real
    numbers (not bools); those numbers are replaced by floats in ``neuron_kw``."""
    detach = neuron_kw.get("detach_reset", False)
    if not isinstance(detach, bool):
        raise ValueError(f"detach_reset of model {name!r} must be true or false, got {detach!r}")
    for key in _REAL_NEURON_KWARGS:
        if key not in neuron_kw:
            continue
        value = neuron_kw[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{key} of model {name!r} must be a finite real number, got {value!r}")
        neuron_kw[key] = float(value)


def _is_integer(value: Any) -> bool:
    """A Python int or a numpy integer, never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_count(value: Any) -> bool:
    """A positive integer (:func:`_is_integer`)."""
    return _is_integer(value) and value >= 1


def _get(name: str) -> ModelFactory:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}{OWN_MODEL_HINT}")
    return _MODELS[name]
