"""Headless figures, atomic image files, and output paths that cannot escape their folder.

Figures are ``matplotlib.figure.Figure`` objects bound to the Agg canvas inside each plotting call:
nothing touches ``pyplot`` or the global backend, so plotting works without a display and does not
change the backend of a notebook that imports the visualizer::

    fig = new_figure(6, 4); fig.add_subplot().plot([0, 1])
    save_figure(fig, "figs/line.svg")        # PNG or SVG by extension, written atomically

Every file the visualizer writes carries :data:`WRITER_MARK` near its start (PNG ``Software`` text,
SVG ``Creator``, a comment in GraphML/GEXF, a ``creator`` key in JSON), so the command line can tell
its own earlier output, which it replaces, from anyone else's file (:func:`written_by_visualizer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nsnn.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_FORMATS = ("png", "svg")
WRITER_MARK = "nsnn visualizer"
_MARK_WITHIN = 16384  # bytes from the start of a file where WRITER_MARK is looked for
CLASS_COLORS = "tab10"
# Unassigned (never fired) neurons: black lines and labels, hollow markers (UNASSIGNED_FACE), which no
# tab10 class colour resembles (tab10's class 7 is a mid grey).
UNASSIGNED_COLOR = (0.0, 0.0, 0.0, 1.0)
UNASSIGNED_FACE = (1.0, 1.0, 1.0, 1.0)


def percent(fraction: float, digits: int = 1) -> str:
    """``fraction`` as a percentage with ``digits`` decimals, more (up to 4) where a fraction strictly
    between 0 and 1 would otherwise read as 0 % or 100 % (1,254 weights alive of 313,600: "99.6%"),
    and "<0.0001%" / ">99.9999%" beyond that."""
    for d in range(digits, 5):
        text = f"{100 * fraction:.{d}f}"
        if not 0 < fraction < 1 or 0 < float(text) < 100:
            return f"{text}%"
    return "<0.0001%" if fraction < 0.5 else ">99.9999%"


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
    path = Path(path).expanduser()
    metadata = {"Software": WRITER_MARK} if fmt == "png" else {"Creator": WRITER_MARK}
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata))
    return path


def written_by_visualizer(path: str | Path) -> bool:
    """True if ``path`` is a file that carries :data:`WRITER_MARK` (written by the visualizer)."""
    try:
        with open(path, "rb") as f:
            return WRITER_MARK.encode() in f.read(_MARK_WITHIN)
    except OSError:
        return False


def safe_output(out_dir: str | Path, name: str) -> Path:
    """``out_dir/name`` after resolving links; ``ValueError`` if ``name`` is not a plain file name (empty,
    ``.``/``..``, or holding a path separator: ``sub/x``, ``../x``, ``/x``) or would land outside ``out_dir``
    (a symlink)."""
    root = Path(out_dir).expanduser().resolve()
    if name in {"", ".", ".."} or Path(name).name != name:
        raise ValueError(f"refusing output name {name!r}: it must be a plain file name inside {root}")
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"refusing to write {target}: it is outside the output folder {root}")
    return target


def class_color(assignment: int) -> tuple[float, float, float, float]:
    """RGBA colour of a class (tab10); black (``UNASSIGNED_COLOR``) for unassigned (−1) neurons."""
    from matplotlib import colormaps

    if assignment < 0:
        return UNASSIGNED_COLOR
    return colormaps[CLASS_COLORS](assignment % 10)


def class_face(assignment: int) -> tuple[float, float, float, float]:
    """Marker fill of a neuron: its class colour, white (hollow, ``UNASSIGNED_FACE``) when unassigned."""
    return UNASSIGNED_FACE if assignment < 0 else class_color(assignment)
