"""Drawing of a layer graph (from :func:`visualizer.trace.layer_graph`): one box per layer, data flowing down.

Layout: each node's row is its longest-path depth from the input, so parallel branches (a residual
block's shortcut) sit side by side and an add node sits below both of its inputs. Long graphs wrap
into several columns, cut where a single tensor flows (between blocks) when such a place is near.
Edges run through the gaps between the boxes, never behind one, and edges sharing a gap each get a
line of their own there unless they leave or enter one box, each gap widening to fit its own lines
(:func:`_plan`, :func:`_assign_tracks`, :func:`_geometry`). Each
box lists the layer's kind, configuration, output shape, parameters, weight sparsity, neuron
type/noise and, when traced on a real batch, its firing rate. A ``note`` graph attribute is printed in red::

    fig = draw_layers(layer_graph(model, input_shape=(4, 1, 3, 32, 32)))
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from dataclasses import dataclass
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
    "step-loop": " = [B, ...], given at every step (layers run per step: [B, ...])",
    "per-step": " = one time step [B, ...]",
}
BOX_W, BOX_H = 3.3, 0.62
LANE_GAP, ROW_GAP = 0.3, 0.24  # least room between the boxes of two lanes, and of two rows
LANE_W = BOX_W + LANE_GAP  # lanes apart when no lane gap needs more room
TRACK = 0.07  # between two parallel edges in one gap
SIDE_ROOM, ROW_ROOM = 0.12, 0.06  # between a box and the nearest track: for an arrowhead; below a box
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


Point = tuple[float, float]
# A gap between boxes that edges run along: ("lane", column, g) between lanes g - 1 and g of a column
# (g = 0: left of its first lane), ("row", r) between rows r and r + 1 of every column (r = -1: above
# the first row).
Gap = tuple[str, int, int] | tuple[str, int]
# A track in a gap: its side (0: counted from a lane gap's left or a row gap's top, 1: from a lane gap's
# right) and its index there (0: the one nearest that side).
_Track = tuple[int, int]
_Tracks = dict[tuple[tuple[str, str], Gap], _Track]  # (edge, gap it runs along) -> its track there
_FROM_RIGHT = frozenset({"back", "loop"})  # edges leaving their lane gap's right-hand lane on its left
# Where an edge meets a box's side, as a fraction of BOX_H above the box's centre: each role has its own
# height, so that no two edges that share no end run along one line between a box and a gap.
_RIGHT_OUT, _RIGHT_IN, _LEFT_OUT, _LEFT_IN, _LOOP_OUT, _LOOP_IN = 0.25, -0.25, -0.125, 0.125, 0.375, -0.375
_EXIT = 0.25  # an edge into another lane leaves its box's bottom this fraction of BOX_W off the centre


@dataclass(frozen=True)
class _Cell:
    """A node's place in the drawing: its column, lane in that column, and row within that column."""

    column: int
    lane: int
    row: int


@dataclass(frozen=True)
class _Plan:
    """An edge's route before its gaps have widths: its ``kind`` (loop, down, skip, back, elbow) and,
    in the order it runs along them, the gaps it uses with the interval it covers there (in rows along
    a lane gap, in lanes along a row gap)."""

    kind: str
    gaps: tuple[tuple[Gap, float, float], ...] = ()
    side: int = 0  # an elbow's: out of the bottom right (1) or left (-1) of the source's centre


