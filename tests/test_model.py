import dataclasses
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.optim import lr_schedule, make_optimizer
import model as model_module
from helpers.training import make_step
from model import (
    MIXERS, NORMS, REMAT_POLICIES, GPT, CausalConv, CausalSelfAttention, GPTConfig, attend, causal_mask, normalize,
    over_batch, project, swiglu_hidden,
)

SMALL = GPTConfig(block_size=16, vocab_size=50, n_layer=3, n_head=2, n_embd=32)


def test_logits_shape_and_causality():
    model = eqx.filter_jit(GPT(SMALL, key=jax.random.key(0)))
    idx = jnp.arange(16) % 50
    logits = model(idx)
    assert logits.shape == (16, 50) and logits.dtype == jnp.float32
    for t in range(15):
        changed = model(idx.at[t + 1].set((idx[t + 1] + 1) % 50))
        np.testing.assert_array_equal(changed[: t + 1], logits[: t + 1])
        assert not np.allclose(changed[t + 1], logits[t + 1])


def test_gpt2_parameter_counts():
    config = GPTConfig(vocab_size=50257, block_size=1024, bias=True, mlp="gelu")
    model = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    assert model.get_num_params(non_embedding=False) == 124_439_808
    assert model.get_num_params() == 123_653_376


def test_swiglu_matches_gelu_weight_count():
    assert swiglu_hidden(768) == 2048
    for n_embd in (96, 384, 768):
        gelu = GPTConfig(n_embd=n_embd, n_head=2, bias=False, mlp="gelu")
        swiglu = GPTConfig(n_embd=n_embd, n_head=2, bias=False, mlp="swiglu")
        count = lambda c: eqx.filter_eval_shape(GPT, c, key=jax.random.key(0)).get_num_params()  # noqa: E731
        assert count(gelu) == count(swiglu)


def test_init_statistics_and_distinct_blocks():
    config = GPTConfig(block_size=64, vocab_size=512, n_layer=4, n_head=4, n_embd=256, bias=True)
    model = GPT(config, key=jax.random.key(0))
    assert abs(float(model.wte.weight.std()) - 0.02) < 0.001
    assert abs(float(model.wpe.weight.std()) - 0.02) < 0.002
    assert abs(float(model.h.attn.c_attn.weight.std()) - 0.02) < 0.001
    residual = 0.02 / math.sqrt(2 * config.n_layer)
    for weight in (model.h.attn.c_proj.weight, model.h.mlp.c_proj.weight):
        assert abs(float(weight.std()) - residual) < 0.0005
    assert float(jnp.abs(model.h.attn.c_attn.bias).max()) == 0.0
    assert float(jnp.abs(model.h.ln_1.weight - 1).max()) == 0.0
    weights = model.h.mlp.c_fc.weight
    for a in range(config.n_layer):
        for b in range(a + 1, config.n_layer):
            assert not np.allclose(weights[a], weights[b])


def test_head_stays_tied_after_an_update():
    model = GPT(SMALL, key=jax.random.key(0))
    # No separate head array exists: the only (V, C) matrix is wte's.
    shapes = [x.shape for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]
    assert shapes.count((SMALL.vocab_size, SMALL.n_embd)) == 1
    optimizer = make_optimizer(lr_schedule(1e-2, 0, 10, 1e-3, True), 0.1, 0.9, 0.95, 1.0)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    x = jnp.arange(32).reshape(1, 2, 16) % 50
    before = np.array(model.wte.weight)  # make_step donates (reuses) the old buffers
    model, _, _ = make_step(model, opt_state, x, x, jax.random.key(1), optimizer)
    assert not np.allclose(model.wte.weight, before)
    idx = jnp.arange(16) % 50
    # Recompute the final hidden state and apply the updated wte as the head by hand.
    hidden = {}
    probe = eqx.tree_at(lambda m: m.ln_f, model, replace_fn=lambda ln: _Recorder(ln, hidden))
    probe(idx)
    np.testing.assert_allclose(model(idx), hidden["x"] @ model.wte.weight.T, rtol=1e-5, atol=1e-5)


