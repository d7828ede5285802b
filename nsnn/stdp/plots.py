"""Figures of an STDP run (matplotlib, Agg backend, written atomically as PNG).

* :func:`plot_receptive_fields`: each Ae neuron's input weights as an image (28×28 for MNIST), tiled
  in a √N × √N grid; pruned synapses show as 0.
* :func:`plot_weight_histogram`: alive weights before vs after compression.
* :func:`plot_sweep`: accuracy vs sparsity (one line per bit width) and vs bits (one per sparsity).
* :func:`plot_training`: running accuracy and spikes per example along training.

    plot_receptive_fields(run.state.w, run_dir / "receptive_fields.png")
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nsnn.io import atomic_write


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.0, 4.5)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=size, squeeze=False)


def _save(fig: Any, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def tile_receptive_fields(w: np.ndarray, side: int | None = None) -> np.ndarray:
    """``w`` ``[n_input, n_exc]`` → one image ``[g·side, g·side]`` with g = ⌈√n_exc⌉ tiles."""
    n_input, n_exc = w.shape
    side = side or math.isqrt(n_input)
    if side * side != n_input:
        raise ValueError(f"n_input={n_input} is not a square image; pass side explicitly")
    grid = math.ceil(math.sqrt(n_exc))
    canvas = np.zeros((grid * side, grid * side), dtype=np.float32)
    for j in range(n_exc):
        r, c = divmod(j, grid)
        canvas[r * side : (r + 1) * side, c * side : (c + 1) * side] = w[:, j].reshape(side, side)
    return canvas


def plot_receptive_fields(
    w: np.ndarray, path: str | Path, w_max: float | None = None, title: str = ""
) -> Path:
    """``w`` ``[n_input, n_exc]`` tiled (:func:`tile_receptive_fields`), colour scale 0 to ``w_max``
    (None: the largest weight, since trained weights sit far below the bound, ~0.3 of w_max = 1)."""
    fig, ax = _figure(size=(8.0, 8.0))
    top = max(float(w.max(initial=0.0)), 1e-12) if w_max is None else w_max
    canvas = tile_receptive_fields(w)
    image = ax[0, 0].imshow(canvas, cmap="hot_r", vmin=0.0, vmax=top, interpolation="nearest")
    ax[0, 0].set_axis_off()
    ax[0, 0].set_title(title or f"X→Ae receptive fields ({w.shape[1]} neurons)")
    fig.colorbar(image, ax=ax[0, 0], fraction=0.046, pad=0.02, label="weight")
    return _save(fig, path)


def plot_weight_histogram(
    before: np.ndarray,
    after: np.ndarray,
    mask: np.ndarray,
    path: str | Path,
    labels: tuple[str, str] = ("before compression", "after compression"),
) -> Path:
    """Histogram of alive weights: ``before`` (all nonzero) vs ``after`` (where ``mask``)."""
    fig, ax = _figure()
    bins = np.linspace(0.0, max(float(before.max(initial=0)), float(after.max(initial=0)), 1e-6), 61)
    ax[0, 0].hist(before[before > 0].ravel(), bins=bins, alpha=0.6, label=labels[0], log=True)
    ax[0, 0].hist(after[mask].ravel(), bins=bins, alpha=0.6, label=labels[1], log=True)
    ax[0, 0].set_xlabel("X→Ae weight")
    ax[0, 0].set_ylabel("synapses")
    ax[0, 0].legend()
    return _save(fig, path)


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Two panels from sweep rows (keys sparsity, bits, accuracy)."""
    fig, ax = _figure(1, 2, size=(11.0, 4.2))
    sparsities = sorted({float(r["sparsity"]) for r in rows})
    bit_widths = sorted({int(r["bits"]) for r in rows}, reverse=True)
    acc = {(float(r["sparsity"]), int(r["bits"])): 100 * float(r["accuracy"]) for r in rows}
    for b in bit_widths:
        ax[0, 0].plot(
            [100 * s for s in sparsities],
            [acc[(s, b)] for s in sparsities],
            marker="o",
            label="float" if b >= 32 else f"{b} bit",
        )
    for s in sparsities:
        ax[0, 1].plot(
            [str(b) for b in bit_widths],
            [acc[(s, b)] for b in bit_widths],
            marker="o",
            label=f"{100 * s:.0f} % pruned",
        )
    ax[0, 0].set_xlabel("synapses pruned (%)")
    ax[0, 1].set_xlabel("bits per weight (32 = float)")
    for a in ax[0]:
        a.set_ylabel("test accuracy (%)")
        a.grid(alpha=0.3)
        a.legend()
    return _save(fig, path)


def plot_training(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Running accuracy and spikes/example per training block (metrics.csv rows with phase=train)."""
    train = [r for r in rows if r.get("phase") == "train"]
    fig, ax = _figure(1, 2, size=(11.0, 4.0))
    x = [int(r["examples"]) for r in train]
    scored = [
        (int(r["examples"]), 100 * float(r["running_accuracy"])) for r in train if r.get("running_accuracy")
    ]
    if scored:
        ax[0, 0].plot(*zip(*scored, strict=True), marker=".")
    else:  # each block is scored with neurons assigned from the blocks before it: one block has none
        ax[0, 0].text(
            0.5,
            0.5,
            "not scored: one training block\n(running accuracy needs two; see --chunk)",
            ha="center",
            va="center",
            transform=ax[0, 0].transAxes,
        )
    ax[0, 1].plot(x, [float(r["spikes_per_example"]) for r in train], marker=".")
    ax[0, 0].set_ylabel("running accuracy (%)")
    ax[0, 1].set_ylabel("Ae spikes per example")
    for a in ax[0]:
        a.set_xlabel("training examples")
        a.grid(alpha=0.3)
    return _save(fig, path)
