"""The STDP network (Diehl & Cook: input X → excitatory Ae → inhibitory Ai → Ae) as a ``networkx.DiGraph``.

Nodes, ``n_input + 2·n_exc`` of them:

* ``in_{i}``  (``kind="input"``): pixel ``i`` with ``row``/``col`` when the input is a square image;
* ``exc_{j}`` (``kind="exc"``): excitatory neuron with ``assignment`` (class, −1 = never fired),
  ``theta`` (adaptive threshold, volts) and ``fan_in`` (alive input synapses);
* ``inh_{j}`` (``kind="inh"``): its inhibitory partner.

Edges, each with ``kind`` and ``weight``:

* ``in_i → exc_j`` (``input_exc``) for exactly the alive synapses: kept by the mask *and* with a
  nonzero weight (``mask[i, j] and w_xe[i, j] != 0``, as :mod:`nsnn.compress` and the STDP energy
  proxy count them; a survivor quantized to 0 transmits nothing). Pruned and zero-weight synapses are
  absent; the graph attribute ``synapses_zero_weight`` counts those kept by the mask but at weight 0;
* ``exc_j → inh_j`` (``exc_inh``), one per neuron, weight ``config["w_exc_inh"]``;
* ``inh_j → exc_k`` for every ``k ≠ j`` (``inh_exc``, weight ``config["w_inh_exc"]``) only with
  ``inhibition="full"``. With the default ``"summary"`` these ``n_exc·(n_exc−1)`` uniform synapses are
  summarised on the inhibitory nodes (``targets="all-but-self"``, ``w_out``, ``n_targets``) and in the
  graph attributes, keeping the graph small enough for Gephi.

So with ``alive = mask & (w_xe != 0)`` a graph has ``alive.sum() + n_exc`` edges (summary) or
``alive.sum() + n_exc²`` (full)::

    g = stdp_graph(load_stdp_run("runs/stdp-1/weights.npz"))
    g.graph["synapses_alive"] == g.number_of_edges() - g.graph["n_exc"]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from visualizer.sources import StdpRun

if TYPE_CHECKING:
    import networkx as nx

INHIBITION = ("summary", "full")


def image_side(n_input: int) -> int | None:
    """Side of the square image with ``n_input`` pixels, or None if ``n_input`` is not a square."""
    side = math.isqrt(n_input)
    return side if side * side == n_input else None


def alive_synapses(run: StdpRun) -> np.ndarray:
    """``[n_input, n_exc]`` bool: the X→Ae synapses that transmit, kept by the mask and nonzero."""
    return run.mask & (run.w_xe != 0)


def stdp_graph(run: StdpRun, inhibition: str = "summary") -> nx.DiGraph:
    """Build the graph described in the module docstring (``inhibition`` in ``INHIBITION``)."""
    import networkx as nx

    if inhibition not in INHIBITION:
        raise ValueError(f"unknown inhibition={inhibition!r}; choose one of {list(INHIBITION)}")
    n_input, n_exc = run.n_input, run.n_exc
    w_exc_inh = run.config.get("w_exc_inh")
    w_inh_exc = run.config.get("w_inh_exc")
    alive_mask = alive_synapses(run)
    alive = int(alive_mask.sum())
    side = image_side(n_input)
    graph = nx.DiGraph(
        kind="stdp",
        n_input=n_input,
        n_exc=n_exc,
        n_inh=n_exc,
        synapses_alive=alive,
        synapses_total=n_input * n_exc,
        synapses_zero_weight=int(run.mask.sum()) - alive,
        sparsity=1.0 - alive / max(n_input * n_exc, 1),
        inhibition=inhibition,
        inh_exc_synapses=n_exc * (n_exc - 1),
        source=str(run.run_dir) if run.run_dir else "",
    )
    if run.config.get("note"):
        graph.graph["note"] = str(run.config["note"])
    for key in ("w_max", "w_exc_inh", "w_inh_exc"):
        if run.config.get(key) is not None:
            graph.graph[key] = float(run.config[key])

    for i in range(n_input):
        attrs = {"kind": "input", "index": i}
        if side:
            attrs.update(row=i // side, col=i % side)
        graph.add_node(f"in_{i}", **attrs)
    fan_in = alive_mask.sum(axis=0)
    for j in range(n_exc):
        attrs = {"kind": "exc", "index": j, "assignment": int(run.assignments[j]), "fan_in": int(fan_in[j])}
        if run.theta is not None:
            attrs["theta"] = float(run.theta[j])
        graph.add_node(f"exc_{j}", **attrs)
    for j in range(n_exc):
        attrs = {"kind": "inh", "index": j, "targets": "all-but-self", "n_targets": n_exc - 1}
        if w_inh_exc is not None:
            attrs["w_out"] = float(w_inh_exc)
        graph.add_node(f"inh_{j}", **attrs)

    rows, cols = np.nonzero(alive_mask)
    weights = run.w_xe[rows, cols].tolist()
    graph.add_edges_from(
        (f"in_{r}", f"exc_{c}", {"kind": "input_exc", "weight": w})
        for r, c, w in zip(rows.tolist(), cols.tolist(), weights, strict=True)
    )
    exc_inh = {"kind": "exc_inh"} | ({"weight": float(w_exc_inh)} if w_exc_inh is not None else {})
    graph.add_edges_from((f"exc_{j}", f"inh_{j}", dict(exc_inh)) for j in range(n_exc))
    if inhibition == "full":
        inh_exc = {"kind": "inh_exc"} | ({"weight": float(w_inh_exc)} if w_inh_exc is not None else {})
        graph.add_edges_from(
            (f"inh_{j}", f"exc_{k}", dict(inh_exc)) for j in range(n_exc) for k in range(n_exc) if k != j
        )
    return graph
