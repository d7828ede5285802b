"""Inputs for tracing a model, and the spikes its neuron layers emit on a batch.

* :func:`input_shape` finds a dummy ``[T, B, C, H, W]`` shape: from the checkpoint (``in_channels``,
  ``image_size``, ``timestep``) when there is one, else by probing the first conv/linear layer;
  :func:`trace_input_shape`, the one a topology traces, is a ``[B, C, H, W]`` batch for a plain ANN
  and for a model with single-step neurons that does not loop over its input's first axis;
* :func:`run_batch` gives a real batch: the given tensor, or a batch file (images of the run's
  static-image dataset are preprocessed as its test images, anything else is model input), else the
  run's own test data (same normalisation and encoding as training), else uniform noise — always with a
  description that the figures print, so noise is never mistaken for data; ``[T, B, ...]``, or
  ``[B, ...]`` for a model that takes no time axis (a plain ANN, one stepped once per call, one looping
  a static input itself);
* :func:`spike_activity` records, per neuron layer, the firing rate on the batch and a raster of
  sample 0 for a random subset of its neurons::

    batch = run_batch(load_source("runs/bptt-1"), batch_size=16)
    layers = spike_activity(model, batch.x)      # [LayerActivity(name, rate, raster [T, k]), ...]
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from nsnn.models import encode
from visualizer.modules import declared_step, flattens_time, is_neuron, is_single_step
from visualizer.sources import ModuleSource
from visualizer.trace import call_site, layer_graph, probing, run_model, single_step_neurons, to_model

if TYPE_CHECKING:
    from nsnn.data import DatasetBundle

DEFAULT_T = 4
_PROBE_SIZES = (32, 28, 64, 48, 128, 16, 8)
# What a caller may pass as a batch: a tensor or array used as is, or a .pt/.npy file (see run_batch).
BatchLike = torch.Tensor | np.ndarray | str | Path


@dataclass(frozen=True)
class Batch:
    """Model input ``x`` (``[T, B, ...]``, or ``[B, ...]`` for a model without a time axis) and a
    one-line description of where it came from."""

    x: torch.Tensor
    description: str


@dataclass(frozen=True)
class LayerActivity:
    """Spikes of one neuron layer: mean ``rate`` (spikes per neuron per step) over the whole batch,
    ``raster`` ``[T, k]`` of sample 0 for the neurons ``shown`` (indices into the flattened layer): the
    spike values, 0/1, or in ``eval_mode="expected"`` the firing probabilities in [0, 1]
    (``probabilities``: sample 0 of the layer holds a value other than 0 and 1, so ``rate`` is the mean
    firing probability, the expected spikes per neuron per step)."""

    name: str
    neuron_type: str
    neurons: int
    rate: float
    raster: np.ndarray
    shown: np.ndarray
    probabilities: bool = False


def _timestep(source: ModuleSource) -> int:
    return int(source.hint("timestep", "T", "time_steps") or DEFAULT_T)


def _first_weighted(model: nn.Module) -> nn.Module | None:
    return next(
        (m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)), None
    )


def _runs(model: nn.Module, shape: tuple[int, ...]) -> bool:
    try:
        with probing(model, 0):  # the caller's neuron state, flags and random stream left as they were
            model(to_model(torch.zeros(shape), model))
        return True
    except (RuntimeError, ValueError, IndexError, AssertionError):  # a forward's own shape assert too
        return False


def _image_hw(size: Any) -> tuple[int, int]:
    """``image_size`` as (H, W): an int, or an [H, W] pair."""
    if isinstance(size, list | tuple):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _hinted_shape(source: ModuleSource) -> tuple[int, ...] | None:
    """One sample's ``(C, H, W)`` from the checkpoint's ``in_channels`` and ``image_size``, if it has both."""
    channels, size = source.hint("in_channels"), source.hint("image_size")
    return (int(channels), *_image_hw(size)) if channels and size else None


def _probe_shapes(source: ModuleSource) -> list[tuple[int, ...]]:
    """Shapes of one sample (``(C, H, W)``, ``(F,)`` ...) to try, best first, from the first
    conv/linear layer."""
    first = _first_weighted(source.model)
    if first is None:
        raise ValueError(
            "cannot infer the input shape of a model without conv/linear layers; pass input_shape"
        )
    size = source.hint("image_size")
    candidates: list[tuple[int, ...]] = []
    if isinstance(first, nn.Linear):
        side = math.isqrt(first.in_features)
        if side * side == first.in_features:
            candidates.append((1, side, side))
        candidates.append((first.in_features,))
    else:
        spatial = first.weight.dim() - 2
        if size and spatial == 2:
            candidates.append((first.in_channels, *_image_hw(size)))
        else:
            candidates += [(first.in_channels, *([s] * spatial)) for s in _PROBE_SIZES]
    return candidates


def input_shape(source: ModuleSource, T: int | None = None, batch_size: int = 1) -> tuple[int, ...]:
    """A full input shape ``(T, B, C, H, W)`` (or ``(T, B, F)``) the model accepts (see module docstring)."""
    T = T or _timestep(source)
    hinted = _hinted_shape(source)
    if hinted is not None:
        return (T, batch_size, *hinted)
    candidates = _probe_shapes(source)
    for candidate in candidates:
        shape = (T, batch_size, *candidate)
        if _runs(source.model, shape):
            return shape
    raise ValueError(
        f"cannot infer the input shape of {type(source.model).__name__} (tried {candidates} "
        f"per [T, B] with T={T}); pass input_shape=(T, B, C, H, W)"
    )


def _takes_time_first(model: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether ``model`` runs on zeros of ``shape`` ``[T, B, ...]`` and reads its first axis as time: its
    layer graph's layout is "time-first", or "time-loop" (its single-step neurons ran T times at one
    place, and T - 1 times on T - 1 steps; not "per-step", where T would be folded into the batch, nor
    "step-loop", a static input presented at each of its own number of steps, T of them or not, whose
    layers took T for a batch axis)."""
    try:
        return layer_graph(model, input_shape=shape).graph["layout"] in ("time-first", "time-loop")
    except (ValueError, AssertionError):  # a shape the model refuses, or its forward's own shape assert
        return False


