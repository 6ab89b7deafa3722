"""XLA flags for training on an NVIDIA GPU (`--gpu_flags=True` in train.py and bench.py).

JAX's GPU performance guide names them: Triton's matmul emitter for every matmul it supports,
and the latency-hiding scheduler, which overlaps work that waits (collectives, copies) with
work that computes. XLA reads its flags when the backend starts and aborts the process on a
flag it does not know, so each is set only where the backend will be a GPU, only when the
installed jaxlib has it, and only when the user's XLA_FLAGS does not set it already.
`python bench.py --suite=gpu` measures them beside the defaults.
"""

import os
import pkgutil
import re

from helpers.cpu_runtime import jaxlib_knows

GPU_FLAGS = {"xla_gpu_triton_gemm_any": "true", "xla_gpu_enable_latency_hiding_scheduler": "true"}
CUDA_PACKAGE = re.compile(r"jax_cuda\d+_plugin")  # jax[cuda12], jax[cuda13]


def nvidia_backend_expected() -> bool:
    """Whether jax's default backend will be an NVIDIA GPU, told without starting it: the first
    platform JAX_PLATFORMS names, or else whether jax's CUDA runtime is installed."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME")
    if platforms:
        return platforms.split(",")[0].strip().lower() in ("cuda", "gpu")
    return any(CUDA_PACKAGE.fullmatch(module.name) for module in pkgutil.iter_modules())


def set_gpu_flags() -> list[str]:
    """Add GPU_FLAGS to XLA_FLAGS where jax will run on a GPU; the flags added. Call it before
    anything starts jax's backend (jax.devices(), the first array)."""
    from jax._src import (
        xla_bridge,  # importing jax does not start the backend; using it does
    )

    if xla_bridge.backends_are_initialized():
        raise RuntimeError("set_gpu_flags() after jax's backend started: XLA would never read the flags")
    if not nvidia_backend_expected():
        return []
    flags = os.environ.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in GPU_FLAGS.items() if name not in flags and jaxlib_knows(name)]
    os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return added
