// Fused multi-step LIF kernels, written as plain loops that the compiler auto-vectorizes. Intrinsics
// only where that measured faster: the float32 bernoulli forward row and parts of the backward, on AVX2
// (lif_avx2.h) and on AVX-512 (lif_avx512.h, which also packs spike bits through mask registers), with
// the same results bit for bit.
//
// Included by each lif_isa_*.cpp inside namespace nsnn_native::NSNN_ISA, after lif_common.h and
// under that unit's `#pragma GCC target`, so one source yields baseline/AVX2/AVX-512 variants. The
// recurrence and its exact reverse pass are those of nsnn/functional/fused.py:
//
//   forward   h_t = β·u_{t−1} + x_t,  s_t = fire(h_t − θ),  u_t = h_t·(1 − s_t) | h_t − θ·s_t
//   backward  ∂L/∂h_t = ∂L/∂u_t·∂u_t/∂h_t + (∂L/∂s_t + ∂L/∂u_t·∂u_t/∂s_t)·pdf(h_t − θ)
//             ∂L/∂u_{t−1} = β·∂L/∂h_t,   ∂L/∂β = Σ_t ∂L/∂h_t·u_{t−1}
//
// One task owns a chunk of neurons and walks all T steps with the membrane (forward) or ∂L/∂u
// (backward) in a per-thread buffer (scratch), so each element of x, h and the gradients is touched
// once.
//
// float32 math uses the approximations below (max abs error of the CDF and of σ·PDF ≤ 1.3e-7
// against float64, checked in tests/test_native.py); float64 uses libm.

#ifndef NSNN_ISA
#error "define NSNN_ISA (the namespace of this instruction-set variant) before including lif_kernels.h"
#endif

namespace nsnn_native {
namespace NSNN_ISA {

// ---------------------------------------------------------------------------------------------
// Elementary functions. Branch-free (selects only), so loops calling them vectorize.

template <typename S>
struct Fn;

template <>
struct Fn<float> {
  // e^x·2^(B−127) for x in [−87, 0] (no range check): Cody–Waite reduction x = n·ln2 + r, e^r =
  // 1 + r + r²·Q(r) with Q of degree 4 (minimax, relative error 3e-9; about 1 ulp in float32),
  // 2^n built from the bits of the rounding 1.5·2^23 + n (which holds n in its low mantissa bits).
  // B = 126 halves the result.
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kRound = 12582912.0f;  // 1.5·2^23
  static constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  static constexpr float kExpQ[5] = {1.3814597199e-3f, 8.3687098732e-3f, 4.1668387650e-2f, 1.6666520689e-1f,
                                     4.9999993450e-1f};  // Q(r), highest power first
  template <int B>
  static inline float exp_core(float x) {
    const float t = x * kLog2e + kRound;
    const float n = t - kRound;
    float r = x - n * kLn2Hi;
    r = r - n * kLn2Lo;
    float y = kExpQ[0];
    for (int i = 1; i < 5; ++i) y = y * r + kExpQ[i];
    y = y * (r * r) + r + 1.0f;
    int32_t tb;
    std::memcpy(&tb, &t, sizeof(tb));
    const int32_t bits = (tb + (B - 0x4B400000)) << 23;  // 0x4B400000: the bits of kRound
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return y * scale;
  }
  // exp(x) for x ≤ 0, flushed to exactly 0 below −87 (where it is 1.6e-38): a pdf is 0 at h = ±inf,
  // as the backward's choice of the reset term needs (see backward_chunk). NaN stays NaN.
  static inline float exp_nonpos(float x) {
    const float e = exp_core<127>(x < -87.0f ? -87.0f : x);
    return x < -87.0f ? 0.0f : e;
  }