def _plain(model: nn.Module) -> bool:
    """A plain ANN: no neuron and no ``SeqToANN``, no time axis."""
    return not any(is_neuron(m) or flattens_time(m) for m in model.modules())


def _reads_sequences(model: nn.Module) -> bool:
    """Whether ``model`` takes ``[T, B, ...]`` without being probed: it has neurons and none of them
    steps once per call, or it has a ``SeqToANN`` and no neuron."""
    neurons = [m for m in model.modules() if is_neuron(m)]
    return not _plain(model) and not any(is_single_step(m) for m in neurons)


def _time_axis(model: nn.Module, sample: tuple[int, ...], T: int) -> bool | None:
    """Whether ``model`` takes samples of shape ``sample`` with a time axis first, ``[T, B, *sample]``
    (True), or without one, ``[B, *sample]`` (False); None when it runs on neither. A time axis: a model
    of multi-step neurons (or a ``SeqToANN``), or one whose single-step neurons run once per step of a
    ``[T, B, ...]`` probe (:func:`_takes_time_first`, T ≥ 2: a time loop calls its neurons T times,
    and T − 1 times on T − 1 steps; a static input's loop calls them its own number of times). No time
    axis: a plain ANN, a model stepped once per call, and one that presents a static input at each of its
    own number of steps."""
    if _reads_sequences(model):
        return True
    if not _plain(model) and _takes_time_first(model, (max(T, 2), 1, *sample)):
        return True
    return False if _runs(model, (1, *sample)) else None