def _plan(a: _Cell, b: _Cell, same: bool, lanes: int) -> _Plan:
    """The route from the box at ``a`` to the box at ``b`` (``same``: an edge from a node to itself) in
    a drawing ``lanes`` lanes wide.

    loop (a node fed its own output): out of its left side and back in, through the lane gap on its
    left; down: straight into the next row; skip (same lane, down more than a row): a bracket through
    the lane gap on the right; back (same lane, up): a bracket through the lane gap on the left; elbow
    (another lane or column, down or up): out of the bottom into the row gap below, along it, and
    (unless the target is in the next row down) along the lane gap beside the target's lane (or
    column, on the source's side) to the row gap above the target, then down into its top.
    Along row gaps, which run through every column, positions count ``lanes + 1`` per column.
    """
    if same:
        return _Plan("loop", ((("lane", a.column, a.lane), a.row, a.row),))
    if a.column == b.column and a.lane == b.lane:
        if b.row == a.row + 1:
            return _Plan("down")
        kind, g = ("skip", a.lane + 1) if b.row > a.row else ("back", a.lane)
        return _Plan(kind, ((("lane", a.column, g), min(a.row, b.row), max(a.row, b.row)),))
    start, end = a.column * (lanes + 1) + a.lane, b.column * (lanes + 1) + b.lane
    direct = b.row == a.row + 1  # along the row gap between the two rows, in one column or across
    if direct:
        turn = float(end)
    else:
        if a.column == b.column:
            g = b.lane if a.lane < b.lane else b.lane + 1
        else:
            g = 0 if a.column < b.column else lanes
        turn = b.column * (lanes + 1) + g - 0.5
    side = 1 if turn > start else -1
    exit_ = start + side * _EXIT * BOX_W / LANE_W
    gaps: list[tuple[Gap, float, float]] = [(("row", a.row), min(exit_, turn), max(exit_, turn))]
    if not direct:
        ends = (a.row + 0.5, b.row - 0.5)
        gaps.append((("lane", b.column, g), min(ends), max(ends)))
        gaps.append((("row", b.row - 1), min(turn, end), max(turn, end)))
    return _Plan("elbow", tuple(gaps), side)


def _may_share(e1: tuple[str, str], e2: tuple[str, str]) -> bool:
    """Whether two edges may run along one line: they leave one box or enter one (a fork or a join),
    and neither is a self-loop."""
    (u1, v1), (u2, v2) = e1, e2
    return u1 != v1 and u2 != v2 and (u1 == u2 or v1 == v2)


def _assign_tracks(plans: dict[tuple[str, str], _Plan]) -> _Tracks:
    """A track (see ``_Track``) per edge and gap it uses: edges whose intervals in one gap overlap (ends
    included) get different tracks, so that no two run along one line, unless they leave or enter one
    box (:func:`_may_share`). Backs and loops, which leave a lane gap's right-hand lane, take the tracks
    counted from its right, the other edges those counted from the left. On each side shorter
    intervals are placed first, each on the free track nearest the side that lies no nearer than the
    tracks of the intervals it holds (beyond them, unless it may share theirs): nested brackets do
    not cross."""
    by_side: dict[tuple[Gap, int], list[tuple[float, float, tuple[str, str]]]] = {}
    for edge, plan in plans.items():
        side = int(plan.kind in _FROM_RIGHT)
        for gap, lo, hi in plan.gaps:
            by_side.setdefault((gap, side), []).append((lo, hi, edge))
    tracks: _Tracks = {}
    for (gap, side), items in by_side.items():
        placed: list[tuple[float, float, tuple[str, str], int]] = []
        for lo, hi, edge in sorted(items, key=lambda item: (item[1] - item[0], item[0])):
            taken, least = set(), 0
            for plo, phi, other, t in placed:
                share = _may_share(edge, other)
                if plo <= hi and lo <= phi and not share:
                    taken.add(t)
                if lo <= plo and phi <= hi:
                    least = max(least, t if share else t + 1)
            track = next(t for t in range(least, least + len(placed) + 1) if t not in taken)
            placed.append((lo, hi, edge, track))
            tracks[(edge, gap)] = (side, track)
    return tracks


