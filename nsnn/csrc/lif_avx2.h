// AVX2 intrinsics for the hottest loops of the float32 kernels: one step of a bernoulli row in the
// forward, with its uniforms drawn in the same loop, and the backward's replay and (two families)
// reverse steps.
//
// Included by lif_kernels.h in the AVX2 unit only (NSNN_AVX2), inside its namespace. Each function
// computes what the generic code it replaces computes, bit for bit (checked against the previous
// build for every family, mode, reset, detach_reset and several shapes): the same xoshiro128++ words,
// the same screen, and the same float32 formulas written with the same operations in the same order
// (exp_core included; FMAs where GCC contracts the generic code).
//
// Forward (bernoulli_step_simd replaces Uniform<float>::fill + screened_step or the plain loop of
// forward_chunk). GCC's auto-vectorized version ran at about 1.5x this time on AVX2: its 64-neuron
// blocks, unrolled, spilled most of the constants to the stack, its clamps became compare + blend (it
// may not turn `a > c ? c : a` into a min without -ffast-math), and it decided every draw of a block
// exactly when one draw fell inside the screen's band. Here a block of 64 neurons is 8 vectors of 8,
// one per group of 8 of the 64 generator lanes, and
//
//   * the gaussian screen compares the integer w >> 8 (exact in float32) with the screen scaled by
//     2^24 (its coefficients and band times 2^24: exact, so every comparison is that of the generic
//     code on v = (w >> 8)·2^-24), and only the draws inside the band are then decided exactly;
//   * the spikes go straight into the packed bits (one movemask per 8 neurons), where the generic
//     code writes bytes and packs them after the row.
//
// Backward: the replay (replay_simd) reads the saved bits directly instead of unpacking them to bytes
// first; the reverse step (reverse_simd) runs here only where that measured faster (kReverseSimd).

#ifndef NSNN_AVX2
#error "lif_avx2.h is part of the AVX2 unit (lif_isa_avx2.cpp)"
#endif

// Next 8 words of generator lanes [l, l + 8) of g (Uniform<float>::fill's xoshiro128++ step).
inline __m256i next_words8(Uniform<float>& g, int64_t l) {
  __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.s0 + l));
  __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.s1 + l));
  __m256i x2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.s2 + l));
  __m256i x3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(g.s3 + l));
  const __m256i sum = _mm256_add_epi32(x0, x3);
  const __m256i out = _mm256_add_epi32(_mm256_or_si256(_mm256_slli_epi32(sum, 7), _mm256_srli_epi32(sum, 25)), x0);
  const __m256i shifted = _mm256_slli_epi32(x1, 9);
  x2 = _mm256_xor_si256(x2, x0);
  x3 = _mm256_xor_si256(x3, x1);
  x1 = _mm256_xor_si256(x1, x2);
  x0 = _mm256_xor_si256(x0, x3);
  x2 = _mm256_xor_si256(x2, shifted);
  x3 = _mm256_or_si256(_mm256_slli_epi32(x3, 11), _mm256_srli_epi32(x3, 21));
  _mm256_store_si256(reinterpret_cast<__m256i*>(g.s0 + l), x0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(g.s1 + l), x1);
  _mm256_store_si256(reinterpret_cast<__m256i*>(g.s2 + l), x2);
  _mm256_store_si256(reinterpret_cast<__m256i*>(g.s3 + l), x3);
  return out;
}