def _probed_shape(source: ModuleSource, batch_size: int) -> tuple[tuple[int, ...], bool]:
    """A dummy input shape of ``batch_size`` samples the model accepts, and whether it has a time axis
    first (see :func:`trace_input_shape`)."""
    model = source.model
    if _reads_sequences(model):
        return input_shape(source, batch_size=batch_size), True
    T = _timestep(source)
    hinted = _hinted_shape(source)
    candidates = [hinted] if hinted is not None else _probe_shapes(source)
    for candidate in candidates:
        time = _time_axis(model, candidate, T)
        if time is not None:
            return ((T, batch_size, *candidate) if time else (batch_size, *candidate)), time
    if _plain(model):
        return input_shape(source, batch_size=batch_size), True
    raise ValueError(
        f"cannot infer the input shape of {type(model).__name__} (tried {candidates} per [T, B] with "
        f"T={T} and per step [B]); pass input_shape=(T, B, C, H, W) or (B, C, H, W)"
    )


def trace_input_shape(source: ModuleSource) -> tuple[int, ...]:
    """The dummy input :func:`visualizer.api.topology` traces when given none: :func:`input_shape`'s
    ``(T, B, ...)``, or a ``(B, ...)`` batch without a time axis for a plain ANN (no neuron, no
    ``SeqToANN``; ``(T, B, ...)`` when only that runs) and for a model with single-step neurons that
    does not loop over its input's first axis: one stepped once per call (each neuron called once on a
    ``[T, B, ...]`` input: T would be folded into the batch, or a ``[T, B, C, H, W]`` input is refused
    by its conv), or one that presents a static input at every step."""
    return _probed_shape(source, 1)[0]


def load_batch_file(path: str | Path) -> torch.Tensor:
    """A batch from ``.pt`` (a tensor, loaded weights-only) or ``.npy``, as stored (its dtype kept); an
    empty one (no sample, e.g. ``[0, 1, 28, 28]``) is refused."""
    from nsnn.io import TorchFileError, load_torch

    path = Path(path)
    if path.suffix not in {".npy", ".pt", ".pth"}:
        raise ValueError(f"unsupported batch file {path}: use .pt (a tensor) or .npy")
    if not path.is_file():
        raise FileNotFoundError(f"no such batch file: {path}")
    if path.suffix == ".npy":
        try:
            x = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable .npy array: {e}") from e
    else:
        try:
            x = load_torch(path)
        except TorchFileError as e:
            raise ValueError(
                f"{path} is not a readable .pt batch ({e.reason}): it must be a torch.save of one tensor"
            ) from None
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{path} must hold one tensor, found {type(x).__name__}")
    if not x.numel():
        raise ValueError(f"{path} holds an empty batch {list(x.shape)}: it needs at least one sample")
    return x


def _run_config(source: ModuleSource) -> dict[str, Any]:
    return (source.checkpoint or {}).get("config") or {}


def _event_frame_run(source: ModuleSource) -> bool:
    """Whether the checkpoint's run names a dataset of event frames (DVS), told by the dataset registry
    without loading the data."""
    from nsnn.data import holds_event_frames

    dataset = _run_config(source).get("dataset")
    return bool(dataset) and holds_event_frames(dataset)


def _run_dataset(source: ModuleSource) -> DatasetBundle:
    """The test split of the dataset the checkpoint's run names (``config["dataset"]``)."""
    from nsnn.data import get_dataset

    config = _run_config(source)
    return get_dataset(config["dataset"], config.get("data_dir"), test_only=True)


