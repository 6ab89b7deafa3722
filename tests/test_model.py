import dataclasses
import json
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_outputs
from check import perturbed

import model as model_module
from components import CausalConv
from helpers.optim import lr_schedule, make_optimizer
from helpers.training import loss_fn, make_step
from model import MIXERS, GPT, CausalSelfAttention, GPTConfig, attend, causal_mask, swiglu_hidden

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


@pytest.mark.parametrize("layers", [(), ("attention", "conv", "attention", "conv")], ids=["stacked", "mixed"])
def test_init_statistics_and_distinct_blocks(layers):
    config = GPTConfig(block_size=64, vocab_size=512, n_layer=4, n_head=4, n_embd=256, bias=True, layers=layers)
    model = GPT(config, key=jax.random.key(0))
    # Every weight matrix, embeddings included, at GPT-2's scale; the residual projections smaller.
    residual = 0.02 / math.sqrt(2 * config.n_layer)
    stds = {jax.tree_util.keystr(path): float(layer.weight.std()) for path, layer in model_module._weighted_layers(model)}
    assert len(stds) == (2 + 4 if not layers else 2 + 2 * 4 + 2 * 3)  # wte, wpe, the blocks (stacked: one of each)
    for path, std in stds.items():
        expected = residual if path.endswith("c_proj") else 0.02
        assert abs(std - expected) < 0.05 * expected, (path, std)
    blocks = model.blocks()
    for block in blocks:
        assert float(jnp.abs(block.mlp.c_fc.bias).max()) == 0.0
        assert float(jnp.abs(block.ln_1.weight - 1).max()) == 0.0
    # Each layer drew from its own key.
    for a in range(config.n_layer):
        for b in range(a + 1, config.n_layer):
            assert not np.allclose(blocks[a].mlp.c_fc.weight, blocks[b].mlp.c_fc.weight)


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


def test_dropout_is_deterministic_given_a_key_and_off_in_inference(monkeypatch):
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
    # Different outputs for different keys would not show one mask shared by every layer or
    # every sequence: record each mask that dropout applies (the zeros of its output).
    masks = []
    dropout = eqx.nn.Dropout.__call__

    def recording(self, x, *, key=None, **kwargs):
        out = dropout(self, x, key=key, **kwargs)
        if key is not None:  # a callback sees the values of every scan step and every vmapped row
            jax.debug.callback(lambda dropped: masks.append(np.asarray(dropped).tobytes()), out == 0)
        return out

    def applied(run) -> tuple[int, int]:
        """How many masks `run` applies, and how many of them are distinct."""
        masks.clear()
        run()
        jax.effects_barrier()  # callbacks may run after the call returns
        return len(masks), len(set(masks))

    monkeypatch.setattr(eqx.nn.Dropout, "__call__", recording)
    n = 1 + 2 * config.n_layer  # the embeddings, then attention and MLP in each layer
    assert applied(lambda: model(idx, key=jax.random.key(1))) == (n, n)
    # The training loss, over a batch of one sequence three times: a mask of its own per row.
    batch = jnp.stack([idx] * 3)
    assert applied(lambda: loss_fn(model, batch, batch, jax.random.key(1))) == (3 * n, 3 * n)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd=30 is not divisible by n_head=4"),
        ({"dropout": 1.0}, "dropout must be < 1, got 1.0"),
        ({"n_layer": 0}, "n_layer must be >= 1, got 0"),
        ({"n_layer": 2.0}, "n_layer must be int (like the default 12), got float 2.0"),
        ({"mlp": "relu"}, "unknown mlp 'relu'; valid names: gelu, swiglu, relu2"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
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
    "relu2": dict(mlp="relu2"),
    "qk-norm": dict(qk_norm=True, position="rope"),
    "softcap-untied": dict(softcap=3.0, tie_head=False),
    # A kernel wider than the default: the conv's cache takes its size from the layer itself.
    "conv-kernel-8": dict(layers=("attention", "mixer=conv,kernel_size=8", "conv"), options={"kernel_size": 6}),
    "per-layer-norms": dict(layers=("norm=rmsnorm,eps=0.1", "attention", "mlp=gelu,norm=rmsnorm")),
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
    # Weights moved off their init: the conv kernel starts as the identity, which would hide a
    # cache that loses the positions before.
    model = perturbed(variant(name), jax.random.key(2))
    idx = jax.random.randint(jax.random.key(1), (24,), 0, 50)
    # A 12-token prefill into an empty cache, then one token at a time, to the end of the block.
    logits, cache = model.decode(idx[:12], model.empty_cache(), jnp.int32(0))
    steps = [logits]
    for pos in range(12, 24):
        logits, cache = model.decode(idx[pos:pos + 1], cache, jnp.int32(pos))
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps), model(idx), atol=1e-5)


