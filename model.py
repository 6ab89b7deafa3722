"""A GPT language model in JAX + Equinox, written to be read top to bottom.

The story: a config says how big the model is and which component fills each role; a block
is attention then an MLP, each behind a norm and added back to a residual stream; a GPT is
token and position embeddings, a stack of blocks, a final norm and a head that reuses the
token embedding matrix. Last, `GPT.decode` runs the same model a few tokens at a time against
a cache, for generation.

Three ways this differs from the PyTorch original (nanoGPT), each explained where it happens:
- a model is an immutable PyTree: "changing" it (init, an optimizer update) builds a new one;
- randomness is explicit: every function that needs it (init, dropout) takes a PRNG key;
- the forward pass handles ONE sequence; the training step maps it over the batch with `jax.vmap`.

Every component is registered under a name and built from (config, spec): the model's config
and its layer's spec, a dict of that layer's choices and options. This file registers the GPT
a reader needs; components.py registers the optional built-ins exactly as a file of your own
registers yours (docs/adding_a_model.md). On a CPU, training runs this model through the CPU
fast path (helpers/cpu_fast_path.py), which swaps a few pieces for subclasses that compute the
same values and gradients in a form XLA's CPU backend runs faster, each tested equal.
"""

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from helpers.registry import DeclaredConfig, Option, Registry, setting

# ---------------------------------------------------------------------------------------------
# The registries and the config. Every component is found by name and every setting is checked
# against its declaration (helpers/registry.py), so a config, like a checkpoint's header, is
# plain data.

MIXERS, MLPS, NORMS, BLOCKS = Registry("mixer"), Registry("mlp"), Registry("norm"), Registry("block")
# The GPT itself is a component too: a checkpoint names its class, so a subclass that changes
# a step (docs/adding_a_model.md) is rebuilt as itself, never silently as a plain GPT.
MODELS = Registry("model")
POSITIONS = {
    "learned": "a learned vector per position, added to the token's (GPT-2)",
    "rope": "rotary embeddings: queries and keys turned by an angle that grows with the position",
    "none": "no position information: causal attention alone tells positions apart",
}


@dataclasses.dataclass(frozen=True)
class GPTConfig(DeclaredConfig):
    """Every choice that fixes the model: sizes, which component fills each role, and the
    options those components declare. Each field is declared (help, valid values), and the
    base class checks them all; `layer_specs()` gives each layer's choices and options.
    Frozen, so it can be hashed and compared."""

    MODEL_PARTS = {"model": MODELS, "norm": NORMS}  # the class, and the final norm before the head
    LAYER_PARTS = {"mixer": MIXERS, "mlp": MLPS, "norm": NORMS, "block": BLOCKS}  # what a layer's spec may swap
    LAYER_FIELDS = ("window",)  # ... and which fields it may change

    block_size: int = setting(1024, "the longest sequence the model can see", low=1)
    vocab_size: int = setting(50304, "tokens (GPT-2's 50257 padded to a multiple of 64 for faster matmuls)", low=1)
    n_layer: int = setting(12, "transformer blocks (with --layers: its length)", low=1)
    n_head: int = setting(12, "attention heads per block", low=1)
    n_embd: int = setting(768, "width of the residual stream", low=1)
    dropout: float = setting(0.0, "dropout probability: 0.0 for pretraining, 0.1+ for finetuning", low=0, below=1)
    bias: bool = setting(True, "biases in Linear layers and norms, as GPT-2 has")
    n_kv_head: int = setting(0, "key/value heads: 0 = n_head; 1 = multi-query; a divisor of n_head = grouped", low=0)
    mixer: str = setting("attention", "how positions exchange information", choices=MIXERS)
    mlp: str = setting("swiglu", "what each position computes on its own", choices=MLPS)
    norm: str = setting("layernorm", "the normalisation before each sublayer and the head", choices=NORMS)
    position: str = setting("learned", "position information", choices=POSITIONS)
    block: str = setting("sequential", "how a layer joins its mixer and MLP to the residual stream", choices=BLOCKS)
    window: int = setting(0, "attend to at most this many latest positions (sliding window); 0: all", low=0)
    multiple_of: int = setting(1, "round the SwiGLU width up to a multiple of this (LLaMA: 256)", low=1)
    rope_theta: float = setting(10000.0, "the base of the rotary frequencies", above=0)
    qk_norm: bool = setting(False, "RMS-normalise each head's queries and keys before their dot product")
    softcap: float = setting(0.0, "squash the logits into (-softcap, softcap) with a tanh; 0.0: off", low=0)
    tie_head: bool = setting(True, "the output head is the token embedding matrix (GPT-2); False: a matrix of its own")
    zero_init_residual: bool = setting(False, "the residual projections (c_proj) start at zero: each block starts as the identity")
    layers: tuple[str, ...] = setting((), 'one spec per layer, each "NAME" (a mixer) or "key=value,...": '
                                          '("attention", "mixer=conv,kernel_size=8")')
    model: str = setting("gpt", "the class that puts it all together", choices=MODELS)
    # How the stack runs, not what it computes (docs/performance.md has which is faster where).
    scan_layers: bool = setting(True, "scan over the stacked layers (compile time flat in depth); False unrolls them")
    scan_unroll: int = setting(1, "with scan_layers: layers per iteration of the scan (fewer loop steps, longer compile)",
                               low=1)
    options: tuple[tuple[str, object], ...] = ()  # (name, value) of each option set away from its default

    def __post_init__(self):
        super().__post_init__()  # each field and option checked against its declaration
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                             f"pick n_embd a multiple of n_head (for example {self.n_head * 64})")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (0 means n_head)")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"rope needs an even head size, got {self.head_size}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head


