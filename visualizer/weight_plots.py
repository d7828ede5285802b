"""Weight figures: STDP receptive fields, and weight histograms before/after compression.

fig = receptive_fields_figure(run.w_xe, run.mask, run.assignments)   # one 28×28 tile per Ae neuron
fig = weight_histogram_figure(run.w_before, run.w_xe[run.mask & (run.w_xe != 0)], total=run.w_xe.size)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from visualizer.modules import stored_weight
from visualizer.render import class_color, new_figure, percent

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def receptive_fields_figure(
    w_xe: np.ndarray,
    mask: np.ndarray | None = None,
    assignments: np.ndarray | None = None,
    *,
    sort_by_class: bool = True,
    title: str = "",
) -> Figure:
    """Grid of each excitatory neuron's input weights ``w_xe[:, j]`` reshaped to the square image.

    ``w_xe``/``mask``: ``[n_input, n_exc]``; pruned synapses (mask False) are drawn in light blue, so
    a pruned field is told apart from a weight that learned zero. Tiles are ordered by assigned class
    (``assignments`` ``[n_exc]``) and labelled with it; one image, so 400 tiles draw in well under a second.
    """
    from matplotlib import colormaps

    n_input, n_exc = w_xe.shape
    side = math.isqrt(n_input)
    if side * side != n_input:
        raise ValueError(f"receptive fields need a square input; n_input={n_input} is not a square")
    assignments = np.full(n_exc, -1) if assignments is None else np.asarray(assignments)
    order = np.arange(n_exc)
    if sort_by_class:
        order = np.array(sorted(order, key=lambda j: (assignments[j] < 0, assignments[j], j)))
    cols = math.ceil(math.sqrt(n_exc))
    rows = math.ceil(n_exc / cols)
    pitch = side + 1
    canvas = np.full((rows * pitch + 1, cols * pitch + 1), np.nan)
    pruned = np.zeros_like(canvas, dtype=bool)
    for k, j in enumerate(order):
        r, c = divmod(k, cols)
        y, x = 1 + r * pitch, 1 + c * pitch
        canvas[y : y + side, x : x + side] = w_xe[:, j].reshape(side, side)
        if mask is not None:
            pruned[y : y + side, x : x + side] = ~mask[:, j].reshape(side, side)
    cmap = colormaps["hot_r"].with_extremes(bad="0.35")
    tile = 0.55 if n_exc > 100 else 1.1
    fig = new_figure(cols * tile + 1.2, rows * tile + 0.9)
    ax = fig.add_axes((0.02, 0.02, 0.88, 0.9))
    image = ax.imshow(
        np.ma.masked_invalid(canvas),
        cmap=cmap,
        interpolation="nearest",
        vmin=0,
        vmax=max(float(np.nanmax(canvas)), 1e-12),
    )
    if mask is not None and pruned.any():
        overlay = np.zeros((*canvas.shape, 4))
        overlay[pruned] = (0.62, 0.79, 0.88, 1.0)
        ax.imshow(overlay, interpolation="nearest")
    for k, j in enumerate(order):
        if assignments[j] >= 0:
            r, c = divmod(k, cols)
            ax.text(
                c * pitch + 1.5,
                r * pitch + 1.5,
                str(assignments[j]),
                fontsize=5 if n_exc > 100 else 8,
                va="top",
                ha="left",
                color=class_color(int(assignments[j])),
                fontweight="bold",
                bbox={"facecolor": "white", "alpha": 0.8, "pad": 0.6, "linewidth": 0},
            )
    ax.set_axis_off()
    fig.colorbar(image, cax=fig.add_axes((0.92, 0.2, 0.015, 0.6)), label="weight")
    pruned_text = f"; light blue = pruned ({percent(1 - mask.mean())})" if pruned.any() else ""
    fig.suptitle(
        title
        or f"Receptive fields of {n_exc} excitatory neurons ({side}×{side}), "
        f"sorted by assigned class (number in the corner){pruned_text}",
        fontsize=10,
    )
    return fig


def _kernels(model: nn.Module) -> list[torch.Tensor]:
    """The conv/linear kernels (``weight`` with ndim ≥ 2) of ``model``, detached; a weight tied between
    layers once."""
    kernels = {  # keyed by the stored weight: a parametrized layer's computed one is new at each access
        id(stored_weight(m)): m.weight.detach()
        for m in model.modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }
    return list(kernels.values())


def kernel_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Weight shape of each conv/linear layer (``weight`` with ndim ≥ 2) of ``model``, by module name."""
    return {
        name: tuple(m.weight.shape)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2
    }