class _Recorder(eqx.Module):
    """Stands in for ln_f and keeps its output, so the test can apply the head by hand."""

    ln: eqx.Module
    store: dict = eqx.field(static=True)

    def __call__(self, x):
        y = self.ln(x)
        self.store["x"] = y
        return y


def test_dropout_is_deterministic_given_a_key_and_off_in_inference():
    config = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, dropout=0.2)
    model = GPT(config, key=jax.random.key(0))
    idx = jnp.arange(16) % 50
    a = model(idx, key=jax.random.key(1))
    np.testing.assert_array_equal(a, model(idx, key=jax.random.key(1)))
    assert not np.allclose(a, model(idx, key=jax.random.key(2)))
    inference = eqx.nn.inference_mode(model)
    np.testing.assert_array_equal(inference(idx), inference(idx))
    with pytest.raises(RuntimeError, match="key"):
        model(idx)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd=30 is not divisible by n_head=4"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"n_layer": 0}, "n_layer must be a positive integer"),
        ({"mlp": "relu"}, "valid names: gelu, swiglu"),
        ({"remat": "some"}, "unknown remat 'some'; valid names: none, dots, full"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_sequence_longer_than_block_size_is_rejected():
    model = GPT(SMALL, key=jax.random.key(0))
    with pytest.raises(ValueError, match="exceeds block_size=16"):
        model(jnp.zeros(17, jnp.int32))


# One variant per component (and a few combinations): every test below runs on each.
VARIANTS = {
    "gpt2": dict(mlp="gelu", bias=True),
    "swiglu": dict(mlp="swiglu"),
    "rmsnorm-rope-gqa": dict(norm="rmsnorm", position="rope", n_kv_head=2),
    "multi-query": dict(n_kv_head=1, position="none"),
    "window": dict(window=5),
    "parallel": dict(block="parallel"),
    "conv": dict(mixer="conv"),
    "hybrid": dict(layers=("attention", "conv", "mixer=attention,window=4,mlp=gelu")),
}


def variant(name: str, **extra) -> GPT:
    config = GPTConfig(block_size=24, vocab_size=50, n_layer=3, n_head=4, n_embd=32, **VARIANTS[name] | extra)
    return GPT(config, key=jax.random.key(0))


@pytest.mark.parametrize("name", VARIANTS)
def test_every_component_is_causal_and_shape_correct(name):
    model = variant(name)
    idx = jax.random.randint(jax.random.key(1), (24,), 0, 50)
    logits = model(idx)
    assert logits.shape == (24, 50) and np.isfinite(logits).all()
    for t in (0, 7, 22):
        changed = model(idx.at[t + 1].set((idx[t + 1] + 1) % 50))
        np.testing.assert_allclose(changed[: t + 1], logits[: t + 1], atol=1e-6)
        assert not np.allclose(changed[t + 1], logits[t + 1])


@pytest.mark.parametrize("name", VARIANTS)
def test_decode_with_a_cache_equals_the_full_forward(name):
    model = variant(name)
    idx = jax.random.randint(jax.random.key(1), (20,), 0, 50)
    # A 12-token prefill into an empty cache, then one token at a time.
    logits, cache = model.decode(idx[:12], model.empty_cache(), jnp.int32(0))
    steps = [logits]
    for pos in range(12, 20):
        logits, cache = model.decode(idx[pos:pos + 1], cache, jnp.int32(pos))
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps), model(idx), atol=1e-5)


