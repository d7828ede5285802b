"""Legible drawing of an STDP graph, even at 784 inputs × 400 excitatory neurons.

The graph itself holds every alive synapse (kept and nonzero); the drawing aggregates, and prints its
rule on the figure:

* input pixels are pooled into ``patch × patch`` squares (auto: at most 7 × 7 patch nodes), shown over
  a heat map of how many synapses each pixel still has;
* for each excitatory neuron only its ``top_k`` patches with the largest summed surviving weight are
  drawn (line width and colour = that sum);
* excitatory neurons are stacked by assigned class (colour = class; never-fired neurons are hollow
  markers with black dashed lines and a black label, unlike any class colour), each wired 1:1 to its
  inhibitory partner; the all-but-self inhibition is one labelled arrow.

    fig = draw_stdp(stdp_graph(run), top_k=3)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from visualizer.render import class_color, class_face, new_figure, percent
from visualizer.stdp_graph import image_side

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.figure import Figure

_FULL_FAN_OUT_GREY = 0.5  # grey level of a pixel keeping all its n_exc synapses (white: none)

MAX_PATCH_GRID = 7


def _arrays(graph: nx.DiGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights ``[n_input, n_exc]``, alive mask and assignments ``[n_exc]`` read back from the graph."""
    n_input, n_exc = int(graph.graph["n_input"]), int(graph.graph["n_exc"])
    index = graph.nodes(data="index")
    weights = np.zeros((n_input, n_exc), dtype=np.float64)
    alive = np.zeros((n_input, n_exc), dtype=bool)
    for src, dst, data in graph.edges(data=True):
        if data.get("kind") == "input_exc":
            i, j = index[src], index[dst]
            weights[i, j] = data.get("weight", 0.0)
            alive[i, j] = True
    assignments = np.full(n_exc, -1, dtype=np.int64)
    for _, data in graph.nodes(data=True):
        if data.get("kind") == "exc":
            assignments[data["index"]] = data.get("assignment", -1)
    return weights, alive, assignments


def _image_width(n_input: int) -> int:
    """Width of the (square, else nearly square) row-major image the input pixels are laid out in."""
    return image_side(n_input) or math.ceil(math.sqrt(n_input))


def _patch_index(n_input: int, patch: int) -> tuple[np.ndarray, int, int]:
    """Patch id of every pixel, and the patch grid's (rows, cols)."""
    width = _image_width(n_input)
    pixel = np.arange(n_input)
    rows, cols = pixel // width // patch, pixel % width // patch
    grid_cols = math.ceil(width / patch)
    grid_rows = math.ceil(math.ceil(n_input / width) / patch)
    return rows * grid_cols + cols, grid_rows, grid_cols


def patch_centres(width: int, height: int, patch: int) -> np.ndarray:
    """``[n_patch, 2]`` centres (x right, y up from the image's bottom edge) in pixel units of the
    ``patch``×``patch`` patches of a ``height``×``width`` image, row by row from the top, the last row and
    column of patches cut at the image's edge."""

    def centres(n: int) -> np.ndarray:
        start = np.arange(0, n, patch)
        return (start + np.minimum(start + patch, n)) / 2

    xs, ys = centres(width), height - centres(height)
    return np.array([(x, y) for y in ys for x in xs])