# The fields that shape no parameter: how much dropout, how the stack runs. A resumed run takes
# them from its own settings (as nanoGPT takes dropout), the rest from the checkpoint.
RUN_FIELDS = ("dropout", "scan_layers", "scan_unroll")


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

    def unembed(self, x: Float[Array, "T dim"]) -> Float[Array, "T num"]:
        """The table read the other way: how well each vector matches every row (the output
        head, when the token table is tied to it)."""
        return x @ self.weight.T


# Both norms declare the same option: one name, one meaning.
EPS = Option(1e-5, "the norm's epsilon: added to the mean square before its square root", above=0)


@NORMS.register("layernorm", eps=EPS)
class LayerNorm(eqx.Module):
    """LayerNorm with an optional bias (PyTorch's has no such switch), always computed in fp32."""

    weight: Float[Array, " C"]
    bias: Float[Array, " C"] | None
    eps: float = eqx.field(static=True)

    def __init__(self, config: GPTConfig, spec: dict):
        self.weight = jnp.ones((config.n_embd,))
        self.bias = jnp.zeros((config.n_embd,)) if config.bias else None
        self.eps = spec["eps"]

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        """Each row minus its mean, divided by its standard deviation."""
        x = x - x.mean(-1, keepdims=True)
        return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + self.eps)

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        # Normalising in bf16 loses too much precision, so statistics are taken in fp32.
        y = self.normalize(x.astype(jnp.float32)) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.astype(x.dtype)


def rms_normalize(x: Float[Array, "*N C"], eps: float = 1e-5) -> Float[Array, "*N C"]:
    """Each vector along the last axis divided by its root mean square."""
    return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + eps)


@NORMS.register("rmsnorm", eps=EPS)
class RMSNorm(LayerNorm):
    """LLaMA's norm: LayerNorm without the mean and the bias (scale by the root mean square)."""

    def __init__(self, config: GPTConfig, spec: dict):
        super().__init__(config, spec)
        self.bias = None  # none, whatever config.bias says

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        return rms_normalize(x, self.eps)


