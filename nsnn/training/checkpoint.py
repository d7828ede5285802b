"""The one checkpoint format of every nsnn BPTT script, RNG state capture, and model rebuilding.

A checkpoint is a dict of tensors, dicts, lists, numbers and strings only, so it loads with
``torch.load(weights_only=True)`` (:func:`nsnn.io.load_torch`), and is written atomically::

    {"format": "nsnn-checkpoint-1", "model_name": "mnist_convnet", "model_kwargs": {...},
     "model": state_dict (no "module." prefix), "neurons": {name: neuron.settings()}, "optimizer": ...,
     "scheduler": ..., "scaler": ...,
     "rng": [per-rank RNG state], "loader": {"seed", "next_epoch", "world_size"},
     "epoch": completed epochs, "config": TrainConfig as a dict, "metrics": {...},
     "dataset": {...}, "versions": {...}, "compression": {layer: {"mask", "bits", "levels"}} (pruned or
     quantized layers only; :func:`nsnn.compress.compression_state`)}

``rng`` holds, per process, torch's CPU state, every CUDA device's state, numpy's and Python's
global states: what NILIF's noise and Poisson encoding draw from. The loader's order and
augmentation streams are pure functions of ``(seed, epoch, rank)`` (:class:`nsnn.data.TensorLoader`),
so ``loader`` records exactly those. Together they make ``--resume`` bit-exact. Rebuild a trained
network anywhere with::

    model, ckpt = load_model("runs/mnist-...")        # the run's best.pt, on the CPU, eval mode

and save it again, e.g. compressed, with everything else of its checkpoint (the masks and bits too,
so it tests, resumes and draws as compressed)::

    magnitude_prune(model, sparsity=0.8, scope="global"); quantize(model, bits=4)
    save_model(model, ckpt, "runs/mnist-p80-b4/best.pt")
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nsnn.compress import compression_state, restore_compression
from nsnn.io import TorchFileError, atomic_save_torch, load_torch
from nsnn.layers import set_eval_mode
from nsnn.training.config import ConfigError

FORMAT = "nsnn-checkpoint-1"


class CheckpointError(ConfigError):
    """A file given as a checkpoint is not an nsnn checkpoint (a flag such as ``--snapshot`` or
    ``--resume`` names the wrong file); a :class:`ConfigError`, so the CLIs report it as a bad flag."""


def capture_rng() -> dict[str, Any]:
    """This process's global RNG states as weights_only-loadable values (tensors, ints, floats)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored when as many devices are visible)."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))


def model_identity(model: nn.Module) -> tuple[str, dict[str, Any]]:
    """``(name, kwargs)`` recorded by :func:`nsnn.models.create` on ``model.config``."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config or "kwargs" not in config:
        raise ValueError(
            "model has no .config {'name', 'kwargs'}: build it with nsnn.models.create so checkpoints "
            "can rebuild it"
        )
    return config["name"], dict(config["kwargs"])


def make_checkpoint(model: nn.Module, *, epoch: int, config: dict[str, Any], **parts: Any) -> dict[str, Any]:
    """A checkpoint dict for an *unwrapped* model; ``parts``: optimizer, scheduler, scaler, rng, ... .

    Raises ValueError if a state_dict key carries a ``module.``/``_orig_mod.`` prefix (pass the
    model through :func:`nsnn.training.runtime.unwrap_model` first).
    """
    name, kwargs = model_identity(model)
    state = model.state_dict()
    wrapped = [k for k in state if k.startswith(("module.", "_orig_mod."))]
    if wrapped:
        raise ValueError(
            f"state_dict keys carry a wrapper prefix (e.g. {wrapped[0]!r}); unwrap the model first"
        )
    from nsnn import __version__

    return {
        "format": FORMAT,
        "model_name": name,
        "model_kwargs": kwargs,
        "model": state,
        "neurons": neuron_settings(model),
        "compression": compression_state(model),
        "epoch": int(epoch),
        "config": dict(config),
        "versions": {"nsnn": __version__, "torch": str(torch.__version__)},
        **parts,
    }


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write ``ckpt`` atomically (temp file + fsync + rename)."""
    return atomic_save_torch(ckpt, path)


def save_model(model: nn.Module, ckpt: dict[str, Any], path: str | Path) -> Path:
    """Save ``model`` (an unwrapped network, e.g. compressed after :func:`load_model`) as a checkpoint
    holding ``ckpt``'s other entries (config, epoch, dataset record, optimizer, ...) with its weights,
    neuron settings, masks and bits replaced by the model's; atomically. Returns the path.

    A model that differs from what :func:`load_model` makes of ``ckpt`` (pruned, quantized, its neurons'
    σ, θ, τ or eval_mode set, otherwise changed) has not been validated: its checkpoint names no best
    epoch (``best_val_accuracy`` None, ``best_epoch`` 0), so ``--resume`` (fine-tuning, for a checkpoint
    with epochs left to train) makes its first finished epoch ``best.pt`` and reports that model's own
    best epoch, not the validation accuracy of the model it was made from; a checkpoint with no epoch
    left is tested, not resumed."""
    fresh = make_checkpoint(model, epoch=ckpt["epoch"], config=ckpt["config"])
    saved = {**ckpt, **fresh}
    loaded = _rebuild(ckpt)  # what ckpt stands for (neurons with no saved settings: their constructor's)
    same = (
        _equal_nests(fresh["model"], loaded.state_dict())
        and fresh["neurons"] == neuron_settings(loaded)
        and _equal_nests(fresh["compression"], compression_state(loaded))
    )
    if not same:
        saved["metrics"] = {**(ckpt.get("metrics") or {}), "best_val_accuracy": None, "best_epoch": 0}
    return save_checkpoint(saved, path)


