"""nsnn.compress: magnitude pruning with persistent masks, quantization, reports, synaptic events."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import nsnn
from nsnn.compress import (
    UniformLevels,
    apply_masks,
    attach_masks,
    compression_report,
    count_synaptic_events,
    layer_stats,
    level_bits,
    magnitude_prune,
    nearest_level,
    prune_mask,
    quantize,
    synaptic_events,
    uniform_levels,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def test_prune_mask_exact_count_global_and_per_axis():
    w = np.random.default_rng(0).normal(size=(50, 8))
    alive = prune_mask(w, sparsity=0.75)
    assert alive.sum() == 100
    assert np.abs(w[alive]).min() >= np.abs(w[~alive]).max()
    per_column = prune_mask(w, sparsity=0.75, axis=0)
    assert (per_column.sum(axis=0) == round(0.25 * 50)).all()
    for j in range(8):
        assert np.abs(w[per_column[:, j], j]).min() >= np.abs(w[~per_column[:, j], j]).max()


def test_threshold_prunes_magnitudes_not_exceeding_it():
    w = np.array([[-0.5, 0.1], [0.2, -0.05]])
    assert prune_mask(w, threshold=0.1).tolist() == [[True, False], [True, False]]
    assert prune_mask(np.array([0.0, 1.0, 0.0]), threshold=0.0).tolist() == [False, True, False]


def test_masks_only_shrink_and_dead_synapses_count_towards_the_target():
    rng = np.random.default_rng(1)
    w = rng.random((40, 5))
    w1, m1 = magnitude_prune(w, sparsity=0.5)
    w_grown = w1 + 10.0 * (~m1)
    w2, m2 = magnitude_prune(w_grown, sparsity=0.75, mask=m1)
    assert not (m2 & ~m1).any()
    assert m2.sum() == 50
    assert (w2[~m2] == 0).all()
    _, m3 = magnitude_prune(w_grown, sparsity=0.25, mask=m1)
    assert (m3 == m1).all()


def test_tensor_pruning_keeps_type_and_device():
    t = torch.randn(6, 7)
    pruned, mask = magnitude_prune(t, sparsity=0.5)
    assert isinstance(pruned, torch.Tensor) and mask.dtype == torch.bool
    assert int(mask.sum()) == 21 and (pruned[~mask] == 0).all()
    again, mask_again = magnitude_prune(t, sparsity=0.5, mask=mask.numpy())  # a numpy mask also works
    assert torch.equal(mask_again, mask) and torch.equal(again, pruned)


def test_module_pruning_per_layer_and_global():
    model = _model()
    report = magnitude_prune(model, sparsity=0.5)
    assert [round(layer.sparsity, 2) for layer in report.layers] == [0.5, 0.5]
    assert report.alive == sum(int((m.weight != 0).sum()) for m in (model[0], model[3]))

    model = _model()
    sizes = [model[0].weight.numel(), model[3].weight.numel()]
    report = magnitude_prune(model, sparsity=0.8, scope="global")
    assert report.alive == round(0.2 * sum(sizes))
    assert report.layers[0].sparsity != pytest.approx(report.layers[1].sparsity)


def test_module_pruning_per_neuron_gives_every_output_unit_the_same_fan_in():
    # README promised per-neuron pruning, but modules refused scope="neuron" (only arrays had axis=).
    model = _model()
    with torch.no_grad():
        model[3].weight[0] *= 100  # one strong unit: a per-layer ranking would keep all of its inputs
    dense = [model[0].weight.detach().clone(), model[3].weight.detach().clone()]
    report = magnitude_prune(model, sparsity=0.5, scope="neuron")
    for layer, w in zip((model[0], model[3]), dense, strict=True):
        axes = tuple(range(1, w.ndim))  # a Linear row, a Conv output channel
        expected = prune_mask(w.numpy(), sparsity=0.5, axis=axes)  # the arrays' semantics
        assert torch.equal(layer.weight_mask, torch.from_numpy(expected))
        assert (layer.weight_mask.flatten(1).sum(1) == w[0].numel() // 2).all()
        assert (layer.weight[~layer.weight_mask] == 0).all()
    assert [layer.sparsity for layer in report.layers] == [0.5, 0.5]
    old = model[3].weight_mask.clone()
    magnitude_prune(model, sparsity=0.75, scope="neuron")  # masks persist and only shrink
    assert not (model[3].weight_mask & ~old).any() and (model[3].weight_mask.sum(1) == 36).all()
    with pytest.raises(ValueError, match=r"scope must be one of \['neuron', 'layer', 'global'\]"):
        magnitude_prune(model, sparsity=0.5, scope="row")
    with pytest.raises(ValueError, match=r"scope must be one of \['layer', 'global'\]"):
        quantize(model, bits=4, scope="neuron")  # quantization has no per-neuron levels


def test_pruning_keeps_state_dict_keys():
    model = _model()
    keys = set(model.state_dict())
    magnitude_prune(model, sparsity=0.5)
    quantize(model, bits=4)
    assert set(model.state_dict()) == keys
    fresh = _model()
    fresh.load_state_dict(model.state_dict())


def test_loading_weights_drops_the_masks_and_bits_that_described_the_old_ones():
    dense = _model().state_dict()
    model = _model()
    magnitude_prune(model, sparsity=0.5)
    quantize(model, bits=4)
    pruned = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="its mask and bits are dropped"):
        model.load_state_dict(dense)  # the report must describe the weights the forward pass now uses
    report = compression_report(model)
    assert report.sparsity == 0.0 and [layer.bits for layer in report.layers] == [32, 32]
    model.load_state_dict(pruned)
    assert magnitude_prune(model, threshold=0.0).sparsity == pytest.approx(0.5, abs=0.01)
    assert torch.equal(model[0].weight_mask, pruned["0.weight"] != 0)
    model.load_state_dict({"3.bias": dense["3.bias"]}, strict=False)  # no weight loaded: masks stay
    assert hasattr(model[0], "weight_mask") and hasattr(model[3], "weight_mask")


def _fine_tuning(sparsity: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """``_model()`` pruned to ``sparsity`` and quantized to 4 bits,, and an SGD optimizer keeping masks."""
    model = _model()
    magnitude_prune(model, sparsity=sparsity)
    quantize(model, bits=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    attach_masks(model, optimizer)
    return model, optimizer


def test_loading_a_state_that_fits_the_masks_keeps_them():
    # model.load_state_dict(best) in pruned fine-tuning dropped the masks silently; the next optimizer
    # step (attach_masks then did nothing) brought the pruned weights back.
    model, optimizer = _fine_tuning(0.75)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_state_dict(best)
    assert [layer.bits for layer in compression_report(model).layers] == [4, 4]
    model(torch.randn(4, 2, 6, 6)).sum().backward()
    optimizer.step()
    assert compression_report(model).sparsity == pytest.approx(0.75, abs=0.01)


def test_loading_a_fine_tuned_state_keeps_the_mask_and_drops_only_the_bits():
    # A state zero where pruned but off the quantized levels (fine-tuning moved it) dropped the mask too,
    # with a warning pointing into torch; the next optimizer step brought the pruned weights back.
    model, optimizer = _fine_tuning(0.5)

    def step() -> None:
        optimizer.zero_grad()
        model(torch.randn(4, 2, 6, 6)).sum().backward()
        optimizer.step()

    on_levels = {k: v.clone() for k, v in model.state_dict().items()}
    step()
    tuned = {k: v.clone() for k, v in model.state_dict().items()}
    step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_state_dict(tuned)  # the bits record was already stale: dropped without a word
    assert hasattr(model[0], "weight_mask") and not hasattr(model[0], "weight_bits")
    step()
    assert compression_report(model).sparsity == pytest.approx(0.5, abs=0.01)
    model.load_state_dict(on_levels)
    quantize(model, bits=4)
    with pytest.warns(UserWarning, match="off its quantization levels: its bits are dropped") as caught:
        model.load_state_dict(tuned)
    assert {w.filename for w in caught} == {__file__}
    assert hasattr(model[3], "weight_mask") and not hasattr(model[3], "weight_levels")
    assert [layer.bits for layer in compression_report(model).layers] == [32, 32]


def test_global_pruning_ranks_a_tied_weight_once():
    # A weight shared by two layers entered the global ranking twice: 0.45 instead of 0.5, with the
    # other layer pruned too hard.
    torch.manual_seed(0)
    shared = nn.Linear(100, 100, bias=False)
    other = nn.Linear(100, 100, bias=False)
    model = nn.Sequential(shared, nn.ReLU(), other, nn.ReLU(), nn.Linear(100, 100, bias=False))
    model[4].weight = shared.weight
    with torch.no_grad():
        other.weight.mul_(3.0)
    report = magnitude_prune(model, sparsity=0.5, scope="global")
    assert report.sparsity == pytest.approx(0.5, abs=1e-4)
    assert torch.equal(model[0].weight_mask, model[4].weight_mask)
    ranked = torch.cat([shared.weight.detach().abs().flatten(), other.weight.detach().abs().flatten()])
    cut = ranked.sort().values[ranked.numel() // 2 - 1]
    kept = (shared.weight != 0).float().mean().item()
    assert kept == pytest.approx((shared.weight.detach().abs() > cut).float().mean().item(), abs=1e-3)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_pruned_weights_stay_zero_through_training(opt):
    model = _model()
    magnitude_prune(model, sparsity=0.7)
    dead = [(m.weight == 0).clone() for m in (model[0], model[3])]
    make = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    }[opt]
    optimizer = make(model.parameters())
    handle = attach_masks(model, optimizer)
    x, y = torch.randn(16, 2, 6, 6), torch.randint(0, 10, (16,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for m, d in zip((model[0], model[3]), dead, strict=True):
        assert (m.weight[d] == 0).all()
        assert (m.weight[~d] != 0).all()
    handle.remove()
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert (model[3].weight[dead[1]] != 0).any(), "without the hook the optimizer revives pruned weights"
    apply_masks(model)
    assert (model[3].weight[dead[1]] == 0).all()


def test_quantized_arrays_take_only_allowed_levels():
    rng = np.random.default_rng(2)
    w = rng.random((30, 20))
    w, mask = magnitude_prune(w, sparsity=0.5)
    for bits in (1, 2, 4):
        q = quantize(w, bits=bits, w_range=(0.0, 1.0), mask=mask)
        allowed = set(uniform_levels(bits, 0.0, 1.0).tolist())
        assert set(np.unique(q[mask]).tolist()) <= allowed
        assert (q[~mask] == 0).all()
        assert np.abs(q[mask] - w[mask]).max() <= 0.5 / (2**bits - 1) + 1e-12
    device = [0.0, 0.07, 0.3, 0.9]
    q = quantize(w, levels=device, mask=mask)
    assert set(np.unique(q[mask]).tolist()) <= set(device)
    assert (quantize(w, bits=32) == w).all()
    with pytest.raises(ValueError):
        quantize(w, bits=0)
    # A 0/1 mask of any dtype, as a tensor, means the same as the bool array.
    t = torch.tensor([0.1, -0.5, 0.9, 0.3])
    for m in (torch.tensor([1, 0, 1, 1]), torch.tensor([1.0, 0.0, 1.0, 1.0])):
        torch.testing.assert_close(quantize(t, bits=1, mask=m), torch.tensor([0.0, 0.0, 0.9, 0.0]))
        assert layer_stats("t", t, mask=m).distinct == 3


def test_quantized_module_report_and_levels():
    model = _model()
    magnitude_prune(model, sparsity=0.5)
    report = quantize(model, bits=3)
    assert [layer.bits for layer in report.layers] == [3, 3]
    for m in (model[0], model[3]):
        alive = m.weight[m.weight_mask]
        assert torch.unique(alive).numel() <= 8
        assert (m.weight[~m.weight_mask] == 0).all()
    model = _model()
    before = [m.weight.detach().double().clone() for m in (model[0], model[3])]
    report = quantize(model, bits=2, scope="global")
    values = torch.cat([torch.unique(m.weight) for m in (model[0], model[3])])
    assert torch.unique(values).numel() <= 4
    # One level set for both layers, spanning ±(the largest |w| of either): each weight at its nearest.
    peak = max(float(w.abs().max()) for w in before)
    levels = torch.linspace(-peak, peak, 4, dtype=torch.float64)
    for m, w in zip((model[0], model[3]), before, strict=True):
        nearest = levels[(w.reshape(-1, 1) - levels).abs().argmin(dim=1)].view_as(w)
        torch.testing.assert_close(m.weight.double(), nearest, rtol=0, atol=1e-6)
    assert "total" in report.format_table()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # fine-tuning moves weights off the levels
    model(torch.randn(2, 2, 6, 6)).square().sum().backward()
    optimizer.step()
    assert [layer.bits for layer in compression_report(model).layers] == [32, 32]


def test_a_layer_fine_tuned_after_quantizing_reports_and_saves_full_precision():
    # At 8 bits a layer of <= 256 weights passed the "at most 2**bits distinct values" test after any
    # training, so the report and the checkpoint kept "8 bits" for weights off every level.
    from nsnn.compress import compression_state, restore_compression

    torch.manual_seed(0)
    model = _model()
    quantize(model, bits=8)
    saved = compression_state(model)
    assert [saved[name]["bits"] for name in saved] == [8, 8] and all("levels" in e for e in saved.values())
    twin = _model()
    twin.load_state_dict(model.state_dict())
    restore_compression(twin, saved)
    assert [layer.bits for layer in compression_report(twin).layers] == [8, 8]
    with torch.no_grad():  # one weight of the first layer moves; the second layer stays quantized
        model[0].weight.view(-1)[0] += 1e-3
    assert model[0].weight.numel() <= 2**8
    assert [layer.bits for layer in compression_report(model).layers] == [32, 8]
    assert "bits" not in compression_state(model).get("0", {}) and compression_state(model)["3"]["bits"] == 8


def test_counting_events_is_an_inference_that_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3))
    model.train()
    stats = model[1].running_mean.clone()
    x = (torch.rand(5, 2, 6, 6) > 0.5).float()
    count_synaptic_events(model, x, n_samples=5)
    assert torch.equal(model[1].running_mean, stats) and all(m.training for m in model.modules())


def test_report_on_arrays():
    w = np.zeros((4, 5))
    w[:2] = 0.5
    report = compression_report({"X->Ae": w}, bits=4)
    (layer,) = report.layers
    assert (layer.weights, layer.alive, layer.bits, layer.distinct) == (20, 10, 4, 1)
    assert report.sparsity == 0.5 and report.storage_bits == 40
    assert report.to_rows()[0]["layer"] == "X->Ae"


def test_synaptic_events_count_surviving_fan_out():
    mask = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=bool)
    assert synaptic_events(np.array([2, 5, 1]), mask) == 2 * 2 + 0 + 1 * 3
    assert synaptic_events(np.array([[1, 0, 0], [0, 0, 1]]), mask).tolist() == [2.0, 3.0]


def test_count_synaptic_events_matches_hand_count_and_shrinks_with_pruning():
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 0, 0, 1], [3, 3, 0, 0]]))
    spikes = torch.tensor([[[1.0, 1, 0, 1]], [[0.0, 0, 1, 1]]])  # [T=2, B=1, 4]
    events = count_synaptic_events(nn.Sequential(layer), spikes)["0"]
    assert events == (2 + 1 + 2 + 0 + 2, 3 * 3 + 2 * 3)  # alive fan-out per input: 2, 1, 0, 2

    model = _model()
    x = (torch.rand(2, 3, 2, 6, 6) > 0.5).float()

    class TimeFirst(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.flatten(0, 1))

    before = count_synaptic_events(TimeFirst(model), x)
    magnitude_prune(model, sparsity=0.75)
    after = count_synaptic_events(TimeFirst(model), x)
    conv = "inner.0"
    assert after[conv][0] < before[conv][0] and after[conv][1] == before[conv][1]
    assert before[conv][0] == before[conv][1]


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect", "replicate"])
def test_count_synaptic_events_follows_the_conv_padding_mode(padding_mode: str):
    # Each event is counted at every weight it meets through the layer itself: the corner spike wraps
    # around (circular) or is replicated into the padding, meeting more weights than with zeros.
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode=padding_mode, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 1, 5, 5)
    x[0, 0, 0, 0, 0] = 1.0
    spikes = x[0].clone().requires_grad_(True)
    conv(spikes).sum().backward()  # d(sum of outputs)/d(spike) = how many output sums it enters
    reached = float(spikes.grad[0, 0, 0, 0])
    assert reached == {"zeros": 4.0, "circular": 9.0, "reflect": 4.0, "replicate": 9.0}[padding_mode]
    assert count_synaptic_events(nsnn.SeqToANN(conv), x)["0"] == (reached, reached)


def test_bad_arguments_raise_value_error():
    w = np.ones((3, 3))
    bad = ({}, {"sparsity": 0.5, "threshold": 0.1}, {"sparsity": 1.0}, {"threshold": -1.0})
    for kwargs in (*bad, {"sparsity": math.nan}, {"threshold": math.nan}):
        with pytest.raises(ValueError):
            magnitude_prune(w, **kwargs)
    with pytest.raises(ValueError):
        magnitude_prune(_model(), sparsity=0.5, scope="row")
    with pytest.raises(ValueError):
        magnitude_prune([1.0, 2.0], sparsity=0.5)
    with pytest.raises(ValueError):
        quantize(w, bits=4, mask=np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError):
        magnitude_prune(nn.ReLU(), sparsity=0.5)


def test_signed_weights_quantize_to_the_nearest_symmetric_level():
    model = nn.Sequential(nn.Linear(20, 10))
    w0 = model[0].weight.detach().clone()
    quantize(model, bits=4)
    step = 2 * w0.abs().max() / 15  # 16 levels over [−max|w|, max|w|]
    assert (model[0].weight < 0).any()
    assert (model[0].weight - w0).abs().max() <= step / 2 + 1e-6


def test_masks_only_shrink_when_a_module_is_pruned_again():
    model = nn.Sequential(nn.Linear(20, 10))
    magnitude_prune(model, sparsity=0.5)
    old = model[0].weight_mask.clone()
    with torch.no_grad():  # dead weights moved (an optimizer without the masks attached)
        model[0].weight.add_(torch.randn_like(model[0].weight) * 10)
    magnitude_prune(model, sparsity=0.5)
    assert not (model[0].weight_mask & ~old).any()
    alive = np.array([True, False, True, True])
    assert not (prune_mask(np.array([0.5, 0.9, 0.05, 0.7]), threshold=0.1, mask=alive) & ~alive).any()


def test_reported_bits_round_up_and_levels_are_validated():
    assert quantize(nn.Sequential(nn.Linear(4, 4)), levels=[-0.1, 0.0, 0.1]).layers[0].bits == 2
    for levels in ([float("nan"), 0.5], [[0.1, 0.2]], []):
        with pytest.raises(ValueError, match="flat list of at least one finite value"):
            quantize(nn.Linear(3, 3), levels=levels)


def test_bfloat16_models_prune_quantize_and_report():
    model = nn.Sequential(nn.Linear(8, 6), nn.Linear(6, 3)).to(torch.bfloat16)
    magnitude_prune(model, sparsity=0.5)
    report = quantize(model, bits=2)
    for layer, stats in zip(model, report.layers, strict=True):
        assert layer.weight.dtype == torch.bfloat16
        assert (
            stats.alive == layer.weight.numel() // 2
            and len(torch.unique(layer.weight[layer.weight_mask])) <= 4
        )
    assert compression_report(model).layers[0].alive == 24


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_levels_match_an_explicit_level_list(dtype):
    rng = np.random.default_rng(3)
    for bits in range(1, 9):
        for low, high in [(0.0, 1.0), (-0.37, 2.9), (-3e-3, 7e-2)]:
            listed = np.linspace(low, high, 2**bits)
            midpoints = (listed[:-1] + listed[1:]) / 2  # ties go to the lower level
            w = np.concatenate(
                [rng.uniform(2 * low - high, 2 * high - low, 500), listed, midpoints, [-1e9, 1e9]]
            ).astype(dtype)
            expected = nearest_level(w, listed).astype(dtype)
            q = quantize(w, bits=bits, w_range=(low, high))
            assert q.dtype == dtype and np.array_equal(q, expected), (bits, low, high)
        signed = rng.normal(size=300).astype(dtype)
        top = float(np.abs(signed).max())
        symmetric = nearest_level(signed, np.linspace(-top, top, 2**bits)).astype(dtype)
        assert np.array_equal(quantize(signed, bits=bits), symmetric)


def test_uniform_quantization_memory_does_not_grow_with_bits():
    w = np.random.default_rng(4).random((64, 32))
    tracemalloc.start()
    try:
        q = quantize(w, bits=22)  # 4M levels: 32 MiB as a float64 list
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert np.abs(q - w).max() <= 0.5 * w.max() / (2**22 - 1) * (1 + 1e-9)
    model = nn.Sequential(nn.Linear(16, 8))
    report = quantize(model, bits=22)
    assert report.layers[0].bits == 22
    # the bits, and the values the weights took (at most one per weight), never the 2**22 levels
    assert sum(b.numel() for b in model.buffers()) <= 1 + model[0].weight.numel()


def test_31_bit_levels_are_exact_without_being_listed():
    top = 2**31 - 1  # 2**31 levels, step exactly 1
    w = np.array([-5.0, 0.4, 0.5, 0.6, 12345.5, 12346.5, 123456789.25, top - 0.5, top + 3.0])
    q = quantize(w, bits=31, w_range=(0.0, float(top)))
    assert q.tolist() == [0.0, 0.0, 0.0, 1.0, 12345.0, 12346.0, 123456789.0, top - 1.0, top]
    with pytest.raises(ValueError, match="w_range"):
        quantize(w, bits=8, w_range=(0.0, float("inf")))
    with pytest.raises(ValueError, match="integer"):
        quantize(w, bits=4.5)


def test_report_counts_nonzero_weights_with_or_without_a_mask():
    def quantized(masked: bool) -> nn.Module:
        model = nn.Sequential(nn.Linear(10, 6))
        with torch.no_grad():
            model[0].weight.copy_(torch.linspace(0.01, 1.0, 60).reshape(6, 10))
        if masked:
            magnitude_prune(model, sparsity=0.0)  # a mask that keeps every weight
            assert model[0].weight_mask.all()
        quantize(model, bits=2)  # non-negative: 0 is a level, the smallest weights become 0
        return model

    plain, masked = quantized(False), quantized(True)
    nonzero = int((plain[0].weight != 0).sum())
    assert 0 < nonzero < 60 and torch.equal(plain[0].weight, masked[0].weight)
    for model in (plain, masked):
        (stats,) = compression_report(model).layers
        assert (stats.alive, stats.distinct, stats.bits) == (nonzero, 3, 2)
        events, _ = count_synaptic_events(model, torch.ones(1, 1, 10))["0"]
        assert events == stats.alive
    w = np.array([[0.0, 0.5, 0.0], [0.25, 0.0, 0.5]])
    for masks in (None, {"w": np.ones((2, 3), dtype=bool)}):
        assert compression_report({"w": w}, masks=masks).alive == 3
    partial = compression_report({"w": w}, masks={"w": np.array([[1, 1, 1], [0, 1, 1]])})
    assert partial.alive == 2 and partial.layers[0].distinct == 1


def test_sparsity_below_one_never_prunes_every_weight():
    assert prune_mask(np.array([0.3]), sparsity=0.95).tolist() == [True]
    w = np.arange(1.0, 11.0)
    assert prune_mask(w, sparsity=0.95).tolist() == [False] * 9 + [True]
    assert prune_mask(w, sparsity=0.5).sum() == 5  # round(0.5·10) = 5 pruned, as before
    _, mask = magnitude_prune(torch.tensor([[0.2, -0.9], [0.1, 0.4], [0.3, 0.5]]), sparsity=0.9, axis=0)
    assert mask.tolist() == [[False, True], [False, False], [True, False]]
    model = nn.Sequential(nn.Linear(1, 1, bias=False))
    assert magnitude_prune(model, sparsity=0.95).alive == 1
    assert magnitude_prune(model, sparsity=0.95, scope="global").alive == 1

    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.copy_(torch.linspace(-0.05, 0.04, 10).reshape(2, 5))
    report = magnitude_prune(model, sparsity=0.5, scope="global")  # the ranking alone would empty [1]
    assert [layer.alive for layer in report.layers] == [15, 1]
    assert model[1].weight_mask.sum() == 1 and model[1].weight[0, 0] == -0.05
    report = magnitude_prune(model, sparsity=0.99, scope="global")  # round(29.7) capped at 29
    assert [layer.alive for layer in report.layers] == [1, 1]


def test_a_single_level_is_stored_in_one_bit():
    assert level_bits([0.5]) == level_bits([0.5, 0.5]) == 1  # log2(1) = 0, but a weight needs a bit
    model = nn.Linear(3, 3)
    report = quantize(model, levels=[0.5])
    assert [layer.bits for layer in report.layers] == [1]
    assert (model.weight == 0.5).all()


def test_uniform_levels_need_at_least_one_bit_and_a_representable_step():
    for make in (UniformLevels, uniform_levels):
        with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 31\]"):
            make(0, 0.0, 1.0)
    w = np.array([0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="cannot hold 256 distinct float64 levels"):
        quantize(w, bits=8, w_range=(-1e308, 1e308))  # high − low overflows: step = inf
    with pytest.raises(ValueError, match="cannot hold 2147483648 distinct float64 levels"):
        quantize(w, bits=31, w_range=(0.0, 1e-320))  # the step underflows to 0


def _strong_and_weak_layer() -> nn.Module:
    """Linear(4, 5) with every weight 1.0, then Linear(5, 2) with every weight 0.01."""
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].weight.fill_(0.01)
    return model


def test_a_global_threshold_can_empty_a_layer():
    # Only sparsity ranking keeps a layer's largest weight; a threshold kills every |w| <= t.
    model = _strong_and_weak_layer()
    report = magnitude_prune(model, threshold=0.1, scope="global")
    assert [layer.alive for layer in report.layers] == [20, 0]
    assert not model[1].weight_mask.any()


def test_a_layer_emptied_by_a_threshold_stays_empty_under_global_sparsity():
    model = _strong_and_weak_layer()
    magnitude_prune(model, threshold=0.1, scope="global")
    report = magnitude_prune(model, sparsity=0.5, scope="global")  # 10 dead count towards the 15 pruned
    # Masks only shrink: keeping a layer's largest weight never revives one that had none alive.
    assert not model[1].weight_mask.any() and int(model[0].weight_mask.sum()) == 15
    assert [layer.alive for layer in report.layers] == [15, 0]


def test_event_counts_are_exact_in_any_model_dtype_and_under_autocast():
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1)
    with torch.no_grad():
        conv.weight[conv.weight.abs() < 0.02] = 0  # some pruned synapses
    model = nsnn.SeqToANN(conv)
    x = (torch.rand(2, 4, 64, 16, 16) > 0.5).float()  # fan-ins of up to 576: beyond bfloat16's 256
    exact = count_synaptic_events(model, x)["0"]
    alive = (conv.weight != 0).double()
    by_hand = torch.nn.functional.conv2d(x.flatten(0, 1).double(), alive, padding=1).sum().item() / 4
    assert exact[0] == by_hand and exact[1] > exact[0]
    for dtype in (torch.bfloat16, torch.float16):
        low = nsnn.SeqToANN(nn.Conv2d(64, 64, 3, padding=1)).to(dtype)
        low.load_state_dict(model.state_dict())
        assert count_synaptic_events(low, x.to(dtype))["0"] == exact, dtype  # float16 gave inf
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert count_synaptic_events(model, x)["0"] == exact


def test_report_warns_when_an_optimizer_step_revived_pruned_weights():
    torch.manual_seed(0)
    net = nsnn.SeqToANN(nn.Linear(8, 4))
    magnitude_prune(net, sparsity=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compression_report(net)  # masks hold: no warning
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.rand(2, 3, 8)).sum().backward()
    optimizer.step()  # no apply_masks / attach_masks
    with pytest.warns(RuntimeWarning, match="0: pruned weights are nonzero again"):
        assert compression_report(net).sparsity == 0.5


def test_bad_axis_and_argument_types_are_value_errors():
    w = np.random.default_rng(0).normal(size=(5, 4))
    for axis in (2, -3, (0, 2)):
        with pytest.raises(ValueError, match="out of range for weights of 2 dimensions"):
            prune_mask(w, sparsity=0.5, axis=axis)
    assert (prune_mask(w, sparsity=0.5, axis=-1) == prune_mask(w, sparsity=0.5, axis=1)).all()
    with pytest.raises(ValueError, match=r"sparsity must be a number, got '0\.5'"):
        magnitude_prune(w, sparsity="0.5")
    for bits in ("4", True, 4.5):
        with pytest.raises(ValueError, match="bits must be an integer"):
            quantize(w, bits=bits)
    assert (quantize(w, bits=np.int64(4)) == quantize(w, bits=4)).all()


def test_a_live_nan_or_inf_weight_does_not_count_as_already_pruned():
    # Dead entries are ranked as -inf; a live NaN or +inf used to raise the quota as if it were dead.
    _, alive = magnitude_prune(np.array([np.inf, 1.0, 2.0, 3.0]), sparsity=0.0)
    assert alive.all()
    _, alive = magnitude_prune(np.array([np.nan] * 3 + [1.0, 2, 3, 4, 5, 6, 7]), sparsity=0.1)
    assert alive.tolist() == [True] * 3 + [False] + [True] * 6  # round(0.1·10) = 1: the 1.0


@pytest.mark.parametrize(
    "levels", [{"bits": 1, "w_range": (0, 1)}, {"bits": 2, "w_range": (0, 1)}, {"levels": [0, 0.5, 1]}]
)
def test_weights_beyond_the_levels_go_to_the_end_ones_and_nan_stays_nan(levels):
    # inf (and 1e300, whose distances to the two top levels round equal) used to tie and go one level
    # below the top: with 1 bit, to 0, silently pruning the largest weights.
    q = quantize(np.array([np.inf, 1e300, 1.7, -np.inf, -3.0, np.nan]), **levels)
    assert q[:3].tolist() == [1.0] * 3 and q[3:5].tolist() == [0.0] * 2 and np.isnan(q[5])
    assert np.isnan(quantize(np.array([np.nan, 0.2]), levels=[0.5])[0])


def test_the_default_range_ignores_nan_and_inf_weights():
    # It used to raise "w_range must be finite ... got (nan, nan)" for a call that gave no w_range.
    q = quantize(np.array([np.nan, np.inf, 0.5, 1.0]), bits=2)
    assert np.isnan(q[0]) and q[1:].tolist() == pytest.approx([1.0, 2 / 3, 1.0])


def test_compression_state_restores_masks_and_bits_and_names_what_does_not_fit():
    from nsnn.compress import compression_state, restore_compression

    model = _model()
    assert compression_state(model) == {}
    magnitude_prune(model, sparsity=0.5)
    quantize(model, bits=3)
    record = compression_state(model)
    assert set(record) == {"0", "3"} and all(
        e["bits"] == 3 and e["mask"].dtype == torch.bool for e in record.values()
    )
    fresh = _model()
    fresh.load_state_dict(model.state_dict())
    assert compression_report(fresh).layers[0].bits == 32  # the state_dict alone forgets them
    restore_compression(fresh, record)
    assert [(s.alive, s.bits) for s in compression_report(fresh).layers] == [
        (s.alive, s.bits) for s in compression_report(model).layers
    ]
    with pytest.raises(ValueError, match="names layer '9', which the model lacks"):
        restore_compression(_model(), {"9": {"bits": 3}})
    with pytest.raises(ValueError, match=r"mask of '0' is \[2\], its weight \[4, 2, 3, 3\]"):
        restore_compression(_model(), {"0": {"mask": torch.ones(2, dtype=torch.bool)}})


def test_quantizing_unmasked_zeros_warns_that_they_are_treated_as_live():
    # A pruned model reloaded from its state_dict alone: a symmetric range has no 0 level, so its zeros
    # moved to ±step/2 and the model silently became dense again.
    pruned = _model()
    magnitude_prune(pruned, sparsity=0.8)
    reloaded = _model()
    reloaded.load_state_dict(pruned.state_dict())
    with pytest.warns(
        UserWarning, match=r"exactly 0 but no pruning mask.*magnitude_prune\(model, threshold=0.0\)"
    ):
        quantize(reloaded, bits=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize(pruned, bits=4)  # masked: no warning, and the pruned weights stay 0
    assert compression_report(pruned).sparsity >= 0.8


def test_report_table_never_rounds_a_sparsity_to_0_or_100_percent():
    w = np.ones(10_000)
    w[:9_998] = 0.0  # 99.98 % pruned: two weights left
    dense = np.ones(10_000)
    dense[0] = 0.0  # 0.01 % pruned
    table = compression_report({"almost": w, "barely": dense}).format_table()
    rows = {line.split()[0]: line.split()[-2] for line in table.splitlines()[2:4]}
    assert rows == {"almost": ">99.9%", "barely": "<0.1%"}
    assert compression_report({"all": np.ones(4)}).format_table().splitlines()[2].split()[-2] == "0.0%"


def test_pruning_zeroes_nan_weights_and_refuses_computed_weights():
    # masks multiplied NaN·0 = NaN into pruned tensor weights; weight_norm layers ignored the mask
    import torch.nn.utils.prune as torch_prune

    w = torch.tensor([[float("nan"), 0.1], [2.0, 0.2]])
    pruned, mask = magnitude_prune(w, threshold=0.5)
    assert pruned[~mask].eq(0).all() and mask.tolist() == [[False, False], [True, False]]
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[float("nan"), 0.1], [0.3, 0.2]]))
    model = nn.Sequential(layer)
    magnitude_prune(model, sparsity=0.5)
    assert layer.weight[~layer.weight_mask].eq(0).all()
    for computed in (
        nn.utils.parametrizations.weight_norm(nn.Linear(4, 4)),
        torch_prune.l1_unstructured(nn.Linear(4, 4), "weight", 0.5),
    ):
        for compress in (lambda m: magnitude_prune(m, sparsity=0.5), lambda m: quantize(m, bits=4)):
            with pytest.raises(ValueError, match="weight is computed from other parameters"):
                compress(nn.Sequential(computed))


def test_quantize_refuses_arguments_it_would_ignore():
    w = np.linspace(0, 1, 10)
    for kwargs, match in (
        ({"levels": [0, 1], "bits": 4}, "levels lists the levels itself; drop bits"),
        ({"levels": [0, 1], "w_range": (0, 1)}, "drop w_range"),
        ({"bits": 4, "w_range": (0, 1, 2)}, r"w_range must be a pair \(low, high\)"),
        ({"bits": 4, "w_range": (1, 0)}, "low < high"),
        ({"bits": 4, "scope": "global!"}, "scope must be one of"),
    ):
        with pytest.raises(ValueError, match=match):
            quantize(w, **kwargs)


def test_report_counts_a_tied_weight_once_and_an_empty_report_as_unpruned():
    first, second = nn.Linear(8, 8), nn.Linear(8, 8)
    second.weight = first.weight  # tied: 64 weights, not 128
    report = compression_report(nn.Sequential(first, nn.ReLU(), second))
    assert report.weights == 64 and [layer.name for layer in report.layers] == ["0"]
    empty = compression_report({})
    assert empty.weights == 0 and empty.sparsity == 0.0 and "0/0" in empty.format_table()