// The exact decisions u < cdf(d) of fires<float, F> for 8 neurons of the triangular or uniform family
// (d = h − θ, v the uniforms in [0, 1)), as a mask.
template <int F>
inline __m256 fires8(__m256 d, __m256 v, const Scale<float>& k) {
  const __m256 one = _mm256_set1_ps(1.0f);
  if constexpr (F == kTriangular) {
    __m256 zc = _mm256_mul_ps(d, _mm256_set1_ps(k.inv));
    zc = _mm256_min_ps(one, _mm256_max_ps(_mm256_set1_ps(-1.0f), zc));
    const __m256 a = _mm256_add_ps(one, zc), b = _mm256_sub_ps(one, zc);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 lower = _mm256_mul_ps(half, _mm256_mul_ps(a, a));
    const __m256 upper = _mm256_fnmadd_ps(half, _mm256_mul_ps(b, b), one);
    const __m256 c = _mm256_blendv_ps(upper, lower, _mm256_cmp_ps(zc, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_cmp_ps(v, c, _CMP_LT_OQ);
  } else {
    static_assert(F == kUniform, "the gaussian and logistic families decide through their screens");
    // cdf = clamp(d/(2σ) + ½, 0, 1); the clamps change no decision (v lies in [0, 1)), so they are left out.
    const __m256 c = _mm256_fmadd_ps(d, _mm256_set1_ps(k.half_inv), _mm256_set1_ps(0.5f));
    return _mm256_cmp_ps(v, c, _CMP_LT_OQ);
  }
}

// One step of a bernoulli row of n neurons: Uniform<float>::fill(n, ·) and the generic row (same
// arguments, plus the generator g; the spikes go to the packed row bits_row when SAVE).
template <int F, bool HARD, bool SAVE>
inline void bernoulli_step_simd(int64_t n, float beta, float theta, const Scale<float>& scale,
                                const float* __restrict xt, Uniform<float>& g, float* __restrict u,
                                float* __restrict ot, float* __restrict hs, uint8_t* __restrict bits_row) {
  using Sc = Screen<float, kGaussian>;
  using St = Step<float, F, kBernoulli, HARD>;
  static_assert(Uniform<float>::kLanes == 64, "a block of 64 neurons is one pass over the lanes");
  constexpr int64_t kBlock = 64;
  constexpr float kScale = 16777216.0f;  // 2^24
  const __m256 vbeta = _mm256_set1_ps(beta), vtheta = _mm256_set1_ps(theta), vinv = _mm256_set1_ps(scale.inv);
  const __m256 one = _mm256_set1_ps(1.0f), unit = _mm256_set1_ps(5.9604644775390625e-8f);  // 2^-24
  alignas(32) uint32_t words[kBlock];
  int64_t b = 0;
  for (; b + kBlock <= n; b += kBlock) {
    uint64_t fired = 0, unsure = 0;
    for (int64_t j = 0; j < kBlock; j += 8) {
      const int64_t k = b + j;
      const __m256i w = next_words8(g, j);
      const __m256 wv = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 8));  // the uniform times 2^24
      const __m256 h = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(u + k), _mm256_loadu_ps(xt + k));
      // below: fires for sure (screened families) or exactly; decided: the screen was sure either way
      __m256 below, decided;
      if constexpr (F == kLogistic) {
        using Fp = Fn<float>;
        const __m256 d = _mm256_sub_ps(h, vtheta);
        const __m256 x = _mm256_max_ps(_mm256_set1_ps(-87.0f), _mm256_mul_ps(_mm256_or_ps(d, _mm256_set1_ps(-0.0f)), vinv));
        const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(Fp::kLog2e), _mm256_set1_ps(Fp::kRound));
        const __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(Fp::kRound));
        const __m256 f = _mm256_fmsub_ps(x, _mm256_set1_ps(Fp::kLog2e), n);
        __m256 p = _mm256_set1_ps(LogisticScreen::kP[0]);
        for (int i = 1; i < 4; ++i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(LogisticScreen::kP[i]));
        const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127 - 0x4B400000)), 23);
        const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
        const __m256 rhs = _mm256_blendv_ps(e, one, _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_GE_OQ));
        const __m256 m = _mm256_fmsub_ps(_mm256_mul_ps(wv, unit), _mm256_add_ps(one, e), rhs);
        const __m256 band = _mm256_set1_ps(LogisticScreen::kBand);
        below = _mm256_cmp_ps(m, _mm256_xor_ps(band, _mm256_set1_ps(-0.0f)), _CMP_LT_OQ);
        decided = _mm256_or_ps(below, _mm256_cmp_ps(m, band, _CMP_GT_OQ));
      } else if constexpr (F == kGaussian) {
        __m256 z = _mm256_mul_ps(_mm256_sub_ps(h, vtheta), vinv);
        z = _mm256_max_ps(_mm256_set1_ps(-Sc::kClamp), _mm256_min_ps(_mm256_set1_ps(Sc::kClamp), z));  // NaN stays
        const __m256 z2 = _mm256_mul_ps(z, z);
        __m256 q = _mm256_set1_ps(Sc::kQ[0] * kScale);
        for (int i = 1; i <= Sc::kDegree; ++i) q = _mm256_fmadd_ps(q, z2, _mm256_set1_ps(Sc::kQ[i] * kScale));
        const __m256 p = _mm256_fmadd_ps(z, q, _mm256_set1_ps(0.5f * kScale));
        const __m256 band = _mm256_set1_ps(Sc::kBand * kScale);
        below = _mm256_cmp_ps(wv, _mm256_sub_ps(p, band), _CMP_LT_OQ);
        decided = _mm256_or_ps(below, _mm256_cmp_ps(wv, _mm256_add_ps(p, band), _CMP_GE_OQ));
      } else {
        below = fires8<F>(_mm256_sub_ps(h, vtheta), _mm256_mul_ps(wv, unit), scale);
      }
      if constexpr (kScreenedSimd<F>) {  // keep the words for the draws the screen left undecided
        _mm256_store_si256(reinterpret_cast<__m256i*>(words + j), w);
        unsure |= static_cast<uint64_t>(~_mm256_movemask_ps(decided) & 0xFF) << j;
      }
      const __m256 s = _mm256_and_ps(below, one);
      _mm256_storeu_ps(ot + k, s);
      if constexpr (HARD) {
        _mm256_storeu_ps(u + k, _mm256_andnot_ps(below, h));
      } else {
        _mm256_storeu_ps(u + k, _mm256_fnmadd_ps(vtheta, s, h));
        if constexpr (kScreenedSimd<F>) _mm256_storeu_ps(hs + k, h);
      }
      fired |= static_cast<uint64_t>(_mm256_movemask_ps(below)) << j;
    }
    if constexpr (kScreenedSimd<F>) {  // the draws inside the band, decided exactly
      for (; unsure != 0; unsure &= unsure - 1) {
        const int j = __builtin_ctzll(unsure);
        const int64_t k = b + j;
        const float h = HARD ? u[k] : hs[k];
        if (fires<float, F>(h - theta, Uniform<float>::value(words[j]), scale)) {
          ot[k] = 1.0f;
          u[k] = St::reset(h, theta, 1.0f);
          fired |= uint64_t{1} << j;
        }
      }
    }
    if constexpr (SAVE) std::memcpy(bits_row + b / 8, &fired, 8);
  }
  if (b < n) {  // the last, partial block; all 64 lanes advance, as in fill
    for (int64_t j = 0; j < kBlock; j += 8) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(words + j), next_words8(g, j));
    }
    bernoulli_tail<F, HARD, SAVE>(b, n, beta, theta, scale, xt, words, u, ot, bits_row);
  }
}

