// nsnn._C: fused multi-step LIF forward/backward on CPU (float32, float64).
//
// Python binds these through nsnn/functional/native.py, which owns the autograd node; the math is
// documented in lif_kernels.h and nsnn/functional/fused.py. Work is split into chunks of neurons
// (size from N only) shared among at::parallel_for workers, so results do not depend on the thread
// count or schedule; the ∂L/∂β partial sums are reduced in chunk order for the same reason.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/utils/pybind.h>  // pybind11 + the at::Tensor caster (lighter than torch/extension.h)

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "lif_common.h"

namespace nsnn_native {
namespace {

// Kernel sets usable here, best last: compiled in and supported by this CPU.
std::vector<const KernelSet*> usable_kernels() {
  std::vector<const KernelSet*> sets{kernels_generic()};
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // everything the AVX2 unit is compiled for (lif_isa_avx2.cpp's target), not only AVX2 and FMA: a
  // virtual CPU may report AVX2 without BMI1/BMI2, whose instructions the compiler emits there
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                    __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  if (avx2 && kernels_avx2() != nullptr) sets.push_back(kernels_avx2());
  if (avx512 && kernels_avx512() != nullptr) sets.push_back(kernels_avx512());
#endif
  return sets;
}

const KernelSet*& active_kernels() {
  static const KernelSet* active = usable_kernels().back();
  return active;
}

std::string active_isa() { return active_kernels()->name; }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const KernelSet* k : usable_kernels()) names.emplace_back(k->name);
  return names;
}

void set_isa(const std::string& name) {
  std::string valid;
  for (const KernelSet* k : usable_kernels()) {
    if (name == k->name) {
      active_kernels() = k;
      return;
    }
    valid += (valid.empty() ? "" : ", ") + std::string(k->name);
  }
  TORCH_CHECK_VALUE(false, "isa '", name, "' is not available on this CPU/build; valid: ", valid);
}

// Whether bernoulli draws are screened (lif_kernels.h, Screen); off only to check that the spikes
// are those of the exact decision.
bool& screening() {
  static bool on = true;
  return on;
}

bool get_screen() { return screening(); }

void set_screen(bool on) { screening() = on; }

uint64_t mix_seed(int64_t seed) {  // SplitMix64 finaliser: nearby seeds give unrelated keys
  uint64_t z = static_cast<uint64_t>(seed) + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

LifArgs make_args(const at::Tensor& x, double beta, double theta, double sigma, int64_t family, int64_t mode,
                  bool hard) {
  TORCH_CHECK(x.device().is_cpu(), "nsnn._C runs on CPU tensors; got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "nsnn._C supports float32 and float64; got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous(), "nsnn._C expects contiguous tensors");
  TORCH_CHECK(x.dim() >= 1, "nsnn._C expects a [T, ...] tensor");
  TORCH_CHECK_VALUE(family >= 0 && family < kNumFamilies, "noise family id must be in [0, ", kNumFamilies,
                    "); got ", family);
  TORCH_CHECK_VALUE(mode >= 0 && mode < kNumModes, "fire mode id must be in [0, ", kNumModes, "); got ",
                    mode);
  TORCH_CHECK_VALUE(sigma > 0 && std::isfinite(sigma), "sigma must be finite and > 0; got ", sigma);
  LifArgs a{};
  a.T = x.size(0);
  a.N = a.T > 0 ? x.numel() / a.T : 0;
  a.row_bytes = ceil_div(a.N, 8);
  a.beta = beta;
  a.theta = theta;
  a.inv_sigma = 1.0 / sigma;
  a.family = static_cast<int>(family);
  a.mode = static_cast<int>(mode);
  a.hard = hard;
  a.screen = screening();
  return a;
}

// Runs body(c, i0, i1) over the fixed chunks c = [i0, i1) of the n neurons. Workers take chunks from
// a shared counter (dynamic scheduling), so a thread descheduled on a busy machine delays the call by
// one chunk rather than by half the work; small layers (< ~64k elements per worker) run inline.
template <typename Body>
void for_chunks(int64_t n, int64_t steps, const Body& body) {
  const int64_t ch = chunk_size(n), chunks = ceil_div(n, ch);
  const int64_t min_chunks = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, ch * steps));
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), chunks / min_chunks);
  auto run = [&](int64_t c) { body(c, c * ch, std::min(n, (c + 1) * ch)); };
  if (workers <= 1 || at::in_parallel_region()) {
    for (int64_t c = 0; c < chunks; ++c) run(c);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) run(c);
  });
}