  // Standard normal CDF Φ(z), given the sign source z and w = |z|/√2: 1 − Φ(|z|) = ½·erfc(w) =
  // ½·exp(−w² + L(w)) with L(w) = ln(erfc(w)·e^{w²}) = w·P(w) smooth; P has degree 10 (least-squares
  // /minimax fit of L on [0, 4] against 30-digit erfc, max error 2.5e-8). Beyond w = 4, where
  // ½·erfc(4) < 8e-9, the tail is exactly 0 (so a −inf mask never fires, even on a uniform draw of
  // 0); the clamp keeps the exponent in range. One exp, no division, no branch; NaN stays NaN.
  static inline float gauss_cdf(float z, float w) {
    const float wc = w > 4.0f ? 4.0f : w;
    float p = 7.998516652e-08f;
    p = p * wc - 2.100212792e-06f;
    p = p * wc + 2.452004460e-05f;
    p = p * wc - 1.662185438e-04f;
    p = p * wc + 7.019869135e-04f;
    p = p * wc - 1.680768988e-03f;
    p = p * wc + 7.430890437e-05f;
    p = p * wc + 1.926706964e-02f;
    p = p * wc - 1.028389780e-01f;
    p = p * wc + 3.633948685e-01f;
    p = p * wc - 1.128380253e+00f;
    const float tail = exp_core<126>(wc * p - wc * wc);
    const float half_erfc = w > 4.0f ? 0.0f : tail;
    return z < 0.0f ? half_erfc : 1.0f - half_erfc;
  }
};

template <>
struct Fn<double> {
  static inline double exp_nonpos(double x) { return std::exp(x); }
  static inline double gauss_cdf(double z, double w) { return 0.5 * std::erfc(z < 0.0 ? w : -w); }
};

// Constants of one call, derived from σ in double precision, so that the families below work on
// d = h − θ directly with as few multiplications per element as possible.
template <typename S>
struct Scale {
  explicit Scale(double inv_sigma)
      : inv(static_cast<S>(inv_sigma)),
        half_inv(static_cast<S>(0.5 * inv_sigma)),
        inv_sqrt2(static_cast<S>(0.70710678118654752 * inv_sigma)),
        gauss_peak(static_cast<S>(0.39894228040143268 * inv_sigma)),
        sigma(static_cast<S>(1.0 / inv_sigma)) {}
  S inv;         // 1/σ
  S half_inv;    // 1/(2σ)
  S inv_sqrt2;   // 1/(σ√2)
  S gauss_peak;  // 1/(σ√(2π))
  S sigma;       // σ
};

// The noise families of nsnn/noise.py at d = h − θ: cdf(d) = F(d/σ), pdf(d) = f(d/σ)/σ (the
// surrogate gradient), both(d) = both. Same formulas as the Python classes.
template <typename S, int F>
struct Noise;

template <typename S>
struct Noise<S, kGaussian> {
  static inline S cdf(S d, const Scale<S>& k) { return Fn<S>::gauss_cdf(d, std::fabs(d) * k.inv_sqrt2); }
  // exp(−z²) with z = d/(σ√2) scaled first: d² alone overflows for |d| > 1.8e19 in float32 (and 1/σ²
  // underflows for σ > 1.8e19), which gave inf·0 = NaN or 0 where the pdf is ≈ 0.24/σ.
  static inline S pdf(S d, const Scale<S>& k) {
    const S z = d * k.inv_sqrt2;
    return Fn<S>::exp_nonpos(-(z * z)) * k.gauss_peak;
  }
  static inline void both(S d, const Scale<S>& k, S& c, S& p) {
    c = cdf(d, k);
    p = pdf(d, k);
  }
};

template <typename S>
struct Noise<S, kLogistic> {  // sigmoid, written with e = exp(−|z|) so it never overflows
  static inline void both(S d, const Scale<S>& k, S& c, S& p) {
    const S e = Fn<S>::exp_nonpos(-std::fabs(d) * k.inv);
    // A true division: the divider overlaps the FMAs, where a reciprocal by Newton steps competed
    // with them (the logistic backward was 3-17 % slower that way, AVX2 and AVX-512).
    const S r = S(1) / (S(1) + e);
    c = d >= S(0) ? r : e * r;
    p = e * r * (r * k.inv);
  }
  static inline S cdf(S d, const Scale<S>& k) {
    S c, p;
    both(d, k, c, p);
    return c;
  }
  static inline S pdf(S d, const Scale<S>& k) {
    S c, p;
    both(d, k, c, p);
    return p;
  }
};

template <typename S>
struct Noise<S, kTriangular> {
  static inline S cdf(S d, const Scale<S>& k) {
    S zc = d * k.inv;
    zc = zc < S(-1) ? S(-1) : zc;
    zc = zc > S(1) ? S(1) : zc;
    const S a = S(1) + zc, b = S(1) - zc;
    return zc < S(0) ? S(0.5) * (a * a) : S(1) - S(0.5) * (b * b);
  }
  static inline S pdf(S d, const Scale<S>& k) {
    const S v = S(1) - std::fabs(d) * k.inv;
    return v < S(0) ? S(0) : v * k.inv;
  }
  static inline void both(S d, const Scale<S>& k, S& c, S& p) {
    c = cdf(d, k);
    p = pdf(d, k);
  }
};

template <typename S>
struct Noise<S, kUniform> {
  static inline S cdf(S d, const Scale<S>& k) {
    S c = d * k.half_inv + S(0.5);
    c = c < S(0) ? S(0) : c;
    return c > S(1) ? S(1) : c;
  }
  static inline S pdf(S d, const Scale<S>& k) { return std::fabs(d) <= k.sigma ? k.half_inv : S(0); }
  static inline void both(S d, const Scale<S>& k, S& c, S& p) {
    c = cdf(d, k);
    p = pdf(d, k);
  }
};

// Bernoulli decision u < cdf(d) for a uniform u in [0, 1). The logistic family decides without the
// reciprocal: u < 1/(1 + e) ⇔ u·(1 + e) < 1 for d ≥ 0 and u < e/(1 + e) ⇔ u·(1 + e) < e otherwise.
template <typename S, int F>
inline bool fires(S d, S u, const Scale<S>& k) {
  if constexpr (F == kLogistic) {
    const S e = Fn<S>::exp_nonpos(-std::fabs(d) * k.inv);
    return u * (S(1) + e) < (d >= S(0) ? S(1) : e);
  } else {
    return u < Noise<S, F>::cdf(d, k);
  }
}

// A cheap screen for the bernoulli decision: Screen<S, F>::approx(d) differs from cdf(d) by less
// than kBand for every d (NaN stays NaN), so u < approx − kBand ⇒ u < cdf and u ≥ approx + kBand ⇒
// u ≥ cdf. The forward decides every draw from the screen and evaluates cdf only in the blocks of
// neurons holding a draw inside the band (screened_step): the spikes are those of the exact decision,
// bit for bit.
// A family without a screen (kEnabled false) always decides exactly.
template <typename S, int F>
struct Screen {
  static constexpr bool kEnabled = false;
};

// Gaussian: Φ(z) ≈ ½ + z·Q(z²), z clamped to ±3.2, Q of degree 4 (minimax on [0, 3.2]); max error
// 4.17e-4 over all z (measured on a 1.2e-5 grid of [−12, 12] with float32 arithmetic, where both
// functions move by < 5e-6 between grid points; cdf itself is within 1.3e-7 of Φ), under kBand =
// 5e-4. One draw in 1,000 lies inside the band: two clamps and seven multiply-adds per draw instead
// of a degree-10 polynomial and an exp (the gaussian float32 forward is 4-15 % faster than deciding
// every draw exactly, AVX-512, 1 and 2 threads).
template <typename S>
struct Screen<S, kGaussian> {
  static constexpr bool kEnabled = true;
  static constexpr S kBand = S(5e-4);
  static constexpr S kClamp = S(3.2);
  static constexpr int kDegree = 4;
  static constexpr S kQ[kDegree + 1] = {S(1.577776129124686e-05), S(-5.400506197474897e-04),
                                        S(7.731569930911064e-03), S(-6.304299086332321e-02),
                                        S(3.974083065986633e-01)};  // Q(z²), highest power first
  static inline S approx(S d, const Scale<S>& k) {
    S z = d * k.inv;
    z = z > kClamp ? kClamp : z;
    z = z < -kClamp ? -kClamp : z;
    const S z2 = z * z;
    S q = kQ[0];
    for (int i = 1; i <= kDegree; ++i) q = q * z2 + kQ[i];
    return S(0.5) + z * q;
  }
};

// Logistic screen, used by the AVX2 and AVX-512 rows (lif_avx2.h, lif_avx512.h; the generic row decides
// logistic draws exactly). fires<float, kLogistic> decides u·(1 + e) < (d ≥ 0 ? 1 : e) with
// e = exp(−|d|/σ) from exp_core (a degree-5 polynomial). The screen takes ê = p(f)·2^n instead
// (x = −|d|/σ clamped to −87, n = round(x·log2 e), f = x·log2 e − n in [−½, ½], p a degree-3 fit of
// 2^f): |ê/e − 1| ≤ 7.6e-5 over x in [−87, 0] (float32 arithmetic, 4M points against float64 exp).
// Since e ≤ 1 and u < 1, m = u·(1 + e) − rhs moves by at most 7.6e-5·e plus a few float32 roundings
// (< 1e-6) when ê replaces e, so |m̂| ≥ kBand = 2e-4 decides as the exact comparison does; a draw with
// |m̂| < kBand (at most 4e-4 of the draws, as m grows with u at the slope 1 + e ≥ 1) or m̂ NaN is
// decided by fires itself.
struct LogisticScreen {
  static constexpr float kBand = 2e-4f;
  static constexpr float kP[4] = {5.517166e-2f, 2.4261114e-1f, 6.9326097e-1f, 9.9992806e-1f};  // highest first
};

// ---------------------------------------------------------------------------------------------
// Uniforms for the bernoulli draws. Each forward task constructs one generator for its chunk of
// neurons [i0, i1) and asks it for one row of n words per step (fill). Chunks depend on N only
// (chunk_size), so the draws do not depend on the thread count or schedule.
//
// float32: 64 xoshiro128++ streams (Blackman & Vigna) per chunk, lane l serving neurons i0 + l + 64m
// of every step in turn; 4·32 bits of state per lane, seeded from two outputs of SplitMix64 (mix64
// of key + (c + 1)·γ) at the counters c = 2·(i0 + l) and 2·(i0 + l) + 1, distinct for every lane of
// every chunk. It needs no 64-bit multiplications: 0.13–0.18 ns per word against 0.38–0.62 for one
// mix64 per two words (AVX-512, one core), which made the float32 forward 11–21 % faster in cache
// and 4–12 % faster at [32, 16, 4096]. Top 24 bits used. float64: counter-based, the SplitMix64
// output for counter c = t·N + i, top 53 bits.

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

template <typename S>
struct Uniform;

template <>
struct Uniform<float> {
  using Word = uint32_t;
  static constexpr int64_t kLanes = 64;
  alignas(64) uint32_t s0[kLanes], s1[kLanes], s2[kLanes], s3[kLanes];

