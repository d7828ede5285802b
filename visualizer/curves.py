"""Training and validation curves from a run's ``metrics.csv`` (BPTT epochs or STDP phases).

One panel per quantity: ``train_loss``/``val_loss`` share the panel ``loss``, every ``*accuracy``
column shares ``accuracy``; other numeric columns get their own panel (``lr`` on a log scale). When
the CSV has a ``phase`` column (STDP runs log train/compress/label/test rows), each phase is its own
series, so rows of different phases are never joined by a line.

STDP ``label``/``test`` rows count *their own* examples (e.g. ``test,2000`` after 8,000 training
examples); they are measured on the trained network, so they are drawn at the end of training (the x of
the last training row before them, 0 if none) as large markers (label: diamond, test: star) without a
line, labelled "at end of training". A series whose x goes back (a ``metrics.csv`` holding several
runs appended, or a resumed run that repeats epochs) is broken there: every run keeps its own line,
none joined to the next, and the title says so::

    fig = curves_figure("runs/bptt-1/metrics.csv")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from nsnn.io import read_csv
from visualizer.render import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

X_COLUMNS = ("epoch", "step", "iteration", "examples", "example")
SPLITS = ("train_", "val_", "test_")
SHARED_PANELS = ("accuracy", "loss")
# Phases measured on the trained network, and their markers (no line joins their points).
EVALUATION_MARKERS = {"label": "D", "test": "*"}


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


class Series(NamedTuple):
    """One plotted series: its legend ``label``, colour index ``pid`` (its phase), points, and for an
    evaluation phase (``EVALUATION_MARKERS``) its marker, drawn at the end of training without a line."""

    label: str
    pid: int
    xs: np.ndarray
    ys: np.ndarray
    evaluation_marker: str | None


def evaluation_x(x: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """``x`` with every evaluation row (``EVALUATION_MARKERS``) moved to the x of the last row of another
    phase before it (the end of training; 0 when no training row precedes it)."""
    out = x.copy()
    trained = 0.0
    for i, phase in enumerate(phases):
        if phase in EVALUATION_MARKERS:
            out[i] = trained
        elif np.isfinite(x[i]):
            trained = float(x[i])
    return out


def break_backward(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``xs``/``ys`` with a NaN inserted wherever x decreases, so that the plotted line breaks there."""
    back = np.flatnonzero(np.diff(xs) < 0) + 1
    return np.insert(xs, back, np.nan), np.insert(ys, back, np.nan)


def _legend_above_data(ax: Axes, entries: int) -> None:
    """The legend in a band added above the data (linear y), so that no point lies under it;
    matplotlib's "best" place for log-scaled panels."""
    if ax.get_yscale() != "linear":
        ax.legend(fontsize=7)
        return
    low, high = ax.get_ylim()
    band = min(0.6, 0.07 * entries + 0.05)  # of the axes height: one 7-point line per entry
    ax.set_ylim(low, high + (high - low) * band / (1 - band))
    ax.legend(fontsize=7, loc="upper left", frameon=False)


def curves_figure(metrics: str | Path, title: str = "") -> Figure:
    """The figure described in the module docstring; ``ValueError`` if the CSV has nothing to plot."""
    from matplotlib.ticker import MaxNLocator

    rows = read_csv(metrics)
    if not rows:
        raise ValueError(f"{metrics} has a header but no rows: nothing to plot yet")
    columns = numeric_columns(rows)
    x_name = next((c for c in X_COLUMNS if c in columns), None)
    x = columns.pop(x_name) if x_name else np.arange(1, len(rows) + 1, dtype=float)
    phases = np.array([r.get("phase") or "" for r in rows])
    x = evaluation_x(x, phases)
    phase_ids = {phase: k for k, phase in enumerate(dict.fromkeys(phases))}
    panels: dict[str, list[Series]] = {}
    for name, values in columns.items():
        for phase, pid in phase_ids.items():
            keep = (phases == phase) & np.isfinite(values) & np.isfinite(x)
            if keep.any():
                evaluation_marker = EVALUATION_MARKERS.get(phase)
                if evaluation_marker:
                    label = f"{name} ({phase} at end of training)"
                else:
                    label = f"{name} ({phase})" if phase else name
                panels.setdefault(panel_of(name), []).append(
                    Series(label, pid, x[keep], values[keep], evaluation_marker)
                )
    if not panels:
        raise ValueError(f"{metrics} has no numeric values to plot besides {x_name!r}")
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = new_figure(4.2 * cols, 3.0 * nrows + 0.4)
    runs_broken = False
    finite_x = x[np.isfinite(x)]
    integer_x = bool(np.all(finite_x == np.round(finite_x)))
    for k, (panel, series) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, cols, k + 1)
        for k_series, line in enumerate(series):
            # One colour per phase across panels (STDP); else one per column within the panel.
            color = f"C{line.pid if len(phase_ids) > 1 else k_series}"
            if line.evaluation_marker:
                ax.plot(
                    line.xs,
                    line.ys,
                    ls="none",
                    marker=line.evaluation_marker,
                    ms=8,
                    mec="k",
                    mew=0.5,
                    label=line.label,
                    color=color,
                )
                continue
            xs, ys = break_backward(line.xs, line.ys)
            runs_broken |= xs.size > line.xs.size
            marker = "o" if line.xs.size <= 30 else None
            ax.plot(xs, ys, marker=marker, ms=3, label=line.label, color=color)
        if panel == "lr" and all(np.all(line.ys > 0) for line in series):
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(x_name or "row", fontsize=8)
        if integer_x:  # epochs, steps, examples: no fractional ticks around a single one
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            _legend_above_data(ax, len(series))
    source = f"{Path(metrics).parent.name}/{Path(metrics).name}"
    note = (
        f"; {x_name or 'row'} goes back: several runs in this file, each its own line" if runs_broken else ""
    )
    fig.suptitle(title or f"Training curves ({source}){note}", fontsize=10)
    fig.tight_layout()
    return fig
