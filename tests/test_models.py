"""nsnn.models: registry, shapes, parameter counts, layer order, gradients, encoding, rebuild."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import nsnn
from nsnn import models
from nsnn.models import BasicBlock, count_parameters, create, encode, list_models, predict
from nsnn.neurons import LIF, NILIF, PLIF, SpikingNeuron

ALL_MODELS = {
    "spiking_resnet19",
    "spiking_resnet18",
    "spiking_resnet34",
    "vgg11",
    "vgg16",
    "vggsnn",
    "cifarnet",
    "mnist_mlp",
    "mnist_convnet",
}
# Small inputs per model (C, H, W); vgg11/16 halve five times, so they need 32 px; one non-square.
SMALL_INPUTS = {
    "spiking_resnet19": (3, 8, 8),
    "spiking_resnet18": (3, 8, 8),
    "spiking_resnet34": (3, 8, 8),
    "vgg11": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "vggsnn": (2, 16, 16),
    "cifarnet": (3, 8, 12),
    "mnist_mlp": (1, 28, 28),
    "mnist_convnet": (1, 28, 28),
}


def _neurons(net: nn.Module) -> list[SpikingNeuron]:
    return [m for m in net.modules() if isinstance(m, SpikingNeuron)]


def _small(name: str) -> tuple[nn.Module, torch.Tensor]:
    c, h, w = SMALL_INPUTS[name]
    net = create(name, num_classes=7, in_channels=c, image_size=[h, w])
    return net, torch.rand(2, 2, c, h, w)


def test_registry_lists_every_model():
    assert set(list_models()) == ALL_MODELS
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_output_shape_every_model(name):
    torch.manual_seed(0)
    net, x = _small(name)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 2, 7)
    assert torch.isfinite(out).all()
    neurons = _neurons(net)
    assert neurons, "a spiking model without spiking neurons"
    assert len({id(m) for m in neurons}) == len(neurons)


@pytest.mark.parametrize(("kind", "cls"), [("NILIF", NILIF), ("LIF", LIF), ("PLIF", PLIF)])
def test_neuron_kind_and_settings_reach_every_layer(kind, cls):
    net = create("mnist_convnet", neuron=kind, noise="logistic", sigma=0.25, tau=3.0, threshold=0.8)
    neurons = _neurons(net)
    assert len(neurons) == 3
    for m in neurons:
        assert type(m) is cls
        assert m.threshold == pytest.approx(0.8)
        assert m.noise.name == "logistic"
        assert m.noise.sigma == pytest.approx(0.25)
    if kind == "PLIF":
        assert all(m.learned_tau == pytest.approx(3.0) for m in neurons)
        assert len({id(m.w) for m in neurons}) == 3
    else:
        assert all(m.tau == pytest.approx(3.0) for m in neurons)
    out = net(torch.rand(2, 2, 1, 28, 28))
    assert out.shape == (2, 2, 10)


def test_resnet19_neurons_are_fresh_per_layer():
    net = create("spiking_resnet19")
    # stem + 2 per block × 8 blocks + the hidden FC layer
    assert len(_neurons(net)) == 1 + 2 * 8 + 1


@pytest.mark.parametrize(
    ("name", "reference", "exact"),
    [
        ("spiking_resnet19", 12.63e6, 12_630_858),
        ("spiking_resnet18", 11.17e6, 11_173_962),
        ("cifarnet", 45.00e6, 45_003_018),
    ],
)
def test_parameter_counts_match_reference(name, reference, exact):
    n = count_parameters(create(name, num_classes=10, in_channels=3))
    assert n == exact
    assert abs(n - reference) / reference < 0.005


def test_count_parameters_trainable_only():
    net = create("mnist_mlp")
    assert count_parameters(net) == 784 * 400 + 400 + 400 * 10 + 10
    net.hidden.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 400 * 10 + 10


def test_image_size_helper_refuses_what_is_not_a_positive_int_or_pair():
    from nsnn.models.common import image_hw

    assert image_hw(5) == (5, 5) and image_hw([4, 6]) == (4, 6)
    for bad in (2.0, True, (3, True), "32", (4,), (0, 3), None):
        with pytest.raises(ValueError, match="image_size must be"):
            image_hw(bad)


def test_resnet_stem_follows_image_size():
    def stem_conv(net):
        return next(m for m in net.stem.modules() if isinstance(m, nn.Conv2d))

    small, large = create("spiking_resnet18", image_size=32), create("spiking_resnet18", image_size=48)
    assert (stem_conv(small).kernel_size, stem_conv(small).stride) == ((3, 3), (1, 1))
    assert (stem_conv(large).kernel_size, stem_conv(large).stride) == ((7, 7), (2, 2))
    with torch.no_grad():
        assert large(torch.rand(1, 1, 3, 48, 48)).shape == (1, 1, 10)


def test_zero_init_residual():
    def second_bns(net):
        return [
            m
            for b in net.modules()
            if isinstance(b, BasicBlock)
            for m in b.conv_bn2.modules()
            if isinstance(m, nn.BatchNorm2d)
        ]

    net = create("spiking_resnet18", zero_init_residual=True)
    zeroed = second_bns(net)
    assert len(zeroed) == 8 and all(torch.equal(bn.weight, torch.zeros_like(bn.weight)) for bn in zeroed)
    default = second_bns(create("spiking_resnet18"))
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in default)
    with torch.no_grad():
        assert net(torch.rand(1, 2, 3, 8, 8)).shape == (1, 2, 10)


@pytest.mark.parametrize("name", ["vgg11", "vggsnn"])
@pytest.mark.parametrize("size", [32, 48])
def test_vgg_any_image_size(name, size):
    c = 2 if name == "vggsnn" else 3
    net = create(name, in_channels=c, image_size=size)
    with torch.no_grad():
        assert net(torch.rand(1, 2, c, size, size)).shape == (1, 2, 10)
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    pools = 5 if name == "vgg11" else 4
    assert [m.in_features for m in linear] == [512 * (size >> pools) ** 2]


def test_vggsnn_matches_reference_layout():
    net = create("vggsnn")
    convs = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]
    assert next(m for m in net.modules() if isinstance(m, nn.Conv2d)).in_channels == 2
    assert next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features == 512 * 3 * 3


def test_vgg_convs_are_kaiming_fan_out():
    torch.manual_seed(0)
    conv = [m for m in create("vgg11").modules() if isinstance(m, nn.Conv2d)][-1]
    expected = math.sqrt(2.0 / (conv.out_channels * 9))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)


def test_hidden_layers_fire_at_init():
    torch.manual_seed(0)
    net = create("mnist_convnet", neuron="LIF")  # training mode: BN normalises with batch statistics
    rates: list[float] = []
    for m in _neurons(net):
        m.register_forward_hook(lambda mod, i, o: rates.append(o.mean().item()))
    with torch.no_grad():
        net(encode(torch.rand(16, 1, 28, 28), 4))
    assert len(rates) == 3 and all(r > 0.005 for r in rates), rates
    hidden = net.classifier[0][-1]
    assert hidden.weight.std().item() == pytest.approx(math.sqrt(2 / hidden.in_features), rel=0.05)
    assert torch.equal(hidden.bias, torch.zeros_like(hidden.bias))


def test_cifarnet_has_neurons_between_fc_layers():
    net = create("cifarnet", image_size=8)
    calls: list[str] = []
    for m in net.modules():
        if isinstance(m, nn.Linear | SpikingNeuron | nn.Conv2d):
            m.register_forward_hook(lambda mod, i, o: calls.append(type(mod).__name__))
    with torch.no_grad():
        net(torch.rand(2, 2, 3, 8, 8))
    assert calls == ["Conv2d", "NILIF"] * 5 + ["Linear", "NILIF", "Linear", "NILIF", "Linear"]
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [1024, 512, 10]
    assert next(m for m in net.modules() if isinstance(m, nn.Linear)).in_features == 512 * 2 * 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with_bn = create("cifarnet", image_size=8, bn=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 5


@pytest.mark.parametrize("neuron", ["LIF", "NILIF"])
def test_cifarnet_without_bn_fires_in_every_layer_at_init(neuron):
    """Seven spiking layers and no BN: with Kaiming fan_in weights the spikes died out from the fourth
    layer on (rates 0.28, 0.13, 0.02, 0, 0, 0, 0; constant logits). The spike-driven init keeps every
    layer firing and the logits depend on the input."""
    torch.manual_seed(0)
    net = create("cifarnet", neuron=neuron, image_size=16)
    rates: list[float] = []
    for m in net.modules():
        if isinstance(m, SpikingNeuron):
            m.register_forward_hook(lambda mod, i, o: rates.append(o.float().mean().item()))
    with torch.no_grad():
        logits = net(encode(torch.randn(8, 3, 16, 16), 4)).mean(0)
    assert len(rates) == 7 and all(0.05 < r < 0.5 for r in rates), rates
    assert logits.std(0).mean().item() > 0.01
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[1].weight.std().item() == pytest.approx(1 / math.sqrt(128 * 9 / 8), rel=0.05)


def test_cifarnet_without_bn_keeps_kaiming_init_on_its_image_fed_conv():
    # The first conv sees images, not sparse spikes: Kaiming fan_in (std √(2/27)), not θ/√(27/8) (2×).
    torch.manual_seed(0)
    convs = [m for m in create("cifarnet", image_size=8).modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].weight.std().item() == pytest.approx(math.sqrt(2 / (3 * 9)), rel=0.1)
    assert convs[1].weight.std().item() == pytest.approx(1 / math.sqrt(128 * 9 / 8), rel=0.1)  # spike-fed


def test_spike_driven_init_std_zero_bias_and_validation():
    from nsnn.models.common import spike_driven_init

    torch.manual_seed(0)
    layer = nn.Linear(64, 256)
    assert layer.bias.abs().sum() > 0  # PyTorch's default init: a nonzero bias
    spike_driven_init([layer], threshold=0.5)
    assert layer.weight.std().item() == pytest.approx(0.5 / math.sqrt(0.125 * 64), rel=0.05)
    assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    for threshold, rate in ((0.0, 0.125), (1.0, 0.0), (-1.0, 0.125)):
        with pytest.raises(ValueError, match="rate and threshold must be > 0"):
            spike_driven_init([nn.Linear(4, 4)], threshold, rate)


@pytest.mark.parametrize("name", ["mnist_convnet", "spiking_resnet19", "cifarnet", "mnist_mlp"])
def test_gradient_reaches_first_layer(name):
    torch.manual_seed(0)
    net, x = _small(name)
    net(x * 4).pow(2).sum().backward()
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    assert first.weight.grad is not None
    assert first.weight.grad.abs().sum() > 0


def test_encode_direct():
    x = torch.rand(3, 1, 4, 4)
    seq = encode(x, 5)
    assert seq.shape == (5, 3, 1, 4, 4) and seq.dtype == x.dtype
    assert all(torch.equal(seq[t], x) for t in range(5))
    seq[0].zero_()
    assert x.abs().sum() > 0, "direct encoding must not alias its input"


def test_encode_poisson_statistics():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, -0.3, 1.7])
    x = p.repeat(2000, 1)
    gen = torch.Generator().manual_seed(1)
    spikes = encode(x, 10, "poisson", generator=gen)
    assert spikes.shape == (10, 2000, 7) and spikes.dtype == x.dtype
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    n = 10 * 2000
    rate = spikes.mean(dim=(0, 1))
    for q, r in zip(p.clamp(0, 1).tolist(), rate.tolist(), strict=True):
        bound = 5 * math.sqrt(q * (1 - q) / n)
        assert abs(r - q) <= bound, (q, r, bound)
    again = encode(x, 10, "poisson", generator=torch.Generator().manual_seed(1))
    assert torch.equal(spikes, again)
    assert not torch.equal(spikes[0], spikes[1]), "steps must be independent draws"


def test_predict_uses_mean_over_time():
    logits = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 1.0]],
            [[1.0, 0.0], [0.0, 1.0]],
            [[0.0, 5.0], [3.0, 0.0]],
        ]
    )  # per-step majority says [0, 1]; the mean says [1, 0]
    assert predict(logits).tolist() == [1, 0]


@pytest.mark.parametrize("name", ["spiking_resnet19", "mnist_convnet"])
def test_create_rebuilds_from_config(name):
    c, h, w = SMALL_INPUTS[name]
    net = create(name, num_classes=5, in_channels=c, image_size=h, neuron="PLIF", sigma=0.4, tau=1.5)
    config = json.loads(json.dumps(net.config))
    assert config["name"] == name
    kwargs = config["kwargs"]
    assert kwargs["num_classes"] == 5 and kwargs["neuron"] == "PLIF" and kwargs["sigma"] == 0.4
    assert set(kwargs) == set(models.arch_kwargs(name)) | set(models.NEURON_KWARGS)
    twin = create(config["name"], **kwargs)
    twin.load_state_dict(net.state_dict(), strict=True)
    assert twin.config == net.config
    assert repr(twin) == repr(net)
    net.eval()
    twin.eval()
    x = torch.rand(2, 2, c, h, w)
    with torch.no_grad():
        assert torch.equal(net(x), twin(x))


def test_create_takes_ints_and_numpy_floats_as_neuron_numbers():
    net = create("mnist_mlp", hidden=16, threshold=1, tau=3, sigma=np.float32(0.25), detach_reset=True)
    kwargs = net.config["kwargs"]
    assert [kwargs[k] for k in ("threshold", "tau", "sigma")] == [1.0, 3.0, 0.25]
    assert all(type(kwargs[k]) is float for k in ("threshold", "tau", "sigma"))
    for m in _neurons(net):
        assert (m.threshold, m.tau, m.noise.sigma, m.detach_reset) == (1.0, 3.0, 0.25, True)
    twin = create(net.config["name"], **json.loads(json.dumps(net.config))["kwargs"])
    assert twin.config == net.config


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("detach_reset", "false"),
        ("detach_reset", 0),
        ("sigma", "0.3"),
        ("sigma", True),
        ("tau", float("inf")),
        ("threshold", None),
        ("threshold", float("nan")),
    ],
)
def test_create_rejects_mistyped_neuron_keywords(key, value):
    kind = "true or false" if key == "detach_reset" else "a finite real number"
    with pytest.raises(ValueError, match=rf"{key} of model 'vgg11' must be {kind}, got "):
        create("vgg11", **{key: value})


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_trace_with_check_matches_eager(grad):
    # The trace check reruns the model under no_grad: the recorded graph must not depend on grad mode.
    torch.manual_seed(0)
    net = create("mnist_convnet", neuron="LIF").eval()
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(net, torch.rand(2, 2, 1, 28, 28))
    x = torch.rand(3, 2, 1, 28, 28) * 2
    first = next(net.parameters())  # the first conv's weight: its gradient passes every neuron
    results = []
    for module in (net, traced):
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        out.square().sum().backward()
        results.append((out.detach(), xi.grad, first.grad.clone()))
        net.zero_grad()
    (out, grad_x, grad_w), (traced_out, traced_grad_x, traced_grad_w) = results
    assert torch.equal(traced_out, out) and out.abs().sum() > 0
    assert torch.equal(traced_grad_x, grad_x) and grad_x.abs().sum() > 0
    assert torch.equal(traced_grad_w, grad_w)


def test_eval_mode_reaches_model_neurons():
    net = create("mnist_mlp", hidden=32).eval()
    nsnn.set_eval_mode(net, "expected")
    out = net(torch.rand(3, 2, 1, 28, 28))
    assert out.shape == (3, 2, 10)
    assert all(m.eval_mode == "expected" for m in _neurons(net))


def test_value_errors():
    with pytest.raises(ValueError, match=r"available: .*mnist_convnet"):
        create("resnet50")
    with pytest.raises(ValueError, match=r"unknown keyword.*width"):
        create("vgg11", width=3)
    with pytest.raises(ValueError, match="NILIF"):
        create("mnist_mlp", neuron="IF")
    with pytest.raises(ValueError, match="too small"):
        create("vgg11", image_size=16)
    with pytest.raises(ValueError, match="JSON"):
        create("mnist_mlp", noise=nsnn.get_noise("gaussian", 0.3))
    with pytest.raises(ValueError, match="image_size"):
        create("cifarnet", image_size=[32, 32, 3])
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        create("mnist_convnet")(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"\[T, B, F\] or \[T, B, C, H, W\]"):
        create("mnist_mlp")(torch.rand(5, 1, 28, 28))  # images not encoded over time
    from nsnn.models import NeuronSpec, SpikingResNet

    with pytest.raises(ValueError, match=">= 1 block"):
        SpikingResNet(NeuronSpec(), [0, 2], [8, 16], [1, 2])
    with pytest.raises(ValueError, match="direct"):
        encode(torch.rand(2, 3), 4, method="rate")
    with pytest.raises(ValueError, match="positive int"):
        encode(torch.rand(2, 3), 0)
    with pytest.raises(ValueError, match="float"):
        encode(torch.ones(2, 3, dtype=torch.uint8), 2, method="poisson")
    with pytest.raises(ValueError, match="T, B, classes"):
        predict(torch.rand(4, 10))

    def vgg11(neuron, *, num_classes=10, in_channels=3, image_size=32):  # another factory, same name
        return models.registry._MODELS["mnist_mlp"](neuron, num_classes=num_classes)

    with pytest.raises(ValueError, match="already registered"):
        models.register_model(vgg11)
    original = models.registry._MODELS["vgg11"]
    assert models.register_model(original) is original  # the same definition again: accepted


def test_a_registered_model_without_a_default_names_the_missing_keyword(monkeypatch):
    monkeypatch.setattr(models.registry, "_MODELS", dict(models.registry._MODELS))

    @models.register_model
    def needs_width(neuron, *, width, num_classes=10):
        return torch.nn.Linear(width, num_classes)

    with pytest.raises(ValueError, match=r"needs the keyword\(s\) \['width'\], which have no default"):
        create("needs_width")
    assert create("needs_width", width=3).config["kwargs"]["width"] == 3


def test_numpy_integer_counts_are_accepted_and_recorded_as_ints_and_a_list_neuron_is_refused():
    net = create("mnist_mlp", num_classes=np.int64(7), hidden=np.int32(16))
    assert net.config["kwargs"]["num_classes"] == 7 and type(net.config["kwargs"]["num_classes"]) is int
    assert net(torch.rand(2, 3, 1, 28, 28)).shape == (2, 3, 7)
    small = create("cifarnet", image_size=(np.int64(12), np.int64(20)))
    assert small.config["kwargs"]["image_size"] == [12, 20]
    with pytest.raises(ValueError, match=r"unknown neuron \['LIF'\]; valid choices: NILIF"):
        create("mnist_mlp", neuron=["LIF"])
    with pytest.raises(ValueError, match="num_classes of model 'mnist_mlp' must be a positive integer"):
        create("mnist_mlp", num_classes=np.bool_(True))


def test_an_own_models_integer_keywords_take_its_own_range_and_a_zoo_width_must_be_positive(monkeypatch):
    # Any keyword with an int default >= 1 had to be a positive integer: extra_layers=0 was refused.
    monkeypatch.setattr(models.registry, "_MODELS", dict(models.registry._MODELS))

    @models.register_model
    def deep_mlp(neuron, *, num_classes=10, in_channels=1, image_size=28, extra_layers=1, gain=1.0):
        layers = [nsnn.SeqToANN(torch.nn.Flatten(), torch.nn.Linear(in_channels * image_size**2, 8))]
        for _ in range(extra_layers):
            layers += [neuron.build(), nsnn.SeqToANN(torch.nn.Linear(8, 8))]
        return torch.nn.Sequential(*layers, nsnn.SeqToANN(torch.nn.Linear(8, num_classes)))

    net = create("deep_mlp", extra_layers=np.int64(0), gain=0.5)
    assert net.config["kwargs"]["extra_layers"] == 0 and type(net.config["kwargs"]["extra_layers"]) is int
    assert net.config["kwargs"]["gain"] == 0.5 and len(net) == 2
    with pytest.raises(
        ValueError, match=r"extra_layers of model 'deep_mlp' must be an integer like its default 1"
    ):
        create("deep_mlp", extra_layers=1.5)
    with pytest.raises(ValueError, match="in_channels of model 'deep_mlp' must be a positive integer"):
        create("deep_mlp", in_channels=0)
    for model, key in (("mnist_mlp", "hidden"), ("mnist_convnet", "width"), ("mnist_convnet", "hidden")):
        with pytest.raises(ValueError, match=rf"{key} of MNIST\w+ must be >= 1, got 0"):
            create(model, **{key: 0})


@pytest.mark.parametrize(
    ("name", "kwargs", "bad"),
    [
        ("mnist_mlp", {}, (1, 28, 30)),
        ("mnist_convnet", {}, (1, 32, 32)),
        ("vgg11", {"image_size": 32}, (3, 36, 36)),
        ("cifarnet", {}, (1, 32, 32)),
        ("spiking_resnet18", {}, (1, 32, 32)),
    ],
)
def test_input_of_another_size_than_the_model_was_built_for_is_named(name, kwargs, bad):
    # was a bare "mat1 and mat2 shapes cannot be multiplied" from deep inside the network
    net = create(name, neuron="LIF", **kwargs)
    with pytest.raises(ValueError, match=r"was built for samples \[.*\] \(in_channels, image_size\)"):
        net(torch.rand(1, 2, *bad))


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_steps_one_input_per_call_in_single_step_mode(name):
    # check_input refused the [B, C, H, W] steps of nsnn.set_step_mode(net, "s") ("expects time-first
    # input ... rank 5"), so no zoo model could be stepped one input per call.
    torch.manual_seed(0)
    size_kw = {} if name.startswith("mnist") else {"image_size": 32}
    net = create(name, num_classes=10, neuron="LIF", **size_kw)
    net.eval()
    channels, size = net.sample_shape[0], net.sample_shape[-1] or 32
    x = torch.rand(3, 2, channels, size, size)
    with torch.no_grad():
        whole = net(x)
        nsnn.set_step_mode(net, "s")
        stepped = torch.stack([net(x_t) for x_t in x])
        with pytest.raises(ValueError, match="single-step mode"):
            net(x)  # a whole sequence in one call is refused, naming the mode
    assert torch.equal(stepped, whole)