  Uniform(const LifArgs& a, int64_t i0) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint64_t c = 2 * static_cast<uint64_t>(i0 + l);
      const uint64_t z0 = mix64(a.key + (c + 1) * kGolden), z1 = mix64(a.key + (c + 2) * kGolden);
      s0[l] = static_cast<uint32_t>(z0);
      s1[l] = static_cast<uint32_t>(z0 >> 32);
      s2[l] = static_cast<uint32_t>(z1);
      s3[l] = static_cast<uint32_t>(z1 >> 32);
    }
  }
  // The next ⌈n/64⌉·64 words (w must hold them).
  void fill(int64_t n, Word* __restrict w) {
    uint32_t* __restrict a0 = s0;
    uint32_t* __restrict a1 = s1;
    uint32_t* __restrict a2 = s2;
    uint32_t* __restrict a3 = s3;
    for (int64_t b = 0; b < n; b += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        uint32_t x0 = a0[l], x1 = a1[l], x2 = a2[l], x3 = a3[l];
        const uint32_t sum = x0 + x3;
        w[b + l] = ((sum << 7) | (sum >> 25)) + x0;
        const uint32_t shifted = x1 << 9;
        x2 ^= x0;
        x3 ^= x1;
        x1 ^= x2;
        x0 ^= x3;
        x2 ^= shifted;
        x3 = (x3 << 11) | (x3 >> 21);
        a0[l] = x0;
        a1[l] = x1;
        a2[l] = x2;
        a3[l] = x3;
      }
    }
  }
  static inline float value(Word w) {  // exact multiple of 2^-24 in [0, 1)
    return static_cast<float>(static_cast<int32_t>(w >> 8)) * 5.9604644775390625e-8f;
  }
};

template <>
struct Uniform<double> {
  using Word = uint64_t;
  uint64_t next;  // counter of the chunk's first neuron at the next step
  int64_t stride;

  Uniform(const LifArgs& a, int64_t i0)
      : next(a.key + (static_cast<uint64_t>(i0) + 1) * kGolden), stride(a.N) {}
  void fill(int64_t n, Word* __restrict w) {
    for (int64_t k = 0; k < n; ++k) w[k] = mix64(next + static_cast<uint64_t>(k) * kGolden);
    next += static_cast<uint64_t>(stride) * kGolden;
  }
  static inline double value(Word w) {  // exact multiple of 2^-53 in [0, 1)
    return static_cast<double>(static_cast<int64_t>(w >> 11)) * 1.1102230246251565e-16;
  }
};

// Stand-in for the generator in the modes that draw nothing.
struct NoDraws {
  NoDraws(const LifArgs&, int64_t) {}
};