def test_a_window_limits_how_far_back_a_position_sees():
    model = variant("window")  # window=5: position t sees t-4 .. t
    idx = jax.random.randint(jax.random.key(1), (24,), 0, 50)
    # One layer of window 5 reaches 4 back; three layers reach 12 back, and no further.
    far = model(idx.at[3].set((idx[3] + 1) % 50))
    np.testing.assert_allclose(far[16:], model(idx)[16:], atol=1e-6)
    assert not np.allclose(far[15], model(idx)[15])


def test_llama_width_rule():
    assert swiglu_hidden(4096, multiple_of=256) == 11008
    assert swiglu_hidden(288, multiple_of=32) == 768  # llama2.c's 15M model
    assert swiglu_hidden(768) == 2048


def test_a_hybrid_attention_conv_stack_trains():
    config = GPTConfig(block_size=16, vocab_size=30, n_layer=4, n_head=2, n_embd=32,
                       layers=("attention", "conv", "attention", "conv"))
    optimizer = make_optimizer(lr_schedule(3e-3, 5, 40, 3e-4, True), 0.1, 0.9, 0.95, 1.0)
    model = GPT(config, key=jax.random.key(0))
    assert isinstance(model.h, tuple) and [type(b.attn).__name__ for b in model.h] == \
        ["CausalSelfAttention", "CausalConv", "CausalSelfAttention", "CausalConv"]
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    seq = (jax.random.randint(jax.random.key(3), (1, 16, 1), 0, 30) + jnp.arange(17)) % 30
    x, y = seq[..., :-1], seq[..., 1:]
    losses = []
    for step in range(40):
        model, opt_state, loss = make_step(model, opt_state, x, y, jax.random.key(step), optimizer)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": ("attention",) * 2}, "layers lists 2 layer specs but n_layer=3"),
    ({"layers": ("attention", "lstm", "conv")}, "unknown mixer 'lstm'; valid names: attention, conv"),
    ({"layers": ("attention", "heads=3", "conv")}, "unknown option 'heads'; accepted: mixer, mlp, block, window"),
    ({"norm": "batchnorm"}, "unknown norm 'batchnorm'; valid names: layernorm, rmsnorm"),
    ({"block": "recurrent"}, "unknown block 'recurrent'; valid names: sequential, parallel"),
    ({"position": "alibi"}, "valid names: learned, rope, none"),
    ({"n_kv_head": 3}, "n_kv_head=3 must divide n_head=4"),
])
def test_component_errors_list_the_valid_choices(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GPTConfig(n_layer=3, n_head=4, n_embd=32, **kwargs)


def test_registering_a_different_object_under_a_taken_name_fails():
    MIXERS.register("attention")(CausalSelfAttention)  # the same object again: harmless
    with pytest.raises(ValueError, match="already registered to CausalSelfAttention"):
        MIXERS.register("attention")(CausalConv)
    assert MIXERS["attention"] is CausalSelfAttention


@pytest.mark.parametrize("query_block", [128, 5], ids=["one-block", "blocks-of-5"])
@pytest.mark.parametrize("extra", [{}, {"n_kv_head": 2, "n_head": 4}, {"window": 3}], ids=["mha", "gqa", "window"])
def test_attention_weights_are_what_the_layer_applies(extra, query_block, monkeypatch):
    monkeypatch.setattr(model_module, "QUERY_BLOCK", query_block)  # 16 queries in blocks of 5, 5, 5, 1
    config = dataclasses.replace(SMALL, **extra)
    attn = GPT(config, key=jax.random.key(1)).blocks()[0].attn
    x = jax.random.normal(jax.random.key(2), (16, 32))
    weights = attn.weights(x)
    assert weights.shape == (config.n_head, 16, 16)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    query, key = np.indices((16, 16))
    hidden = (key > query) | ((query - key >= config.window) if config.window else False)
    assert np.all(np.asarray(weights)[:, hidden] == 0.0) and np.all(np.asarray(weights)[:, ~hidden] > 0.0)
    # Weighting the values by them gives exactly what the attention layer computes.
    _, _, v = attn.heads(x, jnp.arange(16))
    v = jnp.repeat(v, config.n_head // config.kv_heads, axis=1)
    mixed = jnp.einsum("hqk,khd->qhd", weights, v).reshape(16, 32)
    np.testing.assert_allclose(attn.c_proj(mixed), attn(x), atol=1e-5)


@pytest.mark.parametrize("extra", [{}, {"n_kv_head": 2, "n_head": 4}, {"window": 3}], ids=["mha", "gqa", "window"])
def test_attend_computes_what_the_fused_kernel_computes(extra):
    # On a GPU the layer calls jax.nn.dot_product_attention instead: both must agree, values
    # and gradients, including which key head each query head reads.
    config = dataclasses.replace(SMALL, **extra)
    attn = GPT(config, key=jax.random.key(1)).blocks()[0].attn
    q, k, v = attn.heads(jax.random.normal(jax.random.key(2), (16, 32)), jnp.arange(16))
    window = (config.window - 1, 0) if config.window else None

    def fused(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=window)

    def ours(q, k, v):
        return attend(q, k, v, causal_mask(jnp.arange(16), jnp.arange(16), config.window))[0]

    np.testing.assert_allclose(ours(q, k, v), fused(q, k, v), atol=1e-5)
    probe = jax.random.normal(jax.random.key(3), q.shape)
    grads = [jax.grad(lambda *qkv, f=f: jnp.sum(f(*qkv) * probe), argnums=(0, 1, 2))(q, k, v) for f in (ours, fused)]
    for a, b in zip(grads[0], grads[1]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("layers", [(), ("conv", "attention", "conv")], ids=["stacked", "mixed"])
def test_blocks_one_by_one_give_the_forward_pass(layers):
    model = GPT(dataclasses.replace(SMALL, layers=layers), key=jax.random.key(3))
    idx = jnp.arange(16) % 50
    x = model.embed(idx, 0)
    for block in model.blocks():
        x = block(x)
    assert len(model.blocks()) == 3
    np.testing.assert_allclose(model.head(x), model(idx), atol=1e-5)


def test_unrolled_layers_compute_what_the_scan_computes():
    idx = jnp.arange(16) % 50
    scanned = GPT(SMALL, key=jax.random.key(4))
    unrolled = GPT(dataclasses.replace(SMALL, scan_layers=False), key=jax.random.key(4))
    np.testing.assert_allclose(unrolled(idx), scanned(idx), atol=1e-5)
    grads = [eqx.filter_grad(lambda m: m(idx).sum())(m) for m in (scanned, unrolled)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, atol=1e-4)


def equations(fn, *args, name: str) -> list:
    """The equations of primitive `name` in fn's jaxpr, nested ones included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == name:
                found.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def weight_gradient_contractions(fn, *args) -> list[int]:
    """How many axes each matmul by a weight matrix (a dot_general without batch axes, unlike
    attention's per-head ones) in fn's jaxpr contracts over."""
    found = []
    for eqn in equations(fn, *args, name="dot_general"):
        (contracting, _), (batch, _) = eqn.params["dimension_numbers"]
        if not batch:
            found.append(len(contracting))
    return found


@pytest.mark.parametrize("scan_layers", [True, False], ids=["scan", "unrolled"])
def test_over_batch_folds_the_batch_into_each_matmul_and_keeps_the_gradient(scan_layers):
    model = GPT(dataclasses.replace(SMALL, scan_layers=scan_layers, dropout=0.1), key=jax.random.key(5))
    idx = jax.random.randint(jax.random.key(6), (4, 16), 0, 50)
    keys = jax.random.split(jax.random.key(7), 4)
    params, static = eqx.partition(model, eqx.is_array)

    def loss(params, vmap):
        forward = lambda i, k: eqx.combine(params, static)(i, key=k)  # noqa: E731
        return vmap(forward)(idx, keys).sum()

    folded, plain = (jax.jit(jax.grad(loss), static_argnums=1)(params, v) for v in (over_batch, jax.vmap))
    for a, b in zip(jax.tree.leaves(folded), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # A plain vmap leaves weight gradients contracting over (B, T); folded, every matmul
    # contracts over one axis.
    grad_with = lambda vmap: jax.grad(lambda p: loss(p, vmap))  # noqa: E731
    assert max(weight_gradient_contractions(grad_with(jax.vmap), params)) == 2
    assert max(weight_gradient_contractions(grad_with(over_batch), params)) == 1
    # The two tables' gradients are scatter-adds of (B, T, C) updates when folded. A plain vmap
    # looks the positions up once, so the position table's updates are summed over B first.
    def scatter_update_ranks(vmap):
        return sorted(eqn.invars[2].aval.ndim for eqn in equations(grad_with(vmap), params, name="scatter-add"))

    assert scatter_update_ranks(jax.vmap) == [2, 3]
    assert scatter_update_ranks(over_batch) == [3, 3]
    # Outside over_batch a single sequence still differentiates (the folding is off again),
    # to the gradient of a batch of one.
    single = jax.jit(jax.grad(lambda p: eqx.combine(p, static)(idx[0], key=keys[0]).sum()))(params)
    one = jax.jit(jax.grad(lambda p: over_batch(lambda i, k: eqx.combine(p, static)(i, key=k))(idx[:1], keys[:1]).sum()))(
        params
    )
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("center", [True, False], ids=["layernorm", "rmsnorm"])
def test_the_written_out_norm_gradient_is_autodiffs(center):
    def plain(x, eps):  # the textbook formula, differentiated by JAX itself
        if center:
            x = x - x.mean(-1, keepdims=True)
        return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + eps)

    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 8, 32))
    weights = jax.random.normal(jax.random.key(1), (4, 8, 32))  # makes the loss depend on every output
    for eps in (1e-5, 10.0):  # a large eps makes its part of the gradient visible
        ours, theirs = (
            jax.grad(lambda x: (jax.vmap(fn)(x) * weights).sum())(x)
            for fn in (lambda x: normalize(x, eps, center), lambda x: plain(x, eps))
        )
        np.testing.assert_allclose(normalize(x[0], eps, center), plain(x[0], eps), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
        assert float(jnp.abs(ours).max()) > 1e-3  # not trivially equal
    # The norm layers themselves, gain (and LayerNorm's bias) included: their gradients match too.
    norm = NORMS["layernorm" if center else "rmsnorm"](32, bias=center)
    norm = eqx.tree_at(lambda n: n.weight, norm, jax.random.normal(jax.random.key(2), (32,)))
    grad = jax.grad(lambda n, x: (jax.vmap(n)(x) * weights).sum(), argnums=(0, 1))(norm, x)

    def reference(n, x):
        y = jax.vmap(lambda row: plain(row, n.eps))(x) * n.weight
        return ((y if getattr(n, "bias", None) is None else y + n.bias) * weights).sum()

    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(jax.grad(reference, argnums=(0, 1))(norm, x))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


REMAT_PRIMITIVE = jax.make_jaxpr(jax.checkpoint(jnp.sin))(1.0).eqns[0].primitive.name


@pytest.mark.parametrize("scan_layers", [True, False], ids=["scan", "unrolled"])
def test_remat_recomputes_layers_to_the_same_gradient(scan_layers):
    idx = jax.random.randint(jax.random.key(6), (4, 16), 0, 50)
    keys = jax.random.split(jax.random.key(7), 4)
    grads = {}
    for remat in REMAT_POLICIES:
        # Dropout on: the recomputed forward pass must draw the same masks as the first one.
        config = dataclasses.replace(SMALL, scan_layers=scan_layers, dropout=0.1, remat=remat)
        params, static = eqx.partition(GPT(config, key=jax.random.key(5)), eqx.is_array)
        grad = jax.grad(lambda p: over_batch(lambda i, k: eqx.combine(p, static)(i, key=k))(idx, keys).sum())
        grads[remat] = jax.jit(grad)(params)
        # Unrolled or not, the layers are one lax.scan in the program (unrolled when compiled),
        # so the gradient's program holds one recomputed layer body, or none.
        assert len(equations(grad, params, name=REMAT_PRIMITIVE)) == (remat != "none")
    for remat in ("dots", "full"):
        for a, b in zip(jax.tree.leaves(grads[remat]), jax.tree.leaves(grads["none"])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_remat_over_scanned_layers_keeps_less_for_the_backward_pass():
    # Scanned: the backward loop recomputes each layer when it reaches it. (Unrolled, XLA is
    # free to run the recomputation early, and on a CPU the memory did not drop: docs/performance.md.)
    config = GPTConfig(block_size=64, vocab_size=50, n_layer=4, n_head=2, n_embd=64)
    idx = jnp.zeros((8, 64), jnp.int32)

    def scratch_bytes(remat):
        model = GPT(dataclasses.replace(config, remat=remat), key=jax.random.key(0))
        params, static = eqx.partition(model, eqx.is_array)
        grad = jax.grad(lambda p: over_batch(eqx.combine(p, static))(idx).sum())
        return jax.jit(grad).lower(params).compile().memory_analysis().temp_size_in_bytes

    none, dots, full = (scratch_bytes(remat) for remat in ("none", "dots", "full"))
    assert full < dots < none


def test_over_batch_with_batched_weights_too():
    x = jax.random.normal(jax.random.key(8), (3, 5, 4))
    w = jax.random.normal(jax.random.key(9), (3, 6, 4))  # one weight matrix per row: a vmap over models
    np.testing.assert_allclose(over_batch(project)(x, w), jnp.einsum("bti,boi->bto", x, w), rtol=1e-5)
    np.testing.assert_allclose(over_batch(lambda x: project(x, w[0]))(x), x @ w[0].T, rtol=1e-5)


@pytest.mark.parametrize("backend, dtype, head_size, expected", [
    ("gpu", jnp.bfloat16, 64, "cudnn"),
    ("gpu", jnp.float16, 128, "cudnn"),
    ("gpu", jnp.float32, 64, "xla"),  # cuDNN's flash attention takes 16-bit inputs only
    ("gpu", jnp.bfloat16, 12, "xla"),  # head sizes must be a multiple of 8
    ("gpu", jnp.bfloat16, 136, "xla"),  # and at most 128
    ("tpu", jnp.bfloat16, 64, "xla"),
    ("cpu", jnp.bfloat16, 64, "blocked"),
    ("cpu", jnp.float32, 64, "blocked"),
])
def test_attention_implementation_is_chosen_by_backend_dtype_and_head_size(backend, dtype, head_size, expected):
    assert model_module.attention_implementation(backend, dtype, head_size) == expected


@pytest.mark.parametrize("window, kv_heads", [(0, 4), (0, 2), (5, 4)])
def test_xla_attention_equals_the_cpu_blocked_attention_with_gradients(window, kv_heads):
    # T=150 spans two query blocks of the blocked path, so the block boundary is exercised too.
    T, H, D = 150, 4, 16
    q, k, v = (jax.random.normal(jax.random.key(i), (T, h, D)) for i, h in enumerate((H, kv_heads, kv_heads)))
    weights = jax.random.normal(jax.random.key(9), (T, H, D))

    def loss(q, k, v, implementation):
        return jnp.sum(weights * model_module.causal_attention(q, k, v, window, implementation))

    for argnum in range(3):
        xla, blocked = (jax.value_and_grad(loss, argnums=argnum)(q, k, v, impl) for impl in ("xla", "blocked"))
        np.testing.assert_allclose(xla[0], blocked[0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(xla[1], blocked[1], rtol=1e-4, atol=1e-5)
