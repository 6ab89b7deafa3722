"""helpers/gpu_runtime.py: the GPU's XLA flags are set only for an NVIDIA GPU, only when the
installed jaxlib knows them, never over the user's own, and never too late to be read."""

import os

import jax
import pytest
from jax._src import xla_bridge

from helpers import gpu_runtime
from helpers.gpu_runtime import GPU_FLAGS, nvidia_backend_expected, set_gpu_flags


@pytest.fixture
def backend_not_started(monkeypatch):
    # The test process has started jax's backend long ago; a script calls set_gpu_flags first.
    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: False)


@pytest.mark.parametrize("platforms, expected", [("cpu", False), ("cuda", True), ("gpu,cpu", True), ("tpu", False)])
def test_the_platform_jax_will_use_decides(monkeypatch, platforms, expected):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert nvidia_backend_expected() is expected


def test_off_a_gpu_nothing_is_set(monkeypatch, backend_not_started):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_thunk_runtime=true")
    assert set_gpu_flags() == []
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_use_thunk_runtime=true"


def test_on_a_gpu_the_known_flags_are_added_and_the_users_own_kept(monkeypatch, backend_not_started):
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_triton_gemm_any=false")
    monkeypatch.setattr(gpu_runtime, "GPU_FLAGS", {**GPU_FLAGS, "xla_gpu_no_such_flag": "true"})
    assert set_gpu_flags() == ["--xla_gpu_enable_latency_hiding_scheduler=true"]
    assert os.environ["XLA_FLAGS"] == "--xla_gpu_triton_gemm_any=false --xla_gpu_enable_latency_hiding_scheduler=true"


def test_after_the_backend_started_it_refuses():
    jax.devices()
    with pytest.raises(RuntimeError, match="never read the flags"):
        set_gpu_flags()
