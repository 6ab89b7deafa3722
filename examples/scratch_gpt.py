"""A model from scratch (theseus's other way): no GPT underneath, only Equinox's own layers
(eqx.nn) and the contract (helpers/contract.py) that the scripts need.

    python train.py examples/scratch_gpt.py
    python sample.py examples/scratch_gpt.py
    python check.py examples/scratch_gpt.py

The contract is five pieces: keep the config as self.config; __call__ for one sequence;
empty_cache and decode for generation; get_num_params. The optimizer finds the weight matrices
of eqx.nn.Linear and eqx.nn.Embedding by itself.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from model import MODELS, GPTConfig


class ScratchLayer(eqx.Module):
    """Pre-norm causal self-attention, then a pre-norm MLP, from eqx.nn."""

    ln_1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    ln_2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, config: GPTConfig, key: PRNGKeyArray):
        attn_key, mlp_key = jax.random.split(key)
        self.ln_1 = eqx.nn.LayerNorm(config.n_embd)
        self.attn = eqx.nn.MultiheadAttention(config.n_head, config.n_embd, key=attn_key)
        self.ln_2 = eqx.nn.LayerNorm(config.n_embd)
        self.mlp = eqx.nn.MLP(config.n_embd, config.n_embd, 4 * config.n_embd, depth=1,
                              activation=jax.nn.gelu, key=mlp_key)

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        # eqx.nn's norms and MLPs take one vector: vmap maps them over the positions.
        causal = jnp.tril(jnp.ones((x.shape[0], x.shape[0]), bool))
        h = jax.vmap(self.ln_1)(x)
        x = x + self.attn(h, h, h, mask=causal)
        return x + jax.vmap(self.mlp)(jax.vmap(self.ln_2)(x))


@MODELS.register("scratch")
class ScratchGPT(eqx.Module):
    """A small GPT from eqx.nn layers, meeting the contract and nothing more."""

    config: GPTConfig = eqx.field(static=True)
    tokens: eqx.nn.Embedding
    positions: eqx.nn.Embedding
    layers: tuple[ScratchLayer, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        keys = jax.random.split(key, config.n_layer + 3)
        self.config = config
        self.tokens = eqx.nn.Embedding(config.vocab_size, config.n_embd, key=keys[0])
        self.positions = eqx.nn.Embedding(config.block_size, config.n_embd, key=keys[1])
        self.layers = tuple(ScratchLayer(config, k) for k in keys[3:])
        self.norm = eqx.nn.LayerNorm(config.n_embd)
        self.head = eqx.nn.Linear(config.n_embd, config.vocab_size, use_bias=False, key=keys[2])

    def __call__(self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T V"]:
        """Logits for one sequence (no dropout here, so `key` goes unused)."""
        x = jax.vmap(self.tokens)(idx) + jax.vmap(self.positions)(jnp.arange(idx.shape[0]))
        for layer in self.layers:
            x = layer(x)
        return jax.vmap(self.head)(jax.vmap(self.norm)(x))

    # Generation. The simplest cache there is: the tokens so far, the whole context run again
    # for each new one. Slow, but exact, and it keeps the cache rules: a token written at a
    # position replaces what was there, and nothing after a position changes its logits.
    def empty_cache(self, dtype=jnp.float32) -> Int[Array, " S"]:
        return jnp.zeros(self.config.block_size, jnp.int32)

    def decode(self, idx: Int[Array, " T"], cache: Int[Array, " S"], pos: Int[Array, ""]):
        cache = jax.lax.dynamic_update_slice(cache, idx.astype(jnp.int32), (pos,))
        return jax.lax.dynamic_slice_in_dim(self(cache), pos, idx.shape[0]), cache

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters; non_embedding leaves the position table out (nanoGPT's convention)."""
        n = sum(leaf.size for leaf in jax.tree.leaves(self) if hasattr(leaf, "size"))
        return n - self.positions.weight.size if non_embedding else n


# The run: the same small run as examples/capped_gpt.py, with this model.
model = "scratch"
out_dir = "out-scratch"
dataset = "python_docs_char"
max_iters = 500
lr_decay_iters = 500
eval_interval = 250
start = "The "
