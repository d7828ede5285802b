"""Noise families: CDF/PDF consistency, sampling, numerical stability, validation, extensibility.

The generic checks run over every registered family (:func:`list_noises` at collection), so a family
added to nsnn/noise.py, or registered by a conftest or a plugin (``pytest -p my_family``), is checked
with no edit here; only the exact values and supports of the built-ins are specific to them.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import nsnn
from nsnn.noise import NOISES, Noise, get_noise, list_noises

BUILTINS = ["gaussian", "logistic", "triangular", "uniform"]
FAMILIES = list_noises()


def test_registry_lists_the_four_families():
    assert set(BUILTINS) <= set(FAMILIES)
    for name in BUILTINS:
        assert get_noise(name, 0.3).name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_pdf_is_derivative_of_cdf(name):
    """pdf(x) = (cdf(x + ε) − cdf(x − ε)) / 2ε on ±8σ, except within 2ε of a jump or a kink of the
    pdf (the uniform's and triangular's edges, the triangle's peak), where a central difference mixes
    the two sides: there the second difference of the pdf is O(ε), elsewhere O(ε²). Such points must
    be rare."""
    sigma, eps = 0.37, 1e-6
    noise = get_noise(name, sigma)
    x = sigma * torch.linspace(-8, 8, 4001, dtype=torch.float64)
    smooth = (noise.pdf(x + 2 * eps) - 2 * noise.pdf(x) + noise.pdf(x - 2 * eps)).abs() < 1e-8
    assert smooth.sum() >= 0.99 * len(x), f"the pdf jumps or bends at {x[~smooth].tolist()}"
    x = x[smooth]
    fd = (noise.cdf(x + eps) - noise.cdf(x - eps)) / (2 * eps)
    torch.testing.assert_close(noise.pdf(x), fd, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_cdf_is_a_symmetric_distribution_function(name):
    """The cdf rises from 0 to 1, F(x) + F(−x) = 1, and the pdf integrates to it: cdf(−30σ) plus the
    trapezoid integral of the pdf from −30σ equals the cdf all along the grid, up to 1 at +30σ."""
    sigma = 0.5
    noise = get_noise(name, sigma)
    x = sigma * torch.linspace(-30, 30, 600_001, dtype=torch.float64)
    c = noise.cdf(x)
    assert torch.all(c[1:] >= c[:-1]) and (c >= 0).all() and (c <= 1).all()
    assert noise.cdf(torch.tensor(-1e300, dtype=torch.float64)) < 1e-12
    assert noise.cdf(torch.tensor(1e300, dtype=torch.float64)) > 1 - 1e-12
    torch.testing.assert_close(c + noise.cdf(-x), torch.ones_like(c), atol=1e-12, rtol=0)
    pdf = noise.pdf(x)
    integral = c[0] + torch.cat([pdf.new_zeros(1), torch.cumsum((pdf[1:] + pdf[:-1]) / 2 * x.diff(), 0)])
    torch.testing.assert_close(integral, c, atol=1e-4, rtol=0)
    assert c[-1] - c[0] > 1 - 1e-3  # ±30σ hold (nearly) all the mass: the pdf integrates to 1


@pytest.mark.parametrize("name", FAMILIES)
def test_samples_follow_the_cdf(name):
    """Kolmogorov–Smirnov: the empirical CDF of 200k samples is within 2.7/√n of the cdf everywhere
    (the bound a correct sampler exceeds with probability 1e-6)."""
    noise = get_noise(name, 0.3)
    g = torch.Generator().manual_seed(1)
    n = 200_000
    s = noise.sample((n,), generator=g, dtype=torch.float64)
    assert s.shape == (n,) and s.dtype == torch.float64 and torch.isfinite(s).all()
    c = noise.cdf(s.sort().values)
    steps = torch.arange(n + 1, dtype=torch.float64) / n
    ks = torch.maximum((steps[1:] - c).abs(), (c - steps[:-1]).abs()).max().item()
    assert ks <= math.sqrt(math.log(2 / 1e-6) / (2 * n)), ks


@pytest.mark.parametrize("name", FAMILIES)
def test_sigma_scales_cdf_pdf_and_samples(name):
    """F_σ(σz) = F_1(z), σ·f_σ(σz) = f_1(z), and samples drawn at σ are σ times those drawn at 1."""
    z = torch.linspace(-6, 6, 1201, dtype=torch.float64)
    unit = get_noise(name, 1.0)
    draws = unit.sample((1000,), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sigma in (0.05, 0.3, 4.0):
        noise = get_noise(name, sigma)
        torch.testing.assert_close(noise.cdf(sigma * z), unit.cdf(z), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(sigma * noise.pdf(sigma * z), unit.pdf(z), atol=1e-12, rtol=1e-12)
        scaled = noise.sample((1000,), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        torch.testing.assert_close(scaled, sigma * draws, atol=0, rtol=1e-12)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_families_take_their_known_values(name):
    """Exact values of each built-in's CDF and PDF (the module table) at z = −1.5, −0.5, 0, 0.5, 1.5,
    and the bounded supports of triangular and uniform: nothing beyond ±σ."""
    sigma = 0.4
    z = torch.tensor([-1.5, -0.5, 0.0, 0.5, 1.5], dtype=torch.float64)
    phi = [0.5 * math.erfc(v / math.sqrt(2)) for v in (1.5, 0.5, 0.0, -0.5, -1.5)]
    sig = [1 / (1 + math.exp(-v)) for v in z.tolist()]
    cdf, pdf = {
        "gaussian": (phi, [math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in z.tolist()]),
        "logistic": (sig, [s * (1 - s) for s in sig]),
        "triangular": ([0.0, 0.125, 0.5, 0.875, 1.0], [0.0, 0.5, 1.0, 0.5, 0.0]),
        "uniform": ([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.5, 0.5, 0.5, 0.0]),
    }[name]
    noise = get_noise(name, sigma)
    torch.testing.assert_close(
        noise.cdf(sigma * z), torch.tensor(cdf, dtype=torch.float64), atol=1e-15, rtol=1e-14
    )
    torch.testing.assert_close(
        sigma * noise.pdf(sigma * z), torch.tensor(pdf, dtype=torch.float64), atol=1e-15, rtol=1e-14
    )
    if name in ("triangular", "uniform"):
        s = noise.sample((100_000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert s.abs().max() <= sigma


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_precision_samples_follow_the_cdf_into_the_tails(name: str, dtype: torch.dtype):
    """Empirical CDF of a large bf16/fp16 sample vs the family's CDF, from the 1e-4 to the 1 − 1e-4
    quantile: within 5 binomial standard deviations, plus the mass the cast to ``dtype`` can move
    across ``q`` (values within a relative half-ulp ``u`` of it)."""
    noise = get_noise(name, 0.3)
    n = 1 << 21
    s = noise.sample((n,), generator=torch.Generator().manual_seed(2), dtype=dtype)
    assert s.shape == (n,) and s.dtype == dtype and torch.isfinite(s).all()
    s = s.double()
    u = torch.finfo(dtype).eps / 2
    for p in (1e-4, 1e-3, 0.02, 0.2, 0.5, 0.8, 0.98, 0.999, 1 - 1e-4):
        q = noise.sigma * noise._icdf(torch.tensor(p, dtype=torch.float64)).item()
        # a sample x lands at or below q after rounding only if x <= q·(1 + 2u) (q > 0) or q·(1 − 2u) (q < 0)
        lo, hi = (noise.cdf(torch.tensor(q * (1 + k * 2 * u), dtype=torch.float64)).item() for k in (-1, 1))
        lo, hi = min(lo, hi), max(lo, hi)
        freq = (s <= q).double().mean().item()
        binomial = 5 * math.sqrt(p * (1 - p) / n) + 1 / n
        assert lo - binomial <= freq <= hi + binomial, (p, q, freq, lo, hi)


def test_sample_seeded_device_dtype():
    noise = get_noise("logistic", 0.2)
    a = noise.sample((3, 4), generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    b = noise.sample((3, 4), generator=torch.Generator().manual_seed(5), dtype=torch.bfloat16)
    assert a.dtype == torch.bfloat16 and a.device.type == "cpu"
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_for_any_finite_input(name, dtype):
    noise = get_noise(name, 0.04)
    big = torch.finfo(dtype).max
    x = torch.tensor([-big, -1e4, -50.0, -1.0, 0.0, 1e-3, 1.0, 50.0, 1e4, big], dtype=dtype)
    c, p = noise.cdf(x), noise.pdf(x)
    assert c.dtype == dtype and p.dtype == dtype
    assert torch.isfinite(c).all() and torch.isfinite(p).all()
    assert (c >= 0).all() and (c <= 1).all() and (p >= 0).all()


def test_integer_input_gives_float_probabilities():
    noise = get_noise("gaussian", 0.3)
    c, p = noise.cdf(torch.tensor([0, 1])), noise.pdf(torch.tensor([False, True]))
    assert c.dtype == torch.float32 and p.dtype == torch.float32
    torch.testing.assert_close(c, noise.cdf(torch.tensor([0.0, 1.0])))
    torch.testing.assert_close(p, noise.pdf(torch.tensor([0.0, 1.0])))


def test_logistic_backward_does_not_overflow():
    # the reference computed exp(-z)/(1+exp(-z))^2, which is NaN for very negative z
    p = get_noise("logistic", 0.04).pdf(torch.tensor([-100.0, -10.0, 10.0, 100.0]))
    assert torch.isfinite(p).all() and (p >= 0).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), 1e-40])
def test_bad_sigma_raises(bad):
    with pytest.raises(ValueError, match="valid"):
        get_noise("gaussian", bad)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_smallest_sigma_keeps_every_formula_finite_in_float32(family):
    sigma = torch.finfo(torch.float32).tiny
    noise = get_noise(family, sigma)
    x = torch.tensor([0.0, 1e-38, -1e-38, 1.0, -1.0, 3e38, -3e38])
    assert torch.isfinite(noise.cdf(x)).all() and torch.isfinite(noise.pdf(x)).all()
    peak = noise._pdf(torch.zeros(1, dtype=torch.float64)).item()  # f(0), standardised
    assert noise.pdf(torch.zeros(1)).item() * sigma == pytest.approx(peak, rel=1e-6)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"valid choices: .*gaussian.*logistic.*triangular.*uniform"):
        get_noise("cauchyish", 0.3)


def test_a_fifth_family_is_one_class():
    class Laplace(Noise):
        name = "Test-Laplace"  # names are looked up case-insensitively

        @staticmethod
        def _cdf(z):
            return torch.where(z < 0, 0.5 * torch.exp(z), 1 - 0.5 * torch.exp(-z))

        @staticmethod
        def _pdf(z):
            return 0.5 * torch.exp(-z.abs())

        @staticmethod
        def _icdf(p):
            return torch.where(p < 0.5, torch.log(2 * p), -torch.log(2 * (1 - p)))

    try:
        noise = get_noise("Test-Laplace", 0.3)
        assert isinstance(noise, Laplace) and isinstance(get_noise("test-laplace", 0.3), Laplace)
        neuron = nsnn.NILIF(noise="test-laplace", sigma=0.3)
        n = 40_000
        x = torch.full((1, n), 0.9, requires_grad=True)
        s = neuron(x)
        # one step from rest: P(spike) = F(0.9 - 1.0); gradient = f(0.9 - 1.0)
        p = noise.cdf(torch.tensor(-0.1)).item()
        assert abs(s.mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
        s.sum().backward()
        torch.testing.assert_close(x.grad, noise.pdf(torch.full((1, n), -0.1)))
        lif = nsnn.LIF(surrogate="test-laplace", sigma=0.3)
        assert lif.noise == noise
    finally:
        NOISES.pop("test-laplace", None)


def test_a_family_that_takes_a_builtin_name_warns_and_an_abstract_one_is_not_registered():
    builtin = NOISES["gaussian"]

    def define_gaussian() -> type[Noise]:
        class Impostor(Noise):
            name = "gaussian"
            _cdf, _pdf, _icdf = builtin._cdf, builtin._pdf, builtin._icdf

        return Impostor

    try:
        with pytest.warns(UserWarning, match="replaces nsnn.noise.Gaussian"):
            define_gaussian()
        assert NOISES["gaussian"].__qualname__.endswith("Impostor")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            define_gaussian()  # the same class defined again (a re-run notebook cell): no warning
    finally:
        NOISES["gaussian"] = builtin

    class Unfinished(Noise):  # no _cdf/_pdf/_icdf yet: an abstract base for other families
        name = "test-unfinished"

    assert "test-unfinished" not in NOISES


def test_equality_depends_on_sigma():
    assert get_noise("gaussian", 0.3) == get_noise("gaussian", 0.3)
    assert get_noise("gaussian", 0.3) != get_noise("gaussian", 0.5)
    assert get_noise("gaussian", 0.3) != get_noise("logistic", 0.3)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_cdf_and_pdf_are_computed_in_float32(name: str, dtype: torch.dtype):
    noise = get_noise(name, 0.3)
    x = torch.linspace(-1, 1, 201).to(dtype)
    assert torch.equal(noise.cdf(x), noise.cdf(x.float()).to(dtype))
    assert torch.equal(noise.pdf(x), noise.pdf(x.float()).to(dtype))


def test_get_noise_takes_a_family_class():
    from nsnn.noise import Gaussian, Uniform

    assert get_noise(Gaussian, 0.2) == Gaussian(0.2) and get_noise(Uniform, 0.5).sigma == 0.5
    with pytest.raises(ValueError, match=r"valid choices: .*gaussian"):
        get_noise(Noise)  # abstract: no family
    with pytest.raises(ValueError, match="noise 'gaussian'"):
        get_noise(Gaussian, -1.0)


def test_a_noise_name_in_any_case_is_taken_everywhere_and_recorded_lower_case():
    # get_noise and the neurons took "GAUSSIAN", --noise GAUSSIAN was refused, and create() recorded
    # "Gaussian" in model.config, a spelling TrainConfig's check (the CLI's) then refused.
    from nsnn.models import NeuronSpec, create
    from nsnn.training import TrainConfig, build_train_parser, config_from_args

    assert create("mnist_mlp", hidden=8, noise="Gaussian").config["kwargs"]["noise"] == "gaussian"
    assert NeuronSpec(noise="LOGISTIC") == NeuronSpec(noise="logistic")
    args = build_train_parser("test").parse_args(["--noise", "GAUSSIAN"])
    assert config_from_args(args).noise == "gaussian"
    assert TrainConfig(noise="Uniform").to_dict()["noise"] == "uniform"
