// AVX-512 intrinsics for the float32 kernels' hottest loops: one step of a bernoulli row in the
// forward, its uniforms drawn in the same loop, and the backward's replay and reverse steps.
//
// Included by lif_kernels.h in the AVX-512 unit only (NSNN_AVX512BW), inside its namespace. Each
// function computes what the generic code it replaces computes, bit for bit (the AVX2 unit's results,
// checked by tests/test_native.py for every family, mode, reset, detach_reset and ∂L/∂β): the same
// xoshiro128++ words, the same screens (the gaussian one compared on the uniform scaled by 2^24, the
// logistic one on a cheaper exp: lif_kernels.h, Screen and LogisticScreen) and the same float32
// formulas in the same order, with FMAs where GCC contracts the generic code.
//
// Forward (bernoulli_step_simd replaces Uniform<float>::fill + screened_step + pack_bits, or fill +
// the plain loop + pack_bits). GCC's auto-vectorized row kept the 64 lanes' generator state in memory
// (four loads and four stores per 16 words), wrote the words, the spike bytes and then the packed bits
// in separate passes, and decided every draw of a 64-neuron block exactly as soon as one of them fell
// inside the screen's band. Here the state lives in 16 registers for the whole row (four Lanes16, named
// variables: as an array of 16 vectors GCC stored every update back to the stack), each group of 16
// spikes is one mask register written straight into the packed bits, and only the draws inside the
// band are decided again.
//
// Backward: the replay and the reverse step read the saved bits as mask registers instead of
// unpacking them to bytes first.
//
// Both builds in one process (`python bench/native_ab.py OLD.so NEW.so`) on an AMD Zen 4, 2 threads,
// [32, 16, 4096]: forward + backward new/old 0.80–0.82 gaussian, 0.89–0.92 logistic, 0.82–0.87
// triangular and 0.81–0.87 uniform (docs/benchmarks.md, "Session 24", has the rest).

#ifndef NSNN_AVX512BW
#error "lif_avx512.h is part of the AVX-512 unit (lif_isa_avx512.cpp)"
#endif

// Lanes [16j, 16j + 16) of a Uniform<float>, held in four registers for one row.
struct Lanes16 {
  __m512i s0, s1, s2, s3;

  Lanes16(const Uniform<float>& g, int j)
      : s0(_mm512_load_si512(g.s0 + 16 * j)),
        s1(_mm512_load_si512(g.s1 + 16 * j)),
        s2(_mm512_load_si512(g.s2 + 16 * j)),
        s3(_mm512_load_si512(g.s3 + 16 * j)) {}
  void store(Uniform<float>& g, int j) const {
    _mm512_store_si512(g.s0 + 16 * j, s0);
    _mm512_store_si512(g.s1 + 16 * j, s1);
    _mm512_store_si512(g.s2 + 16 * j, s2);
    _mm512_store_si512(g.s3 + 16 * j, s3);
  }
  // The next 16 words (Uniform<float>::fill's xoshiro128++ step).
  __attribute__((always_inline)) inline __m512i next() {
    const __m512i out = _mm512_add_epi32(_mm512_rol_epi32(_mm512_add_epi32(s0, s3), 7), s0);
    const __m512i shifted = _mm512_slli_epi32(s1, 9);
    s2 = _mm512_xor_si512(s2, s0);
    s3 = _mm512_xor_si512(s3, s1);
    s1 = _mm512_xor_si512(s1, s2);
    s0 = _mm512_xor_si512(s0, s3);
    s2 = _mm512_xor_si512(s2, shifted);
    s3 = _mm512_rol_epi32(s3, 11);
    return out;
  }
};

