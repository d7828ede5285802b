// float32 kernels for x86-64 CPUs with AVX2 + FMA (chosen at import only when the CPU has them).
#include "lif_common.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,popcnt,f16c")
#define NSNN_ISA avx2
#define NSNN_AVX2 1  // lif_kernels.h: the SIMD rows of lif_avx2.h
#include "lif_kernels.h"
#pragma GCC pop_options

namespace nsnn_native {
const KernelSet* kernels_avx2() {
  static const KernelSet set{"avx2", &avx2::forward<float>, &avx2::backward<float>, nullptr, nullptr};
  return &set;
}
}  // namespace nsnn_native
#else
namespace nsnn_native {
const KernelSet* kernels_avx2() { return nullptr; }
}  // namespace nsnn_native
#endif