def test_the_speedrun_components_do_what_they_say():
    idx = jax.random.randint(jax.random.key(1), (24,), 0, 50)
    # QK-norm: every query and key of every head has unit root mean square.
    attn = variant("qk-norm").blocks()[0].attn
    q, k, _ = attn.heads(jax.random.normal(jax.random.key(2), (24, 32)) * 7.0, jnp.arange(24))
    np.testing.assert_allclose(jnp.sqrt(jnp.square(q).mean(-1)), 1.0, rtol=1e-3)
    np.testing.assert_allclose(jnp.sqrt(jnp.square(k).mean(-1)), 1.0, rtol=1e-3)
    # Soft-capping: cap * tanh(raw / cap) of the head's own logits, so never beyond the cap.
    model = variant("softcap-untied")
    model = eqx.tree_at(lambda m: m.lm_head.weight, model, model.lm_head.weight * 100)  # raw logits far past 3
    raw = model.lm_head(model.ln_f(model.embed(idx, 0)))  # the head on the embeddings: the raw logits' scale
    assert float(jnp.abs(raw).max()) > 30
    logits = model(idx)
    assert 2.9 < float(jnp.abs(logits).max()) <= 3.0
    # An untied head is a matrix of its own: its gradient is not the token embedding's.
    grads = eqx.filter_grad(lambda m: m(idx)[:, 0].sum())(model)
    assert model.lm_head.weight.shape == model.wte.weight.shape and float(jnp.abs(grads.lm_head.weight).max()) > 0
    assert variant("gpt2").lm_head is None
    # ReLU squared: the activation is relu(h)^2.
    mlp = variant("relu2").blocks()[0].mlp
    h = jnp.linspace(-2, 2, 5)
    np.testing.assert_allclose(mlp.activation(h), [0, 0, 0, 1, 4])


def test_zero_initialised_residual_projections_start_every_block_as_the_identity():
    model = variant("gpt2", zero_init_residual=True)
    for block in model.blocks():
        assert float(jnp.abs(block.attn.c_proj.weight).max()) == 0.0 and float(jnp.abs(block.mlp.c_proj.weight).max()) == 0.0
        assert abs(float(block.attn.c_attn.weight.std()) - 0.02) < 0.002  # the rest as GPT-2 draws them
    idx = jax.random.randint(jax.random.key(1), (24,), 0, 50)
    np.testing.assert_allclose(model(idx), model.head(model.embed(idx, 0)), atol=1e-6)
    # ... and they learn: their gradient is not zero.
    grads = eqx.filter_grad(lambda m: m(idx).sum())(model)
    assert float(jnp.abs(grads.h.mlp.c_proj.weight).max()) > 0


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
    ({"layers": ("attention", "lstm", "conv")}, "layer spec 'lstm': unknown mixer 'lstm'; valid names: attention, conv"),
    ({"layers": ("attention", "heads=3", "conv")}, "layer spec 'heads=3': unknown option 'heads'; accepted: mixer, mlp, "
                                                   "norm, block, window, eps"),
    ({"layers": ("attention", "kernel_size=3", "conv")}, "layer spec 'kernel_size=3': kernel_size is an option of "
                                                         "mixer 'conv', which this layer does not use"),
    ({"layers": ("attention", "window=-1", "conv")}, "layer spec 'window=-1': window must be >= 0, got -1"),
    ({"layers": ("attention", "attention,conv", "conv")}, "layer spec 'attention,conv': mixer is given twice"),
    ({"options": {"kernel_size": 8}}, "kernel_size is an option of mixer 'conv', which this model does not use"),
    ({"options": {"kernel_size": 0}, "mixer": "conv"}, "kernel_size must be >= 1, got 0"),
    ({"options": {"nonsense": 1}}, "unknown option 'nonsense'"),
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