// e^x·2^(B−127) for 16 values x in [−87, 0] (Fn<float>::exp_core, the same operations).
template <int B>
__attribute__((always_inline)) inline __m512 exp_core16(__m512 x) {
  using Fp = Fn<float>;
  const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(Fp::kLog2e), _mm512_set1_ps(Fp::kRound));
  const __m512 n = _mm512_sub_ps(t, _mm512_set1_ps(Fp::kRound));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(Fp::kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(Fp::kLn2Lo), r);
  __m512 y = _mm512_set1_ps(Fp::kExpQ[0]);
  for (int i = 1; i < 5; ++i) y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(Fp::kExpQ[i]));
  y = _mm512_add_ps(_mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(B - 0x4B400000)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

// Fn<float>::exp_nonpos for 16 values (NaN stays NaN).
__attribute__((always_inline)) inline __m512 exp_nonpos16(__m512 x) {
  const __m512 lowest = _mm512_set1_ps(-87.0f);
  const __m512 e = exp_core16<127>(_mm512_max_ps(lowest, x));
  return _mm512_maskz_mov_ps(_knot_mask16(_mm512_cmp_ps_mask(x, lowest, _CMP_LT_OQ)), e);
}

// For 16 neurons with membranes h and uniforms wv·2^-24 (wv = the top 24 bits of each word, as a
// float): `below`, the draws that fire for sure (screened families) or exactly (the others), and
// `decided`, those the screen was sure of either way (all of them for the unscreened families).
template <int F>
__attribute__((always_inline)) inline void decide16(__m512 h, __m512 wv, float theta, const Scale<float>& k,
                                                    __mmask16& below, __mmask16& decided) {
  const __m512 one = _mm512_set1_ps(1.0f), unit = _mm512_set1_ps(5.9604644775390625e-8f);  // 2^-24
  const __m512 d = _mm512_sub_ps(h, _mm512_set1_ps(theta));
  if constexpr (F == kGaussian) {
    using Sc = Screen<float, kGaussian>;
    constexpr float kScale = 16777216.0f;  // 2^24
    __m512 z = _mm512_mul_ps(d, _mm512_set1_ps(k.inv));
    z = _mm512_max_ps(_mm512_set1_ps(-Sc::kClamp), _mm512_min_ps(_mm512_set1_ps(Sc::kClamp), z));  // NaN stays
    const __m512 z2 = _mm512_mul_ps(z, z);
    __m512 q = _mm512_set1_ps(Sc::kQ[0] * kScale);
    for (int i = 1; i <= Sc::kDegree; ++i) q = _mm512_fmadd_ps(q, z2, _mm512_set1_ps(Sc::kQ[i] * kScale));
    const __m512 p = _mm512_fmadd_ps(z, q, _mm512_set1_ps(0.5f * kScale));
    const __m512 band = _mm512_set1_ps(Sc::kBand * kScale);
    below = _mm512_cmp_ps_mask(wv, _mm512_sub_ps(p, band), _CMP_LT_OQ);
    decided = below | _mm512_cmp_ps_mask(wv, _mm512_add_ps(p, band), _CMP_GE_OQ);
  } else if constexpr (F == kLogistic) {
    using Fp = Fn<float>;
    const __m512 x = _mm512_max_ps(_mm512_set1_ps(-87.0f),
                                   _mm512_mul_ps(_mm512_or_ps(d, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(k.inv)));
    const __m512 t = _mm512_fmadd_ps(x, _mm512_set1_ps(Fp::kLog2e), _mm512_set1_ps(Fp::kRound));
    const __m512 n = _mm512_sub_ps(t, _mm512_set1_ps(Fp::kRound));
    const __m512 f = _mm512_fmsub_ps(x, _mm512_set1_ps(Fp::kLog2e), n);
    __m512 p = _mm512_set1_ps(LogisticScreen::kP[0]);
    for (int i = 1; i < 4; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(LogisticScreen::kP[i]));
    const __m512i pow2n =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127 - 0x4B400000)), 23);
    const __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(pow2n));
    const __m512 rhs = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_GE_OQ), e, one);
    const __m512 m = _mm512_fmsub_ps(_mm512_mul_ps(wv, unit), _mm512_add_ps(one, e), rhs);
    const __m512 band = _mm512_set1_ps(LogisticScreen::kBand);
    below = _mm512_cmp_ps_mask(m, _mm512_set1_ps(-LogisticScreen::kBand), _CMP_LT_OQ);
    decided = below | _mm512_cmp_ps_mask(m, band, _CMP_GT_OQ);
  } else if constexpr (F == kTriangular) {
    __m512 zc = _mm512_mul_ps(d, _mm512_set1_ps(k.inv));
    zc = _mm512_min_ps(one, _mm512_max_ps(_mm512_set1_ps(-1.0f), zc));
    const __m512 a = _mm512_add_ps(one, zc), b = _mm512_sub_ps(one, zc);
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 lower = _mm512_mul_ps(half, _mm512_mul_ps(a, a));
    const __m512 upper = _mm512_fnmadd_ps(half, _mm512_mul_ps(b, b), one);
    const __m512 c = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(zc, _mm512_setzero_ps(), _CMP_LT_OQ), upper, lower);
    below = _mm512_cmp_ps_mask(_mm512_mul_ps(wv, unit), c, _CMP_LT_OQ);
    decided = 0xFFFF;
  } else {
    static_assert(F == kUniform, "unknown family");
    // cdf = clamp(d/(2σ) + ½, 0, 1); the clamps change no decision (the uniform lies in [0, 1)).
    const __m512 c = _mm512_fmadd_ps(d, _mm512_set1_ps(k.half_inv), _mm512_set1_ps(0.5f));
    below = _mm512_cmp_ps_mask(_mm512_mul_ps(wv, unit), c, _CMP_LT_OQ);
    decided = 0xFFFF;
  }
}

