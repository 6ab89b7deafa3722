"""components.py: the conv mixer sees only its window of the past, the parallel block adds both
branches of one norm, and ReLU² squares the positive part (decode against the full forward for
each is in test_model.py, beside model.py's own components)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import components
from model import GPTConfig, LayerNorm

CONFIG = GPTConfig(block_size=16, vocab_size=30, n_layer=1, n_head=2, n_embd=8)


def test_a_conv_output_depends_on_its_position_and_the_kernel_size_minus_one_before():
    conv = components.CausalConv(CONFIG, {"kernel_size": 3})
    conv = eqx.tree_at(lambda c: c.kernel, conv, jax.random.normal(jax.random.key(0), conv.kernel.shape))
    conv = eqx.tree_at(lambda c: c.c_proj.weight, conv, jax.random.normal(jax.random.key(1), conv.c_proj.weight.shape))
    x = jax.random.normal(jax.random.key(2), (8, 8))
    reach = np.abs(np.asarray(jax.jacobian(conv)(x))).sum(axis=(1, 3)) > 0  # [t, s]: output t reads input s
    expected = np.array([[t - 3 < s <= t for s in range(8)] for t in range(8)])
    np.testing.assert_array_equal(reach, expected)


def test_the_parallel_block_adds_mixer_and_mlp_of_one_normed_input():
    block = components.ParallelBlock(CONFIG, CONFIG.spec())
    assert block.ln_2 is None and isinstance(block.ln_1, LayerNorm)
    x = jax.random.normal(jax.random.key(0), (8, 8))
    h = block.ln_1(x)
    np.testing.assert_allclose(block(x), x + block.attn(h) + block.mlp(h), rtol=1e-6, atol=1e-6)


def test_relu_squared_squares_the_positive_part():
    mlp = components.ReluSquaredMLP(CONFIG, CONFIG.spec())
    h = jnp.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    np.testing.assert_allclose(mlp.activation(h), [0.0, 0.0, 0.0, 0.25, 9.0])
