"""Public functions: graphs (topology/draw) and figures, each from a module, checkpoint or run dir
(``export`` lives in :mod:`visualizer.export`; all of them are importable from ``visualizer``).

    g = topology("runs/stdp-1")                 # networkx.DiGraph of the surviving synapses
    draw(g, "figs/stdp.svg")
    raster(model, "figs/raster.png", batch=x)   # x: [T, B, C, H, W]

:data:`FIGURES` is the registry behind ``python -m visualizer --what``: name → which inputs it applies
to, and how to render it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsnn.compress import compression_state
from visualizer.activity import (
    Batch,
    BatchLike,
    LayerActivity,
    run_batch,
    spike_activity,
    trace_input_shape,
)
from visualizer.activity_plots import raster_figure, rates_figure
from visualizer.curves import curves_figure
from visualizer.draw_layers import draw_layers
from visualizer.draw_stdp import draw_stdp
from visualizer.render import image_format, save_figure
from visualizer.sources import ModuleSource, Source, StdpRun, load_source
from visualizer.stdp_graph import alive_synapses, stdp_graph
from visualizer.trace import layer_graph
from visualizer.weight_plots import (
    kernel_shapes,
    layer_levels,
    module_weights,
    receptive_fields_figure,
    weight_histogram_figure,
)

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.figure import Figure

DRAWERS: dict[str, Callable[..., Figure]] = {"stdp": draw_stdp, "layers": draw_layers}
_BEFORE_ON_STDP = "--before compares BPTT models; an STDP run has its own pre-compression weights"


def refuse_foreign(name: str, stdp: bool, options: Sequence[str]) -> None:
    """``ValueError`` naming the ``options`` given for input ``name`` that only the other kind of source
    reads (``stdp``: whether ``name`` is an STDP run); nothing when ``options`` is empty."""
    if not options:
        return
    kind, other = ("an STDP run", "BPTT models") if stdp else ("a BPTT model", "STDP runs")
    verb, them = ("apply", "them") if len(options) > 1 else ("applies", "it")
    raise ValueError(f"{name} is {kind}: {', '.join(options)} {verb} to {other} only; drop {them}")


def topology(
    obj: Any,
    *,
    batch: BatchLike | None = None,
    batch_raw: bool = False,
    input_shape: Sequence[int] | None = None,
    inhibition: str | None = None,
) -> nx.DiGraph:
    """The network as a ``networkx.DiGraph``.

    ``obj``: an ``nn.Module``, an nsnn checkpoint, a BPTT run directory or an STDP run directory
    (or its ``weights.npz``). STDP: nodes are neurons, edges exactly the surviving synapses (see
    :mod:`visualizer.stdp_graph`; ``inhibition`` "summary", the default, or "full"). Modules: the layer
    graph of :mod:`visualizer.trace`, shapes from a dummy batch of ``input_shape`` (inferred when None: a
    ``[B, ...]`` batch for a plain ANN, a model stepped once per call, or one looping a static input
    itself, see
    :func:`visualizer.activity.trace_input_shape`), or
    from ``batch`` (a ``[T, B, ...]`` tensor or numpy array, ``[B, ...]`` for a model without a time
    axis, or a .pt/.npy file: images of the checkpoint's static-image dataset, preprocessed as its test
    images unless ``batch_raw``, else model input; see :func:`visualizer.activity.run_batch`), which also
    records firing rates. Arguments the input does not read are refused (``ValueError``): ``batch``,
    ``batch_raw`` and ``input_shape`` for an STDP run, ``inhibition`` for a module, ``input_shape`` beside
    a ``batch`` (which sets the shapes), ``batch_raw`` without a ``batch``.
    """
    source = load_source(obj)
    name = str(obj) if isinstance(obj, str | Path) else "this input"
    if isinstance(source, StdpRun):
        given = {"batch": batch is not None, "batch_raw": batch_raw, "input_shape": input_shape is not None}
        refuse_foreign(name, True, [option for option, used in given.items() if used])
        return stdp_graph(source, inhibition or "summary")
    refuse_foreign(name, False, ["inhibition"] if inhibition is not None else [])
    if batch is not None and input_shape is not None:
        raise ValueError("give batch or input_shape, not both: the batch's shape is the one traced")
    if batch is not None or batch_raw:  # batch_raw without a batch: run_batch refuses it
        recorded = run_batch(source, batch, raw=batch_raw)
        graph = layer_graph(source.model, recorded.x)
        graph.graph["batch"] = recorded.description
        return graph
    return layer_graph(source.model, input_shape=input_shape or trace_input_shape(source))


def draw(graph: nx.DiGraph, path: str | Path, *, dpi: int = 150, **options: Any) -> Path:
    """Draw a graph from :func:`topology` to ``path``: PNG or SVG by extension (else ``ValueError``).

    ``options`` go to the drawer: STDP ``top_k``, ``patch`` (:func:`visualizer.draw_stdp.draw_stdp`);
    layers ``rows_per_column`` (:func:`visualizer.draw_layers.draw_layers`).
    """
    image_format(path)
    kind = graph.graph.get("kind")
    if kind not in DRAWERS:
        raise ValueError(
            f"cannot draw a graph of kind {kind!r}; graphs from visualizer.topology have "
            f"kind in {list(DRAWERS)}"
        )
    return save_figure(DRAWERS[kind](graph, **options), path, dpi=dpi)


def _stdp(source: Source, what: str) -> StdpRun:
    """``source`` if an STDP run, else ``ValueError``; ``what``: subject and verb ("histograms need")."""
    if not isinstance(source, StdpRun):
        raise ValueError(f"{what} an STDP run (weights.npz), got a {type(source.model).__name__} model")
    return source


def _module(source: Source, what: str) -> ModuleSource:
    """``source`` if a BPTT model, else ``ValueError``; ``what``: subject and verb ("histograms need")."""
    if not isinstance(source, ModuleSource):
        raise ValueError(f"{what} a BPTT model (nn.Module, checkpoint or run dir), got an STDP run")
    return source


def before_source(source: Source, before: Any) -> ModuleSource:
    """``before`` (a module, checkpoint or run dir) loaded as the pre-compression weights of ``source``:
    ``ValueError`` for an STDP run (it has its own), and unless its conv/linear layers, by name and
    weight shape, are those of ``source``'s model (another network's weights compare with nothing)."""
    if isinstance(source, StdpRun):
        raise ValueError(_BEFORE_ON_STDP)
    previous = _module(load_source(before), "--before needs")
    mine, theirs = kernel_shapes(source.model), kernel_shapes(previous.model)
    if mine != theirs:
        groups = {
            "shapes (--before vs model)": [
                f"{n} {list(theirs[n])} vs {list(mine[n])}"
                for n in mine
                if n in theirs and mine[n] != theirs[n]
            ],
            "only in the model": [n for n in mine if n not in theirs],
            "only in --before": [n for n in theirs if n not in mine],
        }
        differ = "; ".join(
            f"{group}: {', '.join(items[:3])}" + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            for group, items in groups.items()
            if items
        )
        name = before if isinstance(before, str | Path) else f"a {type(previous.model).__name__}"
        raise ValueError(
            f"--before {name} is another network than the {type(source.model).__name__} shown, its "
            f"conv/linear layers differ ({differ}); give this network's checkpoint before compression"
        )
    return previous


def fields_figure(source: Source) -> Figure:
    run = _stdp(source, "receptive fields need")
    return receptive_fields_figure(run.w_xe, run.mask, run.assignments)


def _stdp_histogram_title(run: StdpRun) -> str:
    """Title naming what the run's "before" weights are; the full-precision shadow of a run compressed
    during training is not the dense network: pruned during training, it holds the same zeros."""
    if run.before_key != "w_xe_shadow":
        return f"STDP input weights before ({run.before_key}) / after compression" if run.before_key else ""
    pruned = run.w_before is not None and bool((~run.mask).any()) and not run.w_before[~run.mask].any()
    stage = "before quantization" if run.configured_bits is not None else "at the end of training"
    return (
        f"STDP input weights {stage} (w_xe_shadow{', pruned during training' if pruned else ''}) "
        "/ after compression"
    )


def histogram_figure(source: Source, before: Any = None) -> Figure:
    """STDP: ``w_xe_dense``/``w_xe_shadow``/``w_xe_initial`` vs the alive weights (kept by the mask and
    nonzero), bits as configured in ``config.json``, or, for a run neither pruned nor quantized, its
    weights alone; modules: ``before`` (the same network before compression, a module/checkpoint/run dir,
    optional: see :func:`before_source`) vs the non-zero conv/linear weights, which for a module
    neither pruned nor quantized and no ``before`` are shown as its weights (no before/after, no pruned
    or alive ones)."""
    if isinstance(source, StdpRun):
        if before is not None:
            raise ValueError(_BEFORE_ON_STDP)
        if source.mask.all() and source.configured_bits is None:  # never pruned nor quantized
            w = source.w_xe
            return weight_histogram_figure(
                None, w[w != 0], total=w.size, title="STDP input weights (not compressed)", compressed=False
            )
        return weight_histogram_figure(
            source.w_before,
            source.w_xe[alive_synapses(source)],
            total=source.w_xe.size,
            title=_stdp_histogram_title(source),
            bits=source.configured_bits,
        )
    after = module_weights(source.model)
    previous = None if before is None else module_weights(before_source(source, before).model)
    compressed = bool(compression_state(source.model))
    if previous is not None:
        kind = " before / after compression"
    else:
        kind = "" if compressed else " (not compressed)"
    return weight_histogram_figure(
        previous,
        after[after != 0],
        total=after.size,
        levels_per_layer=layer_levels(source.model) if compressed or previous is not None else None,
        title=f"{type(source.model).__name__} conv/linear weights{kind}",
        compressed=compressed,
    )


def metrics_path(obj: Any) -> Path:
    """The ``metrics.csv`` of a run directory, a checkpoint's folder, or the given .csv path."""
    if isinstance(obj, str | Path):
        path = Path(obj).expanduser()
        if not path.exists():  # a typo'd run or checkpoint is not its parent folder's metrics
            raise FileNotFoundError(f"no such file or directory: {path}")
        found = path if path.suffix == ".csv" else (path if path.is_dir() else path.parent) / "metrics.csv"
        if not found.is_file():
            raise FileNotFoundError(f"no metrics.csv at {found}")
        return found
    metrics = load_source(obj).metrics
    if metrics is None:
        raise ValueError("this input has no run directory with a metrics.csv: curves need one")
    return metrics


