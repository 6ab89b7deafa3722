"""A GPT language model in JAX + Equinox, written to be read top to bottom.

The story: a config says how big the model is; a block is attention then an MLP, each behind
a LayerNorm and added back to a residual stream; a GPT is token and position embeddings, a
stack of blocks, a final LayerNorm and a head that reuses the token embedding matrix. Last,
`GPT.decode` runs the same model a few tokens at a time against a KV cache, for generation.

Three ways this differs from the PyTorch original (nanoGPT), each explained where it happens:
- a model is an immutable PyTree: "changing" it (init, an optimizer update) builds a new one;
- randomness is explicit: every function that needs it (init, dropout) takes a PRNG key;
- the forward pass handles ONE sequence; the training step `jax.vmap`s it over the batch.
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Every number that fixes the model's shape. Frozen, so it can be hashed and compared."""

    block_size: int = 1024  # the longest sequence the model can see
    vocab_size: int = 50304  # GPT-2's 50257, padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as GPT-2 has
    mlp: str = "swiglu"  # a name from MLPS below

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                f"pick n_embd a multiple of n_head (for example {self.n_head * 64})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.mlp not in MLPS:
            raise ValueError(f"unknown mlp {self.mlp!r}; valid names: {', '.join(sorted(MLPS))}")


# ---------------------------------------------------------------------------------------------
# The small pieces. Each holds its parameters as fields; calling it is a pure function.


class Linear(eqx.Module):
    """y = x W^T + b on a whole (T, C) sequence at once: one matmul, not a vmap over positions.

    Weights are created as zeros; `init_weights` below draws them. The layout is PyTorch's
    (out, in), so nanoGPT checkpoints map onto it directly.
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None

    def __init__(self, in_features: int, out_features: int, bias: bool):
        self.weight = jnp.zeros((out_features, in_features))
        self.bias = jnp.zeros((out_features,)) if bias else None

    def __call__(self, x: Float[Array, "T in"]) -> Float[Array, "T out"]:
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


class Embedding(eqx.Module):
    """A lookup table: row i is the vector for token (or position) i."""

    weight: Float[Array, "num dim"]

    def __init__(self, num: int, dim: int):
        self.weight = jnp.zeros((num, dim))

    def __call__(self, idx: Int[Array, " T"]) -> Float[Array, "T dim"]:
        return self.weight[idx]


class LayerNorm(eqx.Module):
    """LayerNorm with an optional bias (PyTorch's has no such switch), always computed in fp32."""

    weight: Float[Array, " C"]
    bias: Float[Array, " C"] | None
    eps: float = eqx.field(static=True)

    def __init__(self, dim: int, bias: bool, eps: float = 1e-5):
        self.weight = jnp.ones((dim,))
        self.bias = jnp.zeros((dim,)) if bias else None
        self.eps = eps

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        # Normalising in bf16 loses too much precision, so statistics are taken in fp32.
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.astype(x.dtype)


class CausalSelfAttention(eqx.Module):
    """Each position mixes in information from itself and the positions before it, never after."""

    c_attn: Linear  # q, k and v for all heads in one fused projection
    c_proj: Linear  # back to the residual stream; one of the two "residual projections"
    resid_dropout: eqx.nn.Dropout
    n_head: int = eqx.field(static=True)

    def __init__(self, config: GPTConfig):
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.resid_dropout = eqx.nn.Dropout(config.dropout)
        self.n_head = config.n_head

    def heads(self, x: Float[Array, "T C"]) -> tuple[Float[Array, "T H D"], ...]:
        """Queries, keys and values, split into heads: (T, C) -> three (T, heads, head_size)."""
        T, C = x.shape
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)
        return tuple(a.reshape(T, self.n_head, C // self.n_head) for a in (q, k, v))

    @jax.named_scope("attn")
    def __call__(
        self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "T C"]:
        q, k, v = self.heads(x)
        # Softmax runs in fp32 inside even for bf16 inputs. The fused kernel has no dropout on
        # the attention weights, so (unlike nanoGPT) dropout acts on the residual branches only.
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        return self.resid_dropout(self.c_proj(y.reshape(x.shape)), key=key)

    def decode(
        self, x: Float[Array, "T C"], cache: "KVCache", layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], "KVCache"]:
        """Attention for T new tokens at positions pos..pos+T-1, against every earlier key.

        The new keys and values are written into this layer's slice of the cache first; query
        i may then look at slots 0..pos+i. Later slots hold stale or padding entries: masked.
        """
        q, k, v = self.heads(x)
        # Keys are kept as (heads, head_size, S) and values as (heads, S, head_size): the
        # layouts in which the two matmuls below read them without transposing every token.
        cache = KVCache(
            jax.lax.dynamic_update_slice(cache.k, k.transpose(1, 2, 0)[None].astype(cache.k.dtype), (layer, 0, 0, pos)),
            jax.lax.dynamic_update_slice(cache.v, v.swapaxes(0, 1)[None].astype(cache.v.dtype), (layer, 0, pos, 0)),
        )
        keys, values = cache.k[layer].astype(q.dtype), cache.v[layer].astype(q.dtype)
        T, S = x.shape[0], values.shape[1]
        visible = jnp.arange(S)[None, :] <= pos + jnp.arange(T)[:, None]
        scores = jnp.einsum("thd,hds->hts", q, keys) / math.sqrt(q.shape[-1])
        weights = jax.nn.softmax(jnp.where(visible, scores.astype(jnp.float32), -jnp.inf), axis=-1)
        y = jnp.einsum("hts,hsd->thd", weights.astype(q.dtype), values)
        return self.c_proj(y.reshape(x.shape)), cache


class GeluMLP(eqx.Module):
    """GPT-2's feed-forward layer: widen 4x, GELU (tanh approximation, as GPT-2), project back."""

    c_fc: Linear
    c_proj: Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: GPTConfig):
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    @jax.named_scope("mlp")
    def __call__(
        self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "T C"]:
        h = jax.nn.gelu(self.c_fc(x), approximate=True)
        return self.dropout(self.c_proj(h), key=key)


