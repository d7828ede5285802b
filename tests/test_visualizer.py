"""Visualizer: exact graph structure (STDP synapses, traced layer graphs), exports, figures, CLI safety."""

from __future__ import annotations

import itertools
import json
import os
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

import visualizer
from nsnn.io import CsvLog, atomic_savez, write_json
from nsnn.layers import SeqToANN
from nsnn.neurons import LIF, NILIF
from visualizer.__main__ import main
from visualizer.activity import input_shape
from visualizer.draw_stdp import draw_stdp
from visualizer.sources import ModuleSource
from visualizer.trace import layer_graph

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    """A PNG with something drawn on it: over 1 % of its pixels differ from the background colour."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path
    from matplotlib.image import imread

    pixels = imread(path)
    pixels = pixels.reshape(-1, pixels.shape[-1]) if pixels.ndim == 3 else pixels.reshape(-1, 1)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    assert len(colours) > 2 and 1 - counts.max() / len(pixels) > 0.01, path


def assert_svg(path):
    """An SVG with drawn shapes in it, not only its background."""
    text = path.read_text()
    assert "<svg" in text[:2000] and text.rstrip().endswith("</svg>"), path
    assert text.count("<path") + text.count("<use") >= 10, path


# ---- fixtures ------------------------------------------------------------------------------------------
def make_stdp_run(root, n_input=16, n_exc=6, keep=0.4, seed=0, before=True):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_input, n_exc), dtype=np.float32)
    mask = dense >= np.quantile(dense, 1 - keep)
    arrays = {
        "w_xe": np.where(mask, dense, 0).astype(np.float32),
        "mask": mask,
        "theta": rng.random(n_exc, dtype=np.float32) * 0.02,
        "assignments": np.array([(j % 3) if j else -1 for j in range(n_exc)], dtype=np.int64),
    }
    if before:
        arrays["w_xe_dense"] = dense
    atomic_savez(root / "weights.npz", **arrays)
    write_json(
        root / "config.json",
        {"n_input": n_input, "n_exc": n_exc, "w_max": 1.0, "w_exc_inh": 10.4, "w_inh_exc": 17.0},
    )
    log = CsvLog(root / "metrics.csv", ["phase", "examples", "synapses", "running_accuracy", "accuracy"])
    log.append({"phase": "train", "examples": 100, "synapses": n_input * n_exc, "running_accuracy": 0.3})
    log.append({"phase": "compress", "examples": 100, "synapses": int(mask.sum())})
    log.append({"phase": "train", "examples": 200, "synapses": int(mask.sum()), "running_accuracy": 0.5})
    log.append({"phase": "test", "examples": 50, "synapses": int(mask.sum()), "accuracy": 0.6})
    return arrays


class DuckNeuron(nn.Module):
    """A neuron from 'another library': only `tau` and `threshold`, a Python loop over time."""

    def __init__(self):
        super().__init__()
        self.tau, self.threshold = 3.0, 0.5

    def forward(self, x):
        v, out = torch.zeros_like(x[0]), []
        for t in range(x.shape[0]):
            v = v + (x[t] - v) / self.tau
            s = (v >= self.threshold).float()
            v = v * (1 - s)
            out.append(s)
        return torch.stack(out)


class TinyResNet(nn.Module):
    """stem → residual block (conv shortcut) → residual block (identity written as `out + x`) → head."""

    def __init__(self):
        super().__init__()
        self.stem = SeqToANN(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.sn0 = NILIF(sigma=0.4)
        self.conv1 = SeqToANN(nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8))
        self.sn1 = LIF()
        self.short = SeqToANN(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        self.sn2 = DuckNeuron()
        self.conv2 = SeqToANN(nn.Conv2d(8, 8, 3, padding=1, bias=False))
        self.sn3 = NILIF()
        self.head = SeqToANN(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        x = self.sn0(self.stem(x))
        y = self.sn2(self.sn1(self.conv1(x)) + self.short(x))
        y = self.sn3(self.conv2(y) + y)
        return self.head(y)


@pytest.fixture
def stdp_dir(tmp_path):
    root = tmp_path / "stdp"
    return root, make_stdp_run(root)


@pytest.fixture(scope="module")
def bptt_dir(tmp_path_factory):
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    root = tmp_path_factory.mktemp("bptt")
    torch.manual_seed(0)
    model = create("mnist_convnet", num_classes=10, in_channels=1, image_size=28)
    name, linear = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        linear.weight[:, :100] = 0
    config = {"dataset": "mnist", "timestep": 2, "encoding": "direct"}
    save_checkpoint(make_checkpoint(model, epoch=1, config=config), root / "best.pt")
    log = CsvLog(
        root / "metrics.csv", ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]
    )
    for e in (1, 2):
        log.append(
            {
                "epoch": e,
                "train_loss": 1 / e,
                "train_accuracy": 0.5 * e,
                "val_loss": 1.1 / e,
                "val_accuracy": 0.4 * e,
                "lr": 0.1 / e,
            }
        )
    return root, name, 100 / linear.in_features


# ---- STDP graph --------------------------------------------------------------------------------------
def test_stdp_graph_holds_exactly_the_surviving_synapses(stdp_dir):
    root, arrays = stdp_dir
    g = visualizer.topology(root)
    mask, n_input, n_exc = arrays["mask"], 16, 6
    assert g.number_of_nodes() == n_input + 2 * n_exc
    assert g.number_of_edges() == int(mask.sum()) + n_exc
    synapses = {
        (int(u[3:]), int(v[4:])): d["weight"] for u, v, d in g.edges(data=True) if d["kind"] == "input_exc"
    }
    assert set(synapses) == set(zip(*np.nonzero(mask), strict=True))
    for (i, j), w in synapses.items():
        assert w == pytest.approx(float(arrays["w_xe"][i, j]))
    assert all(g.edges[f"exc_{j}", f"inh_{j}"]["weight"] == 10.4 for j in range(n_exc))
    assert g.nodes["exc_0"]["assignment"] == -1 and g.nodes["exc_4"]["assignment"] == 1
    assert g.nodes["exc_2"]["theta"] == pytest.approx(float(arrays["theta"][2]))
    assert g.nodes["exc_3"]["fan_in"] == int(mask[:, 3].sum())
    assert (g.nodes["in_5"]["row"], g.nodes["in_5"]["col"]) == (1, 1)
    assert g.graph["synapses_alive"] == int(mask.sum()) and g.graph["sparsity"] == pytest.approx(
        1 - mask.mean()
    )

    full = visualizer.topology(root, inhibition="full")
    assert full.number_of_edges() == int(mask.sum()) + n_exc + n_exc * (n_exc - 1)
    assert not full.has_edge("inh_2", "exc_2") and full.edges["inh_2", "exc_3"]["weight"] == 17.0
    with pytest.raises(ValueError, match="summary"):
        visualizer.topology(root, inhibition="none")


def test_stdp_full_size_graph_counts_and_drawing(tmp_path):
    root = tmp_path / "big"
    arrays = make_stdp_run(root, n_input=784, n_exc=400, keep=0.1, seed=1, before=False)
    g = visualizer.topology(root / "weights.npz")
    assert g.number_of_nodes() == 784 + 800
    assert g.number_of_edges() == int(arrays["mask"].sum()) + 400
    path = visualizer.draw(g, tmp_path / "big.png", dpi=40)
    assert_png(path)


def make_quantized_stdp_run(root, config):
    """A 4-bit-like STDP run: half the synapses kept, 3 distinct nonzero values, some kept at exactly 0."""
    rng = np.random.default_rng(3)
    mask = rng.random((16, 6)) < 0.5
    w_xe = np.where(mask, rng.choice([0.0, 2 / 15, 7 / 15, 1.0], size=mask.shape), 0.0).astype(np.float32)
    arrays = {"w_xe": w_xe, "mask": mask, "assignments": np.arange(6) % 3, "w_xe_dense": rng.random((16, 6))}
    atomic_savez(root / "weights.npz", **arrays)
    write_json(root / "config.json", {"n_input": 16, "n_exc": 6, "w_max": 1.0, **config})
    return mask, w_xe


def test_stdp_alive_synapses_are_kept_and_nonzero(tmp_path):
    from visualizer.api import histogram_figure

    root = tmp_path / "b4"
    mask, w_xe = make_quantized_stdp_run(root, {"bits": 4, "levels": None})
    alive = mask & (w_xe != 0)
    zero = int((mask & (w_xe == 0)).sum())
    assert zero > 0 and alive.any()
    g = visualizer.topology(root)
    synapses = {(int(u[3:]), int(v[4:])) for u, v, k in g.edges(data="kind") if k == "input_exc"}
    assert synapses == set(zip(*np.nonzero(alive), strict=True))
    assert g.number_of_edges() == int(alive.sum()) + 6
    assert g.graph["synapses_alive"] == int(alive.sum()) and g.graph["synapses_zero_weight"] == zero
    assert g.graph["sparsity"] == pytest.approx(1 - alive.mean())
    assert [g.nodes[f"exc_{j}"]["fan_in"] for j in range(6)] == alive.sum(axis=0).tolist()
    title = draw_stdp(g)._suptitle.get_text()
    assert f"{int(alive.sum()):,} of 96 input synapses alive" in title

    def after_label(source):
        texts = [
            t.get_text()
            for t in histogram_figure(visualizer.load_source(source)).axes[0].get_legend().get_texts()
        ]
        return next(t for t in texts if t.startswith("after"))

    label = after_label(root)
    assert label.startswith(f"after: {int(alive.sum())} of 96 alive"), label
    assert "3 distinct values, 4-bit weights (configured)" in label and "≈" not in label
    make_quantized_stdp_run(root, {"bits": 32, "levels": [0.0, 0.25, 0.5, 0.75, 1.0]})
    assert "3 distinct values, 3-bit weights (configured)" in after_label(root)  # ⌈log2 5⌉
    make_quantized_stdp_run(root, {"bits": 32, "levels": None})
    label = after_label(root)
    assert label.endswith("3 distinct values observed") and "bit" not in label, label


# ---- layer graphs ------------------------------------------------------------------------------------
def test_layer_graph_of_tiny_resnet_is_exact():
    model = TinyResNet()
    with torch.no_grad():
        model.conv2[0].weight[:2] = 0  # 2 of 8 output kernels pruned
    model.train()
    x = torch.rand(3, 2, 2, 6, 6) * 4
    g = layer_graph(model, x)

    leaves = [
        "stem.0",
        "stem.1",
        "sn0",
        "conv1.0",
        "conv1.1",
        "sn1",
        "short.0",
        "short.1",
        "sn2",
        "conv2.0",
        "sn3",
        "head.0",
        "head.1",
        "head.2",
    ]
    adds = [n for n, k in g.nodes(data="kind") if k == "add"]
    assert sorted(g) == sorted([*leaves, *adds, "input", "output"]) and len(adds) == 2
    expected = {
        ("input", "stem.0"),
        ("stem.0", "stem.1"),
        ("stem.1", "sn0"),
        ("sn0", "conv1.0"),
        ("sn0", "short.0"),
        ("conv1.0", "conv1.1"),
        ("conv1.1", "sn1"),
        ("short.0", "short.1"),
        ("sn1", adds[0]),
        ("short.1", adds[0]),
        (adds[0], "sn2"),
        ("sn2", "conv2.0"),
        ("conv2.0", adds[1]),
        ("sn2", adds[1]),
        (adds[1], "sn3"),
        ("sn3", "head.0"),
        ("head.0", "head.1"),
        ("head.1", "head.2"),
        ("head.2", "output"),
    }
    assert set(g.edges) == expected
    assert nx.is_directed_acyclic_graph(g)
    assert model.training and all(m.training for m in model.modules())  # flags restored

    assert g.nodes["conv1.0"]["out_shape"] == "[3, 2, 8, 3, 3]"  # [T, B, ...] although run on [T·B, ...]
    assert g.nodes["head.2"]["out_shape"] == "[3, 2, 5]"
    assert g.nodes["conv1.0"]["params"] == 4 * 8 * 9 and g.nodes["head.2"]["params"] == 8 * 5 + 5
    assert g.nodes["conv2.0"]["weight_sparsity"] == pytest.approx(0.25)
    assert g.nodes["conv1.0"]["weight_sparsity"] == 0.0
    assert g.nodes["sn0"]["neuron_type"] == "NILIF" and g.nodes["sn0"]["noise"] == "gaussian"
    assert g.nodes["sn0"]["sigma"] == pytest.approx(0.4)
    assert g.nodes["sn1"]["noise"] == "none" and g.nodes["sn1"]["surrogate"] == "gaussian"
    assert g.nodes["sn2"]["kind"] == "neuron" and g.nodes["sn2"]["tau"] == 3.0  # duck-typed neuron

    spikes = {}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, a, o, n=n: spikes.setdefault(n, o))
        for n in ("sn0", "sn1", "sn2", "sn3")
    ]
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        model(x)
    for h in hooks:
        h.remove()
    for name, s in spikes.items():
        assert g.nodes[name]["firing_rate"] == pytest.approx(float(s.float().mean()), abs=1e-6)
        assert g.nodes[name]["neurons"] == s[0, 0].numel()
    assert g.graph["rates_recorded"] is True and g.graph["neuron_layers"] == 4


def test_layer_graph_of_spiking_resnet19_has_its_residual_adds():
    from nsnn.models import create
    from nsnn.neurons import SpikingNeuron

    model = create("spiking_resnet19", num_classes=10, in_channels=3)
    g = visualizer.topology(model, input_shape=(2, 1, 3, 8, 8))
    kinds = [k for _, k in g.nodes(data="kind")]
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert kinds.count("conv") == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert kinds.count("norm") == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert kinds.count("neuron") == sum(isinstance(m, SpikingNeuron) for m in model.modules()) == 18
    assert kinds.count("linear") == 2 and kinds.count("add") == len(blocks) == 8
    assert all(g.in_degree(n) == 2 for n, k in g.nodes(data="kind") if k == "add")
    assert nx.is_directed_acyclic_graph(g) and nx.has_path(g, "input", "output")
    assert g.graph["total_params"] == sum(p.numel() for p in model.parameters())
    assert g.nodes["stem.0.0"]["out_shape"] == "[2, 1, 64, 8, 8]"
    assert "firing_rate" not in g.nodes["stem.1"]  # dummy input: shapes only


def test_neuron_detection_by_class_and_duck_typing():
    from visualizer.modules import is_neuron, layer_kind

    assert is_neuron(NILIF()) and is_neuron(LIF()) and is_neuron(DuckNeuron())
    assert not is_neuron(nn.Softplus()) and layer_kind(nn.Softplus()) == "module"  # has beta + threshold
    assert layer_kind(nn.Identity()) == layer_kind(nn.Sequential()) == "identity"


def test_module_input_shape_is_probed_when_not_given():
    model = nn.Sequential(SeqToANN(nn.Flatten(), nn.Linear(784, 10)), LIF())
    g = visualizer.topology(model)
    assert g.graph["input_shape"] == "[4, 1, 1, 28, 28]"
    assert g.nodes["1"]["out_shape"] == "[4, 1, 10]"
    noisy = nn.Sequential(SeqToANN(nn.Flatten(), nn.Linear(784, 10)), NILIF())
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    visualizer.topology(noisy)  # the probe runs stochastic neurons without touching the caller's RNG
    assert torch.equal(torch.rand(3), expected)
    on_meta = nn.Sequential(SeqToANN(nn.Flatten(), nn.Linear(784, 10))).to("meta")
    assert input_shape(ModuleSource(on_meta)) == (4, 1, 1, 28, 28)


def _routing_graph() -> nx.DiGraph:
    """A layer graph with every kind of edge: elbows into other lanes (a -> e passes b's row), two
    overlapping skips in one lane (input -> f, a -> g), feedback into an earlier row of another lane
    on the left (e -> b, d's row beside it) and on the right (c -> b), and of the same lane (g -> f),
    and a self-loop (d)."""
    g = nx.DiGraph(kind="layers", model="Routing", input_shape="[2, 8]", layout="none")
    for i, name in enumerate(["input", "a", "b", "c", "d", "e", "f", "g", "output"]):
        kind = name if name in ("input", "output") else "linear"
        g.add_node(name, order=i, kind=kind, module_type="Linear", out_shape="[2, 8]", calls=1)
    edges = "input-a input-b a-c b-d a-e c-f d-f e-f input-f f-g a-g g-output e-b c-b g-f d-d"
    g.add_edges_from((tuple(e.split("-")) for e in edges.split()), shape="[2, 8]", via="")
    return g


def _segments(patch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive vertex pairs of an arrow patch's drawn path (line and head), in data coordinates."""
    return [
        (p[i], p[i + 1]) for p in patch.get_path().to_polygons(closed_only=False) for i in range(len(p) - 1)
    ]


def _enters(p: np.ndarray, q: np.ndarray, box) -> bool:
    """Whether the segment p-q passes through the interior of ``box`` (a FancyBboxPatch), by clipping
    the segment to the box shrunk by a hair (Liang-Barsky)."""
    eps = 1e-6
    lo = np.array([box.get_x(), box.get_y()]) + eps
    hi = lo + np.array([box.get_width(), box.get_height()]) - 2 * eps
    t0, t1, d = 0.0, 1.0, q - p
    for k in range(2):
        for num, den in ((p[k] - lo[k], -d[k]), (hi[k] - p[k], d[k])):
            if den == 0:
                if num < 0:
                    return False
            elif den < 0:
                t0 = max(t0, num / den)
            else:
                t1 = min(t1, num / den)
    return t0 < t1


def _overlap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether two segments lie on one line and share a stretch of positive length."""
    (p, q), (r, s) = a, b
    d = q - p
    length = float(np.hypot(*d))
    if length < 1e-9 or abs(np.cross(d, r - p)) > 1e-6 * length or abs(np.cross(d, s - p)) > 1e-6 * length:
        return False
    t = sorted([float(np.dot(r - p, d)) / length, float(np.dot(s - p, d)) / length])
    return min(length, t[1]) - max(0.0, t[0]) > 1e-6


def _crosses(line1: np.ndarray, line2: np.ndarray) -> bool:
    """Whether a horizontal segment of one polyline crosses a vertical one of the other, inside both."""
    for (p, q), (r, s) in itertools.product(itertools.pairwise(line1), itertools.pairwise(line2)):
        for (a, b), (c, d) in (((p, q), (r, s)), ((r, s), (p, q))):
            if a[1] == b[1] and c[0] == d[0]:
                x, y = c[0], a[1]
                if min(a[0], b[0]) < x < max(a[0], b[0]) and min(c[1], d[1]) < y < max(c[1], d[1]):
                    return True
    return False


def _brackets(arrows: list) -> dict[str, tuple[float, float, float]]:
    """The edges drawn as brackets beside a lane (skips, backs and loops: out of a box's side, along
    a gap, back into the same side): edge -> (the x of that side, lowest y, highest y)."""
    found = {}
    for arrow in arrows:
        line = arrow.get_path().to_polygons(closed_only=False)[0]  # the line; the head comes after it
        if (
            len(line) == 4
            and line[1][0] == line[2][0]
            and (line[0][0] - line[1][0]) * (line[3][0] - line[2][0]) > 0
        ):
            found[arrow.get_gid()] = (
                round(float(line[0][0]), 6),
                *sorted((float(line[1][1]), float(line[2][1]))),
            )
    return found


def _check_routes(g: nx.DiGraph, **options) -> dict:
    """Draw ``g`` and check its edges: none passes through a box, two that share no end never run
    along one line, and of two brackets beside one side of a lane whose spans nest, neither crosses
    the other. Returns the edges' arrows by gid."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from visualizer.draw_layers import draw_layers

    ax = draw_layers(g, **options).axes[0]
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(boxes) == g.number_of_nodes()
    for arrow in arrows:
        for p, q in _segments(arrow):
            assert not any(_enters(p, q, box) for box in boxes), (arrow.get_gid(), p, q)
    edges = {arrow.get_gid(): arrow for arrow in arrows}
    assert set(edges) == {f"{u}->{v}" for u, v in g.edges}
    for (e1, a1), (e2, a2) in itertools.combinations(edges.items(), 2):
        (u1, v1), (u2, v2) = e1.split("->"), e2.split("->")
        if u1 == u2 or v1 == v2:  # a fork out of one box, or a join into one, may share its stem
            continue
        for s1 in _segments(a1):
            assert not any(_overlap(s1, s2) for s2 in _segments(a2)), (e1, e2)
    lines = {e: a.get_path().to_polygons(closed_only=False)[0] for e, a in edges.items()}
    for (e1, (x1, lo1, hi1)), (e2, (x2, lo2, hi2)) in itertools.combinations(_brackets(arrows).items(), 2):
        nested = lo1 <= lo2 <= hi2 <= hi1 or lo2 <= lo1 <= hi1 <= hi2
        if x1 == x2 and nested:
            assert not _crosses(lines[e1], lines[e2]), (e1, e2)
    return edges


def test_edges_pass_behind_no_box_and_never_share_a_line():
    # Elbows into another lane ran along the source's row (a -> e behind b, read as b -> e) and a
    # feedback into another lane behind its source's neighbour (e -> b behind d); skips in one lane
    # shared one bracket (input -> f and a -> g read as one line).
    edges = _check_routes(_routing_graph())
    # the two skips' brackets: their verticals stand apart
    verticals = {
        e: {round(float(p[0]), 6) for p, q in _segments(edges[e]) if p[0] == q[0] and abs(p[1] - q[1]) > 1}
        for e in ("input->f", "a->g")
    }
    assert len(verticals["input->f"]) == len(verticals["a->g"]) == 1
    assert verticals["input->f"] != verticals["a->g"]


def test_nested_brackets_beside_one_lane_do_not_cross():
    # Tracks were numbered from a lane gap's left for every edge: backs and loops, which leave the lane
    # on the gap's right, had the shorter one outside the longer (5 -> 3 crossed 6 -> 2, the loop at 4
    # crossed 5 -> 3); a skip sharing its source's track passed inside those nested in it (0 -> 6 on
    # 0 -> 2's track, inside 1 -> 4 and 2 -> 6).
    g = nx.DiGraph(kind="layers", model="Brackets", input_shape="[2, 8]", layout="none")
    for i in range(8):
        g.add_node(f"n{i}", order=i, kind="linear", module_type="Linear", out_shape="[2, 8]", calls=1)
    edges = [(i, i + 1) for i in range(7)] + [(0, 2), (1, 4), (2, 6), (0, 6), (5, 3), (6, 2), (4, 4)]
    g.add_edges_from(((f"n{u}", f"n{v}") for u, v in edges), shape="[2, 8]", via="")
    brackets = _brackets(list(_check_routes(g).values()))
    assert len(brackets) == 7  # every edge but the chain's is a bracket beside the one lane


def test_a_skip_heavy_drawing_widens_each_gap_for_its_own_lines():
    # One global maximum sized every gap, and every edge had a line of its own: a Dense(16) drawing
    # was 18.8 x 31.0 in (with every gap at its least width, as drawn before edges had lines of their
    # own: 8.4 x 15.0 in); a Dense(40) one was too large for PIL.
    from visualizer.draw_layers import draw_layers

    class Dense(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(4 * (i + 1), 4) for i in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = [x]
            for layer in self.layers:
                features.append(layer(torch.cat(features, -1)))
            return torch.cat(features, -1)

    g = visualizer.topology(Dense(16), input_shape=(2, 4))
    width, height = draw_layers(g).get_size_inches()
    assert width <= 1.3 * 8.4 and height <= 1.3 * 15.0, (width, height)


class SnntorchLoop(nn.Module):
    """snntorch's idiom: Leaky called once per step with its membrane passed back in (a self-loop)."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch

        self.fc, self.lif = nn.Linear(6, 4), snntorch.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem, out = self.lif.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), mem)
            out.append(spk)
        return torch.stack(out)


def test_a_neuron_fed_its_own_membrane_draws_a_visible_loop(tmp_path):
    # The self-loop was an arc from a point to itself: nothing visible, and matplotlib warned
    # "invalid value encountered in scalar divide" on every draw.
    from matplotlib.patches import FancyArrowPatch

    from visualizer.draw_layers import draw_layers

    g = visualizer.topology(SnntorchLoop(), input_shape=(3, 2, 6))
    assert ("lif", "lif") in g.edges and g.nodes["lif"]["kind"] == "neuron"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = draw_layers(g)
        fig.canvas.draw()
        visualizer.draw(g, tmp_path / "loop.png")
    dashed = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch) and p.get_linestyle() == "--"]
    assert len(dashed) == 1
    assert np.ptp(dashed[0].get_path().vertices[:, 1]) > 0.1  # a loop with a height, not a point


def test_parametrized_weights_count_once_each_in_the_model_totals():
    # parametrize computes a new weight at each access; keyed by that tensor's id, a freed one's id was
    # reused by the next layer's and overwrote its entry (11,000 weights and 0 % sparsity for 31,000 / 29 %)
    from torch.nn.utils import parametrize

    class Mask(nn.Module):
        def __init__(self, keep: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("keep", keep.float())

        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * self.keep

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 100), nn.Linear(100, 100), nn.Linear(100, 10))
    for i, layer in enumerate(net):
        keep = torch.rand_like(layer.weight) >= (0.9 if i == 0 else 0.0)  # the first layer 90 % pruned
        parametrize.register_parametrization(layer, "weight", Mask(keep))
    g = visualizer.topology(net, input_shape=(2, 100))
    weights = [layer.weight for layer in net]
    assert g.graph["prunable_weights"] == sum(w.numel() for w in weights) == 31_000
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert g.graph["weight_sparsity"] == pytest.approx(zeros / 31_000) and zeros > 8_000


def test_tracing_gives_the_callers_neuron_state_back(tmp_path):
    import snntorch

    # snntorch init_hidden neurons keep their membrane in the module; nsnn single-step ones too
    hidden = nn.Sequential(nn.Linear(10, 20), snntorch.Leaky(beta=0.9, init_hidden=True), nn.Linear(20, 3))
    stepped = nn.Sequential(nn.Linear(10, 20), LIF(step_mode="s"))
    x = torch.rand(2, 10) * 3
    for model in (hidden, stepped):
        model(x)
        model(x)
        neuron = model[1]
        before = neuron.mem.clone()
        visualizer.topology(model, batch=torch.rand(4, 2, 10) * 3)
        visualizer.firing_rates(model, tmp_path / "rates.png", batch=torch.rand(4, 2, 10))
        assert torch.equal(neuron.mem, before), type(neuron).__name__


class InPlaceNeuron(nn.Module):
    """A duck-typed single-step neuron that steps and resets its membrane buffer in place."""

    def __init__(self) -> None:
        super().__init__()
        self.tau, self.threshold = 2.0, 1.0
        self.register_buffer("v", torch.zeros(0), persistent=False)

    def reset(self) -> None:
        self.v.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v.shape != x.shape:
            self.v = torch.zeros_like(x)
        self.v.mul_(0.5).add_(x)
        return (self.v > self.threshold).float()


def test_tracing_leaves_the_state_of_a_neuron_that_resets_in_place_alone():
    # The trace reset the caller's own membrane tensor (reset() zeroed it in place) and stepped it.
    model = nn.Sequential(nn.Linear(4, 4), InPlaceNeuron())
    with torch.no_grad():
        model(torch.ones(2, 4) * 3)
        model(torch.ones(2, 4))
    membrane = model[1].v
    before = membrane.clone()
    visualizer.topology(model, batch=torch.rand(2, 4) * 3)
    assert model[1].v is membrane and torch.equal(membrane, before)


def test_tracing_mid_sequence_keeps_the_membrane_and_its_autograd_graph():
    # The membrane was put back as a detached copy: the steps before the trace got no gradient.
    import snntorch

    for make in (lambda: LIF(step_mode="s"), lambda: snntorch.Leaky(beta=0.9, init_hidden=True)):
        grads = []
        for trace in (False, True):
            torch.manual_seed(0)
            model = nn.Sequential(nn.Linear(10, 20), make())
            x = torch.rand(2, 2, 10) * 3
            model(x[0])
            membrane = model[1].mem
            if trace:
                visualizer.topology(model, input_shape=(2, 10))
                assert model[1].mem is membrane
            model(x[1]).sum().backward()
            grads.append(model[0].weight.grad.clone())
        # the surrogate gradient at step 1 reaches step 0 only through the membrane's graph
        assert torch.equal(grads[0], grads[1]), type(model[1]).__name__


class AssertsRank(nn.Module):
    """An MLP whose forward asserts its input's rank, as users' models often do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = SeqToANN(nn.Linear(784, 10)), LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 3, f"expected [T, B, 784], got {tuple(x.shape)}"
        return self.lif(self.fc(x))


def test_probing_tries_the_next_shape_after_an_assertion_and_numpy_batches_are_accepted(tmp_path):
    # The probe stopped at the first guess (images, 1 × 28 × 28) with the model's raw AssertionError.
    g = visualizer.topology(AssertsRank())
    assert g.graph["input_shape"] == "[4, 1, 784]"
    # An array in memory is a batch like a tensor; it was taken for a file path (TypeError).
    batch = np.random.default_rng(0).random((4, 2, 784), dtype=np.float32)
    g = visualizer.topology(AssertsRank(), batch=batch)
    assert g.nodes["lif"]["out_shape"] == "[4, 2, 10]" and "firing_rate" in g.nodes["lif"]
    assert visualizer.raster(AssertsRank(), tmp_path / "raster.png", batch=batch).is_file()


def test_snntorch_neurons_are_single_step_in_rasters_rates_and_counts():
    import snntorch

    from visualizer.activity import spike_activity

    # (spk, mem) outputs: the layer was dropped ("the model has no spiking neuron layers")
    layers = spike_activity(SnntorchLoop(), torch.rand(5, 3, 6) * 4)
    assert [(a.name, a.neurons, a.raster.shape) for a in layers] == [("lif", 4, (5, 4))]

    # init_hidden conv neurons called once per step: each call was taken for a [T, B] sequence (the
    # batch read as time, one channel kept, a "place" per step)
    class PerStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(1, 8, 5), snntorch.Leaky(beta=0.9, init_hidden=True))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([self.net(x_t) for x_t in x])

    x = torch.rand(5, 2, 1, 16, 16) * 3
    layers = spike_activity(PerStep(), x)
    assert [(a.name, a.neurons, a.raster.shape[0]) for a in layers] == [("net.1", 8 * 12 * 12, 5)]
    g = visualizer.topology(PerStep(), batch=x)
    assert g.nodes["net.1"]["neurons"] == 8 * 12 * 12 and g.nodes["net.1"]["calls"] == 5


def test_a_per_step_model_is_probed_one_step_per_call():
    # A model stepped once per call was traced on [T, B, F] (T folded into its batch: a "[4, 1, 10]"
    # membrane), and one with a conv could not be probed at all (no [T, B, C, H, W] runs).
    import snntorch

    flat = nn.Sequential(nn.Linear(784, 10), snntorch.Leaky(beta=0.9, init_hidden=True))
    g = visualizer.topology(flat)
    assert (g.graph["input_shape"], g.graph["layout"]) == ("[1, 784]", "per-step")
    assert g.nodes["1"]["out_shape"] == "[1, 10]" and g.nodes["1"]["calls"] == 1
    conv = nn.Sequential(nn.Conv2d(1, 4, 5), LIF(step_mode="s"))
    assert visualizer.topology(conv).graph["input_shape"] == "[1, 1, 32, 32]"
    # single-step neurons in a model that loops over time itself: [T, B, ...] as before
    g = visualizer.topology(SnntorchLoop())
    assert (g.graph["input_shape"], g.graph["layout"]) == ("[4, 1, 6]", "time-loop")


class StaticInputLoop(nn.Module):
    """snntorch's tutorial pattern: one static ``[B, 16]`` input presented at each of ``steps`` steps."""

    def __init__(self, steps: int = 5) -> None:
        super().__init__()
        import snntorch

        self.steps, self.fc, self.lif = steps, nn.Linear(16, 6), snntorch.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem, out = self.lif.init_leaky(), []
        for _ in range(self.steps):
            spk, mem = self.lif(self.fc(x), mem)
            out.append(spk)
        return torch.stack(out)


def test_a_static_input_presented_at_every_step_gets_no_time_axis():
    # The [T, B, F] probe ran (nn.Linear takes any leading dims) and its neurons ran 5 times, so the
    # model was traced on a fabricated [4, 1, 16] "time-loop" input.
    from visualizer.draw_layers import draw_layers

    g = visualizer.topology(StaticInputLoop())
    assert (g.graph["input_shape"], g.graph["layout"]) == ("[1, 16]", "step-loop")
    assert g.nodes["lif"]["calls"] == 5 and g.nodes["lif"]["out_shape"] == "[1, 6]"
    g = visualizer.topology(StaticInputLoop(), input_shape=(3, 16))
    subtitle = draw_layers(g)._suptitle.get_text().splitlines()[1]
    assert g.graph["layout"] == "step-loop" and "input [3, 16] = [B, ...], given at every step" in subtitle


def test_a_static_input_looped_as_many_steps_as_its_first_axis_is_long_is_a_step_loop():
    # Its neurons ran once per entry of the input's first axis by coincidence (4 steps, the probe's
    # T = 4, or a [4, 16] batch of 4 samples), and the layout read "time-loop": the model was traced on a
    # fabricated [4, 1, 16] input and its [B, ...] batch was drawn as [T, B, ...].
    from visualizer.activity import DEFAULT_T, spike_activity
    from visualizer.draw_layers import draw_layers

    model = StaticInputLoop(steps=DEFAULT_T)
    g = visualizer.topology(model)
    assert (g.graph["input_shape"], g.graph["layout"]) == ("[1, 16]", "step-loop")
    assert g.nodes["lif"]["calls"] == DEFAULT_T and g.nodes["lif"]["out_shape"] == "[1, 6]"
    x = torch.rand(DEFAULT_T, 16) * 3
    for g in (visualizer.topology(model, input_shape=x.shape), visualizer.topology(model, batch=x)):
        subtitle = draw_layers(g)._suptitle.get_text().splitlines()[1]
        assert g.graph["layout"] == "step-loop", subtitle
        assert f"input [{DEFAULT_T}, 16] = [B, ...], given at every step" in subtitle
    assert g.nodes["lif"]["neurons"] == 6
    (layer,) = spike_activity(model, x)
    with torch.no_grad():
        spikes = model(x)  # [steps, B, 6]
    assert (layer.name, layer.neurons, layer.raster.shape) == ("lif", 6, (DEFAULT_T, 6))
    assert layer.rate == pytest.approx(float(spikes.mean()))
    assert np.array_equal(layer.raster, spikes[:, 0].numpy()[:, layer.shown])
    # a loop over the input's time axis stays a time loop at that length, and at T = 2 (1 call on T - 1)
    for steps in (2, DEFAULT_T):
        g = visualizer.topology(SnntorchLoop(), input_shape=(steps, 1, 6))
        assert g.graph["layout"] == "time-loop" and g.nodes["lif"]["calls"] == steps

    class FixedLength(SnntorchLoop):
        """A time loop that accepts T = 4 steps only: it cannot be probed on fewer, and stays a time loop."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[0] == 4, "four steps"
            return super().forward(x)

    assert visualizer.topology(FixedLength(), input_shape=(4, 2, 6)).graph["layout"] == "time-loop"


@pytest.mark.parametrize("error", [TypeError, KeyError])
def test_a_time_loop_failing_on_a_shorter_input_with_any_error_stays_a_time_loop(error):
    # The second pass on x[:-1] caught only ValueError/AssertionError (run_model converts RuntimeError,
    # IndexError and ValueError): a TypeError or KeyError of a forward written for 4 steps escaped
    # layer_graph and _takes_time_first although the first pass had traced fine.
    from visualizer.activity import _takes_time_first

    class FourSteps(SnntorchLoop):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) != 4:
                raise error("four steps")
            return super().forward(x)

    model = FourSteps()
    assert visualizer.topology(model, input_shape=(4, 2, 6)).graph["layout"] == "time-loop"
    assert layer_graph(model, torch.rand(4, 2, 6)).nodes["lif"]["calls"] == 4
    assert _takes_time_first(model, (4, 1, 6))


@pytest.mark.parametrize("steps", [4, 5])
def test_a_static_input_model_is_shown_a_batch_without_a_time_axis(steps, tmp_path):
    # run_batch built [T, B, ...] whatever the layout: the rasters and rates of a model presenting its
    # [B, ...] input at each of its own steps were computed on a fabricated [4, B, 16] batch (T taken
    # for its batch: 4·B·6 "neurons"), and a [B, F] batch file was repeated over T for it.
    from visualizer.activity import DEFAULT_T
    from visualizer.api import Session

    torch.manual_seed(0)
    model = StaticInputLoop(steps)
    with torch.no_grad():
        model.fc.weight.mul_(4)  # every neuron fires on some steps
    session = Session(model, batch_size=3)
    x = session.batch.x
    assert x.shape == (3, 16) and "no time axis" in session.batch.description
    (layer,) = session.activity
    with torch.no_grad():
        spikes = model(x)  # [steps, 3, 6]
    assert spikes.sum() > 0
    assert (layer.name, layer.neurons, layer.raster.shape) == ("lif", 6, (steps, 6))
    assert layer.rate == pytest.approx(float(spikes.mean()))
    assert np.array_equal(layer.raster, spikes[:, 0].numpy()[:, layer.shown])
    assert session.graph.graph["layout"] == "step-loop" and session.graph.nodes["lif"]["neurons"] == 6
    samples = tmp_path / "x.npy"
    np.save(samples, np.random.default_rng(0).random((2, 16), dtype=np.float32))
    assert Session(model, batch=samples).batch.x.shape == (2, 16)
    # a time loop still gets [T, B, ...], from noise and from a file of samples repeated over T
    assert Session(SnntorchLoop(), batch_size=3).batch.x.shape == (DEFAULT_T, 3, 6)
    np.save(samples, np.random.default_rng(0).random((2, 6), dtype=np.float32))
    assert Session(SnntorchLoop(), batch=samples).batch.x.shape == (DEFAULT_T, 2, 6)


def test_a_model_stepped_once_per_call_is_shown_one_step_and_the_first_step_of_its_test_images():
    # Stepped once per call, the model folded the fabricated time axis into its batch (3·10 "neurons");
    # a static-input model was given its run's test images encoded over T steps.
    import snntorch

    from visualizer.activity import run_batch
    from visualizer.api import Session

    per_step = nn.Sequential(nn.Linear(784, 10), snntorch.Leaky(beta=0.9, init_hidden=True))
    session = Session(per_step, batch_size=3)
    assert session.batch.x.shape == (3, 784)
    (layer,) = session.activity
    assert (layer.neurons, layer.raster.shape) == (10, (1, 10))
    model = StaticInputLoop(steps=3)
    model.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, 6))
    config = {"dataset": "mnist", "timestep": 8, "encoding": "direct"}
    batch = run_batch(ModuleSource(model, checkpoint={"config": config, "epoch": 1}), batch_size=4)
    assert batch.x.shape == (4, 1, 28, 28) and "no time axis" in batch.description, batch.description


class RecurrentLoop(nn.Module):
    """A recurrent per-step loop: the first step has no recurrent input, so it feeds ``lif`` from ``fc``
    and the later ones from ``fc + rec``; the spikes are stacked and summed over the steps."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch

        self.fc, self.rec, self.lif = nn.Linear(8, 8), nn.Linear(8, 8), snntorch.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem, spk, outs, total = self.lif.init_leaky(), None, [], 0
        for t in range(x.shape[0]):
            current = self.fc(x[t])
            if spk is not None:
                current = current + self.rec(spk)
            spk, mem = self.lif(current, mem)
            outs.append(spk)
            total = total + spk
        return torch.stack(outs), total


def test_a_recurrent_loop_is_one_place_per_step_and_a_time_loop_at_any_length():
    # The first step's lif call was a place of its own (fed by fc, the others by the add): stacking and
    # summing the spikes over the steps made a "stack" node and a chain of T - 1 "add" nodes, and at
    # T = 2 (one call per place) the layout read "per-step".
    for steps in (2, 4):
        g = visualizer.topology(RecurrentLoop(), input_shape=(steps, 2, 8))
        assert set(g) == {"input", "fc", "rec", "add", "lif", "output"}, steps
        assert g.graph["layout"] == "time-loop" and g.nodes["lif"]["calls"] == steps
        assert g.edges["lif", "output"]["via"] == "stack"
    # two call sites stay two places: a residual add over one module called twice is a merge
    assert "add" in visualizer.topology(SharedActivationResidual(), input_shape=(2, 8))


class DuckStepNeuron(nn.Module):
    """A duck-typed neuron (``tau`` and ``threshold``, no ``step_mode``) that takes one step per call."""

    def __init__(self) -> None:
        super().__init__()
        self.tau, self.threshold, self.v = 2.0, 0.5, None

    def reset(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.v = x if self.v is None else self.v / self.tau + x
        spikes = (self.v > self.threshold).float()
        self.v = self.v * (1 - spikes)
        return spikes


def test_a_neuron_without_a_step_mode_called_per_step_is_single_step():
    # It was taken for a multi-step neuron: "time-first", and one step's [B, C, H, W] read as [T, B, ...]
    # (neurons = H·W).
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.lif = nn.Conv2d(1, 2, 3), DuckStepNeuron()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([self.lif(self.conv(x_t)) for x_t in x])

    g = visualizer.topology(Loop(), batch=torch.rand(4, 2, 1, 6, 6))
    assert g.graph["layout"] == "time-loop" and g.nodes["lif"]["out_shape"] == "[2, 2, 4, 4]"
    assert g.nodes["lif"]["neurons"] == 2 * 4 * 4


class DuckStepLoop(nn.Module):
    """A :class:`DuckStepNeuron` after a linear or conv layer, stepped by the forward's own time loop."""

    def __init__(self, conv: bool, neuron: nn.Module) -> None:
        super().__init__()
        self.layer, self.lif = (nn.Conv2d(1, 2, 3) if conv else nn.Linear(6, 5)), neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for t in range(x.shape[0]):
            out.append(self.lif(self.layer(x[t])))
        return torch.stack(out)


def test_rasters_and_rates_of_a_neuron_without_a_step_mode_called_per_step():
    # Its calls were read as [T, B, ...] sequences although the tracer takes it for single-step: a [B, F]
    # step failed ("Dimension out of range"), a [B, C, H, W] step had its batch read as time.
    from visualizer.activity import spike_activity

    torch.manual_seed(0)  # the batches too: on some draws the conv's neurons never fire
    for conv, x in ((False, torch.rand(4, 3, 6) * 3), (True, torch.rand(4, 3, 1, 6, 6) * 3)):
        torch.manual_seed(0)
        duck = DuckStepLoop(conv, DuckStepNeuron())
        torch.manual_seed(0)
        stepped = DuckStepLoop(conv, LIF(step_mode="s"))
        (layer,) = spike_activity(duck, x, max_neurons=100)
        (reference,) = spike_activity(stepped, x, max_neurons=100)
        neurons = 2 * 4 * 4 if conv else 5
        assert (layer.name, layer.neurons, layer.raster.shape) == ("lif", neurons, (4, neurons))
        assert (reference.name, reference.neurons, reference.raster.shape) == ("lif", neurons, (4, neurons))
        with torch.no_grad():
            spikes = duck(x)  # [T, B, ...]: the neuron starts from rest (v=None) after spike_activity
        assert 0 < layer.rate < 1 and layer.rate == pytest.approx(float(spikes.mean()))
        assert np.array_equal(layer.raster, spikes[:, 0].flatten(1).numpy()[:, layer.shown])


def test_a_plain_ann_is_traced_on_a_batch_without_a_time_axis():
    # An MLP was traced on a fabricated [4, 1, 784], and a CNN could not be traced at all (its conv
    # refuses [T, B, C, H, W]); given a batch, the subtitle spoke of spike rates.
    from visualizer.draw_layers import draw_layers

    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    mlp = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 2))
    for model, shape in ((cnn, "[1, 3, 32, 32]"), (mlp, "[1, 784]")):
        g = visualizer.topology(model)
        assert (g.graph["input_shape"], g.graph["layout"]) == (shape, "none")
    g = visualizer.topology(mlp, batch=torch.rand(3, 784))
    subtitle = draw_layers(g)._suptitle.get_text().splitlines()[1]
    assert subtitle == "input [3, 784]; shapes from: given batch [3, 784]"


class SharedPool(nn.Module):
    """One pooling module reused after each conv stage, as hand-written CNNs often do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.lif1 = SeqToANN(nn.Conv2d(1, 4, 5)), LIF()
        self.conv2, self.lif2 = SeqToANN(nn.Conv2d(4, 8, 5)), LIF()
        self.pool = SeqToANN(nn.MaxPool2d(2))
        self.fc, self.lif3 = SeqToANN(nn.Flatten(), nn.Linear(8 * 4 * 4, 10)), LIF()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.lif1(self.conv1(x)))
        return self.lif3(self.fc(self.pool(self.lif2(self.conv2(h)))))


def test_a_stage_feeding_a_shared_module_is_drawn_where_it_runs():
    # lif2 feeds only the shared pool, back up a feedback edge: laid out "as late as possible" it and
    # conv2 sank to the last rows, below the classifier, as if they ran after it
    from visualizer.draw_layers import _depths, _forward_graph

    g = visualizer.topology(SharedPool(), input_shape=(2, 1, 1, 28, 28))
    depth = _depths(_forward_graph(g))
    assert depth["pool.0"] < depth["conv2.0"] < depth["lif2"] < depth["lif3"] < depth["output"]


def test_each_legend_swatch_is_one_colour_naming_every_kind_drawn_in_it():
    # Kinds sharing a colour (input/output, add/cat, activation/reshape) had one swatch each: two
    # identical swatches with different names, so a box's colour read as either.
    from matplotlib.colors import to_hex

    from visualizer.draw_layers import DEFAULT_COLOR, KIND_COLORS, draw_layers

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.flat = nn.Linear(8, 8), nn.ReLU(), nn.Flatten()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(x))
            return self.flat(torch.cat([h + x, h], -1))

    g = visualizer.topology(Mixed(), input_shape=(2, 8))
    handles = draw_layers(g).legends[0].legend_handles
    colors = [to_hex(h.get_facecolor()) for h in handles]
    assert len(colors) == len(set(colors))
    named = {kind: to_hex(h.get_facecolor()) for h in handles for kind in h.get_label().split(" / ")}
    kinds = {k for _, k in g.nodes(data="kind")}
    assert kinds == {"input", "output", "linear", "activation", "add", "cat", "reshape"} == set(named)
    assert all(named[k] == KIND_COLORS.get(k, DEFAULT_COLOR) for k in kinds)


def test_long_node_names_fit_their_box_and_keep_their_distinguishing_ends():
    from visualizer.draw_layers import LABEL_CHARS, _label

    stem = "multiscale_encoder_stage.inception_block.temporal_feature_extractor_branch_"
    labels = [_label(f"{stem}{b}.0", {"kind": "conv", "module_type": "Conv2d"}) for b in "abc"]
    names = [label.splitlines()[0] for label in labels]
    assert all(len(n) == LABEL_CHARS and "…" in n for n in names)
    assert [n[-10:] for n in names] == ["branch_a.0", "branch_b.0", "branch_c.0"]
    assert names[0].startswith("multiscale_encoder_stage")
    assert _label("fc", {"kind": "module", "module_type": "Linear"}).splitlines()[0] == "fc"  # short: as is


def test_stdp_patch_centres_sit_on_the_pixels_they_pool():
    from visualizer.draw_stdp import patch_centres

    centres = patch_centres(28, 28, 5)  # 6×6 patches, the last row and column 3 pixels wide
    assert centres.shape == (36, 2)
    np.testing.assert_allclose(centres[:6, 0], [2.5, 7.5, 12.5, 17.5, 22.5, 26.5])
    np.testing.assert_allclose(centres[::6, 1], [25.5, 20.5, 15.5, 10.5, 5.5, 1.5])  # top row first
    np.testing.assert_allclose(patch_centres(28, 28, 100), [[14.0, 14.0]])  # one patch: the image centre


def test_a_seq_to_ann_root_shows_time_and_batch_apart():
    g = visualizer.topology(SeqToANN(nn.Conv2d(1, 2, 3), nn.Flatten()), input_shape=(4, 2, 1, 5, 5))
    assert [g.nodes[n]["out_shape"] for n in ("0", "1")] == ["[4, 2, 2, 3, 3]", "[4, 2, 18]"]


def test_a_seq_to_ann_in_step_mode_shows_its_shapes_as_they_are():
    # A per-step net on [B, C, H, W] with C = 1 was read as [T·B, ...] with T = B: the conv's
    # [2, 4, 24, 24] was shown as [2, 1, 4, 24, 24].
    from nsnn.layers import set_step_mode

    net = nn.Sequential(SeqToANN(nn.Conv2d(1, 4, 5), nn.Flatten()), LIF())
    set_step_mode(net, "s")
    g = visualizer.topology(net, input_shape=(2, 1, 28, 28))
    assert [g.nodes[n]["out_shape"] for n in ("0.0", "0.1", "1")] == [
        "[2, 4, 24, 24]",
        "[2, 2304]",
        "[2, 2304]",
    ]


class SharedActivation(nn.Module):
    """One ReLU called twice (as torchvision's BasicBlock does): the layer graph has a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc2(self.relu(self.fc1(x))) + x)


class SharedActivationResidual(nn.Module):
    """A residual add over one ReLU used at two places: both operands come from the same module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(8, 8), nn.Linear(8, 8), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc1(x))
        return self.relu(self.fc2(h)) + h


def test_a_residual_add_over_a_reused_module_is_a_node():
    # Both operands came from node "relu": the add was taken for an op on one edge (relu -> output,
    # via "add"), so the residual was not drawn.
    g = visualizer.topology(SharedActivationResidual(), input_shape=(2, 8))
    assert g.nodes["add"]["kind"] == "add"
    assert _edges(g) >= {("relu", "add"), ("add", "output")} and not g.has_edge("relu", "output")
    # one module called per time step at one place (a per-step loop) stays one source: no merge node
    assert set(visualizer.topology(StepLoop(), input_shape=(4, 2, 8))) == {"input", "fc", "sn", "output"}


class AttentionNet(nn.Module):
    """nn.MultiheadAttention owns in_proj_weight and has a child (out_proj) that it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.attn, self.head = nn.Linear(8, 16), nn.MultiheadAttention(16, 2), nn.Linear(16, 3)
        self.scaled = LayerScale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        a, _ = self.attn(h, h, h)
        return self.head(self.scaled(a + h))


class LayerScale(nn.Module):
    """A block with a parameter of its own (``gamma``) whose child runs: a scope."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma, self.fc = nn.Parameter(torch.ones(16)), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.fc(x)


def test_a_module_owning_a_weight_whose_children_do_not_run_is_a_node():
    # The attention was a scope with no node (its out_proj never runs as a module): its 1,088
    # parameters were missing from the drawing, and it and the residual add around it were "via" on
    # the edge fc -> head.
    from visualizer.draw_layers import _label

    model = AttentionNet()
    g = visualizer.topology(model, input_shape=(5, 2, 8))
    attn = g.nodes["attn"]
    assert attn["module_type"] == "MultiheadAttention" and attn["out_shape"] == "[5, 2, 16]"
    assert attn["params"] == sum(p.numel() for p in model.attn.parameters()) == 1088
    assert "1.09k p" in _label("attn", attn)
    assert _edges(g) == {
        ("input", "fc"),
        ("fc", "attn"),
        ("fc", "add"),
        ("attn", "add"),
        ("add", "scaled.fc"),
        ("add", "scaled.add"),
        ("scaled.fc", "scaled.add"),
        ("scaled.add", "head"),
        ("head", "output"),
    }
    assert "scaled" not in g and g.nodes["scaled.fc"]["scope"] == "scaled"  # its child ran: a scope


def test_layers_called_with_keyword_arguments_show_their_input_shape():
    # Only positional arguments were read: attention called as attn(query=h, key=h, value=h) had an
    # empty in_shape, and so did a layer called as fc(input=x).
    class KeywordCalls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.attn = nn.Linear(8, 16), nn.MultiheadAttention(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(input=x)
            return self.attn(query=h, key=h, value=h)[0] + h

    g = visualizer.topology(KeywordCalls(), input_shape=(5, 2, 8))
    assert (g.nodes["fc"]["in_shape"], g.nodes["attn"]["in_shape"]) == ("[5, 2, 8]", "[5, 2, 16]")
    assert _edges(g) >= {("input", "fc"), ("fc", "attn"), ("attn", "add"), ("fc", "add")}


def test_shapes_from_zoo_keywords_single_step_probes_loops_and_sequence_batches(tmp_path):
    from nsnn.models import create

    # a zoo model built in memory: its own image_size, not a probed guess
    g = visualizer.topology(create("cifarnet", num_classes=10, image_size=8))
    assert g.graph["input_shape"] == "[4, 1, 3, 8, 8]"
    # single-step neurons: a failed probe leaves no membrane shaped for it
    model = nn.Sequential(
        SeqToANN(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 26 * 26, 10)), LIF(step_mode="s")
    )
    assert visualizer.topology(model).graph["input_shape"] == "[4, 1, 1, 28, 28]"
    # a module called twice closes a loop: drawn (feedback edge dashed), not an error
    g = visualizer.topology(SharedActivation(), input_shape=(2, 8))
    assert not nx.is_directed_acyclic_graph(g)
    assert_png(visualizer.draw(g, tmp_path / "loop.png"))
    # a [T, B, F] batch file is a sequence, used as is
    np.save(tmp_path / "seq.npy", np.random.default_rng(0).random((3, 2, 784)).astype(np.float32))
    mlp = nn.Sequential(SeqToANN(nn.Linear(784, 10)), NILIF())
    g = visualizer.topology(mlp, batch=tmp_path / "seq.npy")
    assert g.graph["input_shape"] == "[3, 2, 784]"


class SharedNeuron(nn.Module):
    """One NILIF reused after fc1 (32 outputs) and fc2 (``out_features``, default 8): two places, two
    shapes (one shape with ``out_features=32``)."""

    def __init__(self, out_features: int = 8) -> None:
        super().__init__()
        self.fc1, self.fc2 = SeqToANN(nn.Linear(16, 32)), SeqToANN(nn.Linear(32, out_features))
        self.act = NILIF(sigma=0.4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc2(self.act(self.fc1(x))))


def _act_outputs(model: SharedNeuron, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of each call of ``model.act`` in an eval pass seeded as spike_activity's."""
    outs: list[torch.Tensor] = []
    hook = model.act.register_forward_hook(lambda m, a, o: outs.append(o))
    model.eval()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        model(x)
    hook.remove()
    return outs


def test_a_neuron_shared_by_two_places_is_recorded_per_place(tmp_path):
    from visualizer.activity import spike_activity

    torch.manual_seed(0)
    model = SharedNeuron()
    x = torch.rand(3, 2, 16) * 4
    layers = spike_activity(model, x, max_neurons=100)
    assert [(layer.name, layer.neurons) for layer in layers] == [("act#1", 32), ("act#2", 8)]

    outs = _act_outputs(model, x)
    for layer, out in zip(layers, outs, strict=True):
        assert layer.rate == pytest.approx(float(out.float().mean()), abs=1e-6)
        assert np.array_equal(layer.raster, out[:, 0].flatten(1).numpy()[:, layer.shown] > 0)

    node = visualizer.topology(model, batch=x).nodes["act"]
    assert node["calls"] == 2 and node["out_shape"] == "[3, 2, 32]" and node["neurons"] == 32
    assert node["out_shapes"] == "[3, 2, 32]; [3, 2, 8]"
    assert_png(visualizer.raster(model, tmp_path / "raster.png", batch=x))
    assert_png(visualizer.firing_rates(model, tmp_path / "rates.png", batch=x))


def test_a_multi_step_neuron_shared_by_two_places_of_one_shape_is_two_layers():
    from visualizer.activity import spike_activity

    torch.manual_seed(0)
    model = SharedNeuron(out_features=32)
    x = torch.rand(3, 2, 16) * 4
    layers = spike_activity(model, x, max_neurons=100)
    # Every call of a multi-step neuron is a place of its own, even when the shapes are the same.
    assert [(layer.name, layer.neurons) for layer in layers] == [("act#1", 32), ("act#2", 32)]
    outs = _act_outputs(model, x)
    for layer, out in zip(layers, outs, strict=True):
        assert layer.rate == pytest.approx(float(out.float().mean()), abs=1e-6)


def test_unshared_neuron_layers_keep_their_module_names():
    from nsnn.models import create
    from visualizer.activity import spike_activity
    from visualizer.modules import is_neuron

    net = create("mnist_mlp", hidden=8)
    layers = spike_activity(net, torch.rand(3, 2, 1, 28, 28))
    # One place per neuron module: named as in named_modules(), no "#1" suffix.
    assert [layer.name for layer in layers] == [n for n, m in net.named_modules() if is_neuron(m)] == ["sn"]


class StepLoop(nn.Module):
    """A single-step LIF driven one time step per call: T calls of one ``[B, 6]`` shape."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.sn = nn.Linear(8, 6), LIF(step_mode="s")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.sn(self.fc(x_t)) for x_t in x])


def test_single_step_neuron_called_per_time_step_has_one_out_shape():
    node = visualizer.topology(StepLoop(), batch=torch.rand(4, 2, 8) * 3).nodes["sn"]
    # Its T calls are time steps of one place: no "out_shapes" list (only shared places of other shapes).
    assert node["calls"] == 4 and node["out_shape"] == "[2, 6]" and "out_shapes" not in node


def test_the_subtitle_says_what_the_shapes_are():
    # It said "[T, B, ...]" for every model: a per-step model's [B, ...] input, a plain ANN's shapes.
    import snntorch

    from visualizer.draw_layers import draw_layers

    per_step = nn.Sequential(nn.Linear(8, 6), snntorch.Leaky(beta=0.9, init_hidden=True))
    cases = [
        (nn.Sequential(SeqToANN(nn.Linear(8, 6)), LIF()), (4, 2, 8), "time-first", "= [T, B, ...];"),
        (StepLoop(), (4, 2, 8), "time-loop", "= [T, B, ...] (layers run per step: [B, ...]);"),
        (SnntorchLoop(), (3, 2, 6), "time-loop", "= [T, B, ...] (layers run per step: [B, ...]);"),
        (per_step, (2, 8), "per-step", "= one time step [B, ...];"),
        (SharedActivation(), (2, 8), "none", "input [2, 8]; shapes from a dummy batch"),
    ]
    for model, shape, layout, text in cases:
        g = visualizer.topology(model, input_shape=shape)
        subtitle = draw_layers(g)._suptitle.get_text().splitlines()[1]
        assert g.graph["layout"] == layout and text in subtitle, (type(model).__name__, subtitle)
        assert ("T, B" in subtitle) == layout.startswith("time")
    assert subtitle.endswith("dummy batch")  # an ANN has no firing rates to ask a batch for


def test_evaluation_rows_sit_at_the_last_training_row_not_the_largest_x():
    from visualizer.curves import evaluation_x

    # A resumed run's x restarted at 50: its test row belongs there, not at the earlier 200; a test row
    # with no training row before it sits at 0, and NaN training rows are skipped.
    x = np.array([7.0, 100.0, 200.0, 50.0, np.nan, 0.0])
    phases = np.array(["test", "train", "train", "train", "train", "test"])
    np.testing.assert_array_equal(evaluation_x(x, phases), [0.0, 100.0, 200.0, 50.0, np.nan, 50.0])


def test_histogram_reads_bits_per_layer(tmp_path):
    from nsnn.compress import magnitude_prune, quantize
    from visualizer.api import histogram_figure

    model = TinyResNet()
    magnitude_prune(model, sparsity=0.5, scope="global")
    quantize(model, bits=2)  # each layer its own 4 levels: pooled, more distinct values
    legend = histogram_figure(visualizer.load_source(model)).axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("at most 4 in a layer), ≈2 bits" in text for text in labels), labels


def test_histogram_of_an_uncompressed_model_speaks_of_no_compression():
    # An uncompressed BPTT model's weights were labelled "after: ... alive, i.e. kept and nonzero".
    from nsnn.compress import magnitude_prune
    from visualizer.api import histogram_figure

    def texts(model, before=None):
        ax = histogram_figure(visualizer.load_source(model), before).axes[0]
        return ax.get_title(), [t.get_text() for t in ax.get_legend().get_texts()]

    model = TinyResNet()
    n = int(sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)))
    title, (label,) = texts(model)
    assert title == "TinyResNet conv/linear weights (not compressed)"
    assert label.startswith(f"{n:,} of {n:,} weights nonzero (0.0% zero)"), label
    assert not any(word in label for word in ("after", "alive", "pruned", "≈"))
    magnitude_prune(model, sparsity=0.5, scope="global")
    title, (label,) = texts(model)  # a pruned model still tells its pruned weights
    assert title == "TinyResNet conv/linear weights" and label.startswith("after: ") and "alive" in label
    title, labels = texts(TinyResNet(), before=TinyResNet())  # --before compares, whatever the models
    assert title.endswith("before / after compression") and labels[1].startswith("after: ")


def test_histogram_of_an_uncompressed_stdp_run_speaks_of_no_compression(tmp_path):
    # A dense, full-precision STDP run showed its w_xe_dense as "before" and the same weights as "after".
    from visualizer.api import histogram_figure

    def texts(root):
        ax = histogram_figure(visualizer.load_source(root)).axes[0]
        return ax.get_title(), [t.get_text() for t in ax.get_legend().get_texts()]

    make_stdp_run(tmp_path / "dense", keep=1.0)
    title, (label,) = texts(tmp_path / "dense")
    assert title == "STDP input weights (not compressed)"
    assert label.startswith("96 of 96 weights nonzero") and "after" not in label and "alive" not in label
    make_stdp_run(tmp_path / "pruned", keep=0.4)
    title, labels = texts(tmp_path / "pruned")
    assert "before (w_xe_dense) / after compression" in title and labels[1].startswith("after: ")


# ---- exports and drawing -----------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["graphml", "gexf", "json"])
def test_export_round_trips_with_attributes(stdp_dir, tmp_path, ext):
    root, _ = stdp_dir
    graphs = {
        "stdp": visualizer.topology(root),
        "layers": layer_graph(TinyResNet(), torch.rand(2, 1, 2, 6, 6)),
    }
    for name, g in graphs.items():
        path = visualizer.export(g, tmp_path / f"{name}.{ext}")
        if ext == "graphml":
            back = nx.read_graphml(path)
        elif ext == "gexf":
            back = nx.read_gexf(path)
        else:
            back = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
        assert back.number_of_nodes() == g.number_of_nodes() and back.number_of_edges() == g.number_of_edges()
        node = "exc_3" if name == "stdp" else "conv2.0"
        key = "fan_in" if name == "stdp" else "params"
        assert int(back.nodes[node][key]) == g.nodes[node][key]


def test_gexf_gives_an_attribute_holding_ints_and_floats_one_type(tmp_path):
    model = nn.Sequential(SeqToANN(nn.Linear(8, 8)), DuckNeuron(), SeqToANN(nn.Linear(8, 4)), DuckNeuron())
    model[1].tau, model[3].tau = 2, 2.5  # a third-party neuron: int in one layer, float in another
    g = layer_graph(model, input_shape=(2, 1, 8))
    assert type(g.nodes["1"]["tau"]) is int and type(g.nodes["3"]["tau"]) is float
    back = nx.read_gexf(visualizer.export(g, tmp_path / "g.gexf"))
    assert back.nodes["1"]["tau"] == 2 and back.nodes["3"]["tau"] == 2.5
    assert type(back.nodes["1"]["tau"]) is float
    assert type(g.nodes["1"]["tau"]) is int  # the caller's graph is left as it was
    g.nodes["1"]["tag"], g.nodes["3"]["tag"] = 7, "seven"  # any other mix: strings
    back = nx.read_gexf(visualizer.export(g, tmp_path / "g.gexf"))
    assert (back.nodes["1"]["tag"], back.nodes["3"]["tag"]) == ("7", "seven")


def test_unassigned_neurons_look_unlike_every_class(stdp_dir):
    from visualizer.render import class_color, class_face

    unassigned = np.array(class_color(-1)[:3])
    distances = [float(np.linalg.norm(unassigned - np.array(class_color(c)[:3]))) for c in range(10)]
    assert min(distances) > 0.4, distances
    assert class_face(-1) == (1.0, 1.0, 1.0, 1.0) and class_face(7) == class_color(7)
    fig = draw_stdp(visualizer.topology(stdp_dir[0]))  # exc_0 never fired
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("unassigned (never fired, hollow)") for t in texts), texts
    # the legend's "black dashed" lines: drawn at 0.35 opacity like the class colours they read grey
    from matplotlib.collections import LineCollection

    dashed = [
        rgba
        for lines in fig.axes[0].collections
        if isinstance(lines, LineCollection)
        for rgba, (_, dashes) in zip(lines.get_colors(), lines.get_linestyles(), strict=True)
        if dashes
    ]
    assert dashed and all(tuple(c[:3]) == (0, 0, 0) and c[3] >= 0.8 for c in dashed)


def test_export_and_draw_reject_bad_input(stdp_dir, tmp_path):
    g = visualizer.topology(stdp_dir[0])
    with pytest.raises(ValueError, match="graphml"):
        visualizer.export(g, tmp_path / "g.txt")
    with pytest.raises(ValueError, match="png"):
        visualizer.draw(g, tmp_path / "g.pdf")
    g.nodes["exc_0"]["bad"] = [1, 2]
    with pytest.raises(ValueError, match="'bad'"):
        visualizer.export(g, tmp_path / "g.graphml")
    with pytest.raises(ValueError, match="kind"):
        visualizer.draw(nx.DiGraph(), tmp_path / "g.png")
    assert not list(tmp_path.glob("g.*"))


def test_draw_writes_png_and_svg(stdp_dir, tmp_path):
    stdp = visualizer.topology(stdp_dir[0])
    layers = layer_graph(TinyResNet(), input_shape=(2, 1, 2, 6, 6))
    assert_png(visualizer.draw(stdp, tmp_path / "s.png"))
    assert_svg(visualizer.draw(stdp, tmp_path / "s.svg", top_k=1, patch=2))
    assert_png(visualizer.draw(layers, tmp_path / "l.png"))
    assert_svg(visualizer.draw(layers, tmp_path / "l.svg", rows_per_column=6))


# ---- figures -----------------------------------------------------------------------------------------
def test_stdp_figures(stdp_dir, tmp_path):
    root, _ = stdp_dir
    assert_png(visualizer.receptive_fields(root, tmp_path / "fields.png"))
    assert_png(visualizer.weight_histograms(root, tmp_path / "hist.png"))
    assert_svg(visualizer.curves(root, tmp_path / "curves.svg"))
    with pytest.raises(ValueError, match="BPTT"):
        visualizer.raster(root, tmp_path / "raster.png")


def test_module_figures(tmp_path):
    model = TinyResNet()
    x = torch.rand(3, 2, 2, 6, 6) * 4
    assert_png(visualizer.raster(model, tmp_path / "raster.png", batch=x))
    assert_png(visualizer.firing_rates(model, tmp_path / "rates.png", batch=x))
    assert_png(visualizer.weight_histograms(model, tmp_path / "hist.png", before=TinyResNet()))
    with pytest.raises(ValueError, match="STDP"):
        visualizer.receptive_fields(model, tmp_path / "fields.png")


def test_curves_group_columns_and_keep_phases_apart(stdp_dir, bptt_dir):
    from visualizer.curves import curves_figure, panel_of

    assert [panel_of(c) for c in ("val_loss", "label_accuracy", "train_lr", "lr")] == [
        "loss",
        "accuracy",
        "lr",
        "lr",
    ]
    fig = curves_figure(stdp_dir[0] / "metrics.csv")
    panels = {ax.get_title(): [line.get_label() for line in ax.get_lines()] for ax in fig.axes}
    assert panels == {
        "synapses": ["synapses (train)", "synapses (compress)", "synapses (test at end of training)"],
        "accuracy": ["running_accuracy (train)", "accuracy (test at end of training)"],
    }
    fig = curves_figure(bptt_dir[0] / "metrics.csv")
    assert {ax.get_title() for ax in fig.axes} == {"loss", "accuracy", "lr"}
    assert next(ax for ax in fig.axes if ax.get_title() == "lr").get_yscale() == "log"


def test_curves_draw_evaluations_at_end_of_training_and_break_appended_runs(tmp_path):
    from visualizer.curves import curves_figure

    log = CsvLog(
        tmp_path / "metrics.csv", ["phase", "examples", "running_accuracy", "accuracy", "label_accuracy"]
    )
    for _ in range(2):  # two runs appended to one file
        for examples in (100, 200, 300):
            log.append({"phase": "train", "examples": examples, "running_accuracy": examples / 1000})
        log.append({"phase": "label", "examples": 50, "label_accuracy": 0.7})
        log.append({"phase": "test", "examples": 20, "accuracy": 0.6})
    fig = curves_figure(tmp_path / "metrics.csv")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label in ("accuracy (test at end of training)", "label_accuracy (label at end of training)"):
        assert list(lines[label].get_xdata()) == [300, 300] and lines[label].get_linestyle() == "None"
    xs = np.asarray(lines["running_accuracy (train)"].get_xdata(), dtype=float)
    assert list(xs[:3]) == list(xs[4:]) == [100, 200, 300] and np.isnan(xs[3])  # broken between runs
    assert "several runs" in fig._suptitle.get_text()


# ---- command line ------------------------------------------------------------------------------------
def test_cli_stdp_default_makes_everything_that_applies(stdp_dir, tmp_path):
    out = tmp_path / "figs"
    assert main([str(stdp_dir[0]), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "topology.png",
        "fields.png",
        "hist.png",
        "curves.png",
        "topology.graphml",
        "topology.json",
    }
    for name in names - {"topology.graphml", "topology.json"}:
        assert_png(out / name)


def test_cli_bptt_checkpoint(bptt_dir, tmp_path):
    root, pruned_layer, sparsity = bptt_dir
    out = tmp_path / "figs"
    argv = [
        str(root / "best.pt"),
        "--out",
        str(out),
        "--what",
        "raster",
        "rates",
        "--what",
        "topology",
        "--format",
        "svg",
        "--export",
        "gexf",
        "--batch-size",
        "4",
        "--prefix",
        "m_",
    ]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} == {
        "m_raster.svg",
        "m_rates.svg",
        "m_topology.svg",
        "m_topology.gexf",
    }
    g = nx.read_gexf(out / "m_topology.gexf")
    assert float(g.nodes[pruned_layer]["weight_sparsity"]) == pytest.approx(sparsity)
    rates = [float(d["firing_rate"]) for _, d in g.nodes(data=True) if d["kind"] == "neuron"]
    assert rates and all(0 <= r <= 1 for r in rates)


def test_cli_bptt_run_dir_defaults(bptt_dir, tmp_path):
    out = tmp_path / "figs"
    assert main([str(bptt_dir[0]), "--out", str(out), "--export", "none", "--batch-size", "2"]) == 0
    assert {p.name for p in out.iterdir()} == {
        f"{w}.png" for w in ("topology", "hist", "raster", "rates", "curves")
    }


def test_cli_refuses_bad_inputs_and_paths(stdp_dir, bptt_dir, tmp_path, capsys):
    root, _ = stdp_dir
    out = tmp_path / "out"
    assert main([str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "weights.npz").write_bytes(b"not a zip")
    assert main([str(tmp_path / "bad"), "--out", str(out)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    assert main([str(tmp_path / "junk.pt"), "--out", str(out)]) == 2
    assert "junk.pt is not an nsnn checkpoint" in capsys.readouterr().err
    assert main([str(root), "--out", str(out), "--what", "raster"]) == 2
    assert "do not apply" in capsys.readouterr().err
    torch.save(torch.rand(2, 1, 3, 5, 5), tmp_path / "rgb.pt")  # the MNIST net takes 1 channel
    assert (
        main([str(bptt_dir[0]), "--out", str(out), "--what", "rates", "--batch", str(tmp_path / "rgb.pt")])
        == 2
    )
    assert "cannot run on an input of shape [2, 1, 3, 5, 5]" in capsys.readouterr().err
    assert main([str(root), "--out", str(out), "--what", "hist", "--prefix", "../escape_"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert not (tmp_path / "escape_hist.png").exists()
    out.mkdir(exist_ok=True)
    os.symlink(tmp_path / "outside.png", out / "hist.png")
    assert main([str(root), "--out", str(out), "--what", "hist"]) == 2
    assert "outside the output folder" in capsys.readouterr().err
    assert not (tmp_path / "outside.png").exists()
    (tmp_path / "afile").write_text("x")
    assert main([str(root), "--out", str(tmp_path / "afile"), "--what", "hist"]) == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    assert main([str(root), "--out", str(tmp_path / "out3"), "--export", "none", "json"]) == 2
    assert "--export none writes no graph files" in capsys.readouterr().err
    argv = [str(root), "--out", str(tmp_path / "out2"), "--what", "hist", "--before", str(tmp_path / "x.pt")]
    assert main(argv) == 2
    assert "--before compares BPTT models" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"nn\.Module"):
        visualizer.topology(42)
    with pytest.raises(FileNotFoundError):
        visualizer.topology(tmp_path / "nothing.npz")


@pytest.mark.parametrize("prefix", ["sub/x_", "../escape_", "./x_", "/tmp/x_"])
def test_cli_refuses_a_prefix_holding_a_path_separator(stdp_dir, tmp_path, capsys, prefix):
    # "sub/x_" wrote into a subfolder of --out, while "../" was refused as "not a plain file name".
    root, _ = stdp_dir
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--what", "hist", "--prefix", prefix]) == 2
    assert f"refusing output name '{prefix}hist.png': it must be a plain file name inside" in (
        capsys.readouterr().err
    )
    assert list(out.iterdir()) == [] and not (tmp_path / "escape_hist.png").exists()


def test_a_poisson_run_is_shown_the_raw_intensities_it_was_trained_on():
    """The run's own test images, encoded as in training: a rate code fires with the raw intensity in
    [0, 1], not with the mean/std-normalised pixel (which fires bright pixels always, dim ones never)."""
    from nsnn.data import get_dataset
    from nsnn.models import create
    from visualizer.activity import run_batch
    from visualizer.sources import ModuleSource

    model = create("mnist_mlp", num_classes=10, in_channels=1, image_size=28)
    config = {"dataset": "mnist", "timestep": 8, "encoding": "poisson"}
    torch.manual_seed(0)
    batch = run_batch(ModuleSource(model, checkpoint={"config": config, "epoch": 1}), batch_size=16)
    assert batch.x.shape == (8, 16, 1, 28, 28) and set(batch.x.unique().tolist()) <= {0.0, 1.0}
    bundle = get_dataset("mnist")
    raw = bundle.test.images[:16].float() / 255  # what the training loader feeds a poisson run
    rate, expected = batch.x.mean().item(), raw.mean().item()
    sd = (expected * (1 - expected) / batch.x.numel()) ** 0.5
    assert abs(rate - expected) < 5 * sd, (rate, expected, sd)


def test_a_batch_file_of_the_runs_test_images_is_preprocessed_as_they_are(bptt_dir, tmp_path, capsys):
    """A batch file of images was fed raw: uint8 0..255 (or float in [0, 1]) repeated over T, without
    the run's normalisation, so the run's own test images gave other firing rates than the default."""
    from nsnn.data import get_dataset
    from visualizer.activity import run_batch
    from visualizer.api import Session
    from visualizer.sources import load_source

    checkpoint = bptt_dir[0] / "best.pt"  # mnist_convnet, direct encoding, T=2
    images = get_dataset("mnist", test_only=True).test.images[:8]  # uint8 [8, 28, 28]
    default = Session(checkpoint, batch_size=8)
    expected = [layer.rate for layer in default.activity]
    assert any(expected)
    files = {
        "u8.npy": images.numpy(),
        "chw.npy": images.unsqueeze(1).numpy(),
        "float.pt": images.unsqueeze(1).float() / 255,
        "flat.npy": images.reshape(8, -1).numpy(),
    }
    for name, data in files.items():
        path = tmp_path / name
        if name.endswith(".pt"):
            torch.save(data, path)
        else:
            np.save(path, data)
        session = Session(checkpoint, batch=path)
        assert torch.allclose(session.batch.x, default.batch.x, rtol=0, atol=1e-6), name  # float rounding
        assert [layer.rate for layer in session.activity] == pytest.approx(expected, abs=1e-4), name
        assert session.batch.description == f"8 mnist images from {name}, direct encoding, T=2"
        graph = visualizer.topology(checkpoint, batch=path)
        assert graph.graph["batch"] == session.batch.description
    # the same file as model input (--batch-raw): as stored, repeated over T, no normalisation
    raw = Session(checkpoint, batch=tmp_path / "float.pt", batch_raw=True).batch
    assert torch.equal(raw.x, (images.unsqueeze(1).float() / 255).expand(2, -1, -1, -1, -1))
    # a normalised float file is not taken for intensities; uint8 pixels are never model input
    np.save(tmp_path / "norm.npy", default.batch.x[0].numpy())
    with pytest.raises(ValueError, match=r"values in \[-0.424, .*--batch-raw"):
        run_batch(load_source(checkpoint), tmp_path / "norm.npy")
    bare = ModuleSource(nn.Sequential(SeqToANN(nn.Linear(784, 4)), LIF()))
    for source, raw_flag in ((load_source(checkpoint), True), (bare, False)):
        with pytest.raises(ValueError, match=r"u8\.npy is uint8 with values up to 255: pixel intensities"):
            run_batch(source, tmp_path / "u8.npy", raw=raw_flag)
    with pytest.raises(ValueError, match="uint8 with values up to 255"):
        visualizer.topology(checkpoint, batch=images)  # a tensor is model input, used as given
    # images of a run whose dataset cannot be loaded: refused, not fed unnormalised
    from nsnn.models import create

    cifar = create("mnist_mlp", num_classes=10, in_channels=3, image_size=32)
    config = {"dataset": "cifar10", "data_dir": str(tmp_path / "none"), "timestep": 2}
    np.save(tmp_path / "rgb.npy", np.full((2, 3, 32, 32), 128, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"rgb\.npy may hold images of the run's dataset, which is unavail"):
        run_batch(ModuleSource(cifar, checkpoint={"config": config}), tmp_path / "rgb.npy")
    argv = [str(checkpoint), "--out", str(tmp_path / "out"), "--what", "rates", "--batch-raw"]
    assert main(argv) == 2
    assert "--batch-raw says how to read a --batch file; add one" in capsys.readouterr().err


def test_a_uint8_image_file_of_only_zeros_and_ones_is_refused_as_ambiguous(bptt_dir, tmp_path):
    """A uint8 0/1 spike file shaped like the run's images was preprocessed as near-black images
    (pixels 0 and 1 of 255, then normalised): nothing fired, and no error said so."""
    from visualizer.activity import run_batch
    from visualizer.sources import load_source

    source = load_source(bptt_dir[0] / "best.pt")  # mnist_convnet, direct encoding, T=2
    spikes = (np.random.default_rng(0).random((4, 1, 28, 28)) < 0.3).astype(np.uint8)
    for name, data in (("spk.npy", spikes), ("flat.npy", spikes.reshape(4, -1)), ("zeros.npy", 0 * spikes)):
        np.save(tmp_path / name, data)
        with pytest.raises(ValueError, match=rf"{name} is uint8 .* only 0 and 1, .*--batch-raw"):
            run_batch(source, tmp_path / name)
    raw = run_batch(source, tmp_path / "spk.npy", raw=True)  # as spikes: model input, repeated over T
    assert torch.equal(raw.x, torch.from_numpy(spikes).float().expand(2, -1, -1, -1, -1))
    # 0/1 spikes not shaped like the images are model input, and a uint8 image file with pixel values
    # is still preprocessed
    np.save(tmp_path / "seq.npy", spikes[None].repeat(2, 0))
    assert torch.equal(
        run_batch(source, tmp_path / "seq.npy").x, torch.from_numpy(spikes).float().expand(2, -1, -1, -1, -1)
    )
    np.save(tmp_path / "img.npy", spikes * 255)
    assert (
        run_batch(source, tmp_path / "img.npy").description
        == "4 mnist images from img.npy, direct encoding, T=2"
    )


def test_an_event_frame_runs_batch_file_is_model_input_without_loading_its_data(tmp_path):
    """A DVS run's batch file loaded the DVS test split to learn that it is not an image file: a float
    [B, 2, H, W] file of a run whose data are absent was refused ('unavailable ... --batch-raw'), and a
    uint8 file's refusal spoke of images of the dataset, which a DVS run never preprocesses."""
    from nsnn.data import holds_event_frames
    from visualizer.activity import run_batch

    assert holds_event_frames("dvs-cifar10") and not holds_event_frames("mnist")
    model = nn.Sequential(SeqToANN(nn.Flatten(), nn.Linear(2 * 8 * 8, 4)), LIF())
    config = {"dataset": "dvs-cifar10", "data_dir": str(tmp_path / "absent"), "timestep": 3}
    kwargs = {"in_channels": 2, "image_size": 8}
    source = ModuleSource(model, checkpoint={"config": config, "model_kwargs": kwargs, "epoch": 1})
    frame = torch.rand(5, 2, 8, 8)
    torch.save(frame, tmp_path / "frame.pt")
    batch = run_batch(source, tmp_path / "frame.pt")
    assert torch.equal(batch.x, frame.expand(3, -1, -1, -1, -1))
    assert batch.description == "batch from frame.pt [3, 5, 2, 8, 8], as stored"
    np.save(tmp_path / "spikes.npy", np.ones((5, 2, 8, 8), dtype=np.uint8))  # 0/1 spikes: model input
    assert torch.equal(run_batch(source, tmp_path / "spikes.npy").x, torch.ones(3, 5, 2, 8, 8))
    np.save(tmp_path / "counts.npy", np.full((3, 5, 2, 8, 8), 7, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"counts\.npy is uint8 .* of a run on event frames \(dvs-cifar10\)"):
        run_batch(source, tmp_path / "counts.npy")


def test_an_empty_batch_file_is_refused_naming_it(bptt_dir, tmp_path, capsys):
    # [0, 1, 28, 28] failed in ImageSet with "need images ... and labels [N] with N > 0", naming labels
    # the user never gave.
    from visualizer.activity import run_batch
    from visualizer.sources import load_source

    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0, 1, 28, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"empty\.npy holds an empty batch \[0, 1, 28, 28\]"):
        run_batch(load_source(bptt_dir[0] / "best.pt"), path)
    assert (
        main([str(bptt_dir[0]), "--out", str(tmp_path / "out"), "--what", "rates", "--batch", str(path)]) == 2
    )
    assert "holds an empty batch" in capsys.readouterr().err


def test_batch_raw_with_a_tensor_changes_nothing_and_needs_a_batch(bptt_dir):
    """``raw`` reads a batch file as model input; a tensor always is one, so ``raw`` is a documented
    no-op for it (and is refused without a batch)."""
    from visualizer.activity import run_batch
    from visualizer.sources import load_source

    source = load_source(bptt_dir[0] / "best.pt")
    x = torch.rand(2, 3, 1, 28, 28)
    given, plain = run_batch(source, x, raw=True), run_batch(source, x)
    assert given.x is x and plain.x is x and given.description == plain.description
    with pytest.raises(ValueError, match=r"raw \(--batch-raw\) says how to read a batch file; give one"):
        run_batch(source, raw=True)


def test_a_poisson_runs_image_file_is_encoded_as_its_test_images(tmp_path):
    """A Poisson-encoded run was given a batch file's images repeated over T (direct encoding)."""
    from nsnn.data import get_dataset
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint
    from visualizer.activity import run_batch

    model = create("mnist_mlp", num_classes=10, in_channels=1, image_size=28)
    config = {"dataset": "mnist", "timestep": 8, "encoding": "poisson"}
    save_checkpoint(make_checkpoint(model, epoch=1, config=config), tmp_path / "best.pt")
    source = visualizer.sources.load_source(tmp_path / "best.pt")
    np.save(tmp_path / "b.npy", get_dataset("mnist", test_only=True).test.images[:16].numpy())
    given, default = run_batch(source, tmp_path / "b.npy"), run_batch(source, batch_size=16)
    assert given.x.shape == (8, 16, 1, 28, 28) and set(given.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(given.x, default.x)  # the same seeded spikes as the default batch
    assert given.description == "16 mnist images from b.npy, poisson encoding, T=8"


def test_a_run_is_shown_its_test_images_from_a_folder_of_the_test_split_alone(tmp_path):
    """Rasters read the run's test images; the training split was loaded too, so a CIFAR-10 folder
    holding only ``test_batch`` fell back to uniform noise."""
    import pickle

    from nsnn.models import create
    from visualizer.activity import run_batch
    from visualizer.sources import ModuleSource

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (5, 3072), dtype=np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": images, b"labels": [0, 1, 2, 3, 4]}))
    model = create("mnist_mlp", num_classes=10, in_channels=3, image_size=32)
    config = {"dataset": "cifar10", "data_dir": str(tmp_path), "timestep": 2, "encoding": "direct"}
    batch = run_batch(ModuleSource(model, checkpoint={"config": config, "epoch": 1}), batch_size=4)
    assert batch.x.shape == (2, 4, 3, 32, 32)
    assert batch.description.startswith("4 cifar10 test images"), batch.description


def test_cli_names_a_missing_or_unreadable_batch_file(bptt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    for name in ("missing.pt", "missing.npy"):
        batch = tmp_path / name
        assert main([str(bptt_dir[0]), "--out", str(out), "--what", "rates", "--batch", str(batch)]) == 2
        err = capsys.readouterr().err
        assert f"error: no such batch file: {batch}\n" in err and "checkpoint" not in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    assert main([str(bptt_dir[0]), "--out", str(out), "--what", "rates", "--batch", str(junk)]) == 2
    err = capsys.readouterr().err
    assert f"{junk} is not a readable .pt batch" in err
    assert "checkpoint" not in err and "weights_only=False" not in err
    assert not out.exists() or not any(out.iterdir())


def test_cli_reports_a_runtime_error_in_one_line(bptt_dir, tmp_path, monkeypatch, capsys):
    import visualizer.api

    def fail(model, x):
        raise RuntimeError("Sizes of tensors must match except in dimension 0.\nExpected size 32 but got 8")

    monkeypatch.setattr(visualizer.api, "spike_activity", fail)
    argv = [str(bptt_dir[0]), "--out", str(tmp_path / "out"), "--what", "rates", "--batch-size", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "python -m visualizer: error: RuntimeError: Sizes of tensors must match except in dimension 0.\n"
    )


def test_cli_never_silently_overwrites_files_it_did_not_write(bptt_dir, tmp_path, capsys):
    import shutil

    from nsnn.io import read_csv
    from nsnn.training.monitor import plot_curves
    from visualizer.render import written_by_visualizer

    run = tmp_path / "run"
    shutil.copytree(bptt_dir[0], run)
    trainers = plot_curves(read_csv(run / "metrics.csv"), run / "curves.png")
    original = trainers.read_bytes()
    argv = [str(run), "--out", str(run), "--what", "hist", "curves", "--export", "none"]
    assert main(argv) == 2
    assert "refusing to overwrite curves.png" in capsys.readouterr().err
    assert trainers.read_bytes() == original and not (run / "hist.png").exists()  # refused before any work
    assert main([*argv[:4], "hist", "--prefix", "vis_"]) == 0
    assert main([*argv[:4], "hist", "--prefix", "vis_"]) == 0  # its own earlier output is replaced
    assert written_by_visualizer(run / "vis_hist.png") and not written_by_visualizer(trainers)
    assert main([*argv, "--overwrite"]) == 0
    assert trainers.read_bytes() != original and written_by_visualizer(trainers)


# ---- audit fixes (session 16) --------------------------------------------------------------------------
def test_a_layer_pruned_by_a_parametrization_stays_one_node_with_its_sparsity():
    from torch.nn.utils import parametrize

    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    torch.manual_seed(0)
    net = nn.Sequential(SeqToANN(nn.Flatten(), nn.Linear(64, 20)), NILIF(), SeqToANN(nn.Linear(20, 3)))
    lin = net[0][1]
    parametrize.register_parametrization(lin, "weight", Mask((torch.rand_like(lin.weight) > 0.9).float()))
    g = visualizer.topology(net, input_shape=(2, 4, 1, 8, 8))
    assert "0.1" in g and not [n for n in g if "parametrizations" in n]
    assert g.nodes["0.1"]["kind"] == "linear" and g.nodes["0.1"]["params"] == 64 * 20 + 20
    assert g.nodes["0.1"]["weight_sparsity"] == pytest.approx(float((lin.weight == 0).float().mean()))
    assert list(g.predecessors("0.1")) == ["0.0"]


def test_spike_figures_start_from_rest_whatever_the_model_ran_before():
    from visualizer.activity import spike_activity

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), LIF(step_mode="s"))
    net(torch.rand(8, 6))  # the user's own step, batch 8: state shaped [8, 5] left behind
    users = net[1].mem.clone()
    x = torch.rand(3, 2, 6) * 2
    fresh = [a.rate for a in spike_activity(net, x)]  # batch 2: no shape clash with the stale state
    assert torch.equal(net[1].mem, users)  # given back to the caller afterwards
    net[1].reset()
    net(torch.rand(2, 6) * 5)  # same batch size: stale state would change the rates silently
    assert [a.rate for a in spike_activity(net, x)] == fresh


def test_a_bfloat16_model_is_traced_with_a_batch_of_its_dtype():
    from nsnn.models import create

    net = create("mnist_convnet", width=4, hidden=8).to(torch.bfloat16)
    assert visualizer.topology(net).graph["input_shape"] == "[4, 1, 1, 28, 28]"
    assert visualizer.topology(net, batch=torch.rand(2, 2, 1, 28, 28)).graph["rates_recorded"]


def test_percentages_and_counts_never_round_to_a_wrong_extreme():
    from visualizer.draw_layers import _fmt_int
    from visualizer.render import percent

    assert [percent(z) for z in (0, 1, 0.25, 1 - 1254 / 313600, 0.99996, 3e-4)] == [
        "0.0%",
        "100.0%",
        "25.0%",
        "99.6%",
        "99.996%",
        "0.03%",
    ]
    assert percent(1e-9) == "<0.0001%" and percent(1 - 1e-9) == ">99.9999%" and percent(0.996, 0) == "99.6%"
    assert [_fmt_int(n) for n in (999, 1234, 999_499, 999_999, 12_345_678)] == [
        "999",
        "1.23k",
        "999k",
        "1M",
        "12.3M",
    ]


def test_cli_on_a_run_in_its_first_epoch_skips_curves_and_keeps_graph_files(bptt_dir, tmp_path):
    root = tmp_path / "young"
    root.mkdir()
    (root / "best.pt").write_bytes((bptt_dir[0] / "best.pt").read_bytes())
    (root / "metrics.csv").write_text("epoch,train_loss\n")  # header only: no epoch finished yet
    out = tmp_path / "figs"
    assert main([str(root), "--out", str(out), "--batch-size", "2"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "curves.png" not in names and {"topology.graphml", "topology.json", "rates.png"} <= names


def test_cli_checks_before_and_one_line_errors(stdp_dir, bptt_dir, tmp_path, capsys):
    out = tmp_path / "out"
    missing = str(tmp_path / "no" / "such.pt")
    assert main([str(bptt_dir[0]), "--out", str(out), "--before", missing]) == 2
    assert "no such file" in capsys.readouterr().err and not out.exists()  # before any figure
    argv = [str(bptt_dir[0]), "--out", str(out), "--what", "topology", "--before", str(bptt_dir[0])]
    assert main(argv) == 2
    assert "--before is read by the hist figure only" in capsys.readouterr().err
    # a flag the other kind of source reads is refused, as --before is on an STDP run
    for source, flags, message in (
        (bptt_dir[0], ["--top-k", "5", "--inhibition", "full"], "a BPTT model: --inhibition, --top-k apply"),
        (stdp_dir[0], ["--batch-size", "4"], "--batch-size applies to BPTT models only; drop it"),
    ):
        assert main([str(source), "--out", str(tmp_path / "unused"), *flags]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "unused").exists()
    root, _ = stdp_dir
    (root / "config.json").write_text("[]")
    assert main([str(root), "--out", str(out)]) == 2
    assert "config.json must hold a JSON object, got a list" in capsys.readouterr().err
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    ckpt = make_checkpoint(create("mnist_convnet"), epoch=1, config={"timestep": 2})
    ckpt["model_kwargs"]["width"] = 8  # weights of width 16 (the default)
    save_checkpoint(ckpt, tmp_path / "wrong" / "best.pt")
    assert main([str(tmp_path / "wrong"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "size mismatch" in err and "more)" in err
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage\n\x81\x82")
    with pytest.raises(ValueError, match=r"binary/metrics.csv is not a readable CSV file"):
        visualizer.curves(tmp_path / "binary", tmp_path / "c.png")


def test_receptive_fields_apply_to_square_inputs_only(tmp_path):
    from visualizer.api import FIGURES
    from visualizer.sources import load_source

    make_stdp_run(tmp_path / "sq", n_input=16)
    make_stdp_run(tmp_path / "flat", n_input=12)
    assert FIGURES["fields"].applies(load_source(tmp_path / "sq"))
    assert not FIGURES["fields"].applies(load_source(tmp_path / "flat"))
    assert main([str(tmp_path / "flat"), "--out", str(tmp_path / "figs")]) == 0


def test_curves_legend_covers_no_point(tmp_path):
    # The STDP docs run's accuracy panel: every point at the end of training, where matplotlib's "best"
    # legend place put the legend over the test accuracy.
    columns = ["phase", "examples", "running_accuracy", "accuracy", "label_accuracy"]
    log = CsvLog(tmp_path / "metrics.csv", columns)
    log.append({"phase": "train", "examples": 1000, "running_accuracy": 0.56})
    log.append({"phase": "label", "examples": 1000, "label_accuracy": 0.627})
    log.append({"phase": "test", "examples": 200, "accuracy": 0.685})
    from visualizer.curves import curves_figure

    fig = curves_figure(tmp_path / "metrics.csv")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    box = ax.get_legend().get_window_extent(renderer)
    points = [ax.transData.transform(xy) for line in ax.get_lines() for xy in line.get_xydata()]
    assert len(points) == 3 and not any(box.contains(*p) for p in points)


def test_a_weight_tied_across_layers_counts_once_and_a_reused_neuron_records_each_place(tmp_path):
    # tied weights counted twice in prunable_weights/weight_sparsity; a neuron module used at two places
    # that fired alike crashed raster() ("Boolean value of Tensor ... is ambiguous")
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    second.weight = first.weight
    with torch.no_grad():
        first.weight[:2] = 0
    lif = LIF()
    net = nn.Sequential(SeqToANN(first), lif, SeqToANN(second), lif)
    graph = visualizer.topology(net, batch=torch.zeros(3, 2, 8))
    assert graph.graph["prunable_weights"] == 64 and graph.graph["weight_sparsity"] == pytest.approx(0.25)
    assert visualizer.raster(net, tmp_path / "raster.png", batch=torch.zeros(3, 2, 8)).is_file()


def test_stdp_weights_keep_float64_and_output_paths_expand_home(tmp_path, monkeypatch):
    root = tmp_path / "run"
    arrays = make_stdp_run(root)
    w = arrays["w_xe"].astype(np.float64) / 3  # float64 values float32 would round
    atomic_savez(root / "weights.npz", **{**arrays, "w_xe": w})
    graph = visualizer.topology(root)
    weights = {
        (int(u[3:]), int(v[4:])): d["weight"]
        for u, v, d in graph.edges(data=True)
        if d["kind"] == "input_exc"
    }
    assert weights and all(value == w[i, j] for (i, j), value in weights.items())
    monkeypatch.setenv("HOME", str(tmp_path))
    assert visualizer.export(graph, "~/g.json") == tmp_path / "g.json" and (tmp_path / "g.json").is_file()
    assert visualizer.draw(graph, "~/g.png") == tmp_path / "g.png"


def test_bool_and_uint8_spike_batches_run_as_floats(tmp_path):
    # a bool spike tensor given as batch= was refused with a shape error (the same tensor as a .pt ran)
    net = nn.Sequential(SeqToANN(nn.Linear(8, 4)), LIF())
    spikes = torch.rand(3, 2, 8) > 0.5
    for batch in (spikes, spikes.to(torch.uint8)):
        graph = visualizer.topology(net, batch=batch)
        assert graph.graph["input_shape"] and any(
            d.get("kind") == "neuron" for _, d in graph.nodes(data=True)
        )
        assert visualizer.raster(net, tmp_path / "r.png", batch=batch).is_file()


def _edges(graph: nx.DiGraph) -> set[tuple[str, str]]:
    return set(graph.edges())


def test_pass_through_layers_tuple_outputs_and_layers_named_input_keep_their_edges():
    # nn.Identity / Dropout returned their input, which was relabelled as theirs (sc -> fc instead of
    # input -> fc); only the first head of a tuple output fed "output"; a layer named "input" merged
    # into the input node.
    class ShortcutFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sc, self.fc, self.sn = nn.Identity(), SeqToANN(nn.Linear(8, 8)), LIF()

        def forward(self, x):
            sc = self.sc(x)
            return self.sn(self.fc(x) + sc)

    edges = _edges(layer_graph(ShortcutFirst(), input_shape=(2, 1, 8)))
    assert {("input", "sc"), ("input", "fc.0"), ("sc", "add"), ("fc.0", "add")} <= edges
    assert ("sc", "fc.0") not in edges

    class DropSkip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre, self.drop, self.fc = (
                SeqToANN(nn.Linear(8, 8)),
                nn.Dropout(0.5),
                SeqToANN(nn.Linear(8, 8)),
            )

        def forward(self, x):
            h = self.pre(x)
            return self.fc(self.drop(h)) + h

    edges = _edges(layer_graph(DropSkip(), input_shape=(2, 1, 8)))
    assert ("pre.0", "add") in edges and ("drop", "add") not in edges

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input, self.sn = SeqToANN(nn.Linear(8, 8)), LIF()
            self.a, self.b = SeqToANN(nn.Linear(8, 4)), SeqToANN(nn.Linear(8, 3))

        def forward(self, x):
            h = self.sn(self.input(x))
            return {"logits": self.a(h), "aux": self.b(h)}

    import collections

    Pair = collections.namedtuple("Pair", "a b")

    class PairOf(nn.Module):  # a namedtuple holding the input itself
        def forward(self, x):
            return Pair(x, x * 2)

    class UsesPair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair, self.fc = PairOf(), nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(x) + self.pair(x).b

    assert ("input", "fc") in _edges(layer_graph(UsesPair(), input_shape=(2, 1, 8)))

    graph = layer_graph(TwoHeads(), input_shape=(2, 1, 8))
    assert {("a.0", "output"), ("b.0", "output"), ("input", "input.0")} <= _edges(graph)
    assert graph.nodes["input.0"]["params"] == 72 and graph.nodes["input"]["calls"] == 1

    class Named(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.input, self.sn, self.output = nn.Linear(10, 20), LIF(), nn.Linear(20, 5)

        def forward(self, x):
            return self.output(self.sn(self.input(x)))

    graph = layer_graph(Named(), input_shape=(2, 1, 10))
    assert graph.nodes["input (layer)"]["params"] == 220 and graph.nodes["output (layer)"]["params"] == 105
    assert _edges(graph) == {
        ("input", "input (layer)"),
        ("input (layer)", "sn"),
        ("sn", "output (layer)"),
        ("output (layer)", "output"),
    }


def test_expected_mode_rasters_hold_probabilities_not_spikes(tmp_path):
    # Every nonzero firing probability was drawn as a spike: all 64 neurons at every step, rate 0.007.
    from nsnn.layers import set_eval_mode
    from visualizer.activity import spike_activity

    torch.manual_seed(0)
    net = nn.Sequential(SeqToANN(nn.Linear(6, 32)), NILIF(sigma=0.3))
    set_eval_mode(net, "expected")
    x = torch.randn(5, 2, 6) * 0.3
    (layer,) = spike_activity(net, x)
    assert layer.raster.dtype == np.float32 and 0 < layer.raster.max() < 1
    with torch.no_grad():
        expected = net.eval()(x)[:, 0].flatten(1).numpy()[:, layer.shown]  # spike_activity runs in eval
    np.testing.assert_allclose(layer.raster, expected, rtol=1e-6)
    assert_png(visualizer.raster(net, tmp_path / "raster.png", batch=x))


def test_tied_weights_count_once_in_the_weight_histogram():
    from visualizer.weight_plots import module_weights

    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16))
    net[2].weight = net[0].weight
    assert module_weights(net).size == 256
    # a parametrized layer computes a new weight at each access, whose id a freed one's may take
    from torch.nn.utils import parametrize

    class Half(nn.Module):
        def forward(self, w):
            return w * 0.5

    net = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 16))
    for i in (0, 2, 3):
        parametrize.register_parametrization(net[i], "weight", Half())
    assert module_weights(net).size == 768


def test_unfinished_stdp_runs_and_malformed_checkpoints_get_one_line(tmp_path, capsys):
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    unfinished = tmp_path / "stdp"
    unfinished.mkdir()
    atomic_savez(unfinished / "train_state.npz", w=np.zeros(2))
    assert main([str(unfinished), "--out", str(tmp_path / "o1")]) == 2
    assert f"finish it with: python scripts/stdp_mnist.py --resume {unfinished}" in capsys.readouterr().err
    ckpt = make_checkpoint(create("mnist_mlp", hidden=8), epoch=1, config={})
    ckpt["compression"] = ["not", "a", "dict"]  # an AttributeError deep in load_model was a traceback
    save_checkpoint(ckpt, tmp_path / "bad" / "best.pt")
    assert main([str(tmp_path / "bad"), "--out", str(tmp_path / "o2")]) == 2
    assert "is not a usable nsnn checkpoint" in capsys.readouterr().err


def test_cli_refuses_flags_that_no_wanted_figure_reads(stdp_dir, bptt_dir, tmp_path, capsys):
    # They were accepted, exit 0, and did nothing.
    root, _ = stdp_dir
    batch = tmp_path / "b.pt"
    torch.save(torch.rand(2, 1, 1, 28, 28), batch)
    for argv, message in (
        ([str(root), "--what", "fields", "--export", "gexf"], "--export writes the topology's graph files"),
        (
            [str(root), "--what", "topology", "--inhibition", "full", "--export", "none"],
            "--inhibition shapes",
        ),
        ([str(root), "--what", "fields", "--top-k", "9"], "--top-k is read by the STDP topology drawing"),
        ([str(bptt_dir[0]), "--what", "hist", "--batch", str(batch)], "--batch feeds the raster"),
        (
            [str(bptt_dir[0]), "--what", "rates", "--batch", str(batch), "--batch-size", "1"],
            "--batch-size takes images from the run's test set",
        ),
    ):
        assert main([*argv, "--out", str(tmp_path / "o")]) == 2, argv
        assert message in capsys.readouterr().err
    assert (
        main([str(bptt_dir[0]), "--what", "rates", "--batch", str(batch), "--out", str(tmp_path / "o")]) == 0
    )


def test_a_before_model_of_another_network_is_refused(bptt_dir, tmp_path, capsys):
    # An MLP's checkpoint was drawn as the "before compression" of a ConvNet (317,600 vs 206,736 weights).
    from nsnn.models import create
    from nsnn.training.checkpoint import make_checkpoint, save_checkpoint

    with pytest.raises(ValueError, match=r"another network than the TinyResNet shown.*only in --before: 0"):
        visualizer.weight_histograms(TinyResNet(), tmp_path / "h.png", before=nn.Sequential(nn.Linear(4, 2)))
    wider = TinyResNet()
    wider.conv2 = SeqToANN(nn.Conv2d(8, 8, 5, padding=2, bias=False))  # same names, another kernel
    with pytest.raises(
        ValueError, match=r"shapes \(--before vs model\): conv2.0 \[8, 8, 5, 5\] vs \[8, 8, 3, 3\]\)"
    ):
        visualizer.weight_histograms(TinyResNet(), tmp_path / "h.png", before=wider)
    save_checkpoint(make_checkpoint(create("mnist_mlp"), epoch=1, config={}), tmp_path / "mlp" / "best.pt")
    out = tmp_path / "out"
    argv = [str(bptt_dir[0]), "--out", str(out), "--what", "hist", "--before", str(tmp_path / "mlp")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is another network than the MNISTConvNet shown" in err and "only in the model: " in err
    assert not out.exists()  # refused before any figure
    assert main([*argv[:-1], str(bptt_dir[0] / "best.pt")]) == 0  # the same network compares


def test_curves_of_a_path_that_does_not_exist_name_it(bptt_dir, tmp_path):
    # A typo'd run or checkpoint in a run folder silently plotted the folder's own metrics.csv.
    for missing in (bptt_dir[0] / "no_such_run", bptt_dir[0] / "best_typo.pt", tmp_path / "nonexistent"):
        with pytest.raises(FileNotFoundError, match=f"no such file or directory: {missing}$"):
            visualizer.curves(missing, tmp_path / "c.png")
    assert_png(visualizer.curves(bptt_dir[0] / "best.pt", tmp_path / "c.png"))  # a checkpoint: its run's


def test_topology_refuses_arguments_its_input_does_not_read(stdp_dir):
    # An STDP run silently ignored batch=, input_shape=, batch_raw=; a module any inhibition=, and an
    # input_shape beside a batch.
    root, _ = stdp_dir
    for kwargs, given in (
        ({"batch": torch.zeros(2, 1, 16)}, "batch applies"),
        ({"input_shape": (2, 1, 16)}, "input_shape applies"),
        ({"batch_raw": True, "input_shape": (2, 1, 16)}, "batch_raw, input_shape apply"),
    ):
        with pytest.raises(ValueError, match=f"{root} is an STDP run: {given} to BPTT models only; drop"):
            visualizer.topology(root, **kwargs)
    assert visualizer.topology(root, inhibition="full").graph["kind"] == "stdp"
    x = torch.rand(2, 1, 2, 6, 6)
    for inhibition in ("bogus", "summary"):
        with pytest.raises(
            ValueError, match="this input is a BPTT model: inhibition applies to STDP runs only"
        ):
            visualizer.topology(TinyResNet(), inhibition=inhibition)
    with pytest.raises(ValueError, match="give batch or input_shape, not both"):
        visualizer.topology(TinyResNet(), batch=x, input_shape=(2, 1, 2, 8, 8))


def test_figures_of_firing_probabilities_say_so():
    # Expected-mode rasters (grey ticks of probabilities) were titled "Spike rasters" with no hint.
    from nsnn.layers import set_eval_mode
    from visualizer.activity import spike_activity
    from visualizer.activity_plots import raster_figure, rates_figure

    torch.manual_seed(0)
    net = nn.Sequential(SeqToANN(nn.Linear(6, 32)), NILIF(sigma=0.3))
    x = torch.randn(5, 2, 6) * 3
    for mode, probabilities in (("stochastic", False), ("expected", True)):
        set_eval_mode(net, mode)
        layers = spike_activity(net, x)
        assert [layer.probabilities for layer in layers] == [probabilities]
        raster_title = raster_figure(layers, "note")._suptitle.get_text()
        rates_title = rates_figure(layers, "note").axes[0].get_title()
        for title in (raster_title, rates_title):
            assert ("firing probabilities (expected eval mode), not spikes" in title) is probabilities
            assert title.endswith("\nnote")
        assert ("the darker, the likelier" in raster_title) is probabilities
        assert raster_title.startswith("Rasters" if probabilities else "Spike rasters")


def test_stdp_histogram_of_a_run_pruned_during_training_names_its_shadow(tmp_path):
    # The shadow of a run pruned during training was titled "before ... / after compression": both 60 %
    # zero, as if compression had pruned nothing.
    from visualizer.api import histogram_figure

    root = tmp_path / "stdp"
    arrays = make_stdp_run(root, before=False)
    shadow = np.where(arrays["mask"], np.random.default_rng(1).random(arrays["mask"].shape), 0)
    atomic_savez(root / "weights.npz", **arrays, w_xe_shadow=shadow)
    title = histogram_figure(visualizer.load_source(root)).axes[0].get_title()
    assert title == (
        "STDP input weights at the end of training (w_xe_shadow, pruned during training) / after compression"
    )
    write_json(root / "config.json", {"n_input": 16, "n_exc": 6, "bits": 4})
    atomic_savez(root / "weights.npz", **arrays, w_xe_shadow=shadow + 0.5)  # quantized during training only
    title = histogram_figure(visualizer.load_source(root)).axes[0].get_title()
    assert title == "STDP input weights before quantization (w_xe_shadow) / after compression"


def test_drawing_and_figure_texts_say_what_is_drawn(stdp_dir, tmp_path):
    from visualizer.api import fields_figure, histogram_figure
    from visualizer.curves import curves_figure

    root, _ = stdp_dir  # a 4×4 input
    fig = draw_stdp(visualizer.topology(root), top_k=1, patch=29)
    texts = [t.get_text() for t in [*fig.texts, *fig.axes[0].texts]]
    rule = next(t for t in texts if t.startswith("Drawing rule"))
    assert "pooled into 4×4 patches; for each excitatory neuron the patch with the largest" in rule
    assert "weight is drawn" in rule and "input 4×4 px → 1×1 patches" in texts
    with pytest.raises(ValueError, match="--before needs a BPTT model"):
        histogram_figure(visualizer.load_source(TinyResNet()), before=root)
    make_stdp_run(tmp_path / "dense", keep=1.0)
    for run, pruned in ((tmp_path / "dense", None), (root, "; light blue = pruned (59.4%)")):
        title = fields_figure(visualizer.load_source(run))._suptitle.get_text()
        assert ("light blue" in title) is bool(pruned) and (pruned is None or title.endswith(pruned))
    log = CsvLog(tmp_path / "metrics.csv", ["epoch", "train_loss"])
    log.append({"epoch": 1, "train_loss": 0.5})
    fig = curves_figure(tmp_path / "metrics.csv")
    fig.canvas.draw()
    (ax,) = fig.axes
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1.0]  # no 0.96 … 1.04