// Returns [spikes, bits or None]: the packed spikes only for a bernoulli call with save (all that
// backward needs besides x itself).
std::vector<at::Tensor> forward(const at::Tensor& x, double beta, double theta, double sigma, int64_t family,
                                int64_t mode, bool hard, int64_t seed, bool save) {
  LifArgs a = make_args(x, beta, theta, sigma, family, mode, hard);
  a.key = mix_seed(seed);
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor bits;
  if (save && mode == kBernoulli) bits = at::empty({a.T, a.row_bytes}, x.options().dtype(at::kByte));
  if (x.numel() == 0) return {out, bits};
  uint8_t* bp = bits.defined() ? bits.data_ptr<uint8_t>() : nullptr;
  if (x.scalar_type() == at::kFloat) {
    const ForwardFn<float> fn = active_kernels()->forward_f32;
    const float* xp = x.data_ptr<float>();
    float* op = out.data_ptr<float>();
    for_chunks(a.N, a.T, [&](int64_t, int64_t i0, int64_t i1) { fn(a, xp, op, bp, i0, i1); });
  } else {
    const ForwardFn<double> fn = kernels_generic()->forward_f64;
    const double* xp = x.data_ptr<double>();
    double* op = out.data_ptr<double>();
    for_chunks(a.N, a.T, [&](int64_t, int64_t i0, int64_t i1) { fn(a, xp, op, bp, i0, i1); });
  }
  return {out, bits};
}

// Returns [grad_x, grad_beta (0-dim float64) or None]. x is the forward's input: the membrane is
// replayed from it (and the bits) chunk by chunk.
std::vector<at::Tensor> backward(const at::Tensor& grad_out, const at::Tensor& x,
                                 const std::optional<at::Tensor>& bits, double beta, double theta,
                                 double sigma, int64_t family, int64_t mode, bool hard, bool detach,
                                 bool want_decay) {
  LifArgs a = make_args(x, beta, theta, sigma, family, mode, hard);
  a.detach = detach;
  a.want_decay = want_decay;
  TORCH_CHECK(grad_out.sizes() == x.sizes() && grad_out.scalar_type() == x.scalar_type() &&
                  grad_out.device() == x.device() && grad_out.is_contiguous(),
              "grad_out must be a contiguous tensor like x");
  const uint8_t* bp = nullptr;
  if (mode == kBernoulli) {
    TORCH_CHECK(bits.has_value() && bits->scalar_type() == at::kByte && bits->is_contiguous() &&
                    bits->numel() == a.T * a.row_bytes,
                "bernoulli backward needs the packed spikes saved by forward");
    bp = bits->data_ptr<uint8_t>();
  }
  at::Tensor gx = at::empty(x.sizes(), x.options());
  at::Tensor gdecay;
  if (x.numel() == 0) {
    if (want_decay) gdecay = at::zeros({}, x.options().dtype(at::kDouble));
    return {gx, gdecay};
  }
  std::vector<double> partial(static_cast<size_t>(ceil_div(a.N, chunk_size(a.N))), 0.0);
  if (x.scalar_type() == at::kFloat) {
    const BackwardFn<float> fn = active_kernels()->backward_f32;
    const float* gp = grad_out.data_ptr<float>();
    const float* xp = x.data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    for_chunks(a.N, a.T, [&](int64_t c, int64_t i0, int64_t i1) { fn(a, gp, xp, bp, gxp, i0, i1, &partial[c]); });
  } else {
    const BackwardFn<double> fn = kernels_generic()->backward_f64;
    const double* gp = grad_out.data_ptr<double>();
    const double* xp = x.data_ptr<double>();
    double* gxp = gx.data_ptr<double>();
    for_chunks(a.N, a.T, [&](int64_t c, int64_t i0, int64_t i1) { fn(a, gp, xp, bp, gxp, i0, i1, &partial[c]); });
  }
  if (want_decay) {
    double sum = 0.0;
    for (double p : partial) sum += p;
    gdecay = at::scalar_tensor(sum, x.options().dtype(at::kDouble));
  }
  return {gx, gdecay};
}

}  // namespace
}  // namespace nsnn_native

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nsnn fused multi-step LIF kernels for CPU (see nsnn/functional/native.py)";
  m.def("forward", &nsnn_native::forward, "LIF forward over [T, ...]: [spikes, bits | None]",
        pybind11::arg("x"), pybind11::arg("beta"), pybind11::arg("theta"), pybind11::arg("sigma"),
        pybind11::arg("family"), pybind11::arg("mode"), pybind11::arg("hard"), pybind11::arg("seed"),
        pybind11::arg("save"));
  m.def("backward", &nsnn_native::backward, "LIF backward: [grad_x, grad_beta | None]",
        pybind11::arg("grad_out"), pybind11::arg("x"), pybind11::arg("bits"), pybind11::arg("beta"),
        pybind11::arg("theta"), pybind11::arg("sigma"), pybind11::arg("family"), pybind11::arg("mode"),
        pybind11::arg("hard"), pybind11::arg("detach"), pybind11::arg("want_decay"));
  m.def("isa", &nsnn_native::active_isa, "instruction set of the float32 kernels in use");
  m.def("supported_isas", &nsnn_native::supported_isas, "instruction sets usable on this CPU");
  m.def("set_isa", &nsnn_native::set_isa, "select the float32 kernels ('generic', 'avx2', 'avx512')",
        pybind11::arg("name"));
  m.def("screen", &nsnn_native::get_screen, "whether bernoulli draws are decided by a cheap screen first");
  m.def("set_screen", &nsnn_native::set_screen,
        "screen bernoulli draws (default) or decide every draw with the exact CDF (same spikes; for tests)",
        pybind11::arg("on"));
}
