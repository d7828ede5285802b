"""Layer graph of any ``nn.Module`` by tracing the real data flow of one forward pass.

Approach (chosen to be robust to ``SeqToANN`` wrappers, custom neurons with Python loops over time,
and residual adds written as plain ``out + x``):

* Every *leaf* module (a spiking neuron, or a module without children) becomes one node. Forward
  hooks record its input and output tensors; a neuron's internals are hidden. So does a module that
  owns parameters beside its children when its forward calls none of them (``nn.MultiheadAttention``
  uses its ``out_proj``'s weight directly).
* A ``TorchFunctionMode`` watches every torch operation *between* leaf modules. Each tensor carries
  the node that produced it (its provenance, tracked by object identity through weak references).
  An operation whose tensor inputs come from one node only (``flatten``, ``view``, ``mean`` ...)
  passes the provenance on and is listed on the edge (``via``); an operation that combines tensors
  from two or more nodes (``add`` of a residual block, ``cat``, ``mul`` ...) becomes a node itself, and
  so does one combining the outputs of one module called at two places of the network (a residual add
  over a shared activation). A place is a call site, the code position of every frame on the stack: the
  calls of a per-step loop, a recurrent one's first step included, are one place.
* Containers (``Sequential``, blocks, ``SeqToANN``) are not nodes; they give each node its ``scope``
  (e.g. ``layer2.0``), and shapes seen inside a ``SeqToANN`` (``[T·B, ...]``) are reported as
  ``[T, B, ...]`` (a ``SeqToANN`` in ``step_mode="s"`` runs one ``[B, ...]`` step as it is).

``torch.fx`` was not used: symbolic tracing fails on neurons that loop over ``x.shape[0]`` and on
data-dependent control flow, while this tracer runs the model's own forward unchanged. A module
called several times (e.g. per time step, or one activation shared by several layers) is one node with
``calls`` > 1: its ``out_shape``, ``in_shape`` and ``neurons`` describe the first call, ``firing_rate``
pools every call, and ``out_shapes`` lists each distinct output shape when the calls differ (the
spike figures of :mod:`visualizer.activity` show such a node's places apart, as ``name#1``,
``name#2``, ...)::

    g = layer_graph(model, input_shape=(4, 2, 3, 32, 32))   # dummy [T, B, C, H, W] batch
    g = layer_graph(model, batch)                            # real batch: adds firing_rate per neuron layer
"""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import CodeType
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from nsnn.layers import evaluating
from visualizer.modules import (
    declared_step,
    flattens_time,
    is_graph_leaf,
    is_neuron,
    module_attributes,
    owns_parameters,
    stored_weight,
    weight_sparsity,
)

if TYPE_CHECKING:
    import networkx as nx

# Operation names that only convert or copy a tensor: not listed on edges.
_SILENT_OPS = frozenset(
    {"contiguous", "detach", "clone", "to", "float", "type_as", "requires_grad", "cpu", "get"}
)
# Aliases so that `a + b`, `a += b` and `torch.add(a, b)` all read "add".
_OP_ALIASES = {
    "iadd": "add",
    "radd": "add",
    "isub": "sub",
    "rsub": "sub",
    "imul": "mul",
    "rmul": "mul",
    "concat": "cat",
    "concatenate": "cat",
    "setitem": "write",
}
_MERGE_KINDS = frozenset({"add", "sub", "mul", "cat", "stack", "write"})
_MAX_VIA = 6
# Where a tensor comes from: its node, and the place of the call that made it (an id of its call site,
# see call_site; 0 for the input and merges). A module called at two places of the network (a shared
# activation) is one node but two sources, so an operation combining both outputs (a residual add) is a
# merge; the calls of a per-step loop share one place.
_Source = tuple[str, int]
_Sources = dict[_Source, tuple[tuple[str, ...], str]]
_K = TypeVar("_K")  # what names a neuron: its node name, or the module itself


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", type(func).__name__).strip("_")
    name = name[:-1] if name.endswith("_") else name
    return _OP_ALIASES.get(name, name)


