// Shared declarations of the fused multi-step LIF kernels of nsnn._C.
//
// The kernels (lif_kernels.h) are compiled once per instruction set (lif_isa_*.cpp) and picked at
// import time from the CPU's features; this header holds what the dispatcher (lif.cpp) and every
// ISA unit share. It includes no torch header, so the ISA units compile in seconds.
//
// Data layout: every tensor is a contiguous [T, N] block (N = neurons per step). Work is split into
// chunks of neurons whose size depends on N only (chunk_size), so results never depend on the number
// of threads. Bernoulli spikes are saved as bits, one row of ceil(N / 8) bytes per time step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "nsnn._C packs spike bits assuming a little-endian CPU; the pure-torch path is used elsewhere"
#endif

namespace nsnn_native {

// Integer ids shared with nsnn/functional/kernel_spec.py (FAMILY_IDS, MODE_IDS).
enum Family : int { kGaussian = 0, kLogistic = 1, kTriangular = 2, kUniform = 3, kNumFamilies = 4 };
enum Mode : int { kHeaviside = 0, kBernoulli = 1, kExpected = 2, kNumModes = 3 };

// Largest chunk of neurons one task walks through time (its membrane lives in a per-thread buffer).
constexpr int64_t kMaxChunk = 8192;

struct LifArgs {
  int64_t T;          // time steps
  int64_t N;          // neurons per step
  int64_t row_bytes;  // bytes of one time step of packed spike bits, ceil(N / 8)
  double beta;        // membrane retention
  double theta;       // threshold
  double inv_sigma;   // 1 / noise scale
  uint64_t key;       // counter-based RNG key (bernoulli)
  int family;         // Family
  int mode;           // Mode
  bool hard;          // hard (to 0) or soft (subtract) reset
  bool detach;        // no gradient through the reset's spike
  bool want_decay;    // accumulate dL/dbeta
  bool screen;        // bernoulli: decide from the family's Screen where it is sure (same spikes)
};

// Kernels for chunk [i0, i1) of the neurons; i0 is a multiple of 64.
template <typename S>
using ForwardFn = void (*)(const LifArgs&, const S* x, S* out, uint8_t* bits, int64_t i0, int64_t i1);
template <typename S>
using BackwardFn = void (*)(const LifArgs&, const S* grad_out, const S* x, const uint8_t* bits, S* grad_x,
                            int64_t i0, int64_t i1, double* decay_partial);

struct KernelSet {
  const char* name;
  ForwardFn<float> forward_f32;
  BackwardFn<float> backward_f32;
  ForwardFn<double> forward_f64;    // only the generic set has double kernels (libm-bound anyway)
  BackwardFn<double> backward_f64;
};

// Each returns nullptr when its instruction set was not compiled in.
const KernelSet* kernels_generic();
const KernelSet* kernels_avx2();
const KernelSet* kernels_avx512();

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Neurons per chunk: about N / 16 rounded up to a multiple of 64, within [64, kMaxChunk] (long rows for the
// prefetchers, yet 16 chunks for many-core CPUs on mid-sized layers).
inline int64_t chunk_size(int64_t n) {
  int64_t c = ceil_div(ceil_div(n, 16), 64) * 64;
  return c < 64 ? 64 : (c > kMaxChunk ? kMaxChunk : c);
}

}  // namespace nsnn_native