def _encoded(source: ModuleSource, bundle: DatasetBundle, images: torch.Tensor, described: str) -> Batch:
    """``images`` of the run's dataset (uint8 in [0, 255] or float in [0, 1], ``[B, C, H, W]``; event
    frames ``[B, T, C, H, W]``) as the run's model input: the test loader's normalisation and the run's
    encoding over T steps (Poisson spikes seeded: the same on every call, the caller's RNG kept); the
    first step ``[B, ...]`` for a model that takes no time axis."""
    from nsnn.data import ImageSet
    from nsnn.training import normalization, to_sequence

    encoding = _run_config(source).get("encoding", "direct")
    data = ImageSet(images, torch.zeros(len(images), dtype=torch.int64))
    x, _ = next(iter(bundle.loader(data, len(images), train=False, **normalization(encoding))))
    T = _timestep(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = to_sequence(x, T, encoding)
    described = f"{described}, {encoding} encoding"
    if _time_axis(source.model, tuple(x.shape[2:]), T) is False:
        return Batch(x[0], f"{described}, its first step [B, ...]: the model takes no time axis")
    return Batch(x, f"{described}, T={T}")


def _dataset_batch(source: ModuleSource, batch_size: int) -> Batch:
    bundle = _run_dataset(source)
    images = bundle.test.images[:batch_size]  # maybe fewer than asked
    return _encoded(source, bundle, images, f"{len(images)} {bundle.name} test images")


def _as_images(x: torch.Tensor, sample: tuple[int, ...]) -> torch.Tensor | None:
    """``x`` as images ``[B, C, H, W]`` of ``sample`` ``(C, H, W)`` when it holds such images:
    ``[B, C, H, W]``, ``[B, H, W]`` (one channel) or flattened ``[B, C·H·W]``; else None."""
    channels, height, width = sample
    layouts = {(channels, height, width), (channels * height * width,)}
    if channels == 1:
        layouts.add((height, width))
    if x.dim() < 2 or tuple(x.shape[1:]) not in layouts:
        return None
    return x.reshape(len(x), channels, height, width)


def _file_dataset(source: ModuleSource, name: str) -> DatasetBundle:
    """The run's test split, to preprocess the image file ``name`` as its test images; a ValueError
    naming ``--batch-raw`` when it cannot be loaded."""
    try:
        return _run_dataset(source)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(
            f"{name} may hold images of the run's dataset, which is unavailable ({e}): its normalisation "
            "and encoding cannot be applied; pass --batch-raw (batch_raw=True) to use the file as model "
            "input as stored"
        ) from e


def _file_images(source: ModuleSource, x: torch.Tensor, name: str) -> Batch | None:
    """The batch file ``x`` preprocessed as the run's test images when it holds images of the dataset
    the checkpoint names (static images, uint8 or float, see :func:`_as_images`); else None, as for
    every file of a run on event frames (DVS), which are model input. A uint8 file of such images
    holding only 0 and 1 (spikes, or near-black pixels?) and a float one outside [0, 1] are refused,
    naming ``--batch-raw``."""
    if (
        not _run_config(source).get("dataset")
        or _event_frame_run(source)
        or not (x.dtype == torch.uint8 or x.is_floating_point())
    ):
        return None
    sample, bundle = _hinted_shape(source), None
    if sample is None:
        bundle = _file_dataset(source, name)
        sample = (bundle.in_channels, bundle.image_size, bundle.image_size)
    images = _as_images(x, sample)
    if images is None:
        return None
    if images.dtype == torch.uint8 and int(images.max()) <= 1:
        raise ValueError(
            f"{name} is uint8 {list(x.shape)} holding only 0 and 1, shaped like the run's images: a uint8 "
            "image file is read as pixel intensities in [0, 255], which would be near black; for 0/1 "
            "spikes as model input pass --batch-raw (batch_raw=True), for black-and-white images save "
            "them as float in [0, 1]"
        )
    low, high = (float(images.min()), float(images.max())) if images.is_floating_point() else (0, 1)
    if not 0 <= low <= high <= 1:
        raise ValueError(
            f"{name} holds float images {list(x.shape)} with values in [{low:.3g}, {high:.3g}]: an image "
            "file holds intensities, float in [0, 1] or uint8 in [0, 255], normalised and encoded as the "
            "run's test images; for a batch already in the model's input range pass --batch-raw "
            "(batch_raw=True)"
        )
    bundle = bundle or _file_dataset(source, name)
    return _encoded(source, bundle, images, f"{len(images)} {bundle.name} images from {name}")


def _refuse_pixels(x: torch.Tensor, what: str, why: str) -> None:
    """ValueError for uint8 model input holding pixel intensities (values above 1), which would be
    fed as 0..255; uint8 (or bool) 0/1 spikes pass."""
    if x.dtype == torch.uint8 and x.numel() and int(x.max()) > 1:
        raise ValueError(
            f"{what} is uint8 with values up to {int(x.max())}: pixel intensities, not model input; {why}"
        )


def run_batch(
    source: ModuleSource,
    batch: BatchLike | None = None,
    batch_size: int = 16,
    seed: int = 0,
    raw: bool = False,
) -> Batch:
    """The batch used for rasters and rates; see the module docstring for the order of preference.

    A tensor or array is model input, used as given (uint8 only as 0/1 spikes); ``raw`` changes nothing
    for it. A batch file holding images of the static-image dataset its checkpoint's run names —
    ``[B, C, H, W]``, ``[B, H, W]`` (one channel) or ``[B, C·H·W]``, uint8 in [0, 255] or float in [0, 1] —
    is preprocessed as the run's test images: scaled to [0, 1], normalised as the test loader does,
    encoded over T steps with the run's encoding (direct or Poisson, seeded), so a file of the run's own
    test images gives the default batch; a uint8 one holding only 0 and 1 is refused as ambiguous
    (spikes, or near-black pixels?), naming ``raw``. Any other file (every file of a run on event
    frames, DVS, whose data are then not loaded), or every file with ``raw`` (``--batch-raw``), is model
    input as stored (float; uint8 only as 0/1 spikes, pixel values are refused): static
    ``[B, C, H, W]`` / ``[B, F]`` samples are repeated over T steps (direct encoding), any other rank
    (``[T, B, F]``, ``[T, B, C, H, W]``, ...) is a sequence used as is. ``raw`` without a batch is
    refused: the run's test images are always preprocessed. The run's test
    images are encoded over T steps as in training, and noise is drawn per sample and repeated over T
    steps. A model that takes no time axis (:func:`_time_axis`: a plain ANN, a model stepped once per
    call, one that presents a static input at each of its own number of steps) gets those batches
    without it, ``[B, ...]``: a file's model input as stored, the first step of encoded images, one draw
    of noise.
    """
    T = _timestep(source)
    if raw and batch is None:
        raise ValueError("raw (--batch-raw) says how to read a batch file; give one")
    if isinstance(batch, np.ndarray):  # an array in memory is a batch given as is, like a tensor
        batch = torch.from_numpy(batch)
    if isinstance(batch, torch.Tensor):
        _refuse_pixels(
            batch,
            f"the given batch {list(batch.shape)}",
            "a tensor or array is used as given: save images to a .npy/.pt batch file to have them "
            "preprocessed as the run's test images, or pass float model input",
        )
        return Batch(batch, f"given batch {list(batch.shape)}")
    if batch is not None:
        name = Path(batch).name
        x = load_batch_file(batch)
        images = None if raw else _file_images(source, x, name)
        if images is not None:
            return images
        if _event_frame_run(source):
            why = (
                f"a batch file of a run on event frames ({_run_config(source)['dataset']}) is model input "
                "as stored, never preprocessed; save float frames instead"
            )
        else:
            why = (
                "a uint8 file is preprocessed only as images of the static-image dataset its checkpoint's "
                "run names, shaped like them ([B, C, H, W], [B, H, W] or [B, C·H·W]) and without "
                "--batch-raw; save float model input instead"
            )
        _refuse_pixels(x, name, why)
        x = x.float()
        if x.dim() in (2, 4) and _time_axis(source.model, tuple(x.shape[1:]), T) is not False:
            x = encode(x, T)
        return Batch(x, f"batch from {name} {list(x.shape)}, as stored")
    if _run_config(source).get("dataset"):
        try:
            return _dataset_batch(source, batch_size)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"[visualizer] run's dataset unavailable ({e}); using uniform noise input", file=sys.stderr)
    shape, time = _probed_shape(source, batch_size)
    generator = torch.Generator().manual_seed(seed)
    if not time:
        x = torch.rand(shape, generator=generator)
        return Batch(x, f"SYNTHETIC input: uniform noise in [0, 1], no time axis, shape {list(shape)}")
    x = encode(torch.rand(shape[1:], generator=generator), T)
    return Batch(x, f"SYNTHETIC input: uniform noise in [0, 1], direct encoding, shape {list(shape)}")