def _is_inplace(func: Any) -> bool:
    name = getattr(func, "__name__", "")
    return name in {"__setitem__", "__iadd__", "__isub__", "__imul__"} or (
        name.endswith("_") and not name.startswith("_")
    )


def single_step_neurons(declared: Mapping[_K, bool | None], calls: Mapping[tuple[_K, int], int]) -> set[_K]:
    """The neurons that take one ``[B, ...]`` step per call, given each neuron's
    :func:`visualizer.modules.declared_step` (``declared``) and its number of calls per place (``calls``,
    keyed by neuron and place id, see :func:`call_site`): those that say so, and those that declare no
    step mode and were called more than once at one place (a duck-typed neuron in a per-step loop)."""
    looped = {neuron for (neuron, _), n in calls.items() if n > 1}
    return {neuron for neuron, step in declared.items() if step or (step is None and neuron in looped)}


def call_site() -> tuple[tuple[CodeType, int], ...]:
    """Where the running module call was made: the code object and instruction of every frame on the
    stack. A loop calls a module from one site at every pass; a module called at two places of the
    network (twice on one line, or inside a block used twice) is called from two."""
    site = []
    frame = inspect.currentframe()
    while frame is not None:
        site.append((frame.f_code, frame.f_lasti))
        frame = frame.f_back
    return tuple(site)


def _tensors(obj: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(obj)[0] if isinstance(t, torch.Tensor)]


def shape_str(shape: Sequence[int]) -> str:
    """``[4, 2, 64, 32, 32]``: shapes are stored as strings so that GraphML can hold them."""
    return str([int(s) for s in shape])