// Spike bits: byte j of a row holds spikes 8j..8j+7, spike 8j+k in bit k. With AVX-512 BW (the unit
// defines NSNN_AVX512BW) 64 spikes at a time go through a mask register (vptestmb / vpmovm2b); the
// rest 8 at a time by a multiplication that gathers bit 0 of each byte.
inline void pack_bits(uint8_t* __restrict s, int64_t n, uint8_t* __restrict dst) {
  const int64_t nb = ceil_div(n, 8);
  for (int64_t k = n; k < nb * 8; ++k) s[k] = 0;
  int64_t j = 0;
#ifdef NSNN_AVX512BW
  for (; j + 8 <= nb; j += 8) {
    const __m512i v = _mm512_loadu_si512(s + 8 * j);
    const uint64_t m = _mm512_test_epi8_mask(v, v);
    std::memcpy(dst + j, &m, 8);
  }
#endif
  for (; j < nb; ++j) {
    uint64_t v;
    std::memcpy(&v, s + 8 * j, 8);
    dst[j] = static_cast<uint8_t>((v * 0x0102040810204080ULL) >> 56);
  }
}

// Byte k of the 8 written per input byte is nonzero iff bit k is set.
inline void unpack_bits(const uint8_t* __restrict src, int64_t n, uint8_t* __restrict s) {
  const int64_t nb = ceil_div(n, 8);
  int64_t j = 0;
#ifdef NSNN_AVX512BW
  for (; j + 8 <= nb; j += 8) {
    uint64_t m;
    std::memcpy(&m, src + j, 8);
    _mm512_storeu_si512(s + 8 * j, _mm512_movm_epi8(m));
  }
#endif
  for (; j < nb; ++j) {
    const uint64_t v = (static_cast<uint64_t>(src[j]) * 0x0101010101010101ULL) & 0x8040201008040201ULL;
    std::memcpy(s + 8 * j, &v, 8);
  }
}

// ---------------------------------------------------------------------------------------------
// One step of the recurrence for neuron k: h = β·u + x, the spike s (bernoulli: given), u ← reset.

template <typename S, int F, int MODE, bool HARD>
struct Step {
  // Spike of h (the bernoulli draw is passed in as `drawn`, 0 or 1).
  static inline S spike(S h, S theta, const Scale<S>& scale, S drawn) {
    if constexpr (MODE == kHeaviside) {
      return h > theta ? S(1) : S(0);
    } else if constexpr (MODE == kExpected) {
      return Noise<S, F>::cdf(h - theta, scale);
    } else {
      return drawn;
    }
  }
  static inline S reset(S h, S theta, S s) {
    if constexpr (!HARD) {
      return h - theta * s;
    } else if constexpr (MODE == kExpected) {  // h = +inf: s = 1 and u = 0, not inf·0 = NaN
      return h == std::numeric_limits<S>::infinity() ? S(0) : h * (S(1) - s);
    } else {
      return s != S(0) ? S(0) : h;
    }
  }
  // One neuron of a replay step: h = β·u + x, then u ← reset(h, spike). Returns h.
  static inline S replay(S beta, S theta, const Scale<S>& scale, S x, S drawn, S& u) {
    const S h = beta * u + x;
    u = reset(h, theta, spike(h, theta, scale, drawn));
    return h;
  }
  // ∂L/∂h_t of one neuron from ∂L/∂s_t (go), ∂L/∂u_t (gun), its spike s and surrogate g; hr is h as the
  // hard reset's term ∂u/∂s = −h takes it (clamped in backward_chunk's CLAMP slices). ∂u/∂s = −h (hard)
  // or −θ (soft) is left out when detached or while ∂L/∂u = 0: chosen, not multiplied by 0, so that
  // h = ±inf gives no 0·inf = NaN.
  static inline S grad_h(S go, S gun, S hr, S s, S g, S theta, bool detach) {
    const S gs = (detach || gun == S(0)) ? go : go - gun * (HARD ? hr : theta);
    const S direct = HARD ? gun * (S(1) - s) : gun;
    return direct + gs * g;
  }
};

// ---------------------------------------------------------------------------------------------
// Forward over chunk [i0, i1) of the neurons, all T steps. SAVE (bernoulli): write the spike bits.
// Nothing else is saved: backward recomputes h from x and the bits. A family with a Screen decides
// each step's draws with screened_step.

constexpr int64_t kScreenBlock = 64;

// Per-thread scratch arrays, 64-byte aligned, grown on demand and kept between calls; one per element
// type, Slot and instruction set. The kernels keep their per-chunk state here rather than on the stack,
// sized to the chunk: a thread with a small stack (musl's 128 KiB) can run them. Arrays used together
// take different slots, so that no two __restrict pointers of one kernel share memory (double's kState
// is also the float64 kernels' membrane).
enum Slot : int { kState, kAux, kNext, kAcc, kReplay };

template <typename T, int SLOT>
struct Scratch {
  T* data = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(data); }
  static Scratch& mine() {
    thread_local Scratch buffer;
    return buffer;
  }
};

// At least n elements of this thread's (T, SLOT) array.
template <typename T, int SLOT>
inline T* scratch(int64_t n) {
  Scratch<T, SLOT>& buffer = Scratch<T, SLOT>::mine();
  const size_t want = static_cast<size_t>(n > 64 ? n : 64);
  if (buffer.size < want) {
    std::free(buffer.data);
    buffer.data = static_cast<T*>(std::aligned_alloc(64, (want * sizeof(T) + 63) / 64 * 64));
    buffer.size = 0;
    if (buffer.data == nullptr) throw std::bad_alloc();
    buffer.size = want;
  }
  return buffer.data;
}

// Gives this thread's (T, SLOT) array back when it holds more than `keep` elements.
template <typename T, int SLOT>
inline void trim_scratch(size_t keep) {
  Scratch<T, SLOT>& buffer = Scratch<T, SLOT>::mine();
  if (buffer.size > keep) {
    std::free(buffer.data);
    buffer.data = nullptr;
    buffer.size = 0;
  }
}

inline int64_t round_up(int64_t n, int64_t to) { return ceil_div(n, to) * to; }

