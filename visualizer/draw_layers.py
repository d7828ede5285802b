"""Drawing of a layer graph (from :func:`visualizer.trace.layer_graph`): one box per layer, data flowing down.

Layout: each node's row is its longest-path depth from the input, so parallel branches (a residual
block's shortcut) sit side by side and an add node sits below both of its inputs. Long graphs wrap
into several columns, cut only where a single tensor flows (between blocks). Each box lists the
layer's kind, configuration, output shape, parameters, weight sparsity, neuron type/noise and, when
traced on a real batch, its firing rate. A ``note`` graph attribute is printed in red::

    fig = draw_layers(layer_graph(model, input_shape=(4, 1, 3, 32, 32)))
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from typing import TYPE_CHECKING

from visualizer.render import new_figure, percent

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.figure import Figure

KIND_COLORS = {
    "input": "#d9d9d9",
    "output": "#d9d9d9",
    "conv": "#9ecae1",
    "linear": "#6baed6",
    "norm": "#fdd49e",
    "neuron": "#fc9272",
    "add": "#a1d99b",
    "cat": "#a1d99b",
    "mul": "#a1d99b",
    "pool": "#bcbddc",
}
DEFAULT_COLOR = "#f7f7f7"
# What the shapes are, by the graph's "layout" (see visualizer.trace.layer_graph); "none": no time axis.
_LAYOUT_TEXT = {
    "time-first": " = [T, B, ...]",
    "time-loop": " = [T, B, ...] (layers run per step: [B, ...])",
    "per-step": " = one time step [B, ...]",
}
BOX_W, BOX_H, LANE_W, ROW_H = 3.3, 0.62, 3.6, 0.86
HEADER_IN, NOTE_IN = 1.1, 0.25  # inches above the graph for the title and legend, and for a note


def _forward_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """``graph`` without its feedback edges (into a node first called earlier: a module called twice,
    or a recurrent connection), so that the rows follow the first pass; ``graph`` itself if acyclic."""
    import networkx as nx

    if nx.is_directed_acyclic_graph(graph):
        return graph
    order = nx.get_node_attributes(graph, "order")
    forward = nx.DiGraph()
    forward.add_nodes_from(graph)
    forward.add_edges_from((u, v) for u, v in graph.edges() if order.get(u, 0) < order.get(v, 0))
    if not nx.is_directed_acyclic_graph(forward):
        raise ValueError("the layer graph has a cycle that its call order does not break: cannot lay it out")
    return forward


def _depths(graph: nx.DiGraph) -> dict[str, int]:
    """Row of each node: longest path from the input, except that nodes off the longest path (a
    shortcut branch) are placed as late as possible, right above the node they feed. A node that
    feeds nothing here (its output went back up a feedback edge: ``lif2`` into a shared ``pool``) stays
    at its longest-path row, and so do the nodes leading to it."""
    import networkx as nx

    order = list(nx.topological_sort(graph))
    early: dict[str, int] = {}
    for node in order:
        early[node] = max((early[p] + 1 for p in graph.predecessors(node)), default=0)
    late: dict[str, int] = {}
    for node in reversed(order):
        late[node] = min((late[s] - 1 for s in graph.successors(node)), default=early[node])
    return {n: early[n] if early[n] == late[n] or graph.in_degree(n) == 0 else late[n] for n in order}


def _cuts(graph: nx.DiGraph, depth: dict[str, int]) -> set[int]:
    """Depths after which exactly one edge crosses to deeper rows (safe places to wrap a column)."""
    n_rows = max(depth.values()) + 1
    crossing = [0] * n_rows
    for src, dst in graph.edges():
        for d in range(depth[src], depth[dst]):
            crossing[d] += 1
    return {d for d in range(n_rows - 1) if crossing[d] == 1}


def _columns(n_rows: int, cuts: set[int], rows_per_column: int) -> list[int]:
    """Column of each row: columns of about equal height, each wrapped at a cut when one is near."""
    n_cols = math.ceil(n_rows / rows_per_column)
    target = math.ceil(n_rows / n_cols)
    starts = [0]
    while n_rows - starts[-1] > rows_per_column:
        s = starts[-1]
        near = [c + 1 for c in cuts if s + 0.6 * target <= c + 1 <= s + min(1.25 * target, rows_per_column)]
        starts.append(min(near, key=lambda r: abs(r - s - target)) if near else s + target)
    return [bisect.bisect_right(starts, r) - 1 for r in range(n_rows)]


def _fmt_int(n: int) -> str:
    """1234 → "1.23k", 999_999 → "1M" (three significant digits, rounding carried into the unit)."""
    for unit, scale in (("G", 1_000_000_000), ("M", 1_000_000), ("k", 1_000)):
        rounded = float(f"{n / scale:.3g}")
        if rounded >= 1:
            return f"{rounded:g}{unit}"
    return str(n)


def _config_summary(data: dict) -> str:
    """Short configuration: 'Conv2d 64→128 k3 s2' style for conv/linear, class name otherwise."""
    kind, cfg, typ = data.get("kind"), str(data.get("config", "")), str(data.get("module_type", ""))
    if kind == "conv":
        nums = re.findall(r"^\s*(\d+),\s*(\d+)", cfg)
        kernel = re.search(r"kernel_size=\((\d+)", cfg)
        stride = re.search(r"stride=\((\d+)", cfg)
        if nums:
            text = f"{typ} {nums[0][0]}→{nums[0][1]}"
            text += f" k{kernel.group(1)}" if kernel else ""
            return text + (f" s{stride.group(1)}" if stride and stride.group(1) != "1" else "")
    if kind == "linear":
        fin, fout = re.search(r"in_features=(\d+)", cfg), re.search(r"out_features=(\d+)", cfg)
        if fin and fout:
            return f"{typ} {fin.group(1)}→{fout.group(1)}"
    if kind == "neuron":
        noise = data.get("noise", "none")
        text = (
            f"{data.get('neuron_type', typ)} τ={data.get('tau', '?'):g}"
            if isinstance(data.get("tau"), float)
            else str(data.get("neuron_type", typ))
        )
        sigma = f" σ={data['sigma']:g}" if isinstance(data.get("sigma"), float) else ""
        if noise != "none":
            return f"{text} {noise}{sigma}"
        return f"{text} (surrogate {data['surrogate']}{sigma})" if "surrogate" in data else text
    if kind in {"add", "cat", "mul", "op"}:
        return f"⊕ {typ}" if kind == "add" else typ
    return typ


LABEL_CHARS = 60  # characters of one label line that fit in a box (BOX_W at the label's font size)


def _fit(line: str, width: int = LABEL_CHARS) -> str:
    """``line``, or its start and end around an ellipsis when longer than ``width``: long qualified
    names of parallel branches often differ only in their last part."""
    if len(line) <= width:
        return line
    tail = (width - 1) // 2
    return f"{line[: width - 1 - tail]}…{line[-tail:]}"


def _label(name: str, data: dict) -> str:
    lines = [name.upper()] if name in {"input", "output"} else [_fit(name), _fit(_config_summary(data))]
    shape = str(data.get("out_shape", ""))
    facts = [shape.replace(" ", "")] if shape else []
    if data.get("params"):
        facts.append(f"{_fmt_int(int(data['params']))} p")
    if "weight_sparsity" in data:
        facts.append(f"{percent(float(data['weight_sparsity']), 0)} zero")
    if "firing_rate" in data:
        facts.append(f"rate {float(data['firing_rate']):.3g}")
    lines.append(_fit("  ".join(facts)))
    return "\n".join(lines)


def _short_shape(shape: str) -> str:
    try:
        return "×".join(str(v) for v in ast.literal_eval(shape))
    except (ValueError, SyntaxError):
        return shape


def feedback_route(a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
    """Corners of a feedback edge from the box at ``a`` back up into another lane's box at ``b``: out of
    the source's left side, up left of both lanes, across the gap above the target's row, down into it."""
    (x1, y1), (x2, y2) = a, b
    left, above = min(x1, x2) - BOX_W / 2 - 0.15, y2 + BOX_H / 2 + (ROW_H - BOX_H) / 2
    return [(x1 - BOX_W / 2, y1), (left, y1), (left, above), (x2, above), (x2, y2 + BOX_H / 2)]


def _draw_edge(
    ax, a: tuple[float, float], b: tuple[float, float], data: dict, wraps: bool, span: int, src: str, dst: str
) -> None:
    """Straight arrow down a lane, elbows between lanes, a bracket for skips, stubs across a column wrap,
    a dashed bracket on the left for a feedback edge (span ≤ 0: back up to an earlier row; into another
    lane it runs left of both lanes and enters the target from above, through the gaps between rows),
    and a small dashed loop on the left of a box fed its own output."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as MplPath

    (x1, y1), (x2, y2) = a, b
    style = {"arrowstyle": "-|>", "mutation_scale": 8, "color": "0.35", "lw": 0.8, "zorder": 1}
    if src == dst:  # a module fed its own output (a neuron's membrane carried across its calls)
        start, end = (x1 - BOX_W / 2, y1 + BOX_H / 4), (x1 - BOX_W / 2, y1 - BOX_H / 4)
        conn = "arc,angleA=180,angleB=180,armA=10,armB=10,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, connectionstyle=conn, linestyle="--", **style))
        return
    if span <= 0 and not wraps and x1 == x2:
        start, end = (x1 - BOX_W / 2, y1), (x2 - BOX_W / 2, y2)
        conn = "arc,angleA=180,angleB=180,armA=14,armB=14,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, connectionstyle=conn, linestyle="--", **style))
        return
    if span <= 0 and not wraps:
        corners = feedback_route(a, b)
        path = MplPath(corners, [MplPath.MOVETO] + [MplPath.LINETO] * (len(corners) - 1))
        ax.add_patch(FancyArrowPatch(path=path, linestyle="--", **style))
        return
    if wraps:
        ax.add_patch(FancyArrowPatch((x1, y1 - BOX_H / 2), (x1, y1 - BOX_H), **style))
        ax.text(
            x1,
            y1 - BOX_H - 0.08,
            f"to {dst} (next column)",
            fontsize=5.5,
            ha="center",
            va="top",
            color="0.35",
        )
        ax.add_patch(FancyArrowPatch((x2, y2 + BOX_H), (x2, y2 + BOX_H / 2), **style))
        ax.text(x2, y2 + BOX_H + 0.08, f"from {src}", fontsize=5.5, ha="center", va="bottom", color="0.35")
        return
    if x1 < x2:
        start, end, conn = (x1 + BOX_W / 2, y1), (x2, y2 + BOX_H / 2), "angle,angleA=0,angleB=90,rad=0"
    elif x1 > x2:
        start, end, conn = (x1, y1 - BOX_H / 2), (x2 + BOX_W / 2, y2), "angle,angleA=90,angleB=0,rad=0"
    elif span > 1:
        start, end, conn = (
            (x1 + BOX_W / 2, y1),
            (x2 + BOX_W / 2, y2),
            "arc,angleA=0,angleB=0,armA=14,armB=14,rad=0",
        )
    else:
        start, end, conn = (x1, y1 - BOX_H / 2), (x2, y2 + BOX_H / 2), "arc3,rad=0"
    ax.add_patch(FancyArrowPatch(start, end, connectionstyle=conn, **style))
    if span > 1:
        xt = max(start[0], end[0]) + 0.08
        ax.text(
            xt,
            (y1 + y2) / 2,
            _short_shape(str(data.get("shape", ""))),
            fontsize=5,
            color="0.4",
            ha="left",
            va="center",
            rotation=90,
        )