class _DataflowTracer(TorchFunctionMode):
    """Builds the layer graph while the model runs; see the module docstring."""

    def __init__(
        self, graph: nx.DiGraph, model: nn.Module, time_batch: tuple[int, int] | None, record_rates: bool
    ) -> None:
        super().__init__()
        self.graph = graph
        self.model = model
        self.time_batch = time_batch
        self.record_rates = record_rates
        self.records: dict[int, tuple[weakref.ref, _Source, tuple[str, ...]]] = {}
        self.scopes: list[str] = []
        self.flattened_time: list[bool] = []
        self.depth = 0
        self.paused = False
        self.order = 0
        self.merges: dict[tuple[str, str, frozenset[str]], str] = {}
        self.spikes: dict[str, list[float]] = {}
        self.handles: list[Any] = []
        self.pending: _Sources = {}
        self.leaf_calls = 0
        # per running module that owns parameters beside its children: the sources of its input, and
        # leaf_calls and order when it started (see _owner_post)
        self.owners: list[tuple[_Sources, int, int]] = []
        self.time_first = False  # a time-flattening SeqToANN ran
        self.sites: dict[tuple[tuple[CodeType, int], ...], int] = {}  # call site -> its place id (1, 2 ...)
        self.neuron_calls: dict[_Source, int] = {}  # calls of each neuron, per place
        # per neuron node: whether it declares one step per call (see declared_step), else None when it
        # declares no step mode (a duck-typed neuron); and its first output's shape (for `neurons`)
        self.declared: dict[str, bool | None] = {}
        self.first_shapes: dict[str, torch.Size] = {}
        self.neurons: dict[str, nn.Module] = {}  # neuron node -> its module

    # ---- provenance -------------------------------------------------------------------------------
    def mark(self, tensor: torch.Tensor, source: _Source, via: tuple[str, ...] = ()) -> None:
        key = id(tensor)
        self.records[key] = (weakref.ref(tensor, lambda _, k=key: self.records.pop(k, None)), source, via)

    def source(self, tensor: torch.Tensor) -> tuple[_Source, tuple[str, ...]] | None:
        record = self.records.get(id(tensor))
        if record is None or record[0]() is not tensor:
            return None
        return record[1], record[2]

    def sources(self, tensors: list[torch.Tensor]) -> _Sources:
        """Source (see ``_Source``) of each tracked tensor -> (ops applied since, shape of the tensor)."""
        found: _Sources = {}
        for t in tensors:
            src = self.source(t)
            if src is not None and src[0] not in found:
                found[src[0]] = (src[1], self.display_shape(t))
        return found

    # ---- nodes and edges --------------------------------------------------------------------------
    def display_shape(self, tensor: torch.Tensor) -> str:
        shape = list(tensor.shape)
        if self.flattened_time and self.flattened_time[-1] and self.time_batch and shape:
            t, b = self.time_batch
            if shape[0] == t * b:
                shape = [t, b, *shape[1:]]
        return shape_str(shape)

    def add_node(self, name: str, tensor: torch.Tensor | None, **attrs: Any) -> None:
        self.order += 1
        scope = self.scopes[-1] if self.scopes else ""
        shape = self.display_shape(tensor) if tensor is not None else ""
        self.graph.add_node(name, order=self.order, scope=scope, out_shape=shape, calls=1, **attrs)

    def connect(self, sources: _Sources, target: str) -> None:
        for (src, _), (via, shape) in sources.items():
            self.graph.add_edge(src, target, via=",".join(via), shape=shape)

    def merge(self, op: str, sources: _Sources, out: torch.Tensor) -> str:
        scope = self.scopes[-1] if self.scopes else ""
        key = (op, scope, frozenset(node for node, _ in sources))
        if key in self.merges:
            self.graph.nodes[self.merges[key]]["calls"] += 1
            return self.merges[key]
        base = f"{scope}.{op}" if scope else op
        name, n = base, 1
        while name in self.graph:
            n += 1
            name = f"{base}_{n}"
        self.merges[key] = name
        kind = op if op in _MERGE_KINDS else "op"
        self.add_node(name, out, kind=kind, module_type=op, params=0, config="")
        self.connect(sources, name)
        return name

    # ---- torch function interception --------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or self.paused:
            return out
        inputs = _tensors((args, kwargs))
        sources = self.sources(inputs)
        if not sources:
            return out
        op = _op_name(func)
        results = _tensors(out)
        if _is_inplace(func) and inputs:
            results.append(inputs[0])
        if not results:
            return out
        if len(sources) == 1:
            ((source, (via, _)),) = sources.items()
            if op not in _SILENT_OPS and (not via or via[-1] != op):
                via = (*via, op)[-_MAX_VIA:]
        else:
            source, via = (self.merge(op, sources, results[0]), 0), ()
        for t in results:
            self.mark(t, source, via)
        return out

    # ---- module hooks -----------------------------------------------------------------------------
    def install(self) -> None:
        names = {id(m): n for n, m in self.model.named_modules()}
        hidden: set[int] = set()
        for module in self.model.modules():
            if id(module) in hidden:
                continue
            name = names[id(module)] or type(module).__name__
            if name in ("input", "output"):  # those are the graph's own ends
                name = f"{name} (layer)"
            if is_graph_leaf(module):
                hidden.update(id(m) for m in module.modules() if m is not module)
                self.handles.append(module.register_forward_pre_hook(self._leaf_pre(name), with_kwargs=True))
                post = self._leaf_post(name, module)
                self.handles.append(module.register_forward_hook(post, with_kwargs=True))
            else:
                seq = flattens_time(module)
                scope = None if module is self.model else name  # the root names no scope
                if owns_parameters(module):
                    pre = self._owner_pre(scope, seq)
                    self.handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
                    post = self._owner_post(scope, name, module)
                    self.handles.append(module.register_forward_hook(post, with_kwargs=True))
                else:
                    self.handles.append(module.register_forward_pre_hook(self._enter(scope, seq)))
                    self.handles.append(module.register_forward_hook(self._leave(scope)))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _enter(self, name: str | None, seq: bool):
        def hook(module, args):
            if not self.depth:
                if name is not None:
                    self.scopes.append(name)
                self.flattened_time.append(seq or bool(self.flattened_time and self.flattened_time[-1]))
                self.time_first |= seq

        return hook

    def _leave(self, name: str | None):
        def hook(module, args, out):
            if not self.depth:
                if name is not None:
                    self.scopes.pop()
                self.flattened_time.pop()

        return hook

    def _leaf_pre(self, name: str):
        def hook(module, args, kwargs):
            if self.depth:
                return None
            self.pending = self.sources(_tensors((args, kwargs)))
            self.depth += 1
            return None

        return hook

    def _leaf_post(self, name: str, module: nn.Module):
        def hook(mod, args, kwargs, out):
            if self.depth != 1:
                return None
            self.depth -= 1
            return self._record(name, module, _tensors((args, kwargs)), out)

        return hook

    def _owner_pre(self, scope: str | None, seq: bool):
        enter = self._enter(scope, seq)

        def hook(module, args, kwargs):
            if not self.depth:
                self.owners.append((self.sources(_tensors((args, kwargs))), self.leaf_calls, self.order))
            enter(module, args)
            return None

        return hook

    def _owner_post(self, scope: str | None, name: str, module: nn.Module):
        """A module that owns parameters beside its children and whose forward called none of them as
        modules (``nn.MultiheadAttention`` uses its ``out_proj``'s weight directly) was a layer, not a
        scope: the merges its operations made are dropped and it becomes one node."""
        leave = self._leave(scope)

        def hook(mod, args, kwargs, out):
            if self.depth:
                return None
            leave(mod, args, out)
            pending, leaf_calls, order = self.owners.pop()
            if self.leaf_calls != leaf_calls:
                return None
            inner = [n for n, o in self.graph.nodes(data="order") if o > order]
            self.graph.remove_nodes_from(inner)
            self.merges = {k: v for k, v in self.merges.items() if v not in inner}
            self.pending = pending
            return self._record(name, module, _tensors((args, kwargs)), out)

        return hook

    def _record(self, name: str, module: nn.Module, inputs: list[torch.Tensor], out: Any) -> Any:
        """Node ``name`` for one call of ``module`` on the tensors ``inputs`` (its positional then its
        keyword arguments'; their sources in ``self.pending``) giving ``out``; returns the output the
        caller gets."""
        self.leaf_calls += 1
        # nn.Identity, Dropout in eval: the input itself comes back. Marking it as this layer's would
        # make every other use of the input look like one of the layer's output, so the layer returns
        # a view of it instead (same values, storage and shape; a tensor of its own).
        given = {id(t) for t in inputs}
        if isinstance(out, torch.Tensor) and id(out) in given:
            out = out.view_as(out)
        elif isinstance(out, tuple | list) and any(
            id(t) in given for t in out if isinstance(t, torch.Tensor)
        ):
            items = [t.view_as(t) if isinstance(t, torch.Tensor) and id(t) in given else t for t in out]
            out = type(out)(*items) if hasattr(out, "_fields") else type(out)(items)  # a namedtuple
        results = _tensors(out)
        first = results[0] if results else None
        place = self.sites.setdefault(call_site(), len(self.sites) + 1)
        if is_neuron(module):
            self.neuron_calls[(name, place)] = self.neuron_calls.get((name, place), 0) + 1
            self.declared[name] = declared_step(module)
            self.neurons[name] = module
        self.paused = True
        try:
            if name in self.graph:
                self.graph.nodes[name]["calls"] += 1
                if first is not None:
                    self._add_out_shape(name, self.display_shape(first))
            else:
                self.add_node(name, first, **module_attributes(module))
                if first is not None and results:
                    self.graph.nodes[name]["in_shape"] = self.display_shape(inputs[0]) if inputs else ""
            self.connect(self.pending, name)
            if self.record_rates and is_neuron(module) and first is not None:
                total = self.spikes.setdefault(name, [0.0, 0.0])
                total[0] += float(first.detach().float().sum())
                total[1] += first.numel()
                self.first_shapes.setdefault(name, first.shape)
        finally:
            self.paused = False
        for t in results:
            self.mark(t, (name, place))
        return out

    def _add_out_shape(self, name: str, shape: str) -> None:
        """A later call of node ``name`` with an output ``shape`` unlike its first call's (a module
        shared by several places) lists every distinct shape in ``out_shapes``."""
        node = self.graph.nodes[name]
        shapes = node.get("out_shapes", node["out_shape"]).split("; ")
        if shape not in shapes:
            node["out_shapes"] = "; ".join([*shapes, shape])

    def single_step(self) -> set[str]:
        """The neuron nodes that take one ``[B, ...]`` step per call (see :func:`single_step_neurons`)."""
        return single_step_neurons(self.declared, self.neuron_calls)

    def layout(self, follows_first_axis: Callable[[set[nn.Module]], bool]) -> str:
        """What the input's and the nodes' shapes are: "time-first" (a multi-step neuron or a
        ``SeqToANN`` ran: ``[T, B, ...]``); "time-loop" (a single-step neuron called at one place as many
        times as the input's first axis is long, and one time fewer on that input less its last entry:
        ``follows_first_axis`` of those neurons, see :func:`_follows_first_axis`; the forward loops over
        the input's time axis, and the layers it runs once per step show one step, ``[B, ...]``);
        "step-loop" (single-step neurons called several times at one place, a number of times that does
        not follow the input's first axis: the forward presents its whole input ``[B, ...]`` at every
        step, a static input, even when its number of steps equals the input's first axis); "per-step"
        (single-step neurons called once at each place: the input is one time step ``[B, ...]`` of a
        model stepped once per call); "none" (no neuron and no ``SeqToANN``: no time axis)."""
        single = self.single_step()
        if self.time_first or any(name not in single for name in self.declared):
            return "time-first"
        calls = {(name, n) for (name, _), n in self.neuron_calls.items() if name in single}
        if not calls:
            return "none"
        if max(n for _, n in calls) == 1:
            return "per-step"
        length = self.time_batch[0] if self.time_batch else None
        looped = {self.neurons[name] for name, n in calls if n == length}
        return "time-loop" if looped and follows_first_axis(looped) else "step-loop"

    def finish(self) -> None:
        single = self.single_step()
        for name, (fired, count) in self.spikes.items():
            self.graph.nodes[name]["firing_rate"] = fired / max(count, 1.0)
            shape = self.first_shapes.get(name)
            if shape is not None:  # neurons of one step: [B, ...] per call, or [T, B, ...]
                per_step = 1 if name in single else 2
                self.graph.nodes[name]["neurons"] = math.prod(shape[min(per_step, len(shape) - 1) :])