def draw_stdp(graph: nx.DiGraph, *, top_k: int = 3, patch: int | None = None) -> Figure:
    """Figure of an STDP graph built by :func:`visualizer.stdp_graph.stdp_graph` (see module docstring)."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import FancyArrowPatch

    if top_k < 1:
        raise ValueError(f"top_k must be ≥ 1, got {top_k}")
    weights, alive, assignments = _arrays(graph)
    n_input, n_exc = weights.shape
    width = _image_width(n_input)
    if patch is not None and patch < 1:
        raise ValueError(f"patch must be ≥ 1 (pixels per patch side) or None (auto), got {patch}")
    pixel_rows = math.ceil(n_input / width)
    # a patch wider than the image pools all of it: say (and draw) the patch it is
    patch = min(patch or max(1, math.ceil(width / MAX_PATCH_GRID)), max(width, pixel_rows))
    pid, grid_rows, grid_cols = _patch_index(n_input, patch)
    n_patch = grid_rows * grid_cols
    summed = np.zeros((n_patch, n_exc))
    np.add.at(summed, pid, weights * alive)

    fig = new_figure(15, 11)
    ax = fig.add_axes((0.02, 0.1, 0.96, 0.8))
    ax.set_axis_off()
    height = 10.0
    cell = min(5.5 / grid_cols, 0.75 * height / grid_rows)
    x0, y0 = 0.0, (height - cell * grid_rows) / 2

    fan_out = np.zeros(pixel_rows * width)
    fan_out[:n_input] = alive.sum(axis=1)
    extent = (x0, x0 + cell * width / patch, y0, y0 + cell * pixel_rows / patch)
    ax.imshow(
        fan_out.reshape(pixel_rows, width),
        cmap="Greys",
        extent=extent,
        origin="upper",
        vmin=0,
        vmax=max(n_exc, 1) / _FULL_FAN_OUT_GREY,  # a fixed scale: dense is mid-grey, as dark as it gets
        alpha=0.85,
    )
    patch_xy = patch_centres(width, pixel_rows, patch) * (cell / patch) + np.array([x0, y0])

    order = sorted(range(n_exc), key=lambda j: (assignments[j] < 0, assignments[j], j))
    classes = [assignments[j] for j in order]
    gaps = np.concatenate([[0], np.cumsum([a != b for a, b in zip(classes[1:], classes[:-1], strict=True)])])
    slots = np.arange(n_exc) + gaps * max(1.0, n_exc / 40)
    ys = height - slots / max(slots[-1], 1) * height if n_exc > 1 else np.array([height / 2])
    exc_y = np.empty(n_exc)
    exc_y[order] = ys
    exc_x, inh_x = 11.0, 12.5

    segments, values, colors, styles = [], [], [], []
    for j in range(n_exc):
        strongest = [p for p in np.argsort(summed[:, j])[::-1][:top_k] if summed[p, j] > 0]
        for p in strongest:
            segments.append((patch_xy[p], (exc_x, exc_y[j])))
            values.append(summed[p, j])
            assigned = assignments[j] >= 0
            # translucent class colours; the never-fired neurons' dashed lines stay black, not grey
            colors.append((*class_color(assignments[j])[:3], 0.35 if assigned else 0.85))
            styles.append("solid" if assigned else "dashed")
    if segments:
        values_arr = np.asarray(values)
        ax.add_collection(
            LineCollection(
                segments,
                colors=colors,
                linestyles=styles,
                linewidths=0.15 + 1.8 * values_arr / values_arr.max(),
                zorder=1,
            )
        )
    ax.add_collection(
        LineCollection([((exc_x, y), (inh_x, y)) for y in exc_y], colors="0.55", linewidths=0.4, zorder=1)
    )
    w_ei = graph.graph.get("w_exc_inh")
    ax.text(
        (exc_x + inh_x) / 2,
        -0.45,
        "1:1" + (f", w = {w_ei:g}" if w_ei is not None else ""),
        ha="center",
        fontsize=7,
        color="0.35",
    )
    size = max(4.0, min(40.0, 4000.0 / n_exc))
    ax.scatter(patch_xy[:, 0], patch_xy[:, 1], s=18, c="tab:orange", edgecolors="k", linewidths=0.3, zorder=3)
    ax.scatter(
        np.full(n_exc, exc_x),
        exc_y,
        s=size,
        c=[class_face(a) for a in assignments],
        zorder=3,
        edgecolors="k",
        linewidths=[0.2 if a >= 0 else 0.8 for a in assignments],
    )
    ax.scatter(np.full(n_exc, inh_x), exc_y, s=size, c="tab:red", marker="s", zorder=3, linewidths=0)

    start = 0
    for k in range(1, n_exc + 1):
        if k == n_exc or classes[k] != classes[start]:
            label = "unassigned (never fired, hollow)" if classes[start] < 0 else f"class {classes[start]}"
            y = np.mean(exc_y[order[start:k]])
            ax.text(
                inh_x + 0.35,
                y,
                f"{label} · {k - start}",
                va="center",
                fontsize=8,
                color=class_color(classes[start]),
            )
            start = k
    w_inh = graph.graph.get("w_inh_exc")
    ax.add_patch(
        FancyArrowPatch(
            (inh_x, height + 0.3),
            (exc_x, height + 0.3),
            connectionstyle="arc3,rad=0.5",
            arrowstyle="-|>",
            mutation_scale=14,
            color="tab:red",
            lw=1.5,
        )
    )
    ax.text(
        inh_x + 0.6,
        height + 1.05,
        f"Ai → Ae: each inhibitory neuron inhibits all {n_exc - 1} other excitatory neurons"
        + (f", w = {w_inh:g}" if w_inh is not None else "")
        + f"\n({n_exc * (n_exc - 1):,} uniform synapses, drawn as this arrow)",
        ha="right",
        fontsize=8,
        color="tab:red",
    )
    ax.text(
        extent[0],
        extent[3] + 0.25,
        f"input {pixel_rows}×{width} px → {grid_rows}×{grid_cols} patches",
        fontsize=9,
    )
    ax.text(exc_x - 0.25, -0.45, f"Ae ({n_exc})", ha="right", fontsize=9)
    ax.text(inh_x + 0.25, -0.45, f"Ai ({n_exc})", ha="left", fontsize=9)
    ax.set_xlim(-0.2, inh_x + 2.2)
    ax.set_ylim(-0.8, height + 1.8)
    ax.set_aspect("equal")

    alive_n, total = int(graph.graph["synapses_alive"]), int(graph.graph["synapses_total"])
    fig.suptitle(
        f"STDP network: {n_input} inputs → {n_exc} excitatory → {n_exc} inhibitory  |  "
        f"{alive_n:,} of {total:,} input synapses alive, i.e. kept and nonzero "
        f"({percent(1 - alive_n / max(total, 1))} pruned or zero)",
        fontsize=12,
    )
    if graph.graph.get("note"):
        fig.text(
            0.5, 0.925, str(graph.graph["note"]), ha="center", fontsize=11, color="tab:red", fontweight="bold"
        )
    drawn = min(top_k, n_patch)
    strongest = (
        "patch with the largest summed surviving weight is"
        if drawn == 1
        else (f"{drawn} patches with the largest summed surviving weight are")
    )
    fig.text(
        0.02,
        0.03,
        f"Drawing rule: pixels pooled into {patch}×{patch} patches; for each excitatory neuron the "
        f"{strongest} drawn (width ∝ that sum, "
        "colour = the neuron's class; black dashed = never fired).\n"
        "Grey map: alive synapses per pixel (white none, mid-grey all). The exported graph holds every "
        "alive synapse, kept and nonzero (pruned and zero-weight synapses are absent).",
        fontsize=8.5,
    )
    return fig