@dataclass(frozen=True)
class _Geometry:
    """Where the boxes and the tracks of the gaps lie: the x of each lane gap's left edge and its width
    (by ``(column, g)``, as in ``Gap``), the y of each row's centre (rows -1 to the last; row -1 is
    above the drawing) and the height of each row gap below a row."""

    gap_x: dict[tuple[int, int], float]
    gap_w: dict[tuple[int, int], float]
    row_y: dict[int, float]
    gap_h: dict[int, float]

    def centre(self, cell: _Cell) -> Point:
        key = (cell.column, cell.lane)
        return self.gap_x[key] + self.gap_w[key] + BOX_W / 2, self.row_y[cell.row]

    def track(self, gap: Gap, track: _Track) -> float:
        """The x of a track along a lane gap, or the y of one along a row gap."""
        side, index = track
        if gap[0] == "lane":
            key = (gap[1], gap[2])
            if side:
                return self.gap_x[key] + self.gap_w[key] - SIDE_ROOM - index * TRACK
            return self.gap_x[key] + SIDE_ROOM + index * TRACK
        return self.row_y[gap[1]] - BOX_H / 2 - ROW_ROOM - index * TRACK

    def bounds(self) -> tuple[float, float, float, float]:
        """The drawing's extent: left, right, bottom, top."""
        right = max(x + self.gap_w[key] for key, x in self.gap_x.items())
        last = max(self.row_y)
        bottom = self.row_y[last] - BOX_H / 2 - self.gap_h[last]
        return min(self.gap_x.values()), right, bottom, self.row_y[-1] - BOX_H / 2


def _geometry(lanes: int, n_cols: int, n_rows: int, tracks: _Tracks) -> _Geometry:
    """Each lane gap (row gap) as wide (high) as its own tracks need, with room for an arrowhead between
    the tracks nearest a side and the box there; columns ``lanes`` lanes wide, ``n_rows`` rows high."""
    count: dict[tuple[Gap, int], int] = {}
    for (_, gap), (side, index) in tracks.items():
        count[(gap, side)] = max(count.get((gap, side), 0), index + 1)
    gap_x, gap_w, x = {}, {}, 0.0
    for column in range(n_cols):
        for g in range(lanes + 1):
            n = count.get((("lane", column, g), 0), 0) + count.get((("lane", column, g), 1), 0)
            gap_x[(column, g)], gap_w[(column, g)] = x, max(LANE_GAP, 2 * SIDE_ROOM + (n - 1) * TRACK)
            x += gap_w[(column, g)] + BOX_W
        x += 0.5 - BOX_W  # between columns
    gap_h = {
        r: max(ROW_GAP, ROW_ROOM + (count.get((("row", r), 0), 0) - 1) * TRACK + SIDE_ROOM)
        for r in range(-1, n_rows)
    }
    row_y, y = {}, BOX_H + gap_h[-1]
    for r in range(-1, n_rows):
        row_y[r] = y
        y -= BOX_H + gap_h[r]
    return _Geometry(gap_x, gap_w, row_y, gap_h)


def _route(
    plan: _Plan, edge: tuple[str, str], a: _Cell, b: _Cell, geo: _Geometry, tracks: _Tracks
) -> list[Point]:
    """Corners of an edge's line (see :func:`_plan`), from the source box's boundary to the target's."""
    (x1, y1), (x2, y2) = geo.centre(a), geo.centre(b)
    at = [geo.track(gap, tracks[(edge, gap)]) for gap, _, _ in plan.gaps]
    if plan.kind == "down":
        return [(x1, y1 - BOX_H / 2), (x2, y2 + BOX_H / 2)]
    if plan.kind in ("loop", "skip", "back"):
        side, out, into = {
            "loop": (-1, _LOOP_OUT, _LOOP_IN),
            "skip": (1, _RIGHT_OUT, _RIGHT_IN),
            "back": (-1, _LEFT_OUT, _LEFT_IN),
        }[plan.kind]
        xs, (x,) = x1 + side * BOX_W / 2, at
        ya, yb = y1 + out * BOX_H, y2 + into * BOX_H
        return [(xs, ya), (x, ya), (x, yb), (xs, yb)]
    exit_ = x1 + plan.side * _EXIT * BOX_W  # an elbow
    corners = [(exit_, y1 - BOX_H / 2), (exit_, at[0])]
    if len(at) == 3:
        corners += [(at[1], at[0]), (at[1], at[2])]
    return [*corners, (x2, corners[-1][1]), (x2, y2 + BOX_H / 2)]


