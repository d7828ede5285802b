"""Graph files for Gephi/Cytoscape (GraphML, GEXF) and for code (networkx node-link JSON).

Every graph the visualizer builds holds only scalar attributes (bool, int, float, str: shapes are
strings like ``"[4, 2, 64, 32, 32]"``), which is what GraphML and GEXF can store; :func:`export`
checks that before writing, so a foreign graph with a list attribute fails with the attribute named
instead of producing a file Gephi cannot read. GEXF declares one type per attribute key, so a key
holding ints on some nodes and floats on others is written as floats (:func:`uniform_attribute_types`).
GraphML and JSON keep the graph-level attributes (``kind``, ``sparsity``, ``synapses_alive``, ...;
JSON also has a top-level ``creator`` key naming the visualizer); GEXF has no place for them (networkx
writes node and edge attributes only), so a GEXF file is for viewing and cannot be drawn again::

    export(g, "figs/topology.graphml"); export(g, "figs/topology.json")
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from nsnn.io import atomic_write, atomic_write_text
from visualizer.render import WRITER_MARK

if TYPE_CHECKING:
    import networkx as nx


def _marked_xml(write: Callable[[IO[bytes]], None], f: IO[bytes]) -> None:
    """XML from ``write``, with a comment naming :data:`WRITER_MARK` after the XML declaration."""
    buffer = io.BytesIO()
    write(buffer)
    xml = buffer.getvalue()
    end = xml.index(b"?>") + 2 if xml.startswith(b"<?xml") else 0
    f.write(xml[:end] + f"\n<!-- written by {WRITER_MARK} -->".encode() + xml[end:])


def _graphml(graph: nx.DiGraph, f: IO[bytes]) -> None:
    import networkx as nx

    _marked_xml(lambda out: nx.write_graphml(graph, out), f)


def _gexf(graph: nx.DiGraph, f: IO[bytes]) -> None:
    import networkx as nx

    _marked_xml(lambda out: nx.write_gexf(uniform_attribute_types(graph), out), f)


def _uniform(items: list[dict[str, Any]]) -> None:
    """Give each attribute key of ``items`` (all nodes' or all edges' data) one type, in place: ints
    mixed with floats become floats, any other mix becomes strings."""
    types: dict[str, set[type]] = {}
    for data in items:
        for key, value in data.items():
            types.setdefault(key, set()).add(type(value))
    for key, found in types.items():
        if len(found) < 2:
            continue
        convert = float if found <= {int, float} else str
        for data in items:
            if key in data:
                data[key] = convert(data[key])


def uniform_attribute_types(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` whose node attributes, and whose edge attributes, each have one type per key.

    GEXF declares one type per attribute key, taken from the first value written: a key holding the int
    2 on one node and the float 2.5 on another (e.g. ``tau`` of two third-party neurons) would be
    declared ``long`` and the file could not be read back. Mixed ints and floats become floats (equal
    values); any other mix becomes strings.
    """
    uniform = graph.copy()
    _uniform([data for _, data in uniform.nodes(data=True)])
    _uniform([data for *_, data in uniform.edges(data=True)])
    return uniform


def _json(graph: nx.DiGraph) -> str:
    import networkx as nx

    return json.dumps({"creator": WRITER_MARK, **nx.node_link_data(graph, edges="edges")}, indent=1)


_BINARY_WRITERS: dict[str, Callable[[nx.DiGraph, IO[bytes]], None]] = {"graphml": _graphml, "gexf": _gexf}
_TEXT_WRITERS: dict[str, Callable[[nx.DiGraph], str]] = {"json": _json}
GRAPH_FORMATS = (*_BINARY_WRITERS, *_TEXT_WRITERS)


def _check_scalar(where: str, key: str, value: Any) -> None:
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return
    raise ValueError(
        f"{where} attribute {key!r} = {value!r} ({type(value).__name__}) is not a finite "
        "bool/int/float/str scalar, so GraphML/GEXF cannot store it"
    )


def check_attributes(graph: nx.DiGraph) -> None:
    """Raise ``ValueError`` naming the first attribute that is not a finite scalar."""
    for key, value in graph.graph.items():
        _check_scalar("graph", key, value)
    for node, data in graph.nodes(data=True):
        for key, value in data.items():
            _check_scalar(f"node {node!r}", key, value)
    for src, dst, data in graph.edges(data=True):
        for key, value in data.items():
            _check_scalar(f"edge {src!r}->{dst!r}", key, value)


def export(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` as GraphML, GEXF or node-link JSON by extension (atomically).

    ``.graphml``/``.gexf`` open in Gephi and Cytoscape; ``.json`` reloads with
    ``networkx.node_link_graph(json.load(f), edges="edges")``. Other extensions raise ``ValueError``.
    """
    path = Path(path).expanduser()
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in GRAPH_FORMATS:
        raise ValueError(f"cannot export to {str(path)!r}: use one of the extensions {list(GRAPH_FORMATS)}")
    check_attributes(graph)
    if fmt in _TEXT_WRITERS:
        return atomic_write_text(path, _TEXT_WRITERS[fmt](graph))
    return atomic_write(path, lambda f: _BINARY_WRITERS[fmt](graph, f))
