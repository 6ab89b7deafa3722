"""Model FLOPs and the hardware peak they are compared against (MFU)."""

import time

import jax
import jax.numpy as jnp

from model import GPTConfig

# Dense bf16 peaks from the vendors' data sheets; matched against jax's device_kind.
KNOWN_PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def flops_per_token(config: GPTConfig, n_params_non_embedding: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B as nanoGPT uses it:
    6 per parameter per token, plus attention's 12 * layers * heads * head_size * T."""
    head_size = config.n_embd // config.n_head
    return 6 * n_params_non_embedding + 12 * config.n_layer * config.n_head * head_size * config.block_size


def measure_matmul_peak(size: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """FLOP/s of the best of several large square matmuls: what this device actually sustains."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda a: a @ a)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def device_peak_flops(dtype=jnp.float32) -> tuple[float, str]:
    """(peak FLOP/s, where that number came from): a data-sheet figure for known accelerators,
    otherwise a measurement on this device."""
    kind = jax.devices()[0].device_kind
    for name, peak in KNOWN_PEAKS.items():
        if name in kind:
            return peak, f"{kind} data sheet"
    return measure_matmul_peak(dtype=dtype), f"measured {jnp.dtype(dtype).name} matmul on {kind}"