// One step of a screened bernoulli row, block by block (kScreenBlock neurons): one vectorized pass
// decides every draw from the screen (a draw inside the band gets no spike for now) and ORs together
// whether any draw of the block fell inside the band; only such a block (about 6 % of them, one draw
// in 1,000 lying in the band) is passed over again with the exact decision for every draw that got
// no spike. A draw the screen was sure of gets the same answer from the exact decision, so the
// spikes are those of the exact decision for every draw. h is u itself after a hard reset without
// spike, else kept in hs (soft reset only). sb receives the row's spikes (0/1 bytes). Against one
// pass writing a three-valued code per draw and a second pass over the codes, this made the gaussian
// forward 3-10 % faster (A/B, AVX-512, 2 threads); blocks of 32 were 30-40 % slower than 64.
template <typename S, int F, bool HARD>
inline void screened_step(int64_t n, S beta, S theta, const Scale<S>& scale, const S* __restrict xt,
                          const typename Uniform<S>::Word* __restrict rw, S* __restrict u,
                          uint8_t* __restrict sb, S* __restrict ot, S* __restrict hs) {
  using Sc = Screen<S, F>;
  using St = Step<S, F, kBernoulli, HARD>;
  // The screen over [b, b + len): whether any draw fell inside the band. Called with the constant
  // kScreenBlock for every whole block, so that loop has a fixed trip count.
  auto screen = [&](int64_t b, int64_t len) __attribute__((always_inline)) {
    int unsure = 0;
    for (int64_t k = b; k < b + len; ++k) {
      const S h = beta * u[k] + xt[k];
      const S v = Uniform<S>::value(rw[k]);
      const S p = Sc::approx(h - theta, scale);
      const bool below = v < p - Sc::kBand;
      unsure |= (!below && !(v >= p + Sc::kBand)) ? 1 : 0;
      const S s = below ? S(1) : S(0);
      ot[k] = s;
      u[k] = St::reset(h, theta, s);
      if constexpr (!HARD) hs[k] = h;
      sb[k] = below ? 1 : 0;
    }
    return unsure;
  };
  for (int64_t b = 0; b < n; b += kScreenBlock) {
    const int64_t e = b + kScreenBlock < n ? b + kScreenBlock : n;
    const int unsure = e - b == kScreenBlock ? screen(b, kScreenBlock) : screen(b, e - b);
    if (unsure == 0) continue;
    for (int64_t k = b; k < e; ++k) {
      const S h = HARD ? u[k] : hs[k];
      const bool fired = (sb[k] != 0) | fires<S, F>(h - theta, Uniform<S>::value(rw[k]), scale);
      const S s = fired ? S(1) : S(0);
      ot[k] = s;
      u[k] = St::reset(h, theta, s);
      sb[k] = fired ? 1 : 0;
    }
  }
}

// The SIMD units' bernoulli rows (lif_avx2.h, lif_avx512.h) screen these families' draws while
// screening is on (LifArgs::screen), and decide the others' exactly.
template <int F>
constexpr bool kScreenedSimd = F == kGaussian || F == kLogistic;

// The last, partial block [b, n) of a SIMD unit's bernoulli row, one neuron at a time, given the
// block's uniforms (every one of the 64 lanes has advanced once for it, as in Uniform::fill).
template <int F, bool HARD, bool SAVE>
inline void bernoulli_tail(int64_t b, int64_t n, float beta, float theta, const Scale<float>& scale,
                           const float* __restrict xt, const uint32_t* __restrict words, float* __restrict u,
                           float* __restrict ot, uint8_t* __restrict bits_row) {
  using St = Step<float, F, kBernoulli, HARD>;
  uint64_t fired = 0;
  for (int64_t k = b; k < n; ++k) {
    const float h = beta * u[k] + xt[k];
    const bool f = fires<float, F>(h - theta, Uniform<float>::value(words[k - b]), scale);
    ot[k] = f ? 1.0f : 0.0f;
    u[k] = St::reset(h, theta, ot[k]);
    fired |= static_cast<uint64_t>(f) << (k - b);
  }
  if constexpr (SAVE) std::memcpy(bits_row + b / 8, &fired, static_cast<size_t>(ceil_div(n - b, 8)));
}

// Spike k of a packed row (the SIMD units' scalar remainders) as 0/1 (bernoulli), 0 in the other modes (their spike comes from h).
template <int MODE>
inline float saved_spike(const uint8_t* bits_row, int64_t k) {
  if constexpr (MODE == kBernoulli) {
    return ((bits_row[k / 8] >> (k % 8)) & 1) != 0 ? 1.0f : 0.0f;
  } else {
    return 0.0f;
  }
}

// Each SIMD unit provides, in its namespace, bernoulli_step_simd (one step of a float32 bernoulli
// row), replay_simd and reverse_simd (slices of the backward's two passes; reverse_simd only for the
// families of kReverseSimd), computing what the generic loops below compute, bit for bit.
#if defined(NSNN_AVX2)
#define NSNN_SIMD 1
#include "lif_avx2.h"
#elif defined(NSNN_AVX512BW)
#define NSNN_SIMD 1
#include "lif_avx512.h"
#endif