def rotate(x: Float[Array, "T H D"], positions: Int[Array, " T"], theta: float) -> Float[Array, "T H D"]:
    """Rotary position embedding (RoPE): turn each feature pair (i, i + D/2) by an angle that
    grows with the position, so that q . k depends only on how far apart two positions are."""
    half = x.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[:, None].astype(jnp.float32) * freqs  # (T, D/2)
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# Attention: how positions exchange information (the mixer; components.py adds another). It
# runs a whole sequence (training) or a few new positions against a cache of the earlier ones
# (generation, `decode`).


class KVCache(eqx.Module):
    """Attention's keys and values for every position so far, preallocated to block_size.

    Stacked like the layers that use it, one slice each; layer i reads and writes slice i.
    """

    k: Float[Array, "L Hkv S D"]
    v: Float[Array, "L Hkv S D"]


def causal_mask(queries: Int[Array, " T"], keys: Int[Array, " S"], window: int) -> Bool[Array, "T S"]:
    """Which key positions each query position may look at: itself and earlier ones, and with
    a window only the latest `window` of those."""
    visible = keys[None, :] <= queries[:, None]
    if window:
        visible &= keys[None, :] > queries[:, None] - window
    return visible


def attend(
    q: Float[Array, "T H D"], k: Float[Array, "S Hkv D"], v: Float[Array, "S Hkv D"], visible: Bool[Array, "T S"]
) -> tuple[Float[Array, "T H D"], Float[Array, "H T S"]]:
    """Scaled dot-product attention: each query's softmax weights over the keys it may see,
    and the values mixed by them (returned with the weights, for looking at).

    With fewer key/value heads than query heads (GQA), query head h reads key/value head
    h // group: the queries are grouped by their key head rather than the keys copied per
    query head. Heads go first so that every product is one matmul per head; the scores and
    the softmax are fp32 even for bf16 inputs.
    """
    T, H, D = q.shape
    Hkv = k.shape[1]
    q = q.reshape(T, Hkv, H // Hkv, D).transpose(1, 2, 0, 3)  # (Hkv, group, T, D)
    k, v = k.transpose(1, 0, 2), v.transpose(1, 0, 2)  # (Hkv, S, D)
    scores = jnp.einsum("kgtd,ksd->kgts", q, k, preferred_element_type=jnp.float32) / math.sqrt(D)
    weights = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)
    y = jnp.einsum("kgts,ksd->tkgd", weights.astype(v.dtype), v)
    return y.reshape(T, H, D), weights.reshape(H, T, -1)


def attention_implementation(backend: str, dtype, head_size: int) -> str:
    """Which kernel runs attention over a whole sequence. jax.nn.dot_product_attention left to
    itself picks XLA's version, which builds the whole T x T weight matrix, so the choice is
    made here: cuDNN's flash attention, which never builds it, on a GPU for the 16-bit inputs
    and head sizes (a multiple of 8, at most 128) it supports; XLA's everywhere else."""
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_size % 8 == 0 and head_size <= 128:
        return "cudnn"
    return "xla"