def spike_activity(
    model: nn.Module, x: torch.Tensor, max_neurons: int = 64, seed: int = 0
) -> list[LayerActivity]:
    """Run ``model`` on ``x`` (eval mode, no grad) and collect every neuron layer's spikes.

    Multi-step neurons give ``[T, B, ...]`` per call; single-step ones one ``[B, ...]`` step per call,
    stacked over calls: ``step_mode="s"``, snntorch's, and one declaring no step mode that is called more
    than once at one place (as :func:`visualizer.trace.layer_graph` decides); a neuron returning
    ``(spikes, membrane)`` (snntorch's) counts its spikes. Layers are listed in order of their first call.
    One neuron module used at several places of the network (a shared activation) is one layer per
    place, named like its node in :func:`visualizer.trace.layer_graph` plus ``#1``, ``#2``, ... in
    call order: every call of a multi-step neuron is a place of its own; the calls of a single-step
    neuron are its time steps, grouped into places by their output shape (two places with the same
    shape cannot be told apart and are recorded as one). ``seed`` seeds stochastic neurons (as
    :func:`visualizer.trace.layer_graph` does) and picks the raster's neurons.
    """
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be ≥ 1, got {max_neurons}")
    names = {m: n for n, m in model.named_modules()}
    neurons = [m for m in model.modules() if is_neuron(m)]
    sites: dict[tuple[Any, ...], int] = {}  # call site -> its place id, as the tracer numbers them
    calls: dict[tuple[nn.Module, int], int] = {}
    # per call, in order: the module, its output's shape, spike sum, and sample 0 of the output read as
    # one step [B, ...] and as a sequence [T, B, ...] (None where the neuron declares the other reading,
    # or for a 1-D output); a neuron declaring no step mode is told single-step after the run
    outputs: list[tuple[nn.Module, torch.Size, float, torch.Tensor | None, torch.Tensor | None]] = []

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, tuple | list) and out:  # snntorch's (spk, mem): the spikes come first
            out = out[0]
        if not isinstance(out, torch.Tensor):
            return
        out = out.detach().float()
        place = sites.setdefault(call_site(), len(sites) + 1)
        calls[(module, place)] = calls.get((module, place), 0) + 1
        step = declared_step(module)
        first = out[0].cpu() if step is not False else None
        sequence = out[:, 0].cpu() if step is not True and out.dim() > 1 else None
        outputs.append((module, out.shape, float(out.sum()), first, sequence))

    handles = [m.register_forward_hook(hook) for m in neurons]
    try:
        with probing(model, seed):
            run_model(model, to_model(x, model))
    finally:
        for handle in handles:
            handle.remove()
    single = single_step_neurons({m: declared_step(m) for m in neurons}, calls)
    places: dict[nn.Module, list[dict[str, Any]]] = {}
    order: list[tuple[nn.Module, dict[str, Any]]] = []
    for module, shape, fired, first, sequence in outputs:
        recorded = places.setdefault(module, [])
        rec = next((r for r in recorded if r["shape"] == shape), None) if module in single else None
        if rec is None:
            rec = {"shape": shape, "sum": 0.0, "count": 0, "steps": []}
            recorded.append(rec)
            order.append((module, rec))
        rec["sum"] += fired
        rec["count"] += shape.numel()
        if first is not None and module in single:
            rec["steps"].append(first.reshape(1, -1))
        elif sequence is not None:
            rec["steps"].append(sequence.flatten(1))
        else:
            raise ValueError(
                f"neuron layer {names[module]!r} returned {list(shape)}: a multi-step neuron gives "
                "[T, B, ...]"
            )
    rng = np.random.default_rng(seed)
    layers = []
    for module, rec in order:
        name = names[module] or type(module).__name__
        recorded = places[module]
        if len(recorded) > 1:
            place = next(i for i, r in enumerate(recorded) if r is rec)  # by identity: recs hold tensors
            name = f"{name}#{place + 1}"
        trains = torch.cat(rec["steps"]).numpy().astype(np.float32)
        n = trains.shape[1]
        shown = np.sort(rng.choice(n, size=min(n, max_neurons), replace=False))
        layers.append(
            LayerActivity(
                name,
                type(module).__name__,
                n,
                rec["sum"] / max(rec["count"], 1),
                trains[:, shown],
                shown,
                bool(np.any((trains != 0) & (trains != 1))),
            )
        )
    return layers
