"""The C++ fused LIF kernel (nsnn._C) against the pure-torch reference path of nsnn.functional.fused.

Covers every noise family with a kernel × fire mode × reset × detach_reset with a learnable decay, float64 (to
1e-9) and float32, each compiled instruction-set variant, bernoulli gradients given the drawn spikes,
firing frequencies against the CDF, thread-count independence, seeding, the float32 CDF/PDF error,
saved-for-backward memory and the fallbacks (unknown family, bf16, switch off).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

import nsnn
from nsnn.functional import LIFParameters, lif_multistep, native
from nsnn.functional.ops import FAMILY_IDS, has_kernel
from nsnn.noise import Gaussian, Noise, get_noise, list_noises

needs_native = pytest.mark.skipif(not native.is_available(), reason="nsnn._C is not built")
# The registered families the compiled kernels implement: a family added elsewhere (nsnn/noise.py, a
# plugin) runs on the torch path and is checked by test_noise.py and test_neurons.py instead.
FAMILIES = [name for name in list_noises() if has_kernel(get_noise(name), "expected")]


def test_extension_built() -> None:
    if os.environ.get("NSNN_BUILD_NATIVE") == "0":
        pytest.skip("NSNN_BUILD_NATIVE=0: built without the extension on purpose")
    assert native.is_available(), f"nsnn._C failed to import: {native._LOAD_ERROR}"
    assert native.isa() in native._C.supported_isas()


def run(
    x: Tensor,
    decay: Tensor | float,
    noise: Noise,
    mode: str,
    *,
    hard: bool = True,
    detach: bool = False,
    use_native: bool = True,
    grad: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Spikes, ∂L/∂x and ∂L/∂β (None for a float decay) for L = Σ grad·spikes.

    Checks which path ran: with ``use_native`` the C++ forward and backward kernels (so a comparison
    with ``use_native=False`` is never the torch path against itself), without it neither.
    """
    xi = x.detach().clone().requires_grad_(True)
    d = decay.detach().clone().requires_grad_(True) if isinstance(decay, Tensor) else decay
    with counting_kernel_calls() as calls:
        with native.enabled(use_native):
            y = lif_multistep(xi, LIFParameters(d, 1.0, hard, detach), noise, mode)
        y.backward(torch.ones_like(y) if grad is None else grad)
    expected = 1 if use_native else 0
    assert (calls["forward"], calls["backward"]) == (expected, expected), (use_native, dict(calls))
    return y.detach(), xi.grad, d.grad if isinstance(d, Tensor) else None


class _CountingExtension:
    """Stands in for ``nsnn._C``, counting the calls of its ``forward`` and ``backward``."""

    def __init__(self, ext: object, calls: collections.Counter[str]) -> None:
        self._ext, self._calls = ext, calls

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._ext, name)
        if name not in ("forward", "backward"):
            return attr

        def counted(*args: object) -> object:
            self._calls[name] += 1
            return attr(*args)

        return counted


@contextlib.contextmanager
def counting_kernel_calls() -> Iterator[collections.Counter[str]]:
    """Counts the C++ kernel calls made inside the block (none when the extension is not built)."""
    calls: collections.Counter[str] = collections.Counter()
    ext = native._C
    if ext is None:
        yield calls
        return
    native._C = _CountingExtension(ext, calls)
    try:
        yield calls
    finally:
        native._C = ext


def dyadic(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> Tensor:
    """Inputs on a 1/64 grid: with β = 0.5 every membrane value is exact in float32, so spikes match."""
    g = torch.Generator().manual_seed(seed)
    return (
        (torch.randn(shape, generator=g, dtype=torch.float64) * 0.8 + 0.6).mul(64).round().div(64).to(dtype)
    )


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["heaviside", "expected"])
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_torch_path(family: str, mode: str, dtype: torch.dtype) -> None:
    noise = get_noise(family, 0.3)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    for shape in [(6, 3, 37), (5, 2, 3000)]:  # N not a multiple of 8; many chunks
        x = dyadic(shape, dtype, seed=len(shape) + shape[-1])
        grad = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        decay = torch.tensor(0.5, dtype=dtype)
        for hard in (True, False):
            for detach in (False, True):
                kw = {"hard": hard, "detach": detach, "grad": grad}
                y, gx, gd = run(x, decay, noise, mode, **kw)
                y0, gx0, gd0 = run(x, decay, noise, mode, use_native=False, **kw)
                assert y.dtype == dtype and gx.dtype == dtype and gd.dtype == dtype
                if mode == "heaviside":
                    assert torch.equal(y, y0)
                torch.testing.assert_close(y, y0, rtol=0, atol=tol)
                torch.testing.assert_close(gx, gx0, rtol=tol, atol=tol)
                # the torch path returns ∂L/∂β rounded to float32, hence rtol 1e-6 in float64
                torch.testing.assert_close(gd, gd0, rtol=1e-6 if dtype == torch.float64 else 1e-4, atol=tol)


