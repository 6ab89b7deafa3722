"""Each piece of the CPU fast path equals the plain piece it replaces, values and gradients."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxprs import equations

from helpers import cpu_fast_path
from helpers.cpu_fast_path import BlockedAttention, FoldedLinear, over_batch, swapped
from model import NORMS, GPT, GPTConfig, Linear

SMALL = GPTConfig(block_size=16, vocab_size=50, n_layer=3, n_head=2, n_embd=32, dropout=0.1)
IDX = jax.random.randint(jax.random.key(6), (4, 16), 0, 50)
KEYS = jax.random.split(jax.random.key(7), 4)
PROBE = jax.random.normal(jax.random.key(8), (4, 16, 50))  # makes the loss depend on every logit


def plain_over_batch(model):
    return jax.vmap(lambda idx, key: model(idx, key=key))


def fast_over_batch(model):  # as the training loss maps the model on a CPU
    fast = swapped(model)
    return over_batch(lambda idx, key: fast(idx, key=key))


def loss(params, static, batched):
    return jnp.sum(batched(eqx.combine(params, static))(IDX, KEYS) * PROBE)


def assert_trees_close(a, b, **tolerance):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tolerance)


@pytest.mark.parametrize("extra", [
    {},
    {"scan_layers": False, "norm": "rmsnorm", "position": "rope", "n_kv_head": 1, "mlp": "relu2", "qk_norm": True,
     "softcap": 5.0, "tie_head": False},
    {"layers": ("conv", "attention", "mixer=attention,window=3"), "block": "parallel", "bias": False},
], ids=["gpt2-like", "unrolled-modern", "mixed-stack"])
def test_the_fast_path_gives_the_plain_models_logits_and_gradients(extra):
    params, static = eqx.partition(GPT(dataclasses.replace(SMALL, **extra), key=jax.random.key(5)), eqx.is_array)
    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=(1, 2))
    (fast, fast_grad), (plain, plain_grad) = (value_and_grad(params, static, b) for b in (fast_over_batch, plain_over_batch))
    np.testing.assert_allclose(fast, plain, rtol=1e-5)
    assert_trees_close(fast_grad, plain_grad, rtol=1e-4, atol=1e-5)


def test_only_model_pys_own_classes_are_swapped():
    class MyLinear(Linear):  # a component of the user's own: left as it is
        pass

    model = GPT(SMALL, key=jax.random.key(0))
    mine = eqx.tree_at(lambda m: m.h.mlp.c_fc, model, MyLinear(1, 1, True))
    swapped = cpu_fast_path.swapped(mine)
    assert type(swapped.h.mlp.c_fc) is MyLinear and type(swapped.h.mlp.c_proj) is FoldedLinear
    assert type(swapped.h.attn) is BlockedAttention and type(swapped.h.attn.c_attn) is FoldedLinear
    assert type(model.h.attn) is not BlockedAttention  # the model itself is untouched


def test_folded_matmuls_and_per_sequence_positions_change_the_gradients_program():
    params, static = eqx.partition(GPT(SMALL, key=jax.random.key(5)), eqx.is_array)

    def gradient_equations(batched, name):
        return equations(lambda p: jax.grad(loss)(p, static, batched), params, name=name)

    # A weight matmul is a dot_general without batch axes (attention's per-head ones have them).
    # Under a plain vmap the weight gradients contract over (B, T); folded, over one axis.
    def contracted_axes(batched):
        return {len(e.params["dimension_numbers"][0][0]) for e in gradient_equations(batched, "dot_general")
                if not e.params["dimension_numbers"][1][0]}

    assert contracted_axes(plain_over_batch) == {1, 2} and contracted_axes(fast_over_batch) == {1}
    # The two tables' gradients are scatter-adds. A plain vmap looks the positions up once, so
    # the position table's updates are (T, C), summed over the batch first; per sequence, (B, T, C).
    def update_ranks(batched):
        return sorted(e.invars[2].aval.ndim for e in gradient_equations(batched, "scatter-add"))

    assert update_ranks(plain_over_batch) == [2, 3] and update_ranks(fast_over_batch) == [3, 3]


def test_folding_with_one_weight_matrix_per_row_is_the_ordinary_vmap():
    x = jax.random.normal(jax.random.key(8), (3, 5, 4))
    w = jax.random.normal(jax.random.key(9), (3, 6, 4))  # a vmap over models, not only sequences
    np.testing.assert_allclose(jax.vmap(cpu_fast_path._fold_rows)(x, w), jnp.einsum("bti,boi->bto", x, w), rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda x: cpu_fast_path._fold_rows(x, w[0]))(x), x @ w[0].T, rtol=1e-5)


@pytest.mark.parametrize("name", ["layernorm", "rmsnorm"])
def test_the_written_out_norm_gradient_is_autodiffs(name):
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 8, 32))
    probe = jax.random.normal(jax.random.key(1), (4, 8, 32))
    for eps in (1e-5, 10.0):  # a large eps makes its part of the gradient visible
        plain = NORMS[name](GPTConfig(n_embd=32, n_head=2, bias=True), {"eps": eps})
        plain = eqx.tree_at(lambda n: n.weight, plain, jax.random.normal(jax.random.key(2), (32,)))
        fast = cpu_fast_path.swapped(plain)
        assert type(fast) is not type(plain)
        grads = [jax.grad(lambda n, x: (jax.vmap(n)(x) * probe).sum(), argnums=(0, 1))(n, x) for n in (fast, plain)]
        np.testing.assert_allclose(jax.vmap(fast)(x), jax.vmap(plain)(x), rtol=1e-5, atol=1e-6)
        assert_trees_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
        assert float(jnp.abs(grads[0][1]).max()) > 1e-3  # not trivially equal


# T=150 spans two blocks of 128 queries; T=16 four blocks of 5, the last of one query.
@pytest.mark.parametrize("T, query_block", [(150, 128), (16, 5)], ids=["blocks-of-128", "blocks-of-5"])
@pytest.mark.parametrize("window, kv_heads", [(0, 4), (0, 2), (5, 4)], ids=["mha", "gqa", "window"])
def test_blocked_attention_is_the_fused_kernels(window, kv_heads, T, query_block, monkeypatch):
    monkeypatch.setattr(cpu_fast_path, "QUERY_BLOCK", query_block)
    config = GPTConfig(block_size=T, vocab_size=50, n_layer=1, n_head=4, n_embd=64, n_kv_head=kv_heads, window=window)
    plain = GPT(config, key=jax.random.key(1)).blocks()[0].attn
    blocked = cpu_fast_path.swapped(plain)
    q, k, v = (jax.random.normal(jax.random.key(i), (T, h, 16)) for i, h in enumerate((4, kv_heads, kv_heads)))
    probe = jax.random.normal(jax.random.key(9), q.shape)

    @jax.jit
    def value_and_grads(attention, q, k, v):
        return jax.value_and_grad(lambda *qkv: jnp.sum(attention.causal_attention(*qkv) * probe), argnums=(0, 1, 2))(q, k, v)

    (value, grads), (plain_value, plain_grads) = (value_and_grads(a, q, k, v) for a in (blocked, plain))
    np.testing.assert_allclose(value, plain_value, rtol=1e-5, atol=1e-4)
    assert_trees_close(grads, plain_grads, rtol=1e-4, atol=1e-5)
