"""The chunked loss (helpers/loss.py) equals the plain one, in value and gradients, for every
kind of head, and holds a fraction of the plain loss's memory."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers.loss import DEFAULT_LOSS_CHUNK, chunk_length, splits_head
from helpers.training import eval_loss, loss_fn
from model import GPT, MODELS, GPTConfig

CONFIG = GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32)
X = jax.random.randint(jax.random.key(1), (4, 16), 0, 50)
Y = jax.random.randint(jax.random.key(2), (4, 16), 0, 50)
THREE_POSITIONS = 4 * 3 * 50  # a budget of three positions of every sequence: six chunks, the last padded


@MODELS.register("test-scaled-head")
class ScaledHeadGPT(GPT):
    """A subclass whose head has a parameter of its own, which must get its gradient."""

    scale: jax.Array

    def __init__(self, config, *, key):
        super().__init__(config, key=key)
        self.scale = jnp.full((config.vocab_size,), 1.5)

    def head(self, x):
        return super().head(x) * self.scale


@MODELS.register("test-own-call")
class OwnCallGPT(GPT):
    """A subclass that computes its logits in __call__ its own way, with features left as GPT's."""

    def __call__(self, idx, *, key=None):
        return 2.0 * super().__call__(idx, key=key)


def value_and_grads(model, loss_chunk, **options):
    return eqx.filter_value_and_grad(loss_fn)(model, X, Y, None, loss_chunk=loss_chunk, **options)


def assert_trees_close(a, b, **tolerance):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tolerance)


@pytest.mark.parametrize("fast_path", [True, False], ids=["cpu-fast-path", "plain-classes"])
@pytest.mark.parametrize("loss_chunk", [THREE_POSITIONS, 1], ids=["three-positions", "one-position"])
@pytest.mark.parametrize("extra", [
    {},
    {"norm": "rmsnorm", "position": "rope", "softcap": 5.0, "tie_head": False, "scan_layers": False},
    {"model": "test-scaled-head", "layers": ("attention", "mixer=attention,window=3")},
], ids=["tied-gpt2", "untied-softcapped", "own-head-mixed-stack"])
def test_the_chunked_loss_has_the_plain_losss_value_and_gradients(extra, loss_chunk, fast_path):
    model = MODELS[extra.get("model", "gpt")](dataclasses.replace(CONFIG, **extra), key=jax.random.key(0))
    assert splits_head(model)
    plain_loss, plain_grads = value_and_grads(model, 0, fast_path=fast_path)
    loss, grads = value_and_grads(model, loss_chunk, fast_path=fast_path)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
    assert_trees_close(grads, plain_grads, rtol=1e-4, atol=1e-7)
    if "scale" in extra.get("model", ""):
        assert float(jnp.abs(grads.scale).max()) > 1e-4  # the head's own parameter is trained
    # Without gradients (evaluation) the chunks run another path: the same value.
    np.testing.assert_allclose(loss_fn(model, X, Y, None, loss_chunk=loss_chunk, fast_path=fast_path), plain_loss,
                               rtol=1e-6)
    np.testing.assert_allclose(eval_loss(model, X[None], Y[None], fast_path=fast_path, loss_chunk=loss_chunk),
                               plain_loss, rtol=1e-6)


def test_in_bfloat16_the_chunked_loss_stays_within_bfloat16s_rounding():
    model = GPT(CONFIG, key=jax.random.key(0))
    plain_loss, plain_grads = value_and_grads(model, 0, compute_dtype=jnp.bfloat16)
    loss, grads = value_and_grads(model, THREE_POSITIONS, compute_dtype=jnp.bfloat16)
    np.testing.assert_allclose(loss, plain_loss, rtol=1e-2)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(plain_grads)):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=0.02 * float(jnp.abs(b).max()))


def test_a_model_without_the_split_keeps_its_own_logits():
    own = OwnCallGPT(dataclasses.replace(CONFIG, model="test-own-call"), key=jax.random.key(0))
    assert not splits_head(own)
    expected = float(jnp.mean(jax.vmap(lambda idx, y: -jax.nn.log_softmax(own(idx))[jnp.arange(16), y])(X, Y)))
    np.testing.assert_allclose(loss_fn(own, X, Y, None, loss_chunk=THREE_POSITIONS), expected, rtol=1e-5)


def test_chunks_hold_at_most_the_budget_and_cover_every_position():
    assert chunk_length(4, 16, 50, 0) == 16  # off
    assert chunk_length(4, 16, 50, 4 * 16 * 50) == 16  # the whole logits fit
    assert chunk_length(4, 16, 50, THREE_POSITIONS) == 3  # six chunks of three: 18 positions, 2 padded
    assert chunk_length(4, 16, 50, 1) == 1  # less than one position's logits: one position
    assert chunk_length(16, 256, 50304, 2**25) == 37  # the GPT-2-vocabulary TinyStories CPU run: 7 chunks
    for batch, length, vocab, budget in [(4, 16, 50, 700), (16, 1024, 50304, 2**24), (3, 100, 7, 50)]:
        chunk = chunk_length(batch, length, vocab, budget)
        assert batch * chunk * vocab <= max(budget, batch * vocab)
        assert -(-length // chunk) * chunk - length < chunk  # padding is less than one chunk


def test_the_chunked_gradient_never_holds_the_whole_logits():
    # XLA's own account of the scratch memory the compiled gradient needs, at a vocabulary large
    # enough that the logits dominate it.
    config = dataclasses.replace(CONFIG, vocab_size=8192, block_size=64)
    model = GPT(config, key=jax.random.key(0))
    x = jnp.zeros((8, 64), jnp.int32)
    logits_bytes = 8 * 64 * 8192 * 4

    params, static = eqx.partition(model, eqx.is_array)

    def scratch_bytes(loss_chunk):
        grad = jax.jit(lambda p: eqx.filter_grad(loss_fn)(eqx.combine(p, static), x, x, None, loss_chunk=loss_chunk))
        return grad.lower(params).compile().memory_analysis().temp_size_in_bytes

    plain, chunked = scratch_bytes(0), scratch_bytes(8 * 8 * 8192)  # chunks of 8 positions
    assert plain > 2 * logits_bytes  # the whole logits, their softmax, their gradient, ...
    assert chunked < logits_bytes and chunked < plain / 4


def test_the_scripts_default_is_the_loss_functions():
    import bench
    import train

    assert train.loss_chunk == bench.loss_chunk == DEFAULT_LOSS_CHUNK