def _equal_nests(a: Any, b: Any) -> bool:
    """Whether two nests of dicts, tensors and plain values are equal (tensors: dtype, shape and values,
    wherever they are stored)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal_nests(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a.cpu(), b.cpu())
        )
    return a == b


def resolve_checkpoint(path: str | Path, default_name: str = "best.pt") -> Path:
    """``path`` itself if it is a file, else ``path/default_name`` (a run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path} (pass a .pt file or a run directory holding {default_name})"
        )
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint (a file, or a run directory meaning its ``best.pt``).

    Always loads with ``weights_only=True``. Raises ``FileNotFoundError`` if there is no such file,
    :class:`CheckpointError` naming the file if it is not an nsnn checkpoint (another file type, a
    truncated or corrupt save, or a torch file holding something else).
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = load_torch(path, map_location=map_location)
    except TorchFileError as e:
        raise CheckpointError(
            f"{path} is not an nsnn checkpoint: not a torch file of tensors and plain data ({e.reason}); "
            "pass a best.pt / last.pt written by nsnn.training, or its run directory"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(
                f"{path} is not an nsnn checkpoint: it holds a state_dict (tensors by name) without the "
                "model's configuration; load it into the model it came from (model.load_state_dict) and "
                "pass that model instead"
            )
        found = f"format {ckpt.get('format')!r}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"{path} is not an nsnn checkpoint: it holds {found}, not a dict with format {FORMAT!r}"
        )
    return ckpt


def load_model(
    path_or_run_dir: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its weights; returns ``(model in eval mode, ckpt)``.

    A run directory means its ``best.pt``. The model is built with
    ``nsnn.models.create(ckpt["model_name"], **ckpt["model_kwargs"])`` and moved to ``map_location``;
    its spiking neurons get their saved settings (σ, θ, τ, ...; a checkpoint saved before neurons kept
    them leaves the constructor's), then the run's ``eval_mode`` (the one its validation and test used), and a
    compressed model gets its masks and bits back; the caller's random state is left as it was.
    :class:`CheckpointError` if the recorded
    ``model_name``/``model_kwargs`` do not build a network its weights fit, or name a noise family not
    registered in this process (a family of your own: import its definition before calling this).

        model, ckpt = load_model("runs/mnist-mnist_convnet-20250101-120000")
        logits = model(encode(x, ckpt["config"]["timestep"]))
    """
    from nsnn.noise import NOISES, OWN_NOISE_HINT, list_noises

    path = resolve_checkpoint(path_or_run_dir)
    ckpt = load_checkpoint(path, map_location=map_location)
    kwargs = ckpt["model_kwargs"]
    noise = kwargs.get("noise") if isinstance(kwargs, dict) else None
    if isinstance(noise, str) and noise.lower() not in NOISES:
        raise CheckpointError(
            f"{path}: the run used the noise family {noise!r}, which is not registered in this process "
            f"(registered: {', '.join(list_noises())}){OWN_NOISE_HINT}"
        )
    try:
        model = _rebuild(ckpt)
    except (TypeError, ValueError, RuntimeError) as e:  # unknown keywords, weights of other shapes
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        shown = " ".join(lines[:3]) + (f" ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
        raise CheckpointError(
            f"{path}: cannot rebuild its {ckpt['model_name']!r} network from the model_kwargs it records "
            f"({ckpt['model_kwargs']}): {shown}"
        ) from None
    return model.to(map_location).eval(), ckpt


def _rebuild(ckpt: dict[str, Any]) -> nn.Module:
    """``ckpt``'s network with its weights, neuron settings, masks and bits, its neurons in the run's
    ``eval_mode``; the caller's random state is left as it was."""
    from nsnn.models import create

    with torch.random.fork_rng(devices=[]):  # the initial weights, overwritten: not from the caller's RNG
        model = create(ckpt["model_name"], **ckpt["model_kwargs"])
    restore_model(model, ckpt)
    mode = (ckpt.get("config") or {}).get("eval_mode")
    if mode is not None:
        set_eval_mode(model, mode)
    return model


def neuron_settings(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every spiking neuron's :meth:`~nsnn.neurons.SpikingNeuron.settings`, by module name."""
    from nsnn.neurons import SpikingNeuron

    return {name: m.settings() for name, m in model.named_modules() if isinstance(m, SpikingNeuron)}


def restore_model(model: nn.Module, ckpt: dict[str, Any]) -> None:
    """Load ``ckpt``'s weights, neuron settings (a checkpoint written before they were saved leaves the
    constructor's) and compression masks and bits into ``model``, a network of ``ckpt``'s structure."""
    model.load_state_dict(ckpt["model"])
    for name, settings in (ckpt.get("neurons") or {}).items():
        model.get_submodule(name).load_settings(settings)
    restore_compression(model, ckpt.get("compression") or {})
