import itertools
import math

import jax
import jax.numpy as jnp
import pytest

from helpers import flops
from helpers.flops import device_peak_flops, flops_per_token, measure_matmul_peak
from model import GPTConfig


@pytest.mark.parametrize("kind, dtype, peak, row", [
    ("NVIDIA A100-SXM4-80GB", jnp.bfloat16, 312e12, "A100 SXM/PCIe"),
    ("NVIDIA A100-SXM4-80GB", jnp.float32, 156e12, "A100 SXM/PCIe"),
    ("NVIDIA A100 80GB PCIe", jnp.float16, 312e12, "A100 SXM/PCIe"),
    ("NVIDIA A100 80GB PCIe", jnp.float32, 156e12, "A100 SXM/PCIe"),
    ("NVIDIA H100 80GB HBM3", jnp.bfloat16, 989e12, "H100 SXM"),
    ("NVIDIA H100 80GB HBM3", jnp.float32, 494.5e12, "H100 SXM"),
    ("NVIDIA H100 PCIe", jnp.bfloat16, 756e12, "H100 PCIe"),
    ("NVIDIA H100 PCIe", jnp.float32, 378e12, "H100 PCIe"),
    ("NVIDIA H200", jnp.bfloat16, 989e12, "H200"),
    ("NVIDIA H200", jnp.float32, 494.5e12, "H200"),
])
def test_known_devices_get_their_data_sheet_peak_for_the_dtype(kind, dtype, peak, row):
    found, source = device_peak_flops(dtype, kind=kind)
    assert found == peak
    assert source == f"{row} data sheet, dense {'TF32' if dtype == jnp.float32 else jnp.dtype(dtype).name}"


def test_unknown_devices_are_measured():
    # Measured on jax's own device (here a CPU), whatever kind the table was asked about.
    peak, source = device_peak_flops(jnp.float32, kind="NVIDIA GeForce RTX 4090")
    assert math.isfinite(peak) and peak > 0
    assert source == "measured float32 matmul on NVIDIA GeForce RTX 4090"


@pytest.mark.parametrize("tick, timed_runs", [(1 / 8, 5), (1 / 1024, 50)])  # exact binary fractions
def test_measurement_warms_up_then_times_enough_runs_and_seconds_and_takes_the_best(monkeypatch, tick, timed_runs):
    # A fake clock: the first timed run takes 3 ticks, every later one a tick. So 5 runs at
    # least, and at least 0.05 s of them: with 1/1024 s ticks, 3 + 49 ticks of 50 runs (3 + 48
    # would fall just short).
    clock = itertools.accumulate(itertools.chain([0.0, 3 * tick], itertools.repeat(tick)))
    monkeypatch.setattr(flops, "perf_counter", lambda: next(clock))
    calls, dtypes, real_jit = [], [], jax.jit

    def counting_jit(f):
        compiled = real_jit(f)

        def call(a):
            calls.append(1)
            dtypes.append(a.dtype)
            return compiled(a)
        return call
    monkeypatch.setattr(jax, "jit", counting_jit)
    size = 64
    assert measure_matmul_peak(size, jnp.bfloat16) == 2 * size**3 / tick  # the fastest run
    assert len(calls) == timed_runs + 1  # one untimed run first
    assert set(dtypes) == {jnp.dtype(jnp.bfloat16)}


def test_flops_per_token_for_gpt2_small():
    config = GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024)
    n_params = 123_653_376  # GPT-2 124M without its position embeddings
    # 6 N + 12 L H Q T with L=12 layers, H=12 heads, Q=64 per head, T=1024
    assert flops_per_token(config, n_params) == 6 * 123_653_376 + 12 * 12 * 12 * 64 * 1024 == 855_166_464
