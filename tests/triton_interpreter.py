"""Pytest plugin: the Triton kernels on CPU tensors, run by Triton's interpreter (no GPU needed).

``make check-triton`` installs Triton into ``.venv/triton-3.9.0`` and runs ``test_cuda.py`` with this
plugin::

    PYTHONPATH=.venv/triton-3.9.0 .venv/bin/python -m pytest -p tests.triton_interpreter tests/test_cuda.py

It sets ``TRITON_INTERPRET=1`` before Triton is imported and sends float32/float16/bfloat16 CPU calls
of the fused LIF op to the Triton backend instead of the C++ one. ``test_cuda.py`` then runs on
``NSNN_TEST_DEVICE=cpu`` and skips its four whole-network tests (AMP ResNet, ``fit``, compression,
compile), which need a GPU.
This checks the kernels' arithmetic and control flow, not their compiled CUDA code or their speed.
"""

from __future__ import annotations

import contextlib
import os

os.environ["TRITON_INTERPRET"] = "1"
os.environ["NSNN_TEST_DEVICE"] = "cpu"

# Imported after the environment above: Triton reads TRITON_INTERPRET when it is imported.
import torch

from nsnn.functional import native, ops, triton_lif
from nsnn.noise import Noise

if not triton_lif.is_available():
    raise ImportError("tests.triton_interpreter needs Triton (make check-triton installs it)")

_cuda_device = torch.cuda.device


def _device_or_nothing(device: torch.device | int | str | None) -> contextlib.AbstractContextManager:
    """``torch.cuda.device`` for CUDA devices; nothing to enter for CPU tensors."""
    if isinstance(device, torch.device) and device.type != "cuda":
        return contextlib.nullcontext()
    return _cuda_device(device)


def _triton_supports(x: torch.Tensor, noise: Noise, mode: str) -> bool:
    """Triton for every float32/float16/bfloat16 call with a kernel, on any device."""
    return native.is_enabled() and x.dtype in triton_lif._DTYPES and ops.has_kernel(noise, mode)


torch.cuda.device = _device_or_nothing
triton_lif.supports = _triton_supports
native.supports = lambda x, noise, mode: False
ops.register_backend("cpu", ops.Backend(triton_lif._forward, triton_lif._backward, triton_lif._extra_shape))
