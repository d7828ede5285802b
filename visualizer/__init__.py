"""nsnn visualizer: network graphs (networkx) and figures of STDP and BPTT spiking networks.

Graphs — ``topology(obj)`` returns a ``networkx.DiGraph`` for ``obj`` = an ``nn.Module``, an nsnn
checkpoint, a BPTT run directory or an STDP run directory:

* STDP: input pixels → excitatory → inhibitory neurons, edges exactly the surviving synapses;
* modules: the traced layer graph (conv/BN/neuron/residual add/pool/linear) with shapes, parameter
  counts, weight sparsity, neuron type/noise and, given a batch, firing rates.

``draw(graph, path)`` writes PNG/SVG, ``export(graph, path)`` GraphML/GEXF/JSON. Figures:
``receptive_fields``, ``weight_histograms``, ``raster``, ``firing_rates``, ``curves``. Everything is
headless (Agg canvas). The same from the shell: ``python -m visualizer RUN --out figs/``::

    import visualizer
    g = visualizer.topology("runs/stdp-1")
    visualizer.draw(g, "figs/stdp.png"); visualizer.export(g, "figs/stdp.graphml")
"""

from visualizer.api import (
    FIGURES,
    curves,
    draw,
    firing_rates,
    raster,
    receptive_fields,
    topology,
    weight_histograms,
)
from visualizer.export import GRAPH_FORMATS, export
from visualizer.render import IMAGE_FORMATS
from visualizer.sources import ModuleSource, StdpRun, load_source, load_stdp_run

__all__ = [
    "FIGURES",
    "GRAPH_FORMATS",
    "IMAGE_FORMATS",
    "ModuleSource",
    "StdpRun",
    "curves",
    "draw",
    "export",
    "firing_rates",
    "load_source",
    "load_stdp_run",
    "raster",
    "receptive_fields",
    "topology",
    "weight_histograms",
]
