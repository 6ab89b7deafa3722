"""Model FLOPs and the hardware peak they are compared against (MFU)."""

from time import perf_counter

import jax
import jax.numpy as jnp

from model import GPTConfig

# Dense (no sparsity) tensor-core peaks in FLOP/s from NVIDIA's data sheets, per dtype. Keys
# are matched in order as substrings of jax's device_kind ("NVIDIA H100 80GB HBM3" is the SXM
# part, "NVIDIA H100 PCIe" the PCIe one), so the PCIe row must come before the generic H100.
# float32 is the TF32 figure: on Ampere and newer, jax's default matmul precision runs fp32
# matmuls on TF32 tensor cores. fp16 runs as fast as bf16.
DATA_SHEET_PEAKS = {
    "H100 PCIe": ("H100 PCIe", {"bfloat16": 756e12, "float16": 756e12, "float32": 378e12}),
    "H100": ("H100 SXM", {"bfloat16": 989e12, "float16": 989e12, "float32": 494.5e12}),
    "H200": ("H200", {"bfloat16": 989e12, "float16": 989e12, "float32": 494.5e12}),
    "A100": ("A100 SXM/PCIe", {"bfloat16": 312e12, "float16": 312e12, "float32": 156e12}),
}


def flops_per_token(config: GPTConfig, n_params_non_embedding: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B as nanoGPT uses it:
    6 per parameter per token, plus attention's 12 * layers * heads * head_size * T."""
    head_size = config.n_embd // config.n_head
    return 6 * n_params_non_embedding + 12 * config.n_layer * config.n_head * head_size * config.block_size


def measure_matmul_peak(
    size: int | None = None, dtype=jnp.float32, min_runs: int = 5, min_seconds: float = 0.05
) -> float:
    """FLOP/s of the fastest of many large square matmuls in `dtype`: what this device actually
    sustains. Timing goes on until it has at least `min_runs` runs and `min_seconds` of them,
    so one slow run (another process, a frequency change) does not set the figure. Every
    training run measures it at start-up, so it is kept short: by default 1024-wide matmuls on
    a CPU, which already run there at full speed (docs/performance.md), and 2048-wide ones on an
    accelerator, where smaller ones would be held back by the cost of launching them."""
    if size is None:
        size = 1024 if jax.default_backend() == "cpu" else 2048
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda a: a @ a)
    matmul(a).block_until_ready()  # compiles, and runs once untimed (first-touch allocations)
    times = []
    while len(times) < min_runs or sum(times) < min_seconds:
        start = perf_counter()
        matmul(a).block_until_ready()
        times.append(perf_counter() - start)
    return 2 * size**3 / min(times)


def device_peak_flops(dtype=jnp.float32, kind: str | None = None) -> tuple[float, str]:
    """(peak FLOP/s for matmuls in `dtype`, where that number came from): the data-sheet figure
    for a known accelerator, otherwise a measurement on this device. `kind` is a device_kind
    string, by default that of jax's first device."""
    kind = kind or jax.devices()[0].device_kind
    name = jnp.dtype(dtype).name
    row, peaks = next((entry for match, entry in DATA_SHEET_PEAKS.items() if match in kind), (None, {}))
    if name in peaks:
        return peaks[name], f"{row} data sheet, dense {'TF32' if name == 'float32' else name}"
    return measure_matmul_peak(dtype=dtype), f"measured {name} matmul on {kind}"