class Session:
    """One input plus the batch, spike recordings and graph its figures share (each computed once).

    ``draw_options`` maps a graph kind ("stdp", "layers") to keyword arguments of its drawer;
    ``batch``, ``batch_raw``, ``batch_size``: see :func:`visualizer.activity.run_batch`.
    """

    def __init__(
        self,
        obj: Any,
        *,
        batch: BatchLike | None = None,
        batch_raw: bool = False,
        batch_size: int = 16,
        before: Any = None,
        inhibition: str = "summary",
        draw_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.source = load_source(obj)
        if before is not None:  # resolved up front: a wrong path or network fails before any figure
            before = before_source(self.source, before)
        self.batch_arg, self.batch_raw, self.batch_size, self.before = batch, batch_raw, batch_size, before
        self.inhibition = inhibition
        self.draw_options = draw_options or {}

    @cached_property
    def batch(self) -> Batch:
        return run_batch(
            _module(self.source, "spike figures need"), self.batch_arg, self.batch_size, raw=self.batch_raw
        )

    @cached_property
    def activity(self) -> list[LayerActivity]:
        return spike_activity(_module(self.source, "spike figures need").model, self.batch.x)

    @cached_property
    def graph(self) -> nx.DiGraph:
        if isinstance(self.source, StdpRun):
            return stdp_graph(self.source, self.inhibition)
        graph = layer_graph(self.source.model, self.batch.x)
        graph.graph["batch"] = self.batch.description
        return graph

    def topology_figure(self) -> Figure:
        kind = self.graph.graph["kind"]
        return DRAWERS[kind](self.graph, **self.draw_options.get(kind, {}))


@dataclass(frozen=True)
class FigureSpec:
    """A ``--what`` entry: which sources it applies to, and how a session makes its figure."""

    applies: Callable[[Source], bool]
    make: Callable[[Session], Figure]
    help: str


FIGURES: dict[str, FigureSpec] = {
    "topology": FigureSpec(lambda s: True, Session.topology_figure, "network graph (drawing + graph files)"),
    "fields": FigureSpec(
        lambda s: isinstance(s, StdpRun) and math.isqrt(s.w_xe.shape[0]) ** 2 == s.w_xe.shape[0],
        lambda ses: fields_figure(ses.source),
        "receptive fields of the excitatory neurons (STDP, square inputs)",
    ),
    "hist": FigureSpec(
        lambda s: True,
        lambda ses: histogram_figure(ses.source, ses.before),
        "weight histograms before/after compression",
    ),
    "raster": FigureSpec(
        lambda s: isinstance(s, ModuleSource),
        lambda ses: raster_figure(ses.activity, ses.batch.description),
        "spike rasters per neuron layer (BPTT)",
    ),
    "rates": FigureSpec(
        lambda s: isinstance(s, ModuleSource),
        lambda ses: rates_figure(ses.activity, ses.batch.description),
        "firing rate per neuron layer (BPTT)",
    ),
    "curves": FigureSpec(
        lambda s: s.metrics is not None,
        lambda ses: curves_figure(metrics_path(ses.source)),
        "training/validation curves from metrics.csv",
    ),
}


def receptive_fields(obj: Any, path: str | Path) -> Path:
    """Receptive-field grid of an STDP run (28×28 weights per excitatory neuron) to PNG/SVG."""
    image_format(path)
    return save_figure(fields_figure(load_source(obj)), path)


def weight_histograms(obj: Any, path: str | Path, before: Any = None) -> Path:
    """Weight histograms before/after compression (see :func:`histogram_figure`) to PNG/SVG."""
    image_format(path)
    return save_figure(histogram_figure(load_source(obj), before), path)


def _activity_figure(
    figure: Callable[..., Figure],
    obj: Any,
    path: str | Path,
    batch: BatchLike | None,
    batch_size: int,
    raw: bool,
) -> Path:
    """``figure(activity, description)`` of ``obj``'s spikes on ``batch`` (see :func:`raster`), saved."""
    image_format(path)
    session = Session(obj, batch=batch, batch_raw=raw, batch_size=batch_size)
    return save_figure(figure(session.activity, session.batch.description), path)


def raster(
    obj: Any,
    path: str | Path,
    batch: BatchLike | None = None,
    batch_size: int = 16,
    batch_raw: bool = False,
) -> Path:
    """Spike rasters of every neuron layer on ``batch`` (``[T, B, ...]``, or ``[B, ...]`` for a model
    without a time axis; a file of the run's dataset images is preprocessed as its test images unless
    ``batch_raw``; default: the run's test data, see :func:`visualizer.activity.run_batch`)."""
    return _activity_figure(raster_figure, obj, path, batch, batch_size, batch_raw)


def firing_rates(
    obj: Any,
    path: str | Path,
    batch: BatchLike | None = None,
    batch_size: int = 16,
    batch_raw: bool = False,
) -> Path:
    """Bar chart of the firing rate per neuron layer on ``batch`` (as :func:`raster`) to PNG/SVG."""
    return _activity_figure(rates_figure, obj, path, batch, batch_size, batch_raw)


def curves(obj: Any, path: str | Path) -> Path:
    """Training and validation curves from a run directory's (or a given) ``metrics.csv``."""
    image_format(path)
    return save_figure(curves_figure(metrics_path(obj)), path)