// One step of a bernoulli row of n neurons: Uniform<float>::fill(n, ·) and the generic row (same
// arguments, plus the generator g; the spikes go to the packed row bits_row when SAVE). Lane l of g
// serves neurons l, l + 64, l + 128, ... of the row; a draw the screen left undecided is decided
// exactly on the spot. The last, partial block goes one neuron at a time, every lane advancing once.
template <int F, bool HARD, bool SAVE>
inline void bernoulli_step_simd(int64_t n, float beta, float theta, const Scale<float>& scale,
                                const float* __restrict xt, Uniform<float>& g, float* __restrict u,
                                float* __restrict ot, float* /* hs: unused, h stays in a register */,
                                uint8_t* __restrict bits_row) {
  static_assert(Uniform<float>::kLanes == 64, "a block of 64 neurons is one pass over the lanes");
  constexpr int64_t kBlock = 64;
  const __m512 vbeta = _mm512_set1_ps(beta), vtheta = _mm512_set1_ps(theta), one = _mm512_set1_ps(1.0f);
  // The 16 neurons [k, k + 16) with lanes [16j, 16j + 16); returns their spikes as a mask.
  auto step16 = [&](Lanes16& lanes, int64_t k) __attribute__((always_inline)) {
    const __m512i w = lanes.next();
    const __m512 wv = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8));  // the uniform times 2^24
    const __m512 h = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(u + k), _mm512_loadu_ps(xt + k));
    __mmask16 below, decided;
    decide16<F>(h, wv, theta, scale, below, decided);
    if (__builtin_expect(decided != 0xFFFF, 0)) {  // the draws inside the band, decided exactly
      alignas(64) uint32_t words[16];
      alignas(64) float hs[16];
      _mm512_store_si512(words, w);
      _mm512_store_ps(hs, h);
      for (unsigned open = _knot_mask16(decided); open != 0; open &= open - 1) {
        const int i = __builtin_ctz(open);
        if (fires<float, F>(hs[i] - theta, Uniform<float>::value(words[i]), scale)) below |= 1u << i;
      }
    }
    const __m512 s = _mm512_maskz_mov_ps(below, one);
    _mm512_storeu_ps(ot + k, s);
    if constexpr (HARD) {
      _mm512_storeu_ps(u + k, _mm512_maskz_mov_ps(_knot_mask16(below), h));
    } else {
      _mm512_storeu_ps(u + k, _mm512_fnmadd_ps(vtheta, s, h));
    }
    return static_cast<uint64_t>(below);
  };
  Lanes16 l0(g, 0), l1(g, 1), l2(g, 2), l3(g, 3);
  int64_t b = 0;
  for (; b + kBlock <= n; b += kBlock) {
    uint64_t fired = step16(l0, b);
    fired |= step16(l1, b + 16) << 16;
    fired |= step16(l2, b + 32) << 32;
    fired |= step16(l3, b + 48) << 48;
    if constexpr (SAVE) std::memcpy(bits_row + b / 8, &fired, 8);
  }
  if (b < n) {  // the last, partial block; all 64 lanes advance, as in fill
    alignas(64) uint32_t words[kBlock];
    _mm512_store_si512(words, l0.next());
    _mm512_store_si512(words + 16, l1.next());
    _mm512_store_si512(words + 32, l2.next());
    _mm512_store_si512(words + 48, l3.next());
    bernoulli_tail<F, HARD, SAVE>(b, n, beta, theta, scale, xt, words, u, ot, bits_row);
  }
  l0.store(g, 0);
  l1.store(g, 1);
  l2.store(g, 2);
  l3.store(g, 3);
}