@pytest.mark.parametrize("backend, dtype, head_size, expected", [
    ("gpu", jnp.bfloat16, 64, "cudnn"),
    ("gpu", jnp.float16, 128, "cudnn"),
    ("gpu", jnp.float32, 64, "xla"),  # cuDNN's flash attention takes 16-bit inputs only
    ("gpu", jnp.bfloat16, 12, "xla"),  # head sizes must be a multiple of 8
    ("gpu", jnp.bfloat16, 136, "xla"),  # and at most 128
    ("tpu", jnp.bfloat16, 64, "xla"),
    ("cpu", jnp.bfloat16, 64, "xla"),
])
def test_attention_implementation_is_chosen_by_backend_dtype_and_head_size(backend, dtype, head_size, expected):
    assert model_module.attention_implementation(backend, dtype, head_size) == expected


@pytest.mark.parametrize("name", sorted(json.loads(reference_outputs.RECORD.read_text())))
def test_every_preset_and_component_computes_what_it_did_before_the_move(name):
    # Recorded from the code before the built-ins moved to components.py and options came in
    # (`python tests/reference_outputs.py`): the same init, logits, loss and gradients.
    expected = json.loads(reference_outputs.RECORD.read_text())[name]
    got = reference_outputs.outputs(reference_outputs.configs()[name])
    np.testing.assert_allclose(got["logits"], expected["logits"], atol=2e-5)
    assert abs(got["loss"] - expected["loss"]) < 1e-5
    assert got["grad_norms"].keys() == expected["grad_norms"].keys()
    np.testing.assert_allclose(list(got["grad_norms"].values()), list(expected["grad_norms"].values()), rtol=1e-4)


def test_a_layers_spec_sets_choices_and_options_per_layer():
    config = GPTConfig(n_layer=3, n_head=2, n_embd=32, layers=("attention", "mixer=conv,kernel_size=8", "conv"),
                       options={"kernel_size": 6, "eps": 1e-6})
    specs = config.layer_specs()
    # A layer's own value beats the run's, which beats the declared default.
    assert [spec.get("kernel_size") for spec in specs] == [None, 8, 6]
    assert [spec["eps"] for spec in specs] == [1e-6] * 3 and specs[0]["window"] == 0
    model = GPT(config, key=jax.random.key(0))
    assert [block.attn.kernel_size for block in model.h[1:]] == [8, 6] and model.ln_f.eps == 1e-6
    # Options at their default are not stored, so equal models have equal configs; as_dict
    # writes every option in use, and from_dict reads it back.
    assert dict(config.options) == {"kernel_size": 6, "eps": 1e-6}
    assert GPTConfig(n_head=2, n_embd=32, options={"eps": 1e-5}) == GPTConfig(n_head=2, n_embd=32)
    assert config.as_dict()["kernel_size"] == 6 and GPTConfig.from_dict(config.as_dict()) == config
    assert "kernel_size" not in GPTConfig(n_head=2, n_embd=32).as_dict()


def test_n_layer_follows_the_layers_unless_set():
    from helpers import archs

    assert archs.build("tiny", layers=("attention", "conv", "conv")).n_layer == 3  # the preset's 2 gives way
    with pytest.raises(ValueError, match="layers lists 3 layers but n_layer=2 was set"):
        archs.build("tiny", layers=("attention", "conv", "conv"), n_layer=2)
    settings = {"arch": "", "n_layer": 4, "n_head": 2, "n_embd": 32, "layers": ("attention", "conv")}
    assert archs.config_from_settings(settings).n_layer == 2  # train.py's default gives way too


def test_blocks_own_their_cache_so_any_block_may_name_its_parts():
    # The GPT asks each block for its cache and its decode, never the block's parts; a cache's
    # sizes are the layer's own (examples/hybrid_stack.py has a block that names its mixer `mixer`).
    config = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, mixer="conv")
    model = GPT(config, key=jax.random.key(0))
    cache = model.empty_cache()
    assert type(cache).__name__ == "ConvCache" and cache.x.shape == (2, 16 + 4 - 1, 32)
    assert model.h.empty_cache(2, 16).x.shape == cache.x.shape