// Whether the reverse step of backward_chunk runs here (reverse_simd) for family F: for the
// triangular and uniform families, whose PDFs are a few selects (backward 9-20 % faster at
// [4, 32, 128, 16, 16] and [32, 16, 4096], 2 threads, both builds loaded in one process). The
// gaussian and logistic PDFs need an exp, and GCC's own vectorization of the generic loop, unrolled,
// was 3-10 % faster than these intrinsics there.
template <int F>
constexpr bool kReverseSimd = F == kTriangular || F == kUniform;

// Noise<float, F>::pdf for 8 values of d = h − θ (the surrogate gradient; same operations).
template <int F>
inline __m256 pdf8(__m256 d, const Scale<float>& k) {
  static_assert(kReverseSimd<F>, "the gaussian and logistic PDFs run in the generic loop");
  const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), d);
  if constexpr (F == kTriangular) {  // max(0, 1 − |d|/σ)/σ
    const __m256 inv = _mm256_set1_ps(k.inv);
    const __m256 v = _mm256_fnmadd_ps(magnitude, inv, _mm256_set1_ps(1.0f));
    return _mm256_andnot_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ), _mm256_mul_ps(v, inv));
  } else {  // 1/(2σ) on |d| ≤ σ
    return _mm256_and_ps(_mm256_cmp_ps(magnitude, _mm256_set1_ps(k.sigma), _CMP_LE_OQ), _mm256_set1_ps(k.half_inv));
  }
}

// Spikes k..k+7 of a packed row as a mask (bit j of byte k/8 is spike k + j).
inline __m256 spike_mask8(const uint8_t* bits_row, int64_t k) {
  const __m256i lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i byte = _mm256_set1_epi32(bits_row[k / 8]);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(byte, lanes), lanes));
}

// Spikes of 8 replayed membranes: the saved bits (bernoulli) or h > θ (heaviside).
template <int MODE>
inline __m256 replayed_spikes8(__m256 h, __m256 vtheta, const uint8_t* bits_row, int64_t k) {
  static_assert(MODE == kBernoulli || MODE == kHeaviside, "the expected mode runs the generic kernel");
  if constexpr (MODE == kBernoulli) {
    return spike_mask8(bits_row, k);
  } else {
    return _mm256_cmp_ps(h, vtheta, _CMP_GT_OQ);
  }
}