// Spikes of 16 replayed membranes h as a mask: the saved bits k..k+15 of the packed row (bernoulli)
// or h > θ (heaviside).
template <int MODE>
__attribute__((always_inline)) inline __mmask16 spikes16(__m512 h, __m512 vtheta, const uint8_t* bits_row,
                                                         int64_t k) {
  static_assert(MODE == kBernoulli || MODE == kHeaviside, "the expected mode runs the generic kernel");
  if constexpr (MODE == kBernoulli) {
    uint16_t row;
    std::memcpy(&row, bits_row + k / 8, sizeof(row));
    return _cvtu32_mask16(row);
  } else {
    return _mm512_cmp_ps_mask(h, vtheta, _CMP_GT_OQ);
  }
}

// Neurons [k0, k1) of one replay step of backward_chunk (k0 a multiple of 16): h = β·u + x into ht,
// u ← reset, the bernoulli spikes read from the packed row as mask registers. Returns whether some
// |h| lies beyond far. The last k1 mod 16 neurons go one by one (Step::replay).
template <int F, int MODE, bool HARD>
inline int replay_simd(int64_t k0, int64_t k1, float beta, float theta, float far, const Scale<float>& scale,
                       const float* __restrict xt, const uint8_t* __restrict bits_row, float* __restrict u,
                       float* __restrict ht) {
  using St = Step<float, F, MODE, HARD>;
  const __m512 vbeta = _mm512_set1_ps(beta), vtheta = _mm512_set1_ps(theta), one = _mm512_set1_ps(1.0f);
  const __m512 vfar = _mm512_set1_ps(far);
  __mmask16 beyond = 0;
  int64_t k = k0;
  for (; k + 16 <= k1; k += 16) {
    const __m512 h = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(u + k), _mm512_loadu_ps(xt + k));
    _mm512_storeu_ps(ht + k, h);
    beyond |= _mm512_cmp_ps_mask(_mm512_abs_ps(h), vfar, _CMP_GT_OQ);
    const __mmask16 fired = spikes16<MODE>(h, vtheta, bits_row, k);
    if constexpr (HARD) {
      _mm512_storeu_ps(u + k, _mm512_maskz_mov_ps(_knot_mask16(fired), h));
    } else {
      _mm512_storeu_ps(u + k, _mm512_fnmadd_ps(vtheta, _mm512_maskz_mov_ps(fired, one), h));
    }
  }
  int far_seen = beyond != 0 ? 1 : 0;
  for (; k < k1; ++k) {
    const float h = St::replay(beta, theta, scale, xt[k], saved_spike<MODE>(bits_row, k), u[k]);
    ht[k] = h;
    far_seen |= ((h > far) | (h < -far)) ? 1 : 0;
  }
  return far_seen;
}