@needs_native
@pytest.mark.parametrize("family", FAMILIES)
def test_infinite_inputs_give_the_torch_path_gradients(family: str) -> None:
    # −inf inputs (an inhibition mask): the reset term is chosen, never 0·inf = NaN, where ∂L/∂u = 0
    # (the last step) or the reset is detached.
    noise = get_noise(family, 0.3)
    decay = torch.tensor(0.5, dtype=torch.float64)
    last = dyadic((5, 2, 9), torch.float64, seed=7)
    last[4, 0, :3] = -math.inf
    middle = dyadic((5, 2, 9), torch.float64, seed=8)
    middle[2, 1, 3:6] = -math.inf
    cases = [(last, hard, detach) for hard, detach in itertools.product((True, False), (False, True))]
    cases += [(middle, True, True), (middle, False, True)]
    for x, hard, detach in cases:
        for mode in ("heaviside", "expected"):
            y, gx, gd = run(x, decay, noise, mode, hard=hard, detach=detach)
            y0, gx0, gd0 = run(x, decay, noise, mode, hard=hard, detach=detach, use_native=False)
            assert torch.isfinite(gx).all() and torch.isfinite(gx0).all()
            torch.testing.assert_close(y, y0, rtol=0, atol=1e-12)
            torch.testing.assert_close(gx, gx0, rtol=1e-9, atol=1e-12)
            if x is last:
                torch.testing.assert_close(gd, gd0, rtol=1e-6, atol=1e-12)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_mask_in_mid_sequence_gives_the_torch_path_gradients(family: str, dtype: torch.dtype) -> None:
    # A −inf input from step 2 on (the membrane stays −inf), with the reset term not detached: the pdf
    # is exactly 0 there (float32 included), so ∂L/∂u stays 0 and the reset term is never 0·inf.
    noise = get_noise(family, 0.3)
    x = dyadic((5, 2, 9), dtype, seed=9)
    x[2, 1, 3:6] = -math.inf
    for hard in (True, False):
        for mode in ("heaviside", "expected"):
            _, gx, _ = run(x, 0.5, noise, mode, hard=hard)
            _, gx0, _ = run(x, 0.5, noise, mode, hard=hard, use_native=False)
            assert torch.isfinite(gx).all() and torch.isfinite(gx0).all()
            assert (gx[2:, 1, 3:6] == 0).all()
            tol = 1e-9 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(gx, gx0, rtol=tol, atol=tol)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family", FAMILIES)
