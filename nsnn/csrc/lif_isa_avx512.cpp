// float32 kernels for x86-64 CPUs with AVX-512 F/DQ/BW/VL (chosen at import only when present).
#include "lif_common.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns that the _mm512_undefined_* inside AVX-512 intrinsics "may be used uninitialized"
// wherever they are inlined (GCC bug 105593, fixed in GCC 13): a false positive, silenced here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi,bmi2,popcnt,f16c,prefer-vector-width=512")
#define NSNN_ISA avx512
#define NSNN_AVX512BW 1  // lif_kernels.h: spike bits through mask registers, the SIMD rows of lif_avx512.h
#include "lif_kernels.h"
#pragma GCC pop_options

namespace nsnn_native {
const KernelSet* kernels_avx512() {
  static const KernelSet set{"avx512", &avx512::forward<float>, &avx512::backward<float>, nullptr, nullptr};
  return &set;
}
}  // namespace nsnn_native
#else
namespace nsnn_native {
const KernelSet* kernels_avx512() { return nullptr; }
}  // namespace nsnn_native
#endif