def draw_layers(graph: nx.DiGraph, *, rows_per_column: int = 26) -> Figure:
    """Figure of a layer graph; wraps into columns of at most about ``rows_per_column`` rows.

    Edges run through the gaps between boxes, never behind one, and parallel edges in one gap each get
    a track of their own unless they leave or enter one box (see :func:`_plan`, :func:`_assign_tracks`);
    each edge's patch has the gid ``"src->dst"``. Feedback
    edges (into an earlier row: a module called twice) are dashed.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
    from matplotlib.path import Path as MplPath

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
    first_row = {c: column.index(c) for c in set(column)}
    cell = {
        node: _Cell(column[d], k, d - first_row[column[d]])
        for d, nodes in rows.items()
        for k, node in enumerate(nodes)
    }
    plans = {(src, dst): _plan(cell[src], cell[dst], src == dst, lanes) for src, dst in graph.edges()}
    tracks = _assign_tracks(plans)
    geo = _geometry(lanes, column[-1] + 1, max(c.row for c in cell.values()) + 1, tracks)
    pos = {node: geo.centre(c) for node, c in cell.items()}
    left, right, bottom, top = geo.bounds()
    left, right, bottom, top = left - 0.1, right + 0.5, bottom - 0.1, top + 0.1

    note = str(graph.graph.get("note", ""))
    header = HEADER_IN + (NOTE_IN if note else 0.0)
    fig_h = max(4.0, (top - bottom) * 0.95 + header)
    fig = new_figure(max(7.0, (right - left) * 0.95), fig_h)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - header / fig_h))
    ax.set_axis_off()
    style = {"arrowstyle": "-|>", "mutation_scale": 8, "color": "0.35", "lw": 0.8, "zorder": 1}
    for (src, dst), plan in plans.items():
        span = depth[dst] - depth[src]
        corners = _route(plan, (src, dst), cell[src], cell[dst], geo, tracks)
        path = MplPath(corners, [MplPath.MOVETO] + [MplPath.LINETO] * (len(corners) - 1))
        patch = FancyArrowPatch(path=path, linestyle="--" if span <= 0 else "-", **style)
        patch.set_gid(f"{src}->{dst}")
        ax.add_patch(patch)
        lane_gaps = [gap for gap, _, _ in plan.gaps if gap[0] == "lane"]
        if span > 1 and lane_gaps:  # the shape beside the long vertical of a skip or an elbow
            ax.text(
                geo.track(lane_gaps[0], tracks[((src, dst), lane_gaps[0])]) + 0.03,
                (pos[src][1] + pos[dst][1]) / 2,
                _short_shape(str(graph.edges[src, dst].get("shape", ""))),
                fontsize=5,
                color="0.4",
                ha="left",
                va="center",
                rotation=90,
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
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    g = graph.graph
    title = (
        f"{g.get('model', 'model')}: {g.get('neuron_layers', 0)} spiking "
        f"layer{'' if g.get('neuron_layers', 0) == 1 else 's'}, "
        f"{int(g.get('total_params', 0)):,} parameters, "
        f"weight sparsity {percent(float(g.get('weight_sparsity', 0)))}"
    )
    spiking, batch = g.get("neuron_layers", 0), g.get("batch", "the given batch")
    subtitle = f"input {g.get('input_shape', '?')}{_LAYOUT_TEXT.get(str(g.get('layout')), '')}; " + (
        (f"rate = spikes per neuron per time step on: {batch}" if spiking else f"shapes from: {batch}")
        if g.get("rates_recorded")
        else "shapes from a dummy batch" + (" (pass a batch for firing rates)" if spiking else "")
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