def _neuron_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A neuron's state: its non-persistent buffers (snntorch's ``mem``, ``syn``) and its tensor
    attributes (nsnn's single-step membrane, snntorch's ``spk``), by name. The tensors themselves, not
    copies: put back, they keep the autograd graph of the steps that made them (a trace in the middle
    of a sequence leaves its backward pass whole)."""
    transient = module._non_persistent_buffers_set
    state = {name: t for name, t in module.named_buffers(recurse=False) if name in transient}
    state.update((name, v) for name, v in vars(module).items() if isinstance(v, torch.Tensor))
    return state


def _put_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Set a neuron's state tensors (see :func:`_neuron_state`) by name."""
    for name, value in state.items():
        if name in module._buffers:
            module._buffers[name] = value
        else:
            setattr(module, name, value)


def _rest(module: nn.Module) -> None:
    """Clear a neuron's state: nsnn's and spikingjelly's ``reset()``, else snntorch's ``reset_mem()``."""
    for method in ("reset", "reset_mem"):
        if callable(reset := getattr(module, method, None)):
            reset()
            return


@contextmanager
def neurons_at_rest(model: nn.Module) -> Iterator[None]:
    """Run ``model`` with every neuron starting from rest, and give the caller's neuron state back
    afterwards (a single-step nsnn neuron's membrane, an snntorch ``init_hidden`` neuron's ``mem``, with
    their autograd graphs): tracing a model leaves no trace in it, even when the pass fails. The neurons
    run on detached copies of their state, so one that resets or steps in place (``self.v.zero_()``)
    writes into the copies, not into the caller's tensors."""
    neurons = [m for m in model.modules() if is_neuron(m)]
    saved = [(m, _neuron_state(m)) for m in neurons]
    try:
        for m, state in saved:
            _put_state(m, {name: t.detach().clone() for name, t in state.items()})
            _rest(m)
        yield
    finally:
        for m, state in saved:
            _rest(m)
            _put_state(m, state)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run with torch's RNG seeded (CPU and ``device``), restoring the caller's RNG state afterwards.

    Stochastic neurons then emit the same spikes in every figure made from one batch.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@contextmanager