// Neurons [k0, k1) of one replay step of backward_chunk (k0 a multiple of 8): h = β·u + x into ht,
// u ← reset. Returns whether some |h| lies beyond far. The last k1 mod 8 neurons go one by one
// (Step::replay).
template <int F, int MODE, bool HARD>
inline int replay_simd(int64_t k0, int64_t k1, float beta, float theta, float far, const Scale<float>& scale,
                       const float* __restrict xt, const uint8_t* __restrict bits_row, float* __restrict u,
                       float* __restrict ht) {
  using St = Step<float, F, MODE, HARD>;
  const __m256 vbeta = _mm256_set1_ps(beta), vtheta = _mm256_set1_ps(theta), one = _mm256_set1_ps(1.0f);
  const __m256 vfar = _mm256_set1_ps(far), nfar = _mm256_set1_ps(-far);
  __m256 beyond = _mm256_setzero_ps();
  int64_t k = k0;
  for (; k + 8 <= k1; k += 8) {
    const __m256 h = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(u + k), _mm256_loadu_ps(xt + k));
    _mm256_storeu_ps(ht + k, h);
    beyond = _mm256_or_ps(beyond, _mm256_or_ps(_mm256_cmp_ps(h, vfar, _CMP_GT_OQ), _mm256_cmp_ps(h, nfar, _CMP_LT_OQ)));
    const __m256 fired = replayed_spikes8<MODE>(h, vtheta, bits_row, k);
    if constexpr (HARD) {
      _mm256_storeu_ps(u + k, _mm256_andnot_ps(fired, h));
    } else {
      _mm256_storeu_ps(u + k, _mm256_fnmadd_ps(vtheta, _mm256_and_ps(fired, one), h));
    }
  }
  int far_seen = _mm256_movemask_ps(beyond) != 0 ? 1 : 0;
  for (; k < k1; ++k) {
    const float h = St::replay(beta, theta, scale, xt[k], saved_spike<MODE>(bits_row, k), u[k]);
    ht[k] = h;
    far_seen |= ((h > far) | (h < -far)) ? 1 : 0;
  }
  return far_seen;
}

// Neurons [k0, k1) of one reverse step of backward_chunk without the decay's sum and without clamps
// (no |h| beyond far in the slice): ∂L/∂x_t from ∂L/∂s_t (gt), the replayed h (ht) and ∂L/∂u_t (gu,
// updated to ∂L/∂u_{t−1}). The last k1 mod 8 neurons go one by one
// (Step::grad_h).
template <int F, int MODE, bool HARD>
inline void reverse_simd(int64_t k0, int64_t k1, float beta, float theta, bool detach, const Scale<float>& scale,
                         const float* __restrict gt, const float* __restrict ht, const uint8_t* __restrict bits_row,
                         float* __restrict gu, float* __restrict gx) {
  using St = Step<float, F, MODE, HARD>;
  const __m256 vbeta = _mm256_set1_ps(beta), vtheta = _mm256_set1_ps(theta), one = _mm256_set1_ps(1.0f);
  const __m256 keep_all = detach ? _mm256_castsi256_ps(_mm256_set1_epi32(-1)) : _mm256_setzero_ps();
  int64_t k = k0;
#pragma GCC unroll 2
  for (; k + 8 <= k1; k += 8) {
    const __m256 h = _mm256_loadu_ps(ht + k);
    const __m256 g = pdf8<F>(_mm256_sub_ps(h, vtheta), scale);
    const __m256 s = _mm256_and_ps(replayed_spikes8<MODE>(h, vtheta, bits_row, k), one);
    const __m256 gun = _mm256_loadu_ps(gu + k), go = _mm256_loadu_ps(gt + k);
    // ∂u/∂s = −h (hard) or −θ (soft), left out when detached or while ∂L/∂u = 0 (chosen, not
    // multiplied by 0, as in backward_chunk)
    const __m256 plain = _mm256_or_ps(keep_all, _mm256_cmp_ps(gun, _mm256_setzero_ps(), _CMP_EQ_OQ));
    const __m256 gs = _mm256_blendv_ps(_mm256_fnmadd_ps(gun, HARD ? h : vtheta, go), go, plain);
    // gun·(1 − s) + gs·g contracted as GCC does the generic loop's (the first product is exact)
    const __m256 gh = HARD ? _mm256_fmadd_ps(gun, _mm256_sub_ps(one, s), _mm256_mul_ps(gs, g))
                           : _mm256_fmadd_ps(gs, g, gun);
    _mm256_storeu_ps(gx + k, gh);
    _mm256_storeu_ps(gu + k, _mm256_mul_ps(gh, vbeta));
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
