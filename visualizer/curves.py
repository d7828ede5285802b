"""Training and validation curves from a run's ``metrics.csv`` (BPTT epochs or STDP phases).

One panel per quantity: ``train_loss``/``val_loss`` share the panel ``loss``, every ``*accuracy``
column shares ``accuracy``; other numeric columns get their own panel (``lr`` on a log scale). When
the CSV has a ``phase`` column (STDP runs log train/compress/label/test rows), each phase is its own
series, so rows of different phases are never joined by a line::

    fig = curves_figure("runs/bptt-1/metrics.csv")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nsnn.io import read_csv
from visualizer.render import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

X_COLUMNS = ("epoch", "step", "iteration", "examples", "example")
SPLITS = ("train_", "val_", "test_")
SHARED_PANELS = ("accuracy", "loss")


def _number(text: str | None) -> float:
    return float(text) if text not in ("", None) else math.nan


def numeric_columns(rows: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Columns whose every non-empty cell is a number, as float arrays (NaN for empty cells)."""
    out: dict[str, np.ndarray] = {}
    for name in rows[0]:
        try:
            out[name] = np.array([_number(r[name]) for r in rows])
        except ValueError:
            continue
    return out


def panel_of(column: str) -> str:
    """``val_loss`` → ``loss``; ``label_accuracy`` → ``accuracy``; ``lr`` → ``lr``."""
    for shared in SHARED_PANELS:
        if column == shared or column.endswith(f"_{shared}"):
            return shared
    for split in SPLITS:
        if column.startswith(split):
            return column[len(split) :]
    return column


def curves_figure(metrics: str | Path, title: str = "") -> Figure:
    """The figure described in the module docstring; ``ValueError`` if the CSV has nothing to plot."""
    rows = read_csv(metrics)
    if not rows:
        raise ValueError(f"{metrics} has a header but no rows: nothing to plot yet")
    columns = numeric_columns(rows)
    x_name = next((c for c in X_COLUMNS if c in columns), None)
    x = columns.pop(x_name) if x_name else np.arange(1, len(rows) + 1, dtype=float)
    phases = np.array([r.get("phase") or "" for r in rows])
    phase_ids = {phase: k for k, phase in enumerate(dict.fromkeys(phases))}
    panels: dict[str, list[tuple[str, int, np.ndarray, np.ndarray]]] = {}
    for name, values in columns.items():
        for phase, pid in phase_ids.items():
            keep = (phases == phase) & np.isfinite(values) & np.isfinite(x)
            if keep.any():
                label = f"{name} ({phase})" if phase else name
                panels.setdefault(panel_of(name), []).append((label, pid, x[keep], values[keep]))
    if not panels:
        raise ValueError(f"{metrics} has no numeric values to plot besides {x_name!r}")
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = new_figure(4.2 * cols, 3.0 * nrows + 0.4)
    for k, (panel, series) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, cols, k + 1)
        for k_series, (label, pid, xs, ys) in enumerate(series):
            # One colour per phase across panels (STDP); else one per column within the panel.
            color = f"C{pid if len(phase_ids) > 1 else k_series}"
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=3, label=label, color=color)
        if panel == "lr" and all(np.all(ys > 0) for *_, ys in series):
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(x_name or "row", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title or f"Training curves ({Path(metrics).parent.name}/{Path(metrics).name})", fontsize=10)
    fig.tight_layout()
    return fig
