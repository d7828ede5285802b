"""Neurons: firing statistics, surrogate = pdf, fused kernel vs a naive autograd loop, reset, modes.

The per-family checks run over every registered family (:func:`list_noises` at collection): a family
added to nsnn/noise.py or registered by a conftest or a plugin runs on the torch path and is checked
here with no edit.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import nsnn
from nsnn.functional import LIFParameters, lif_multistep, lif_step, native
from nsnn.noise import get_noise, list_noises

FAMILIES = list_noises()


def naive_lif(x, decay, theta, hard, detach, noise, spikes):
    """Plain-autograd LIF loop whose forward spikes are given (``spikes``) and whose spike gradient is
    d cdf/dz through autograd, i.e. the noise pdf: s = s_given + F(z) − F(z).detach()."""
    u = None
    out = []
    for t in range(x.shape[0]):
        h = x[t] if u is None else decay * u + x[t]
        c = noise.cdf(h - theta)
        s = spikes[t] + c - c.detach()
        r = s.detach() if detach else s
        u = h * (1 - r) if hard else h - theta * r
        out.append(s)
    return torch.stack(out)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["heaviside", "bernoulli", "expected"])
@pytest.mark.parametrize(("hard", "detach"), [(True, False), (True, True), (False, False), (False, True)])
def test_fused_matches_naive_float64(family, mode, hard, detach):
    torch.manual_seed(3)
    noise = get_noise(family, 0.35)
    x = (torch.randn(6, 5, 7, dtype=torch.float64) * 0.8 + 0.7).requires_grad_(True)
    params = LIFParameters(0.6, 1.0, hard, detach)
    s = lif_multistep(x, params, noise, mode)
    g_out = torch.randn_like(s)
    (gx,) = torch.autograd.grad(s, x, g_out)

    x2 = x.detach().clone().requires_grad_(True)
    s_ref = naive_lif(x2, 0.6, 1.0, hard, detach, noise, s.detach())
    (gx_ref,) = torch.autograd.grad(s_ref, x2, g_out)
    torch.testing.assert_close(s, s_ref.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(gx, gx_ref, atol=1e-6, rtol=1e-6)
    if mode == "heaviside":  # deterministic spikes really are H(h - θ) of the naive membrane
        h = x.detach()[0]
        assert torch.equal(s[0].detach(), (h > 1.0).double())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("noisy", [False, True])
def test_learnable_decay_gradient_matches_naive(family, noisy):
    torch.manual_seed(4)
    plif = nsnn.PLIF(tau=3.0, noise=family if noisy else None, surrogate=family, sigma=0.4).double()
    x = torch.randn(5, 4, 6, dtype=torch.float64) * 0.8 + 0.8
    s = plif(x)
    g_out = torch.randn_like(s)
    s.backward(g_out)
    w_ref = plif.w.detach().clone().requires_grad_(True)
    s_ref = naive_lif(x, torch.sigmoid(-w_ref), 1.0, True, False, plif.noise, s.detach())
    s_ref.backward(g_out)
    torch.testing.assert_close(plif.w.grad, w_ref.grad.to(plif.w.grad.dtype), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_firing_frequency_is_noise_cdf(family):
    torch.manual_seed(0)
    n = 100_000
    neuron = nsnn.NILIF(noise=family, sigma=0.3)
    for v in (0.75, 0.9, 1.0, 1.15):
        s = neuron(torch.full((1, n), v))
        p = neuron.noise.cdf(torch.tensor(v - 1.0)).item()
        bound = 5 * math.sqrt(p * (1 - p) / n) + 1e-12
        assert abs(s.mean().item() - p) <= bound, (v, s.mean().item(), p)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_is_noise_pdf(family):
    neuron = nsnn.NILIF(noise=family, sigma=0.3)
    x = torch.linspace(0.5, 1.5, 101).reshape(1, 101).requires_grad_(True)
    neuron(x).sum().backward()
    torch.testing.assert_close(x.grad, neuron.noise.pdf(x.detach() - 1.0))


def test_no_double_noise_by_default_and_repo_mode_doubles_it():
    torch.manual_seed(1)
    n = 200_000
    x = torch.full((1, n), 0.6)
    clean = nsnn.NILIF(noise="gaussian", sigma=0.3)(x).mean().item()
    repo = nsnn.NILIF(noise="gaussian", sigma=0.3, double_noise=True)(x).mean().item()
    phi = get_noise("gaussian", 0.3).cdf(torch.tensor(-0.4)).item()  # 0.091
    phi2 = get_noise("gaussian", 0.3 * math.sqrt(2)).cdf(torch.tensor(-0.4)).item()  # 0.173
    tol = 5 * math.sqrt(0.25 / n)
    assert abs(clean - phi) < tol
    assert abs(repo - phi2) < tol


@pytest.mark.parametrize("kind", ["NILIF", "LIF", "PLIF", "NIPLIF"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_reset_uses_the_emitted_spike(kind, reset):
    torch.manual_seed(2)
    neuron = nsnn.build_neuron(kind, noise="uniform", sigma=0.5, tau=2.0, reset=reset)
    neuron.step_mode = "s"
    x = torch.rand(8, 4000) * 1.6
    mem = None
    for t in range(8):
        h = x[t] if mem is None else neuron.decay * mem + x[t]
        spk, mem = neuron.step(x[t], mem)
        expected = h * (1 - spk) if reset == "hard" else h - 1.0 * spk
        torch.testing.assert_close(mem, expected.detach() if not mem.requires_grad else expected)


def test_setting_sigma_gives_the_neuron_new_noise_of_the_same_family():
    shared = get_noise("logistic", 0.3)
    a, b = nsnn.NILIF(noise=shared), nsnn.NILIF(noise=shared)
    x = torch.full((1, 20_000), 0.9)
    a.sigma = 1e-3  # e.g. annealing the noise: h - theta = -0.1 now never fires
    assert a(x).sum() == 0 and b(x).mean() > 0.3
    assert a.noise == get_noise("logistic", 1e-3) and b.noise is shared and shared.sigma == 0.3
    with pytest.raises(AttributeError):
        shared.sigma = 0.1  # a noise object may be shared, so it is read-only
    with pytest.raises(ValueError, match="sigma"):
        a.sigma = -1.0


def test_plif_tau_is_the_learned_time_constant_and_setting_it_sets_the_leak():
    plif = nsnn.PLIF(tau=2.0)
    with torch.no_grad():
        plif.w.fill_(-math.log(4.0))  # as if trained to tau = 5
    assert plif.tau == pytest.approx(5.0) and "tau=5 (learned)" in repr(plif)
    plif.tau = 10.0
    assert float(plif.decay.detach()) == pytest.approx(0.9) and plif.tau == pytest.approx(10.0)
    from visualizer.modules import neuron_attributes

    assert neuron_attributes(plif)["tau"] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("make", "dtype", "per_step"),
    [
        (lambda: nsnn.NILIF(step_mode="s"), torch.float32, True),
        (lambda: nsnn.NILIF(), torch.bfloat16, False),  # the torch path
        (lambda: nsnn.NILIF(double_noise=True), torch.float32, False),  # Gaussian samples
        (lambda: nsnn.NILIF(noise="logistic", double_noise=True), torch.float32, False),  # inverse CDF
    ],
    ids=["single-step", "bfloat16", "double-noise-gaussian", "double-noise-logistic"],
)
def test_compiled_with_dynamic_shapes_draws_noise_at_any_batch_size(make, dtype, per_step):
    neuron = make()
    compiled = torch.compile(neuron, backend="eager", dynamic=True)
    for batch in (6, 6, 3):  # e.g. an epoch's smaller last batch
        nsnn.reset_net(neuron)
        x = (torch.rand(4, batch, 8) * 3).to(dtype)
        out = torch.stack([compiled(x[t]) for t in range(4)]) if per_step else compiled(x)
        assert out.shape == x.shape and out.dtype == dtype
        assert set(out.unique().tolist()) == {0.0, 1.0}
    nsnn.reset_net(neuron)
    x = torch.ones(1, 5, 800, dtype=dtype)  # from rest, h = θ: p = cdf(0) = ½ for every family
    rate = (compiled(x[0]) if per_step else compiled(x)).float().mean().item()
    assert abs(rate - 0.5) < 0.05  # 4000 draws: 5.7 standard deviations


@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stochastic_spikes_follow_the_cdf_through_the_reset_in_both_step_modes(family, step_mode):
    """Step 0 from rest fires with p0 = cdf(x − θ); step 1 (no input) holds β·u0 with u0 = x − θ·s0
    (soft reset), so it fires with cdf(β·(x − θ) − θ) after a spike and cdf(β·x − θ) without one."""
    sigma, n = 0.3, 20_000
    noise = get_noise(family, sigma)
    neuron = nsnn.NILIF(noise=family, sigma=sigma, reset="soft", step_mode=step_mode)
    z = torch.tensor([-0.5, 0.0, 0.4, 1.2])
    x0 = (1.0 + sigma * z).repeat_interleave(n).view(len(z), n)
    x = torch.stack([x0, torch.zeros_like(x0)])  # [T=2, len(z), n]
    torch.manual_seed(0)
    with torch.no_grad():
        s = neuron(x) if step_mode == "m" else torch.stack([neuron(x[0]), neuron(x[1])])

    def close(freq: torch.Tensor, p: torch.Tensor, count: torch.Tensor) -> bool:
        """Within 5 binomial standard deviations (where a family swap moves p by 0.04 to 0.3)."""
        return bool(((freq - p).abs() <= 5 * torch.sqrt(p * (1 - p) / count) + 1e-9).all())

    beta = 1 - 1 / neuron.tau
    p0 = noise.cdf(x0[:, 0] - 1.0)
    assert close(s[0].mean(dim=1), p0, torch.full_like(p0, n)), (s[0].mean(dim=1), p0)
    checked = 0
    for fired, h1 in ((1.0, beta * (x0[:, 0] - 1.0)), (0.0, beta * x0[:, 0])):
        given = s[0] == fired
        count = given.sum(dim=1)
        seen = count > 1000  # (a bounded family always fires at z = 1.2)
        freq = (s[1] * given).sum(dim=1)[seen] / count[seen]
        p1 = noise.cdf(h1[seen] - 1.0)
        assert close(freq, p1, count[seen]), (fired, freq, p1)
        checked += int(seen.sum())
    assert checked >= 7


@pytest.mark.parametrize("mode", ["deterministic", "expected"])
def test_single_step_equals_multi_step(mode):
    neuron = nsnn.NILIF(noise="logistic", sigma=0.2, reset="soft").eval()
    neuron.eval_mode = mode
    x = torch.randn(7, 3, 11) + 0.8
    multi = neuron(x)
    neuron.step_mode = "s"
    nsnn.reset_net(neuron)
    single = torch.stack([neuron(x[t]) for t in range(7)])
    torch.testing.assert_close(single, multi)


def test_single_step_state_and_reset_net():
    net = torch.nn.Sequential(nsnn.LIF(step_mode="s"), nsnn.NILIF(step_mode="s"))
    net(torch.ones(2, 3))
    assert all(m.mem is not None for m in net)
    with pytest.raises(ValueError, match="reset"):
        net(torch.ones(4, 3))
    nsnn.reset_net(net)
    assert all(m.mem is None for m in net)
    assert net(torch.ones(4, 3)).shape == (4, 3)


def test_eval_modes_and_deterministic_limits():
    x = torch.randn(5, 64, 32) + 0.9
    lif = nsnn.LIF()
    nilif = nsnn.NILIF(noise="gaussian", sigma=0.3).eval()
    nilif.eval_mode = "deterministic"
    assert torch.equal(nilif(x), lif(x))
    nilif.eval_mode = "expected"
    e = nilif(x)
    assert ((e >= 0) & (e <= 1)).all() and ((e > 0) & (e < 1)).any()
    # σ → 0: stochastic firing becomes the Heaviside step
    tiny = nsnn.NILIF(noise="uniform", sigma=1e-6)
    assert torch.equal(tiny(x), lif(x))
    nsnn.set_eval_mode(torch.nn.Sequential(nilif), "stochastic")
    assert nilif.eval_mode == "stochastic"
    nilif.train()  # training always samples, whatever eval_mode says
    nilif.eval_mode = "deterministic"
    assert nilif.fire_mode == "bernoulli"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["NILIF", "LIF", "PLIF"])
def test_shape_dtype_device_preserved(dtype, kind):
    neuron = nsnn.build_neuron(kind)
    x = (torch.randn(3, 2, 4, 5) + 1).to(dtype).requires_grad_(True)
    s = neuron(x)
    assert s.shape == x.shape and s.dtype == dtype and s.device == x.device
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    s.float().sum().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("kind", ["NILIF", "LIF", "PLIF"])
@pytest.mark.parametrize("shape", [(0, 4, 5), (3, 0, 5), (0, 0, 5)])
def test_empty_sequences_give_empty_spikes_and_gradients(kind, dtype, use_native, shape):
    # T = 0 on the torch path (bf16 on the CPU, or the native kernel off) raised IndexError at x[0];
    # the native kernel gave the empty [0, B, ...] spikes. B = 0 is empty on both.
    neuron = nsnn.build_neuron(kind)
    x = torch.rand(shape, dtype=dtype, requires_grad=True)
    with native.enabled(use_native):
        s = neuron(x)
        s.sum().backward()
    assert s.shape == x.shape and s.dtype == dtype
    assert x.grad.shape == x.shape and x.grad.dtype == dtype
    assert all(p.grad is not None and p.grad.item() == 0 for p in neuron.parameters())  # PLIF's leak
    params = LIFParameters(0.5, 1.0)
    for mode in ("heaviside", "bernoulli", "expected"):
        with native.enabled(use_native):
            assert lif_multistep(x.detach(), params, get_noise("gaussian", 0.3), mode).shape == x.shape


def test_half_precision_decides_spikes_in_float32():
    # h = 0.5·2⁻⁸ + 1 = 1 + 2⁻⁹ fires in float32, but rounds to θ = 1.0 in bf16: backward must not
    # recompute that spike from the rounded membrane.
    x = torch.tensor([[2.0**-8], [1.0], [0.5]])
    grads = []
    for dtype in (torch.float32, torch.bfloat16):
        xi = x.to(dtype).detach().requires_grad_(True)
        nsnn.LIF()(xi).sum().backward()
        grads.append(xi.grad.float())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-2, atol=1e-3)
    # Single step: the firing probability is not rounded to bf16 (it would be 0.99609 here).
    n, z = 1_000_000, 0.859375
    neuron = nsnn.NILIF(step_mode="s")
    rate = neuron(torch.full((n,), 1.0 + z, dtype=torch.bfloat16)).float().mean().item()
    p = neuron.noise.cdf(torch.tensor(z, dtype=torch.float64)).item()
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_copy_trace_and_mode_checks():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), nsnn.NILIF(step_mode="s"))
    net(torch.randn(2, 3))  # the membrane now carries a graph
    twin = copy.deepcopy(net)
    assert torch.equal(twin[1].mem, net[1].mem) and not twin[1].mem.requires_grad
    x = torch.rand(3, 2, 4) * 3
    for neuron in (nsnn.LIF(), nsnn.NILIF().eval()):
        neuron.eval_mode = "deterministic"
        traced = torch.jit.trace(neuron, torch.zeros(3, 2, 4), check_trace=False)
        assert torch.equal(traced(x), neuron(x)) and traced(x).sum() > 0
    neuron = nsnn.LIF()
    with pytest.raises(ValueError, match="step_mode"):
        neuron.step_mode = "multi"


def test_noisy_neuron_traced_under_no_grad_trains_like_eager():
    # The traced op keeps the drawn spikes that backward needs, whatever the grad mode of the trace
    # (no trace check: the spikes are random, so reruns differ).
    neuron = nsnn.NILIF()
    with torch.no_grad():
        traced = torch.jit.trace(neuron, torch.randn(4, 3, 50), check_trace=False)
    x = torch.randn(4, 3, 50) + 0.9
    results = []
    for module in (neuron, traced):
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(3)
        out = module(xi)
        (out * torch.arange(50.0)).sum().backward()
        results.append((out, xi.grad))
    (out, grad), (traced_out, traced_grad) = results
    assert torch.equal(traced_out, out) and 0 < out.mean() < 1
    assert torch.equal(traced_grad, grad) and grad.abs().sum() > 0


def test_seeded_runs_reproducible():
    x = torch.randn(4, 16, 50) + 0.9
    torch.manual_seed(11)
    a = nsnn.NILIF()(x)
    torch.manual_seed(11)
    b = nsnn.NILIF()(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_saved_memory_is_the_input_plus_one_bit_per_spike(dtype):
    # The torch path (all of bf16/fp16 on the CPU) kept a byte per spike: 1.5x a bf16 input.
    x = (torch.randn(4, 8, 1001) + 0.9).to(dtype).requires_grad_(True)
    sizes = []

    def pack(t):
        if t.data_ptr() != x.data_ptr():
            sizes.append(t.untyped_storage().nbytes())
        return t

    for use_native in (True, False):  # the C++ kernel (float32) and the torch path
        sizes.clear()
        with native.enabled(use_native), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            nsnn.NILIF()(x)
        assert 0 < sum(sizes) <= 4 * math.ceil(8 * 1001 / 8) + 64  # a bit per neuron and step


def test_seq_to_ann_runs_stateless_layers_over_time_and_batch():
    conv = nsnn.SeqToANN(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3))
    x = torch.randn(4, 5, 2, 8, 8)
    y = conv(x)
    assert y.shape == (4, 5, 3, 8, 8)
    flat = torch.nn.Sequential(*conv)(x.flatten(0, 1))
    torch.testing.assert_close(y, flat.unflatten(0, (4, 5)))
    with pytest.raises(ValueError):
        conv(torch.randn(5))


def test_seq_to_ann_refuses_spiking_neurons():
    # A neuron inside took T·B as its time axis, without complaint.
    for build in (
        lambda: nsnn.SeqToANN(torch.nn.Linear(3, 3), nsnn.LIF()),
        lambda: nsnn.SeqToANN(torch.nn.Sequential(torch.nn.Linear(3, 3), nsnn.NILIF())),
        lambda: nsnn.SeqToANN(torch.nn.Linear(3, 3)).append(nsnn.PLIF()),
    ):
        with pytest.raises(ValueError, match="SeqToANN is for stateless layers"):
            build()


def test_seq_to_ann_refuses_neurons_set_or_inserted_and_slices_keep_step_mode():
    # block[0] = LIF() and block.insert(...) bypassed the check (the neuron took T·B as time); a slice
    # of a single-step block came back multi-step.
    block = nsnn.SeqToANN(torch.nn.Linear(4, 4), torch.nn.ReLU())
    for put in (
        lambda: block.__setitem__(0, nsnn.LIF()),
        lambda: block.insert(1, nsnn.NILIF()),
        lambda: setattr(block, "extra", torch.nn.Sequential(nsnn.LIF())),
    ):
        with pytest.raises(ValueError, match="SeqToANN is for stateless layers"):
            put()
    assert [type(m) for m in block] == [torch.nn.Linear, torch.nn.ReLU]
    block[1] = torch.nn.Tanh()  # a stateless layer is still welcome
    nsnn.set_step_mode(block, "s")
    head = block[:1]
    assert isinstance(head, nsnn.SeqToANN) and head.step_mode == "s"
    x_t = torch.randn(3, 4)
    torch.testing.assert_close(head(x_t), block[0](x_t))


def test_functional_steps_refuse_the_constants_the_modules_refuse():
    # lif_step took a [N] decay and failed in backward; a threshold requiring grad was learned by
    # lif_step and silently dropped by lif_multistep; decay 1.5 and threshold -1 ran in both.
    noise, x = get_noise("gaussian", 0.3), torch.randn(3, 2, 5)
    bad = [
        (LIFParameters(torch.full((5,), 0.5, requires_grad=True)), "0-dim"),
        (LIFParameters(0.5, torch.tensor(1.0, requires_grad=True)), "threshold must be a constant"),
        (LIFParameters(1.5), r"decay must be a number in \[0, 1\]"),
        (LIFParameters(True), r"decay must be a number in \[0, 1\]"),
        (LIFParameters(0.5, -1.0), "threshold must be a finite number > 0"),
        (LIFParameters(0.5, float("nan")), "threshold must be a finite number > 0"),
    ]
    for params, match in bad:
        with pytest.raises(ValueError, match=match):
            lif_step(x[0], None, params, noise, "bernoulli")
        with pytest.raises(ValueError, match=match):
            lif_multistep(x, params, noise, "bernoulli")
    fine = LIFParameters(torch.tensor(0.5, requires_grad=True), torch.tensor(1.0), False, True)
    assert lif_multistep(x, fine, noise, "expected").requires_grad
    assert lif_step(x[0], x[1], fine, noise, "expected")[0].requires_grad


def test_set_step_mode_steps_a_whole_network_with_seq_to_ann_blocks():
    # In step mode the README's network returned [B, 1, 10] per step: SeqToANN took B as time.
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        nsnn.SeqToANN(torch.nn.Flatten(), torch.nn.Linear(12, 16)),
        nsnn.LIF(),
        nsnn.SeqToANN(torch.nn.Linear(16, 5)),
    )
    x = torch.rand(6, 3, 1, 3, 4) * 2
    whole = net(x)
    nsnn.set_step_mode(net, "s")
    assert [m.step_mode for m in (net[0], net[1], net[2])] == ["s"] * 3 and "step_mode='s'" in repr(net[0])
    for _ in range(2):  # reset_net between sequences
        stepped = torch.stack([net(x_t) for x_t in x])
        torch.testing.assert_close(stepped, whole)
        nsnn.reset_net(net)
    nsnn.set_step_mode(net, "m")
    torch.testing.assert_close(net(x), whole)


def test_detach_net_keeps_the_membranes_for_truncated_bptt():
    net = torch.nn.Sequential(nsnn.SeqToANN(torch.nn.Linear(4, 4)), nsnn.LIF(tau=1e6))
    nsnn.set_step_mode(net, "s")
    x = torch.rand(6, 2, 4)
    for t in range(3):
        net(x[t])
    net[1].mem.sum().backward()
    held = net[1].mem.clone()
    nsnn.detach_net(net)
    assert torch.equal(net[1].mem, held) and net[1].mem.grad_fn is None
    net(x[3]).sum().backward()  # a second backward: only through step 3, no "graph freed" error
    assert net[0][0].weight.grad is not None
    with pytest.raises(ValueError, match="step_mode must be one of 'm', 's'; got 'x'"):
        nsnn.set_step_mode(net, "x")


def test_settings_assigned_after_construction_are_checked():
    neuron = nsnn.LIF()
    with pytest.raises(AttributeError, match=r"reset_mode \(e.g. neuron.reset_mode = 'soft'\)"):
        neuron.reset = "soft"  # replaced the reset() method: reset_net then failed
    nsnn.reset_net(torch.nn.Sequential(neuron))
    for bad in ("False", 1, None):
        with pytest.raises(ValueError, match="detach_reset must be True or False"):
            neuron.detach_reset = bad
        with pytest.raises(ValueError, match="detach_reset must be True or False"):
            nsnn.LIF(detach_reset=bad)
    neuron.detach_reset = np.bool_(True)
    assert neuron.detach_reset is True


def test_matches_snntorch_leaky_dynamics_and_gradients():
    """nsnn hard reset + detach_reset ≡ snntorch Leaky(reset_mechanism="zero"), same surrogate.

    snntorch's ``mem`` at step t is the pre-reset potential, i.e. nsnn's h_t; it zeroes the previous
    membrane when the previous step spiked (detached), exactly u = h·(1 − s.detach()).
    """
    import snntorch
    from snntorch import surrogate

    noise = get_noise("gaussian", 0.3)

    def gaussian_pdf(input_, grad_input, spikes):
        return grad_input * noise.pdf(input_)

    leaky = snntorch.Leaky(
        beta=0.5, threshold=1.0, reset_mechanism="zero", spike_grad=surrogate.custom_surrogate(gaussian_pdf)
    )
    ours = nsnn.LIF(tau=2.0, threshold=1.0, reset="hard", detach_reset=True, surrogate=noise)
    torch.manual_seed(5)
    x = (torch.randn(8, 16, 32) * 0.7 + 0.7).requires_grad_(True)
    mem = torch.zeros(16, 32)
    spk_ref = []
    for t in range(8):
        spk, mem = leaky(x[t], mem)
        spk_ref.append(spk)
    spk_ref = torch.stack(spk_ref)
    g = torch.randn_like(spk_ref)
    (g_ref,) = torch.autograd.grad(spk_ref, x, g)
    s = ours(x)
    (g_ours,) = torch.autograd.grad(s, x, g)
    assert torch.equal(s, spk_ref)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: nsnn.NILIF(tau=0.5), "tau"),
        (lambda: nsnn.LIF(tau=float("nan")), "tau"),
        (lambda: nsnn.NILIF(threshold=0.0), "threshold"),
        (lambda: nsnn.NILIF(reset="zero"), "reset"),
        (lambda: nsnn.NILIF(step_mode="x"), "step_mode"),
        (lambda: nsnn.NILIF(eval_mode="mean"), "eval_mode"),
        (lambda: nsnn.NILIF(noise="pink"), "valid choices"),
        (lambda: nsnn.NILIF(sigma=-1.0), "sigma"),
        (lambda: nsnn.PLIF(tau=1.0), "tau"),
        (lambda: setattr(nsnn.PLIF(), "tau", float("inf")), "tau"),
        (lambda: nsnn.NILIF(tau=None), "tau must be a finite number"),
        (lambda: nsnn.NILIF(threshold="high"), "threshold must be a finite number"),
        (lambda: nsnn.NILIF(eval_mode=["expected"]), "eval_mode must be one of"),
        (lambda: nsnn.NILIF().step(torch.ones(2, 3), torch.zeros(3)), "mem has shape"),
        (lambda: setattr(nsnn.PLIF(), "tau", torch.nn.Parameter(torch.tensor(3.0))), "tau"),
        (lambda: nsnn.build_neuron("IF"), "valid choices"),
        (lambda: nsnn.NILIF()(torch.ones(5)), "rank"),
        (lambda: nsnn.NILIF()(torch.ones(2, 3, dtype=torch.int64)), "floating-point"),
        (lambda: nsnn.LIF(step_mode="s")(torch.ones(3, dtype=torch.bool)), "floating-point"),
        (lambda: nsnn.LIF().step(torch.tensor([2, 0])), "floating-point"),
        (lambda: nsnn.NILIF().step(torch.tensor([True, False])), "floating-point"),
        (lambda: nsnn.set_eval_mode(nsnn.NILIF(), "mean"), "eval_mode"),
        (lambda: setattr(nsnn.NILIF(), "eval_mode", "x"), "eval_mode"),
        (lambda: nsnn.set_eval_mode(nsnn.NILIF(), ["expected"]), "eval_mode must be one of"),
        (lambda: nsnn.PLIF(tau=None), "PLIF needs a finite number tau"),
        (lambda: nsnn.PLIF(tau="x"), "PLIF needs a finite number tau"),
        (lambda: nsnn.LIF(sigma=None), "sigma must be a finite number"),
        (lambda: setattr(nsnn.NILIF(), "sigma", "wide"), "sigma must be a finite number"),
        (lambda: lif_multistep(torch.ones(2, 2), LIFParameters(), get_noise("gaussian"), "poisson"), "mode"),
        # double_noise="False" turned on the reference's doubled noise
        (lambda: nsnn.NILIF(double_noise="False"), "double_noise must be True or False"),
        (lambda: setattr(nsnn.NILIF(), "double_noise", "no"), "double_noise must be True or False"),
        # a flag passed for a number: LIF(tau=True) was tau 1.0, where LIFParameters refuses it
        (lambda: nsnn.LIF(tau=True), "tau must be a finite number"),
        (lambda: nsnn.NILIF(threshold=np.True_), "threshold must be a finite number"),
        (lambda: nsnn.PLIF(tau=True), "PLIF needs a finite number tau"),
        (lambda: nsnn.NILIF(sigma=True), "sigma must be a finite number"),
    ],
)
def test_bad_inputs_raise_value_error(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: nsnn.NILIF()(np.ones((2, 3), dtype=np.float32)),
            "NILIF expects a torch.Tensor input, got ndarray",
        ),
        (lambda: nsnn.LIF()([[1.0, 2.0]]), "LIF expects a torch.Tensor input, got list"),
        (lambda: nsnn.LIF(step_mode="s")(1.0), "LIF expects a torch.Tensor input, got float"),
        (lambda: nsnn.LIF().step(torch.ones(2), [1.0, 2.0]), "mem must be a torch.Tensor or None, got list"),
    ],
)
def test_inputs_that_are_not_tensors_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_single_step_membrane_follows_to_and_dtype_casts():
    neuron = nsnn.NILIF(step_mode="s")
    neuron(torch.rand(3, 4))
    neuron.double()
    assert neuron.mem.dtype == torch.float64
    neuron.to("meta")  # stands in for another device (e.g. .cuda()) on a CPU-only machine
    assert neuron.mem.device.type == "meta"
    assert "mem" not in neuron.state_dict()


def test_plif_built_on_the_meta_device_prints():
    with torch.device("meta"):
        plif = nsnn.PLIF(tau=3.0)
    assert math.isnan(plif.tau) and "tau=nan (learned)" in repr(plif)
    plif.to_empty(device="cpu").load_state_dict(nsnn.PLIF(tau=3.0).state_dict())
    assert plif.tau == pytest.approx(3.0)
    # to_empty() leaves w uninitialised; reset_parameters() restores the initial leak (it had none)
    with torch.device("meta"):
        plif = nsnn.PLIF(tau=3.0)
    plif = plif.to_empty(device="cpu")
    with torch.no_grad():
        plif.w.fill_(7.0)
    plif.reset_parameters()
    assert plif.tau == pytest.approx(3.0)
    plif.tau = 5.0  # an assigned tau is the new initial one (reset_parameters went back to 3)
    with torch.no_grad():
        plif.w.fill_(7.0)
    plif.reset_parameters()
    assert plif.tau == pytest.approx(5.0) and plif.initial_tau == 5.0


@pytest.mark.parametrize("name", ["LIF", "NILIF", "PLIF"])
def test_every_neuron_runs_forward_and_backward_on_the_meta_device(name):
    # Shape inference on meta: PLIF's learned leak used to be read with float(), which meta refuses.
    neuron = nsnn.build_neuron(name).to("meta")
    x = torch.empty(4, 2, 8, device="meta", requires_grad=True)
    out = neuron(x)
    out.sum().backward()
    assert out.shape == x.shape and out.is_meta and x.grad.shape == x.shape
    if name == "PLIF":
        assert neuron.w.grad is not None and neuron.w.grad.is_meta


@pytest.mark.parametrize("noise", ["gaussian", None, 0.3])
def test_functional_api_refuses_a_noise_that_is_not_a_noise_instance(noise):
    # A family name used to pass the forward and fail in the backward pass ('str' has no attribute 'pdf').
    x = torch.randn(3, 2, 4, requires_grad=True)
    with pytest.raises(TypeError, match="noise must be a Noise instance"):
        lif_multistep(x, LIFParameters(0.5, 1.0), noise, "heaviside")
    with pytest.raises(TypeError, match="noise must be a Noise instance"):
        lif_step(x[0], None, LIFParameters(0.5, 1.0), noise, "heaviside")


def test_leak_is_one_minus_one_over_tau():
    lif = nsnn.LIF(tau=4.0)
    assert lif.decay == 0.75
    # h_2 = 0.75·0.6 + 0.6 = 1.05 > θ; with β = 1/τ it would be 0.75
    assert lif(torch.tensor([[0.6], [0.6]])).flatten().tolist() == [0.0, 1.0]


def _multi_and_single_step(make, x: torch.Tensor, g: torch.Tensor, **kwargs) -> list[tuple]:
    """``[(neuron, spikes, ∂L/∂x)]`` for ``step_mode="m"`` then ``"s"`` (stepped over ``x``'s T), with
    L = Σ g·spikes; each neuron is ``make(step_mode=..., **kwargs)``."""
    runs = []
    for mode in ("m", "s"):
        neuron = make(step_mode=mode, **kwargs)
        xi = x.clone().requires_grad_(True)
        out = neuron(xi) if mode == "m" else torch.stack([neuron(xi[t]) for t in range(len(x))])
        out.backward(g)
        runs.append((neuron, out.detach(), xi.grad))
    return runs


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [False, True])
def test_single_step_gradients_equal_multi_step(reset: str, detach: bool):
    x = torch.rand(6, 3, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.6
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (_, _, grad_m), (_, _, grad_s) = _multi_and_single_step(nsnn.LIF, x, g, reset=reset, detach_reset=detach)
    torch.testing.assert_close(grad_m, grad_s, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [nsnn.LIF, lambda **kw: nsnn.NILIF(eval_mode="expected", **kw).eval()])
def test_single_step_resets_a_plus_inf_membrane_like_multi_step(make):
    # A +inf input fires and the hard reset takes the membrane to 0. Single-step mode computed
    # u = h·(1 − s) = inf·0 = NaN, and the neuron then stayed silent for good.
    x = torch.tensor([[0.4, 0.5], [math.inf, 0.6], [1.5, 0.7], [0.6, 1.5]], dtype=torch.float64)[:, None, :]
    g = torch.linspace(-1.0, 1.0, x.numel(), dtype=torch.float64).reshape(x.shape)
    (_, out_m, grad_m), (neuron, out_s, grad_s) = _multi_and_single_step(make, x, g)
    assert neuron.mem is not None and torch.isfinite(neuron.mem).all()
    assert out_s[1, 0, 0] == 1 and out_s[2, 0, 0] > 0.5  # fired at +inf, then fires again from rest
    torch.testing.assert_close(out_s, out_m, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(grad_s).all()
    torch.testing.assert_close(grad_s, grad_m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        nsnn.LIF,
        nsnn.PLIF,
        lambda **kw: nsnn.NILIF(noise="logistic", eval_mode="expected", **kw).eval(),
        lambda **kw: nsnn.NILIF(noise="triangular", eval_mode="deterministic", **kw).eval(),
    ],
    ids=["LIF", "PLIF", "NILIF-expected", "NILIF-deterministic"],
)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach", [False, True])
def test_single_step_matches_multi_step_through_infinite_inputs(make, reset: str, detach: bool):
    # ±inf inputs (a −inf input masks a neuron) and huge ones: single-step autograd gave NaN gradients
    # where the multi-step kernels give finite ones: 0·inf in the hard reset's −h·∂L/∂u and in PLIF's
    # ∂L/∂β = Σ ∂L/∂h·u, where the multi-step paths count 0 for a zero factor.
    x = torch.rand(6, 2, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.6
    x[1, 0] = torch.tensor([math.inf, -math.inf, 1e30, -1e30, 0.0, 1.0, 1e-30], dtype=torch.float64)
    x[3, 1] = x[1, 0].flip(0)
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (multi, out_m, grad_m), (single, out_s, grad_s) = _multi_and_single_step(
        make, x, g, reset=reset, detach_reset=detach
    )
    assert torch.isfinite(grad_m).all() and torch.isfinite(grad_s).all()
    torch.testing.assert_close(out_s, out_m, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_s, grad_m, rtol=1e-9, atol=1e-12)
    if isinstance(multi, nsnn.PLIF):
        assert torch.isfinite(single.w.grad) and multi.w.grad != 0
        torch.testing.assert_close(single.w.grad, multi.w.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        nsnn.LIF,
        lambda **kw: nsnn.NILIF(noise="logistic", eval_mode="expected", **kw).eval(),
        lambda **kw: nsnn.NILIF(noise="uniform", eval_mode="deterministic", **kw).eval(),
    ],
    ids=["LIF", "NILIF-expected", "NILIF-deterministic"],
)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("use_native", [True, False])
def test_tau_one_forgets_a_minus_inf_input(make, reset: str, use_native: bool):
    # τ = 1 (β = 0): each step sees its own input alone. After a −inf input (a mask) the next step's
    # β·u was 0·(−inf) = NaN: that neuron never fired again and every gradient was NaN.
    x = torch.rand(5, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2.0
    x[1, 0, :3] = -math.inf
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with native.enabled(use_native):
        runs = _multi_and_single_step(make, x, g, tau=1.0, reset=reset)
    for neuron, out, grad in runs:
        noise = neuron.noise
        z = x - neuron.threshold
        expected = (z > 0).double() if neuron.fire_mode == "heaviside" else noise.cdf(z)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, g * noise.pdf(z), rtol=1e-12, atol=1e-12)
    assert runs[0][1][2:, 0, :3].ne(0).any()  # the masked neurons fire again after the mask
    xi = x.clone().requires_grad_(True)
    with native.enabled(use_native):
        out = nsnn.NILIF(tau=1.0, reset=reset)(xi)  # stochastic
        out.backward(g)
    assert (out[1, 0, :3] == 0).all() and out[2:, 0, :3].any() and torch.isfinite(xi.grad).all()


def test_double_noise_only_when_sampling():
    x = torch.randn(5, 64, 32, generator=torch.Generator().manual_seed(0)) + 0.9
    neuron = nsnn.NILIF(double_noise=True, eval_mode="deterministic").eval()
    assert torch.equal(neuron(x), nsnn.LIF()(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_half_precision_gradients_are_the_float32_ones_rounded(dtype: torch.dtype, reset: str):
    # The torch path replays h in float32 from x: its gradients are those of float32 math on the
    # same input values, rounded once to the input's dtype (a stored bf16 h was 10x less accurate).
    x = (torch.rand(8, 4, 300, generator=torch.Generator().manual_seed(2)) * 1.5).to(dtype)
    grads = []
    for work in (dtype, torch.float32):
        xi = x.to(work).detach().clone().requires_grad_(True)
        with native.enabled(False):
            nsnn.LIF(surrogate="gaussian", sigma=0.1, reset=reset)(xi).sum().backward()
        grads.append(xi.grad)
    assert torch.equal(grads[0], grads[1].to(dtype))


def test_half_precision_plif_soft_reset_gradient_is_finite():
    # 50,000 per step fits fp16, its running membrane does not: the β gradient stays finite.
    plif = nsnn.PLIF(reset="soft").half()
    plif(torch.full((3, 1, 2), 50000.0, dtype=torch.float16)).sum().backward()
    assert torch.isfinite(plif.w.grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_single_step_keeps_a_float32_membrane_under_half_precision(dtype: torch.dtype):
    x = (torch.rand(16, 2, 4096, generator=torch.Generator().manual_seed(3)) * 0.9 + 0.2).to(dtype)
    multi = nsnn.LIF()(x)
    single = nsnn.LIF(step_mode="s")
    steps = torch.stack([single(x[t]) for t in range(len(x))])
    assert single.mem.dtype == torch.float32 and steps.dtype == dtype
    assert torch.equal(steps, multi)


def test_settings_are_validated_on_every_assignment():
    neuron = nsnn.NILIF()
    for name, value in (("tau", 0.5), ("threshold", -1.0), ("reset_mode", "Hard"), ("eval_mode", "mean")):
        with pytest.raises(ValueError, match=name):
            setattr(neuron, name, value)
    with pytest.raises(ValueError, match="not a learnable parameter"):
        neuron.threshold = torch.nn.Parameter(torch.tensor(1.0))
    neuron.tau, neuron.threshold, neuron.reset_mode = 4, 0.5, "soft"
    assert (neuron.decay, neuron.threshold, neuron.parameters_tuple().hard_reset) == (0.75, 0.5, False)


def test_import_nsnn_loads_only_torch_and_gives_every_subpackage_on_first_use():
    # README writes nsnn.models.create(...), @nsnn.models.register_model, nsnn.training.fit, ...
    # after a plain `import nsnn`; those used to be AttributeErrors until imported by name.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, nsnn\n"
        "heavy = [m for m in ('brian2', 'matplotlib', 'networkx', 'nsnn.models') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "nsnn.models.create('mnist_mlp', hidden=4)\n"
        "assert callable(nsnn.training.fit) and callable(nsnn.compress.quantize)\n"
        "assert callable(nsnn.data.embedded_mnist_split) and callable(nsnn.io.load_torch)\n"
        "assert 'stdp' in dir(nsnn) and not hasattr(nsnn, 'nonexistent')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _settings(neuron):
    return (
        neuron.tau,
        neuron.threshold,
        neuron.reset_mode,
        neuron.detach_reset,
        neuron.eval_mode,
        neuron.noise,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: nsnn.LIF(),
        lambda: nsnn.NILIF(),
        lambda: nsnn.PLIF(),
        lambda: nsnn.PLIF(noise="gaussian"),
    ],
    ids=["LIF", "NILIF", "PLIF", "NIPLIF"],
)
def test_settings_given_after_construction_are_saved_and_loaded(make, tmp_path):
    # neuron.sigma = s (README: to anneal the noise), .threshold, .tau ... were plain attributes that no
    # checkpoint kept: a saved and reloaded model came back with its constructor's settings.
    neuron = make()
    neuron.sigma, neuron.threshold, neuron.tau = 0.05, 0.7, 4.0
    neuron.noise = get_noise("logistic", 0.05)
    neuron.reset_mode, neuron.detach_reset, neuron.eval_mode = "soft", True, "expected"
    if isinstance(neuron, nsnn.NILIF):
        neuron.double_noise = True
    torch.save(neuron.settings(), tmp_path / "neuron.pt")
    state = torch.load(tmp_path / "neuron.pt", weights_only=True)
    if isinstance(neuron, nsnn.PLIF):  # the learned leak is the parameter w, not a setting
        assert "tau" not in state
    assert all(isinstance(v, torch.Tensor) for v in neuron.state_dict().values())  # tensors only
    again = make()
    again.load_state_dict(neuron.state_dict())  # PLIF's τ: its parameter w
    again.load_settings(state)
    assert (
        _settings(again)
        == _settings(neuron)
        == (pytest.approx(4.0), 0.7, "soft", True, "expected", neuron.noise)
    )
    assert getattr(again, "double_noise", True)


def test_a_custom_noise_family_is_restored_by_its_registered_name():
    from nsnn.noise import NOISES, Gaussian

    class Bump(Gaussian):
        name = "test-bump"

    class Unnamed(Gaussian):  # inherits "gaussian" but is not the registered gaussian
        pass

    try:
        state = nsnn.NILIF(noise=Bump(0.2)).settings()
        again = nsnn.NILIF()
        again.load_settings(state)
        assert type(again.noise) is Bump and again.sigma == 0.2
        NOISES.pop("test-bump")  # the module defining it not imported where it loads
        with pytest.raises(
            ValueError, match=r"cannot restore the saved noise family .*Bump \('test-bump'\).*import"
        ):
            nsnn.NILIF().load_settings(state)
    finally:
        NOISES.pop("test-bump", None)
    state = nsnn.LIF(surrogate=Unnamed(0.4)).settings()
    assert state["noise"] is None
    with pytest.raises(ValueError, match=r"saved noise family .*Unnamed was not in the noise registry"):
        nsnn.LIF().load_settings(state)
    built_with_it = nsnn.LIF(surrogate=Unnamed(0.3))
    built_with_it.load_settings(state)
    assert type(built_with_it.noise) is Unnamed and built_with_it.sigma == 0.4


def test_settings_of_another_kind_of_neuron_are_refused():
    with pytest.raises(ValueError, match=r"LIF has no setting 'double_noise'"):
        nsnn.LIF().load_settings(nsnn.NILIF().settings())
    with pytest.raises(ValueError, match="threshold must be a finite number > 0"):
        nsnn.LIF().load_settings({"threshold": -1.0})


def test_stepping_a_batchnorm_network_matches_multi_step_in_eval_mode_only():
    # the docs promised the same spikes step by step for deterministic neurons; with BatchNorm that holds
    # in eval mode (running statistics) only: in training mode each step is normalised over B, not T·B
    torch.manual_seed(0)
    net = torch.nn.Sequential(nsnn.SeqToANN(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8)), nsnn.LIF())
    x = torch.randn(5, 6, 4) + torch.linspace(-1, 1, 5)[:, None, None]  # steps of different statistics

    def both(module):
        nsnn.set_step_mode(net, "m")
        with torch.no_grad():
            whole = module(x)
            nsnn.set_step_mode(net, "s")
            return whole, torch.stack([module(x_t) for x_t in x])

    net.eval()
    whole, stepped = both(net)
    assert whole.any() and torch.equal(stepped, whole)
    net.train()
    whole, stepped = both(net[0])
    assert not torch.allclose(stepped, whole, atol=1e-3)


def test_seq_to_ann_refuses_a_neuron_put_into_a_nested_container_at_forward():
    # inner.append(LIF()) after SeqToANN(inner) went unseen: the LIF ran over T·B as if it were time
    inner = torch.nn.Sequential(torch.nn.Linear(2, 2))
    block = nsnn.SeqToANN(inner)
    x = torch.rand(3, 4, 2)
    block(x)
    inner.append(nsnn.LIF())
    for mode in ("m", "s"):
        nsnn.set_step_mode(block, mode)
        with pytest.raises(ValueError, match="SeqToANN is for stateless layers; LIF keeps a membrane"):
            block(x if mode == "m" else x[0])
