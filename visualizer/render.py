"""Headless figures, atomic image files, and output paths that cannot escape their folder.

Figures are ``matplotlib.figure.Figure`` objects bound to the Agg canvas inside each plotting call:
nothing touches ``pyplot`` or the global backend, so plotting works without a display and does not
change the backend of a notebook that imports the visualizer::

    fig = new_figure(6, 4); fig.add_subplot().plot([0, 1])
    save_figure(fig, "figs/line.svg")        # PNG or SVG by extension, written atomically
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nsnn.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_FORMATS = ("png", "svg")
CLASS_COLORS = "tab10"


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches on an Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def image_format(path: str | Path) -> str:
    """``png`` or ``svg`` from the file extension; any other extension raises ``ValueError``."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in IMAGE_FORMATS:
        raise ValueError(f"cannot draw to {str(path)!r}: use one of the extensions {list(IMAGE_FORMATS)}")
    return ext


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` as PNG or SVG (by extension), atomically; returns the path."""
    fmt = image_format(path)
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
    return path


def safe_output(out_dir: str | Path, name: str) -> Path:
    """``out_dir/name`` after resolving links; ``ValueError`` if it would land outside ``out_dir``."""
    root = Path(out_dir).expanduser().resolve()
    if not name or Path(name).is_absolute() or any(part in {"..", ""} for part in Path(name).parts):
        raise ValueError(f"refusing output name {name!r}: it must be a plain file name inside {root}")
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"refusing to write {target}: it is outside the output folder {root}")
    return target


def class_color(assignment: int):
    """Colour of a class (tab10); grey for unassigned (−1) neurons."""
    from matplotlib import colormaps

    if assignment < 0:
        return (0.6, 0.6, 0.6, 1.0)
    return colormaps[CLASS_COLORS](assignment % 10)