def test_infinite_membranes_with_gradient_flowing_through_them(family: str, dtype: torch.dtype) -> None:
    # A +inf input under the hard reset fires and is reset, and the later steps' ∂L/∂u flows back into
    # its reset term −h·∂L/∂u, which the pdf (0 at +inf) multiplies: the torch path gives 0, the native
    # path gave NaN. And PLIF's ∂L/∂β = Σ ∂L/∂h_{t+1}·u_t past a −inf mask (u_t = −inf, ∂L/∂h_{t+1} = 0)
    # was NaN on the native path.
    noise = get_noise(family, 0.3)
    spike = torch.tensor([0.5, math.inf, 0.9, 0.7], dtype=dtype).reshape(4, 1, 1).expand(4, 2, 3).clone()
    y, gx, _ = run(spike, 0.5, noise, "heaviside", hard=True)
    y0, gx0, _ = run(spike, 0.5, noise, "heaviside", hard=True, use_native=False)
    assert torch.equal(y, y0) and torch.isfinite(gx).all() and (gx[1] == 0).all()
    torch.testing.assert_close(gx, gx0, rtol=1e-6, atol=1e-6)
    mask = dyadic((5, 2, 9), dtype, seed=8)
    mask[2, 1, 3:6] = -math.inf
    decay = torch.tensor(0.5, dtype=torch.float64)
    for hard in (True, False):
        for mode in ("heaviside", "expected"):
            _, gx, gd = run(mask, decay, noise, mode, hard=hard)
            _, gx0, gd0 = run(mask, decay, noise, mode, hard=hard, use_native=False)
            assert torch.isfinite(gd).all() and torch.isfinite(gx).all()
            tol = 1e-9 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(gx, gx0, rtol=tol, atol=tol)
            torch.testing.assert_close(gd, gd0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("use_native", [pytest.param(True, marks=needs_native), False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family", FAMILIES)
def test_an_expected_spike_at_plus_inf_resets_to_zero(
    family: str, dtype: torch.dtype, use_native: bool
) -> None:
    # Expected firing under the hard reset: a +inf input gives s = cdf(+inf) = 1, and u = h·(1 − s)
    # must be 0 (the limit), not inf·0 = NaN, which before left every later step NaN on both paths.
    # After the reset the neuron is at rest, so the later steps are those of a run started there.
    noise = get_noise(family, 0.3)
    x = dyadic((5, 2, 9), dtype, seed=10)
    x[1] = math.inf
    decay = torch.tensor(0.5, dtype=torch.float64)
    y, gx, gd = run(x, decay, noise, "expected", use_native=use_native)
    assert (y[1] == 1).all() and torch.isfinite(y).all()
    assert torch.isfinite(gx).all() and (gx[1] == 0).all() and torch.isfinite(gd).all()
    y_rest, gx_rest, _ = run(x[2:], decay, noise, "expected", use_native=use_native)
    torch.testing.assert_close(y[2:], y_rest, rtol=0, atol=0)
    torch.testing.assert_close(gx[2:], gx_rest, rtol=0, atol=0)


@needs_native
@pytest.mark.parametrize("sigma", [1e-25, 1e-36])
def test_gaussian_surrogate_at_a_tiny_sigma(sigma: float) -> None:
    # float32 −1/(2σ²) overflows to −inf below σ ≈ 4e-20, and the pdf at h = θ was exp(0·−inf) = NaN on
    # the native path; the torch path gives the peak 1/(σ√(2π)), still finite in float32.
    noise = get_noise("gaussian", sigma)
    x = torch.tensor([1.0, -5.0, 0.5], dtype=torch.float32).reshape(3, 1).expand(3, 4).clone()
    for mode in ("heaviside", "expected"):
        y, gx, _ = run(x, 0.5, noise, mode)
        y0, gx0, _ = run(x, 0.5, noise, mode, use_native=False)
        torch.testing.assert_close(y, y0, rtol=0.0, atol=1.3e-7)  # the float32 cdf's error bound
        assert torch.isfinite(gx).all()
        torch.testing.assert_close(gx, gx0, rtol=1e-6, atol=0.0)
        assert math.isclose(gx[0, 0].item(), 1 / (sigma * math.sqrt(2 * math.pi)), rel_tol=1e-6)


@needs_native
def test_runs_in_a_thread_with_a_small_stack() -> None:
    # musl's default thread stack is 128 KiB: the kernels keep their per-chunk state off the stack.
    code = (
        "import threading, torch, nsnn\n"
        "threading.stack_size(128 * 1024)\n"
        "def work():\n"
        "    for dtype in (torch.float32, torch.float64):\n"
        "        x = torch.rand(3, 1, 10, dtype=dtype, requires_grad=True)\n"
        "        nsnn.PLIF(noise='gaussian').to(dtype).train()(x).sum().backward()\n"
        "        nsnn.NILIF(reset='soft')(x).sum().backward()\n"
        "    print('ok')\n"
        "t = threading.Thread(target=work)\n"
        "t.start()\n"
        "t.join()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@needs_native
def test_double_backward_raises() -> None:
    for use_native in (True, False):
        x = torch.rand(3, 2, 4, dtype=torch.float64, requires_grad=True)
        with native.enabled(use_native):
            y = lif_multistep(x, LIFParameters(0.5, 1.0), get_noise("logistic", 0.3), "expected")
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        loss = y.sum() + gx.pow(2).sum()  # a second-order term must not be silently dropped
        with pytest.raises(RuntimeError, match="no double backward"):
            loss.backward()


@pytest.mark.parametrize("use_native", [True, False])
def test_second_order_gradients_by_autograd_grad_raise(use_native: bool) -> None:
    # torch.autograd.grad(..., inputs) runs only the nodes on paths to its inputs: a MAML-style
    # meta-gradient (and d²/dx²) must raise there too, not drop the layer's second-order term.
    if use_native and not native.is_available():
        pytest.skip("nsnn._C is not built")
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 5).double()
    neuron = nsnn.NILIF(eval_mode="expected", sigma=0.5).eval()
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    with native.enabled(use_native):
        inner = neuron(torch.nn.functional.linear(x, lin.weight, lin.bias)).pow(2).sum()
        (gw,) = torch.autograd.grad(inner, lin.weight, create_graph=True)
        outer = neuron(torch.nn.functional.linear(x, lin.weight - 0.5 * gw, lin.bias)).sum()
        with pytest.raises(RuntimeError, match="no double backward"):
            torch.autograd.grad(outer, lin.weight)
        # a -inf input (a mask) leaves the first-order gradient as it is without create_graph
        xi = torch.tensor([[[-math.inf, 0.3]], [[1.0, 2.0]]], dtype=torch.float64, requires_grad=True)
        (g1,) = torch.autograd.grad(neuron(xi).sum(), xi, create_graph=True)
        (g0,) = torch.autograd.grad(neuron(xi).sum(), xi)
        assert torch.equal(g1.detach(), g0) and bool(g0.ne(0).any())
        with pytest.raises(RuntimeError, match="no double backward"):
            torch.autograd.grad(g1.sum(), xi)


@needs_native
@pytest.mark.parametrize("mode", ["heaviside", "expected"])
@pytest.mark.parametrize("shape", [(256, 2, 8200), (600, 8200), (4100, 1040), (4, 16400)])
def test_sequences_walk_chunks_in_several_slices(mode: str, shape: tuple[int, ...]) -> None:
    # T·chunk > the backward's replay buffer (2^18 elements) in the float64 (generic) kernels: chunks of
    # 1088 neurons are replayed in slices of 1024 + 64 at T = 256 (the last chunk holds 80 neurons),
    # chunks of 576 in 384 + 192 at T = 600, chunks of 128 in 2 slices of 64 at T = 4100 (a buffer over
    # the bound, given back after the call); at T = 4 a slice is the whole chunk. Rows of 1088 and 576
    # neurons also end in a partial prefetch block.
    noise = get_noise("gaussian", 0.3)
    x = dyadic(shape, torch.float64, seed=3)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    decay = torch.tensor(0.5, dtype=torch.float64)
    y, gx, gd = run(x, decay, noise, mode, grad=grad)
    y0, gx0, gd0 = run(x, decay, noise, mode, use_native=False, grad=grad)
    torch.testing.assert_close(y, y0, rtol=0, atol=1e-9)
    torch.testing.assert_close(gx, gx0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gd, gd0, rtol=1e-6, atol=1e-9)


@needs_native
@pytest.mark.parametrize("isa", native._C.supported_isas() if native.is_available() else [])
def test_each_instruction_set_matches_torch(isa: str) -> None:
    before = native.isa()
    x = dyadic((4, 5, 301), torch.float32, seed=7)
    try:
        native._C.set_isa(isa)
        assert native.isa() == isa
        for family in FAMILIES:
            noise = get_noise(family, 0.4)
            for mode in ("heaviside", "expected"):
                got = run(x, torch.tensor(0.5), noise, mode, hard=mode == "expected")
                ref = run(x, torch.tensor(0.5), noise, mode, hard=mode == "expected", use_native=False)
                for a, b in zip(got, ref, strict=True):
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
            torch.manual_seed(4)
            y, gx, gd = run(x, torch.tensor(0.5), noise, "bernoulli", hard=False, grad=grad)
            gx0, gd0 = reference_given_spikes(
                x.double(),
                y.double(),
                torch.tensor(0.5, dtype=torch.float64),
                noise,
                False,
                False,
                grad.double(),
            )
            torch.testing.assert_close(gx.double(), gx0, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(gd.double(), gd0, rtol=1e-4, atol=1e-4)
        with pytest.raises(ValueError, match="valid"):
            native._C.set_isa("sse1")
    finally:
        native._C.set_isa(before)


SIMD_ISAS = [isa for isa in native._C.supported_isas() if isa != "generic"] if native.is_available() else []


@needs_native
@pytest.mark.skipif(len(SIMD_ISAS) < 2, reason="needs a CPU with both AVX2 and AVX-512")
@pytest.mark.parametrize("family", range(4))
def test_avx2_and_avx512_kernels_agree_bit_for_bit(family: int) -> None:
    # Both units contract to FMAs, and their intrinsics (lif_avx2.h, lif_avx512.h) compute what the
    # auto-vectorized loops compute: the same seed gives the same spikes, bits and gradients on either
    # CPU, for every mode, reset, detach_reset and ∂L/∂β, rows with a partial block of 64 and of 16
    # neurons, NaN and ±inf membranes and zero ∂L/∂s.
    before = native.isa()
    compared = 0
    try:
        for (steps, n), sigma, mode, hard in itertools.product(
            ((3, 20_011), (7, 130), (5, 64), (2, 5)), (0.05, 0.3, 1.7), range(3), (True, False)
        ):
            gen = torch.Generator().manual_seed(1000 * family + steps)
            x = 1.0 + sigma * (torch.rand(steps, n, generator=gen) * 12 - 6)
            x[0, :3] = torch.tensor([math.nan, math.inf, -math.inf])
            grad = torch.randn(steps, n, generator=gen)
            grad[:, ::5] = 0.0
            results = []
            for isa in SIMD_ISAS:
                native._C.set_isa(isa)
                spikes, bits = native._C.forward(x, 0.5, 1.0, sigma, family, mode, hard, 17, True)
                grads = [
                    native._C.backward(grad, x, bits, 0.5, 1.0, sigma, family, mode, hard, detach, decay)
                    for detach, decay in itertools.product((False, True), repeat=2)
                ]
                results.append((spikes, bits, grads))
            (y0, b0, g0), *rest = results
            for y, b, g in rest:
                case = (steps, n, sigma, mode, hard)
                assert torch.equal(y.nan_to_num(), y0.nan_to_num()), case
                assert (b is None and b0 is None) or torch.equal(b, b0), case
                for (gx, gd), (gx0, gd0) in zip(g, g0, strict=True):
                    torch.testing.assert_close(gx, gx0, rtol=0, atol=0, equal_nan=True, msg=str(case))
                    if gd0 is not None:
                        torch.testing.assert_close(gd, gd0, rtol=0, atol=0, equal_nan=True, msg=str(case))
                compared += 1
    finally:
        native._C.set_isa(before)
    assert compared == 4 * 3 * 3 * 2 * (len(SIMD_ISAS) - 1)


@needs_native
@pytest.mark.parametrize("isa", native._C.supported_isas() if native.is_available() else [])
def test_a_neurons_gradient_does_not_depend_on_its_place_in_the_row(isa: str) -> None:
    # A row of 21 neurons is two vectors of 8 and a remainder of 5 handled one by one: the last 5 are
    # copies of the first 5, and wherever a copy drew the same spikes it must get the same gradients
    # (every family, mode, reset, detach, with and without ∂L/∂β).
    before = native.isa()
    compared = 0
    try:
        native._C.set_isa(isa)
        for family, mode, hard, detach, want_decay in itertools.product(
            range(4), range(3), (True, False), (True, False), (True, False)
        ):
            for seed in range(6):
                gen = torch.Generator().manual_seed(seed)
                x = torch.randn(5, 21, generator=gen) * 1.5 + 0.6
                grad = torch.randn(5, 21, generator=gen)
                x[:, 16:], grad[:, 16:] = x[:, :5], grad[:, :5]
                spikes, bits = native._C.forward(x, 0.9, 1.0, 1.5, family, mode, hard, seed, True)
                args = (0.9, 1.0, 1.5, family, mode, hard, detach, want_decay)
                gx = native._C.backward(grad, x, bits, *args)[0]
                for j in range(5):
                    if torch.equal(spikes[:, 16 + j], spikes[:, j]):
                        compared += 1
                        assert torch.equal(gx[:, 16 + j], gx[:, j]), (args, j)
    finally:
        native._C.set_isa(before)
    assert compared > 1000


class _GivenSpikes(torch.autograd.Function):
    """Forward: the given spikes; backward: the surrogate noise.pdf(z), as in nsnn.functional.lif."""

    @staticmethod
    def forward(ctx, z: Tensor, s: Tensor, noise: Noise) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.noise = noise
        return s.clone()

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return g * ctx.noise.pdf(z), None, None


def reference_given_spikes(
    x: Tensor, spikes: Tensor, decay: Tensor, noise: Noise, hard: bool, detach: bool, grad: Tensor
) -> tuple[Tensor, Tensor]:
    """Plain autograd LIF loop whose draws are ``spikes``; returns ∂L/∂x, ∂L/∂β."""
    xi = x.detach().clone().requires_grad_(True)
    d = decay.detach().clone().requires_grad_(True)
    u, outs = None, []
    for t in range(x.shape[0]):
        h = xi[t] if u is None else d * u + xi[t]
        s = _GivenSpikes.apply(h - 1.0, spikes[t], noise)
        r = s.detach() if detach else s
        u = h * (1.0 - r) if hard else h - 1.0 * r
        outs.append(s)
    torch.stack(outs).backward(grad)
    return xi.grad, d.grad


@needs_native
@pytest.mark.parametrize("family", FAMILIES)
def test_bernoulli_gradients_given_the_drawn_spikes(family: str) -> None:
    noise = get_noise(family, 0.5)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 4, 45, generator=g, dtype=torch.float64) * 0.8 + 0.6
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    decay = torch.tensor(0.6, dtype=torch.float64)
    for hard in (True, False):
        for detach in (False, True):
            torch.manual_seed(11)
            y, gx, gd = run(x, decay, noise, "bernoulli", hard=hard, detach=detach, grad=grad)
            assert set(y.unique().tolist()) <= {0.0, 1.0} and 0 < y.mean() < 1
            gx0, gd0 = reference_given_spikes(x, y, decay, noise, hard, detach, grad)
            torch.testing.assert_close(gx, gx0, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(gd, gd0, rtol=1e-9, atol=1e-9)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("family", FAMILIES)
def test_firing_frequency_matches_cdf(family: str, dtype: torch.dtype) -> None:
    """β = 0 makes every (t, i) an independent Bernoulli(F(x − θ)) draw: check rates and pairs."""
    noise = get_noise(family, 0.3)
    z = torch.tensor([-1.5, -0.7, -0.2, 0.0, 0.3, 0.9, 1.6], dtype=torch.float64)
    n = 6000
    x = (1.0 + 0.3 * z).repeat_interleave(n).to(dtype).expand(2, -1).contiguous()  # [T=2, 7·n]
    p = noise.cdf(x[0].double() - 1.0).view(len(z), n)[:, 0]
    with torch.no_grad(), counting_kernel_calls() as calls:
        s = lif_multistep(x, LIFParameters(0.0, 1.0, True, False), noise, "bernoulli").double()
    assert calls["forward"] == 1  # the C++ kernel's draws
    s = s.view(2, len(z), n)
    freq = s.mean(dim=(0, 2))
    bound = 5 * torch.sqrt(p * (1 - p) / (2 * n)) + 1e-12
    assert torch.all((freq - p).abs() <= bound), (freq, p)

    def independent(a: Tensor, b: Tensor, sds: float) -> bool:
        """Per z, P(a = b = 1) within ``sds`` binomial standard deviations (≈ n pairs) of p²."""
        both = (a * b).mean(dim=1)
        return bool(torch.all((both - p * p).abs() <= sds * torch.sqrt(p * p * (1 - p * p) / n) + 1e-12))

    assert independent(s[0], s[1], 5)  # draws at t = 0 and t = 1 are independent
    assert independent(s[0, :, 1:], s[0, :, :-1], 6)  # so are neighbouring neurons
    assert independent(s[0, :, 64:], s[0, :, :-64], 6)  # and successive draws of one float32 lane


@needs_native
def test_thread_count_independent_and_seeded() -> None:
    x = torch.randn(5, 8, 8000) * 0.8 + 0.6  # N = 64000: 32 chunks, enough work for 2 workers
    decay = torch.tensor(0.5)
    noise = get_noise("gaussian", 0.3)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            torch.manual_seed(5)
            results.append(run(x, decay, noise, "bernoulli", hard=False))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)
    torch.manual_seed(6)
    assert not torch.equal(run(x, decay, noise, "bernoulli")[0], results[0][0])
    gen = torch.Generator().manual_seed(9)
    params = LIFParameters(0.5, 1.0, True, False)
    first = lif_multistep(x, params, noise, "bernoulli", generator=gen)
    second = lif_multistep(x, params, noise, "bernoulli", generator=gen)
    again = lif_multistep(x, params, noise, "bernoulli", generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, again) and not torch.equal(first, second)
    torch.manual_seed(5)
    with torch.no_grad(), counting_kernel_calls() as calls:  # inference path (nothing saved): same spikes
        assert torch.equal(
            lif_multistep(x, LIFParameters(0.5, 1.0, False, False), noise, "bernoulli"), results[0][0]
        )
    assert calls["forward"] == 1


@needs_native
@pytest.mark.parametrize("isa", native._C.supported_isas() if native.is_available() else [])
@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_screened_draws_are_the_exact_decisions(isa: str, family: str) -> None:
    """Gaussian draws are first decided by a cheap screen of the CDF (lif_kernels.h, Screen; on AVX2
    also logistic draws, through a cheaper exp: lif_avx2.h, LogisticScreen), the exact CDF only where
    a draw falls inside the screen's band; with the screen off every draw uses the exact CDF. The
    spikes must not differ by one bit, over membranes spanning ±6σ (gaussian: the screen's clamp at
    ±3.2σ and its whole band) or ±12σ (logistic), NaN and ±inf, a row length that leaves a partial
    block, and float64 (one kernel for every isa); nor may the gradients, which the saved spike bits
    drive."""
    before = native.isa(), native._C.screen()
    assert before[1], "the screen is on by default"
    g = torch.Generator().manual_seed(11)
    spread = 6 if family == "gaussian" else 12
    try:
        native._C.set_isa(isa)
        for dtype, sigma, hard in itertools.product(
            (torch.float32, torch.float64), (0.05, 0.3, 1.7), (True, False)
        ):
            x = 1.0 + sigma * (torch.rand(3, 200_003, generator=g, dtype=torch.float64) * 2 * spread - spread)
            x[0, :3] = torch.tensor([math.nan, math.inf, -math.inf], dtype=torch.float64)
            results = []
            for on in (True, False):
                native._C.set_screen(on)
                torch.manual_seed(3)
                results.append(run(x.to(dtype), 0.5, get_noise(family, sigma), "bernoulli", hard=hard))
            (y, gx, _), (y0, gx0, _) = results
            assert torch.equal(y, y0), (dtype, sigma, hard, (y != y0).sum())
            torch.testing.assert_close(gx, gx0, rtol=0, atol=0, equal_nan=True)  # the saved bits agree too
            assert 0.2 < y.mean() < 0.9  # both outcomes are common
    finally:
        native._C.set_isa(before[0])
        native._C.set_screen(before[1])


@needs_native
@pytest.mark.parametrize(("mode", "hard"), [("heaviside", True), ("heaviside", False), ("expected", False)])
def test_a_nan_membrane_adds_0_to_the_decay_gradient_where_its_factor_is_0(mode: str, hard: bool) -> None:
    # ∂L/∂β sums ∂L/∂h_{t+1}·u_t: with a NaN u_t (a NaN input) the native kernel multiplied 0·NaN into
    # the whole layer's ∂L/∂β, where the torch path adds 0 for a zero factor (_times). The uniform
    # family's pdf is 0 at NaN, so ∂L/∂h there is 0.
    x = torch.tensor([[1.2, 0.7], [math.nan, 0.9], [1.2, 1.1], [1.2, 0.4]], dtype=torch.float64)
    noise, decay = get_noise("uniform", 0.3), torch.tensor(0.5, dtype=torch.float64)
    _, gx, gd = run(x, decay, noise, mode, hard=hard)
    _, gx0, gd0 = run(x, decay, noise, mode, hard=hard, use_native=False)
    assert torch.isfinite(gd) and gd == gd0, (gd, gd0)
    torch.testing.assert_close(gx, gx0, equal_nan=True)


@needs_native
@pytest.mark.parametrize("family", FAMILIES)
def test_float32_cdf_pdf_error(family: str) -> None:
    """T = 1 exposes the kernel's CDF (expected mode) and σ·PDF (its gradient) at z = (x − θ)/σ."""
    sigma = 0.5
    noise = get_noise(family, sigma)
    x = (1.0 + sigma * torch.linspace(-9, 9, 200_001, dtype=torch.float64)).float().unsqueeze(0)
    y, gx, _ = run(x, 0.5, noise, "expected")
    z = x.double() - 1.0  # exact: |x − θ| < 2θ so no rounding
    cdf_err = (y.double() - noise.cdf(z)).abs().max().item()
    pdf_err = (gx.double() * sigma - noise.pdf(z) * sigma).abs().max().item()
    assert cdf_err <= 1.5e-7 and pdf_err <= 1.5e-7, (cdf_err, pdf_err)  # measured ≤ 1.25e-7


@needs_native
@pytest.mark.parametrize("isa", native._C.supported_isas() if native.is_available() else [])
def test_far_tails_are_exact_so_a_mask_never_fires(isa: str) -> None:
    # cdf is exactly 0 far below threshold (a −inf input is a mask: not even a uniform draw of 0 may
    # fire it) and exactly 1 far above, as on the torch path, for every family and instruction set; at
    # 50σ below, where float32 still holds a logistic tail of 2e-22, the kernel agrees with torch.
    before = native.isa()
    x = torch.tensor([[-math.inf, -1e4, 1e4, math.inf, 1.0 - 50 * 0.4, 1.0 + 50 * 0.4]])
    try:
        native._C.set_isa(isa)
        for family in FAMILIES:
            noise = get_noise(family, 0.4)
            for dtype in (torch.float32, torch.float64):
                y, _, _ = run(x.to(dtype), 0.5, noise, "expected")
                assert y[0, :4].tolist() == [0.0, 0.0, 1.0, 1.0], (family, dtype, y.tolist())
                ref, _, _ = run(x.to(dtype), 0.5, noise, "expected", use_native=False)
                torch.testing.assert_close(y, ref, rtol=1e-6, atol=0)
    finally:
        native._C.set_isa(before)


def saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@needs_native
@pytest.mark.parametrize(("mode", "limit"), [("heaviside", 1.0), ("expected", 1.0), ("bernoulli", 1.04)])
def test_saved_memory(mode: str, limit: float) -> None:
    x = torch.randn(4, 8, 1024, requires_grad=True)
    nbytes = saved_bytes(lambda: lif_multistep(x, LIFParameters(0.5, 1.0, True, False), Gaussian(0.3), mode))
    assert nbytes <= limit * x.nbytes + 16  # + the 0-dim decay and random-key tensors (8 bytes each)


class _SubclassedGaussian(Gaussian):  # not registered (no `name` of its own): a stand-in 5th family
    pass


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_builtin_family_and_mode_runs_natively(dtype: torch.dtype) -> None:
    x = torch.randn(3, 2, 50, dtype=dtype)
    for family, mode in itertools.product(FAMILY_IDS, ("heaviside", "expected", "bernoulli")):
        assert native.supports(x, family(0.3), mode), (family, mode)


def test_fallbacks() -> None:
    x = torch.randn(3, 2, 50, dtype=torch.float64)
    custom = _SubclassedGaussian(0.3)
    assert not native.supports(x, custom, "expected")
    assert not native.supports(x.to(torch.bfloat16), Gaussian(0.3), "expected")
    with native.enabled(False):
        assert not native.is_enabled() and not native.supports(x, Gaussian(0.3), "expected")
    params = LIFParameters(0.5, 1.0, True, False)
    y_custom = lif_multistep(x, params, custom, "expected")  # torch path, same math
    torch.testing.assert_close(y_custom, lif_multistep(x, params, Gaussian(0.3), "expected"))
    y16 = lif_multistep(x.to(torch.bfloat16), params, Gaussian(0.3), "heaviside")
    assert y16.dtype == torch.bfloat16
    xt = torch.randn(2, 50, 3).transpose(0, 2)  # non-contiguous [3, 50, 2]
    torch.testing.assert_close(
        lif_multistep(xt, params, Gaussian(0.3), "heaviside"),
        lif_multistep(xt.contiguous(), params, Gaussian(0.3), "heaviside"),
    )
    with pytest.raises(ValueError, match="valid"):
        lif_multistep(x, params, Gaussian(0.3), "poisson")


def test_env_switch_off() -> None:
    code = "from nsnn.functional import native; print(native.is_enabled())"
    env = dict(os.environ, NSNN_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_native
def test_neurons_use_native_and_train() -> None:
    """NILIF/PLIF modules run natively; PLIF's learnable decay gets the exact gradient."""
    import nsnn

    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, dtype=torch.float64) * 0.8 + 0.6
    plif = nsnn.PLIF(tau=2.0, noise="logistic", sigma=0.3).double().eval()
    plif.eval_mode = "expected"
    plif(x).sum().backward()
    g_native = plif.w.grad.clone()
    plif.w.grad = None
    with native.enabled(False):
        plif(x).sum().backward()
    assert math.isclose(g_native.item(), plif.w.grad.item(), rel_tol=1e-6, abs_tol=1e-9)


@needs_native
@pytest.mark.parametrize("neuron", ["NILIF", "PLIF"])
def test_compiles_without_graph_breaks_and_matches_eager(neuron, compiled_matches_eager):
    compiled_matches_eager(neuron, "cpu", atol=1e-6)


@needs_native
def test_compiled_graph_keeps_equal_calls_apart():
    # Two noisy layers fed the same tensor draw independent spikes; a compiled training graph must not
    # merge the two calls as a common subexpression.
    first, second = nsnn.NILIF(), nsnn.NILIF()
    x = torch.full((2, 4, 1000), 1.0, requires_grad=True)

    def both(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return first(x), second(x)

    torch.manual_seed(0)
    a, b = torch.compile(both, fullgraph=True)(x)
    assert (a != b).float().mean() > 0.3  # P(differ) = 2·p·(1 − p) = 0.5 at p = ½


@pytest.mark.parametrize("use_native", [pytest.param(True, marks=needs_native), False])
def test_transforms_the_op_lacks_raise_and_lazy_negation_is_resolved(use_native: bool) -> None:
    from torch.autograd import forward_ad

    neuron = nsnn.NILIF(eval_mode="expected").eval()
    x = torch.rand(4, 2, 8) * 3
    # forward-mode AD has no rule here: an error, never a primal with its tangent dropped
    with native.enabled(use_native), forward_ad.dual_level(), pytest.raises(NotImplementedError, match="jvp"):
        neuron(forward_ad.make_dual(x, torch.ones_like(x)))
    with native.enabled(use_native), pytest.raises(RuntimeError, match="functorch transforms"):
        torch.func.vmap(nsnn.LIF())(x.unsqueeze(0))
    negated = torch._neg_view(-x)  # holds -x in memory and reads as x (x.is_neg())
    assert negated.is_neg() and negated.is_contiguous()
    with native.enabled(use_native):
        assert torch.equal(nsnn.LIF()(negated), nsnn.LIF()(x))


def test_lif_multistep_refuses_integer_inputs_and_a_decay_that_is_not_0_dim() -> None:
    noise = get_noise("gaussian", 0.3)
    with pytest.raises(ValueError, match="floating-point"):
        lif_multistep(torch.ones(3, 2, dtype=torch.int64), LIFParameters(), noise, "heaviside")
    decay = torch.tensor([0.5], requires_grad=True)
    with pytest.raises(ValueError, match="0-dim"):
        lif_multistep(torch.ones(3, 2), LIFParameters(decay=decay), noise, "heaviside")


@needs_native
@pytest.mark.parametrize(("sigma", "x"), [(3e38, 1e30), (1e20, 1e20), (1e-30, 1.0)])
def test_gaussian_surrogate_at_extreme_sigma_is_the_noise_pdf(sigma: float, x: float) -> None:
    # float32 d²·(−1/2σ²) overflowed (inf·0 = NaN) or underflowed (0) for σ or |d| beyond ~1e19
    noise = get_noise("gaussian", sigma)
    xs = torch.full((2, 3), x)
    _, gx, _ = run(xs, 0.5, noise, "heaviside")
    _, gx0, _ = run(xs, 0.5, noise, "heaviside", use_native=False)
    assert torch.isfinite(gx).all() and (gx != 0).any()  # σ = 1e-30: pdf(0) = 4e29 at h = θ
    torch.testing.assert_close(gx, gx0, rtol=1e-5, atol=0)