def draw_layers(graph: nx.DiGraph, *, rows_per_column: int = 26) -> Figure:
    """Figure of a layer graph; wraps into columns of at most about ``rows_per_column`` rows."""
    from matplotlib.patches import FancyBboxPatch, Patch

    if rows_per_column < 4:
        raise ValueError(f"rows_per_column must be ≥ 4, got {rows_per_column}")
    if graph.number_of_nodes() == 0:
        raise ValueError("the layer graph is empty: nothing to draw")
    forward = _forward_graph(graph)
    depth = _depths(forward)
    n_rows = max(depth.values()) + 1
    column = _columns(n_rows, _cuts(forward, depth), rows_per_column)
    rows: dict[int, list[str]] = {}
    for node in sorted(graph, key=lambda n: (depth[n], graph.nodes[n].get("order", 0))):
        rows.setdefault(depth[node], []).append(node)
    lanes = max(len(v) for v in rows.values())
    col_w = lanes * LANE_W + 0.8
    first_row = {c: column.index(c) for c in set(column)}
    pos = {}
    for d, nodes in rows.items():
        c = column[d]
        for k, node in enumerate(nodes):
            pos[node] = (c * col_w + k * LANE_W, -(d - first_row[c]) * ROW_H)
    n_cols = column[-1] + 1
    height = max(d - first_row[column[d]] for d in range(n_rows)) + 1

    note = str(graph.graph.get("note", ""))
    header = HEADER_IN + (NOTE_IN if note else 0.0)
    fig_h = max(4.0, height * ROW_H * 0.95 + header)
    fig = new_figure(max(7.0, n_cols * col_w * 0.95), fig_h)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - header / fig_h))
    ax.set_axis_off()
    for src, dst, data in graph.edges(data=True):
        _draw_edge(
            ax,
            pos[src],
            pos[dst],
            data,
            column[depth[src]] != column[depth[dst]],
            depth[dst] - depth[src],
            src,
            dst,
        )
    for node, (x, y) in pos.items():
        data = graph.nodes[node]
        color = KIND_COLORS.get(str(data.get("kind")), DEFAULT_COLOR)
        ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - BOX_H / 2),
                BOX_W,
                BOX_H,
                zorder=2,
                facecolor=color,
                edgecolor="0.3",
                lw=0.6,
                boxstyle="round,pad=0.02,rounding_size=0.08",
            )
        )
        ax.text(x, y, _label(node, data), ha="center", va="center", fontsize=6.3, zorder=3, linespacing=1.25)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - BOX_W / 2 - 0.2, max(xs) + BOX_W / 2 + 0.9)
    ax.set_ylim(min(ys) - BOX_H, max(ys) + BOX_H)
    g = graph.graph
    title = (
        f"{g.get('model', 'model')}: {g.get('neuron_layers', 0)} spiking "
        f"layer{'' if g.get('neuron_layers', 0) == 1 else 's'}, "
        f"{int(g.get('total_params', 0)):,} parameters, "
        f"weight sparsity {percent(float(g.get('weight_sparsity', 0)))}"
    )
    subtitle = f"input {g.get('input_shape', '?')}{_LAYOUT_TEXT.get(str(g.get('layout')), '')}; " + (
        f"rate = spikes per neuron per time step on: {g.get('batch', 'the given batch')}"
        if g.get("rates_recorded")
        else "shapes from a dummy batch"
        + (" (pass a batch for firing rates)" if g.get("neuron_layers", 0) else "")
    )
    fig.suptitle(title + "\n" + subtitle, fontsize=9, y=1 - 0.08 / fig_h, va="top")
    if note:
        fig.text(0.5, 1 - 0.5 / fig_h, note, fontsize=9, color="tab:red", va="top", ha="center")
    kinds_by_color: dict[str, list[str]] = {}  # one swatch per colour, naming every kind drawn in it
    for kind in sorted({str(k) for _, k in graph.nodes(data="kind")}):
        kinds_by_color.setdefault(KIND_COLORS.get(kind, DEFAULT_COLOR), []).append(kind)
    handles = [
        Patch(facecolor=color, edgecolor="0.3", label=" / ".join(kinds))
        for color, kinds in kinds_by_color.items()
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - (0.5 + (NOTE_IN if note else 0.0)) / fig_h),
        fontsize=7,
        ncols=min(len(handles), 8),
        frameon=False,
    )
    return fig