// Noise<float, F>::pdf for 16 values of d = h − θ (the surrogate gradient; the same operations).
template <int F>
__attribute__((always_inline)) inline __m512 pdf16(__m512 d, const Scale<float>& k) {
  if constexpr (F == kGaussian) {
    const __m512 z = _mm512_mul_ps(d, _mm512_set1_ps(k.inv_sqrt2));
    const __m512 minus_z2 = _mm512_xor_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(-0.0f));
    return _mm512_mul_ps(exp_nonpos16(minus_z2), _mm512_set1_ps(k.gauss_peak));
  } else if constexpr (F == kLogistic) {
    const __m512 inv = _mm512_set1_ps(k.inv);
    const __m512 e = exp_nonpos16(_mm512_mul_ps(_mm512_xor_ps(_mm512_abs_ps(d), _mm512_set1_ps(-0.0f)), inv));
    const __m512 r = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mul_ps(_mm512_mul_ps(e, r), _mm512_mul_ps(r, inv));
  } else if constexpr (F == kTriangular) {  // max(0, 1 − |d|/σ)/σ
    const __m512 inv = _mm512_set1_ps(k.inv);
    const __m512 v = _mm512_fnmadd_ps(_mm512_abs_ps(d), inv, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(_knot_mask16(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ)),
                               _mm512_mul_ps(v, inv));
  } else {  // 1/(2σ) on |d| ≤ σ
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_abs_ps(d), _mm512_set1_ps(k.sigma), _CMP_LE_OQ),
                               _mm512_set1_ps(k.half_inv));
  }
}

// The reverse step runs here (reverse_simd) for every family.
template <int F>
constexpr bool kReverseSimd = true;

// Neurons [k0, k1) of one reverse step of backward_chunk without the decay's sum and without clamps
// (no |h| beyond far in the slice): ∂L/∂x_t from ∂L/∂s_t (gt), the replayed h (ht) and ∂L/∂u_t (gu,
// updated to ∂L/∂u_{t−1}), the bernoulli spikes read from the packed row as mask registers. The last
// k1 mod 16 neurons go one by one (Step::grad_h).
template <int F, int MODE, bool HARD>
inline void reverse_simd(int64_t k0, int64_t k1, float beta, float theta, bool detach, const Scale<float>& scale,
                         const float* __restrict gt, const float* __restrict ht, const uint8_t* __restrict bits_row,
                         float* __restrict gu, float* __restrict gx) {
  using St = Step<float, F, MODE, HARD>;
  const __m512 vbeta = _mm512_set1_ps(beta), vtheta = _mm512_set1_ps(theta), one = _mm512_set1_ps(1.0f);
  const __mmask16 keep_all = detach ? 0xFFFF : 0;
  int64_t k = k0;
#pragma GCC unroll 2
  for (; k + 16 <= k1; k += 16) {
    const __m512 h = _mm512_loadu_ps(ht + k);
    const __m512 g = pdf16<F>(_mm512_sub_ps(h, vtheta), scale);
    const __mmask16 fired = spikes16<MODE>(h, vtheta, bits_row, k);
    const __m512 gun = _mm512_loadu_ps(gu + k), go = _mm512_loadu_ps(gt + k);
    // ∂u/∂s = −h (hard) or −θ (soft), left out when detached or while ∂L/∂u = 0 (chosen, not
    // multiplied by 0, as in backward_chunk)
    const __mmask16 plain = keep_all | _mm512_cmp_ps_mask(gun, _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __m512 gs = _mm512_mask_blend_ps(plain, _mm512_fnmadd_ps(gun, HARD ? h : vtheta, go), go);
    // gun·(1 − s) + gs·g contracted as GCC does the generic loop's (the first product is exact)
    const __m512 gh = HARD ? _mm512_fmadd_ps(gun, _mm512_maskz_mov_ps(_knot_mask16(fired), one), _mm512_mul_ps(gs, g))
                           : _mm512_fmadd_ps(gs, g, gun);
    _mm512_storeu_ps(gx + k, gh);
    _mm512_storeu_ps(gu + k, _mm512_mul_ps(gh, vbeta));
  }
  for (; k < k1; ++k) {
    const float h = ht[k];
    const float g = Noise<float, F>::pdf(h - theta, scale);
    const float s = St::spike(h, theta, scale, saved_spike<MODE>(bits_row, k));
    const float gh = St::grad_h(gt[k], gu[k], h, s, g, theta, detach);
    gx[k] = gh;
    gu[k] = gh * beta;
  }
}