def swiglu_hidden(n_embd: int) -> int:
    """SwiGLU has three matrices where GELU's MLP has two of width 4C; 3·H·C = 8·C² gives
    H = 8C/3 (2048 at C = 768), so both MLPs hold the same number of weights."""
    return round(8 * n_embd / 3)


class SwiGLU(eqx.Module):
    """The gated MLP of PaLM and LLaMA: silu(x W_gate) * (x W_up), then project back."""

    c_fc: Linear  # gate and up projections fused into one matmul, split after
    c_proj: Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: GPTConfig):
        hidden = swiglu_hidden(config.n_embd)
        self.c_fc = Linear(config.n_embd, 2 * hidden, config.bias)
        self.c_proj = Linear(hidden, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    @jax.named_scope("mlp")
    def __call__(
        self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "T C"]:
        gate, up = jnp.split(self.c_fc(x), 2, axis=-1)
        return self.dropout(self.c_proj(jax.nn.silu(gate) * up), key=key)


MLPS = {"gelu": GeluMLP, "swiglu": SwiGLU}


class Block(eqx.Module):
    """One transformer layer: pre-norm attention, then pre-norm MLP, each added to the stream."""

    ln_1: LayerNorm
    attn: CausalSelfAttention
    ln_2: LayerNorm
    mlp: GeluMLP | SwiGLU

    def __init__(self, config: GPTConfig):
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLPS[config.mlp](config)

    def __call__(
        self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "T C"]:
        attn_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        x = x + self.attn(self.ln_1(x), key=attn_key)
        return x + self.mlp(self.ln_2(x), key=mlp_key)

    def decode(
        self, x: Float[Array, "T C"], cache: "KVCache", layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], "KVCache"]:
        """The same layer for generation: attention reads and extends the cache."""
        attended, cache = self.attn.decode(self.ln_1(x), cache, layer, pos)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), cache


# ---------------------------------------------------------------------------------------------
# The GPT.


