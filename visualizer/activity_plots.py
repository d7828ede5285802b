"""Spike rasters and firing-rate bars of a BPTT model's neuron layers, and training curves.

layers = spike_activity(model, batch.x)
raster_figure(layers, note=batch.description); rates_figure(layers, note=batch.description)
curves_figure("runs/bptt-1/metrics.csv")
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from visualizer.activity import LayerActivity
from visualizer.render import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


PROBABILITIES = "firing probabilities (expected eval mode), not spikes"


def _require(layers: list[LayerActivity]) -> None:
    if not layers:
        raise ValueError("the model has no spiking neuron layers (nothing fired, nothing to plot)")


def _title(title: str, layers: list[LayerActivity], note: str, probabilities: str) -> str:
    """``title``, then ``probabilities`` when a layer output firing probabilities, then ``note``."""
    lines = [title, probabilities if any(layer.probabilities for layer in layers) else "", note]
    return "\n".join(line for line in lines if line)


def raster_figure(layers: list[LayerActivity], note: str = "", max_columns: int = 6) -> Figure:
    """One panel per neuron layer: time step (x) × shown neurons (y), black = spike, for sample 0 (a
    probability, as the expected mode outputs, in grey: the darker, the likelier, as the title says)."""
    _require(layers)
    cols = min(max_columns, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig = new_figure(2.3 * cols, 2.3 * rows + 0.7)
    for k, layer in enumerate(layers):
        ax = fig.add_subplot(rows, cols, k + 1)
        steps, shown = layer.raster.shape
        t_idx, n_idx = np.nonzero(layer.raster)
        values = np.clip(layer.raster[t_idx, n_idx], 0.0, 1.0)
        size = max(2.0, 60.0 / max(shown, 1))
        ax.scatter(t_idx, n_idx, s=size, marker="|", c=values, cmap="Greys", vmin=0, vmax=1, linewidths=1.0)
        ax.set_xlim(-0.5, steps - 0.5)
        ax.set_ylim(-0.5, shown - 0.5)
        ax.set_xticks(range(steps) if steps <= 16 else np.linspace(0, steps - 1, 5).astype(int))
        ax.tick_params(labelsize=6)
        ax.set_title(f"{layer.name}\n{shown} of {layer.neurons:,} · rate {layer.rate:.3g}", fontsize=6.5)
        if k % cols == 0:
            ax.set_ylabel("neuron (random subset)", fontsize=6.5)
        if k >= (rows - 1) * cols:
            ax.set_xlabel("time step", fontsize=6.5)
    heading = (
        "Rasters of sample 0" if any(layer.probabilities for layer in layers) else "Spike rasters of sample 0"
    )
    fig.suptitle(_title(heading, layers, note, f"{PROBABILITIES}: the darker, the likelier"), fontsize=9)
    fig.tight_layout()
    return fig


def rates_figure(layers: list[LayerActivity], note: str = "") -> Figure:
    """Horizontal bars: mean firing rate (spikes per neuron per step, over the batch) per neuron layer;
    for layers outputting firing probabilities, their mean (the expected rate), as the title says."""
    _require(layers)
    fig = new_figure(7.5, 0.6 + 0.28 * len(layers) + 0.8)
    ax = fig.add_subplot()
    y = np.arange(len(layers))
    rates = np.array([layer.rate for layer in layers])
    ax.barh(y, rates, color="tab:red", alpha=0.8)
    ax.set_yticks(
        y, [f"{layer.name} ({layer.neuron_type}, {layer.neurons:,})" for layer in layers], fontsize=7
    )
    ax.invert_yaxis()
    for yi, rate in zip(y, rates, strict=True):
        ax.text(rate, yi, f" {rate:.3g}", va="center", fontsize=6.5)
    ax.set_xlim(0, max(float(rates.max()) * 1.2, 1e-3))
    ax.set_xlabel("firing rate (spikes per neuron per time step)")
    mean = float(np.average(rates, weights=[layer.neurons for layer in layers]))
    title = f"Firing rate per layer (all-neuron mean {mean:.3g})"
    ax.set_title(_title(title, layers, note, f"{PROBABILITIES}: rates are their means"), fontsize=9)
    fig.tight_layout()
    return fig
