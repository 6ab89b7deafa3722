import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jaxprs import equations

from helpers.optim import lr_schedule, make_optimizer
from helpers.training import (
    REMAT_POLICIES,
    eval_group,
    eval_loss,
    init_state,
    loss_fn,
    make_step,
    make_steps,
    with_remat,
)
from model import GPT, MODELS, GPTConfig

CONFIG = GPTConfig(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=32)


def test_accumulation_equals_one_big_batch():
    # Plain SGD makes the update the gradient itself, so this compares gradients directly
    # (Adam's first step is ~lr * sign(g), which hides all but the sign).
    optimizer = optax.sgd(1.0)
    x = jax.random.randint(jax.random.key(1), (8, 16), 0, 30)
    y = jnp.roll(x, -1, axis=1)
    results = []
    for micro in (1, 4):
        state = init_state(CONFIG, optimizer, seed=0)
        model, _, loss = make_step(state["model"], state["opt_state"], x.reshape(micro, 8 // micro, 16),
                                   y.reshape(micro, 8 // micro, 16), jax.random.key(2), optimizer)
        results.append((model, loss))
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(eqx.filter(results[0][0], eqx.is_array)),
                    jax.tree.leaves(eqx.filter(results[1][0], eqx.is_array))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_loss_falls_with_dropout_and_bf16():
    config = GPTConfig(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=32, dropout=0.2)
    optimizer = make_optimizer(lr_schedule(3e-3, 5, 60, 3e-4, True), 0.1, 0.9, 0.95, 1.0)
    state = init_state(config, optimizer, seed=0)
    model, opt_state = state["model"], state["opt_state"]
    # A learnable pattern: each token is the previous one plus one.
    starts = jax.random.randint(jax.random.key(3), (1, 16, 1), 0, 30)
    seq = (starts + jnp.arange(17)) % 30
    x, y = seq[..., :-1], seq[..., 1:]
    first = float(eval_loss(model, x, y))
    for step in range(60):
        model, opt_state, _ = make_step(model, opt_state, x, y, jax.random.key(step), optimizer, jnp.bfloat16)
    assert model.wte.weight.dtype == jnp.float32  # parameters stay fp32
    assert float(eval_loss(model, x, y)) < 0.5 * first


def test_steps_in_one_call_equal_one_call_each():
    config = GPTConfig(block_size=16, vocab_size=30, n_layer=2, n_head=2, n_embd=32, dropout=0.1)
    optimizer = make_optimizer(lr_schedule(1e-3, 1, 10, 1e-4, True), 0.1, 0.9, 0.95, 1.0)
    x = jax.random.randint(jax.random.key(1), (3, 2, 4, 16), 0, 30)  # steps, micro-batches, sequences, tokens
    y = jnp.roll(x, -1, axis=-1)
    key = jax.random.key(5)
    state = init_state(config, optimizer, seed=0)
    model, opt_state, losses = state["model"], state["opt_state"], []
    for i in range(3):  # iterations 7, 8, 9, each its own call
        model, opt_state, loss = make_step(model, opt_state, x[i], y[i], jax.random.fold_in(key, 7 + i), optimizer)
        losses.append(float(loss))
    state = init_state(config, optimizer, seed=0)
    looped, _, looped_losses = make_steps(state["model"], state["opt_state"], x, y, key, np.int32(7), optimizer)
    assert looped_losses.shape == (3,) and len(set(losses)) == 3
    np.testing.assert_allclose(looped_losses, losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(eqx.filter(model, eqx.is_array)), jax.tree.leaves(eqx.filter(looped, eqx.is_array))):
        # A GPU may sum in another order in the two programs; a wrong key or batch would move a
        # weight by about a learning rate (1e-4 or more).
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@MODELS.register("test-capped")
class CappedGPT(GPT):
    """A subclass that changes one step, as docs/adding_a_model.md does."""

    def head(self, x):
        return 0.5 * jnp.tanh(super().head(x))


def test_a_registered_subclass_comes_back_from_its_checkpoint_as_itself(tmp_path):
    import dataclasses

    from helpers import checkpoint
    from helpers.optim import optimizer_from_settings
    from helpers.training import load_trained_model

    settings = dict(learning_rate=1e-3, warmup_iters=1, lr_decay_iters=10, min_lr=1e-4, decay_lr=True,
                    weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0)
    config = dataclasses.replace(CONFIG, model="test-capped")
    state = init_state(config, optimizer_from_settings(settings)[0], seed=0)
    assert type(state["model"]) is CappedGPT
    checkpoint.save(tmp_path / "ckpt.eqx", {"iter_num": 1, "model_config": config.as_dict(),
                                            "settings": settings}, state)
    loaded, _ = load_trained_model(tmp_path)
    assert type(loaded) is CappedGPT
    idx = jnp.arange(16) % 30
    np.testing.assert_array_equal(loaded(idx), state["model"](idx))
    assert float(jnp.abs(loaded(idx)).max()) <= 0.5


def test_a_subclass_its_config_does_not_name_is_refused():
    class Unregistered(GPT):
        pass

    with pytest.raises(ValueError, match="register the class with @MODELS.register"):
        Unregistered(CONFIG, key=jax.random.key(0))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the lighter compile is the CPU backend's option")
def test_the_lighter_compile_of_init_draws_the_same_weights():
    from helpers.training import INIT_COMPILER_OPTIONS

    config = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, position="rope", qk_norm=True,
                       tie_head=False)
    key = jax.random.key(3)
    plain = eqx.filter_jit(GPT)(config, key=key)
    light = eqx.filter_jit(GPT, compiler_options=INIT_COMPILER_OPTIONS["cpu"])(config, key=key)
    for a, b in zip(jax.tree.leaves(eqx.filter(plain, eqx.is_array)), jax.tree.leaves(eqx.filter(light, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


REMAT_PRIMITIVE = jax.make_jaxpr(jax.checkpoint(jnp.sin))(1.0).eqns[0].primitive.name


def test_remat_recomputes_layers_to_the_same_gradient():
    from jaxprs import equations

    idx = jax.random.randint(jax.random.key(6), (4, 16), 0, 50)
    keys = jax.random.split(jax.random.key(7), 4)
    # Dropout on: the recomputed forward pass must draw the same masks as the first one.
    config = GPTConfig(block_size=16, vocab_size=50, n_layer=3, n_head=2, n_embd=32, dropout=0.1)
    params, static = eqx.partition(GPT(config, key=jax.random.key(5)), eqx.is_array)
    grads = {}
    for remat in REMAT_POLICIES:
        def total(p, remat=remat):
            model = with_remat(eqx.combine(p, static), remat)
            return jax.vmap(lambda i, k: model(i, key=k))(idx, keys).sum()

        grads[remat] = jax.jit(jax.grad(total))(params)
        # The layers are one lax.scan in the program, so the gradient's program holds one
        # recomputed layer body, or none.
        assert len(equations(jax.grad(total), params, name=REMAT_PRIMITIVE)) == (remat != "none")
    for remat in ("dots", "full"):
        for a, b in zip(jax.tree.leaves(grads[remat]), jax.tree.leaves(grads["none"])):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# On a GPU, a model this small has activations smaller than the matmul libraries' workspaces,
# which the scratch figure also counts: it does not show what remat keeps (docs/performance.md).
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the scratch figure measures remat on XLA's CPU backend")
def test_remat_over_scanned_layers_keeps_less_for_the_backward_pass():
    # Scanned: the backward loop recomputes each layer when it reaches it. (Unrolled, XLA is
    # free to run the recomputation early, and on a CPU the memory did not drop: docs/performance.md.)
    config = GPTConfig(block_size=64, vocab_size=50, n_layer=4, n_head=2, n_embd=64)
    params, static = eqx.partition(GPT(config, key=jax.random.key(0)), eqx.is_array)
    idx = jnp.zeros((8, 64), jnp.int32)

    def scratch_bytes(remat):
        grad = jax.grad(lambda p: jax.vmap(with_remat(eqx.combine(p, static), remat))(idx).sum())
        return jax.jit(grad).lower(params).compile().memory_analysis().temp_size_in_bytes

    none, dots, full = (scratch_bytes(remat) for remat in ("none", "dots", "full"))
    assert full < dots < none


def test_remat_is_checked_and_needs_blocks_in_h():
    import equinox as eqx

    from helpers.errors import UserError

    model = GPT(CONFIG, key=jax.random.key(0))
    with pytest.raises(UserError, match="remat must be one of none, dots, full, got 'bogus'"):
        with_remat(model, "bogus")

    class Flat(eqx.Module):
        weight: jax.Array

    assert with_remat(Flat(jnp.ones(2)), "none").weight.shape == (2,)
    # Unrolled, or layers that differ (a tuple), the recomputation may run early: refused.
    for config in (dataclasses.replace(CONFIG, scan_layers=False), dataclasses.replace(CONFIG, layers=("attention", "conv"))):
        with pytest.raises(UserError, match="saves memory only over stacked, scanned layers"):
            with_remat(GPT(config, key=jax.random.key(0)), "full")
    with pytest.raises(UserError, match="remat=dots recomputes the blocks in model.h, and Flat has no h"):
        with_remat(Flat(jnp.ones(2)), "dots")


def test_training_can_run_model_pys_own_classes_to_the_same_losses(monkeypatch):
    from helpers import cpu_fast_path

    optimizer = make_optimizer(lr_schedule(3e-3, 2, 20, 3e-4, True), 0.1, 0.9, 0.95, 1.0)
    x = jax.random.randint(jax.random.key(1), (3, 1, 4, 16), 0, 30)
    y = jnp.roll(x, -1, axis=-1)
    state = init_state(CONFIG, optimizer, seed=0)
    fast_eval = eval_loss(state["model"], x[0], y[0])
    _, _, fast = make_steps(state["model"], state["opt_state"], x, y, jax.random.key(2), jnp.int32(0), optimizer)
    # With the fast path switched off, it is never called: model.py's classes do the work.
    monkeypatch.setattr(cpu_fast_path, "over_batch", None)
    state = init_state(CONFIG, optimizer, seed=0)
    np.testing.assert_allclose(eval_loss(state["model"], x[0], y[0], fast_path=False), fast_eval, rtol=1e-5)
    _, _, plain = make_steps(state["model"], state["opt_state"], x, y, jax.random.key(2), jnp.int32(0), optimizer,
                             fast_path=False)
    np.testing.assert_allclose(plain, fast, rtol=1e-5)


def test_any_integer_seeds_a_run():
    negative, wrapped = (init_state(CONFIG, optax.sgd(1.0), seed) for seed in (-1, 2**32 - 1))
    assert int(negative["data_seed"]) == 2**32 - 1
    for a, b in zip(jax.tree.leaves(eqx.filter(negative, eqx.is_array)), jax.tree.leaves(eqx.filter(wrapped, eqx.is_array))):
        np.testing.assert_array_equal(a, b)


def test_evaluation_in_groups_of_batches_is_the_mean_of_each_batchs_loss():
    assert [eval_group(200, 768), eval_group(20, 4096), eval_group(7, 100), eval_group(9, 10_000)] == [5, 1, 7, 1]
    model = init_state(CONFIG, make_optimizer(optax.constant_schedule(1e-3), 0.1, 0.9, 0.99, 1.0), seed=0)["model"]
    x = jax.random.randint(jax.random.key(3), (12, 2, 16), 0, CONFIG.vocab_size)  # 32 tokens a batch: groups of 12
    one_by_one = np.mean([loss_fn(eqx.nn.inference_mode(model), xb, xb, None) for xb in x])
    assert eval_group(12, 32) == 12
    np.testing.assert_allclose(eval_loss(model, x, x), one_by_one, rtol=1e-6)
    # The loss's budget of logits holds for the whole group: here four positions of each of the
    # group's 24 sequences at a time, not the whole 16 of each.
    budget = 12 * 2 * 4 * CONFIG.vocab_size
    logits = [math.prod(v.aval.shape) for eqn in equations(lambda x: eval_loss(model, x, x, loss_chunk=budget), x,
                                                          name="dot_general")
              for v in eqn.outvars if v.aval.shape[-1] == CONFIG.vocab_size]
    assert max(logits) == budget
    np.testing.assert_allclose(eval_loss(model, x, x, loss_chunk=budget), one_by_one, rtol=1e-6)