@MIXERS.register("attention")
class CausalSelfAttention(eqx.Module):
    """Each position mixes in information from itself and the positions before it, never after.

    With n_kv_head < n_head, groups of query heads share one key/value head (grouped-query
    attention; multi-query at 1), which shrinks the KV cache. With a window, a position sees
    only that many latest positions.
    """

    c_attn: Linear  # queries for all heads, then keys and values, in one fused projection
    c_proj: Linear  # back to the residual stream; one of the two "residual projections"
    dropout: eqx.nn.Dropout
    n_head: int = eqx.field(static=True)
    kv_heads: int = eqx.field(static=True)
    window: int = eqx.field(static=True)
    rope_theta: float | None = eqx.field(static=True)  # None: no rotary embedding
    qk_norm: bool = eqx.field(static=True)

    def __init__(self, config: GPTConfig, spec: dict):
        kv_width = 2 * config.kv_heads * config.head_size
        self.c_attn = Linear(config.n_embd, config.n_embd + kv_width, config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)
        self.n_head, self.kv_heads, self.window = config.n_head, config.kv_heads, spec["window"]
        self.rope_theta = config.rope_theta if config.position == "rope" else None
        self.qk_norm = config.qk_norm

    def heads(
        self, x: Float[Array, "T C"], positions: Int[Array, " T"]
    ) -> tuple[Float[Array, "T H D"], Float[Array, "T Hkv D"], Float[Array, "T Hkv D"]]:
        """Queries, keys and values, split into heads (normalised with QK-norm, rotated with RoPE)."""
        T, C = x.shape
        D = C // self.n_head
        q, k, v = jnp.split(self.c_attn(x), [C, C + self.kv_heads * D], axis=-1)
        q, k, v = q.reshape(T, self.n_head, D), k.reshape(T, -1, D), v.reshape(T, -1, D)
        if self.qk_norm:
            # Unit-RMS queries and keys bound every score, whatever the weights grow to: the
            # softmax cannot saturate, so higher learning rates stay stable. In fp32, as the norms.
            q, k = (rms_normalize(a.astype(jnp.float32)).astype(a.dtype) for a in (q, k))
        if self.rope_theta is not None:
            q, k = rotate(q, positions, self.rope_theta), rotate(k, positions, self.rope_theta)
        return q, k, v

    @jax.named_scope("attn")
    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        q, k, v = self.heads(x, jnp.arange(x.shape[0]))
        y = self.causal_attention(q, k, v)
        # The fused kernel has no dropout on the attention weights, so (unlike nanoGPT) dropout
        # acts on the residual branches only, and both paths train the same model.
        return self.dropout(self.c_proj(y.reshape(x.shape)), key=key)

    def causal_attention(
        self, q: Float[Array, "T H D"], k: Float[Array, "T Hkv D"], v: Float[Array, "T Hkv D"]
    ) -> Float[Array, "T H D"]:
        """What `attend` computes for a whole sequence, by jax's fused kernel."""
        local = (self.window - 1, 0) if self.window else None  # the key itself and window - 1 before it
        implementation = attention_implementation(jax.default_backend(), q.dtype, q.shape[-1])
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local,
                                            implementation=implementation)

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32) -> KVCache:
        """Room for `length` positions in each of `layers` layers like this one (its own sizes)."""
        shape = (layers, self.kv_heads, length, self.c_proj.weight.shape[-1] // self.n_head)
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def decode(
        self, x: Float[Array, "T C"], cache: KVCache, layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], KVCache]:
        """Attention for T new tokens at positions pos..pos+T-1, against every earlier key.

        The new keys and values go into this layer's slice of the cache first; query i may
        then look at slots up to pos+i. Later slots hold stale or padding entries: masked.
        """
        T, C = x.shape
        positions = pos + jnp.arange(T)
        q, k, v = self.heads(x, positions)
        cache = KVCache(
            jax.lax.dynamic_update_slice(cache.k, k.swapaxes(0, 1)[None].astype(cache.k.dtype), (layer, 0, pos, 0)),
            jax.lax.dynamic_update_slice(cache.v, v.swapaxes(0, 1)[None].astype(cache.v.dtype), (layer, 0, pos, 0)),
        )
        keys, values = cache.k[layer].astype(q.dtype), cache.v[layer].astype(q.dtype)
        slots = jnp.arange(keys.shape[1])
        y, _ = attend(q, keys.swapaxes(0, 1), values.swapaxes(0, 1), causal_mask(positions, slots, self.window))
        return self.c_proj(y.reshape(T, C)), cache


# ---------------------------------------------------------------------------------------------
# MLPs: what each position computes on its own.


@MLPS.register("gelu")
class GeluMLP(eqx.Module):
    """GPT-2's feed-forward layer: widen 4x, GELU (tanh approximation, as GPT-2), project back."""

    c_fc: Linear
    c_proj: Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: GPTConfig, spec: dict):
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def activation(self, h: Float[Array, "T H"]) -> Float[Array, "T H"]:
        return jax.nn.gelu(h, approximate=True)

    @jax.named_scope("mlp")
    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))), key=key)