class GPT(eqx.Module):
    """Tokens in, next-token logits out, for one sequence.

    `h` is ONE Block whose every array has an extra leading axis of length n_layer: the layers
    are stacked, and `jax.lax.scan` runs them in turn. XLA then compiles one layer, not
    n_layer copies, so compile time does not grow with depth.
    """

    wte: Embedding  # token embeddings; also the output head (weight tying)
    wpe: Embedding  # learned position embeddings
    drop: eqx.nn.Dropout
    h: Block  # n_layer blocks, stacked
    ln_f: LayerNorm
    config: GPTConfig = eqx.field(static=True)

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        embed_key, blocks_key = jax.random.split(key)
        self.config = config
        self.wte, self.wpe = init_weights(
            (Embedding(config.vocab_size, config.n_embd), Embedding(config.block_size, config.n_embd)),
            embed_key,
            config.n_layer,
        )
        self.drop = eqx.nn.Dropout(config.dropout)
        # filter_vmap over one key per layer builds n_layer blocks, each initialised from its
        # own key, and returns them stacked along a new leading axis.
        self.h = eqx.filter_vmap(lambda k: init_weights(Block(config), k, config.n_layer))(
            jax.random.split(blocks_key, config.n_layer)
        )
        self.ln_f = LayerNorm(config.n_embd, config.bias)

    def __call__(
        self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, "T V"]:
        """Logits for every position. `key` drives dropout; leave it out in inference mode."""
        (T,) = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size={self.config.block_size}")
        drop_key, layer_keys = None, None
        if key is not None:
            drop_key, blocks_key = jax.random.split(key)
            layer_keys = jax.random.split(blocks_key, self.config.n_layer)
        # jnp.arange gives int32 positions: no need for 64-bit integers (jax_enable_x64).
        x = self.drop(self.wte(idx) + self.wpe(jnp.arange(T)), key=drop_key)

        # scan needs the arrays (sliced per layer) apart from the rest (shared by all layers).
        block_arrays, block_rest = eqx.partition(self.h, eqx.is_array)

        def run_layer(x, layer):
            arrays, layer_key = layer
            return eqx.combine(arrays, block_rest)(x, key=layer_key), None

        x, _ = jax.lax.scan(run_layer, x, (block_arrays, layer_keys))
        x = self.ln_f(x)
        # The head is the token embedding matrix itself: one array, used twice, so an
        # optimizer update moves both uses together. Logits leave in fp32 for the softmax.
        return (x @ self.wte.weight.T).astype(jnp.float32)

    def decode(
        self, idx: Int[Array, " T"], cache: "KVCache", pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T V"], "KVCache"]:
        """Logits for T new tokens at positions pos..pos+T-1, given the cache of the earlier
        ones; returns the cache extended by them. Prefill is T = prompt length at pos = 0,
        each decoding step is T = 1. No dropout: generation runs in inference mode."""
        x = self.wte(idx) + self.wpe(pos + jnp.arange(idx.shape[0]))
        block_arrays, block_rest = eqx.partition(self.h, eqx.is_array)

        def run_layer(carry, layer):
            x, cache = carry
            arrays, index = layer
            return eqx.combine(arrays, block_rest).decode(x, cache, index, pos), None

        # The whole cache rides along in the carry and each layer updates its own slice in
        # place; scanning over slices of it instead would copy every layer's cache per token.
        layers = (block_arrays, jnp.arange(self.config.n_layer))
        (x, cache), _ = jax.lax.scan(run_layer, (x, cache), layers)
        return (self.ln_f(x) @ self.wte.weight.T).astype(jnp.float32), cache

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once each. With non_embedding=True the position embeddings are
        left out (nanoGPT's convention); token embeddings stay, as they are the head too."""
        # Shapes are enough, so this also counts a model made by eqx.filter_eval_shape,
        # which allocates nothing (handy for sizing gpt2-xl).
        n = sum(x.size for x in jax.tree.leaves(self) if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)))
        return n - self.wpe.weight.size if non_embedding else n


# ---------------------------------------------------------------------------------------------
# The KV cache: what generation keeps so that each new token costs one position, not T.


class KVCache(eqx.Module):
    """Keys and values of every position so far, preallocated to block_size (static shapes).

    Stacked like the blocks, one slice per layer; layer i reads and writes slice i.
    """

    k: Float[Array, "L H D S"]
    v: Float[Array, "L H S D"]

    @classmethod
    def empty(cls, config: GPTConfig, dtype=jnp.float32) -> "KVCache":
        L, H, S = config.n_layer, config.n_head, config.block_size
        D = config.n_embd // H
        return cls(jnp.zeros((L, H, D, S), dtype), jnp.zeros((L, H, S, D), dtype))


def init_weights(module, key: PRNGKeyArray, n_layer: int):
    """GPT-2's init, as a function that returns a new module (a PyTree cannot be changed).

    Every Linear and Embedding weight is drawn from N(0, 0.02), except the residual
    projections (`c_proj`, whose outputs are added to the residual stream once per layer per
    branch), drawn from N(0, 0.02 / sqrt(2 * n_layer)) so the stream's variance does not grow
    with depth. Biases stay zero and LayerNorm weights one, as constructed.
    """

    paths = [jax.tree_util.keystr(path) for path, _ in _weighted_layers(module)]
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    drawn = [
        (residual_std if path.endswith("c_proj") else 0.02)
        * jax.random.normal(k, w.shape, w.dtype)
        for path, w, k in zip(paths, weight_matrices(module), jax.random.split(key, len(paths)))
    ]
    # eqx.tree_at is Equinox's answer to in-place assignment: same tree, chosen leaves swapped.
    return eqx.tree_at(weight_matrices, module, drawn)


def _weighted_layers(tree) -> list:
    """(path, layer) for every Linear and Embedding in `tree`, in a fixed order."""
    is_layer = lambda node: isinstance(node, (Linear, Embedding))
    found = jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_layer)
    return [(path, node) for path, node in found if is_layer(node)]


def weight_matrices(tree) -> list:
    """The weights of every Linear and Embedding: what init draws and weight decay shrinks.

    Chosen by layer type, not by ndim: stacked layers make even LayerNorm weights 2-D.
    """
    return [layer.weight for _, layer in _weighted_layers(tree)]