def probing(model: nn.Module, seed: int | None) -> Iterator[None]:
    """One look at ``model``: its neurons from rest, eval mode, no grad, the RNG seeded (see
    :func:`seeded`); the caller's neuron state, train/eval flags and RNG state are given back after."""
    with neurons_at_rest(model), evaluating(model), torch.no_grad(), seeded(seed, model_device(model)):
        yield


def to_model(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``x`` on the model's device; a floating ``x`` also in the dtype of its floating parameters
    (a bfloat16/half model gets a bfloat16/half batch), and so are bool or uint8 spikes (as a batch
    file's are); other integers (token ids) stay as they are."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if x.dtype in (torch.bool, torch.uint8):
        x = x.to(dtype or torch.float32)
    if dtype is not None and x.is_floating_point():
        return x.to(model_device(model), dtype)
    return x.to(model_device(model))


def run_model(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``; a failure (typically a shape the model does not accept) becomes a ``ValueError``."""
    try:
        return model(x)
    except (RuntimeError, IndexError, ValueError) as e:
        raise ValueError(
            f"{type(model).__name__} cannot run on an input of shape {list(x.shape)}: {e}"
        ) from e


def _follows_first_axis(model: nn.Module, x: torch.Tensor, neurons: set[nn.Module], seed: int | None) -> bool:
    """Whether one of ``neurons``, each called at one place of ``model`` once per entry of the first axis
    of ``x`` (``[T, ...]``, T ≥ 2), is called at one place T - 1 times on ``x[:-1]``: the forward loops over
    that axis (a time loop). A forward presenting a static input at each of its own fixed number of steps
    calls them that many times whatever the axis's length (a step loop whose steps happen to number T).
    A model that fails on ``x[:-1]`` (any exception: a shape error, its own assert, a ``TypeError`` or
    ``KeyError`` of a forward written for one length) is tied to its input's length: its loop follows
    the axis."""
    sites: dict[tuple[tuple[CodeType, int], ...], int] = {}  # call site -> its place id
    calls: dict[tuple[nn.Module, int], int] = {}

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        place = sites.setdefault(call_site(), len(sites) + 1)
        calls[(module, place)] = calls.get((module, place), 0) + 1

    handles = [m.register_forward_hook(hook) for m in neurons]
    try:
        with probing(model, seed):
            run_model(model, x[:-1])
    except Exception:  # any failure on a length the forward was not written for
        return True
    finally:
        for handle in handles:
            handle.remove()
    return len(x) - 1 in calls.values()


def layer_graph(
    model: nn.Module,
    batch: torch.Tensor | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    seed: int | None = 0,
) -> nx.DiGraph:
    """Trace ``model`` on ``batch`` (firing rates recorded) or on zeros of ``input_shape`` (shapes only).

    Args:
        model: any ``nn.Module``; it is run once in eval mode under ``torch.no_grad()`` (a second time,
            on the batch less the last entry of its first axis, when a single-step neuron ran as many
            times at one place as that axis is long: to tell a time loop from a static input's step
            loop, see ``_DataflowTracer.layout``) and its train/eval flags are restored afterwards.
        batch: real input, e.g. ``[T, B, C, H, W]`` spikes/images; neuron nodes then get
            ``firing_rate`` (spikes per neuron per time step, averaged over the batch).
        input_shape: full input shape, e.g. ``(T, B, C, H, W)``, used when ``batch`` is None.
        seed: seeds torch's RNG for this pass only (stochastic neurons), None = leave it alone.

    Returns a ``networkx.DiGraph`` whose nodes are ``input``, every leaf module (by qualified name),
    every merge operation (e.g. ``layer1.0.add``) and ``output``; node attributes: ``kind``,
    ``module_type``, ``scope``, ``order``, ``out_shape``, ``params``, ``weight_sparsity`` (conv/linear),
    neuron fields (``neuron_type``, ``tau``, ``threshold``, ``noise``, ``sigma`` ...) and ``firing_rate``;
    graph attribute ``layout``: "time-first", "time-loop", "step-loop", "per-step" or "none", what the
    shapes are (see ``_DataflowTracer.layout``).
    """
    import networkx as nx

    if batch is None:
        if input_shape is None:
            raise ValueError("layer_graph needs a batch or an input_shape such as (T, B, C, H, W)")
        batch = torch.zeros(tuple(int(s) for s in input_shape))
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    batch = to_model(batch, model)
    graph = nx.DiGraph(
        kind="layers",
        model=type(model).__name__,
        input_shape=shape_str(batch.shape),
        rates_recorded=input_shape is None,
    )
    time_batch = (int(batch.shape[0]), int(batch.shape[1])) if batch.dim() >= 2 else None
    tracer = _DataflowTracer(graph, model, time_batch, record_rates=input_shape is None)
    tracer.add_node("input", batch, kind="input", module_type="input", params=0, config="")
    tracer.mark(batch, ("input", 0))
    try:
        tracer.install()
        with probing(model, seed), tracer:
            out = run_model(model, batch)
        outputs = _tensors(out)  # a tuple or dict of heads: each one feeds the output
        if outputs:
            tracer.add_node("output", outputs[0], kind="output", module_type="output", params=0, config="")
            tracer.connect(tracer.sources(outputs), "output")
        tracer.finish()
    finally:
        tracer.remove()
    graph.graph["layout"] = tracer.layout(lambda looped: _follows_first_axis(model, batch, looped, seed))
    _summarize(graph, model)
    return graph


def _summarize(graph: nx.DiGraph, model: nn.Module) -> None:
    """Whole-model totals as graph attributes (all scalars); a weight shared by several layers, or a
    layer called at several places, counts once."""
    unique: dict[int, tuple[int, float]] = {}  # id of the stored weight -> (weights, sparsity)
    for m in model.modules():
        sparsity = weight_sparsity(m)
        if sparsity is not None:
            unique[id(stored_weight(m))] = (int(m.weight.numel()), sparsity)
    weights = sum(n for n, _ in unique.values())
    zeros = sum(n * sparsity for n, sparsity in unique.values())
    graph.graph["total_params"] = int(sum(p.numel() for p in model.parameters()))
    graph.graph["prunable_weights"] = int(weights)
    graph.graph["weight_sparsity"] = float(zeros / weights) if weights else 0.0
    graph.graph["neuron_layers"] = sum(1 for _, k in graph.nodes(data="kind") if k == "neuron")