def swiglu_hidden(n_embd: int, multiple_of: int = 1) -> int:
    """SwiGLU has three matrices where GELU's MLP has two of width 4C; 3·H·C = 8·C² gives
    H = 8C/3 (2048 at C = 768), so both MLPs hold the same number of weights. LLaMA then
    rounds H up to a multiple of `multiple_of` (11008 at C = 4096 with 256)."""
    return multiple_of * -(-round(8 * n_embd / 3) // multiple_of)


@MLPS.register("swiglu")
class SwiGLU(GeluMLP):
    """The gated MLP of PaLM and LLaMA: silu(x W_gate) * (x W_up), then project back. Its c_fc
    holds the gate and up projections fused into one matmul; the activation splits them."""

    def __init__(self, config: GPTConfig, spec: dict):
        hidden = swiglu_hidden(config.n_embd, config.multiple_of)
        self.c_fc = Linear(config.n_embd, 2 * hidden, config.bias)
        self.c_proj = Linear(hidden, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def activation(self, h: Float[Array, "T 2H"]) -> Float[Array, "T H"]:
        gate, up = jnp.split(h, 2, axis=-1)
        return jax.nn.silu(gate) * up


# ---------------------------------------------------------------------------------------------
# The block: a mixer and an MLP, each behind a norm, added to the residual stream.


@BLOCKS.register("sequential")
class Block(eqx.Module):
    """One transformer layer: pre-norm attention, then pre-norm MLP, each added to the stream.

    A block owns its generation path too (`decode`, `empty_cache`): the GPT asks its blocks,
    never their parts, so a block of your own may hold whatever parts it likes.
    """

    ln_1: eqx.Module
    attn: eqx.Module  # the mixer (attention unless the spec names another); nanoGPT's name
    ln_2: eqx.Module
    mlp: eqx.Module

    def __init__(self, config: GPTConfig, spec: dict):
        self.ln_1 = NORMS[spec["norm"]](config, spec)
        self.attn = MIXERS[spec["mixer"]](config, spec)
        self.ln_2 = NORMS[spec["norm"]](config, spec)
        self.mlp = MLPS[spec["mlp"]](config, spec)

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        attn_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        x = x + self.attn(self.ln_1(x), key=attn_key)
        return x + self.mlp(self.ln_2(x), key=mlp_key)

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32):
        """The generation cache of `layers` layers like this one: its mixer's."""
        return self.attn.empty_cache(layers, length, dtype)

    def decode(self, x: Float[Array, "T C"], cache, layer: Int[Array, ""], pos: Int[Array, ""]):
        """The same layer for generation: the mixer reads and extends the cache."""
        mixed, cache = self.attn.decode(self.ln_1(x), cache, layer, pos)
        x = x + mixed
        return x + self.mlp(self.ln_2(x)), cache


# ---------------------------------------------------------------------------------------------
# The GPT.


@MODELS.register("gpt")
class GPT(eqx.Module):
    """Tokens in, next-token logits out, for one sequence.

    When every layer is alike, `h` is ONE block whose every array has an extra leading axis
    of length n_layer: the layers are stacked, and `jax.lax.scan` runs them in turn. XLA then
    compiles one layer, not n_layer copies, so compile time does not grow with depth. A
    heterogeneous stack (config.layers) is a tuple of blocks, run one after another.
    """

    wte: Embedding  # token embeddings; also the output head (weight tying), unless lm_head
    wpe: Embedding | None  # learned position embeddings (None with rope or no positions)
    dropout: eqx.nn.Dropout  # on the embeddings
    h: eqx.Module | tuple  # the blocks: stacked, or a tuple when layers differ
    ln_f: eqx.Module
    lm_head: Linear | None  # the output head when it is not tied to wte
    config: GPTConfig = eqx.field(static=True)

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        if type(self) is not MODELS[config.model]:
            raise ValueError(
                f"{type(self).__name__} built from a config whose model is {config.model!r} "
                f"({MODELS[config.model].__name__}): register the class with @MODELS.register(NAME) and "
                "set GPTConfig.model=NAME, so that a checkpoint of it loads as that class"
            )
        embed_key, blocks_key = jax.random.split(key)
        self.config = config
        learned = config.position == "learned"
        self.wte, self.wpe, self.lm_head = init_weights(
            (Embedding(config.vocab_size, config.n_embd), Embedding(config.block_size, config.n_embd) if learned else None,
             None if config.tie_head else Linear(config.n_embd, config.vocab_size, bias=False)),
            embed_key,
            config,
        )
        self.dropout = eqx.nn.Dropout(config.dropout)
        specs = config.layer_specs()
        keys = jax.random.split(blocks_key, config.n_layer)
        new_block = lambda spec, k: init_weights(BLOCKS[spec["block"]](config, spec), k, config)  # noqa: E731
        if all(spec == specs[0] for spec in specs):
            # filter_vmap over one key per layer builds n_layer blocks, each initialised from
            # its own key, and returns them stacked along a new leading axis.
            self.h = eqx.filter_vmap(lambda k: new_block(specs[0], k))(keys)
        else:
            self.h = tuple(new_block(spec, k) for spec, k in zip(specs, keys))
        self.ln_f = NORMS[config.norm](config, config.spec())

    @property
    def stacked(self) -> bool:
        return not isinstance(self.h, tuple)

    def blocks(self) -> list:
        """The layers one by one, each an ordinary Block (slices of the stacked arrays)."""
        if not self.stacked:
            return list(self.h)
        return [jax.tree.map(lambda a, i=i: a[i] if eqx.is_array(a) else a, self.h) for i in range(self.config.n_layer)]

    def embed(self, idx: Int[Array, " T"], pos: Int[Array, ""] | int) -> Float[Array, "T C"]:
        """Token embeddings, plus learned position embeddings for positions pos, pos + 1, ..."""
        x = self.wte(idx)
        return x if self.wpe is None else x + self.wpe(pos + jnp.arange(idx.shape[0]))

    def head(self, x: Float[Array, "T C"]) -> Float[Array, "T V"]:
        # Tied (GPT-2), the head is the token embedding matrix itself: one array, used twice, so
        # an optimizer update moves both uses together. Logits leave in fp32 for the softmax.
        x = self.ln_f(x)
        logits = (self.wte.unembed(x) if self.lm_head is None else self.lm_head(x)).astype(jnp.float32)
        if self.config.softcap:
            # Soft-capping: near-linear for small logits, bounded for large ones, so no logit can
            # run away and make the loss overconfident (Gemma 2, the speedrun).
            logits = self.config.softcap * jnp.tanh(logits / self.config.softcap)
        return logits

    def __call__(self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T V"]:
        """Logits for every position. `key` drives dropout; leave it out in inference mode."""
        return self.head(self.features(idx, key=key))

    def features(self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        """The last block's output at every position, which the head turns into logits. The
        training loss runs the head itself, a few positions at a time (helpers/loss.py)."""
        (T,) = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size={self.config.block_size}")
        drop_key, layer_keys = None, None
        if key is not None:
            drop_key, blocks_key = jax.random.split(key)
            layer_keys = jax.random.split(blocks_key, self.config.n_layer)
        x = self.dropout(self.embed(idx, 0), key=drop_key)
        return self.run_layers(lambda block, x, key, i: block(x, key=key), x, layer_keys)

    def run_layers(self, step: Callable, carry, per_layer=None):
        """carry = step(block, carry, per_layer[i], i) for each layer i in turn.

        Stacked blocks run under jax.lax.scan, which slices every array per layer (unrolled into
        straight-line code unless config.scan_layers, scan_unroll layers to an iteration if it
        is); a tuple of blocks runs as a Python loop.
        """
        if not self.stacked:
            for i, block in enumerate(self.h):
                carry = step(block, carry, None if per_layer is None else per_layer[i], i)
            return carry
        # scan needs the arrays (sliced per layer) apart from the rest (shared by all layers).
        block_arrays, block_rest = eqx.partition(self.h, eqx.is_array)

        def run_layer(carry, layer):
            arrays, extra, i = layer
            return step(eqx.combine(arrays, block_rest), carry, extra, i), None

        layers = (block_arrays, per_layer, jnp.arange(self.config.n_layer))
        unroll = self.config.scan_unroll if self.config.scan_layers else True
        carry, _ = jax.lax.scan(run_layer, carry, layers, unroll=unroll)
        return carry

    def empty_cache(self, dtype=jnp.float32):
        """The generation cache for this model, preallocated to block_size: one stacked cache
        for a stack of alike layers, one per layer otherwise (each block makes its own)."""
        if self.stacked:
            return self.h.empty_cache(self.config.n_layer, self.config.block_size, dtype)
        return tuple(block.empty_cache(1, self.config.block_size, dtype) for block in self.h)

    def decode(self, idx: Int[Array, " T"], cache, pos: Int[Array, ""]) -> tuple[Float[Array, "T V"], object]:
        """Logits for T new tokens at positions pos..pos+T-1, given the cache of the earlier
        ones; returns the cache extended by them. Prefill is T = prompt length at pos = 0,
        each decoding step is T = 1. No dropout: generation runs in inference mode."""

        def run_block(block, carry, _, i):
            x, cache = carry
            if self.stacked:
                # The whole cache rides along in the carry and layer i updates its slice in
                # place; scanning over slices of it would copy every layer's cache per token.
                return block.decode(x, cache, i, pos)
            x, layer_cache = block.decode(x, cache[i], 0, pos)  # a cache of its own per layer
            return x, cache[:i] + (layer_cache,) + cache[i + 1 :]

        x, cache = self.run_layers(run_block, (self.embed(idx, pos), cache))
        return self.head(x), cache

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once each. With non_embedding=True the position embeddings are
        left out (nanoGPT's convention); token embeddings stay (tied, they are the head too)."""
        # Shapes are enough, so this also counts a model made by eqx.filter_eval_shape,
        # which allocates nothing (handy for sizing gpt2-xl).
        n = sum(x.size for x in jax.tree.leaves(self) if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)))
        return n - self.wpe.weight.size if non_embedding and self.wpe is not None else n


def init_weights(module, key: PRNGKeyArray, config: GPTConfig):
    """GPT-2's init, as a function that returns a new module (a PyTree cannot be changed).

    Every Linear and Embedding weight is drawn from N(0, 0.02), except the residual
    projections (`c_proj`, whose outputs are added to the residual stream once per layer per
    branch), drawn from N(0, 0.02 / sqrt(2 * n_layer)) so the stream's variance does not grow
    with depth, or zero with config.zero_init_residual. Biases stay zero and LayerNorm weights
    one, as constructed.
    """

    layers = _weighted_layers(module)
    residual_std = 0.0 if config.zero_init_residual else 0.02 / math.sqrt(2 * config.n_layer)
    drawn = [
        (residual_std if jax.tree_util.keystr(path).endswith("c_proj") else 0.02)
        * jax.random.normal(k, layer.weight.shape, layer.weight.dtype)
        for (path, layer), k in zip(layers, jax.random.split(key, len(layers)))
    ]
    # eqx.tree_at is Equinox's answer to in-place assignment: same tree, chosen leaves swapped.
    return eqx.tree_at(lambda tree: [layer.weight for _, layer in _weighted_layers(tree)], module, drawn)


def _weighted_layers(tree) -> list:
    """(path, layer) for every Linear and Embedding in `tree`, in a fixed order (by path)."""
    is_layer = lambda node: isinstance(node, (Linear, Embedding))  # noqa: E731
    found = jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_layer)
    return [(path, node) for path, node in found if is_layer(node)]