template <typename S, int F, int MODE, bool HARD, bool SAVE>
void forward_chunk(const LifArgs& a, const S* __restrict x, S* __restrict out, uint8_t* __restrict bits,
                   int64_t i0, int64_t i1) {
  using St = Step<S, F, MODE, HARD>;
  const int64_t n = i1 - i0;
  const S beta = static_cast<S>(a.beta), theta = static_cast<S>(a.theta);
  const Scale<S> scale(a.inv_sigma);
  S* __restrict u = scratch<S, kState>(n);
  uint8_t* __restrict sb = scratch<uint8_t, kState>(round_up(n, 64));  // pack_bits pads to 8
  typename Uniform<S>::Word* __restrict rw =
      scratch<typename Uniform<S>::Word, kState>(MODE == kBernoulli ? round_up(n, 64) : 1);  // whole lanes
  S* __restrict hs = scratch<S, kAux>(MODE == kBernoulli && !HARD ? n : 1);  // h of a screened row
  std::conditional_t<MODE == kBernoulli, Uniform<S>, NoDraws> draws(a, i0);
  for (int64_t k = 0; k < n; ++k) u[k] = S(0);
  for (int64_t t = 0; t < a.T; ++t) {
    const int64_t off = t * a.N + i0;
    const S* __restrict xt = x + off;
    S* __restrict ot = out + off;
#ifdef NSNN_SIMD
    if constexpr (MODE == kBernoulli && std::is_same_v<S, float>) {
      if (a.screen || !kScreenedSimd<F>) {
        bernoulli_step_simd<F, HARD, SAVE>(n, beta, theta, scale, xt, draws, u, ot, hs,
                                           SAVE ? bits + t * a.row_bytes + i0 / 8 : nullptr);
        continue;
      }
    }
#endif
    if constexpr (MODE == kBernoulli && Screen<S, F>::kEnabled) {
      if (a.screen) {
        draws.fill(n, rw);
        screened_step<S, F, HARD>(n, beta, theta, scale, xt, rw, u, sb, ot, hs);
        if constexpr (SAVE) pack_bits(sb, n, bits + t * a.row_bytes + i0 / 8);
        continue;
      }
    }
    if constexpr (MODE == kBernoulli) draws.fill(n, rw);
    for (int64_t k = 0; k < n; ++k) {
      const S h = beta * u[k] + xt[k];
      S drawn = S(0);
      if constexpr (MODE == kBernoulli) {
        const bool fired = fires<S, F>(h - theta, Uniform<S>::value(rw[k]), scale);
        drawn = fired ? S(1) : S(0);
        if constexpr (SAVE) sb[k] = fired ? 1 : 0;
      }
      const S s = St::spike(h, theta, scale, drawn);
      ot[k] = s;
      u[k] = St::reset(h, theta, s);
    }
    if constexpr (SAVE && MODE == kBernoulli) pack_bits(sb, n, bits + t * a.row_bytes + i0 / 8);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward over chunk [i0, i1). The chunk is walked in slices (slice_neurons): each slice first
// replays the forward recurrence from x (and the saved bits) into a [T, slice] buffer, then runs
// t = T−1 … 0 (∂L/∂u starts at 0: at t = T−1, as in fused.py, ∂L/∂h = ∂L/∂s·g). DECAY also
// accumulates Σ ∂L/∂h_{t+1}·u_t per neuron in double, summed in neuron order.
//
// Both passes walk each row in blocks of kPrefetchBlock neurons and first prefetch the same block of
// the row they read next (x one step later in the replay, ∂L/∂s one step earlier in the reverse
// pass): consecutive rows lie N elements apart, so each row starts a new stream that the hardware
// prefetchers would only pick up after a few misses.
//
// Slices, per instruction set (measured with both threads of a 2-core CPU, all four families and the
// LIF, against the previous rule in each case):
// * AVX2 and generic (tuned on AMD Zen 3): a slice is the whole chunk (up to 8192 neurons) as long as
//   the buffer holds at most kMaxSliceElems elements (1 MiB of float32), else kMaxSliceElems / T
//   neurons (a multiple of 64; from T > 4096 on, rows of 64 neurons take T·64 elements, given back
//   after the call). Against the AVX-512 rule below (both builds loaded in one process, 20 rounds),
//   long rows and the prefetch made the float32 backward 20-38 % faster at [4, 1M], [8, 512k] and
//   [32, 64k] and 7-18 % at [256, 16k] (the bernoulli families and the LIF; the expected mode, bound by
//   its exp and erfc, within ±3 %); slices of 1024 or 2048 neurons were slower at every T tried on
//   that CPU, and the prefetch alone gained 1-16 %.
// * AVX-512 (tuned on an Intel CPU, kept as measured there): the buffer aims at kSliceElems = 32 KiB
//   of float32, to stay in L1 while the slice's rows of x, ∂L/∂s and ∂L/∂x stream through, with
//   rows of at least kMinSlice = 1024 neurons (4 KiB, a page, for the prefetchers), so from T > 8 on
//   it grows into L2, up to kMaxSliceElems. Short sequences (T ≤ kShortSteps) take
//   kShortSliceElems = 2048 elements (rows of 1024 neurons at T = 2, 512 at T = 4, 256 at T = 8):
//   there the long rows' buffer and the streamed rows crowded each other out of L1 (the short rows
//   were 8-19 % faster at [2, 2M], 6-13 % at [4, 1M] and 5-19 % at [8, 512k]; from T = 16 on short
//   rows lost, up to 22 % at [32, 256k]).

constexpr int64_t kMaxSliceElems = int64_t{1} << 18;
constexpr int64_t kPrefetchBlock = 256;

#ifdef NSNN_AVX512BW
constexpr int64_t kSliceElems = int64_t{1} << 13;
constexpr int64_t kMinSlice = 1024;
constexpr int64_t kShortSteps = 8;
constexpr int64_t kShortSliceElems = 2048;

// Neurons per slice for T steps and a chunk of n neurons: a multiple of 64 (bits are addressed by
// byte), or the whole chunk when that is shorter.
inline int64_t slice_neurons(int64_t T, int64_t n) {
  const int64_t steps = T > 0 ? T : 1;
  if (steps <= kShortSteps) {
    return std::min(std::clamp(kShortSliceElems / steps / 64 * 64, int64_t{256}, kMaxChunk), n);
  }
  const int64_t lowest = std::max<int64_t>(64, std::min(kMinSlice, kMaxSliceElems / steps) / 64 * 64);
  const int64_t slice = std::clamp(kSliceElems / steps / 64 * 64, lowest, kMaxChunk);
  return std::min(slice, n);
}
#else
// Neurons per slice for T steps and a chunk of n neurons: the whole chunk, or a multiple of 64 (bits
// are addressed by byte) that keeps the buffer within kMaxSliceElems.
inline int64_t slice_neurons(int64_t T, int64_t n) {
  const int64_t steps = T > 0 ? T : 1;
  return std::min(std::max<int64_t>(64, kMaxSliceElems / steps / 64 * 64), n);
}
#endif

// Runs body(k0, k1) over [0, n) in blocks of kPrefetchBlock, first prefetching each block's
// counterpart in `next` (no prefetch when next is null).
template <typename S, typename Body>
__attribute__((always_inline)) inline void walk_prefetching(int64_t n, const S* next, const Body& body) {
  if (next == nullptr) {
    body(int64_t{0}, n);
    return;
  }
  constexpr int64_t kLine = 64 / static_cast<int64_t>(sizeof(S));
  for (int64_t b = 0; b < n; b += kPrefetchBlock) {
    const int64_t e = b + kPrefetchBlock < n ? b + kPrefetchBlock : n;
    for (int64_t k = b; k < e; k += kLine) __builtin_prefetch(next + k, 0, 3);
    body(b, e);
  }
}

template <typename S, int F, int MODE, bool HARD, bool DECAY>
void backward_chunk(const LifArgs& a, const S* __restrict go, const S* __restrict x,
                    const uint8_t* __restrict bits, S* __restrict gx, int64_t i0, int64_t i1,
                    double* decay_partial) {
  using St = Step<S, F, MODE, HARD>;
  const S beta = static_cast<S>(a.beta), theta = static_cast<S>(a.theta);
  const Scale<S> scale(a.inv_sigma);
  const bool detach = a.detach;
  // Beyond |h| = far every family's pdf(h − θ) is exactly 0 (|h − θ| > 10⁴σ), so clamping h there in
  // the reset term ∂u/∂s = −h changes no gradient, while an infinite h no longer makes gs infinite and
  // gs·pdf = inf·0 = NaN. The clamps run only in slices where the replay met such an h.
  const S far = static_cast<S>(std::fabs(a.theta) + 1e4 / a.inv_sigma);
  constexpr S kMax = std::numeric_limits<S>::max();
  const int64_t slice = slice_neurons(a.T, i1 - i0);
  S* __restrict hbuf = scratch<S, kReplay>(a.T * slice);
  S* __restrict u = scratch<S, kState>(slice);
  S* __restrict gu = scratch<S, kAux>(slice);
  uint8_t* __restrict sb = scratch<uint8_t, kState>(round_up(slice, 64));
  S* __restrict gh_next = scratch<S, kNext>(DECAY ? slice : 1);
  double* __restrict acc = scratch<double, kAcc>(DECAY ? slice : 1);
  double sum = 0.0;
  for (int64_t j0 = i0; j0 < i1; j0 += slice) {
    const int64_t n = (i1 - j0) < slice ? (i1 - j0) : slice;
    for (int64_t k = 0; k < n; ++k) u[k] = S(0);
    int far_seen = 0;  // whether some |h| of the slice lies beyond far (the reverse pass then clamps)
    for (int64_t t = 0; t < a.T; ++t) {
      const S* __restrict xt = x + t * a.N + j0;
      S* __restrict ht = hbuf + t * n;
      const S* next_x = t + 1 < a.T ? xt + a.N : nullptr;  // the same neurons one step later
#ifdef NSNN_SIMD
      if constexpr (std::is_same_v<S, float> && MODE != kExpected) {
        const uint8_t* row = MODE == kBernoulli ? bits + t * a.row_bytes + j0 / 8 : nullptr;
        walk_prefetching(n, next_x, [&](int64_t k0, int64_t k1) __attribute__((always_inline)) {
          far_seen |= replay_simd<F, MODE, HARD>(k0, k1, beta, theta, far, scale, xt, row, u, ht);
        });
        continue;
      }
#endif
      if constexpr (MODE == kBernoulli) unpack_bits(bits + t * a.row_bytes + j0 / 8, n, sb);
      walk_prefetching(n, next_x, [&](int64_t k0, int64_t k1) __attribute__((always_inline)) {
        for (int64_t k = k0; k < k1; ++k) {
          S drawn = S(0);
          if constexpr (MODE == kBernoulli) drawn = sb[k] != 0 ? S(1) : S(0);
          const S h = St::replay(beta, theta, scale, xt[k], drawn, u[k]);
          ht[k] = h;
          far_seen |= ((h > far) | (h < -far)) ? 1 : 0;
        }
      });
    }
    for (int64_t k = 0; k < n; ++k) gu[k] = S(0);
    if constexpr (DECAY) {
      for (int64_t k = 0; k < n; ++k) acc[k] = 0.0;
    }
    auto step = [&](int64_t t, auto accumulate, auto clamp) {
      constexpr bool ACC = decltype(accumulate)::value;
      constexpr bool CLAMP = decltype(clamp)::value;
      const int64_t off = t * a.N + j0;
      const S* __restrict gt = go + off;
      const S* __restrict ht = hbuf + t * n;
      S* __restrict xt = gx + off;
      const S* next_g = t > 0 ? gt - a.N : nullptr;  // the same neurons one step earlier
      walk_prefetching(n, next_g, [&](int64_t k0, int64_t k1) __attribute__((always_inline)) {
        for (int64_t k = k0; k < k1; ++k) {
          const S h = ht[k];
          S s, g;
          if constexpr (MODE == kExpected) {
            Noise<S, F>::both(h - theta, scale, s, g);
          } else {
            g = Noise<S, F>::pdf(h - theta, scale);
            s = St::spike(h, theta, scale, sb[k] != 0 ? S(1) : S(0));
          }
          // In a slice holding some |h| > far (CLAMP), h enters the hard reset's term clamped to ±far,
          // so an infinite membrane (a −inf mask, or a +inf input that fires and is reset) keeps gs
          // finite and gs·pdf = 0 whatever ∂L/∂u is, as on the torch path.
          const S hr = CLAMP ? (h > far ? far : (h < -far ? -far : h)) : h;
          const S gh = St::grad_h(gt[k], gu[k], hr, s, g, theta, detach);
          xt[k] = gh;
          gu[k] = gh * beta;
          if constexpr (DECAY) {
            // u_t clamped to the largest finite value: an infinite membrane, whose later ∂L/∂h is 0,
            // adds 0 instead of 0·inf = NaN; a finite one is unchanged. A NaN u_t (a NaN input) adds 0
            // where ∂L/∂h_{t+1} is 0, chosen rather than multiplied, as on the torch path (_times).
            if constexpr (ACC) {
              const S ut = St::reset(h, theta, s);
              const S uc = CLAMP ? (ut > kMax ? kMax : (ut < -kMax ? -kMax : ut)) : ut;
              acc[k] += gh_next[k] == S(0) ? 0.0 : static_cast<double>(gh_next[k] * uc);
            }
            gh_next[k] = gh;
          }
        }
      });
    };
    auto step_at = [&](int64_t t, auto clamp) {
      if (DECAY && t < a.T - 1) {
        step(t, std::true_type{}, clamp);
      } else {
        step(t, std::false_type{}, clamp);
      }
    };
    for (int64_t t = a.T - 1; t >= 0; --t) {
#ifdef NSNN_SIMD
      if constexpr (std::is_same_v<S, float> && MODE != kExpected && !DECAY && kReverseSimd<F>) {
        if (far_seen == 0) {
          const int64_t off = t * a.N + j0;
          const uint8_t* row = MODE == kBernoulli ? bits + t * a.row_bytes + j0 / 8 : nullptr;
          const S* next_g = t > 0 ? go + off - a.N : nullptr;
          walk_prefetching(n, next_g, [&](int64_t k0, int64_t k1) __attribute__((always_inline)) {
            reverse_simd<F, MODE, HARD>(k0, k1, beta, theta, detach, scale, go + off, hbuf + t * n, row, gu,
                                        gx + off);
          });
          continue;
        }
      }
#endif
      if constexpr (MODE == kBernoulli) unpack_bits(bits + t * a.row_bytes + j0 / 8, n, sb);
      if (far_seen != 0) {
        step_at(t, std::true_type{});
      } else {
        step_at(t, std::false_type{});
      }
    }
    if constexpr (DECAY) {
      for (int64_t k = 0; k < n; ++k) sum += acc[k];
    }
  }
  if constexpr (DECAY) *decay_partial = sum;
  // Beyond the bound (T > 4096 steps, rows of 64 neurons) the buffer is given back after the call.
  trim_scratch<S, kReplay>(static_cast<size_t>(kMaxSliceElems));
}

// ---------------------------------------------------------------------------------------------
// Entry points: pick the instantiation for (family, mode, reset, save/decay) once per chunk.

template <typename S, int F, int MODE>
ForwardFn<S> pick_forward(bool hard, bool save) {
  if (hard) return save ? &forward_chunk<S, F, MODE, true, true> : &forward_chunk<S, F, MODE, true, false>;
  return save ? &forward_chunk<S, F, MODE, false, true> : &forward_chunk<S, F, MODE, false, false>;
}

template <typename S, int F>
ForwardFn<S> pick_forward_mode(int mode, bool hard, bool save) {
  switch (mode) {
    case kBernoulli:
      return pick_forward<S, F, kBernoulli>(hard, save);
    case kExpected:
      return pick_forward<S, F, kExpected>(hard, save);
    default:  // heaviside firing does not depend on the family
      return pick_forward<S, kUniform, kHeaviside>(hard, save);
  }
}

template <typename S>
void forward(const LifArgs& a, const S* x, S* out, uint8_t* bits, int64_t i0, int64_t i1) {
  const bool save = bits != nullptr;
  ForwardFn<S> fn;
  switch (a.family) {
    case kGaussian:
      fn = pick_forward_mode<S, kGaussian>(a.mode, a.hard, save);
      break;
    case kLogistic:
      fn = pick_forward_mode<S, kLogistic>(a.mode, a.hard, save);
      break;
    case kTriangular:
      fn = pick_forward_mode<S, kTriangular>(a.mode, a.hard, save);
      break;
    default:
      fn = pick_forward_mode<S, kUniform>(a.mode, a.hard, save);
      break;
  }
  fn(a, x, out, bits, i0, i1);
}

template <typename S, int F, int MODE>
BackwardFn<S> pick_backward(bool hard, bool decay) {
  if (hard) return decay ? &backward_chunk<S, F, MODE, true, true> : &backward_chunk<S, F, MODE, true, false>;
  return decay ? &backward_chunk<S, F, MODE, false, true> : &backward_chunk<S, F, MODE, false, false>;
}

template <typename S, int F>
BackwardFn<S> pick_backward_mode(int mode, bool hard, bool decay) {
  switch (mode) {
    case kBernoulli:
      return pick_backward<S, F, kBernoulli>(hard, decay);
    case kExpected:
      return pick_backward<S, F, kExpected>(hard, decay);
    default:
      return pick_backward<S, F, kHeaviside>(hard, decay);
  }
}

template <typename S>
void backward(const LifArgs& a, const S* go, const S* x, const uint8_t* bits, S* gx, int64_t i0, int64_t i1,
              double* decay_partial) {
  BackwardFn<S> fn;
  switch (a.family) {
    case kGaussian:
      fn = pick_backward_mode<S, kGaussian>(a.mode, a.hard, a.want_decay);
      break;
    case kLogistic:
      fn = pick_backward_mode<S, kLogistic>(a.mode, a.hard, a.want_decay);
      break;
    case kTriangular:
      fn = pick_backward_mode<S, kTriangular>(a.mode, a.hard, a.want_decay);
      break;
    default:
      fn = pick_backward_mode<S, kUniform>(a.mode, a.hard, a.want_decay);
      break;
  }
  fn(a, go, x, bits, gx, i0, i1, decay_partial);
}

}  // namespace NSNN_ISA
}  // namespace nsnn_native