def module_weights(model: nn.Module) -> np.ndarray:
    """All conv/linear kernels (``weight`` with ndim ≥ 2) of ``model``, flattened into one array."""
    parts = [w.flatten().float().cpu() for w in _kernels(model)]
    if not parts:
        raise ValueError(f"{type(model).__name__} has no conv/linear weights to histogram")
    return torch.cat(parts).numpy()


def layer_levels(model: nn.Module) -> int:
    """The most distinct non-zero values in one conv/linear kernel of ``model`` (its quantization
    levels, when each layer has its own level set)."""
    return max(int(torch.unique(w[w != 0]).numel()) for w in _kernels(model))


def _levels_text(levels: int, bits: int | None, levels_per_layer: int | None) -> str:
    """Legend text for the distinct surviving values: configured ``bits`` when known, else the estimate
    from ``levels_per_layer`` (one level set per layer), else only the count observed."""
    distinct = f"{levels:,} distinct value{'' if levels == 1 else 's'}"
    if bits is not None:
        return f"{distinct}, {bits}-bit weights (configured)"
    if levels_per_layer is None:
        return f"{distinct} observed"
    estimate = f", ≈{math.ceil(math.log2(levels_per_layer))} bits" if 1 < levels_per_layer <= 4096 else ""
    if levels_per_layer != levels:
        estimate = f" (at most {levels_per_layer:,} in a layer){estimate}"
    return f"{distinct}{estimate}"


def weight_histogram_figure(
    before: np.ndarray | None,
    after: np.ndarray,
    *,
    total: int | None = None,
    bins: int = 80,
    title: str = "",
    levels_per_layer: int | None = None,
    bits: int | None = None,
    compressed: bool = True,
) -> Figure:
    """Histograms of weights before compression (``before``, all entries) and after (``after``: the
    alive weights only, i.e. kept and nonzero). ``total`` is the number of synapses after compression
    including pruned and zero ones (default ``after.size``), used to report the pruned-or-zero fraction.
    ``compressed=False`` with no ``before`` (weights never pruned nor quantized): one histogram of the
    nonzero weights, labelled without before/after, pruning or alive synapses.

    The legend gives the number of distinct alive values and, for the bits: ``bits`` when the run
    configured them; else ``≈ log2(levels_per_layer)`` when the values pool several layers, each with
    its own levels; else only the count of distinct values observed (which is not the bit width: a
    4-bit run may keep 3 values)."""
    after = np.asarray(after, dtype=np.float64).ravel()
    total = after.size if total is None else int(total)
    fig = new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    values = [after] if before is None else [np.asarray(before, dtype=np.float64).ravel(), after]
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    if before is not None:
        b = values[0]
        ax.hist(
            b,
            bins=edges,
            histtype="stepfilled",
            alpha=0.35,
            color="tab:blue",
            label=f"before: {b.size:,} weights, {percent(np.mean(b == 0))} zero",
        )
    levels = _levels_text(np.unique(after).size, bits, levels_per_layer)
    zero = percent(1 - after.size / max(total, 1))
    if before is None and not compressed:
        label = f"{after.size:,} of {total:,} weights nonzero ({zero} zero),\n{levels}"
        default_title = "Weights (not compressed)"
    else:
        label = f"after: {after.size:,} of {total:,} alive, i.e. kept and nonzero ({zero} pruned or zero),"
        label += f"\n{levels}"
        default_title = (
            "Weights before / after compression"
            if before is not None
            else "Weights (no pre-compression weights saved)"
        )
    ax.hist(after, bins=edges, histtype="step", lw=1.6, color="tab:red", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("weight")
    ax.set_ylabel("count (log)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15))  # below: never over the bars
    ax.set_title(title or default_title, fontsize=10)
    return fig
