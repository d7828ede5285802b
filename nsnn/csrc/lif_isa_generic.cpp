// Kernels compiled for the baseline instruction set of the build (SSE2 on x86-64, NEON on arm64).
#include "lif_common.h"

#define NSNN_ISA generic
#include "lif_kernels.h"

namespace nsnn_native {

const KernelSet* kernels_generic() {
  static const KernelSet set{"generic", &generic::forward<float>, &generic::backward<float>,
                             &generic::forward<double>, &generic::backward<double>};
  return &set;
}

}  // namespace nsnn_native
