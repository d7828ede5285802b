"""CUDA paths: neurons, a spiking ResNet under AMP, the training loop and compression on a GPU.

Every test here needs a CUDA device and is skipped without one (CI has none; these run on a lent GPU
machine: ``python -m pytest tests/test_cuda.py``). The CPU float64 pure-torch path is the reference.
Without a GPU, ``make check-triton`` runs the neuron tests on CPU tensors with the Triton kernels
executed by Triton's interpreter (``tests/triton_interpreter.py`` sets ``NSNN_TEST_DEVICE=cpu``).
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import nsnn
from nsnn.compress import magnitude_prune, quantize
from nsnn.functional import lif_multistep, native, triton_lif
from nsnn.functional.lif import LIFParameters
from nsnn.functional.ops import has_kernel
from nsnn.models import create
from nsnn.training import TrainConfig, fit, load_model

CUDA = torch.device(os.environ.get("NSNN_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU"
)
needs_gpu = pytest.mark.skipif(
    CUDA.type != "cuda", reason="a whole network on a GPU, not the Triton interpreter"
)
# The registered families the Triton kernels implement (a family added elsewhere runs on the torch path).
FAMILIES = [name for name in nsnn.list_noises() if has_kernel(nsnn.get_noise(name), "expected")]
PARAMS = [
    LIFParameters(0.5, 1.0, hard_reset=True, detach_reset=False),
    LIFParameters(0.75, 0.8, hard_reset=False, detach_reset=False),
    LIFParameters(0.5, 1.0, hard_reset=True, detach_reset=True),
]


def _run(x: torch.Tensor, params: LIFParameters, family: str, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    out = lif_multistep(x, params, nsnn.get_noise(family, 0.3), mode)
    weight = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    (out * weight).sum().backward()
    return out.detach(), x.grad


def _given_spikes_reference(x: torch.Tensor, spikes: torch.Tensor, params: LIFParameters, family: str):
    """float64 CPU recurrence that takes the spikes as given and differentiates them by the noise PDF:
    the exact gradient a bernoulli run with these spikes must produce."""
    noise = nsnn.get_noise(family, 0.3)
    x = x.detach().cpu().double().requires_grad_(True)
    u, outs = None, []
    for t in range(x.shape[0]):
        h = x[t] if u is None else params.decay * u + x[t]
        s = spikes[t].cpu().double() + noise.pdf(h.detach() - params.threshold) * (h - h.detach())
        r = s.detach() if params.detach_reset else s
        u = h * (1 - r) if params.hard_reset else h - params.threshold * r
        outs.append(s)
    return torch.stack(outs), x


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["heaviside", "expected"])
@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_cpu_reference(family, mode, params, dtype):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 257, dtype=torch.float64) * 0.8 + 0.6
    with native.enabled(False):
        ref_out, ref_grad = _run(x, params, family, mode)
    xc = x.to(CUDA, dtype)
    # float32 runs the Triton kernel where Triton is installed; float64 the pure-torch path
    assert triton_lif.supports(xc, nsnn.get_noise(family, 0.3), mode) == (
        dtype == torch.float32 and triton_lif.is_available()
    )
    out, grad = _run(xc, params, family, mode)
    assert out.device.type == CUDA.type and out.dtype == dtype and grad.dtype == dtype
    tol = 1e-6 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out.cpu().double(), ref_out, rtol=0, atol=tol)
    torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=0, atol=tol)


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_infinite_inputs_give_the_reference_gradients(family):
    # −inf at the last step (an inhibition mask): the reset term is chosen while ∂L/∂u = 0, no 0·inf.
    torch.manual_seed(1)
    x = torch.randn(5, 2, 257, dtype=torch.float64) * 0.8 + 0.6
    x[4, 0, :3] = -math.inf
    for params in PARAMS:
        with native.enabled(False):
            _, ref_grad = _run(x, params, family, "heaviside")
        _, grad = _run(x.to(CUDA, torch.float32), params, family, "heaviside")
        assert torch.isfinite(grad).all() and torch.isfinite(ref_grad).all()
        torch.testing.assert_close(grad.cpu().double(), ref_grad, rtol=0, atol=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_expected_spike_at_plus_inf_resets_to_zero(family):
    # s = cdf(+inf) = 1 under the hard reset: u = 0, not inf·0 = NaN, so the later steps are those of a
    # run started from rest.
    x = torch.randn(5, 2, 40, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.6
    x[1] = math.inf
    noise = nsnn.get_noise(family, 0.3)
    results = []
    for xs in (x, x[2:]):
        xi = xs.to(CUDA, copy=True).requires_grad_(True)
        assert triton_lif.supports(xi, noise, "expected") == triton_lif.is_available()
        out = lif_multistep(xi, PARAMS[0], noise, "expected")
        out.backward(torch.ones_like(out))
        results.append((out.detach().cpu(), xi.grad.cpu()))
    (out, grad), (rest, grad_rest) = results
    assert (out[1] == 1).all() and torch.isfinite(out).all()
    assert (grad[1] == 0).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out[2:], rest, rtol=0, atol=0)
    torch.testing.assert_close(grad[2:], grad_rest, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("params", PARAMS)
def test_cuda_bernoulli_gradient_is_exact_for_the_drawn_spikes(family, params):
    torch.manual_seed(0)
    x = torch.randn(7, 3, 300, device=CUDA) * 0.8 + 0.6
    out, grad = _run(x, params, family, "bernoulli")
    assert 0.05 < out.mean().item() < 0.95
    ref, xr = _given_spikes_reference(x, out, params, family)
    weight = torch.linspace(-1.0, 1.0, ref.numel(), dtype=torch.float64).reshape(ref.shape)
    (ref * weight).sum().backward()
    torch.testing.assert_close(grad.cpu().double(), xr.grad, rtol=0, atol=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_bernoulli_frequency_and_surrogate(family):
    noise = nsnn.get_noise(family, 0.3)
    z = torch.linspace(-0.55, 0.55, 12, dtype=torch.float64)  # off the support edges at ±σ
    n = 20000
    for dtype in (torch.float64, torch.float32):
        x = (1.0 + z).repeat_interleave(n).reshape(1, 1, -1).to(CUDA, dtype).requires_grad_(True)
        torch.manual_seed(1)
        s = lif_multistep(x, LIFParameters(), noise, "bernoulli")
        s.sum().backward()
        freq = s.reshape(12, n).double().mean(1).cpu()
        p = noise.cdf(z)
        bound = 5.0 * torch.sqrt(p * (1 - p) / n) + 1e-9
        assert torch.all((freq - p).abs() <= bound), (dtype, freq, p)
        # T = 1: ∂s/∂x = pdf(x − θ)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        got = x.grad.reshape(12, n)[:, 0].cpu().double()
        torch.testing.assert_close(got, noise.pdf(z), rtol=0, atol=tol)


def test_cuda_learnable_decay_gradient_matches_cpu():
    torch.manual_seed(0)
    x = torch.randn(7, 2, 100, dtype=torch.float64) * 0.8 + 0.6
    grads = []
    for device, dtype, kernels in ((torch.device("cpu"), torch.float64, False), (CUDA, torch.float32, True)):
        beta = torch.tensor(0.6, dtype=dtype, device=device, requires_grad=True)
        with native.enabled(kernels):
            out = lif_multistep(
                x.to(device, dtype).requires_grad_(True),
                LIFParameters(beta, 1.0, True, False),
                nsnn.get_noise("gaussian", 0.3),
                "expected",
            )
        out.sum().backward()
        grads.append(beta.grad.item())
    assert grads[0] != 0.0
    assert abs(grads[1] - grads[0]) <= 1e-4 * abs(grads[0])


@pytest.mark.skipif(not triton_lif.is_available(), reason="needs Triton")
def test_triton_path_saves_only_the_input():
    x = torch.randn(8, 4, 1000, device=CUDA).requires_grad_(True)
    storages = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        nsnn.NILIF(noise="gaussian", sigma=0.3)(x)
    extra = {ptr: n for ptr, n in storages.items() if ptr != x.untyped_storage().data_ptr()}
    assert x.untyped_storage().data_ptr() in storages
    assert sum(extra.values()) <= 16  # the 0-dim decay and random-key tensors only


def test_cuda_seeded_runs_repeat_and_differ_across_seeds():
    layer = nsnn.NILIF(noise="gaussian", sigma=0.3)
    x = torch.randn(8, 4, 1000, device=CUDA) + 1.0

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return layer(x)

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.05 < a.mean().item() < 0.95


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_is_float32_math_rounded_once(dtype):
    # The kernels load half inputs into float32 and do all their math there, so a half run gives the
    # float32 run's spikes and gradients on the same (rounded) inputs, rounded once to the dtype: at
    # most 1 ulp apart (0 under Triton 3.9's interpreter for float16; 1 ulp for bfloat16, which the
    # interpreter rounds towards zero). A surrogate or membrane kept in half precision is off by more.
    torch.manual_seed(0)
    x = (torch.randn(5, 4, 300, device=CUDA) * 0.5 + 0.8).to(dtype)
    results = {}
    for dt in (torch.float32, dtype):
        xi = x.to(dt).requires_grad_(True)
        out = nsnn.NILIF(noise="logistic", sigma=0.3, eval_mode="expected").eval()(xi)
        out.backward(torch.ones_like(out))
        assert out.dtype == dt and xi.grad.dtype == dt and torch.isfinite(xi.grad).all()
        results[dt] = (out.detach(), xi.grad)
    for half, full in zip(results[dtype], results[torch.float32], strict=True):
        err = (half.float() - full.to(dtype).float()).abs()
        assert (err <= torch.finfo(dtype).eps * full.abs()).all()


@needs_gpu
def test_resnet19_amp_train_step_on_cuda():
    torch.manual_seed(0)
    model = create("spiking_resnet19", num_classes=10, neuron="NILIF", sigma=0.3).to(CUDA).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(2, 4, 3, 32, 32, device=CUDA)
    y = torch.arange(4, device=CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.autocast("cuda", dtype=torch.float16):
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.mean(0), y)
    assert logits.shape == (2, 4, 10) and math.isfinite(loss.item())
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))
    assert changed > 0.9 * len(before)


@needs_gpu
def test_fit_on_cuda_with_amp_and_checkpoint_loads_on_cpu(tmp_path):
    cfg = TrainConfig(
        dataset="mnist",
        model="mnist_convnet",
        arch={"width": 4, "hidden": 16},
        timestep=2,
        minibatch=32,
        max_samples=240,
        val_split=0.2,
        lr=3e-3,
        epochs=1,
        device="cuda",
        amp=True,
        progress=False,
        out=str(tmp_path / "run"),
    )
    result = fit(cfg)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    model, ckpt = load_model(result["run_dir"], map_location="cpu")
    assert ckpt["config"]["device"] == "cuda"
    assert all(p.device.type == "cpu" for p in model.parameters())
    out = model(torch.rand(2, 3, 1, 28, 28))
    assert out.shape == (2, 3, 10)


@needs_gpu
def test_compression_keeps_device_and_levels_on_cuda():
    torch.manual_seed(0)
    model = create("mnist_convnet", width=4, hidden=16).to(CUDA)
    magnitude_prune(model, sparsity=0.5)
    report = quantize(model, bits=3)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            w = module.weight.detach()
            assert w.device.type == "cuda", name
            assert (w == 0).float().mean().item() >= 0.5 - 1e-3, name
            assert torch.unique(w[w != 0]).numel() <= 2**3, name
    assert report.sparsity >= 0.5 - 1e-3 and all(layer.bits <= 3 for layer in report.layers)


@needs_gpu
@pytest.mark.parametrize("neuron", ["NILIF", "PLIF"])
def test_cuda_compiles_without_graph_breaks_and_matches_eager(neuron, compiled_matches_eager):
    compiled_matches_eager(neuron, CUDA.type, atol=1e-5)
